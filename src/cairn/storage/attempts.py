"""Attempts of steps and the leases they hold on cache keys; a part of `MetadataStore`.

A lease makes one run the computer of a cache key: a fencing token that grows with every new holder, and an
expiry on the database's clock that the holder's heartbeat pushes forward. An attempt is claimed and ended
together with its lease, each in one transaction::

    claim(key, attempt) ─▶ granted (token) ─▶ run ─▶ commit_materialization (fenced) | end_attempt
                       ├─▶ held by another run (its owner): wait, or take over a dead engine's work
                       └─▶ granted, but a result with this key is already committed: end_attempt("reused")
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from cairn.core.keys import step_label
from cairn.core.records import AttemptRecord, Materialization
from cairn.storage.database import Database
from cairn.storage.dialect import Cursor

RELEASED = 0.0  # expires_at of a released lease; the row stays so that its token keeps growing

_ATTEMPT_FIELDS = [f.name for f in dataclasses.fields(AttemptRecord)]
ATTEMPT_COLUMNS = ", ".join(_ATTEMPT_FIELDS)
_attempt_params = operator.attrgetter(*_ATTEMPT_FIELDS)
# An upsert replaces every column after the primary key (4 columns).
_UPSERT_ATTEMPT = (
    f"INSERT INTO attempts ({ATTEMPT_COLUMNS}) VALUES "
    f"({', '.join('COALESCE(?, {now})' if name == 'started_at' else '?' for name in _ATTEMPT_FIELDS)}) "
    "ON CONFLICT (run_id, asset, partition, attempt) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _ATTEMPT_FIELDS[4:])
)
# A lease is taken when the key has none, when its lease expired, or when the same run holds it (a retry).
_TAKE_LEASE = (
    "INSERT INTO leases (cache_key, token, run_id, owner, expires_at) VALUES (?, 1, ?, ?, {now} + ?) "
    "ON CONFLICT (cache_key) DO UPDATE SET token = leases.token + 1, "
    "run_id = excluded.run_id, owner = excluded.owner, expires_at = excluded.expires_at "
    "WHERE leases.expires_at < {now} OR leases.run_id = excluded.run_id RETURNING token"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """The answer to claiming a cache key for an attempt.

    Granted: `token` is the attempt's fencing token, and `committed` a result with the same key that another
    run recorded meanwhile, if the key was leased before (the attempt can end as reused instead of running).
    Held: `token` is None and `holder` is ``(run_id, owner)`` of the run whose unexpired lease holds the key.
    """

    token: int | None
    holder: tuple[str, str] | None = None
    committed: Materialization | None = None


class AttemptLeases(Database):
    """Attempt records and cache-key leases."""

    # -- attempts ----------------------------------------------------------------------------------

    def start_attempt(self, attempt: AttemptRecord) -> None:
        """Record an attempt (or replace the record of the same attempt number).

        A `started_at` of 0 means now on the database's clock.
        """
        what = f"record attempt {attempt.attempt} of {step_label(attempt.asset, attempt.partition)}"
        self._write1(what, _UPSERT_ATTEMPT, self._attempt_row(attempt), repeatable=True)

    @staticmethod
    def _attempt_row(attempt: AttemptRecord) -> list[Any]:
        params = list(_attempt_params(attempt))
        params[_ATTEMPT_FIELDS.index("started_at")] = attempt.started_at or None
        return params

    def finish_attempt(
        self, run_id: str, asset: str, partition: str, attempt: int, status: str, error: str | None = None
    ) -> None:
        """Set an attempt's outcome and finish time (database clock)."""
        self._write1(
            f"finish attempt {attempt} of {step_label(asset, partition)}",
            "UPDATE attempts SET status = ?, finished_at = {now}, error = ? "
            "WHERE run_id = ? AND asset = ? AND partition = ? AND attempt = ?",
            (status, error, run_id, asset, partition, attempt),
            repeatable=True,
        )

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        """The attempts of a run, ordered by asset, partition and attempt number."""
        rows = self._rows(
            f"read the attempts of run {run_id}",
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = ? ORDER BY asset, partition, attempt",
            (run_id,),
        )
        return [AttemptRecord(*row) for row in rows]

    # -- leases ------------------------------------------------------------------------------------

    def acquire_lease(
        self, cache_key: str, run_id: str, owner: str, ttl_s: float, attempt: AttemptRecord | None = None
    ) -> int | None:
        """Take the lease on a cache key if it is free, expired, or already held by the same run.

        Args:
            cache_key: What is being computed.
            run_id: The run that computes it.
            owner: Who holds the lease, for humans (host, process, attempt).
            ttl_s: Seconds until the lease expires unless renewed.
            attempt: When given, recorded in the same transaction if the lease is taken, with the new
                token as its `lease_token` (one commit instead of two per started attempt).

        Returns:
            The new fencing token (one more than the key's previous token), or None when another run
            holds an unexpired lease.
        """

        def acquire(cur: Cursor) -> int | None:
            cur.execute(
                self._sql(_TAKE_LEASE),
                (cache_key, run_id, owner, ttl_s),
            )
            row = cur.fetchone()
            if row is None:
                return None
            if attempt is not None:
                cur.execute(self._sql(_UPSERT_ATTEMPT), self._attempt_row(replace(attempt, lease_token=int(row[0]))))
            return int(row[0])

        # Repeatable: taken again, the lease is the same run's with a newer token, which fences out the first.
        return self._transaction(f"acquire the lease on {cache_key}", acquire, repeatable=True)

    def renew_leases(self, leases: Sequence[tuple[str, int]], ttl_s: float) -> list[str]:
        """Extend leases that are still held, by `ttl_s` from the database's now.

        Args:
            leases: ``(cache_key, token)`` pairs.
            ttl_s: Seconds until each lease expires unless renewed again.

        Returns:
            The cache keys whose lease was lost: taken over by a newer token, or released.
        """
        if not leases:
            return []

        def renew(cur: Cursor) -> list[str]:
            lost = []
            query = self._sql(
                "UPDATE leases SET expires_at = {now} + ? WHERE cache_key = ? AND token = ? AND expires_at > ?"
            )
            # In key order, so that engines renewing overlapping sets lock rows in one order.
            for cache_key, token in sorted(leases):
                cur.execute(query, (ttl_s, cache_key, token, RELEASED))
                if cur.rowcount != 1:
                    lost.append(cache_key)
            return lost

        return self._transaction(f"renew {len(leases)} leases", renew, repeatable=True)

    def release_lease(self, cache_key: str, token: int) -> None:
        """Give a lease up, if `token` is still the current one; otherwise do nothing."""
        self._write1(
            f"release the lease on {cache_key}",
            "UPDATE leases SET expires_at = ? WHERE cache_key = ? AND token = ?",
            (RELEASED, cache_key, token),
            repeatable=True,
        )

    def lease_holder(self, cache_key: str) -> tuple[str, float] | None:
        """``(run_id, expires_at)`` of the unexpired lease on a cache key, or None."""
        rows = self._rows(
            f"read the lease on {cache_key}",
            "SELECT run_id, expires_at FROM leases WHERE cache_key = ? AND expires_at >= {now}",
            (cache_key,),
        )
        return (str(rows[0][0]), float(rows[0][1])) if rows else None

    def _claim(
        self, cache_key: str, run_id: str, owner: str, ttl_s: float, attempt: AttemptRecord
    ) -> tuple[int | None, tuple[str, str] | None, int | None]:
        """`MetadataStore.claim` up to reading the committed result: (token, holder, id of the result)."""

        def claim(cur: Cursor) -> tuple[int | None, tuple[str, str] | None, int | None]:
            cur.execute(
                self._sql(_TAKE_LEASE),
                (cache_key, run_id, owner, ttl_s),
            )
            row = cur.fetchone()
            if row is None:
                cur.execute(
                    self._sql("SELECT run_id, owner FROM leases WHERE cache_key = ? AND expires_at >= {now}"),
                    (cache_key,),
                )
                held = cur.fetchone()
                return None, (str(held[0]), str(held[1])) if held else ("", ""), None
            token = int(row[0])
            cur.execute(self._sql(_UPSERT_ATTEMPT), self._attempt_row(replace(attempt, lease_token=token)))
            committed = None
            if token > 1:
                cur.execute(
                    self._sql("SELECT id FROM materializations WHERE cache_key = ? ORDER BY id DESC LIMIT 1"),
                    (cache_key,),
                )
                found = cur.fetchone()
                committed = int(found[0]) if found else None
            return token, None, committed

        # Repeatable, as acquiring: claimed again, the run holds the key with a newer token and the same attempt.
        return self._transaction(f"claim {cache_key}", claim, repeatable=True)

    def end_attempt(
        self,
        run_id: str,
        asset: str,
        partition: str,
        attempt: int,
        status: str,
        error: str | None = None,
        lease: tuple[str, int] | None = None,
    ) -> None:
        """Set an attempt's outcome and finish time (database clock) and give up its lease, in one transaction.

        Args:
            lease: The ``(cache_key, token)`` the attempt held; released if the token is still the current
                one. None when the attempt holds no lease (or lost it).
        """

        def end(cur: Cursor) -> None:
            cur.execute(
                self._sql(
                    "UPDATE attempts SET status = ?, finished_at = {now}, error = ? "
                    "WHERE run_id = ? AND asset = ? AND partition = ? AND attempt = ?"
                ),
                (status, error, run_id, asset, partition, attempt),
            )
            if lease is not None:
                cur.execute(
                    self._sql("UPDATE leases SET expires_at = ? WHERE cache_key = ? AND token = ?"),
                    (RELEASED, *lease),
                )

        self._transaction(f"end attempt {attempt} of {step_label(asset, partition)}", end, repeatable=True)
