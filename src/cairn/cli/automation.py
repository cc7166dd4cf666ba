"""`cairn daemon`, `cairn tick` and `cairn schedules list|pause|resume|ticks` (see docs/automation.md)."""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from cairn.cli.common import JsonOpt, ProjectOpt, console, escape, print_json, print_rows, project_stores

if TYPE_CHECKING:
    from datetime import datetime

    from cairn.automation.clock import Clock

schedules_app = typer.Typer(
    help="Schedules and sensors: their state, last tick and next due time; pause and resume them.",
    no_args_is_help=True,
)
NameArg = Annotated[str, typer.Argument(help="The schedule's or sensor's name.")]


def register(app: typer.Typer) -> None:
    app.command()(daemon)
    app.command()(tick)
    app.add_typer(schedules_app, name="schedules")


def daemon(
    project: ProjectOpt = ".",
    interval: Annotated[
        float, typer.Option("--interval", help="Longest wait between ticks, in seconds (sensors, freshness).")
    ] = 30.0,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Also serve /metrics for Prometheus on 127.0.0.1:PORT.")
    ] = None,
) -> None:
    """Run schedules, sensors and freshness policies forever; SIGTERM lets the current run finish, then stops."""
    from cairn.automation.daemon import Daemon
    from cairn.automation.hooks import hooks
    from cairn.engine.api import execute
    from cairn.engine.prepare import RunOptions
    from cairn.observability.daemon import observing
    from cairn.observability.prometheus import serve_metrics
    from cairn.project import load_project

    loaded = load_project(project)  # a definition error stops here, with exit code 2
    runner = Daemon(loaded.settings, interval_s=interval, log=_print)
    signal.signal(signal.SIGTERM, lambda signum, frame: runner.stop())
    policies = sum(1 for a in loaded.graph.assets.values() if a.max_age is not None)
    _print(
        f"cairn daemon: {len(loaded.schedules)} schedules, {len(loaded.sensors)} sensors, {policies} freshness "
        f"policies in {loaded.settings.root}; ticks at least every {interval:g}s; SIGTERM stops it after the "
        "current run"
    )
    server = serve_metrics(loaded.settings, metrics_port) if metrics_port is not None else None
    if server is not None:
        _print(f"cairn daemon: serving /metrics at {server.url}")
    try:
        with observing(hooks, loaded.settings, execute, RunOptions):
            runner.run()
    finally:
        if server is not None:
            server.close()
    _print(f"cairn daemon: stopped after {runner.ticks} ticks")


def tick(
    project: ProjectOpt = ".",
    now: Annotated[
        str | None,
        typer.Option("--now", help="Evaluate at this time instead of the clock's (ISO 8601 with offset)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate every schedule, sensor and freshness policy once and run what is due; exit 1 if a run failed."""
    from cairn.automation.hooks import hooks
    from cairn.automation.runner import Runner
    from cairn.engine.api import execute
    from cairn.engine.prepare import RunOptions
    from cairn.observability.daemon import observing
    from cairn.project import load_project

    loaded = load_project(project)
    with project_stores(loaded) as stores, observing(hooks, loaded.settings, execute, RunOptions):
        report = Runner(stores.meta, _clock(now), log=None if as_json else _print, pace_sensors=False).tick(loaded)
    if as_json:
        print_json(report.to_dict())
    elif not report.ticks:
        due = f"; next due {report.next_due.isoformat()}" if report.next_due is not None else ""
        console().print(f"nothing due at {report.now.isoformat()}{escape(due)}")
    if not report.ok:
        raise typer.Exit(1)


@schedules_app.command("list")
def schedules_list(project: ProjectOpt = ".", as_json: JsonOpt = False) -> None:
    """Every schedule and sensor: when it fires, what it runs, paused or not, its last tick and next due time."""
    from datetime import UTC, datetime

    from cairn.automation.control import entries
    from cairn.automation.schedules import local
    from cairn.project import load_project

    loaded = load_project(project)
    with project_stores(loaded) as stores:
        found = entries(loaded, stores.meta, datetime.now(UTC))
    if as_json:
        print_json([e.to_dict() for e in found])
        return
    if not found:
        console().print("no schedules or sensors are defined; see docs/automation.md")
        return
    rows = []
    for e in found:
        tz = next((s.timezone for s in loaded.schedules if s.name == e.name), "UTC")
        last = f"{e.last.status} ({_when(e.last.due_at)})" if e.last is not None else "-"
        rows.append(
            [
                e.name,
                e.kind,
                e.when,
                " ".join(e.selection) or "*",
                e.partition or "-",
                "paused" if e.paused else "active",
                last,
                local(e.next_due, tz) if e.next_due is not None else "-",
                e.error or "",
            ]
        )
    print_rows(["name", "kind", "when", "select", "partition", "state", "last tick", "next due", "error"], rows)


@schedules_app.command("pause")
def schedules_pause(name: NameArg, project: ProjectOpt = ".", as_json: JsonOpt = False) -> None:
    """Pause a schedule or sensor: no tick of it is due until it is resumed (operator role once users exist)."""
    _set_paused(project, name, True, as_json)


@schedules_app.command("resume")
def schedules_resume(name: NameArg, project: ProjectOpt = ".", as_json: JsonOpt = False) -> None:
    """Resume a paused schedule or sensor; ticks that fell due while it was paused are not caught up."""
    _set_paused(project, name, False, as_json)


@schedules_app.command("ticks")
def schedules_ticks(
    name: Annotated[str | None, typer.Argument(help="Only this schedule's, sensor's or asset's ticks.")] = None,
    project: ProjectOpt = ".",
    limit: Annotated[int, typer.Option("-n", "--limit", help="How many, the latest due first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recorded ticks, the latest due first: status, run, partition, schedule-to-start latency."""
    with project_stores(project) as stores:
        found = stores.meta.ticks(name=name, limit=limit)
    if as_json:
        print_json([t.to_dict() for t in found])
        return
    if not found:
        console().print("no ticks are recorded yet: `cairn tick` or `cairn daemon` records them")
        return
    print_rows(
        ["kind", "name", "due", "status", "partition", "run", "latency", "reason"],
        [
            [
                t.kind,
                t.name,
                _when(t.due_at),
                t.status,
                t.partition or "-",
                t.run_id or "-",
                "-" if t.latency_s is None else f"{t.latency_s:.2f}s",
                t.error or t.reason,
            ]
            for t in found
        ],
    )


def _set_paused(project: str, name: str, paused: bool, as_json: bool) -> None:
    from datetime import UTC, datetime

    from cairn.automation.control import set_paused
    from cairn.project import load_project

    loaded = load_project(project)
    with project_stores(loaded) as stores:
        state = set_paused(loaded, stores.meta, name, paused, datetime.now(UTC))
    if as_json:
        print_json({"kind": state.kind, "name": state.name, "paused": state.paused, "by": state.changed_by})
        return
    console().print(f"{state.kind} [bold]{escape(name)}[/] is {'paused' if paused else 'active again'}")


def _clock(now: str | None) -> Clock:
    from cairn.automation.clock import ManualClock, SystemClock, parse_instant

    return ManualClock(parse_instant(now)) if now is not None else SystemClock()


def _when(ts: float) -> str:
    from datetime import UTC, datetime

    moment: datetime = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
