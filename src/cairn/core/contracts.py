"""Data contracts and checks as values: what an asset's output guarantees, evaluated before it is published.

Rules are named so that results, warnings and errors can point at them: ``columns`` (missing columns),
``<col>.type``, ``<col>.nullable``, ``<col>.min``, ``<col>.max``, ``<col>.allowed``, ``<col>.max_null_rate``,
``unique``, ``rows``, ``duplicate_rate``, ``freshness``; a `check` is named after its function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cairn.errors import DefinitionError

TYPES = (
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
    "bool",
    "string",
    "binary",
    "date",
    "timestamp",
    "decimal",
    "list",
    "struct",
    "dictionary",
    "null",
)


@dataclass(frozen=True, slots=True)
class Column:
    """What one column guarantees; ``type=None`` accepts any type."""

    type: str | None = None
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None
    max_null_rate: float | None = None

    def __post_init__(self) -> None:
        if self.type is not None and self.type not in TYPES:
            raise DefinitionError(f"col({self.type!r}): unknown type; use one of {', '.join(TYPES)}")
        if self.max_null_rate is not None and not 0 <= self.max_null_rate <= 1:
            raise DefinitionError(f"col(max_null_rate={self.max_null_rate}) must be between 0 and 1")


def col(
    type: str | None = None,
    *,
    nullable: bool = True,
    min: float | None = None,
    max: float | None = None,
    allowed: Iterable[Any] | None = None,
    max_null_rate: float | None = None,
) -> Column:
    """A column rule: ``col("float64", min=0)``, ``col("string", allowed=["us", "eu"], nullable=False)``."""
    return Column(type, nullable, min, max, tuple(allowed) if allowed is not None else None, max_null_rate)


@dataclass(frozen=True, slots=True)
class Freshness:
    """The newest value of a time column must be at most `max_lag_hours` before the partition's end."""

    column: str
    max_lag_hours: float


@dataclass(frozen=True, slots=True)
class Contract:
    """Declared guarantees of an asset's output (a table), checked before it is published.

    Args:
        columns: column name → `col(...)` rule; listed columns must exist.
        unique: columns whose combined values must be unique.
        rows: ``(min, max)`` row count bounds, None for no bound.
        max_duplicate_rate: the largest share of fully duplicated rows.
        freshness: a `Freshness` rule for a time column, relative to the partition window.
        warn: rule names that only warn instead of failing (e.g. ``["rows", "price.max_null_rate"]``).
    """

    columns: Mapping[str, Column] = field(default_factory=dict)
    unique: tuple[str, ...] = ()
    rows: tuple[int | None, int | None] = (None, None)
    max_duplicate_rate: float | None = None
    freshness: Freshness | None = None
    warn: tuple[str, ...] = ()

    def __init__(
        self,
        columns: Mapping[str, Column] | None = None,
        unique: Sequence[str] = (),
        rows: tuple[int | None, int | None] = (None, None),
        max_duplicate_rate: float | None = None,
        freshness: Freshness | None = None,
        warn: Sequence[str] = (),
    ) -> None:
        columns = dict(columns or {})
        for name, rule in columns.items():
            if not isinstance(rule, Column):
                raise DefinitionError(f"Contract column '{name}' must be a col(...) rule, got {rule!r}")
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "unique", tuple(unique))
        object.__setattr__(self, "rows", tuple(rows))
        object.__setattr__(self, "max_duplicate_rate", max_duplicate_rate)
        object.__setattr__(self, "freshness", freshness)
        object.__setattr__(self, "warn", tuple(warn))

    def blocking(self, rule: str) -> bool:
        return rule not in self.warn


@dataclass(frozen=True, slots=True)
class RuleResult:
    """The outcome of one rule or check on one output."""

    rule: str
    passed: bool
    blocking: bool
    observed: Any = None
    expected: Any = None
    sample: tuple[dict[str, Any], ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        text = f"{self.rule}: expected {self.expected}, observed {self.observed}"
        return text + (f"; sample of offending rows: {list(self.sample)}" if self.sample else "")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What a `@check` function may return instead of a bool: pass/fail, metrics, a message."""

    passed: bool
    metrics: Mapping[str, float] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True, slots=True)
class Drift:
    """A check comparing a column's distribution with the previous materialization (PSI ≤ `max_psi`)."""

    column: str
    max_psi: float = 0.2
    bins: int = 10
    blocking: bool = False


@dataclass(frozen=True, slots=True)
class CheckDef:
    """A custom test of an asset's output, defined with ``@check(asset, blocking=...)``."""

    name: str
    asset: str
    fn: Callable[..., Any] | None
    blocking: bool = True
    drift: Drift | None = None


def check(asset: str, *, blocking: bool = True, name: str | None = None) -> Callable[[Callable[..., Any]], CheckDef]:
    """Define a check on an asset's output: the function gets the output (and ``ctx`` if it asks) and
    returns a bool or a `CheckResult`. A blocking failure fails the step with `CheckFailed`."""

    def build(fn: Callable[..., Any]) -> CheckDef:
        return CheckDef(name or str(getattr(fn, "__name__", "check")), asset, fn, blocking)

    return build


def drift_check(asset: str, drift: Drift, name: str | None = None) -> CheckDef:
    """A `Drift` rule registered as a check of `asset` (``checks = [drift_check("features", Drift("x"))]``)."""
    return CheckDef(name or f"drift_{drift.column}", asset, None, drift.blocking, drift)
