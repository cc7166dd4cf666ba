"""Identity for every interface (CLI, daemon, web UI and API, model registry): users, roles, tokens, audit.

Users and the audit chain live in the metadata database (`cairn.storage.identity`, `cairn.storage.audit`);
this package holds the rules over them. See docs/security.md.
"""

from __future__ import annotations

from cairn.security.access import audit, check_role, current_user, require
from cairn.security.roles import Role
from cairn.security.tokens import PREFIX, TOKEN_VARIABLE, hash_token, new_token
from cairn.security.users import add_user, disable_user, rotate_token, set_role

__all__ = [
    "PREFIX",
    "TOKEN_VARIABLE",
    "Role",
    "add_user",
    "audit",
    "check_role",
    "current_user",
    "disable_user",
    "hash_token",
    "new_token",
    "require",
    "rotate_token",
    "set_role",
]
