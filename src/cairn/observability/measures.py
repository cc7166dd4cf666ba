"""Run and asset metrics over a window, computed from what runs recorded (nothing here is stored).

    runs, steps (+ CPU seconds, reused durations), tick latencies ──▶ RunMetrics, AssetMetrics ──▶ Report
                                                                        └──▶ value(rule) for an [[slo]] rule

A run counts towards the success ratio once it finished: ``succeeded`` and ``partial`` (nothing failed, some
data was not ready) are successes, ``failed`` and ``abandoned`` failures; ``cancelled`` (interrupted by hand)
and running runs are left out. Of an asset's steps, ``executed`` and ``cached`` succeed and ``failed`` fails;
``skipped`` steps (an upstream failed, or data was not ready) are not the asset's outcome and are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cairn.config import Settings, SloRule
from cairn.storage.observations import RunFact, StepFact

SUCCESS_RUNS = ("succeeded", "partial")
FAILED_RUNS = ("failed", "abandoned")
SUCCESS_STEPS = ("executed", "cached")


class MetricsReads(Protocol):
    """What metrics read from the metadata store."""

    def run_facts(self, since: float | None = None, until: float | None = None) -> list[RunFact]: ...

    def step_facts(
        self, since: float | None = None, until: float | None = None, run_ids: Sequence[str] | None = None
    ) -> list[StepFact]: ...

    def schedule_latencies(self, since: float | None = None, until: float | None = None) -> dict[str, float]: ...


@dataclass(frozen=True, slots=True)
class Summary:
    """The distribution of one metric's values."""

    count: int = 0
    total: float = 0.0
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "total": _round(self.total),
            "mean": _round(self.mean),
            "p50": _round(self.p50),
            "p95": _round(self.p95),
            "max": _round(self.max),
        }


def summarize(values: Iterable[float]) -> Summary:
    """Count, total, mean, median, 95th percentile (nearest rank) and maximum of some values."""
    ordered = sorted(values)
    if not ordered:
        return Summary()
    total = math.fsum(ordered)
    return Summary(len(ordered), total, total / len(ordered), _rank(ordered, 50), _rank(ordered, 95), ordered[-1])


def statistic(values: Sequence[float], stat: str) -> float | None:
    """One statistic of values in time order (``last`` is the newest); None without values."""
    if not values:
        return None
    if stat == "last":
        return values[-1]
    if stat == "sum":
        return math.fsum(values)
    if stat == "mean":
        return math.fsum(values) / len(values)
    if stat == "max":
        return max(values)
    return _rank(sorted(values), float(stat.removeprefix("p")))


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """One run's metrics."""

    run_id: str
    status: str
    created_at: float
    finished_at: float | None
    schedule_to_start_s: float | None  # from its tick, when a schedule or sensor started it
    cpu_s: float  # of the attempts that produced its results
    cost: float  # cpu_s at [costs] cpu_hour
    executed: int
    cached: int
    failed: int
    skipped: int
    cache_saved_s: float  # the recorded durations of the materializations its cached steps reused

    @property
    def duration_s(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.created_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "created_at": self.created_at,
            "duration_s": _round(self.duration_s),
            "schedule_to_start_s": _round(self.schedule_to_start_s),
            "cpu_s": _round(self.cpu_s),
            "cost": _round(self.cost),
            "executed": self.executed,
            "cached": self.cached,
            "failed": self.failed,
            "skipped": self.skipped,
            "cache_saved_s": _round(self.cache_saved_s),
        }


@dataclass(frozen=True, slots=True)
class AssetMetrics:
    """One asset's metrics over the steps of a window's runs."""

    asset: str
    executed: int
    cached: int
    failed: int
    skipped: int
    duration_s: Summary  # of its executed steps
    cpu_s: float
    cost: float
    cache_saved_s: float

    @property
    def success_ratio(self) -> float | None:
        return _ratio(self.executed + self.cached, self.failed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "executed": self.executed,
            "cached": self.cached,
            "failed": self.failed,
            "skipped": self.skipped,
            "success_ratio": _round(self.success_ratio),
            "duration_s": self.duration_s.to_dict(),
            "cpu_s": _round(self.cpu_s),
            "cost": _round(self.cost),
            "cache_saved_s": _round(self.cache_saved_s),
        }


@dataclass(frozen=True, slots=True)
class Report:
    """Metrics of the runs created in ``[since, until)``, per run and per asset."""

    since: float
    until: float
    runs: tuple[RunMetrics, ...]
    steps: tuple[StepFact, ...]
    cpu_hour: float = 0.0
    currency: str = ""

    @property
    def finished(self) -> list[RunMetrics]:
        return [r for r in self.runs if r.status in SUCCESS_RUNS or r.status in FAILED_RUNS]

    @property
    def success_ratio(self) -> float | None:
        ok = sum(1 for r in self.runs if r.status in SUCCESS_RUNS)
        return _ratio(ok, sum(1 for r in self.runs if r.status in FAILED_RUNS))

    def assets(self) -> list[AssetMetrics]:
        """Per asset, in name order."""
        by_asset: dict[str, list[StepFact]] = {}
        for step in self.steps:
            by_asset.setdefault(step.asset, []).append(step)
        return [_asset_metrics(name, steps, self.cpu_hour) for name, steps in sorted(by_asset.items())]

    def value(self, rule: SloRule) -> float | None:
        """What `rule` measures over this report's runs (the caller picks the report's window); None without data."""
        if rule.asset is not None:
            steps = [s for s in self.steps if s.asset == rule.asset]
            if rule.metric == "success_ratio":
                ok = sum(1 for s in steps if s.status in SUCCESS_STEPS)
                return _ratio(ok, sum(1 for s in steps if s.status == "failed"))
            return statistic(_step_values(steps, rule.metric, self.cpu_hour), rule.stat)
        if rule.metric == "success_ratio":
            return self.success_ratio
        runs = self.runs if rule.metric == "schedule_to_start_s" else self.finished  # a running run has started
        return statistic(_run_values(runs, rule.metric), rule.stat)

    def since_time(self, since: float) -> Report:
        """The same report narrowed to the runs created at or after `since` (a rule's shorter window)."""
        runs = tuple(r for r in self.runs if r.created_at >= since)
        kept = {r.run_id for r in runs}
        steps = tuple(s for s in self.steps if s.run_id in kept)
        return Report(max(since, self.since), self.until, runs, steps, self.cpu_hour, self.currency)

    def to_dict(self) -> dict[str, Any]:
        finished = self.finished
        return {
            "from": self.since,
            "to": self.until,
            "window_s": _round(self.until - self.since),
            "runs": {
                "count": len(self.runs),
                "finished": len(finished),
                "succeeded": sum(1 for r in self.runs if r.status in SUCCESS_RUNS),
                "failed": sum(1 for r in self.runs if r.status in FAILED_RUNS),
                "success_ratio": _round(self.success_ratio),
                "duration_s": summarize(_run_values(finished, "duration_s")).to_dict(),
                "schedule_to_start_s": summarize(_run_values(self.runs, "schedule_to_start_s")).to_dict(),
                "cpu_s": summarize(_run_values(finished, "cpu_s")).to_dict(),
                "cost": summarize(_run_values(finished, "cost")).to_dict(),
                "cpu_hour": self.cpu_hour,
                "currency": self.currency,
                "cached_steps": sum(r.cached for r in self.runs),
                "cache_saved_s": _round(math.fsum(r.cache_saved_s for r in self.runs)),
            },
            "assets": [a.to_dict() for a in self.assets()],
            "run_list": [r.to_dict() for r in self.runs],
        }


def build_report(
    runs: Sequence[RunFact],
    steps: Sequence[StepFact],
    latencies: Mapping[str, float],
    since: float,
    until: float,
    cpu_hour: float = 0.0,
    currency: str = "",
) -> Report:
    """Turn the recorded facts of a window into its metrics (a pure function)."""
    by_run: dict[str, list[StepFact]] = {}
    for step in steps:
        by_run.setdefault(step.run_id, []).append(step)
    metrics = []
    for run in runs:
        mine = by_run.get(run.run_id, [])
        counts = {status: sum(1 for s in mine if s.status == status) for status in _STEP_STATUSES}
        cpu = math.fsum(s.cpu_s or 0.0 for s in mine)
        metrics.append(
            RunMetrics(
                run.run_id,
                run.status,
                run.created_at,
                run.finished_at,
                latencies.get(run.run_id),
                cpu,
                cost(cpu, cpu_hour),
                counts["executed"],
                counts["cached"],
                counts["failed"],
                counts["skipped"],
                math.fsum(s.saved_s or 0.0 for s in mine if s.status == "cached"),
            )
        )
    known = {run.run_id for run in runs}
    return Report(since, until, tuple(metrics), tuple(s for s in steps if s.run_id in known), cpu_hour, currency)


def collect(meta: MetricsReads, settings: Settings, since: float, until: float) -> Report:
    """The report of the runs created in ``[since, until)``: three reads."""
    return build_report(
        meta.run_facts(since, until),
        meta.step_facts(since, until),
        meta.schedule_latencies(since, until),
        since,
        until,
        settings.cpu_hour,
        settings.currency,
    )


def cost(cpu_s: float, cpu_hour: float) -> float:
    """The price of CPU seconds at a price per CPU-hour."""
    return cpu_s / 3600.0 * cpu_hour


_STEP_STATUSES = ("executed", "cached", "failed", "skipped")


def _asset_metrics(name: str, steps: list[StepFact], cpu_hour: float) -> AssetMetrics:
    executed = [s for s in steps if s.status == "executed"]
    cpu = math.fsum(s.cpu_s or 0.0 for s in executed)
    return AssetMetrics(
        name,
        len(executed),
        sum(1 for s in steps if s.status == "cached"),
        sum(1 for s in steps if s.status == "failed"),
        sum(1 for s in steps if s.status == "skipped"),
        summarize(s.duration_s for s in executed if s.duration_s is not None),
        cpu,
        cost(cpu, cpu_hour),
        math.fsum(s.saved_s or 0.0 for s in steps if s.status == "cached"),
    )


def _run_values(runs: Iterable[RunMetrics], metric: str) -> list[float]:
    values = (getattr(run, metric) for run in runs)
    return [float(v) for v in values if v is not None]


def _step_values(steps: Iterable[StepFact], metric: str, cpu_hour: float) -> list[float]:
    """An asset's per-step values of a metric: of executed steps, except the savings of cached ones."""
    if metric == "cache_saved_s":
        return [s.saved_s or 0.0 for s in steps if s.status == "cached"]
    executed = [s for s in steps if s.status == "executed"]
    if metric == "duration_s":
        return [s.duration_s for s in executed if s.duration_s is not None]
    cpu = [s.cpu_s for s in executed if s.cpu_s is not None]
    return cpu if metric == "cpu_s" else [cost(c, cpu_hour) for c in cpu]


def _rank(ordered: Sequence[float], percentile: float) -> float:
    return ordered[max(0, math.ceil(percentile / 100.0 * len(ordered)) - 1)]


def _ratio(ok: int, failed: int) -> float | None:
    return ok / (ok + failed) if ok + failed else None


def _round(value: float | None) -> float | None:
    """Ten significant digits: what JSON shows of a value (a cost per run can be a few millionths)."""
    return None if value is None else float(f"{value:.10g}")
