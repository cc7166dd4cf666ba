"""Read-only commands about the pipeline: list, graph, plan, status, why."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cairn.cli.common import (
    FromOpt,
    JsonOpt,
    PartitionOpt,
    ProfileOpt,
    ProjectOpt,
    SetOpt,
    ToOpt,
    ago,
    check_summary,
    console,
    escape,
    parse_sets,
    partition_range,
    print_json,
    print_rows,
    short,
    table,
)
from cairn.errors import UsageError

if TYPE_CHECKING:
    from cairn.core.fingerprint import Unresolved
    from cairn.core.plan import Reason
    from cairn.core.records import Materialization
    from cairn.engine.api import AssetStatus
    from cairn.engine.prepare import RunOptions
    from cairn.project import Project

GRAPH_FORMATS = ("text", "mermaid", "dot")


SnapshotOpt = Annotated[
    str | None,
    typer.Option("--snapshot", help="As `cairn run --snapshot`: upstream assets outside the selection read from it."),
]


def register(app: typer.Typer) -> None:
    app.command("list")(list_assets)
    app.command()(graph)
    app.command()(plan)
    app.command()(status)
    app.command()(why)


def _load(project: str) -> Project:
    from cairn.project import load_project

    return load_project(project)


def list_assets(project: ProjectOpt = ".", as_json: JsonOpt = False) -> None:
    """Assets with their kind, inputs and tags."""
    proj = _load(project)
    rows: list[dict[str, Any]] = []  # JSON rows
    for name in proj.graph.order:
        a = proj.graph.assets[name]
        doc = (a.fn.__doc__ or "").strip().splitlines()[0] if a.fn is not None and a.fn.__doc__ else ""
        rows.append(
            {
                "asset": name,
                "kind": "source" if a.is_source else a.kind,
                "inputs": list(a.deps),
                "partitions": None,
                "tags": dict(a.tags),
                "params": dict(a.params),
                "description": doc or (a.path or ""),
            }
        )
    if as_json:
        print_json(rows)
        return
    grid = table("asset", "kind", "inputs", "tags", "description")
    for r in rows:
        tags = " ".join(f"{k}={v}" for k, v in r["tags"].items())
        grid.add_row(r["asset"], r["kind"], ", ".join(r["inputs"]), tags, escape(r["description"]))
    console().print(grid)


def graph(
    project: ProjectOpt = ".",
    fmt: Annotated[str, typer.Option("--format", help="text, mermaid or dot.")] = "text",
) -> None:
    """The asset DAG as text, Mermaid or Graphviz dot."""
    if fmt not in GRAPH_FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(GRAPH_FORMATS)}")
    g = _load(project).graph
    if fmt == "mermaid":
        lines = ["graph LR"]
        lines += [f"    {up} --> {name}" for name in g.order for up in g.upstream[name]]
        lines += [f"    {name}" for name in g.order if not g.upstream[name] and not g.downstream[name]]
    elif fmt == "dot":
        lines = ["digraph cairn {", "  rankdir=LR;"]
        lines += [f'  "{name}";' for name in g.order]
        lines += [f'  "{up}" -> "{name}";' for name in g.order for up in g.upstream[name]]
        lines.append("}")
    else:
        lines = [f"{name} <- {', '.join(g.upstream[name])}" if g.upstream[name] else name for name in g.order]
    typer.echo("\n".join(lines))


def _options(
    selection: list[str] | None,
    sets: list[str] | None,
    profile: str | None,
    force: bool = False,
    partition: str | None = None,
    span: tuple[str, str] | None = None,
    snapshot: str | None = None,
) -> RunOptions:
    from cairn.engine.prepare import RunOptions

    return RunOptions(
        selection=tuple(selection or ()),
        force=force,
        profile=profile,
        overrides=parse_sets(sets),
        partition=partition,
        partition_range=span,
        snapshot=snapshot,
    )


def plan(
    selection: Annotated[list[str] | None, typer.Argument(help="Assets or selectors (+name, name+, tag:k=v).")] = None,
    project: ProjectOpt = ".",
    partition: PartitionOpt = None,
    first: FromOpt = None,
    last: ToOpt = None,
    sets: SetOpt = None,
    profile: ProfileOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Plan as if the selected assets were forced.")] = False,
    snapshot: SnapshotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What a run would do, step by step, each with its reason; runs nothing."""
    from cairn.core.bulk import keeping_what_is_built
    from cairn.engine.api import open_stores, preview

    span = partition_range(partition, first, last)
    options = _options(selection, sets, profile, force, partition, span, snapshot)
    with keeping_what_is_built():
        proj = _load(project)
        with open_stores(proj.settings) as stores:
            _, result = preview(proj, options, stores)
    to_run = len(result.to_run)
    if as_json:
        steps = [
            {
                "asset": d.step.asset,
                "partition": d.step.partition or None,
                "action": d.action,
                "reason": str(d.reason),
                "cache_key": d.cache_key,
            }
            for d in result.steps
        ]
        print_json({"steps": steps, "to_run": to_run})
        return
    print_rows(["step", "action", "reason"], [[str(d.step), d.action, str(d.reason)] for d in result.steps])
    typer.echo(f"{to_run} to run, {len(result.steps) - to_run} cached")


def status(
    selection: Annotated[list[str] | None, typer.Argument(help="Assets or selectors; default all.")] = None,
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """Every asset: last materialization, fresh or stale, and why."""
    from cairn.core.bulk import keeping_what_is_built
    from cairn.engine.api import open_stores
    from cairn.engine.api import status as asset_status

    with keeping_what_is_built():
        proj = _load(project)
        with open_stores(proj.settings) as stores:
            rows = asset_status(proj, stores, _options(selection, None, None))
    if as_json:
        print_json(
            [
                {
                    "asset": r.step.asset,
                    "partition": r.step.partition or None,
                    "state": r.state,
                    "reason": r.reason,
                    "data_version": r.latest.data_version if r.latest else None,
                    "run_id": r.latest.run_id if r.latest else None,
                    "materialized_at": r.latest.created_at if r.latest else None,
                    "checks": r.latest.metadata.get("cairn.checks", []) if r.latest else [],
                }
                for r in rows
            ]
        )
        return
    out = []
    for name, group in _by_asset(rows):
        latest = max((r.latest for r in group if r.latest), key=lambda m: m.created_at, default=None)
        stale = [r for r in group if r.state != "fresh"]
        if len(group) == 1 and not group[0].step.partition:
            state = group[0].state
        else:
            counts = {k: sum(1 for r in group if r.state == k) for k in ("fresh", "stale", "missing")}
            state = f"{len(group)} partitions: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        reason = f"{stale[0].step}: {stale[0].reason}" if stale and group[0].step.partition else ""
        out.append(
            [
                name,
                state,
                ago(latest.created_at) if latest else "never",
                latest.run_id if latest else "-",
                short(latest.data_version) if latest and len(group) == 1 else "-",
                check_summary([r.latest for r in group if r.latest]),
                reason or (stale[0].reason if stale else ""),
            ]
        )
    print_rows(["asset", "state", "last materialized", "run", "data version", "checks", "reason"], out)


def _by_asset(rows: list[AssetStatus]) -> list[tuple[str, list[AssetStatus]]]:
    groups: dict[str, list[AssetStatus]] = {}
    for r in rows:
        groups.setdefault(r.step.asset, []).append(r)
    return list(groups.items())


def why(
    target: Annotated[str, typer.Argument(help="ASSET or ASSET@PARTITION.")],
    project: ProjectOpt = ".",
    sets: SetOpt = None,
    profile: ProfileOpt = None,
    snapshot: SnapshotOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Is an asset fresh or stale, and exactly what changed: code, params, an input's data, env."""
    from cairn.core.keys import parse_step
    from cairn.core.plan import CACHED_ACTION, root_causes
    from cairn.engine.api import open_stores, preview

    step = parse_step(target)
    proj = _load(project)
    asset = proj.graph[step.asset]  # unknown names fail here with a suggestion
    if asset.partitions is not None and not step.partition:
        raise UsageError(f"asset '{step.asset}' is partitioned: name a partition, e.g. cairn why {step.asset}@KEY")
    if asset.partitions is None and step.partition:
        raise UsageError(f"asset '{step.asset}' is not partitioned: drop '@{step.partition}'")
    options = _options([step.asset], sets, profile, partition=step.partition or None, snapshot=snapshot)
    with open_stores(proj.settings) as stores:
        engine, result = preview(proj, options, stores)
        latest = stores.meta.latest_materialization(step.asset, step.partition)
        decision = next(d for d in result.steps if d.step == step)
        reused = stores.meta.materializations_by_id([decision.cached.id]) if decision.cached is not None else []
    chain = root_causes(result, engine.inputs_of(), step)
    fresh = decision.action == CACHED_ACTION  # a step skipped or failing for missing data is not fresh
    unseen = proj.unresolved(asset)
    if as_json:
        print_json(
            {
                "asset": step.asset,
                "partition": step.partition or None,
                "fresh": fresh,
                "reason": str(decision.reason),
                "changes": _changes(decision.reason),
                "cache_key": decision.cache_key,
                "upstream": [{"step": str(d.step), "reason": str(d.reason)} for d in chain],
                "upstream_changes": {str(d.step): _changes(d.reason) for d in chain},
                "not_fingerprinted": [{"name": u.name, "what": u.what} for u in unseen],
                "checks": latest.metadata.get("cairn.checks", []) if latest is not None else [],
                "latest": None
                if latest is None
                else {
                    "run_id": latest.run_id,
                    "data_version": latest.data_version,
                    "created_at": latest.created_at,
                },
            }
        )
        return
    if fresh:
        (hit,) = reused
        console().print(
            f"[green]{step} is fresh[/]: its cache key {short(decision.cache_key)} was materialized "
            f"by run {hit.run_id} ({ago(hit.created_at)}), data version {short(hit.data_version)}"
        )
        _print_checks(hit)
        _print_unseen(unseen)
        return
    console().print(f"[yellow]{step} is stale[/]: {escape(str(decision.reason))}")
    for d in chain:
        console().print(f"  because {d.step}: {escape(str(d.reason))}")
    if latest is not None:
        console().print(f"  last materialized by run {latest.run_id} ({ago(latest.created_at)})")
    _print_checks(latest)
    _print_unseen(unseen)


def _changes(reason: Reason) -> list[dict[str, object]]:
    """A reason's changes as JSON: kind, subject, old and new value."""
    return [c.to_dict() for c in reason.changes]


def _print_unseen(unseen: list[Unresolved]) -> None:
    for u in unseen:
        console().print(f"  not fingerprinted: {escape(str(u))}; its changes are not seen")


def _print_checks(latest: Materialization | None) -> None:
    for result in latest.metadata.get("cairn.checks", []) if latest is not None else []:
        state = "passed" if result["passed"] else ("FAILED" if result["blocking"] else "warning")
        console().print(
            f"  check {escape(result['rule'])}: {state} (observed {escape(str(result['observed']))}, "
            f"expected {escape(str(result['expected']))})"
        )
