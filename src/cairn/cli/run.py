"""`cairn run`: materialize a selection with a live progress display; a failed run says how to resume."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
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
    parse_sets,
    partition_range,
    print_json,
    seconds,
    styled,
    table,
)
from cairn.core.keys import step_label

if TYPE_CHECKING:
    from rich.live import Live
    from rich.text import Text

    from cairn.core.events import Event
    from cairn.engine.run import EventSink, RunOptions, RunResult, StepResult

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
    as_json: JsonOpt = False,
) -> None:
    """Materialize a selection: run what is stale, reuse what is cached."""
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
    proj = load_project(project)
    result, elapsed = execute_with_progress(lambda on_event: execute(proj, options, on_event), as_json, resume)
    if as_json:
        print_json(result.to_dict())
    else:
        summary(result, elapsed)
    exit_for(result, resume)


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


def execute_with_progress(execute: Callable[[EventSink], Result], quiet: bool, resume: str) -> tuple[Result, float]:
    """Call ``execute(on_event)`` with a live progress line on a terminal; on Ctrl-C print how to resume, exit 130."""
    progress = Progress()
    try:
        if not quiet and sys.stdout.isatty():
            from rich.live import Live

            with Live(progress.render(), console=console(), refresh_per_second=8, transient=True) as live:
                progress.live = live
                result = execute(progress)
        else:
            result = execute(progress)
    except KeyboardInterrupt:
        err_console().print(f"[yellow]interrupted[/]; resume with: {escape(resume)}")
        raise typer.Exit(130) from None
    return result, time.monotonic() - progress.started


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


def summary(result: RunResult, elapsed: float) -> None:
    shown = [s for s in result.steps if s.status != "cached"]
    if shown:
        grid = table("step", "status", "attempts", "duration", "reason")
        for s in shown:
            grid.add_row(
                step_label(s.asset, s.partition),
                styled(s.status),
                str(s.attempts),
                seconds(s.duration_s),
                escape(s.reason),
            )
        console().print(grid)
    for s in result.steps:
        if s.status == "failed" and s.error:
            console().print(f"[bold red]{step_label(s.asset, s.partition)} failed[/]:\n{escape(s.error)}")
    counts = ", ".join(f"{result.count(k)} {k}" for k in ("executed", "cached", "failed", "skipped") if result.count(k))
    console().print(f"run {result.run_id} {styled(result.status)}: {counts or 'nothing to do'} in {elapsed:.2f}s")
    waiting = result.not_ready
    if waiting:
        console().print(not_ready_line(waiting))


def not_ready_line(waiting: list[StepResult], shown: int = 3) -> str:
    """``2 skipped because data is not ready: clean@2026-06-03 (needs raw@2026-06-03), …``."""
    named = []
    for s in waiting[:shown]:
        name = step_label(s.asset, s.partition)
        named.append(name if s.not_ready == name else f"{name} (needs {s.not_ready})")
    more = f", … {len(waiting) - shown} more" if len(waiting) > shown else ""
    return f"{len(waiting)} skipped because data is not ready: {escape(', '.join(named))}{more}"
