"""The roles of cairn's users, ordered: each role may do everything the ones below it may."""

from __future__ import annotations

from enum import StrEnum

from cairn.errors import UsageError, did_you_mean


class Role(StrEnum):
    """A user's role; roles compare by what they allow: ``viewer < operator < approver < admin``.

    - ``viewer``: read runs, lineage, models and the audit log (in the web UI and API).
    - ``operator``: also run and backfill pipelines, create snapshots, run the daemon's work.
    - ``approver``: also approve model versions (not their own) and promote or roll back aliases.
    - ``admin``: also add users, change their roles, disable them and rotate their tokens.
    """

    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for viewer up to 3 for admin (the order of definition)."""
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """Whether a user with this role may do what needs `needed` (roles are cumulative)."""
        return self.rank >= needed.rank

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role a user typed (``Approver`` too); an unknown one is a UsageError naming the roles."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = [role.value for role in cls]
            raise UsageError(
                f"role {text!r} does not exist.{did_you_mean(text.strip().lower(), names)} "
                f"Roles, each allowed what the ones before it are: {', '.join(names)}"
            ) from None

    # Roles order by rank, not alphabetically as the strings they are.
    def __lt__(self, other: str) -> bool:
        return self.rank < other.rank if isinstance(other, Role) else NotImplemented

    def __le__(self, other: str) -> bool:
        return self.rank <= other.rank if isinstance(other, Role) else NotImplemented

    def __gt__(self, other: str) -> bool:
        return self.rank > other.rank if isinstance(other, Role) else NotImplemented

    def __ge__(self, other: str) -> bool:
        return self.rank >= other.rank if isinstance(other, Role) else NotImplemented
