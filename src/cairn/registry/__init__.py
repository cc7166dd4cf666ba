"""The model registry and aliases: model versions with their gates and approvals, approval-gated promotion and
rollback, aliases of any asset, and verified loading of what they name. See docs/models.md.

Layer: above storage and security, below the engine and the interfaces.
"""

from __future__ import annotations

from cairn.errors import Refused
from cairn.registry.aliases import AliasView, alias_history, aliases, resolve_target, rollback_alias, set_alias
from cairn.registry.loading import load_alias, load_model
from cairn.registry.promotion import DEFAULT_ALIAS, AliasChange, Approval, approve, promote, rollback
from cairn.registry.rules import RecordedGate
from cairn.registry.versions import ModelVersion, models, parse_model_ref, version
from cairn.security.authors import run_author

__all__ = [
    "DEFAULT_ALIAS",
    "AliasChange",
    "AliasView",
    "Approval",
    "ModelVersion",
    "RecordedGate",
    "Refused",
    "alias_history",
    "aliases",
    "approve",
    "load_alias",
    "load_model",
    "models",
    "parse_model_ref",
    "promote",
    "resolve_target",
    "rollback",
    "rollback_alias",
    "run_author",
    "set_alias",
    "version",
]
