"""`cairn run`: materialize a selection with a live progress display; a failed run says how to resume."""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from cairn.cli.common import (
    FromOpt,
    JsonOpt,
    PartitionOpt,
    ProfileOpt,
    ProjectOpt,
    SetOpt,
    ToOpt,
    console,
    err_console,
    escape,
    painted,
    parse_sets,
    partition_range,
    print_json,
    print_rows,
    project_stores,
    seconds,
    styled,
)
from cairn.core.keys import step_label
from cairn.errors import ConnectionLost, UsageError

if TYPE_CHECKING:
    from rich.live import Live
    from rich.text import Text

    from cairn.core.events import Event
    from cairn.engine.run import EventSink, RunOptions, RunResult, StepResult
    from cairn.project import Project

Result = TypeVar("Result")


def register(app: typer.Typer) -> None:
    app.command()(run)


class Progress:
    """Counts steps as events arrive and renders one status line (live on a terminal)."""

    def __init__(self) -> None:
        self.total = 0
        self.counts: dict[str, int] = {}
        self.running: set[str] = set()
        self.started = time.monotonic()
        self.live: Live | None = None
        self.recent: list[str] = []

    def __call__(self, event: Event) -> None:
        if event.kind == "run_started":
            self.total = event.total
        elif event.kind == "step_started":
            self.running.add(str(event.step))
        elif event.kind == "step_finished":
            self.running.discard(str(event.step))
            self.counts[event.status] = self.counts.get(event.status, 0) + 1
            if event.status in ("executed", "failed"):
                self.recent = [*self.recent[-4:], f"{styled(event.status)} {event.step}"]
        elif event.kind == "step_retrying":
            self.running.discard(str(event.step))
            self.recent = [*self.recent[-4:], f"[yellow]retrying[/] {event.step}: {escape(event.detail)}"]
        if self.live is not None:
            self.live.update(self.render())

    def render(self) -> Text:
        from rich.text import Text

        done = sum(self.counts.get(s, 0) for s in ("executed", "cached"))
        elapsed = time.monotonic() - self.started
        finished = done + self.counts.get("failed", 0) + self.counts.get("skipped", 0)
        line = (
            f"{done}/{self.total} done · {len(self.running)} running · {self.counts.get('failed', 0)} failed · "
            f"{self.counts.get('skipped', 0)} skipped · {elapsed:.1f}s"
        )
        if finished and elapsed > 1 and finished < self.total:
            rate = finished / elapsed
            line += f" · {rate:.1f} steps/s · ~{(self.total - finished) / rate:.0f}s left"
        running = ", ".join(sorted(self.running)[:4])
        body = "\n".join([line, *self.recent[-3:], f"[cyan]running[/] {running}" if running else ""])
        return Text.from_markup(body.rstrip())


def run(
    selection: Annotated[list[str] | None, typer.Argument(help="Assets or selectors (+name, name+, tag:k=v).")] = None,
    project: ProjectOpt = ".",
    partition: PartitionOpt = None,
    first: FromOpt = None,
    last: ToOpt = None,
    sets: SetOpt = None,
    profile: ProfileOpt = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Number of parallel workers.")] = None,
    executor: Annotated[
        str | None,
        typer.Option("--executor", help="inline, thread, process, dask or ray (default from cairn.toml)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Run the selected assets even if cached.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Start nothing new after a failure.")] = False,
    snapshot: Annotated[
        str | None, typer.Option("--snapshot", help="Read upstream assets outside the selection from this snapshot.")
    ] = None,
    sweeps: Annotated[
        list[str] | None,
        typer.Option(
            "--sweep",
            help="Run a grid of trials: asset.param=v1,v2 (TOML literals); repeat for a cartesian product.",
            metavar="A.P=V1,V2",
        ),
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="With --sweep: rank the trials by this (validation) metric.")
    ] = None,
    report: Annotated[
        str | None, typer.Option("--report", help="With --sweep: report the best trial on this held-out metric.")
    ] = None,
    lower: Annotated[bool, typer.Option("--lower-is-better", help="With --sweep: a lower metric is better.")] = False,
    log_format: Annotated[
        str,
        typer.Option("--log-format", help="text (a live progress line) or json (JSON lines of step events on stderr)."),
    ] = "text",
    as_json: JsonOpt = False,
) -> None:
    """Materialize a selection: run what is stale, reuse what is cached; with --sweep, a grid of tracked trials."""
    from cairn.core.bulk import keeping_what_is_built
    from cairn.engine.api import execute
    from cairn.engine.run import RunOptions
    from cairn.project import load_project

    options = RunOptions(
        selection=tuple(selection or ()),
        force=force,
        fail_fast=fail_fast,
        executor=executor,
        workers=workers,
        profile=profile,
        overrides=parse_sets(sets),
        partition=partition,
        partition_range=partition_range(partition, first, last),
        snapshot=snapshot,
    )
    resume = _resume(project, options, sets)
    if log_format not in ("text", "json"):
        raise UsageError(f"--log-format {log_format!r}: use text or json")
    events = None
    if log_format == "json":
        if sweeps:
            raise UsageError("--log-format json logs the events of one run; drop it with --sweep")
        from cairn.observability.logs import JsonEvents

        events = JsonEvents(sys.stderr)
    if sweeps:
        _sweep(project, options, sweeps, metric, report, lower, as_json, resume)
        return
    if metric is not None or report is not None or lower:
        raise UsageError("--metric, --report and --lower-is-better rank the trials of a sweep: add --sweep a.p=v1,v2")

    def run_with(on_event: EventSink) -> RunResult:
        return execute(proj, options, on_event if events is None else _tee(on_event, events))

    with keeping_what_is_built():  # one run, then the process ends
        proj = load_project(project)
        result, elapsed = execute_with_progress(run_with, as_json or events is not None, resume)
    if as_json:
        print_json(result.to_dict())
    else:
        summary(result, elapsed, cache_savings(proj, result))
    exit_for(result, resume)


def _sweep(
    project: str,
    options: RunOptions,
    items: list[str],
    metric: str | None,
    report: str | None,
    lower: bool,
    as_json: bool,
    resume: str,
) -> None:
    """`cairn run --sweep`: one run per trial, a line per finished trial, then the ranking."""
    from cairn.cli.history import print_sweep
    from cairn.engine import sweep
    from cairn.project import load_project

    grid = sweep.parse_grid(items)
    ranking = [a for flag, value in (("--metric", metric), ("--report", report)) if value for a in (flag, value)]
    again = shlex.join(
        [*shlex.split(resume), *(a for item in items for a in ("--sweep", item)), *ranking]
        + (["--lower-is-better"] if lower else [])
    )
    proj = load_project(project)

    def finished(trial: sweep.Trial, result: RunResult) -> None:
        if not as_json:
            params = " ".join(f"{k}={json.dumps(v)}" for k, v in trial.params.items())
            counts = ", ".join(
                f"{result.count(k)} {k}" for k in ("executed", "cached", "failed", "skipped") if result.count(k)
            )
            console().print(
                f"trial {trial.number}: {escape(params)}: run {result.run_id} {styled(result.status)} ({counts})"
            )

    try:
        with project_stores(proj) as stores:
            result = sweep.execute(
                proj,
                stores.stores,
                options,
                grid,
                metric=metric,
                report=report,
                lower_is_better=lower,
                on_trial=finished,
            )
    except KeyboardInterrupt:
        err_console().print(f"[yellow]interrupted[/]; resume with: {escape(again)} (finished trials are cached)")
        raise typer.Exit(130) from None
    if as_json:
        print_json(result.to_dict())
    else:
        print_sweep(result)
        console().print(f"see it again: cairn runs --sweep {result.sweep_id}")
    if not result.ok:
        err_console().print(
            f"sweep {result.sweep_id}: {len(result.failed)} of {len(result)} trials did not succeed; "
            f"rerun with: {escape(again)} (succeeded trials are cached)"
        )
        raise typer.Exit(1)


NOT_READY_EXIT = 3  # the run completed, but some partitions are not ready yet


def exit_for(result: RunResult, again: str) -> None:
    """Exit 1 when a step failed, 3 when the run is `partial` (data not ready yet), else return."""
    if result.status == "partial":
        err_console().print(
            f"run {result.run_id} partial: some partitions are not ready yet; when their data lands, "
            f"run again with: {escape(again)}"
        )
        raise typer.Exit(NOT_READY_EXIT)
    if not result.ok:
        err_console().print(f"run {result.run_id} {result.status}; resume with: {escape(again)}")
        raise typer.Exit(1)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``docker stop``, a scheduler), raised in the main thread: the same clean stop as Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while a run executes, so that the engine records it cancelled, releases its
    leases and stops its workers, instead of dying with the run left ``running`` until it is found stale."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute_with_progress(execute: Callable[[EventSink], Result], quiet: bool, resume: str) -> tuple[Result, float]:
    """Call ``execute(on_event)`` with a live progress line on a terminal; on Ctrl-C print how to resume and exit
    130, on SIGTERM exit 143."""
    progress = Progress()
    try:
        with _stop_on_sigterm():
            return _execute(execute, progress, quiet), time.monotonic() - progress.started
    except Terminated:
        err_console().print(f"[yellow]terminated (SIGTERM)[/]; resume with: {escape(resume)}")
        raise typer.Exit(143) from None
    except KeyboardInterrupt:
        err_console().print(f"[yellow]interrupted[/]; resume with: {escape(resume)}")
        raise typer.Exit(130) from None
    except ConnectionLost as exc:
        err_console().print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        err_console().print(f"resume with: {escape(resume)}")
        raise typer.Exit(exc.exit_code) from None


def _execute(execute: Callable[[EventSink], Result], progress: Progress, quiet: bool) -> Result:
    """Call ``execute(on_event)``, with a live progress line on a terminal."""
    if not quiet and sys.stdout.isatty():
        from rich.live import Live

        with Live(progress.render(), console=console(), refresh_per_second=8, transient=True) as live:
            progress.live = live
            return execute(progress)
    return execute(progress)


def _resume(project: str, options: RunOptions, sets: list[str] | None) -> str:
    """The command that runs the same selection again (everything committed is reused)."""
    parts = ["cairn", "run", *options.selection]
    if project != ".":
        parts += ["-C", project]
    if options.partition:
        parts += ["--partition", options.partition]
    if options.partition_range:
        parts += ["--from", options.partition_range[0], "--to", options.partition_range[1]]
    for item in sets or []:
        parts += ["--set", item]
    if options.profile:
        parts += ["--profile", options.profile]
    if options.snapshot:
        parts += ["--snapshot", options.snapshot]
    return shlex.join(parts)


def _tee(*sinks: EventSink) -> EventSink:
    def send(event: Event) -> None:
        for sink in sinks:
            sink(event)

    return send


def cache_savings(project: Project, result: RunResult) -> float | None:
    """Seconds the run's cached steps saved (the recorded durations of what they reused); None without any."""
    if not result.count("cached"):
        return None
    with project_stores(project) as stores:
        return stores.meta.cache_savings(result.run_id)[1]


def summary(result: RunResult, elapsed: float, saved_s: float | None = None) -> None:
    """The steps that did not come from the cache, each failure's error, then one line of counts.

    Plain text, coloured on a terminal only: a run whose output goes to a log or a pipe does not load Rich.
    """
    shown = [s for s in result.steps if s.status != "cached"]
    if shown:
        rows = [
            [step_label(s.asset, s.partition), s.status, str(s.attempts), seconds(s.duration_s), s.reason]
            for s in shown
        ]
        print_rows(["step", "status", "attempts", "duration", "reason"], rows)
    lines = [
        # not wrapped: a path in the error stays whole in a log file
        f"{painted(step_label(s.asset, s.partition) + ' failed', 'failed')}:\n{s.error}"
        for s in result.steps
        if s.status == "failed" and s.error
    ]
    counts = ", ".join(f"{result.count(k)} {k}" for k in ("executed", "cached", "failed", "skipped") if result.count(k))
    if saved_s is not None:
        from cairn.cli.observability import spoken

        cached = f"{result.count('cached')} cached"
        counts = counts.replace(cached, f"{cached}, {spoken(saved_s)} saved", 1)
    status = painted(result.status, result.status)
    lines.append(f"run {result.run_id} {status}: {counts or 'nothing to do'} in {elapsed:.2f}s")
    if result.not_ready:
        lines.append(not_ready_line(result.not_ready))
    sys.stdout.write("\n".join(lines) + "\n")


def not_ready_line(waiting: list[StepResult], shown: int = 3) -> str:
    """``2 skipped because data is not ready: clean@2026-06-03 (needs raw@2026-06-03), …``."""
    named = []
    for s in waiting[:shown]:
        name = step_label(s.asset, s.partition)
        named.append(name if s.not_ready == name else f"{name} (needs {s.not_ready})")
    more = f", … {len(waiting) - shown} more" if len(waiting) > shown else ""
    return f"{len(waiting)} skipped because data is not ready: {', '.join(named)}{more}"
