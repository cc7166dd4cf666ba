"""Who is acting, whether they may, and the audit row of what they did: the checks every interface shares."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cairn.errors import AccessDenied
from cairn.security.roles import Role
from cairn.security.tokens import TOKEN_VARIABLE, hash_token, looks_like_token

if TYPE_CHECKING:
    from cairn.core.governance import AuditEntry, User
    from cairn.storage.metadata import MetadataStore

_NO_USERS = "no users are defined: add an admin with `cairn users add NAME --role admin`"


def current_user(meta: MetadataStore, environ: Mapping[str, str] | None = None) -> User | None:
    """The user whose token is in ``CAIRN_TOKEN``, or None when it is unset (or empty).

    Args:
        meta: The project's metadata store.
        environ: The environment to read (default `os.environ`).

    Raises:
        AccessDenied: The variable holds something that is not a token, a token no user has (it was rotated,
            or belongs to another database), or the token of a disabled user.
    """
    token = (os.environ if environ is None else environ).get(TOKEN_VARIABLE, "").strip()
    if not token:
        return None
    if not looks_like_token(token):
        raise AccessDenied(
            f"{TOKEN_VARIABLE} does not hold a cairn token (tokens start with 'cairn_'); set it to the token that "
            "`cairn users add` or `cairn users rotate` printed"
        )
    user = meta.user_by_token_hash(hash_token(token))
    if user is None:
        raise AccessDenied(
            f"the token in {TOKEN_VARIABLE} belongs to no user of this project's database (it was replaced by "
            "`cairn users rotate`, or is another project's); ask an admin for a new one"
        )
    if not user.enabled:
        raise AccessDenied(
            f"the token in {TOKEN_VARIABLE} is user {user.name}'s, who is disabled; ask an admin to add a new user"
        )
    return user


def require(meta: MetadataStore, role: Role | str, action: str, environ: Mapping[str, str] | None = None) -> User:
    """The acting user (from ``CAIRN_TOKEN``), provided their role allows `action`.

    Args:
        meta: The project's metadata store.
        role: The least role the action needs; higher roles may do it too.
        action: What is attempted, for the message (``promote model recsys v3``).
        environ: The environment to read (default `os.environ`).

    Raises:
        AccessDenied: Saying what is missing: any user at all, the token, or a higher role.
    """
    needed = Role.parse(role)
    user = current_user(meta, environ)
    if user is None:
        raise missing_user(meta, needed, action)
    return check_role(user, needed, action)


def check_role(user: User, needed: Role, action: str) -> User:
    """`user` if their role allows what needs `needed`, else AccessDenied naming both roles."""
    try:
        has = Role(user.role)
    except ValueError:
        raise AccessDenied(
            f"user {user.name} has the unknown role {user.role!r}; {action} needs {needed} "
            f"(an admin sets a role with `cairn users role {user.name} ROLE`)"
        ) from None
    if not has.allows(needed):
        raise AccessDenied(f"user {user.name} has role {has}; {action} needs {needed}")
    return user


def missing_user(meta: MetadataStore, needed: Role, action: str) -> AccessDenied:
    """The error for an action attempted without a token: no users at all, or no ``CAIRN_TOKEN``."""
    if not meta.has_users():
        return AccessDenied(f"{action} needs a user with the {needed} role, but {_NO_USERS}")
    return AccessDenied(
        f"{action} needs the {needed} role: set {TOKEN_VARIABLE} to your token "
        "(an admin gives you one with `cairn users add NAME --role ROLE` or `cairn users rotate NAME`)"
    )


def audit(
    meta: MetadataStore, actor: User | str, action: str, subject: str, detail: Mapping[str, Any] | None = None
) -> AuditEntry:
    """Append an audit row for an action that has no transaction of its own, in a transaction of its own.

    An action that writes to the database appends its row in its own transaction instead
    (`cairn.storage.audit.append_audit`), so that the two commit together.

    Args:
        meta: The project's metadata store.
        actor: Who acted: a user, a user's name, or a component (``daemon``).
        action: ``noun.verb`` (``model.load``).
        subject: What it was done to.
        detail: JSON-compatible facts of the action.
    """
    name = actor if isinstance(actor, str) else actor.name
    return meta.append_audit(name, action, subject, detail)
