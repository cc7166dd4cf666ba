"""Dataset versions and partition ranges: `cairn snapshot create|list|show` and `cairn backfill`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cairn.cli.common import (
    FromOpt,
    JsonOpt,
    ProfileOpt,
    ProjectOpt,
    SetOpt,
    ToOpt,
    ago,
    console,
    escape,
    parse_sets,
    print_json,
    project_stores,
    short,
    styled,
    table,
)
from cairn.cli.run import execute_with_progress, exit_for, summary
from cairn.errors import UsageError

if TYPE_CHECKING:
    from cairn.core.governance import BackfillRecord
    from cairn.project import Project

snapshot_app = typer.Typer(help="Pin the current data versions of a selection as a named dataset version.")


def register(app: typer.Typer) -> None:
    app.add_typer(snapshot_app, name="snapshot")
    app.command()(backfill)


@snapshot_app.command("create")
def snapshot_create(
    name: Annotated[str, typer.Argument(help="A new snapshot name.")],
    selection: Annotated[list[str] | None, typer.Argument(help="Assets or selectors; default all.")] = None,
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """Pin the latest materialization of every partition of the selected assets under NAME."""
    from cairn.core.keys import validate_name
    from cairn.core.selection import select
    from cairn.project import load_project

    validate_name(name, "snapshot")
    proj = load_project(project)
    chosen = select(proj.graph, selection or [])
    with project_stores(proj) as stores:
        latest = stores.meta.latest_materializations()
        entries = [(a, p, m.id) for (a, p), m in sorted(latest.items()) if a in chosen]
        if not entries:
            raise UsageError("nothing to pin: the selected assets have no materialization yet; run them first")
        stores.meta.create_snapshot(name, " ".join(selection or []) or "*", entries)
    if as_json:
        print_json({"name": name, "entries": len(entries)})
        return
    console().print(f"snapshot [bold]{escape(name)}[/] pins {len(entries)} materializations")


@snapshot_app.command("list")
def snapshot_list(project: ProjectOpt = ".", as_json: JsonOpt = False) -> None:
    """Every snapshot, newest first."""
    with project_stores(project) as stores:
        records = stores.meta.snapshots()
    if as_json:
        print_json([r.to_dict() for r in records])
        return
    grid = table("snapshot", "created", "selection", "entries")
    for r in records:
        grid.add_row(escape(r.name), ago(r.created_at), escape(r.selection), str(r.entries))
    console().print(grid)


@snapshot_app.command("show")
def snapshot_show(
    name: Annotated[str, typer.Argument(help="The snapshot.")], project: ProjectOpt = ".", as_json: JsonOpt = False
) -> None:
    """The materializations a snapshot pins."""
    with project_stores(project) as stores:
        pinned = stores.meta.snapshot(name)
    rows = sorted(pinned.values(), key=lambda m: (m.asset, m.partition))
    if as_json:
        print_json([m.to_dict("asset", "partition", "data_version", "run_id", "created_at") for m in rows])
        return
    grid = table("asset", "partition", "data version", "run", "materialized")
    for m in rows:
        grid.add_row(m.asset, m.partition or "-", short(m.data_version), m.run_id, ago(m.created_at))
    console().print(grid)


def backfill(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="SEL to start a backfill, or `status [ID]`, or `resume ID`.", metavar="SEL | status | resume"
        ),
    ] = None,
    project: ProjectOpt = ".",
    first: FromOpt = None,
    last: ToOpt = None,
    sets: SetOpt = None,
    profile: ProfileOpt = None,
    workers: Annotated[int | None, typer.Option("--workers", help="At most this many steps at once.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a selection over a partition range as a recorded, resumable backfill."""
    words = list(args or [])
    if words[:1] == ["status"]:
        _status(project, words[1] if len(words) > 1 else None, as_json)
    elif words[:1] == ["resume"]:
        if len(words) != 2:
            raise UsageError("usage: cairn backfill resume ID (see `cairn backfill status`)")
        _resume(project, words[1], as_json)
    else:
        if first is None or last is None:
            raise UsageError("a backfill needs a range: cairn backfill SEL --from FIRST --to LAST")
        _start(project, words, (first, last), sets or [], profile, workers, as_json)


def _start(
    project: str,
    selection: list[str],
    partitions: tuple[str, str],
    sets: list[str],
    profile: str | None,
    workers: int | None,
    as_json: bool,
) -> None:
    from cairn.engine import backfill as engine
    from cairn.project import load_project

    params = parse_sets(sets)
    proj = load_project(project)
    record = engine.start(proj, selection, partitions, params=params, profile=profile, workers=workers)
    _execute(proj, project, record, as_json)


def _resume(project: str, text: str, as_json: bool) -> None:
    from cairn.engine import backfill as engine
    from cairn.project import load_project

    record = engine.find(project, text)
    if record.status == "succeeded":
        console().print(f"backfill {record.backfill_id} already succeeded; running it again reuses every result")
    _execute(load_project(project), project, record, as_json)


def _execute(proj: Project, project: str, record: BackfillRecord, as_json: bool) -> None:
    from cairn.engine import backfill as engine

    resume = f"cairn backfill resume {record.backfill_id}" + (f" -C {project}" if project != "." else "")
    result, elapsed = execute_with_progress(lambda on_event: engine.execute(proj, record, on_event), as_json, resume)
    if as_json:
        print_json(result.to_dict())
    else:
        summary(result.run, elapsed)
        console().print(f"backfill {result.backfill_id} {styled(result.status)}")
    exit_for(result.run, resume)  # a partial backfill is resumed the same way once the late data lands


def _status(project: str, text: str | None, as_json: bool) -> None:
    from cairn.engine import backfill as engine

    rows = engine.status(project, text)
    if as_json:
        print_json([row.to_dict() for row in rows])
        return
    grid = table("backfill", "status", "range", "selection", "done", "failed", "runs", "started")
    for row in rows:
        r, p = row.record, row.progress
        grid.add_row(
            r.backfill_id,
            styled(r.status),
            f"{r.first_key} … {r.last_key}",
            escape(r.selection),
            f"{p.done}/{p.total}",
            str(p.failed),
            str(len(r.run_ids)),
            ago(r.created_at),
        )
    console().print(grid)
