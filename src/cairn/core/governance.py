"""Value types for what the model registry, the audit chain, users and datasets record.

A run reads none of them, so they live apart from the records of runs (`cairn.core.records`): the stores import
this module where they build one of them, and a run's start-up does not pay for creating these classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A named, pinned set of materializations: a dataset version."""

    name: str
    created_at: float
    selection: str
    entries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "created_at": self.created_at, "selection": self.selection, "entries": self.entries}


@dataclass(frozen=True, slots=True)
class BackfillRecord:
    """A recorded run over a partition range; resuming it starts another run over the same range."""

    backfill_id: str
    selection: str
    first_key: str
    last_key: str
    status: str
    created_at: float
    finished_at: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    steps_total: int = 0
    run_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of `cairn backfill status` (its progress is computed from the runs, see engine.backfill)."""
        return {
            "backfill_id": self.backfill_id,
            "selection": self.selection,
            "from": self.first_key,
            "to": self.last_key,
            "status": self.status,
            "runs": list(self.run_ids),
        }


@dataclass(frozen=True, slots=True)
class User:
    """Someone who may act on the project, with a role (viewer, operator, approver, admin); never the token."""

    name: str
    role: str
    created_at: float
    created_by: str
    disabled_at: float | None = None

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "disabled_at": self.disabled_at,
        }


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the hash-chained audit log: who did what to which subject, and when (database clock).

    `detail` is stored as canonical JSON; `hash` covers every other field and `prev_hash`, the previous row's
    hash, so that editing, removing or reordering a row breaks the chain (see `cairn.storage.audit`).
    """

    seq: int
    at: float
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class AuditBreak:
    """The first row where the audit chain does not hold, and why.

    `kind` is ``edited`` (its fields do not match its hash), ``missing`` (a gap in the sequence: a row was
    deleted), ``out_of_order`` (it does not follow its predecessor: rows were reordered or a hash was
    replaced) or ``head`` (the chain's last row is not the one the head records: rows were removed from or
    added at the end).
    """

    seq: int
    kind: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "message": self.message}


@dataclass(frozen=True, slots=True)
class ModelVersionRecord:
    """One registered version of a model asset: a distinct data version, numbered 1, 2, ... per model."""

    name: str
    version: int
    mat_id: int
    data_version: str
    run_id: str
    author: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "mat_id": self.mat_id,
            "data_version": self.data_version,
            "run_id": self.run_id,
            "author": self.author,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """A user's approval of a model version; `approver_role` is the approver's role now (None when the user is
    gone or disabled), which is what decides whether the approval still counts."""

    name: str
    version: int
    approver: str
    reason: str
    created_at: float
    approver_role: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "approver": self.approver,
            "reason": self.reason,
            "created_at": self.created_at,
            "approver_role": self.approver_role,
        }


@dataclass(frozen=True, slots=True)
class AliasRecord:
    """A name (production, champion) pointing at one materialization of an asset, or at a snapshot."""

    alias: str
    asset: str
    mat_id: int | None
    snapshot: str | None
    moved_at: float
    moved_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "asset": self.asset,
            "mat_id": self.mat_id,
            "snapshot": self.snapshot,
            "moved_at": self.moved_at,
            "moved_by": self.moved_by,
        }


@dataclass(frozen=True, slots=True)
class AliasMoveRecord:
    """One move of an alias (``set``, ``promote`` or ``rollback``): where it pointed after, who moved it, why."""

    id: int
    alias: str
    asset: str
    mat_id: int | None
    snapshot: str | None
    action: str
    actor: str
    reason: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "alias": self.alias,
            "asset": self.asset,
            "mat_id": self.mat_id,
            "snapshot": self.snapshot,
            "action": self.action,
            "actor": self.actor,
            "reason": self.reason,
            "at": self.at,
        }


@dataclass(frozen=True, slots=True)
class AliasMove:
    """A move of an alias as the registry asks for it: the new target, and the audit row that goes with it."""

    alias: str
    asset: str
    mat_id: int | None
    snapshot: str | None
    action: str  # set | promote | rollback (what alias_moves records)
    actor: str
    reason: str
    audit_action: str  # alias.set, model.promote, ...
    audit_subject: str
    audit_detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class MoveResult:
    """What a move did: the alias after it, where it pointed before (None when new), the audit row (None when
    the alias already pointed there and nothing was written)."""

    alias: AliasRecord
    before: tuple[int | None, str | None] | None
    audit: AuditEntry | None
