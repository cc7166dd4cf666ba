"""Parameter sweeps: a grid of param overrides run as tracked trials (one run each), ranked by a metric.

    grid ─▶ trials (cartesian product, in grid order) ─▶ one run per trial, args["sweep"] = {id, trial, ...}
                                                          (what trials share upstream is one cache hit)
    sweep id ─▶ the runs recorded with it ─▶ per trial: status, params, seed, input data versions, metrics
                                          ─▶ ranked by the selection metric; the best one reported on a held-out one

A sweep has no table of its own: each trial is an ordinary run whose arguments record the sweep id, the
trial's params and the grid, and everything else (seed, the data versions its trained asset read, metrics)
is read back from what the run materialized, the same way for `cairn.sweep` and `cairn runs --sweep`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cairn.config import parse_overrides
from cairn.core.keys import step_label
from cairn.core.records import Materialization, RunRecord, RunStatus
from cairn.core.selection import select
from cairn.engine import api
from cairn.engine.run import EventSink, RunOptions, RunResult, new_run_id
from cairn.errors import UsageError, did_you_mean
from cairn.hashing import hash_struct
from cairn.project import Project
from cairn.storage.metadata import MetadataStore

__all__ = ["SCAN_RUNS", "SweepResult", "Trial", "execute", "parse_grid", "read", "results", "sweep"]

# `cairn runs --sweep ID` looks for the trials of a sweep among this many newest runs.
SCAN_RUNS = 2000
NOT_RUN = "not run"  # a trial of the grid that has no run (the sweep was interrupted before it)

TrialSink = Callable[["Trial", RunResult], None]


@dataclass(frozen=True, slots=True)
class Trial:
    """One point of a sweep's grid and the run that computed it."""

    sweep_id: str
    number: int  # 1-based position in the grid
    params: Mapping[str, Any]  # {"asset.param": value}, in grid order
    run_id: str | None
    status: str  # the run's status (succeeded, failed, ...), or "not run"
    seeds: Mapping[str, int] = field(default_factory=dict)  # trained step -> its seed
    inputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # trained step -> {input: data version}
    dataset_version: str | None = None  # one hash of all the trained steps' input data versions
    metrics: Mapping[str, float] = field(default_factory=dict)  # "step.name" -> value
    score: float | None = None  # the ranking metric
    reported: float | None = None  # the held-out metric
    rank: int | None = None  # 1 is the best; None when not ranked (failed, no metric, no ranking metric)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "rank": self.rank,
            "run_id": self.run_id,
            "status": self.status,
            "params": dict(self.params),
            "score": self.score,
            "reported": self.reported,
            "seeds": dict(self.seeds),
            "inputs": {step: dict(versions) for step, versions in self.inputs.items()},
            "dataset_version": self.dataset_version,
            "metrics": dict(self.metrics),
            **({"error": self.error} if self.error else {}),
        }


@dataclass(frozen=True, slots=True)
class SweepResult:
    """A sweep's trials, the ranked ones first (best first), then the others in grid order."""

    sweep_id: str
    selection: str
    grid: tuple[tuple[str, tuple[Any, ...]], ...]  # (asset.param, values), in the order given
    metric: str | None
    report: str | None
    higher_is_better: bool
    trials: tuple[Trial, ...]

    @property
    def best(self) -> Trial | None:
        """The trial ranked first on the selection metric (None without a metric or a ranked trial)."""
        return self.trials[0] if self.trials and self.trials[0].rank == 1 else None

    @property
    def ranking(self) -> list[Trial]:
        return [t for t in self.trials if t.rank is not None]

    @property
    def failed(self) -> list[Trial]:
        """Trials whose run did not succeed (failed, cancelled, abandoned, partial) or never ran."""
        return [t for t in self.trials if t.status != RunStatus.SUCCEEDED]

    @property
    def ok(self) -> bool:
        return not self.failed

    def __len__(self) -> int:
        return len(self.trials)

    def to_dict(self) -> dict[str, Any]:
        """What `cairn run --sweep --json` and `cairn runs --sweep ID --json` print."""
        best = self.best
        return {
            "sweep_id": self.sweep_id,
            "selection": self.selection,
            "grid": {key: list(values) for key, values in self.grid},
            "metric": self.metric,
            "report": self.report,
            "higher_is_better": self.higher_is_better,
            "best": best.to_dict() if best else None,
            "trials": [t.to_dict() for t in self.trials],
        }


# ---- running a sweep --------------------------------------------------------------------------------------


def sweep(
    selection: str | Iterable[str] = (),
    *,
    grid: Mapping[str, Sequence[Any]],
    metric: str | None = None,
    report: str | None = None,
    lower_is_better: bool = False,
    project: api.ProjectArg = ".",
    params: Mapping[str, Mapping[str, Any]] | None = None,
    profile: str | None = None,
    force: bool = False,
    fail_fast: bool = False,
    executor: str | None = None,
    workers: int | None = None,
    partition: str | None = None,
    partition_range: tuple[str, str] | None = None,
    snapshot: str | None = None,
    on_event: EventSink | None = None,
    on_trial: TrialSink | None = None,
) -> SweepResult:
    """Run every point of a param grid as a tracked trial (one run each) and rank the trials by a metric.

    Trials run one after another; each run uses the executor's parallelism, and what trials share (the
    upstream of the swept assets, a trial computed before) is a cache hit. A trial whose run fails is
    listed with its status and not ranked; the sweep goes on with the next trial.

    Args:
        selection: asset names or selection tokens, as for `cairn.materialize`; empty means all.
        grid: ``{"asset.param": [value, ...]}``; the trials are the cartesian product, in this order.
        metric: rank the trials by this metric (``NAME`` or ``ASSET.NAME``, logged with ``ctx.log_metric``):
            choose it on a validation window.
        report: a held-out metric shown beside it for the best trial (a test window): the best is chosen
            on `metric` and reported on `report`, so that the reported number was not selected for.
        lower_is_better: rank ascending (a loss) instead of descending (an AUC).
        project: the project folder (or loaded settings/project).
        params: per-asset param overrides under every trial, ``{"asset": {"param": value}}`` (``--set``);
            the grid's values override them.
        profile, force, fail_fast, executor, workers, partition, partition_range, snapshot: as for
            `cairn.materialize`, for every trial.
        on_event: called with every progress `Event` of every trial's run.
        on_trial: called with each `Trial` and its `RunResult` as soon as its run is over.

    Returns:
        The `SweepResult`: ``sweep_id``, ``trials`` (ranked first), ``best``.

    Raises:
        UsageError: the grid is empty or malformed, names an unknown asset or param, or sweeps an asset
            that the selection does not run; a metric name is ambiguous.
    """
    loaded = api.loaded_project(project)
    options = RunOptions(
        selection=(selection,) if isinstance(selection, str) else tuple(selection),
        force=force,
        fail_fast=fail_fast,
        executor=executor,
        workers=workers,
        profile=profile,
        overrides={asset: dict(values) for asset, values in (params or {}).items()},
        partition=partition,
        partition_range=partition_range,
        snapshot=snapshot,
    )
    with api.open_stores(loaded.settings) as stores:
        return execute(
            loaded,
            stores,
            options,
            grid,
            metric=metric,
            report=report,
            lower_is_better=lower_is_better,
            on_event=on_event,
            on_trial=on_trial,
        )


def execute(
    project: Project,
    stores: api.Stores,
    options: RunOptions,
    grid: Mapping[str, Sequence[Any]],
    *,
    metric: str | None = None,
    report: str | None = None,
    lower_is_better: bool = False,
    on_event: EventSink | None = None,
    on_trial: TrialSink | None = None,
) -> SweepResult:
    """Run a sweep of a loaded project with open stores (what `sweep` and `cairn run --sweep` call): each
    trial is `options` with the trial's values over its ``overrides``."""
    axes = _axes(grid)
    _check_params(project.params(options.profile, options.overrides), axes)
    _check_selected(project, options.selection, axes)
    points = [dict(zip((key for key, _ in axes), values, strict=True)) for values in _product(axes)]
    overrides = [_overlay(options.overrides, point) for point in points]
    sweep_id = "sw-" + new_run_id()
    recorded = {
        "id": sweep_id,
        "of": len(points),
        "grid": [[key, list(values)] for key, values in axes],  # pairs: the run's args are stored key-sorted
        "metric": metric,
        "report": report,
        "higher_is_better": not lower_is_better,
    }
    for number, (point, each) in enumerate(zip(points, overrides, strict=True), start=1):
        trial_args = {**recorded, "number": number, "trial": point}
        trial = replace(options, overrides=each, labels={**options.labels, "sweep": trial_args})
        result = api.execute(project, trial, on_event)  # its failures open incidents, as any run's do
        if on_trial is not None:
            run = stores.meta.get_run(result.run_id)
            if run is not None:
                on_trial(_trial(stores.meta, run, metric, report), result)
    return read(stores.meta, sweep_id)


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """The grid of ``--sweep asset.param=v1,v2`` options; each value is a TOML literal, as for ``--set``.

    Commas inside brackets, braces or quotes do not split (``--sweep m.sizes=[1,2],[3,4]`` has two values).
    """
    out: dict[str, list[Any]] = {}
    for item in items:
        target, eq, raw = item.partition("=")
        key = target.strip()
        asset, dot, param = key.partition(".")
        if not eq or not dot or not asset or not param or not raw.strip():
            raise UsageError(f"--sweep {item!r} must look like asset.param=v1,v2, e.g. --sweep train.max_depth=4,8")
        if key in out:
            raise UsageError(f"--sweep {key} is given twice; list all its values in one option: {key}=v1,v2,v3")
        out[key] = [parse_overrides([f"{key}={piece}"])[asset][param] for piece in _split(raw, item)]
    return out


def _split(raw: str, item: str) -> list[str]:
    """Split at top-level commas (not inside [], {} or quotes)."""
    pieces: list[str] = []
    depth, quote, start = 0, "", 0
    for i, ch in enumerate(raw):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            pieces.append(raw[start:i])
            start = i + 1
    pieces.append(raw[start:])
    stripped = [p.strip() for p in pieces]
    if any(not p for p in stripped):
        raise UsageError(f"--sweep {item!r} has an empty value; separate values with single commas: a.p=1,2,3")
    return stripped


def _axes(grid: Mapping[str, Sequence[Any]]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not grid:
        raise UsageError('a sweep needs a grid: {"asset.param": [v1, v2]} (cairn run --sweep asset.param=v1,v2)')
    axes = []
    for key, values in grid.items():
        asset, dot, param = str(key).partition(".")
        if not dot or not asset or not param:
            raise UsageError(f"grid key {key!r} must look like asset.param, e.g. 'train.learning_rate'")
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
            raise UsageError(f"grid {key!r} must list one or more values, e.g. [0.03, 0.1]; got {values!r}")
        seen: list[str] = []
        for value in values:
            try:
                text = json.dumps(value, sort_keys=True)
            except (TypeError, ValueError) as exc:
                raise UsageError(
                    f"grid {key!r}: {value!r} cannot be recorded with the run ({exc}); use str, numbers, lists, dicts"
                ) from exc
            if text in seen:
                raise UsageError(f"grid {key!r} lists {value!r} twice; each value makes one set of trials")
            seen.append(text)
        axes.append((str(key), tuple(values)))
    return tuple(axes)


def _product(axes: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[Any, ...]]:
    return list(itertools.product(*(values for _, values in axes)))


def _overlay(base: Mapping[str, Mapping[str, Any]], point: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out = {asset: dict(values) for asset, values in base.items()}
    for key, value in point.items():
        asset, _, param = key.partition(".")
        out.setdefault(asset, {})[param] = value
    return out


def _check_params(resolved: Mapping[str, Mapping[str, Any]], axes: Sequence[tuple[str, Any]]) -> None:
    """Every swept param exists (before anything runs), with the closest name suggested."""
    for key, _ in axes:
        asset, _, param = key.partition(".")
        if asset not in resolved:
            raise UsageError(f"--sweep {key}: asset '{asset}' is not defined.{did_you_mean(asset, resolved)}")
        if param not in resolved[asset]:
            known = sorted(resolved[asset])
            raise UsageError(
                f"--sweep {key}: asset '{asset}' has no param '{param}'.{did_you_mean(param, known)} "
                f"Its params: {', '.join(known) or 'none'}"
            )


def _check_selected(project: Project, selection: Sequence[str], axes: Sequence[tuple[str, Any]]) -> None:
    """A swept asset must be run by the selection (a target or upstream of one), else every trial is the same."""
    graph = project.graph
    targets = select(graph, selection)
    runs = targets | graph.ancestors(targets)
    for key, _ in axes:
        asset = key.partition(".")[0]
        if asset not in runs:
            shown = " ".join(selection) or "*"
            raise UsageError(
                f"the sweep varies {key}, but the selection '{shown}' does not run '{asset}' (it is neither "
                f"selected nor upstream of what is); select it or what reads it, e.g. '{asset}+'"
            )


# ---- reading a sweep back ---------------------------------------------------------------------------------


def results(
    sweep_id: str,
    *,
    project: api.ProjectArg = ".",
    metric: str | None = None,
    report: str | None = None,
    lower_is_better: bool | None = None,
) -> SweepResult:
    """A recorded sweep's trials, ranked (what `cairn runs --sweep ID` shows); see `read`."""
    with api.open_stores(api.project_settings(project)) as stores:
        return read(stores.meta, sweep_id, metric=metric, report=report, lower_is_better=lower_is_better)


def read(
    meta: MetadataStore,
    sweep_id: str,
    *,
    metric: str | None = None,
    report: str | None = None,
    lower_is_better: bool | None = None,
    scan: int = SCAN_RUNS,
) -> SweepResult:
    """A recorded sweep: its trials with their runs' status, params, seeds, input data versions and metrics.

    Args:
        meta: the project's metadata store.
        sweep_id: a sweep id, a unique prefix of one, or ``latest``.
        metric, report, lower_is_better: rank by this metric, report this one, in this direction (default:
            what the sweep was run with).
        scan: how many of the newest runs are searched for the sweep's trials.

    Raises:
        UsageError: no sweep matches `sweep_id`, or a metric name is ambiguous in a trial.
    """
    swept = [r for r in meta.list_runs(scan) if isinstance(r.args.get("sweep"), dict)]
    sid = _resolve(sweep_id, swept)
    runs = [r for r in swept if r.args["sweep"].get("id") == sid]  # newest first
    recorded = runs[-1].args["sweep"]
    metric = metric if metric is not None else recorded.get("metric")
    report = report if report is not None else recorded.get("report")
    higher = (not lower_is_better) if lower_is_better is not None else bool(recorded.get("higher_is_better", True))
    axes = tuple((str(key), tuple(values)) for key, values in recorded.get("grid", []))
    latest: dict[int, RunRecord] = {}
    for run in runs:
        latest.setdefault(int(run.args["sweep"].get("number", 0)), run)  # a number run twice: its newest run
    trials = [_trial(meta, run, metric, report) for _, run in sorted(latest.items())]
    for number, values in enumerate(_product(axes), start=1):
        if number not in latest:
            point = dict(zip((key for key, _ in axes), values, strict=True))
            trials.append(Trial(sid, number, point, None, NOT_RUN))
    return SweepResult(
        sid, runs[-1].selection, axes, metric, report, higher, tuple(_ranked(sorted(trials, key=_number), higher))
    )


def _number(trial: Trial) -> int:
    return trial.number


def _resolve(text: str, runs: Sequence[RunRecord]) -> str:
    ids = list(dict.fromkeys(str(r.args["sweep"].get("id")) for r in runs))  # newest first
    text = text.strip()
    if not ids:
        raise UsageError("no sweeps are recorded yet; start one with `cairn run SEL --sweep asset.param=v1,v2`")
    if text.lower() in ("latest", "last"):
        return ids[0]
    if text in ids:
        return text
    matches = [i for i in ids if i.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"sweep id prefix {text!r} is ambiguous: it matches {', '.join(matches[:5])}")
    raise UsageError(
        f"no sweep {text!r} among the {SCAN_RUNS} newest runs.{did_you_mean(text, ids)} Recorded sweeps: "
        f"{', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}"
    )


def _trial(meta: MetadataStore, run: RunRecord, metric: str | None, report: str | None) -> Trial:
    """A trial from its run: status and error from the run, the rest from what the run materialized."""
    recorded = run.args["sweep"]
    point = dict(recorded.get("trial", {}))
    order = [key for key, _ in recorded.get("grid", [])]
    point = {key: point[key] for key in sorted(point, key=lambda k: order.index(k) if k in order else len(order))}
    trained = {key.partition(".")[0] for key in point}
    mats = meta.run_materializations(run.run_id) if run.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL) else {}
    own = {step_label(asset, partition): m for (asset, partition), m in sorted(mats.items()) if asset in trained}
    inputs = {label: {step_label(i.asset, i.partition): i.data_version for i in m.inputs} for label, m in own.items()}
    dataset = hash_struct(["cairn.sweep.dataset/1", sorted((k, sorted(v.items())) for k, v in inputs.items())])
    shown = {
        f"{step_label(asset, partition)}.{name}": value
        for (asset, partition), m in sorted(mats.items())
        if not partition or asset in trained
        for name, value in sorted(m.metrics.items())
    }
    error = None
    if run.status != RunStatus.SUCCEEDED:
        failed = [s for s in meta.run_steps(run.run_id) if s.status == "failed"]
        if failed:
            first = failed[0]
            error = f"{step_label(first.asset, first.partition)}: {(first.error or 'failed').strip().splitlines()[0]}"
        else:
            error = f"the run is {run.status}"
    return Trial(
        sweep_id=str(recorded.get("id")),
        number=int(recorded.get("number", 0)),
        params=point,
        run_id=run.run_id,
        status=str(run.status),
        seeds={label: m.seed for label, m in own.items()},
        inputs=inputs,
        dataset_version=dataset if own else None,
        metrics=shown,
        score=metric_value(mats, metric, trained) if metric else None,
        reported=metric_value(mats, report, trained) if report else None,
        error=error,
    )


def metric_value(
    mats: Mapping[tuple[str, str], Materialization], name: str, trained: Iterable[str] = ()
) -> float | None:
    """The value of a metric among a run's materializations: ``ASSET.NAME``, or a bare ``NAME`` looked up on
    the swept (trained) assets first, then on every unpartitioned asset of the run.

    Raises:
        UsageError: a bare name is logged by several assets, or a named asset logged it on several partitions.
    """
    asset, dot, bare = name.rpartition(".")
    if dot and any(a == asset for a, _ in mats):
        found = {p: m.metrics[bare] for (a, p), m in mats.items() if a == asset and bare in m.metrics}
        if len(found) > 1:
            raise UsageError(
                f"metric {name!r} is logged by {len(found)} partitions of '{asset}'; a sweep ranks by one value: "
                "log it on an unpartitioned asset (an evaluation over the window)"
            )
        return next(iter(found.values()), None)
    preferred = set(trained)
    for pool in (
        {step_label(a, p): m for (a, p), m in mats.items() if a in preferred and name in m.metrics},
        {a: m for (a, p), m in mats.items() if not p and name in m.metrics},
    ):
        if len(pool) > 1:
            raise UsageError(
                f"metric {name!r} is logged by {', '.join(sorted(pool))}; a sweep ranks by one value: name "
                f"an asset, e.g. --metric {min(pool).partition('@')[0]}.{name}"
            )
        if pool:
            return next(iter(pool.values())).metrics[name]
    return None


def _ranked(trials: Sequence[Trial], higher_is_better: bool) -> list[Trial]:
    """Succeeded trials with a score first, best first (ties: the earlier trial), then the rest in grid order."""
    scored = [t for t in trials if t.status == RunStatus.SUCCEEDED and t.score is not None]
    sign = -1.0 if higher_is_better else 1.0
    scored.sort(key=lambda t: (sign * (t.score or 0.0), t.number))
    ranked = {t.number for t in scored}
    return [replace(t, rank=i) for i, t in enumerate(scored, start=1)] + [t for t in trials if t.number not in ranked]
