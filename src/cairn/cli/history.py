"""Commands about past runs: runs, show, logs."""

from __future__ import annotations

import json
import statistics
from typing import TYPE_CHECKING, Annotated

import typer

from cairn.cli.common import (
    JsonOpt,
    ProjectOpt,
    ago,
    console,
    escape,
    print_json,
    project_stores,
    seconds,
    short,
    styled,
    table,
)
from cairn.core.keys import step_label
from cairn.errors import UsageError

if TYPE_CHECKING:
    from cairn.core.records import AttemptRecord, RunRecord, StepRecord
    from cairn.engine.sweep import SweepResult
    from cairn.storage.metadata import MetadataStore


def register(app: typer.Typer) -> None:
    app.command()(runs)
    app.command()(show)
    app.command()(logs)


def _counts(steps: list[StepRecord]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in steps:
        out[s.status] = out.get(s.status, 0) + 1
    return out


def runs(
    project: ProjectOpt = ".",
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs to show.")] = 20,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="Show this metric as a column (ASSET.NAME or NAME).")
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(
            "--sweep", help="Only the trials of this sweep (an id, a prefix or 'latest'), ranked by --metric."
        ),
    ] = None,
    report: Annotated[
        str | None, typer.Option("--report", help="With --sweep: the held-out metric reported beside --metric.")
    ] = None,
    lower: Annotated[
        bool | None,
        typer.Option("--lower-is-better/--higher-is-better", help="With --sweep: the ranking direction."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run history, newest first; with --metric, chosen metrics as columns; with --sweep, a sweep's trials ranked."""
    if sweep is not None:
        _sweep(project, sweep, metric, report, lower, as_json)
        return
    if report is not None or lower is not None:
        raise UsageError("--report and --lower-is-better rank the trials of a sweep: add --sweep ID")
    with project_stores(project) as stores:
        meta = stores.meta
        rows = [
            (r, _counts(meta.run_steps(r.run_id)), _metrics(meta, r.run_id, metric) if metric else {})
            for r in meta.list_runs(limit)
        ]
    if as_json:
        print_json(
            [
                {
                    **r.to_dict(),
                    "duration_s": r.duration_s,
                    "steps": c,
                    **({"metrics": m} if metric else {}),
                }
                for r, c, m in rows
            ]
        )
        return
    grid = table("run", "status", "started", "duration", "selection", "steps", *(metric or []))
    for r, counts, values in rows:
        steps = " ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        shown = [_number(values.get(m)) for m in metric or []]
        grid.add_row(
            r.run_id, styled(r.status), ago(r.created_at), seconds(r.duration_s), escape(r.selection), steps, *shown
        )
    console().print(grid)


def _sweep(
    project: str, sweep_id: str, metrics: list[str] | None, report: str | None, lower: bool | None, as_json: bool
) -> None:
    from cairn.engine.sweep import read

    if metrics and len(metrics) > 1:
        raise UsageError(
            "with --sweep, give one --metric (the one trials are ranked by) and --report for a held-out one"
        )
    with project_stores(project) as stores:
        result = read(
            stores.meta, sweep_id, metric=metrics[0] if metrics else None, report=report, lower_is_better=lower
        )
    if as_json:
        print_json(result.to_dict())
    else:
        print_sweep(result)


def print_sweep(result: SweepResult) -> None:
    """A sweep's trials as a table, ranked ones first, then the best trial on the held-out metric."""
    keys = [key for key, _ in result.grid]
    shown = [name for name in (result.metric, result.report) if name]
    order = "higher" if result.higher_is_better else "lower"
    ranked = f"ranked by {result.metric} ({order} is better)" if result.metric else "not ranked: give --metric NAME"
    console().print(f"sweep [bold]{result.sweep_id}[/]: {len(result)} trials of {escape(result.selection)}, {ranked}")
    grid = table("rank", "trial", "run", "status", *map(escape, keys), *map(escape, shown))
    for t in result.trials:
        values = [_number(v) for v, name in ((t.score, result.metric), (t.reported, result.report)) if name]
        grid.add_row(
            str(t.rank or "-"),
            f"{t.number}/{len(result)}",
            t.run_id or "-",
            styled(t.status),
            *(escape(_literal(t.params.get(key))) for key in keys),
            *values,
        )
    console().print(grid)
    for t in result.trials:
        if t.error:
            console().print(f"[red]trial {t.number} {t.status}[/]: {escape(t.error)}")
    versions = {t.dataset_version for t in result.trials if t.dataset_version}
    if len(versions) == 1:
        console().print(f"every trial trained on the same data: dataset {short(versions.pop())}")
    elif versions:
        console().print(f"[yellow]the trials trained on {len(versions)} different datasets[/] (see --json: inputs)")
    best = result.best
    if best is not None:
        line = f"best: trial {best.number} (run {best.run_id}) {result.metric}={_number(best.score)}"
        if result.report:
            line += f", reported on the held-out {result.report}={_number(best.reported)}"
        console().print(f"[green]{escape(line)}[/]")
    elif result.metric and any(t.status == "succeeded" for t in result.trials):
        logged = sorted({name for t in result.trials for name in t.metrics})
        console().print(
            f"[yellow]no trial logged {escape(result.metric)}[/]; logged: {escape(', '.join(logged) or 'none')}"
        )


def _literal(value: object) -> str:
    """A param value as its TOML-like literal (``0.1``, ``true``, ``"text"``)."""
    return json.dumps(value)


def _metrics(meta: MetadataStore, run_id: str, names: list[str]) -> dict[str, float | None]:
    """The named metrics of the materializations a run produced or reused (``asset.name`` or a bare name)."""
    mats = meta.run_materializations(run_id)
    out: dict[str, float | None] = {}
    for name in names:
        asset, dot, metric = name.rpartition(".")
        found = [
            m.metrics[metric] for (a, _), m in sorted(mats.items()) if (not dot or a == asset) and metric in m.metrics
        ]
        out[name] = found[0] if found else None
    return out


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def show(
    run_id: Annotated[str, typer.Argument(help="A run id, a unique prefix of one, or 'latest'.")],
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
    gantt: Annotated[
        bool, typer.Option("--timeline", help="The steps' attempts on a time axis (a Gantt chart); --json: its data.")
    ] = False,
) -> None:
    """One run with its steps and attempts; with --timeline, when each attempt ran."""
    with project_stores(project) as stores:
        meta = stores.meta
        rid = meta.resolve_run_id(run_id)
        run = meta.get_run(rid)
        steps = meta.run_steps(rid)
        attempts = meta.attempts(rid)
        mats = meta.run_materializations(rid)
    assert run is not None
    if gantt:
        _timeline(run, steps, attempts, as_json)
        return
    metrics = {key: m.metrics for key, m in mats.items() if m.metrics}
    checks = {key: m.metadata["cairn.checks"] for key, m in mats.items() if m.metadata.get("cairn.checks")}
    timings = {key: m.metadata["cairn.timings"] for key, m in mats.items() if m.metadata.get("cairn.timings")}
    added = {key: _user_metadata(m.metadata) for key, m in mats.items()}
    if as_json:
        print_json(
            {
                **run.to_dict(details=True),
                "steps": [
                    {
                        **s.to_dict(),
                        "metrics": metrics.get((s.asset, s.partition), {}),
                        "checks": checks.get((s.asset, s.partition), []),
                        "metadata": added.get((s.asset, s.partition), {}),
                        "timings": timings.get((s.asset, s.partition), {}) if s.status == "executed" else {},
                    }
                    for s in steps
                ],
                "attempts": [a.to_dict() for a in attempts],
            }
        )
        return
    console().print(
        f"run [bold]{run.run_id}[/] {styled(run.status)}  selection: {escape(run.selection)}  "
        f"started {ago(run.created_at)}  duration {seconds(run.duration_s)}"
    )
    if run.profile:
        console().print(f"profile: {run.profile}")
    grid = table("step", "status", "attempts", "duration", "data version", "reason")
    for s in steps:
        grid.add_row(
            step_label(s.asset, s.partition),
            styled(s.status),
            str(s.attempts),
            seconds(s.duration_s),
            short(s.data_version),
            escape(s.reason),
        )
    console().print(grid)
    executed = [timings[key] for s in steps if s.status == "executed" and (key := (s.asset, s.partition)) in timings]
    if executed:
        console().print(_time_split(executed))
    for line in _metric_lines(metrics):
        console().print(line)
    if checks:
        passed = sum(r["passed"] for results in checks.values() for r in results)
        console().print(f"checks: {passed} passed on {len(checks)} steps")
    for (asset, partition), results in sorted(checks.items()):
        name = step_label(asset, partition)
        for r in results:
            if not r["passed"]:
                console().print(
                    f"  [yellow]warning[/] {escape(name)} {escape(r['rule'])}: observed {escape(str(r['observed']))}"
                )
    failed = [a for a in attempts if a.error]
    for a in failed:
        console().print(
            f"[red]{step_label(a.asset, a.partition)} attempt {a.attempt} {a.status}[/]: {escape(a.error or '')}"
        )


def _timeline(run: RunRecord, steps: list[StepRecord], attempts: list[AttemptRecord], as_json: bool) -> None:
    import time

    from cairn.cli.common import STATUS_STYLE
    from cairn.cli.timeline import print_timeline
    from cairn.observability.timeline import timeline

    view = timeline(run, steps, attempts, time.time())
    if as_json:
        print_json(view)
        return
    console().print(
        f"run [bold]{run.run_id}[/] {styled(run.status)}  selection: {escape(run.selection)}  "
        f"started {ago(run.created_at)}  duration {seconds(run.duration_s)}"
    )
    print_timeline(console(), view, STATUS_STYLE)


INTERNAL_METADATA = "cairn."  # keys cairn records for itself (env versions, checks, timings): not shown as metadata


def _user_metadata(metadata: dict[str, object]) -> dict[str, object]:
    """What the asset function added with ``ctx.add_metadata``; cairn's own ``cairn.*`` keys are left out."""
    return {k: v for k, v in metadata.items() if not k.startswith(INTERNAL_METADATA)}


def _metric_lines(metrics: dict[tuple[str, str], dict[str, float]]) -> list[str]:
    """A line per unpartitioned asset; a partitioned one gets one line, each metric as min / median / max."""
    by_asset: dict[str, list[tuple[str, dict[str, float]]]] = {}
    for (asset, partition), values in sorted(metrics.items()):
        by_asset.setdefault(asset, []).append((partition, values))
    lines = []
    for asset, rows in by_asset.items():
        if len(rows) == 1:
            partition, values = rows[0]
            lines.append(
                f"metrics of {step_label(asset, partition)}: "
                + ", ".join(f"{k}={_number(v)}" for k, v in sorted(values.items()))
            )
            continue
        names = sorted({k for _, values in rows for k in values})
        spans = []
        for k in names:
            seen = sorted(values[k] for _, values in rows if k in values)
            spans.append(f"{k} {_number(seen[0])} / {_number(statistics.median(seen))} / {_number(seen[-1])}")
        lines.append(f"metrics of {asset} ({len(rows)} partitions; min / median / max): " + ", ".join(spans))
    return lines


_TIME_PARTS = (
    ("function_s", "asset functions"),
    ("inputs_s", "loading inputs"),
    ("checks_s", "checks"),
    ("output_s", "writing outputs"),
)


def _time_split(timings: list[dict[str, float]]) -> str:
    """One line: the executed steps' time, and its share in asset functions, loading, checks and writing."""
    sums = {part: sum(t.get(part, 0.0) for t in timings) for part, _ in _TIME_PARTS}
    total = sum(sums.values()) or 1e-9
    shares = ", ".join(f"{label} {seconds(sums[part])} ({sums[part] / total:.0%})" for part, label in _TIME_PARTS)
    return f"time in {len(timings)} executed steps {seconds(total)}: {shares}"


def logs(
    run_id: Annotated[str, typer.Argument(help="A run id, a unique prefix, or 'latest'.")],
    step: Annotated[str | None, typer.Argument(help="ASSET or ASSET@PARTITION; default every step.")] = None,
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """Captured logs of a run (ctx.log lines, printed output, and errors of failed attempts)."""
    from cairn.core.keys import parse_step

    target = parse_step(step) if step else None
    with project_stores(project) as stores:
        meta = stores.meta
        rid = meta.resolve_run_id(run_id)
        records = meta.logs(rid, target.asset if target else None, target.partition if target else None)
        attempts = [
            a
            for a in meta.attempts(rid)
            if a.error and (target is None or (a.asset, a.partition) == (target.asset, target.partition))
        ]
    if as_json:
        print_json([r.to_dict() for r in records] + [_error_line(a) for a in attempts])
        return
    if not records and not attempts:
        console().print(f"no captured logs for run {rid}" + (f" step {step}" if step else ""))
        return
    for r in records:
        console().print(f"[dim]{step_label(r.asset, r.partition)}#{r.attempt}[/] {r.level:<7} {escape(r.message)}")
    for a in attempts:
        console().print(f"[red]{step_label(a.asset, a.partition)}#{a.attempt} ERROR[/]   {escape(a.error or '')}")


def _error_line(attempt: AttemptRecord) -> dict[str, object]:
    """A failed attempt's error in the form of a captured log line (``cairn logs --json``)."""
    a = attempt
    return {
        "asset": a.asset,
        "partition": a.partition or None,
        "attempt": a.attempt,
        "at": a.finished_at,
        "level": "ERROR",
        "message": a.error,
    }
