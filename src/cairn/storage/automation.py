"""Ticks and the state of schedules, sensors and freshness policies; a part of `MetadataStore`.

A tick is claimed by inserting its row: the primary key (kind, name, due_at, request) lets exactly one of
several daemons on one database insert it, on SQLite (whose write lock serializes the inserts) and
PostgreSQL (where a second insert of the same key waits for the first and then does nothing) alike. Starting
a claimed tick's run is a compare-and-set on its status and owner, so a claim that one daemon released or
left behind is started by one other daemon only. A sensor's cursor moves by a compare-and-set on the
generation of its state row, in the transaction that inserts the ticks it requested.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cairn.storage.audit import append_audit
from cairn.storage.database import Database
from cairn.storage.dialect import Cursor

if TYPE_CHECKING:  # imported where they are used: every command opens the store, few of them read ticks
    from cairn.core.automation import AutomationState, TickRecord

_STATE_COLUMNS = (
    "kind, name, paused, since, last_due, sensor_cursor, generation, evaluated_at, error, changed_by, changed_at"
)
_TICK_FIELDS = (
    "kind, name, due_at, request, status, owner, partition, run_id, reason, claimed_at, started_at, finished_at, "
    "latency_s, error"
)
_INSERT_TICK = (
    f"INSERT INTO ticks ({_TICK_FIELDS}, claimed_db_at) VALUES ({', '.join('?' * 14)}, {{now}}) "
    "ON CONFLICT (kind, name, due_at, request) DO NOTHING"
)
_MOVE_LAST_DUE = (
    "UPDATE automation_state SET last_due = ? WHERE kind = ? AND name = ? AND (last_due IS NULL OR last_due < ?)"
)
_TICK_KEY = "kind = ? AND name = ? AND due_at = ? AND request = ?"
_CHUNK = 500


class AutomationRecords(Database):
    """The records `cairn.automation` keeps: one state row per definition and one row per tick."""

    # -- state ---------------------------------------------------------------------------------------

    def automation_states(self, kind: str | None = None) -> dict[tuple[str, str], AutomationState]:
        """The state rows (of one kind, if given), by ``(kind, name)``."""
        where, params = ("WHERE kind = ?", (kind,)) if kind is not None else ("", ())
        rows = self._rows("read the automation state", f"SELECT {_STATE_COLUMNS} FROM automation_state {where}", params)
        return {(str(row[0]), str(row[1])): _state(row) for row in rows}

    def ensure_automation_states(
        self, wanted: Sequence[tuple[str, str]], since: float
    ) -> dict[tuple[str, str], AutomationState]:
        """The state rows of `wanted` ``(kind, name)`` pairs, creating the missing ones with `since`.

        Every row of the table is returned, the ones not asked for too (a definition that was removed).
        """
        known = self.automation_states()
        missing = [pair for pair in dict.fromkeys(wanted) if pair not in known]
        if not missing:
            return known
        query = self._sql(
            f"INSERT INTO automation_state ({_STATE_COLUMNS}) VALUES (?, ?, 0, ?, NULL, NULL, 0, NULL, NULL, '', NULL) "
            "ON CONFLICT (kind, name) DO NOTHING"
        )
        rows = [(kind, name, since) for kind, name in missing]
        self._transaction(f"record {len(rows)} new automation states", lambda cur: cur.executemany(query, rows))
        return self.automation_states()

    def set_paused(self, kind: str, name: str, paused: bool, now: float, actor: str) -> AutomationState:
        """Pause or resume a schedule or sensor and audit it (``schedule.pause``, ``sensor.resume``).

        Resuming moves `since` to `now`: ticks that fell due while it was paused are not caught up.
        """
        action = f"{kind}.{'pause' if paused else 'resume'}"

        def change(cur: Cursor) -> None:
            cur.execute(
                self._sql(
                    f"INSERT INTO automation_state ({_STATE_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, NULL, NULL, 0, NULL, NULL, ?, ?) ON CONFLICT (kind, name) DO UPDATE SET "
                    "paused = excluded.paused, changed_by = excluded.changed_by, changed_at = excluded.changed_at"
                    + ("" if paused else ", since = excluded.since")
                ),
                (kind, name, int(paused), now, actor, now),
            )
            append_audit(cur, self._sql, actor, action, name, {"kind": kind, "paused": paused})

        self._transaction(f"{action} {name}", change)
        return self.automation_states(kind)[(kind, name)]

    def note_evaluation(self, kind: str, name: str, at: float, error: str | None) -> None:
        """Record when a definition was last evaluated, and the evaluation's error (None: it went well)."""
        self._write1(
            f"record the evaluation of {kind} {name}",
            "UPDATE automation_state SET evaluated_at = ?, error = ? WHERE kind = ? AND name = ?",
            (at, error, kind, name),
        )

    def commit_sensor(
        self, name: str, generation: int, cursor: str | None, at: float, ticks: Sequence[TickRecord]
    ) -> list[TickRecord] | None:
        """Move a sensor's cursor and claim the ticks it requested, if no one moved it since `generation`.

        A tick whose request (run key) the sensor already had is left out.

        Returns:
            The ticks claimed, or None when another daemon committed an evaluation first (nothing written).
        """

        def commit(cur: Cursor) -> list[TickRecord] | None:
            cur.execute(
                self._sql(
                    "UPDATE automation_state SET sensor_cursor = ?, generation = generation + 1, evaluated_at = ?, "
                    "error = NULL WHERE kind = 'sensor' AND name = ? AND generation = ?"
                ),
                (cursor, at, name, generation),
            )
            if cur.rowcount != 1:
                return None
            claimed = []
            for tick in ticks:
                cur.execute(
                    self._sql("SELECT 1 FROM ticks WHERE kind = ? AND name = ? AND request = ? LIMIT 1"),
                    (tick.kind, tick.name, tick.request),
                )
                if cur.fetchone() is None and self._insert_tick(cur, tick):
                    claimed.append(tick)
            return claimed

        return self._transaction(f"commit an evaluation of sensor {name}", commit)

    # -- ticks ---------------------------------------------------------------------------------------

    def claim_tick(self, tick: TickRecord) -> bool:
        """Insert a tick's row; True if this call inserted it (the tick is this caller's), False if it existed."""
        return self._transaction(f"claim the tick of {tick.label}", lambda cur: self._insert_tick(cur, tick))

    def record_ticks(self, ticks: Sequence[TickRecord]) -> None:
        """Insert finished ticks (skipped ones) that are not recorded yet, in one transaction."""
        if not ticks:
            return

        def record(cur: Cursor) -> None:
            for start in range(0, len(ticks), _CHUNK):
                chunk = ticks[start : start + _CHUNK]
                cur.executemany(self._sql(_INSERT_TICK), [_tick_params(t) for t in chunk])
            newest = max(ticks, key=lambda t: t.due_at)
            cur.execute(self._sql(_MOVE_LAST_DUE), (newest.due_at, newest.kind, newest.name, newest.due_at))

        self._transaction(f"record {len(ticks)} ticks", record)

    def start_tick(self, tick: TickRecord, owner: str) -> bool:
        """Mark a claimed tick of `owner` as starting; False if it is not (anymore) a claim of `owner`."""
        from cairn.core.automation import CLAIMED, STARTING

        def start(cur: Cursor) -> bool:
            cur.execute(
                self._sql(f"UPDATE ticks SET status = ? WHERE {_TICK_KEY} AND status = ? AND owner = ?"),
                (STARTING, *tick.id, CLAIMED, owner),
            )
            return bool(cur.rowcount == 1)

        return self._transaction(f"start the tick of {tick.label}", start)

    def take_over_tick(self, tick: TickRecord, owner: str, stale_after_s: float, owner_gone: bool) -> bool:
        """Make a claimed tick `owner`'s: one that was released (owner ''), whose owner is gone (`owner_gone`),
        or that was claimed more than `stale_after_s` ago on the database's clock. False if another daemon
        started or took it meanwhile."""
        from cairn.core.automation import CLAIMED

        def take(cur: Cursor) -> bool:
            cur.execute(
                self._sql(
                    f"UPDATE ticks SET owner = ?, claimed_db_at = {{now}} WHERE {_TICK_KEY} AND status = ? "
                    "AND owner = ? AND (owner = '' OR ? = 1 OR claimed_db_at < {now} - ?)"
                ),
                (owner, *tick.id, CLAIMED, tick.owner, int(owner_gone), stale_after_s),
            )
            return bool(cur.rowcount == 1)

        return self._transaction(f"take over the tick of {tick.label}", take)

    def release_ticks(self, owner: str) -> int:
        """Give up the claimed ticks of `owner` that it did not start, for another daemon to start at once."""
        from cairn.core.automation import CLAIMED

        def release(cur: Cursor) -> int:
            cur.execute(self._sql("UPDATE ticks SET owner = '' WHERE status = ? AND owner = ?"), (CLAIMED, owner))
            return int(cur.rowcount)

        return self._transaction(f"release the claimed ticks of {owner}", release)

    def tick_started(self, tick: TickRecord, run_id: str, started_at: float) -> None:
        """Record the run a tick started, when it started, and its schedule-to-start latency."""
        self._write1(
            f"record the run of {tick.label}",
            f"UPDATE ticks SET status = 'running', run_id = ?, started_at = ?, latency_s = ? WHERE {_TICK_KEY}",
            (run_id, started_at, started_at - tick.due_at, *tick.id),
        )

    def finish_tick(self, tick: TickRecord, status: str, finished_at: float | None, error: str | None = None) -> None:
        """Record how a tick ended: its run's status, or skipped / alerted / error / abandoned."""
        self._write1(
            f"finish the tick of {tick.label}",
            f"UPDATE ticks SET status = ?, finished_at = ?, error = ? WHERE {_TICK_KEY}",
            (status, finished_at, error, *tick.id),
        )

    def get_tick(self, kind: str, name: str, due_at: float, request: str = "") -> TickRecord | None:
        rows = self._rows(
            f"read a tick of {kind} {name}",
            f"SELECT {_TICK_FIELDS} FROM ticks WHERE {_TICK_KEY}",
            (kind, name, due_at, request),
        )
        return _tick(rows[0]) if rows else None

    def open_ticks(self) -> list[TickRecord]:
        """Ticks whose run has not finished (claimed, starting or running), oldest first."""
        from cairn.core.automation import OPEN_STATUSES

        rows = self._rows(
            "read the open ticks",
            f"SELECT {_TICK_FIELDS} FROM ticks WHERE status IN (?, ?, ?) ORDER BY due_at, kind, name, request",
            OPEN_STATUSES,
        )
        return [_tick(row) for row in rows]

    def ticks(self, kind: str | None = None, name: str | None = None, limit: int = 50) -> list[TickRecord]:
        """Recorded ticks (of one kind and name, if given), the latest due first."""
        clauses, params = [], []
        for column, value in (("kind", kind), ("name", name)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        rows = self._rows(
            "read ticks",
            f"SELECT {_TICK_FIELDS} FROM ticks {where}ORDER BY due_at DESC, kind, name, request LIMIT ?",
            (*params, limit),
        )
        return [_tick(row) for row in rows]

    def last_ticks(self) -> dict[tuple[str, str], TickRecord]:
        """The latest-due tick of every (kind, name)."""
        rows = self._rows(
            "read the latest ticks",
            f"SELECT {', '.join('t.' + c.strip() for c in _TICK_FIELDS.split(','))} FROM ticks t JOIN "
            "(SELECT kind, name, MAX(due_at) AS due_at FROM ticks GROUP BY kind, name) n "
            "ON t.kind = n.kind AND t.name = n.name AND t.due_at = n.due_at ORDER BY t.request",
        )
        return {(str(row[0]), str(row[1])): _tick(row) for row in rows}

    # -- what freshness policies and sensors read of the materializations ---------------------------

    def newest_materializations(self, assets: Sequence[str]) -> dict[str, tuple[int, float]]:
        """Per asset that has one, the id and creation time (database clock) of its newest materialization."""
        out: dict[str, tuple[int, float]] = {}
        names = list(dict.fromkeys(assets))
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            rows = self._rows(
                f"read the newest materializations of {len(chunk)} assets",
                "SELECT asset, id, created_at FROM materializations WHERE id IN (SELECT MAX(id) FROM materializations "
                f"WHERE asset IN ({', '.join('?' * len(chunk))}) GROUP BY asset)",
                chunk,
            )
            out.update((str(asset), (int(mat_id), float(created))) for asset, mat_id, created in rows)
        return out

    def _insert_tick(self, cur: Cursor, tick: TickRecord) -> bool:
        cur.execute(self._sql(_INSERT_TICK), _tick_params(tick))
        if cur.rowcount != 1:
            return False
        cur.execute(self._sql(_MOVE_LAST_DUE), (tick.due_at, tick.kind, tick.name, tick.due_at))
        return True


def _tick_params(t: TickRecord) -> tuple[Any, ...]:
    return (
        t.kind,
        t.name,
        t.due_at,
        t.request,
        t.status,
        t.owner,
        t.partition,
        t.run_id,
        t.reason,
        t.claimed_at,
        t.started_at,
        t.finished_at,
        t.latency_s,
        t.error,
    )


def _tick(row: Sequence[Any]) -> TickRecord:
    from cairn.core.automation import TickRecord

    (kind, name, due_at, request, status, owner, partition, run_id, reason, claimed, started, finished, latency,
     error) = row  # fmt: skip
    return TickRecord(
        str(kind),
        str(name),
        float(due_at),
        str(request),
        str(status),
        str(owner),
        partition,
        run_id,
        str(reason),
        float(claimed),
        None if started is None else float(started),
        None if finished is None else float(finished),
        None if latency is None else float(latency),
        error,
    )


def _state(row: Sequence[Any]) -> AutomationState:
    from cairn.core.automation import AutomationState

    kind, name, paused, since, last_due, cursor, generation, evaluated, error, changed_by, changed_at = row
    return AutomationState(
        str(kind),
        str(name),
        bool(paused),
        float(since),
        None if last_due is None else float(last_due),
        cursor,
        int(generation),
        None if evaluated is None else float(evaluated),
        error,
        str(changed_by),
        None if changed_at is None else float(changed_at),
    )
