"""Approving, promoting and rolling back model versions: the human gate between training and serving.

    train ─▶ version N registered (author: who ran it)      training never promotes
          ─▶ gates recorded with it (cairn.gates)
    approve N (an approver, not the author) ─▶ promote N --alias champion
          (every blocking gate passed and a counted approval, else refused naming what is missing)
    rollback --alias champion ─▶ the alias points at the version before

Every change is written together with its audit row; a refusal of an identified user is audited too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from cairn.core.governance import AliasMove, ApprovalRecord, MoveResult, User
from cairn.core.keys import validate_name
from cairn.errors import Refused, UsageError
from cairn.registry.versions import ModelVersion, version
from cairn.security import Role, audit, require

if TYPE_CHECKING:
    from cairn.storage.metadata import MetadataStore

DEFAULT_ALIAS = "champion"


@dataclass(frozen=True, slots=True)
class Approval:
    """An approval as recorded: `new` is False when this approver had approved the version already."""

    name: str
    version: int
    approver: str
    reason: str
    new: bool
    problems: tuple[str, ...]  # what still keeps the version from promotion
    audit_seq: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "approver": self.approver,
            "reason": self.reason,
            "new": self.new,
            "promotable": not self.problems,
            "problems": list(self.problems),
            "audit_seq": self.audit_seq,
        }


@dataclass(frozen=True, slots=True)
class AliasChange:
    """What moving an alias did: where it points now (and, for a model, at which version), where it pointed
    before (``{"mat_id", "version"}`` or ``{"snapshot"}``, None for a new alias), and whether anything moved."""

    alias: str
    asset: str
    action: str  # set | promote | rollback
    mat_id: int | None
    snapshot: str | None
    version: int | None
    before: Mapping[str, Any] | None
    moved: bool
    actor: str
    audit_seq: int | None

    @property
    def target(self) -> str:
        """The target in words: ``version 3``, ``snapshot q3`` or ``materialization 42``."""
        if self.snapshot is not None:
            return f"snapshot {self.snapshot}"
        return f"version {self.version}" if self.version is not None else f"materialization {self.mat_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "asset": self.asset,
            "action": self.action,
            "mat_id": self.mat_id,
            "snapshot": self.snapshot,
            "version": self.version,
            "before": None if self.before is None else dict(self.before),
            "moved": self.moved,
            "actor": self.actor,
            "audit_seq": self.audit_seq,
        }


def approve(
    meta: MetadataStore, name: str, number: int, reason: str, environ: Mapping[str, str] | None = None
) -> Approval:
    """Approve a model version as the user in ``CAIRN_TOKEN`` (role approver); audited as ``model.approve``.

    Raises:
        UsageError: No reason, or no such version.
        AccessDenied: No user, or not an approver (with no users defined, the message says how to add one).
        Refused: The approver is the version's author: self-approval is not allowed.
    """
    if not reason.strip():
        raise UsageError(f"an approval needs a reason: cairn models approve {name} {number} --reason TEXT")
    user = require(meta, Role.APPROVER, f"approving model {name} version {number}", environ)
    found = version(meta, name, number)
    subject = found.label
    if user.name == found.author:
        _refuse(
            meta,
            user,
            "model.approve_refused",
            subject,
            f"self-approval is not allowed: {user.name} is the author of model {name} version {number} (trained in "
            f"run {found.record.run_id}); another user with the approver role must approve it",
        )
    detail = {"reason": reason, "author": found.author, "data_version": found.record.data_version}
    entry = meta.add_approval(ApprovalRecord(name, number, user.name, reason, 0.0), detail)
    after = version(meta, name, number)
    return Approval(name, number, user.name, reason, entry is not None, tuple(after.problems()), _seq(entry))


def promote(
    meta: MetadataStore,
    name: str,
    number: int,
    alias: str = DEFAULT_ALIAS,
    environ: Mapping[str, str] | None = None,
    reason: str = "",
) -> AliasChange:
    """Point `alias` of model `name` at version `number`, as the user in ``CAIRN_TOKEN`` (role approver).

    The version must have passed every blocking gate recorded with it and have an approval by an enabled
    approver who is not its author. The alias, its move and the audit row (``model.promote``) are written in
    one transaction; promoting the version the alias already points at changes nothing.

    Raises:
        UsageError: No such version, or a malformed alias name.
        AccessDenied: No user, or not an approver.
        Refused: A blocking gate failed or a counted approval is missing; the message names each.
    """
    validate_alias(alias)
    user = require(meta, Role.APPROVER, f"promoting model {name} version {number} to '{alias}'", environ)
    found = version(meta, name, number)
    problems = found.problems()
    if problems:
        _refuse(
            meta,
            user,
            "model.promote_refused",
            found.label,
            f"model {name} version {number} cannot be promoted to '{alias}': {'; '.join(problems)}",
            {"alias": alias, "problems": problems},
        )
    detail = {
        "alias": alias,
        "version": number,
        "data_version": found.record.data_version,
        "author": found.author,
        "approved_by": [a.approver for a in found.counted_approvals],
        "gates": [g.gate for g in found.gates],
        "reason": reason,
    }
    move = AliasMove(alias, name, found.record.mat_id, None, "promote", user.name, reason, "model.promote",
                     found.label, detail)  # fmt: skip
    return _change(meta.move_alias(move), "promote", user.name, number)


def rollback(
    meta: MetadataStore,
    name: str,
    alias: str = DEFAULT_ALIAS,
    environ: Mapping[str, str] | None = None,
    reason: str = "",
) -> AliasChange:
    """Move `alias` of model `name` back to the version it pointed at before its current one (role approver);
    audited as ``model.rollback``. Rolling back again goes one further back.

    Raises:
        UsageError: No such model or alias.
        AccessDenied: No user, or not an approver.
        Refused: There is nothing before the current target to roll back to.
    """
    validate_alias(alias)
    user = require(meta, Role.APPROVER, f"rolling back '{alias}' of model {name}", environ)
    if not meta.is_model(name):
        version(meta, name)  # raises the error that lists the known models
    return roll_back(meta, user, alias, name, "model.rollback", reason)


def roll_back(meta: MetadataStore, user: User, alias: str, asset: str, audit_action: str, reason: str) -> AliasChange:
    """Roll an alias back one move, for a user already checked; refusals name what the alias pointed at."""
    current = meta.alias(alias, asset)
    if current is None:
        known = [a.alias for a in meta.aliases(asset)]
        raise UsageError(
            f"'{asset}' has no alias '{alias}'; its aliases: {', '.join(known) or 'none'} "
            f"(`cairn alias list` lists every alias)"
        )
    move = AliasMove(alias, asset, None, None, "rollback", user.name, reason, audit_action, asset,
                     {"alias": alias, "reason": reason})  # fmt: skip
    result = meta.roll_back_alias(move)
    if result is None:
        _refuse(
            meta,
            user,
            audit_action + "_refused",
            asset,
            f"alias '{alias}' of {asset} has nothing to roll back to: no earlier target is left in its history "
            f"(`cairn alias history {alias} {asset}` shows it)",
            {"alias": alias},
        )
    version_after = None
    if result.alias.mat_id is not None and meta.is_model(asset):
        record = meta.model_version_at(asset, result.alias.mat_id)
        version_after = record.version if record is not None else None
    return _change(result, "rollback", user.name, version_after)


def validate_alias(alias: str) -> str:
    """An alias name is a safe name like an asset's (it appears in paths, URLs and commands)."""
    return validate_name(alias, "alias")


def _change(result: MoveResult, action: str, actor: str, number: int | None) -> AliasChange:
    before: Mapping[str, Any] | None = None
    if result.audit is not None:
        before = result.audit.detail.get("from")
    elif result.before is not None:
        before = {"mat_id": result.before[0]} if result.before[1] is None else {"snapshot": result.before[1]}
    a = result.alias
    return AliasChange(a.alias, a.asset, action, a.mat_id, a.snapshot, number, before, result.audit is not None,
                       actor, _seq(result.audit))  # fmt: skip


def _seq(entry: Any) -> int | None:
    return None if entry is None else int(entry.seq)


def _refuse(
    meta: MetadataStore,
    user: User,
    action: str,
    subject: str,
    message: str,
    detail: Mapping[str, Any] | None = None,
) -> NoReturn:
    """Audit a refused attempt of an identified user, then raise `Refused` with the message."""
    audit(meta, user, action, subject, {"message": message, **(detail or {})})
    raise Refused(message)


__all__ = ["DEFAULT_ALIAS", "AliasChange", "Approval", "ModelVersion", "approve", "promote", "rollback"]
