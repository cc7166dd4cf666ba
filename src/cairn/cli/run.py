"""`cairn run`: materialize a selection with a live progress display; a failed run says how to resume."""

from __future__ import annotations

import shlex
import sys
import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cairn.cli.common import (
    JsonOpt,
    ProfileOpt,
    ProjectOpt,
    SetOpt,
    console,
    err_console,
    parse_sets,
    print_json,
    seconds,
    styled,
)


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

    def __call__(self, event: Any) -> None:
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
        done = sum(self.counts.get(s, 0) for s in ("executed", "cached"))
        elapsed = time.monotonic() - self.started
        line = (
            f"{done}/{self.total} done · {len(self.running)} running · {self.counts.get('failed', 0)} failed · "
            f"{self.counts.get('skipped', 0)} skipped · {elapsed:.1f}s"
        )
        running = ", ".join(sorted(self.running)[:4])
        body = "\n".join([line, *self.recent[-3:], f"[cyan]running[/] {running}" if running else ""])
        return Text.from_markup(body.rstrip())


def run(
    selection: Annotated[list[str] | None, typer.Argument(help="Assets or selectors (+name, name+, tag:k=v).")] = None,
    project: ProjectOpt = ".",
    sets: SetOpt = None,
    profile: ProfileOpt = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Number of parallel workers.")] = None,
    executor: Annotated[
        str | None, typer.Option("--executor", help="inline, thread or process (default from cairn.toml).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Run the selected assets even if cached.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Start nothing new after a failure.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Materialize a selection: run what is stale, reuse what is cached."""
    from cairn.engine.api import materialize
    from cairn.project import load_project

    proj = load_project(project)
    progress = Progress()
    live_ok = not as_json and sys.stdout.isatty()
    try:
        if live_ok:
            with Live(progress.render(), console=console, refresh_per_second=8, transient=True) as live:
                progress.live = live
                result = _materialize(
                    materialize, proj, selection, sets, profile, workers, executor, force, fail_fast, progress
                )
        else:
            result = _materialize(
                materialize, proj, selection, sets, profile, workers, executor, force, fail_fast, progress
            )
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]; resume with: " + _resume(project, selection, sets, profile))
        raise typer.Exit(130) from None
    if as_json:
        print_json(result.to_dict())
    else:
        _summary(result, time.monotonic() - progress.started)
    if not result.ok:
        err_console.print(
            f"run {result.run_id} {result.status}; resume with: " + _resume(project, selection, sets, profile)
        )
        raise typer.Exit(1)


def _materialize(
    materialize: Any,
    proj: Any,
    selection: list[str] | None,
    sets: list[str] | None,
    profile: str | None,
    workers: int | None,
    executor: str | None,
    force: bool,
    fail_fast: bool,
    progress: Progress,
) -> Any:
    return materialize(
        tuple(selection or ()),
        project=proj,
        force=force,
        fail_fast=fail_fast,
        executor=executor,
        workers=workers,
        profile=profile,
        params=parse_sets(sets),
        on_event=progress,
    )


def _resume(project: str, selection: list[str] | None, sets: list[str] | None, profile: str | None) -> str:
    parts = ["cairn", "run", *(selection or [])]
    if project != ".":
        parts += ["-C", project]
    for item in sets or []:
        parts += ["--set", item]
    if profile:
        parts += ["--profile", profile]
    return shlex.join(parts)


def _summary(result: Any, elapsed: float) -> None:
    shown = [s for s in result.steps if s.status != "cached"]
    if shown:
        table = Table("step", "status", "attempts", "duration", "reason", box=None, header_style="bold")
        for s in shown:
            name = f"{s.asset}@{s.partition}" if s.partition else s.asset
            table.add_row(name, styled(s.status), str(s.attempts), seconds(s.duration_s), escape(s.reason))
        console.print(table)
    for s in result.steps:
        if s.status == "failed" and s.error:
            name = f"{s.asset}@{s.partition}" if s.partition else s.asset
            console.print(f"[bold red]{name} failed[/]:\n{escape(s.error)}")
    counts = ", ".join(f"{result.count(k)} {k}" for k in ("executed", "cached", "failed", "skipped") if result.count(k))
    console.print(f"run {result.run_id} {styled(result.status)}: {counts or 'nothing to do'} in {elapsed:.2f}s")
