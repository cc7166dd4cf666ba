"""Dataset versions and partition ranges: `cairn snapshot create|list|show` and `cairn backfill`."""

from __future__ import annotations

from typing import Annotated, Any

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
    short,
    styled,
    table,
)
from cairn.cli.run import execute_with_progress, exit_for, summary
from cairn.errors import UsageError

snapshot_app = typer.Typer(help="Pin the current data versions of a selection as a named dataset version.")


def register(app: typer.Typer) -> None:
    app.add_typer(snapshot_app, name="snapshot")
    app.command()(backfill)


def _stores(project: str) -> Any:
    from cairn.config import load_settings
    from cairn.engine.api import open_stores

    return open_stores(load_settings(project))


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
    with _stores(project) as stores:
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
    with _stores(project) as stores:
        records = stores.meta.snapshots()
    if as_json:
        print_json(
            [
                {"name": r.name, "created_at": r.created_at, "selection": r.selection, "entries": r.entries}
                for r in records
            ]
        )
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
    with _stores(project) as stores:
        pinned = stores.meta.snapshot(name)
    rows = sorted(pinned.values(), key=lambda m: (m.asset, m.partition))
    if as_json:
        print_json(
            [
                {
                    "asset": m.asset,
                    "partition": m.partition or None,
                    "data_version": m.data_version,
                    "run_id": m.run_id,
                    "created_at": m.created_at,
                }
                for m in rows
            ]
        )
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
        _start(project, words, first, last, sets or [], profile, workers, as_json)


def _start(
    project: str,
    selection: list[str],
    first: str,
    last: str,
    sets: list[str],
    profile: str | None,
    workers: int | None,
    as_json: bool,
) -> None:
    from cairn.core.records import BackfillRecord
    from cairn.engine.run import new_run_id

    record = BackfillRecord(
        backfill_id="bf-" + new_run_id(),
        selection=" ".join(selection) or "*",
        first_key=first,
        last_key=last,
        status="pending",
        created_at=0.0,
        options={"selection": selection, "set": sets, "profile": profile, "workers": workers},
    )
    parse_sets(sets)
    with _stores(project) as stores:
        stores.meta.create_backfill(record)
    _execute(project, record, as_json)


def _resume(project: str, text: str, as_json: bool) -> None:
    with _stores(project) as stores:
        record = stores.meta.backfill(text)
    if record.status == "succeeded":
        console().print(f"backfill {record.backfill_id} already succeeded; running it again reuses every result")
    _execute(project, record, as_json)


def _execute(project: str, record: Any, as_json: bool) -> None:
    from cairn.engine.api import execute
    from cairn.engine.run import RunOptions
    from cairn.project import load_project

    opts = record.options
    options = RunOptions(
        selection=tuple(opts.get("selection") or ()),
        workers=opts.get("workers"),
        profile=opts.get("profile"),
        overrides=parse_sets(opts.get("set") or []),
        partition_range=(record.first_key, record.last_key),
    )
    proj = load_project(project)
    resume = f"cairn backfill resume {record.backfill_id}" + (f" -C {project}" if project != "." else "")
    with _stores(project) as stores:

        def link(event: Any) -> None:
            if event.kind == "run_started":
                stores.meta.add_backfill_run(record.backfill_id, event.run_id, event.total)

        try:
            result, elapsed = execute_with_progress(proj, options, as_json, resume, execute, link)
        except BaseException:
            stores.meta.finish_backfill(record.backfill_id, "interrupted")
            raise
        stores.meta.finish_backfill(record.backfill_id, result.status)
    if as_json:
        print_json({"backfill_id": record.backfill_id, **result.to_dict()})
    else:
        summary(result, elapsed)
        console().print(f"backfill {record.backfill_id} {styled(result.status)}")
    exit_for(result, resume)  # a partial backfill is resumed the same way once the late data lands


def _status(project: str, text: str | None, as_json: bool) -> None:
    with _stores(project) as stores:
        records = [stores.meta.backfill(text)] if text else stores.meta.backfills()
        rows = [(r, _progress(stores.meta, r)) for r in records]
    if as_json:
        print_json(
            [
                {
                    "backfill_id": r.backfill_id,
                    "selection": r.selection,
                    "from": r.first_key,
                    "to": r.last_key,
                    "status": r.status,
                    "runs": list(r.run_ids),
                    **p,
                }
                for r, p in rows
            ]
        )
        return
    grid = table("backfill", "status", "range", "selection", "done", "failed", "runs", "started")
    for r, p in rows:
        grid.add_row(
            r.backfill_id,
            styled(r.status),
            f"{r.first_key} … {r.last_key}",
            escape(r.selection),
            f"{p['done']}/{p['total']}",
            str(p["failed"]),
            str(len(r.run_ids)),
            ago(r.created_at),
        )
    console().print(grid)


def _progress(meta: Any, record: Any) -> dict[str, int]:
    """Steps done across the backfill's runs, and failed in its last run."""
    done: set[tuple[str, str]] = set()
    failed = 0
    for i, run_id in enumerate(record.run_ids):
        steps = meta.run_steps(run_id)
        done |= {(s.asset, s.partition) for s in steps if s.status in ("executed", "cached")}
        if i == len(record.run_ids) - 1:
            failed = sum(1 for s in steps if s.status == "failed")
    return {"done": len(done), "failed": failed, "total": record.steps_total}
