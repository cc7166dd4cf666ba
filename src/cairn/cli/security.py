"""Users and the audit log: `cairn users add|list|role|disable|rotate|whoami` and `cairn audit [verify]`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from cairn.cli.common import JsonOpt, ProjectOpt, console, err_console, escape, print_json, print_rows, project_stores

if TYPE_CHECKING:
    from cairn.core.governance import AuditEntry, User

users_app = typer.Typer(
    help="Users, their roles (viewer < operator < approver < admin) and tokens; see docs/security.md.",
    no_args_is_help=True,
)
audit_app = typer.Typer(help="The audit log, newest first, and `audit verify` to check its hash chain.")

NameArg = Annotated[str, typer.Argument(help="The user's name.")]
RoleText = "viewer, operator, approver or admin"


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(audit_app, name="audit")


# -- users -----------------------------------------------------------------------------------------


@users_app.command("add")
def users_add(
    name: NameArg,
    role: Annotated[str, typer.Option("--role", "-r", help=f"The user's role: {RoleText}.")],
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """Add a user and print their token, once. The first user must be an admin; then adding needs one."""
    from cairn.security import add_user, current_user

    with project_stores(project) as stores:
        token = add_user(stores.meta, name, role, current_user(stores.meta))
        user = stores.meta.user(name)
    assert user is not None
    _print_token(user, token, as_json, "added")


@users_app.command("list")
def users_list(project: ProjectOpt = ".", as_json: JsonOpt = False) -> None:
    """Every user with their role, and who added them when; disabled users too."""
    with project_stores(project) as stores:
        users = stores.meta.users()
    if as_json:
        print_json([u.to_dict() for u in users])
        return
    if not users:
        console().print("no users are defined: add an admin with `cairn users add NAME --role admin`")
        return
    rows = [
        [
            u.name,
            u.role,
            "enabled" if u.enabled else f"disabled {_when(u.disabled_at)}",
            _when(u.created_at),
            u.created_by,
        ]
        for u in users
    ]
    print_rows(["user", "role", "status", "added", "added by"], rows)


@users_app.command("role")
def users_role(
    name: NameArg,
    role: Annotated[str, typer.Argument(help=f"The new role: {RoleText}.")],
    project: ProjectOpt = ".",
    as_json: JsonOpt = False,
) -> None:
    """Give a user another role (needs an admin's token in CAIRN_TOKEN)."""
    from cairn.security import current_user, set_role

    with project_stores(project) as stores:
        user = set_role(stores.meta, name, role, current_user(stores.meta))
    if as_json:
        print_json(user.to_dict())
        return
    console().print(f"user [bold]{escape(user.name)}[/] has role {user.role}")


@users_app.command("disable")
def users_disable(name: NameArg, project: ProjectOpt = ".", as_json: JsonOpt = False) -> None:
    """Disable a user for good: their token stops working (needs an admin's token in CAIRN_TOKEN)."""
    from cairn.security import current_user, disable_user

    with project_stores(project) as stores:
        user = disable_user(stores.meta, name, current_user(stores.meta))
    if as_json:
        print_json(user.to_dict())
        return
    console().print(f"user [bold]{escape(user.name)}[/] is disabled; their token no longer works")


@users_app.command("rotate")
def users_rotate(name: NameArg, project: ProjectOpt = ".", as_json: JsonOpt = False) -> None:
    """Give a user a new token and print it, once; the old one stops working (your own, or as an admin)."""
    from cairn.security import current_user, rotate_token

    with project_stores(project) as stores:
        token = rotate_token(stores.meta, name, current_user(stores.meta))
        user = stores.meta.user(name)
    assert user is not None
    _print_token(user, token, as_json, "new token for")


@users_app.command("whoami")
def users_whoami(project: ProjectOpt = ".", as_json: JsonOpt = False) -> None:
    """The user whose token is in CAIRN_TOKEN, and their role."""
    from cairn.security import current_user

    with project_stores(project) as stores:
        user = current_user(stores.meta)
    if as_json:
        print_json(user.to_dict() if user else None)
        return
    if user is None:
        console().print("CAIRN_TOKEN is not set: you act as nobody (commands that need a role will say so)")
        return
    console().print(f"{escape(user.name)} ({user.role})")


def _print_token(user: User, token: str, as_json: bool, verb: str) -> None:
    if as_json:
        print_json({**user.to_dict(), "token": token})
        return
    console().print(f"{verb} user [bold]{escape(user.name)}[/] ({user.role}); token:")
    console().print(token, soft_wrap=True)
    err_console().print(
        "[yellow]this token will not be shown again[/]: store it now (a password manager, a CI secret); "
        f"act as {escape(user.name)} by setting CAIRN_TOKEN to it"
    )


# -- audit -----------------------------------------------------------------------------------------


@audit_app.callback(invoke_without_command=True)
def audit_list(
    ctx: typer.Context,
    project: ProjectOpt = ".",
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many rows to show.")] = 50,
    actor: Annotated[str | None, typer.Option("--actor", help="Only what this user or component did.")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action (user.add), or a family (model.*).")
    ] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="Only rows about this subject.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log, newest first: who did what to which subject, and when (`cairn audit verify` checks it)."""
    if ctx.invoked_subcommand is not None:
        return
    with project_stores(project) as stores:
        entries = stores.meta.audit_entries(limit, actor=actor, action=action, subject=subject)
    if as_json:
        print_json([e.to_dict() for e in entries])
        return
    if not entries:
        console().print("the audit log has no rows" + (" that match" if actor or action or subject else ""))
        return
    print_rows(["seq", "at", "actor", "action", "subject", "detail"], [_audit_row(e) for e in entries])


@audit_app.command("verify")
def audit_verify(project: ProjectOpt = ".", as_json: JsonOpt = False) -> None:
    """Re-walk the audit chain; exit 1 naming the first row that was edited, deleted or reordered."""
    with project_stores(project) as stores:
        rows, head = stores.meta.audit_head()  # read first: every row up to it is then verified
        broken = stores.meta.verify_audit()
    if as_json:
        print_json({"intact": broken is None, "rows": rows, "head": head, "break": broken and broken.to_dict()})
    elif broken is None:
        console().print(f"chain intact: {rows} row{'' if rows == 1 else 's'}" + (f", head {head}" if rows else ""))
    else:
        console().print(f"[bold red]chain broken at row {broken.seq}[/] ({broken.kind}): {escape(broken.message)}")
    if broken is not None:
        raise typer.Exit(1)


def _audit_row(entry: AuditEntry) -> list[str]:
    detail = " ".join(f"{key}={value}" for key, value in sorted(entry.detail.items()))
    return [str(entry.seq), _when(entry.at), entry.actor, entry.action, entry.subject, detail]


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
