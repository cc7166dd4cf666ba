"""Model versions, approvals and aliases in the metadata database; a part of `MetadataStore`.

An alias names one materialization of an asset (or a snapshot). Every move is appended to ``alias_moves``
together with its audit row, in the transaction that moves it; a rollback replays those moves as a stack::

    set v1 ─▶ [v1]   promote v2 ─▶ [v1, v2]   promote v3 ─▶ [v1, v2, v3]
    rollback ─▶ [v1, v2] (now v2)   rollback ─▶ [v1] (now v1)   rollback ─▶ refused: nothing before v1
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cairn.core.records import Materialization
from cairn.errors import StoreError
from cairn.storage.audit import append_audit
from cairn.storage.database import Database
from cairn.storage.dialect import Cursor

if TYPE_CHECKING:  # created on first use: a run moves no alias (see cairn.core.governance)
    from cairn.core.governance import (
        AliasMove,
        AliasMoveRecord,
        AliasRecord,
        ApprovalRecord,
        AuditEntry,
        ModelVersionRecord,
        MoveResult,
    )

_VERSION_COLUMNS = "name, version, mat_id, data_version, run_id, author, created_at"
_ALIAS_COLUMNS = "alias, asset, mat_id, snapshot, moved_at, moved_by"
_MOVE_COLUMNS = "id, alias, asset, mat_id, snapshot, action, actor, reason, at"
# Tries of a registration that lost the race for the next version number to a concurrent engine (PostgreSQL).
_REGISTER_TRIES = 20


def register_in(
    cur: Cursor, sql: Callable[[str], str], name: str, mat_id: int, data_version: str, run_id: str, author: str
) -> int:
    """Register a model version inside the caller's transaction (the commit of its materialization), so that
    no committed model result is left without its version; returns the version number."""
    select = sql("SELECT version FROM model_versions WHERE name = ? AND data_version = ?")
    insert = sql(
        f"INSERT INTO model_versions ({_VERSION_COLUMNS}) "
        "SELECT ?, COALESCE(MAX(version), 0) + 1, ?, ?, ?, ?, {now} FROM model_versions WHERE name = ? "
        "ON CONFLICT DO NOTHING RETURNING version"
    )
    for _ in range(_REGISTER_TRIES):
        cur.execute(select, (name, data_version))
        row = cur.fetchone()
        if row is not None:
            return int(row[0])
        # A concurrent engine may take the same number first: its commit makes the next try see it.
        cur.execute(insert, (name, mat_id, data_version, run_id, author, name))
        row = cur.fetchone()
        if row is not None:
            return int(row[0])
    raise StoreError(f"cannot register a version of model '{name}': other engines kept taking its number")


class RegistryRecords(Database):
    """Aliases of any asset (production, champion) and the versions of model assets."""

    # Provided by MetadataStore.
    def materializations_by_id(self, ids: Sequence[int]) -> list[Materialization]:
        raise NotImplementedError

    # -- model versions ----------------------------------------------------------------------------

    def register_model_version(self, name: str, mat_id: int, data_version: str, run_id: str, author: str) -> int:
        """Register a model's materialization as its next version, once per distinct data version.

        Returns:
            The version number: the new one, or the existing version with this data version.
        """
        return self._transaction(
            f"register a version of model {name}",
            lambda cur: register_in(cur, self._sql, name, mat_id, data_version, run_id, author),
        )

    def model_versions(self, name: str | None = None) -> list[ModelVersionRecord]:
        """The registered versions of one model (or of all), by name and version."""
        where, params = ("WHERE name = ? ", (name,)) if name is not None else ("", ())
        rows = self._rows(
            "list model versions",
            f"SELECT {_VERSION_COLUMNS} FROM model_versions {where}ORDER BY name, version",
            params,
        )
        return [_version(row) for row in rows]

    def model_version(self, name: str, version: int | None = None) -> ModelVersionRecord | None:
        """One version of a model (its newest when `version` is None), or None."""
        params: tuple[Any, ...] = (name,)
        query = "WHERE name = ? ORDER BY version DESC LIMIT 1"
        if version is not None:
            query, params = "WHERE name = ? AND version = ?", (name, version)
        rows = self._rows(
            f"read a version of model {name}", f"SELECT {_VERSION_COLUMNS} FROM model_versions {query}", params
        )
        return _version(rows[0]) if rows else None

    def model_version_at(self, name: str, mat_id: int) -> ModelVersionRecord | None:
        """The version of a model that a materialization of it is (by id, or else by its data version)."""
        rows = self._rows(
            f"find the version of model {name}",
            f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE name = ? AND (mat_id = ? OR data_version = "
            "(SELECT data_version FROM materializations WHERE id = ?)) ORDER BY version LIMIT 1",
            (name, mat_id, mat_id),
        )
        return _version(rows[0]) if rows else None

    def is_model(self, name: str) -> bool:
        """Whether `name` has registered model versions (its aliases then move only by promotion)."""
        return bool(self._rows(f"look up model {name}", "SELECT 1 FROM model_versions WHERE name = ? LIMIT 1", (name,)))

    # -- approvals ---------------------------------------------------------------------------------

    def add_approval(self, approval: ApprovalRecord, detail: Mapping[str, Any]) -> AuditEntry | None:
        """Record an approval and its audit row (``model.approve``) together.

        Returns:
            The audit row, or None when this approver had approved this version already (nothing written).
        """
        subject = f"{approval.name}@{approval.version}"

        def approve(cur: Cursor) -> AuditEntry | None:
            cur.execute(
                self._sql(
                    "INSERT INTO approvals (name, version, approver, reason, created_at) VALUES (?, ?, ?, ?, {now}) "
                    "ON CONFLICT (name, version, approver) DO NOTHING RETURNING approver"
                ),
                (approval.name, approval.version, approval.approver, approval.reason),
            )
            if cur.fetchone() is None:
                return None
            return append_audit(cur, self._sql, approval.approver, "model.approve", subject, detail)

        return self._transaction(f"approve model {subject}", approve)

    def approvals(self, name: str | None = None, version: int | None = None) -> list[ApprovalRecord]:
        """Approvals (of one model, one version), oldest first, each with its approver's current role."""
        from cairn.core.governance import ApprovalRecord

        where: list[str] = []
        params: list[Any] = []
        if name is not None:
            where.append("a.name = ?")
            params.append(name)
        if version is not None:
            where.append("a.version = ?")
            params.append(version)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._rows(
            "read approvals",
            "SELECT a.name, a.version, a.approver, a.reason, a.created_at, "
            "CASE WHEN u.disabled_at IS NULL THEN u.role END FROM approvals a "
            f"LEFT JOIN users u ON u.name = a.approver {clause}ORDER BY a.name, a.version, a.created_at, a.approver",
            params,
        )
        return [
            ApprovalRecord(str(n), int(v), str(who), str(why), float(at), None if role is None else str(role))
            for n, v, who, why, at, role in rows
        ]

    # -- aliases -----------------------------------------------------------------------------------

    def alias_target(self, alias: str, asset: str) -> Materialization | None:
        """The materialization of `asset` that `alias` points at now, or None when it points at none."""
        rows = self._rows(
            f"read alias {alias} of {asset}",
            "SELECT mat_id FROM aliases WHERE alias = ? AND asset = ? AND mat_id IS NOT NULL",
            (alias, asset),
        )
        found = self.materializations_by_id([int(rows[0][0])]) if rows else []
        return found[0] if found else None

    def alias(self, alias: str, asset: str) -> AliasRecord | None:
        """Where `alias` of `asset` points now, or None when it does not exist."""
        rows = self._rows(
            f"read alias {alias} of {asset}",
            f"SELECT {_ALIAS_COLUMNS} FROM aliases WHERE alias = ? AND asset = ?",
            (alias, asset),
        )
        return _alias(rows[0]) if rows else None

    def aliases(self, asset: str | None = None) -> list[AliasRecord]:
        """Every alias (of one asset), by asset and alias."""
        where, params = ("WHERE asset = ? ", (asset,)) if asset is not None else ("", ())
        rows = self._rows("list aliases", f"SELECT {_ALIAS_COLUMNS} FROM aliases {where}ORDER BY asset, alias", params)
        return [_alias(row) for row in rows]

    def alias_moves(self, alias: str, asset: str | None = None) -> list[AliasMoveRecord]:
        """Every move of an alias (of one asset), oldest first."""
        where, params = ("alias = ?", [alias]) if asset is None else ("alias = ? AND asset = ?", [alias, asset])
        rows = self._rows(
            f"read the moves of alias {alias}",
            f"SELECT {_MOVE_COLUMNS} FROM alias_moves WHERE {where} ORDER BY id",
            params,
        )
        return [_move(row) for row in rows]

    def move_alias(self, move: AliasMove) -> MoveResult:
        """Point an alias at a new target: the alias row, its move and the audit row, in one transaction.

        The audit detail gets ``from`` (the target it leaves, None for a new alias) and ``to``. When the alias
        points there already, nothing is written (the result has no audit row).
        """

        def body(cur: Cursor) -> MoveResult:
            from cairn.core.governance import MoveResult

            current = self._lock_alias(cur, move.alias, move.asset)
            if current is not None and current == (move.mat_id, move.snapshot):
                record = self._read_alias(cur, move.alias, move.asset)
                return MoveResult(record, current, None)
            detail = {
                **move.audit_detail,
                "from": None if current is None else self._describe(cur, move.asset, current),
                "to": self._describe(cur, move.asset, (move.mat_id, move.snapshot)),
            }
            return self._write_move(cur, replace(move, audit_detail=detail), current)

        return self._transaction(f"move alias {move.alias} of {move.asset}", body)

    def roll_back_alias(self, move: AliasMove) -> MoveResult | None:
        """Move an alias back to the target it had before its current one (the stack of the module docstring).

        `move`'s target is ignored: it is computed inside the transaction, under the alias's lock, and added
        to the audit detail as ``to``; ``from`` is the target it leaves.

        Returns:
            The result, or None when there is nothing to roll back to (nothing is written).
        """

        def body(cur: Cursor) -> MoveResult | None:
            current = self._lock_alias(cur, move.alias, move.asset)
            cur.execute(
                self._sql("SELECT mat_id, snapshot, action FROM alias_moves WHERE alias = ? AND asset = ? ORDER BY id"),
                (move.alias, move.asset),
            )
            stack = previous_targets(
                [(None if m is None else int(m), None if s is None else str(s), str(a)) for m, s, a in cur.fetchall()]
            )
            if current is None or len(stack) < 2:
                return None
            mat_id, snapshot = stack[-2]
            detail = {
                **move.audit_detail,
                "from": self._describe(cur, move.asset, current),
                "to": self._describe(cur, move.asset, (mat_id, snapshot)),
            }
            moved = replace(move, mat_id=mat_id, snapshot=snapshot, audit_detail=detail)
            return self._write_move(cur, moved, current)

        return self._transaction(f"roll back alias {move.alias} of {move.asset}", body)

    def _lock_alias(self, cur: Cursor, alias: str, asset: str) -> tuple[int | None, str | None] | None:
        """Take the alias row's lock (PostgreSQL; SQLite's transaction holds the write lock) and read its target."""
        cur.execute(self._sql("UPDATE aliases SET moved_at = moved_at WHERE alias = ? AND asset = ?"), (alias, asset))
        cur.execute(self._sql("SELECT mat_id, snapshot FROM aliases WHERE alias = ? AND asset = ?"), (alias, asset))
        row = cur.fetchone()
        if row is None:
            return None
        return (None if row[0] is None else int(row[0]), None if row[1] is None else str(row[1]))

    def _describe(self, cur: Cursor, asset: str, target: tuple[int | None, str | None]) -> dict[str, Any]:
        """A target for the audit detail: the snapshot, or the materialization (with its model version, if any)."""
        mat_id, snapshot = target
        if snapshot is not None:
            return {"snapshot": snapshot}
        cur.execute(
            self._sql("SELECT version FROM model_versions WHERE name = ? AND mat_id = ? ORDER BY version LIMIT 1"),
            (asset, mat_id),
        )
        row = cur.fetchone()
        return {"mat_id": mat_id} if row is None else {"mat_id": mat_id, "version": int(row[0])}

    def _read_alias(self, cur: Cursor, alias: str, asset: str) -> AliasRecord:
        cur.execute(self._sql(f"SELECT {_ALIAS_COLUMNS} FROM aliases WHERE alias = ? AND asset = ?"), (alias, asset))
        return _alias(cur.fetchone())

    def _write_move(self, cur: Cursor, move: AliasMove, before: tuple[int | None, str | None] | None) -> MoveResult:
        cur.execute(self._sql("SELECT {now}"))
        at = float(cur.fetchone()[0])
        cur.execute(
            self._sql(
                f"INSERT INTO aliases ({_ALIAS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (alias, asset) DO UPDATE SET mat_id = excluded.mat_id, snapshot = excluded.snapshot, "
                "moved_at = excluded.moved_at, moved_by = excluded.moved_by"
            ),
            (move.alias, move.asset, move.mat_id, move.snapshot, at, move.actor),
        )
        cur.execute(
            self._sql(
                "INSERT INTO alias_moves (alias, asset, mat_id, snapshot, action, actor, reason, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            (move.alias, move.asset, move.mat_id, move.snapshot, move.action, move.actor, move.reason, at),
        )
        # Last, as append_audit asks: the audit head is held only from here to the commit.
        entry = append_audit(cur, self._sql, move.actor, move.audit_action, move.audit_subject, move.audit_detail)
        from cairn.core.governance import AliasRecord, MoveResult

        return MoveResult(
            AliasRecord(move.alias, move.asset, move.mat_id, move.snapshot, at, move.actor), before, entry
        )

    # -- finding materializations ------------------------------------------------------------------

    def materializations_with_prefix(self, asset: str, prefix: str, limit: int = 50) -> list[Materialization]:
        """The materializations of an asset whose data version starts with `prefix`, newest first."""
        rows = self._rows(
            f"find {asset} at {prefix}",
            "SELECT id FROM materializations WHERE asset = ? AND substr(data_version, 1, ?) = ? "
            "ORDER BY id DESC LIMIT ?",
            (asset, len(prefix), prefix, limit),
        )
        found = self.materializations_by_id([int(row[0]) for row in rows])
        return sorted(found, key=lambda mat: -mat.id)


def previous_targets(moves: Sequence[tuple[int | None, str | None, str]]) -> list[tuple[int | None, str | None]]:
    """Replay an alias's moves ``(mat_id, snapshot, action)``: a set or promote pushes its target, a rollback
    pops the top. The last entry is where the alias points; the one before it is what a rollback restores."""
    stack: list[tuple[int | None, str | None]] = []
    for mat_id, snapshot, action in moves:
        if action == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != (mat_id, snapshot):  # a history that did not come from this replay
                stack.append((mat_id, snapshot))
        else:
            stack.append((mat_id, snapshot))
    return stack


def _version(row: Sequence[Any]) -> ModelVersionRecord:
    from cairn.core.governance import ModelVersionRecord

    name, version, mat_id, data_version, run_id, author, created_at = row
    return ModelVersionRecord(
        str(name), int(version), int(mat_id), str(data_version), str(run_id), str(author), float(created_at)
    )


def _alias(row: Sequence[Any]) -> AliasRecord:
    from cairn.core.governance import AliasRecord

    alias, asset, mat_id, snapshot, moved_at, moved_by = row
    return AliasRecord(
        str(alias),
        str(asset),
        None if mat_id is None else int(mat_id),
        None if snapshot is None else str(snapshot),
        float(moved_at),
        str(moved_by),
    )


def _move(row: Sequence[Any]) -> AliasMoveRecord:
    from cairn.core.governance import AliasMoveRecord

    move_id, alias, asset, mat_id, snapshot, action, actor, reason, at = row
    return AliasMoveRecord(
        int(move_id),
        str(alias),
        str(asset),
        None if mat_id is None else int(mat_id),
        None if snapshot is None else str(snapshot),
        str(action),
        str(actor),
        str(reason),
        float(at),
    )
