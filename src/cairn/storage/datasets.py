"""Snapshots and backfills in the metadata database; a part of `MetadataStore`."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from cairn.core.records import Materialization
from cairn.errors import UsageError, did_you_mean
from cairn.storage.database import Database
from cairn.storage.dialect import Cursor

if TYPE_CHECKING:  # created on first use: a run reads neither (see cairn.core.governance)
    from cairn.core.governance import BackfillRecord, SnapshotRecord


class DatasetRecords(Database):
    """Named dataset versions (snapshots) and resumable partition-range runs (backfills)."""

    # Provided by MetadataStore.
    def materializations_by_id(self, ids: Sequence[int]) -> list[Materialization]:
        raise NotImplementedError

    # -- snapshots ---------------------------------------------------------------------------------

    def create_snapshot(self, name: str, selection: str, mat_ids: Sequence[tuple[str, str, int]]) -> None:
        """Pin ``(asset, partition, materialization id)`` entries under a new name; names are never reused."""

        def create(cur: Cursor) -> None:
            # One statement claims the name, so two users creating the same snapshot cannot both succeed.
            cur.execute(
                self._sql(
                    "INSERT INTO snapshots (name, created_at, selection) VALUES (?, {now}, ?) "
                    "ON CONFLICT (name) DO NOTHING RETURNING name"
                ),
                (name, selection),
            )
            if cur.fetchone() is None:
                raise UsageError(f"snapshot '{name}' already exists; snapshots are immutable, choose another name")
            cur.executemany(
                self._sql("INSERT INTO snapshot_entries (name, asset, partition, mat_id) VALUES (?, ?, ?, ?)"),
                [(name, asset, partition, mat_id) for asset, partition, mat_id in mat_ids],
            )

        self._transaction(f"create snapshot {name}", create)

    def snapshots(self) -> list[SnapshotRecord]:
        """Every snapshot, newest first, with its number of entries."""
        from cairn.core.governance import SnapshotRecord

        rows = self._rows(
            "list snapshots",
            "SELECT s.name, s.created_at, s.selection, COUNT(e.mat_id) FROM snapshots s "
            "LEFT JOIN snapshot_entries e ON e.name = s.name GROUP BY s.name, s.created_at, s.selection "
            "ORDER BY s.created_at DESC, s.name",
        )
        return [SnapshotRecord(str(n), float(c), str(sel), int(k)) for n, c, sel, k in rows]

    def snapshot(self, name: str) -> dict[tuple[str, str], Materialization]:
        """The pinned materializations of a snapshot by ``(asset, partition)``; unknown names are a UsageError."""
        rows = self._rows(f"read snapshot {name}", "SELECT mat_id FROM snapshot_entries WHERE name = ?", (name,))
        if not rows and not self._rows(f"find snapshot {name}", "SELECT 1 FROM snapshots WHERE name = ?", (name,)):
            known = [s.name for s in self.snapshots()]
            raise UsageError(
                f"snapshot '{name}' does not exist.{did_you_mean(name, known)} "
                f"Known snapshots: {', '.join(known) or 'none'} (create one with `cairn snapshot create NAME SEL`)"
            )
        mats = self.materializations_by_id([int(row[0]) for row in rows])
        return {(m.asset, m.partition): m for m in mats}

    # -- backfills ---------------------------------------------------------------------------------

    def create_backfill(self, record: BackfillRecord) -> None:
        query = self._sql(
            "INSERT INTO backfills (backfill_id, selection, first_key, last_key, status, created_at, "
            "finished_at, options, steps_total) VALUES (?, ?, ?, ?, ?, {now}, NULL, ?, ?)"
        )
        row = (
            record.backfill_id,
            record.selection,
            record.first_key,
            record.last_key,
            record.status,
            json.dumps(record.options, sort_keys=True),
            record.steps_total,
        )
        self._transaction(f"record backfill {record.backfill_id}", lambda cur: cur.execute(query, row))

    def add_backfill_run(self, backfill_id: str, run_id: str, steps_total: int) -> None:
        """Link a run to its backfill (when the run starts) and mark the backfill running."""

        def link(cur: Cursor) -> None:
            cur.execute(
                self._sql(
                    "INSERT INTO backfill_runs (backfill_id, run_id, position) VALUES (?, ?, "
                    "(SELECT COUNT(*) FROM backfill_runs WHERE backfill_id = ?))"
                ),
                (backfill_id, run_id, backfill_id),
            )
            cur.execute(
                self._sql("UPDATE backfills SET status = ?, steps_total = ?, finished_at = NULL WHERE backfill_id = ?"),
                ("running", steps_total, backfill_id),
            )

        self._transaction(f"link run {run_id} to backfill {backfill_id}", link)

    def finish_backfill(self, backfill_id: str, status: str) -> None:
        query = self._sql("UPDATE backfills SET status = ?, finished_at = {now} WHERE backfill_id = ?")
        self._transaction(f"finish backfill {backfill_id}", lambda cur: cur.execute(query, (status, backfill_id)))

    def backfills(self, limit: int = 50) -> list[BackfillRecord]:
        """The newest backfills first."""
        rows = self._rows("list backfills", f"{_BACKFILL_SELECT} ORDER BY created_at DESC LIMIT ?", (limit,))
        return list(self._backfill_records(rows))

    def backfill(self, text: str) -> BackfillRecord:
        """A backfill by id, unique prefix or ``latest``; a UsageError names the fix otherwise."""
        if text in ("latest", "last"):
            rows = self._rows("find the latest backfill", f"{_BACKFILL_SELECT} ORDER BY created_at DESC LIMIT 1")
        else:
            rows = self._rows(
                f"find backfill {text}",
                f"{_BACKFILL_SELECT} WHERE substr(backfill_id, 1, ?) = ? ORDER BY created_at DESC LIMIT 2",
                (len(text), text),
            )
        if not rows:
            raise UsageError(f"no backfill matches {text!r}; `cairn backfill status` lists them")
        if len(rows) > 1:
            raise UsageError(f"backfill id prefix {text!r} is ambiguous; type more characters")
        return next(self._backfill_records(rows))

    def _backfill_records(self, rows: list[Any]) -> Iterator[BackfillRecord]:
        from cairn.core.governance import BackfillRecord

        for bid, sel, first, last, status, created, finished, options, total in rows:
            runs = self._rows(
                f"read the runs of backfill {bid}",
                "SELECT run_id FROM backfill_runs WHERE backfill_id = ? ORDER BY position",
                (bid,),
            )
            yield BackfillRecord(
                str(bid),
                str(sel),
                str(first),
                str(last),
                str(status),
                float(created),
                None if finished is None else float(finished),
                json.loads(options),
                int(total),
                tuple(str(r[0]) for r in runs),
            )


_BACKFILL_SELECT = (
    "SELECT backfill_id, selection, first_key, last_key, status, created_at, finished_at, options, steps_total "
    "FROM backfills"
)
