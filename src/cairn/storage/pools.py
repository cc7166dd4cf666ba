"""Pool slots shared by every engine on one metadata database; a part of `MetadataStore`.

A pool of N slots is N rows of ``pool_slots``. A slot is leased like a cache key: its holder run, a fencing
token that grows with every new holder, and an expiry on the database's clock that the holder's heartbeat
pushes forward. A finished or abandoned run frees its slots; the slots of an engine that died free
themselves when they expire. Claiming a slot locks one free row and passes over rows that other engines
are claiming at the same moment (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's write lock serializes
the claims instead).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cairn.storage.database import Database
from cairn.storage.dialect import Cursor, Dialect

_FREE = 0.0  # expires_at of a released slot


@dataclasses.dataclass(frozen=True, slots=True)
class SlotLease:
    """One held slot of a pool: which slot, and the fencing token of this holding."""

    pool: str
    slot: int
    token: int


@dataclasses.dataclass(frozen=True, slots=True)
class SlotHolder:
    """Who holds an unexpired slot of a pool, for humans and tests."""

    pool: str
    slot: int
    run_id: str
    owner: str
    step: str
    expires_at: float


class PoolSlots(Database):
    """Slot leases of pools, counted across every engine that shares the database."""

    def __init__(self, dialect: Dialect) -> None:
        super().__init__(dialect)
        # (pool, size) pairs whose slot rows this connection has made sure exist.
        self._slot_rows: set[tuple[str, int]] = set()

    def acquire_pool_slot(
        self, pool: str, slots: int, run_id: str, owner: str, ttl_s: float, step: str = ""
    ) -> SlotLease | None:
        """Take a free slot of a pool, or return None when all `slots` of them are held.

        Args:
            pool: The pool's name (``[pools]`` in cairn.toml).
            slots: The pool's size. Slots numbered from `slots` on are never handed out, so that a smaller
                limit takes effect as the slots above it are released.
            run_id: The run that takes the slot.
            owner: The engine that holds it (``host:process``, as for cache-key leases).
            ttl_s: Seconds until the slot frees itself unless renewed.
            step: The step that uses the slot, for humans.
        """
        if (pool, slots) not in self._slot_rows:
            self._create_slots(pool, slots)

        def claim(cur: Cursor) -> SlotLease | None:
            cur.execute(
                self._sql(
                    "UPDATE pool_slots SET token = token + 1, run_id = ?, owner = ?, step = ?, expires_at = {now} + ? "
                    "WHERE pool = ? AND slot = (SELECT slot FROM pool_slots "
                    "WHERE pool = ? AND slot < ? AND expires_at < {now} ORDER BY slot LIMIT 1{skip_locked}) "
                    "RETURNING slot, token"
                ),
                (run_id, owner, step, ttl_s, pool, pool, slots),
            )
            row = cur.fetchone()
            return None if row is None else SlotLease(pool, int(row[0]), int(row[1]))

        # Repeatable: a slot taken twice is the run's until it expires or the run finishes; it only narrows the
        # pool for a while.
        return self._transaction(f"take a slot of pool {pool}", claim, repeatable=True)

    def renew_pool_slots(self, held: Sequence[SlotLease], ttl_s: float) -> list[SlotLease]:
        """Extend slots that are still held by `ttl_s` from the database's now; return the ones lost meanwhile."""
        if not held:
            return []

        def renew(cur: Cursor) -> list[SlotLease]:
            lost = []
            query = self._sql(
                "UPDATE pool_slots SET expires_at = {now} + ? "
                "WHERE pool = ? AND slot = ? AND token = ? AND expires_at > ?"
            )
            for lease in sorted(held, key=lambda lease: (lease.pool, lease.slot)):
                cur.execute(query, (ttl_s, lease.pool, lease.slot, lease.token, _FREE))
                if cur.rowcount != 1:
                    lost.append(lease)
            return lost

        return self._transaction(f"renew {len(held)} pool slots", renew, repeatable=True)

    def release_pool_slot(self, lease: SlotLease) -> None:
        """Give a slot back, if `lease` is still its current holding; otherwise do nothing."""
        self._write1(
            f"release slot {lease.slot} of pool {lease.pool}",
            "UPDATE pool_slots SET expires_at = ? WHERE pool = ? AND slot = ? AND token = ?",
            (_FREE, lease.pool, lease.slot, lease.token),
            repeatable=True,
        )

    def pool_holders(self, pool: str) -> list[SlotHolder]:
        """The unexpired holdings of a pool's slots, by slot number."""
        rows = self._rows(
            f"read the slots of pool {pool}",
            "SELECT slot, run_id, owner, step, expires_at FROM pool_slots WHERE pool = ? AND expires_at >= {now} "
            "ORDER BY slot",
            (pool,),
        )
        return [SlotHolder(pool, int(n), str(run), str(own), str(step), float(exp)) for n, run, own, step, exp in rows]

    def _release_run_slots(self, cur: Cursor, run_id: str) -> None:
        """Free every slot a run holds (inside the transaction that finishes or abandons it)."""
        cur.execute(
            self._sql("UPDATE pool_slots SET expires_at = ? WHERE run_id = ? AND expires_at > ?"),
            (_FREE, run_id, _FREE),
        )

    def _create_slots(self, pool: str, slots: int) -> None:
        """Make sure the rows of slots ``0 .. slots-1`` of a pool exist (free), once per store and pool size."""
        query = self._sql(
            "INSERT INTO pool_slots (pool, slot, token, run_id, owner, step, expires_at) "
            "VALUES (?, ?, 0, '', '', '', ?) "
            "ON CONFLICT (pool, slot) DO NOTHING"
        )
        rows = [(pool, slot, _FREE) for slot in range(slots)]
        self._transaction(f"create the slots of pool {pool}", lambda cur: cur.executemany(query, rows), repeatable=True)
        self._slot_rows.add((pool, slots))
