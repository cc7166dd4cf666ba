"""Commands about where results come from and whether they hold: lineage, impact, diff, reproduce, verify, gc."""

from __future__ import annotations

import re
from pathlib import Path
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
    table,
)

if TYPE_CHECKING:
    from rich.tree import Tree

    from cairn.engine.reproduce import ReproduceResult
    from cairn.lineage.diff import AssetDiff, EnvDiff
    from cairn.lineage.graph import LineageNode

RunOpt = Annotated[
    str | None, typer.Option("--run", help="Use the materialization this run produced or reused (id, prefix, latest).")
]
_DIGEST = re.compile(r"b3:[0-9a-f]{64}")
StepArg = Annotated[str, typer.Argument(help="ASSET or ASSET@PARTITION.", metavar="ASSET[@PARTITION]")]


def register(app: typer.Typer) -> None:
    app.command()(lineage)
    app.command()(impact)
    app.command()(diff)
    app.command()(reproduce)
    app.command()(verify)
    app.command()(gc)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _value(value: object) -> str:
    if value is None:
        return "∅"
    if isinstance(value, str) and value.startswith("b3:"):
        return short(value)
    return escape(repr(value) if isinstance(value, str) else str(value))


def _version(value: object) -> str:
    """A distribution version as written (``2.0``, not ``'2.0'``); ∅ where the asset did not declare it."""
    return "∅" if value is None else escape(str(value))


def lineage(
    step: StepArg,
    project: ProjectOpt = ".",
    run: RunOpt = None,
    openlineage: Annotated[
        Path | None, typer.Option("--openlineage", help="Also write the OpenLineage run events to FILE (JSON lines).")
    ] = None,
    openlineage_url: Annotated[
        str | None, typer.Option("--openlineage-url", help="Also POST each OpenLineage event to this HTTP endpoint.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The upstream tree of a materialization down to its sources, with versions and runs."""
    from cairn.core.keys import parse_step
    from cairn.lineage.graph import find_materialization
    from cairn.lineage.graph import lineage as walk
    from cairn.lineage.openlineage import lineage_events, namespace_for, post_events, write_events

    target = parse_step(step)
    with project_stores(project) as stores:
        root = walk(stores.meta, find_materialization(stores.meta, target, run))
        events = (
            lineage_events(stores.meta, stores.artifacts, root, namespace_for(stores.settings.name))
            if openlineage is not None or openlineage_url is not None
            else []
        )
    notes = []
    if openlineage is not None:
        notes.append(f"wrote {write_events(events, openlineage)} OpenLineage events to {openlineage}")
    if openlineage_url is not None:
        notes.append(f"sent {post_events(events, openlineage_url)} OpenLineage events to {openlineage_url}")
    if as_json:
        print_json(root.to_dict())
    else:
        from rich.tree import Tree

        tree = Tree(_node_text(root))
        _add_children(tree, root)
        console().print(tree)
    for note in notes:
        typer.echo(note, err=as_json)


def _node_text(node: LineageNode) -> str:
    name = f"[bold]{escape(node.label)}[/]"
    if node.mat is None:
        return f"{name} {short(node.data_version)} [red](no record of this version)[/]"
    mat = node.mat
    kind = " [cyan](source)[/]" if node.source else ""
    again = " [dim](shown above)[/]" if node.repeated else ""
    code = "" if node.source else f"  code {short(mat.code_version)}"
    return f"{name}{kind} {short(node.data_version)}{code}  run {mat.run_id}  {ago(mat.created_at)}{again}"


def _add_children(tree: Tree, node: LineageNode) -> None:
    for child in node.inputs:
        _add_children(tree.add(_node_text(child)), child)


def impact(
    asset: Annotated[str, typer.Argument(help="An asset name.")], project: ProjectOpt = ".", as_json: JsonOpt = False
) -> None:
    """Every asset downstream of ASSET, with its current materializations."""
    from cairn.lineage.graph import impact as downstream
    from cairn.project import load_project

    proj = load_project(project)
    with project_stores(proj) as stores:
        found = downstream(proj.graph, stores.meta, asset)
    if as_json:
        print_json([entry.to_dict() for entry in found])
        return
    if not found:
        console().print(f"nothing depends on {escape(asset)}")
        return
    grid = table("asset", "depth", "via", "materialized", "data version", "run", "age")
    for entry in found:
        latest = max(entry.current, key=lambda m: m.created_at, default=None)
        count = len(entry.current)
        grid.add_row(
            escape(entry.asset),
            str(entry.depth),
            escape(", ".join(entry.via)),
            "never" if latest is None else (f"{count} partitions" if count > 1 else "yes"),
            short(latest.data_version) if latest else "-",
            latest.run_id if latest else "-",
            ago(latest.created_at) if latest else "-",
        )
    console().print(grid)


def diff(
    run_a: Annotated[str, typer.Argument(help="The first run (id, unique prefix, or latest).")],
    run_b: Annotated[str, typer.Argument(help="The second run.")],
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """What differs between two runs: code, params, input data versions, env versions, metrics, environment."""
    from cairn.lineage.diff import diff_runs

    with project_stores(project) as stores:
        result = diff_runs(stores.meta, run_a, run_b)
    if as_json:
        print_json(result.to_dict())
        return
    out = console()
    out.print(f"[bold]{result.run_a}[/] → [bold]{result.run_b}[/]")
    if result.empty:
        out.print("no differences")
        return
    for entry in result.assets:
        out.print(f"[bold]{escape(entry.label)}[/]" + ("" if entry.presence == "both" else f" ({entry.presence})"))
        for line in _asset_lines(entry):
            out.print("  " + line)
    if not result.environment.empty:
        out.print("[bold]environment[/]")
        for line in _env_lines(result.environment):
            out.print("  " + line)


def _asset_lines(entry: AssetDiff) -> list[str]:
    lines = []
    if entry.code_version is not None:
        parts = ", ".join(escape(c.name) for c in entry.code_parts)
        lines.append(
            f"code {short(entry.code_version.before)} → {short(entry.code_version.after)}"
            + (f" (changed: {parts})" if parts else "")
        )
    lines += [f"param {escape(c.name)}: {_value(c.before)} → {_value(c.after)}" for c in entry.params]
    if entry.seed is not None:
        lines.append(f"seed {entry.seed.before} → {entry.seed.after}")
    lines += [f"input {escape(c.name)}: {_value(c.before)} → {_value(c.after)}" for c in entry.inputs]
    lines += [f"env changed: {escape(c.name)} {_version(c.before)} → {_version(c.after)}" for c in entry.env]
    if entry.data_version is not None:
        lines.append(f"data version {_value(entry.data_version.before)} → {_value(entry.data_version.after)}")
    lines += [f"metric {escape(c.name)}: {_value(c.before)} → {_value(c.after)}" for c in entry.metrics]
    return lines


def _env_lines(env: EnvDiff) -> list[str]:
    lines = [f"{escape(c.name)}: {_value(c.before)} → {_value(c.after)}" for c in env.entries]
    for c in env.distributions:
        if c.before is None:
            lines.append(f"[green]+[/] {escape(c.name)} {escape(str(c.after))}")
        elif c.after is None:
            lines.append(f"[red]-[/] {escape(c.name)} {escape(str(c.before))}")
        else:
            lines.append(f"[yellow]~[/] {escape(c.name)} {escape(str(c.before))} → {escape(str(c.after))}")
    return lines


def reproduce(step: StepArg, project: ProjectOpt = ".", run: RunOpt = None, as_json: JsonOpt = False) -> None:
    """Re-execute one materialization from its exact recorded inputs; exit 1 unless the output is identical."""
    from cairn.core.keys import parse_step
    from cairn.engine.reproduce import reproduce as rerun
    from cairn.project import load_project

    target = parse_step(step)
    proj = load_project(project)
    with project_stores(proj) as stores:
        result = rerun(proj, stores.stores, target, run)
    if as_json:
        print_json(result.to_dict())
    else:
        _print_reproduction(result)
    if not result.identical:
        raise typer.Exit(1)


def _print_reproduction(result: ReproduceResult) -> None:
    out = console()
    style = {"identical": "green", "differs": "yellow", "failed": "bold red"}[result.verdict]
    out.print(
        f"[bold]{escape(result.label)}[/] (run {result.run_id}): [{style}]{result.verdict}[/] "
        f"in {seconds(result.duration_s)}"
    )
    out.print(f"  recorded   {result.recorded}")
    out.print(f"  reproduced {result.reproduced or '-'}")
    if result.error:
        out.print(f"  [red]error[/]: {escape(result.error)}")
    if result.identical:
        return
    if result.code_recorded == result.code_current:
        out.print("  code: unchanged")
    else:
        parts = ", ".join(escape(c.name) for c in result.code_parts)
        out.print(
            f"  code: {short(result.code_recorded)} → {short(result.code_current)}"
            + (f" (changed: {parts})" if parts else "")
        )
    if result.environment.empty:
        out.print("  environment: unchanged")
    else:
        out.print("  environment:")
        for line in _env_lines(result.environment):
            out.print("    " + line)
    if result.verdict == "differs" and result.code_recorded == result.code_current and result.environment.empty:
        out.print(
            "  same code, inputs, params, seed and environment: the step is not deterministic (unseeded "
            "randomness, time, set or dict order, parallelism); use ctx.seed and sort what you output"
        )


def verify(project: ProjectOpt = ".", as_json: JsonOpt = False) -> None:
    """Re-hash every stored object; list missing and corrupt ones and move corrupt ones to quarantine."""
    from cairn.engine.integrity import verify as check

    with project_stores(project) as stores:
        report = check(stores.meta, stores.artifacts)
    if as_json:
        print_json(report.to_dict())
    else:
        out = console()
        out.print(
            f"verified {report.objects} objects, {_size(report.bytes)} in {seconds(report.seconds)} "
            f"({_size(report.throughput)}/s); {report.unreferenced} unreferenced (see `cairn gc`)"
        )
        if report.ok:
            out.print("[green]ok[/]: every referenced object is present and intact")
        else:
            grid = table("problem", "object", "used by", "detail", "moved to")
            for p in report.problems:
                grid.add_row(
                    f"[red]{p.problem}[/]",
                    short(p.digest),
                    escape(", ".join(p.used_by) or "-"),
                    escape(_DIGEST.sub(lambda m: short(m.group()), p.detail)),
                    escape(p.moved_to or "-"),
                )
            out.print(grid)
            out.print("the next `cairn run` recomputes what is missing or was moved to quarantine")
    if not report.ok:
        raise typer.Exit(1)


def gc(
    project: ProjectOpt = ".",
    apply: Annotated[bool, typer.Option("--apply", help="Remove what was found (default: only list it).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove objects no materialization references, and stale temporary files (a dry run unless --apply)."""
    from cairn.engine.integrity import gc as collect

    with project_stores(project) as stores:
        report = collect(stores.meta, stores.artifacts, apply=apply, stale_after_s=stores.settings.stale_after_s)
    if as_json:
        print_json(report.to_dict())
        return
    out = console()
    verb = "removed" if report.applied else "would remove"
    for digest, size in report.objects:
        out.print(f"{verb} object {digest} ({_size(size)})")
    for path, size in (*report.temp_files, *report.file_caches):
        out.print(f"{verb} {escape(path)} ({_size(size)})")
    for digest, why in report.unreadable_manifests:
        out.print(
            f"[yellow]warning[/]: Files manifest {short(digest)} cannot be read ({escape(why)}); run `cairn verify`"
        )
    if report.empty:
        out.print(f"nothing to remove; {report.kept} referenced objects kept")
        return
    count = len(report.objects) + len(report.temp_files) + len(report.file_caches)
    entries = "entry" if count == 1 else "entries"
    out.print(f"{verb} {count} {entries}, {_size(report.bytes)}; {report.kept} referenced objects kept")
    if not report.applied:
        out.print("run `cairn gc --apply` to remove them")
