"""Adding users and changing them: who may (admins; anyone while no user exists, to add the first admin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cairn.core.keys import validate_name
from cairn.errors import AccessDenied, DefinitionError, UsageError
from cairn.security.access import check_role, missing_user
from cairn.security.roles import Role
from cairn.security.tokens import hash_token, new_token

if TYPE_CHECKING:
    from cairn.core.governance import User
    from cairn.storage.metadata import MetadataStore


def add_user(meta: MetadataStore, name: str, role: Role | str, actor: User | str | None) -> str:
    """Add a user with a new token and return the token: it is shown once, only its hash is stored.

    While no user is defined, the first one is added without an actor and must be an admin (the bootstrap);
    after that, adding users needs an admin.

    Args:
        meta: The project's metadata store.
        name: The new user's name (letters, digits, ``_ . -``).
        role: Their role.
        actor: The acting user (from `current_user`), or their name; None for the first user.

    Raises:
        UsageError: The name is not allowed or taken, the role unknown, or the first user not an admin.
        AccessDenied: Users exist and `actor` is missing, unknown, disabled or not an admin.
    """
    try:
        validate_name(name, "user")
    except DefinitionError as exc:
        raise UsageError(str(exc)) from None
    wanted = Role.parse(role)
    token = new_token()
    acting = _acting(meta, actor)
    if acting is None:
        if meta.has_users():
            raise missing_user(meta, Role.ADMIN, "adding a user")
        if wanted is not Role.ADMIN:
            raise UsageError(
                f"no users are defined yet, so the first user must be an admin (who then adds the others): "
                f"`cairn users add NAME --role admin`, then `cairn users add {name} --role {wanted}`"
            )
        meta.insert_user(name, wanted, hash_token(token), name, first=True)
        return token
    check_role(acting, Role.ADMIN, "adding a user")
    meta.insert_user(name, wanted, hash_token(token), acting.name)
    return token


def set_role(meta: MetadataStore, name: str, role: Role | str, actor: User | str | None) -> User:
    """Give a user another role (an admin's action); the change is audited.

    Raises:
        UsageError: No such user or role, the user is disabled, or no enabled admin would remain.
        AccessDenied: `actor` is missing or not an admin.
    """
    wanted = Role.parse(role)
    acting = _admin(meta, actor, "changing a user's role")
    return meta.set_user_role(name, wanted, acting.name)


def disable_user(meta: MetadataStore, name: str, actor: User | str | None) -> User:
    """Disable a user for good: their token stops working (an admin's action); the change is audited.

    Raises:
        UsageError: No such user, the user is disabled already, or is the last enabled admin.
        AccessDenied: `actor` is missing or not an admin.
    """
    acting = _admin(meta, actor, "disabling a user")
    return meta.disable_user(name, acting.name)


def rotate_token(meta: MetadataStore, name: str, actor: User | str | None) -> str:
    """Give a user a new token and return it; the old one stops working. Users may rotate their own token,
    admins anyone's; the change is audited.

    Raises:
        UsageError: No such user, or the user is disabled.
        AccessDenied: `actor` is missing, or is neither the user nor an admin.
    """
    acting = _acting(meta, actor)
    if acting is None:
        raise missing_user(meta, Role.VIEWER, "rotating a token")
    if acting.name != name:
        check_role(acting, Role.ADMIN, "rotating another user's token")
    token = new_token()
    meta.replace_token_hash(name, hash_token(token), acting.name)
    return token


def _admin(meta: MetadataStore, actor: User | str | None, action: str) -> User:
    acting = _acting(meta, actor)
    if acting is None:
        raise missing_user(meta, Role.ADMIN, action)
    return check_role(acting, Role.ADMIN, action)


def _acting(meta: MetadataStore, actor: User | str | None) -> User | None:
    """The actor as the database has them now (a role may have changed since the `User` was read)."""
    if actor is None:
        return None
    name = actor if isinstance(actor, str) else actor.name
    user = meta.user(name)
    if user is None:
        raise AccessDenied(f"the acting user '{name}' does not exist; `cairn users list` lists the users")
    if not user.enabled:
        raise AccessDenied(f"the acting user '{name}' is disabled")
    return user
