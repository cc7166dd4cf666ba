"""Users, their roles and the hashes of their tokens in the metadata database; a part of `MetadataStore`.

Every change is audited in its own transaction: the change and its audit row commit together. The changes
that must decide on the whole table (is this the first user, would an admin remain) take the audit head
first, which serializes them with each other and with every appender, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from cairn.errors import AccessDenied, UsageError, did_you_mean
from cairn.storage.audit import append_audit, lock_audit
from cairn.storage.database import Database
from cairn.storage.dialect import Cursor

if TYPE_CHECKING:  # created on first use: a run reads no users (see cairn.core.governance)
    from cairn.core.governance import User

T = TypeVar("T")

# The role that administers users; at least one enabled user keeps it (cairn.security.Role.ADMIN).
ADMIN = "admin"
_USER_COLUMNS = "name, role, created_at, created_by, disabled_at"


class IdentityRecords(Database):
    """Who may act: users with a role and the hash of a token (the token itself is never stored)."""

    # -- reads -------------------------------------------------------------------------------------

    def users(self) -> list[User]:
        """Every user, disabled ones included, by name."""
        rows = self._rows("list users", f"SELECT {_USER_COLUMNS} FROM users ORDER BY name")
        return [_user(row) for row in rows]

    def user(self, name: str) -> User | None:
        """The user with this name, or None."""
        rows = self._rows(f"read user {name}", f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,))
        return _user(rows[0]) if rows else None

    def has_users(self) -> bool:
        """Whether any user is defined (disabled ones count: the bootstrap rule no longer applies)."""
        return bool(self._rows("look for users", "SELECT 1 FROM users LIMIT 1"))

    def user_by_token_hash(self, token_hash: str) -> User | None:
        """The user whose token has this hash (enabled or not), or None."""
        rows = self._rows("look up a token", f"SELECT {_USER_COLUMNS} FROM users WHERE token_hash = ?", (token_hash,))
        return _user(rows[0]) if rows else None

    # -- changes, each with its audit row ---------------------------------------------------------

    def insert_user(self, name: str, role: str, token_hash: str, created_by: str, *, first: bool = False) -> User:
        """Add a user and audit it (``user.add``).

        Args:
            name: A new user name.
            role: The user's role.
            token_hash: The hash of the user's token.
            created_by: Who adds the user.
            first: Add the user only if no user exists yet (the bootstrap), atomically with the check.

        Raises:
            UsageError: A user with this name exists.
            AccessDenied: `first` is set and users exist already.
        """

        role = str(role)  # a `Role` is stored as its plain value (drivers may adapt enums by name)

        def insert(cur: Cursor) -> User:
            lock_audit(cur, self._sql)
            if first and _count(cur, self._sql, "SELECT COUNT(*) FROM users"):
                raise AccessDenied(
                    "users are defined already: adding another user needs an admin's token in CAIRN_TOKEN"
                )
            if _count(cur, self._sql, "SELECT COUNT(*) FROM users WHERE name = ?", name):
                raise UsageError(f"user '{name}' already exists; choose another name (`cairn users list` lists them)")
            detail: dict[str, Any] = {"role": role, **({"bootstrap": True} if first else {})}
            entry = append_audit(cur, self._sql, created_by, "user.add", name, detail)
            cur.execute(
                self._sql(
                    "INSERT INTO users (name, role, token_hash, created_at, created_by, disabled_at) "
                    "VALUES (?, ?, ?, ?, ?, NULL)"
                ),
                (name, role, token_hash, entry.at, created_by),
            )
            from cairn.core.governance import User

            return User(name, role, entry.at, created_by)

        return self._transaction(f"add user {name}", insert)

    def set_user_role(self, name: str, role: str, actor: str) -> User:
        """Change a user's role and audit it (``user.role``); the same role again changes and audits nothing.

        Raises:
            UsageError: No such user, the user is disabled, or the change would leave no enabled admin.
        """

        role = str(role)

        def change(cur: Cursor, user: User) -> User:
            if user.role == role:
                return user
            if user.role == ADMIN:
                self._keep_an_admin(cur, user, f"giving '{name}' the role {role}")
            append_audit(cur, self._sql, actor, "user.role", name, {"from": user.role, "to": role})
            cur.execute(self._sql("UPDATE users SET role = ? WHERE name = ?"), (role, name))
            return replace(user, role=role)

        return self._change_user(f"change the role of user {name}", name, change)

    def disable_user(self, name: str, actor: str) -> User:
        """Disable a user for good (their token stops working) and audit it (``user.disable``).

        Raises:
            UsageError: No such user, the user is disabled already, or is the last enabled admin.
        """

        def disable(cur: Cursor, user: User) -> User:
            if user.role == ADMIN:
                self._keep_an_admin(cur, user, f"disabling '{name}'")
            entry = append_audit(cur, self._sql, actor, "user.disable", name, {"role": user.role})
            cur.execute(self._sql("UPDATE users SET disabled_at = ? WHERE name = ?"), (entry.at, name))
            return replace(user, disabled_at=entry.at)

        return self._change_user(f"disable user {name}", name, disable)

    def replace_token_hash(self, name: str, token_hash: str, actor: str) -> User:
        """Give a user a new token (the old one stops working) and audit it (``user.rotate``).

        Raises:
            UsageError: No such user, or the user is disabled.
        """

        def rotate(cur: Cursor, user: User) -> User:
            append_audit(cur, self._sql, actor, "user.rotate", name, {})
            cur.execute(self._sql("UPDATE users SET token_hash = ? WHERE name = ?"), (token_hash, name))
            return user

        return self._change_user(f"replace the token of user {name}", name, rotate)

    def _change_user(self, what: str, name: str, body: Callable[[Cursor, User], T]) -> T:
        """Run `body` on an enabled user's current row under the audit head, in one transaction."""

        def change(cur: Cursor) -> T:
            lock_audit(cur, self._sql)
            cur.execute(self._sql(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?"), (name,))
            row = cur.fetchone()
            if row is None:
                cur.execute(self._sql("SELECT name FROM users ORDER BY name"))
                known = [str(r[0]) for r in cur.fetchall()]
                raise UsageError(
                    f"user '{name}' does not exist.{did_you_mean(name, known)} "
                    f"Known users: {', '.join(known) or 'none'} (`cairn users list`)"
                )
            user = _user(row)
            if not user.enabled:
                raise UsageError(
                    f"user '{name}' is disabled, and a disabled user stays so; add a new user instead "
                    "(`cairn users add NAME --role ROLE`)"
                )
            return body(cur, user)

        return self._transaction(what, change)

    def _keep_an_admin(self, cur: Cursor, user: User, change: str) -> None:
        """Refuse a change that would leave no enabled admin (nobody could administer users any more)."""
        others = _count(
            cur,
            self._sql,
            "SELECT COUNT(*) FROM users WHERE role = ? AND disabled_at IS NULL AND name <> ?",
            ADMIN,
            user.name,
        )
        if not others:
            raise UsageError(
                f"{change} would leave no enabled admin; make another user admin first (`cairn users role NAME admin`)"
            )


def _count(cur: Cursor, sql: Callable[[str], str], query: str, *params: Any) -> int:
    cur.execute(sql(query), params)
    return int(cur.fetchone()[0])


def _user(row: Any) -> User:
    from cairn.core.governance import User

    name, role, created_at, created_by, disabled_at = row
    return User(
        str(name), str(role), float(created_at), str(created_by), None if disabled_at is None else float(disabled_at)
    )
