"""Aliases of any asset: a name (production, champion) on one materialization or on a snapshot, moved with an
audit row, rolled back along its history.

The alias of a model asset moves only by promotion (gates and an approval, `cairn.registry.promotion`);
other assets' aliases need the operator role.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cairn.core.governance import AliasMove, AliasMoveRecord, AliasRecord
from cairn.core.keys import validate_name
from cairn.errors import Refused, UsageError, did_you_mean
from cairn.registry.promotion import AliasChange, promote, roll_back, rollback, validate_alias
from cairn.registry.versions import version_at
from cairn.security import Role, require

if TYPE_CHECKING:
    from cairn.storage.metadata import MetadataStore

SNAPSHOT_PREFIX = "snapshot:"
ID_PREFIX = "id:"


@dataclass(frozen=True, slots=True)
class AliasView:
    """An alias with what it points at: the materialization (partition, data version, model version) or snapshot."""

    record: AliasRecord
    partition: str | None
    data_version: str | None
    version: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.record.to_dict(),
            "partition": self.partition or None,
            "data_version": self.data_version,
            "version": self.version,
        }


def set_alias(
    meta: MetadataStore,
    alias: str,
    asset: str,
    target: int | str,
    reason: str = "",
    environ: Mapping[str, str] | None = None,
) -> AliasChange:
    """Point `alias` of `asset` at a materialization (an int: its id) or a snapshot (a str: its name).

    Needs the operator role (audited as ``alias.set``). For a model asset this is a promotion of the version
    the materialization is: approver role, gates and approval as `promote` requires.

    Raises:
        UsageError: The materialization is not one of `asset`, or the snapshot does not pin it.
        AccessDenied: No user, or the role is too low.
        Refused: For a model: what `promote` refuses.
    """
    validate_alias(alias)
    validate_name(asset)
    if meta.is_model(asset):
        if not isinstance(target, int):
            raise UsageError(
                f"an alias of model '{asset}' points at one of its versions, not at a snapshot; "
                f"promote one: cairn models promote {asset} VERSION --alias {alias}"
            )
        found = version_at(meta, asset, target)
        if found is None:
            raise UsageError(f"materialization {target} is not a registered version of model '{asset}'")
        return promote(meta, asset, found.version, alias, environ, reason)
    user = require(meta, Role.OPERATOR, f"moving alias '{alias}' of {asset}", environ)
    mat_id, snapshot = _checked_target(meta, asset, target)
    detail = {"alias": alias, "reason": reason}
    move = AliasMove(alias, asset, mat_id, snapshot, "set", user.name, reason, "alias.set", asset, detail)
    result = meta.move_alias(move)
    before = result.audit.detail.get("from") if result.audit is not None else None
    return AliasChange(alias, asset, "set", mat_id, snapshot, None, before, result.audit is not None, user.name,
                       None if result.audit is None else result.audit.seq)  # fmt: skip


def rollback_alias(
    meta: MetadataStore,
    alias: str,
    asset: str,
    reason: str = "",
    environ: Mapping[str, str] | None = None,
) -> AliasChange:
    """Move `alias` of `asset` back to its target before the current one (operator role; approver for a model),
    audited as ``alias.rollback`` (``model.rollback``).

    Raises:
        UsageError: The asset has no such alias.
        AccessDenied: No user, or the role is too low.
        Refused: Nothing to roll back to.
    """
    validate_alias(alias)
    if meta.is_model(asset):
        return rollback(meta, asset, alias, environ, reason)
    user = require(meta, Role.OPERATOR, f"rolling back alias '{alias}' of {asset}", environ)
    return roll_back(meta, user, alias, asset, "alias.rollback", reason)


def alias_history(meta: MetadataStore, alias: str, asset: str | None = None) -> list[AliasMoveRecord]:
    """Every move of `alias` (of one asset), oldest first.

    Raises:
        UsageError: The alias was never set.
    """
    validate_alias(alias)
    moves = meta.alias_moves(alias, asset)
    if not moves:
        known = sorted({a.alias for a in meta.aliases(asset)})
        on = f" of '{asset}'" if asset else ""
        raise UsageError(
            f"alias '{alias}'{on} was never set.{did_you_mean(alias, known)} Aliases: {', '.join(known) or 'none'}"
        )
    return moves


def aliases(meta: MetadataStore, asset: str | None = None) -> list[AliasView]:
    """Every alias (of one asset), with what it points at."""
    records = meta.aliases(asset)
    mats = {m.id: m for m in meta.materializations_by_id(sorted({r.mat_id for r in records if r.mat_id}))}
    versions = {(v.name, v.data_version): v.version for v in meta.model_versions() if records}
    out = []
    for r in records:
        mat = mats.get(r.mat_id) if r.mat_id is not None else None
        number = versions.get((r.asset, mat.data_version)) if mat is not None else None
        out.append(AliasView(r, mat.partition if mat else None, mat.data_version if mat else None, number))
    return out


def resolve_target(meta: MetadataStore, asset: str, ref: str) -> int | str:
    """What ``ASSET@REF`` names: a materialization id (int) or a snapshot name (str).

    `ref` is ``snapshot:NAME``, ``id:N`` (or a number that is a materialization id of `asset`), or a prefix of
    a data version (``b3:4f2a`` or ``4f2a``) that only one of the asset's data versions starts with.

    Raises:
        UsageError: Nothing or more than one thing matches; the message says how to be precise.
    """
    ref = ref.strip()
    if ref.startswith(SNAPSHOT_PREFIX):
        name = ref[len(SNAPSHOT_PREFIX) :]
        validate_name(name, "snapshot")
        return name
    # ASCII digits only: int() refuses '²' and reads the Arabic-Indic one as 1.
    if ref.startswith(ID_PREFIX) or (ref.isascii() and ref.isdigit()):
        digits = ref.removeprefix(ID_PREFIX)
        mats = meta.materializations_by_id([int(digits)]) if digits.isascii() and digits.isdigit() else []
        if mats and mats[0].asset == asset:
            return mats[0].id
        if ref.startswith(ID_PREFIX):
            raise UsageError(f"'{asset}' has no materialization with id {digits}; `cairn lineage {asset}` lists them")
    prefix = ref if ref.startswith("b3:") else f"b3:{ref}"
    if len(prefix) < 7:
        raise UsageError(f"data version prefix {ref!r} is too short: give at least 4 hex digits")
    found = meta.materializations_with_prefix(asset, prefix)
    versions = sorted({m.data_version for m in found})
    if not versions:
        raise UsageError(
            f"no materialization of '{asset}' has a data version starting with {prefix!r}; "
            f"name one as {asset}@<data version prefix>, {asset}@id:<materialization id> or {asset}@snapshot:<name>"
        )
    if len(versions) > 1:
        matches = ", ".join(v[:15] for v in versions)
        raise UsageError(f"data version prefix {prefix!r} of '{asset}' is ambiguous: it matches {matches}; type more")
    return found[0].id  # the newest materialization with that data version


def _checked_target(meta: MetadataStore, asset: str, target: int | str) -> tuple[int | None, str | None]:
    if isinstance(target, str):
        pinned = [m for (a, _), m in meta.snapshot(target).items() if a == asset]
        if not pinned:
            raise UsageError(f"snapshot '{target}' does not pin '{asset}'; `cairn snapshot show {target}` lists it")
        return None, target
    mats = meta.materializations_by_id([target])
    if not mats:
        raise UsageError(f"there is no materialization with id {target}")
    if mats[0].asset != asset:
        raise UsageError(f"materialization {target} is one of '{mats[0].asset}', not of '{asset}'")
    return target, None


__all__ = ["AliasView", "Refused", "alias_history", "aliases", "resolve_target", "rollback_alias", "set_alias"]
