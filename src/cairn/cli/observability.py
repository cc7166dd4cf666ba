"""`cairn slo` (run and asset metrics over a window, and the [[slo]] rules) and `cairn incidents`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from cairn.cli.common import JsonOpt, ProjectOpt, ago, console, escape, print_json, project_stores, table
from cairn.errors import UsageError

if TYPE_CHECKING:
    from cairn.observability.measures import Report, Summary
    from cairn.observability.slo import SloStatus
    from cairn.storage.observations import AlertRecord, IncidentRecord


def register(app: typer.Typer) -> None:
    app.command()(slo)
    app.command()(incidents)


def slo(
    project: ProjectOpt = ".",
    window: Annotated[str, typer.Option("--window", help="How far back to report: 7d, 24h, 30m, 2w.")] = "7d",
    as_json: JsonOpt = False,
) -> None:
    """Run and asset metrics over a window (latency, duration, success ratio, CPU, cost, cache savings) and
    every [[slo]] rule over its own window; exits 1 when a rule is breached."""
    from cairn.config import parse_duration
    from cairn.observability.measures import collect
    from cairn.observability.slo import slo_report

    try:
        span = parse_duration(window)
    except ValueError as exc:
        raise UsageError(f"--window: {exc}") from None
    now = time.time()
    with project_stores(project) as stores:
        report = collect(stores.meta, stores.settings, now - span, now)
        _, statuses = slo_report(stores.meta, stores.settings, now)
        incidents = {i.subject: i.id for i in stores.meta.incidents(open_only=True, limit=1000, kind="slo")}
    statuses = [replace(s, incident=incidents.get(s.rule.name)) if s.ok is False else s for s in statuses]
    if as_json:
        print_json({**report.to_dict(), "slos": [s.to_dict() for s in statuses]})
    else:
        _print_report(report, window)
        _print_slos(statuses)
    if any(s.ok is False for s in statuses):
        raise typer.Exit(1)


def incidents(
    project: ProjectOpt = ".",
    only_open: Annotated[bool, typer.Option("--open", help="Only the incidents still open.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many incidents to show.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Incidents, newest first: what failed, broke a contract, drifted or breached an SLO, which assets and
    partitions it affected, from when to when, who was alerted, and its remediation."""
    with project_stores(project) as stores:
        found = stores.meta.incidents(open_only=only_open, limit=limit)
        alerts: dict[int, list[AlertRecord]] = {}
        for alert in stores.meta.alerts([i.id for i in found]):
            alerts.setdefault(alert.incident_id, []).append(alert)
    if as_json:
        print_json([{**i.to_dict(), "alerts": [a.to_dict() for a in alerts.get(i.id, [])]} for i in found])
        return
    if not found:
        console().print("no open incidents" if only_open else "no incidents recorded")
        return
    grid = table("id", "kind", "subject", "status", "opened", "for", "affected", "owners", "alerts", "remediation")
    for i in found:
        grid.add_row(
            str(i.id),
            i.kind,
            escape(i.subject),
            "[bold red]open[/]" if i.closed_at is None else "[green]closed[/]",
            ago(i.opened_at),
            spoken((i.closed_at or time.time()) - i.opened_at),
            escape(_affected(i)),
            escape(", ".join(i.owners) or "-"),
            _alerts(alerts.get(i.id, [])),
            escape(f"{i.remediation} ({i.remediation_status})" if i.remediation else "-"),
        )
    console().print(grid)


def spoken(seconds: float | None) -> str:
    """A duration as people say it: ``40 ms``, ``3.4 s``, ``34 s``, ``12 m 34 s``, ``2 h 05 m``, ``3 d 4 h``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} m {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} m"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def _affected(incident: IncidentRecord) -> str:
    if incident.kind == "slo":
        value = incident.detail.get("value")
        return f"{incident.detail.get('metric')} = {value}" if value is not None else "-"
    hit = [s for s in incident.steps if s.role != "skipped"]
    recovered = sum(1 for s in hit if s.recovered_at is not None)
    skipped = len(incident.steps) - len(hit)
    text = f"{len(hit)} {hit[0].role if hit else 'failed'}"
    if recovered:
        text += f" ({recovered} recovered)"
    if skipped:
        text += f", {skipped} skipped"
    return text


def _alerts(alerts: list[AlertRecord]) -> str:
    if not alerts:
        return "-"
    counts: dict[str, int] = {}
    for alert in alerts:
        counts[alert.status] = counts.get(alert.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _print_report(report: Report, window: str) -> None:
    data = report.to_dict()["runs"]
    since = datetime.fromtimestamp(report.since, UTC).strftime("%Y-%m-%d %H:%M")
    out = console()
    ratio = data["success_ratio"]
    out.print(
        f"runs since {since} UTC ({window}): {data['count']} ({data['succeeded']} succeeded, {data['failed']} failed)"
        + (f", success ratio {ratio:.1%}" if ratio is not None else "")
    )
    finished = report.finished
    out.print(f"  duration         {_summary(_summary_of([r.duration_s for r in finished]))}")
    latencies = [r.schedule_to_start_s for r in report.runs if r.schedule_to_start_s is not None]
    out.print(f"  schedule→start   {_summary(_summary_of(latencies)) if latencies else 'no scheduled runs'}")
    cpu = data["cpu_s"]
    per_run = f" ({spoken(cpu['mean'])} per run)" if cpu["mean"] is not None else ""
    price = ""
    if report.cpu_hour:
        unit = f" {report.currency}" if report.currency else ""
        price = f", cost {data['cost']['total']:.4g}{unit} at {report.cpu_hour:g}{unit} per CPU-hour"
    out.print(f"  CPU              {spoken(cpu['total'])}{per_run}{price}")
    out.print(f"  cache            {data['cached_steps']} cached steps, {spoken(data['cache_saved_s'])} saved")
    assets = report.assets()
    if assets:
        grid = table("asset", "executed", "cached", "failed", "success", "p50", "p95", "CPU", "saved")
        for a in assets:
            ratio_text = f"{a.success_ratio:.1%}" if a.success_ratio is not None else "-"
            grid.add_row(
                escape(a.asset),
                str(a.executed),
                str(a.cached),
                str(a.failed),
                ratio_text,
                spoken(a.duration_s.p50),
                spoken(a.duration_s.p95),
                spoken(a.cpu_s),
                spoken(a.cache_saved_s),
            )
        out.print(grid)


def _summary_of(values: Sequence[float | None]) -> Summary:
    from cairn.observability.measures import summarize

    return summarize(v for v in values if v is not None)


def _summary(summary: Summary) -> str:
    if not summary.count:
        return "-"
    return f"p50 {spoken(summary.p50)} · p95 {spoken(summary.p95)} · max {spoken(summary.max)}"


def _print_slos(statuses: list[SloStatus]) -> None:
    from cairn.observability.slo import window_text

    if not statuses:
        console().print("no [[slo]] rules in cairn.toml (see docs/observability.md)")
        return
    grid = table("slo", "value", "bounds", "window", "status")
    for s in statuses:
        rule = s.rule
        bounds = " ".join(f"{op} {v:g}" for op, v in ((">=", rule.min), ("<=", rule.max)) if v is not None)
        if s.ok is None:
            state = "[dim]no data[/]"
        elif s.ok:
            state = "[green]ok[/]"
        else:
            state = "[bold red]breached[/]" + (f" (incident {s.incident})" if s.incident else "")
        value = "-" if s.value is None else f"{s.value:.4g}"
        stat = "" if rule.metric == "success_ratio" else f" ({rule.stat})"
        grid.add_row(escape(rule.name), value + stat, bounds, window_text(rule.window_s), state)
    console().print(grid)
