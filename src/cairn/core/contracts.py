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
    reference: str = ""  # what a drift check compared with

    def describe(self) -> str:
        against = f" against {self.reference}" if self.reference else ""
        text = f"{self.rule}: expected {self.expected}{against}, observed {self.observed}"
        return text + (f"; sample of offending rows: {list(self.sample)}" if self.sample else "")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What a `@check` function may return instead of a bool: pass/fail, metrics, a message."""

    passed: bool
    metrics: Mapping[str, float] = field(default_factory=dict)
    message: str = ""


PREVIOUS = "previous"
PREVIOUS_PARTITION = "previous_partition"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A drift reference: the asset's version pinned in the snapshot `name` (``cairn snapshot create``)."""

    name: str

    def __str__(self) -> str:
        return f"snapshot:{self.name}"


@dataclass(frozen=True, slots=True)
class Trailing:
    """A drift reference: the `partitions` partitions before this one along the time dimension, pooled."""

    partitions: int

    def __post_init__(self) -> None:
        if isinstance(self.partitions, bool) or not isinstance(self.partitions, int) or self.partitions < 1:
            raise DefinitionError(f"Trailing({self.partitions!r}): the window must be a whole number of at least 1")

    def __str__(self) -> str:
        return f"trailing:{self.partitions}"


DriftReference = str | Snapshot | Trailing
_REFERENCES = (PREVIOUS_PARTITION, PREVIOUS, "snapshot:NAME", "trailing:N", 'Snapshot("NAME")', "Trailing(N)")


@dataclass(frozen=True, slots=True)
class Drift:
    """A check comparing a column's distribution with a reference (PSI ≤ `max_psi`).

    Args:
        column: the column compared.
        max_psi: the largest population stability index that passes.
        bins: the number of quantile bins for a numeric column.
        blocking: whether a failure fails the step (`ContractViolation`) instead of warning.
        reference: what the output is compared with. ``"previous_partition"`` (the default): the latest
            materialization of the partition before this one along the time dimension (same static key for a
            product), nothing to compare for the first partition; an asset without a time dimension compares
            with its own previous materialization. ``"previous"``: this partition's own previous
            materialization. ``Snapshot("NAME")`` / ``"snapshot:NAME"``: the version pinned in a snapshot (the
            same partition, or every pinned partition of the asset pooled when this one is not pinned).
            ``Trailing(7)`` / ``"trailing:7"``: the 7 partitions before this one, pooled.
    """

    column: str
    max_psi: float = 0.2
    bins: int = 10
    blocking: bool = False
    reference: DriftReference = PREVIOUS_PARTITION

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference", drift_reference(self.reference))


def drift_reference(value: DriftReference) -> DriftReference:
    """A drift reference in its one form: ``"previous"``, ``"previous_partition"``, `Snapshot` or `Trailing`."""
    if isinstance(value, Snapshot | Trailing) or value in (PREVIOUS, PREVIOUS_PARTITION):
        return value
    if isinstance(value, str):
        kind, sep, arg = value.partition(":")
        if sep and kind == "snapshot" and arg:
            return Snapshot(arg)
        if sep and kind == "trailing" and arg.isdigit():
            return Trailing(int(arg))
    raise DefinitionError(f"Drift(reference={value!r}) is not a drift reference; use one of {', '.join(_REFERENCES)}")


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
