"""Validation gates of model assets: ``@gate(model)`` definitions, what a gate sees and returns, the ready-made
gates (metric thresholds, no regression against the champion, segment regressions, size and latency budgets).

A gate runs in the step job after the model asset's function and checks, on the candidate (the value the
asset returned) and a `GateContext`; its result is recorded with the materialization under ``"cairn.gates"``.
A failing gate never fails the step: training makes a candidate, and a failed blocking gate only blocks its
promotion. The clock a latency budget reads is a parameter of the context, so this module has none.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cairn.core.asset import AssetDef
from cairn.errors import DefinitionError

GATES_METADATA = "cairn.gates"  # the materialization's metadata key; the registry reads it
SEGMENT_SEPARATOR = ":"  # a segment metric is named "<metric>:<segment>", e.g. "auc:new_users"

Loader = Callable[[], Any]
Evaluate = Callable[[Any, "GateContext"], "Mapping[str, float] | float"]


@dataclass(frozen=True, slots=True)
class GateResult:
    """What a gate returns (a bare bool is ``GateResult(passed)``): pass/fail, the numbers it saw, a sentence."""

    passed: bool
    metrics: Mapping[str, float] = field(default_factory=dict)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class GateDef:
    """A validation gate of a model asset, defined with ``@gate(model, blocking=...)``."""

    name: str
    asset: str
    fn: Callable[..., Any]
    blocking: bool = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the gate function directly (for unit tests of pipeline code)."""
        return self.fn(*args, **kwargs)


class GateContext:
    """What a gate sees besides the candidate.

    Attributes:
        asset, partition: the model asset's step.
        metrics: the candidate's metrics, as the asset logged them with ``ctx.log_metric``.
        metadata: what the asset added with ``ctx.add_metadata``.
        params: the model asset's params.
        inputs: the model asset's own loaded inputs by parameter name (the test window, for instance), so that
            a gate can evaluate the champion on the same data as the candidate.
        champion_metrics: the champion's recorded metrics; empty when there is no champion.
        champion_version: the champion's data version, None when there is none.
        size_bytes: the serialized size of the candidate (every file of a `cairn.Files` folder counted).
        clock: seconds of a monotonic clock (``time.perf_counter`` in a step), read by latency budgets.
    """

    def __init__(
        self,
        *,
        asset: str = "",
        partition: str = "",
        metrics: Mapping[str, float] | None = None,
        metadata: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        champion: Loader | None = None,
        champion_metrics: Mapping[str, float] | None = None,
        champion_version: str | None = None,
        size_bytes: int | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.asset = asset
        self.partition = partition
        self.metrics: Mapping[str, float] = dict(metrics or {})
        self.metadata: Mapping[str, Any] = dict(metadata or {})
        self.params: Mapping[str, Any] = dict(params or {})
        self.inputs: Mapping[str, Any] = dict(inputs or {})
        self.champion_metrics: Mapping[str, float] = dict(champion_metrics or {}) if champion is not None else {}
        self.champion_version = champion_version if champion is not None else None
        self.size_bytes = size_bytes
        self.clock = clock
        self._load_champion = champion
        self._champion: Any = None
        self._champion_loaded = False

    @property
    def has_champion(self) -> bool:
        """Whether the model has a champion to compare with (without loading it)."""
        return self._load_champion is not None

    @property
    def champion(self) -> Any:
        """The current champion's value, loaded (checksum-verified) on first access; None without a champion."""
        if self._load_champion is None:
            return None
        if not self._champion_loaded:
            self._champion = self._load_champion()
            self._champion_loaded = True
        return self._champion


def gate(
    model: str | AssetDef, *, blocking: bool = True, name: str | None = None
) -> Callable[[Callable[..., Any]], GateDef]:
    """Define a validation gate of a ``kind="model"`` asset.

    The function gets the candidate (the value the asset returned; a `cairn.Files` as its `pathlib.Path`, as
    `cairn.load` gives it back) and a `GateContext`, and returns a `GateResult` or a bool. Decorate a function
    (``@gate("model")``) or wrap a ready-made gate (``gate("model")(metric_threshold("auc", min=0.7))``).

    Args:
        model: the model asset's name (or its `AssetDef`).
        blocking: a failed blocking gate blocks the candidate's promotion; a non-blocking one informs it.
        name: the name results are recorded under; by default the function's name, or for a ready-made gate
            its kind and metric (``metric_threshold:auc``). Names are unique per model.
    """
    if isinstance(model, AssetDef):
        if model.kind != "model":
            raise DefinitionError(_not_a_model(name or "gate", model.name, model.kind))
        model = model.name
    if not isinstance(model, str) or not model:
        raise DefinitionError(f"gate(model): model must be the name of a kind='model' asset, got {model!r}")

    def build(fn: Callable[..., Any]) -> GateDef:
        if not callable(fn):
            raise DefinitionError(f"gate('{model}') wraps a function or a ready-made gate, got {fn!r}")
        default = fn.default_name() if isinstance(fn, ReadyGate) else str(getattr(fn, "__name__", "gate"))
        return GateDef(name or default, model, fn, bool(blocking))

    return build


def run_gate(definition: GateDef, candidate: Any, ctx: GateContext) -> GateResult:
    """Call a gate and turn any outcome into a `GateResult`: a gate that raises, or returns something other
    than a bool or a `GateResult`, has failed, with the reason in its detail."""
    try:
        outcome = definition.fn(*_arguments(definition.fn, candidate, ctx))
    except Exception as exc:
        return GateResult(False, {}, f"the gate raised {type(exc).__name__}: {exc}")
    if isinstance(outcome, GateResult):
        return outcome
    if isinstance(outcome, bool) or (type(outcome).__module__ == "numpy" and type(outcome).__name__ in _NP_BOOLS):
        return GateResult(bool(outcome))
    return GateResult(False, {}, f"the gate returned {type(outcome).__name__}; return a bool or a GateResult")


def gate_record(definition: GateDef, result: GateResult) -> dict[str, Any]:
    """One entry of ``metadata["cairn.gates"]``: ``{"gate", "passed", "blocking", "metrics", "detail"}``, JSON-able
    (a metric that is not a finite number is recorded as null)."""
    return {
        "gate": definition.name,
        "passed": bool(result.passed),
        "blocking": definition.blocking,
        "metrics": {str(k): _finite(v) for k, v in result.metrics.items()},
        "detail": str(result.detail),
    }


def gate_material(definition: GateDef) -> tuple[list[Any], tuple[Callable[..., Any], ...]]:
    """What of a gate belongs to its model's code version: its settings as plain values, and the functions
    whose code counts (the gate function; for a ready-made gate, the callables it was given)."""
    if isinstance(definition.fn, ReadyGate):
        return [definition.blocking, *definition.fn.describe()], definition.fn.functions()
    return [definition.blocking], (definition.fn,)


def check_gates(asset: AssetDef, gates: Sequence[GateDef]) -> None:
    """Gates apply to model assets only, under names unique per model."""
    for g in gates:
        if asset.kind != "model":
            raise DefinitionError(_not_a_model(g.name, asset.name, asset.kind))
    names = [g.name for g in gates]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DefinitionError(
            f"model '{asset.name}' has more than one gate named {', '.join(map(repr, twice))}; results are "
            "recorded by name, so give each its own with gate(model, name=...)"
        )


def _not_a_model(gate_name: str, asset: str, kind: str) -> str:
    return (
        f"gate '{gate_name}' is defined for asset '{asset}', which is kind={kind!r}; gates validate model assets: "
        f"declare it with @asset(kind='model'), or test a data asset with @check('{asset}')"
    )


# ---- ready-made gates ---------------------------------------------------------------------------------------


class ReadyGate:
    """A ready-made gate: a callable ``(candidate, ctx) -> GateResult`` whose settings are plain values, so
    that they enter the model's code version (a changed threshold makes the gate results stale)."""

    __slots__ = ()
    kind: ClassVar[str] = "gate"

    def __call__(self, candidate: Any, ctx: GateContext) -> GateResult:
        raise NotImplementedError

    def default_name(self) -> str:
        return self.kind

    def describe(self) -> list[Any]:
        """The settings as plain values (a callable by its qualified name)."""
        raise NotImplementedError

    def functions(self) -> tuple[Callable[..., Any], ...]:
        """The callables the gate was given, whose code counts in the model's code version."""
        return ()


@dataclass(frozen=True, slots=True)
class MetricThreshold(ReadyGate):
    """Passes when a metric the model asset logged lies within ``[min, max]``."""

    kind: ClassVar[str] = "metric_threshold"
    metric: str
    min: float | None = None
    max: float | None = None

    def default_name(self) -> str:
        return f"{self.kind}:{self.metric}"

    def describe(self) -> list[Any]:
        return [self.kind, self.metric, self.min, self.max]

    def __call__(self, candidate: Any, ctx: GateContext) -> GateResult:
        value = ctx.metrics.get(self.metric)
        if value is None:
            return GateResult(False, {}, _not_logged(self.metric, ctx.metrics))
        low_ok = self.min is None or value >= self.min
        high_ok = self.max is None or value <= self.max
        passed = low_ok and high_ok and not math.isnan(value)
        bounds = " and ".join(
            f"{op} {bound:g}" for op, bound in ((">=", self.min), ("<=", self.max)) if bound is not None
        )
        verdict = "meets" if passed else "does not meet"
        return GateResult(passed, {self.metric: value}, f"{self.metric} = {value:g} {verdict} {bounds}")


def metric_threshold(metric: str, min: float | None = None, max: float | None = None) -> MetricThreshold:
    """A gate on a logged metric: ``gate("model")(metric_threshold("val_auc", min=0.7))``."""
    if min is None and max is None:
        raise DefinitionError(f"metric_threshold('{metric}') needs min=, max= or both")
    for bound in (min, max):
        if bound is not None and not _is_number(bound):
            raise DefinitionError(f"metric_threshold('{metric}'): bounds must be numbers, got {bound!r}")
    return MetricThreshold(_metric_name(metric, "metric_threshold"), _opt_float(min), _opt_float(max))


@dataclass(frozen=True, slots=True)
class NoRegression(ReadyGate):
    """Passes when the candidate's metric is no worse than the champion's by more than `tolerance`."""

    kind: ClassVar[str] = "no_regression"
    metric: str
    tolerance: float = 0.0
    higher_is_better: bool = True
    evaluate: Evaluate | None = None

    def default_name(self) -> str:
        return f"{self.kind}:{self.metric}"

    def describe(self) -> list[Any]:
        return [self.kind, self.metric, self.tolerance, self.higher_is_better, _callable_name(self.evaluate)]

    def functions(self) -> tuple[Callable[..., Any], ...]:
        return (self.evaluate,) if self.evaluate is not None else ()

    def __call__(self, candidate: Any, ctx: GateContext) -> GateResult:
        mine = _measured(self.evaluate, candidate, ctx, ctx.metrics, self.metric)
        value = mine.get(self.metric)
        if value is None:
            return GateResult(False, {}, _not_logged(self.metric, mine, self.evaluate is not None))
        if not ctx.has_champion:
            return GateResult(True, {self.metric: value}, "no champion to compare with")
        theirs = _champions(self.evaluate, ctx, self.metric)
        champion = theirs.get(self.metric)
        if champion is None:
            return GateResult(False, {self.metric: value}, _champion_lacks(self.metric, ctx, self.evaluate is not None))
        delta = value - champion
        passed = _no_worse(delta, self.tolerance, self.higher_is_better)
        metrics = {self.metric: value, "champion": champion, "delta": delta}
        where = "on the same inputs" if self.evaluate is not None else "as logged"
        verdict = "no regression" if passed else "regressed"
        detail = (
            f"{self.metric} {value:g} vs champion {champion:g} {where} "
            f"(delta {delta:+g}, tolerance {self.tolerance:g}): {verdict}"
        )
        return GateResult(passed, metrics, detail)


def no_regression(
    metric: str, tolerance: float = 0.0, higher_is_better: bool = True, *, evaluate: Evaluate | None = None
) -> NoRegression:
    """A gate comparing a metric with the current champion's; it passes when there is no champion.

    Args:
        metric: the metric compared.
        tolerance: how much worse than the champion the candidate may be.
        higher_is_better: False for losses and errors.
        evaluate: ``evaluate(model, ctx) -> {metric: value}`` (or one number) computes the metric for the
            candidate and for the champion alike, on ``ctx.inputs``: both on the same test window. Without it,
            the candidate's logged metrics are compared with the champion's recorded ones.
    """
    _check_tolerance(metric, tolerance)
    _check_callable(evaluate, "no_regression", "evaluate")
    return NoRegression(_metric_name(metric, "no_regression"), float(tolerance), bool(higher_is_better), evaluate)


@dataclass(frozen=True, slots=True)
class SegmentRegression(ReadyGate):
    """Passes when no segment's metric is worse than the champion's same segment by more than `tolerance`."""

    kind: ClassVar[str] = "segment_regression"
    metrics_key: str
    tolerance: float = 0.0
    higher_is_better: bool = True
    segments: tuple[str, ...] | None = None
    evaluate: Evaluate | None = None

    def default_name(self) -> str:
        return f"{self.kind}:{self.metrics_key}"

    def describe(self) -> list[Any]:
        segments = list(self.segments) if self.segments is not None else None
        return [
            self.kind,
            self.metrics_key,
            self.tolerance,
            self.higher_is_better,
            segments,
            _callable_name(self.evaluate),
        ]

    def functions(self) -> tuple[Callable[..., Any], ...]:
        return (self.evaluate,) if self.evaluate is not None else ()

    def __call__(self, candidate: Any, ctx: GateContext) -> GateResult:
        mine = segment_metrics(
            _measured(self.evaluate, candidate, ctx, ctx.metrics, self.metrics_key), self.metrics_key
        )
        wanted = self.segments if self.segments is not None else tuple(sorted(mine))
        missing = [s for s in wanted if s not in mine]
        if not wanted or missing:
            return GateResult(False, _named(self.metrics_key, mine), self._no_segments(missing))
        if not ctx.has_champion:
            return GateResult(True, _named(self.metrics_key, mine), "no champion to compare with")
        theirs = segment_metrics(_champions(self.evaluate, ctx, self.metrics_key), self.metrics_key)
        compared = [s for s in wanted if s in theirs]
        if self.segments is None:  # a segment the champion was measured on must not disappear
            gone = sorted(s for s in theirs if s not in mine)
            if gone:
                return GateResult(False, _named(self.metrics_key, mine), self._no_segments(gone, "the champion has"))
        if not compared:
            what = self._metric_names(wanted)
            return GateResult(
                False, _named(self.metrics_key, mine), _champion_lacks(what, ctx, self.evaluate is not None)
            )
        metrics: dict[str, float] = {}
        regressed: list[str] = []
        for segment in compared:
            delta = mine[segment] - theirs[segment]
            metrics[f"{self.metrics_key}{SEGMENT_SEPARATOR}{segment}"] = mine[segment]
            metrics[f"delta{SEGMENT_SEPARATOR}{segment}"] = delta
            if not _no_worse(delta, self.tolerance, self.higher_is_better):
                regressed.append(f"{segment} {mine[segment]:g} vs {theirs[segment]:g} ({delta:+g})")
        new = [s for s in wanted if s not in theirs]
        extra = f"; not measured for the champion: {', '.join(new)}" if new else ""
        if regressed:
            detail = f"{self.metrics_key} regressed beyond {self.tolerance:g} in: {'; '.join(regressed)}{extra}"
        else:
            detail = (
                f"{self.metrics_key}: no segment regressed beyond {self.tolerance:g} ({', '.join(compared)}){extra}"
            )
        return GateResult(not regressed, metrics, detail)

    def _metric_names(self, segments: Sequence[str]) -> str:
        return ", ".join(f"{self.metrics_key}{SEGMENT_SEPARATOR}{s}" for s in segments) or f"{self.metrics_key}:*"

    def _no_segments(self, missing: Sequence[str], who: str = "the candidate lacks") -> str:
        if missing:
            return (
                f"{who} segment metrics {self._metric_names(missing)}"
                + ("" if who.startswith("the candidate") else ", which the candidate lacks")
                + f"; log each with ctx.log_metric('{self.metrics_key}{SEGMENT_SEPARATOR}<segment>', value)"
            )
        return (
            f"no segment metrics named '{self.metrics_key}{SEGMENT_SEPARATOR}<segment>' were logged; log them with "
            f"ctx.log_metric('{self.metrics_key}{SEGMENT_SEPARATOR}new_users', value)"
        )


def segment_regression(
    metrics_key: str,
    tolerance: float = 0.0,
    higher_is_better: bool = True,
    *,
    segments: Sequence[str] | None = None,
    evaluate: Evaluate | None = None,
) -> SegmentRegression:
    """A gate comparing a metric per segment with the champion's; it passes when there is no champion.

    Segments are metrics named ``"<metrics_key>:<segment>"``: an asset that logs ``auc:new_users`` and
    ``auc:returning_users`` has two segments of ``auc``. Every segment the champion has must still be there.

    Args:
        metrics_key: the metric measured per segment (``"auc"``; ``"segment"`` for metrics ``segment:<name>``).
        tolerance: how much worse than the champion a segment may be.
        higher_is_better: False for losses and errors.
        segments: the segments compared (each must be logged); by default every segment logged.
        evaluate: as for `no_regression`: ``evaluate(model, ctx) -> {"auc:new_users": value, ...}`` measures the
            candidate and the champion alike on ``ctx.inputs``.
    """
    _check_tolerance(metrics_key, tolerance)
    _check_callable(evaluate, "segment_regression", "evaluate")
    chosen = None if segments is None else tuple(_strings(segments, "segment_regression", "segments"))
    if chosen is not None and not chosen:
        raise DefinitionError(f"segment_regression('{metrics_key}', segments=[]): name at least one segment")
    key = _metric_name(metrics_key, "segment_regression")
    return SegmentRegression(key, float(tolerance), bool(higher_is_better), chosen, evaluate)


def segment_metrics(metrics: Mapping[str, float], metrics_key: str) -> dict[str, float]:
    """The segments of one metric: ``{"auc:new_users": 0.7, "auc": 0.8}`` → ``{"new_users": 0.7}``."""
    prefix = metrics_key + SEGMENT_SEPARATOR
    return {name[len(prefix) :]: float(v) for name, v in metrics.items() if name.startswith(prefix) and v is not None}


@dataclass(frozen=True, slots=True)
class SizeBudget(ReadyGate):
    """Passes when the serialized candidate is at most `max_bytes` (every file of a `cairn.Files` folder)."""

    kind: ClassVar[str] = "size_budget"
    max_bytes: int

    def describe(self) -> list[Any]:
        return [self.kind, self.max_bytes]

    def __call__(self, candidate: Any, ctx: GateContext) -> GateResult:
        if ctx.size_bytes is None:
            return GateResult(False, {}, "the candidate's serialized size is not known (the gate ran outside a step)")
        size = ctx.size_bytes
        passed = size <= self.max_bytes
        metrics = {"bytes": float(size), "max_bytes": float(self.max_bytes)}
        return GateResult(passed, metrics, f"{size:,} bytes {'<=' if passed else '>'} budget {self.max_bytes:,}")


def size_budget(max_bytes: int) -> SizeBudget:
    """A gate on the candidate's serialized size: ``gate("model")(size_budget(20 * 2**20))``."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise DefinitionError(f"size_budget({max_bytes!r}): max_bytes must be a whole number of bytes, at least 0")
    return SizeBudget(max_bytes)


@dataclass(frozen=True, slots=True)
class LatencyBudget(ReadyGate):
    """Passes when predicting one batch takes at most `max_ms` milliseconds (the median of `repeats` timed
    calls, after one untimed warm-up call)."""

    kind: ClassVar[str] = "latency_budget"
    max_ms: float
    batch: str | Callable[[GateContext], Any]
    predict: str | Callable[[Any, Any], Any] = "predict"
    repeats: int = 5
    load: Callable[[Any], Any] | None = None

    def describe(self) -> list[Any]:
        return [
            self.kind,
            self.max_ms,
            _callable_name(self.batch),
            _callable_name(self.predict),
            self.repeats,
            _callable_name(self.load),
        ]

    def functions(self) -> tuple[Callable[..., Any], ...]:
        return tuple(f for f in (self.batch, self.predict, self.load) if callable(f))

    def __call__(self, candidate: Any, ctx: GateContext) -> GateResult:
        clock = ctx.clock
        if clock is None:
            return GateResult(False, {}, "no clock to time with: give GateContext(clock=time.perf_counter)")
        if isinstance(self.batch, str):
            if self.batch not in ctx.inputs:
                known = ", ".join(ctx.inputs) or "none"
                return GateResult(False, {}, f"batch='{self.batch}' is not an input of the model (inputs: {known})")
            batch = ctx.inputs[self.batch]
        else:
            batch = self.batch(ctx)
        model = self.load(candidate) if self.load is not None else candidate
        if isinstance(self.predict, str):
            method = getattr(model, self.predict, None)
            if not callable(method):
                return GateResult(
                    False,
                    {},
                    f"the model ({type(model).__name__}) has no method '{self.predict}'; name one with predict=, "
                    "pass predict=callable(model, batch), or turn the candidate into a model with load=",
                )
            predict: Callable[..., Any] = method
            args: tuple[Any, ...] = (batch,)
        else:
            predict, args = self.predict, (model, batch)
        predict(*args)  # warm-up: caches, lazy initialization and imports are not the latency being budgeted
        times = []
        for _ in range(self.repeats):
            start = clock()
            predict(*args)
            times.append((clock() - start) * 1000.0)
        times.sort()
        median = _median(times)
        metrics = {"latency_ms": median, "latency_ms_worst": times[-1], "repeats": float(self.repeats)}
        rows = _length(batch)
        if rows is not None:
            metrics["batch_rows"] = float(rows)
        passed = median <= self.max_ms
        of = f" of {rows} rows" if rows is not None else ""
        detail = f"median {median:.3g} ms per batch{of} {'<=' if passed else '>'} budget {self.max_ms:g} ms"
        return GateResult(passed, metrics, detail)


def latency_budget(
    max_ms: float,
    batch: str | Callable[[GateContext], Any],
    predict: str | Callable[[Any, Any], Any] = "predict",
    repeats: int = 5,
    *,
    load: Callable[[Any], Any] | None = None,
) -> LatencyBudget:
    """A gate on the time to predict one batch: ``latency_budget(50, batch="test_features")``.

    Args:
        max_ms: the budget for the median batch, in milliseconds.
        batch: the name of one of the model asset's inputs, or ``batch(ctx) -> batch`` (a slice of the test window).
        predict: the model's method to call with the batch, or ``predict(model, batch)``.
        repeats: timed calls (the median is compared); one untimed warm-up call comes first.
        load: ``load(candidate) -> model``, called once and not timed, when the stored value is not the
            predictor itself (a `cairn.Files` folder holding the model file, say).
    """
    if not _is_number(max_ms) or max_ms <= 0:
        raise DefinitionError(f"latency_budget(max_ms={max_ms!r}): the budget must be a positive number of ms")
    if not (isinstance(batch, str) and batch) and not callable(batch):
        raise DefinitionError(
            f"latency_budget(batch={batch!r}): name one of the model's inputs or give a function batch(ctx)"
        )
    if not (isinstance(predict, str) and predict) and not callable(predict):
        raise DefinitionError(f"latency_budget(predict={predict!r}): give a method name or a function (model, batch)")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise DefinitionError(f"latency_budget(repeats={repeats!r}): repeats must be a whole number, at least 1")
    _check_callable(load, "latency_budget", "load")
    return LatencyBudget(float(max_ms), batch, predict, repeats, load)


# ---- helpers ------------------------------------------------------------------------------------------------

_NP_BOOLS = ("bool", "bool_")  # numpy 2 and numpy 1 names of numpy's boolean scalar


def _arguments(fn: Callable[..., Any], candidate: Any, ctx: GateContext) -> tuple[Any, ...]:
    """``(candidate, ctx)``, or the candidate alone for a function of one parameter."""
    if isinstance(fn, ReadyGate):
        return (candidate, ctx)
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return (candidate, ctx)
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return (candidate, ctx)
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return (candidate,) if len(positional) == 1 else (candidate, ctx)


def _measured(
    evaluate: Evaluate | None, model: Any, ctx: GateContext, recorded: Mapping[str, float], metric: str
) -> Mapping[str, float]:
    """A model's metrics: computed by `evaluate` on the context's inputs (one number is `metric`), or the
    recorded ones."""
    if evaluate is None:
        return recorded
    found = evaluate(model, ctx)
    if isinstance(found, Mapping):
        return {str(k): float(v) for k, v in found.items() if v is not None}
    return {metric: float(found)}


def _champions(evaluate: Evaluate | None, ctx: GateContext, metric: str) -> Mapping[str, float]:
    """The champion's metrics: its recorded ones, or measured by `evaluate` (the only case that loads it)."""
    if evaluate is None:
        return ctx.champion_metrics
    return _measured(evaluate, ctx.champion, ctx, {}, metric)


def _no_worse(delta: float, tolerance: float, higher_is_better: bool) -> bool:
    if math.isnan(delta):
        return False
    return delta >= -tolerance if higher_is_better else delta <= tolerance


def _not_logged(metric: str, metrics: Mapping[str, float], evaluated: bool = False) -> str:
    if evaluated:
        return (
            f"evaluate= returned no metric '{metric}' for the candidate (it returned: {', '.join(metrics) or 'none'})"
        )
    return (
        f"metric '{metric}' was not logged by the model asset; log it with ctx.log_metric('{metric}', value) "
        f"(logged: {', '.join(sorted(metrics)) or 'none'})"
    )


def _champion_lacks(metric: str, ctx: GateContext, evaluated: bool) -> str:
    version = f" ({ctx.champion_version})" if ctx.champion_version else ""
    if evaluated:
        return f"evaluate= returned no {metric} for the champion{version}"
    return (
        f"the champion{version} has no recorded {metric} to compare with; measure both on the same inputs "
        "with evaluate="
    )


def _named(key: str, segments: Mapping[str, float]) -> dict[str, float]:
    return {f"{key}{SEGMENT_SEPARATOR}{s}": v for s, v in segments.items()}


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _median(sorted_values: Sequence[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


def _length(batch: Any) -> int | None:
    try:
        return len(batch)
    except TypeError:
        return None


def _callable_name(value: Any) -> Any:
    """A setting as a plain value: a callable by where it is defined, anything else as it is."""
    if value is None or isinstance(value, str):
        return value
    code = getattr(value, "__code__", None)
    module = getattr(value, "__module__", None) or "?"
    qualname = getattr(code, "co_qualname", None) or getattr(value, "__qualname__", type(value).__qualname__)
    return f"{module}.{qualname}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _metric_name(metric: Any, where: str) -> str:
    if not isinstance(metric, str) or not metric:
        raise DefinitionError(f"{where}({metric!r}): name the metric, e.g. {where}('auc', ...)")
    return metric


def _check_tolerance(metric: str, tolerance: Any) -> None:
    if not _is_number(tolerance) or tolerance < 0:
        raise DefinitionError(f"gate on '{metric}': tolerance={tolerance!r} must be a number, at least 0")


def _check_callable(value: Any, where: str, option: str) -> None:
    if value is not None and not callable(value):
        raise DefinitionError(f"{where}({option}={value!r}): {option}= must be a function")


def _strings(values: Sequence[str], where: str, option: str) -> list[str]:
    if isinstance(values, str):
        return [values]
    out = list(values)
    if not all(isinstance(v, str) and v for v in out):
        raise DefinitionError(f"{where}({option}={out!r}): {option}= must be a list of names")
    return out
