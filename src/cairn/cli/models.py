"""The model registry and aliases: `cairn models list|show|approve|promote|rollback` and
`cairn alias set|rollback|list|history`.

Who acts is the user whose token is in ``CAIRN_TOKEN``; a refusal (a failed blocking gate, no approval,
self-approval, nothing to roll back to) exits 1 with what is missing, a usage error 2.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cairn.cli.common import (
    JsonOpt,
    ProjectOpt,
    ago,
    console,
    escape,
    print_json,
    print_rows,
    project_stores,
    short,
)
from cairn.errors import UsageError

if TYPE_CHECKING:
    from cairn.registry import AliasChange, ModelVersion

models_app = typer.Typer(help="Model versions, their gates and approvals; promotion and rollback of their aliases.")
alias_app = typer.Typer(help="Aliases of any asset (production, champion): set, roll back, list, history.")

AliasOpt = Annotated[str, typer.Option("--alias", help="The alias to move.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded with the move and in the audit log).")]


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
    app.add_typer(alias_app, name="alias")


# ---- models -----------------------------------------------------------------------------------------


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Argument(help="Only the versions of this model.")] = None,
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """Every registered model version: author, data version, gates, approvals and aliases."""
    from cairn.registry import models

    with project_stores(project) as stores:
        found = models(stores.meta, name)
    if as_json:
        print_json([v.to_dict() for v in found])
        return
    if not found:
        console().print('no model versions yet: a kind="model" asset registers one each time it materializes')
        return
    rows = [
        [
            v.name,
            str(v.version),
            ago(v.record.created_at),
            v.author,
            short(v.record.data_version),
            v.gate_summary(),
            ", ".join(a.approver for a in v.counted_approvals) or "-",
            ", ".join(v.aliases) or "-",
        ]
        for v in found
    ]
    print_rows(["model", "version", "created", "author", "data version", "gates", "approved by", "aliases"], rows)


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="NAME (its newest version) or NAME@VERSION.", metavar="NAME[@VERSION]")],
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """One model version: what it was trained from, its metrics, model card, gates, approvals and aliases."""
    from cairn.registry import parse_model_ref, version

    name, number = parse_model_ref(ref)
    with project_stores(project) as stores:
        found = version(stores.meta, name, number)
    if as_json:
        print_json(found.to_dict(details=True))
        return
    _print_version(found)


@models_app.command("approve")
def models_approve(
    name: Annotated[str, typer.Argument(help="The model.")],
    number: Annotated[str, typer.Argument(help="The version.", metavar="VERSION")],
    reason: Annotated[str, typer.Option("--reason", help="Why it may go to production (recorded).")] = "",
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """Approve a model version as the user in CAIRN_TOKEN (an approver who is not its author)."""
    from cairn.registry import approve

    with project_stores(project) as stores:
        done = approve(stores.meta, name, _version(number), reason)
    if as_json:
        print_json(done.to_dict())
        return
    if done.new:
        console().print(f"{escape(done.approver)} approved model {escape(name)} version {done.version}")
    else:
        console().print(f"{escape(done.approver)} had approved model {escape(name)} version {done.version} already")
    if done.problems:
        console().print(f"[yellow]not promotable yet:[/] {escape('; '.join(done.problems))}")


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="The model.")],
    number: Annotated[str, typer.Argument(help="The version.", metavar="VERSION")],
    alias: AliasOpt = "champion",
    reason: ReasonOpt = "",
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """Point an alias at a version that passed its blocking gates and was approved by another user."""
    from cairn.registry import promote

    with project_stores(project) as stores:
        change = promote(stores.meta, name, _version(number), alias, reason=reason)
    _print_change(change, as_json)


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="The model.")],
    alias: AliasOpt = "champion",
    reason: ReasonOpt = "",
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """Move an alias of a model back to the version it pointed at before."""
    from cairn.registry import rollback

    with project_stores(project) as stores:
        change = rollback(stores.meta, name, alias, reason=reason)
    _print_change(change, as_json)


# ---- aliases ----------------------------------------------------------------------------------------


@alias_app.command("set")
def alias_set(
    alias: Annotated[str, typer.Argument(help="The alias (production, champion, ...).")],
    target: Annotated[
        str,
        typer.Argument(
            help="ASSET@<data version prefix>, ASSET@<materialization id> (or id:N), or ASSET@snapshot:NAME.",
            metavar="ASSET@REF",
        ),
    ],
    reason: ReasonOpt = "",
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """Point an alias of an asset at one materialization or snapshot (for a model: a promotion)."""
    from cairn.registry import resolve_target, set_alias

    asset, at, ref = target.partition("@")
    if not at or not asset or not ref:
        raise UsageError(
            f"{target!r}: name the target as ASSET@<data version prefix>, ASSET@<materialization id> or "
            "ASSET@snapshot:NAME"
        )
    with project_stores(project) as stores:
        change = set_alias(stores.meta, alias, asset, resolve_target(stores.meta, asset, ref), reason)
    _print_change(change, as_json)


@alias_app.command("rollback")
def alias_rollback(
    alias: Annotated[str, typer.Argument(help="The alias.")],
    asset: Annotated[str, typer.Argument(help="The asset it belongs to.")],
    reason: ReasonOpt = "",
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """Move an alias back to where it pointed before its last move."""
    from cairn.registry import rollback_alias

    with project_stores(project) as stores:
        change = rollback_alias(stores.meta, alias, asset, reason)
    _print_change(change, as_json)


@alias_app.command("list")
def alias_list(
    asset: Annotated[str | None, typer.Argument(help="Only this asset's aliases.")] = None,
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """Every alias and what it points at."""
    from cairn.registry import aliases

    with project_stores(project) as stores:
        found = aliases(stores.meta, asset)
    if as_json:
        print_json([a.to_dict() for a in found])
        return
    if not found:
        console().print("no aliases yet: `cairn alias set ALIAS ASSET@REF` or `cairn models promote` sets one")
        return
    rows = [
        [
            a.record.alias,
            a.record.asset,
            _target_text(a.record.snapshot, a.version, a.record.mat_id),
            a.partition or "-",
            short(a.data_version),
            a.record.moved_by,
            ago(a.record.moved_at),
        ]
        for a in found
    ]
    print_rows(["alias", "asset", "target", "partition", "data version", "moved by", "moved"], rows)


@alias_app.command("history")
def alias_history_cmd(
    alias: Annotated[str, typer.Argument(help="The alias.")],
    asset: Annotated[str | None, typer.Argument(help="Only its moves on this asset.")] = None,
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """Every move of an alias, oldest first: where it pointed, who moved it, why."""
    from cairn.registry import alias_history

    with project_stores(project) as stores:
        moves = alias_history(stores.meta, alias, asset)
        versions = {(v.name, v.mat_id): v.version for v in stores.meta.model_versions()}
    if as_json:
        print_json([{**m.to_dict(), "version": versions.get((m.asset, m.mat_id or 0))} for m in moves])
        return
    rows = [
        [
            str(m.id),
            m.asset,
            m.action,
            _target_text(m.snapshot, versions.get((m.asset, m.mat_id or 0)), m.mat_id),
            m.actor,
            ago(m.at),
            m.reason or "-",
        ]
        for m in moves
    ]
    print_rows(["move", "asset", "action", "target", "by", "when", "reason"], rows)


# ---- rendering --------------------------------------------------------------------------------------


def _version(text: str) -> int:
    digits = text[1:] if text[:1] in ("v", "V") else text
    if not (digits.isascii() and digits.isdigit()):  # '²' is a digit to isdigit, not to int
        raise UsageError(f"version {text!r} is not a version number; `cairn models list` lists them")
    return int(digits)


def _target_text(snapshot: str | None, number: int | None, mat_id: int | None) -> str:
    if snapshot is not None:
        return f"snapshot {snapshot}"
    return f"version {number}" if number is not None else f"materialization {mat_id}"


def _print_change(change: AliasChange, as_json: bool) -> None:
    if as_json:
        print_json(change.to_dict())
        return
    where = f"'{change.alias}' of {change.asset}"
    if not change.moved:
        console().print(f"{escape(where)} points at {escape(change.target)} already; nothing changed")
        return
    before = _before_text(change.before)
    console().print(
        f"{escape(where)} → [bold]{escape(change.target)}[/] ({change.action} by {escape(change.actor)}"
        f"{', was ' + escape(before) if before else ', new alias'})"
    )


def _before_text(before: Any) -> str:
    if not before:
        return ""
    if before.get("snapshot") is not None:
        return f"snapshot {before['snapshot']}"
    if before.get("version") is not None:
        return f"version {before['version']}"
    return f"materialization {before.get('mat_id')}"


def _print_version(v: ModelVersion) -> None:
    out = console()
    r = v.record
    out.print(f"[bold]model {escape(v.name)} version {v.version}[/]")
    lines = [
        ("data version", r.data_version),
        ("materialization", str(r.mat_id)),
        ("run", r.run_id),
        ("author", r.author),
        ("registered", ago(r.created_at)),
        ("aliases", ", ".join(v.aliases) or "-"),
    ]
    mat = v.mat
    if mat is not None:
        lines += [
            ("partition", mat.partition or "-"),
            ("format", f"{mat.format} ({mat.pytype}), {mat.size:,} bytes"),
            ("code version", mat.code_version),
            ("cache key", mat.cache_key),
            ("seed", str(mat.seed)),
            ("params", json.dumps(mat.params, sort_keys=True) if mat.params else "-"),
        ]
    for label, value in lines:
        out.print(f"  {label:<16} {escape(value)}")
    if mat is not None and mat.inputs:
        out.print("  inputs")
        for ref in mat.inputs:
            where = f"{ref.asset}@{ref.partition}" if ref.partition else ref.asset
            out.print(f"    {escape(where):<30} {short(ref.data_version)}")
    if mat is not None and mat.metrics:
        out.print("  metrics")
        for metric, number in sorted(mat.metrics.items()):
            out.print(f"    {escape(metric):<30} {number:g}")
    out.print("  gates" + ("" if v.gates else "            none recorded"))
    for g in v.gates:
        state = "[green]passed[/]" if g.passed else ("[bold red]failed[/]" if g.blocking else "[yellow]warned[/]")
        kind = "blocking" if g.blocking else "warning"
        detail = f"  {escape(g.detail)}" if g.detail else ""
        out.print(f"    {escape(g.gate):<30} {state} ({kind}){detail}")
    out.print("  approvals" + ("" if v.approvals else "        none"))
    counted = set(v.counted_approvals)
    for a in v.approvals:
        note = "" if a in counted else " [yellow](does not count)[/]"
        out.print(f"    {escape(a.approver):<16} {ago(a.created_at):<10} {escape(a.reason)}{note}")
    if v.model_card is not None:
        out.print("  model card")
        card = v.model_card if isinstance(v.model_card, str) else json.dumps(v.model_card, indent=2, sort_keys=True)
        for line in card.splitlines():
            out.print(f"    {escape(line)}")
    problems = v.problems()
    if problems:
        out.print(f"  [yellow]not promotable:[/] {escape('; '.join(problems))}")
    else:
        out.print(f"  [green]promotable[/]: cairn models promote {escape(v.name)} {v.version} --alias champion")
