"""Incidents, their alerts, and the facts that metrics are computed from; a part of `MetadataStore`.

An incident is opened once per kind and subject while it is open (a unique index over the open ones), and its
alerts are queued in the same transaction (an outbox), once per destination and event::

    failure ─▶ open_incident (new: queue "opened" alerts) ──▶ deliver: claim ─▶ POST ─ok─▶ sent
                  │ already open: add the steps, no alert                     └─fail─▶ pending, next try later
    later success ─▶ recover_steps ─▶ nothing left to recover: close, queue "resolved" alerts

Metrics are not stored: they are computed from what runs record (runs, steps, materializations); the facts
below are the narrow reads they need.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cairn.errors import StoreError
from cairn.storage.database import Database
from cairn.storage.dialect import Cursor

if TYPE_CHECKING:
    from cairn.storage.observations import AlertRecord, IncidentRecord, NewIncident, RunFact, StepFact

OPENED = "opened"  # alert events
RESOLVED = "resolved"
PENDING = "pending"  # alert statuses
SENT = "sent"
LOGGED = "logged"
GAVE_UP = "failed"
LOG_DESTINATION = "log"
# The roles of the steps that must recover for an incident to close: a partition that failed, one whose drift check
# warned, an asset past its freshness policy (partition "": any new materialization of it recovers it).
RECOVERING_ROLES = ("failed", "drifted", "stale")

_INCIDENT_COLUMNS = (
    "id, incident_key, kind, subject, opened_at, closed_at, opened_by, closed_by, detail, owners, "
    "remediation, remediation_status, remediation_run"
)
_ALERT_COLUMNS = (
    "id, dedup_key, incident_id, event, destination, owner, status, attempts, created_at, next_try_at, sent_at, "
    "last_error"
)
_CHUNK = 500
# The materialization a cached step reused: of those with its key and data version, the newest that existed when
# its run started, else the newest (a concurrent run's), as `MetadataStore.run_materializations` chooses.
_REUSED_DURATION = (
    "COALESCE((SELECT m.duration_s FROM materializations m WHERE m.cache_key = s.cache_key AND m.data_version = "
    "s.data_version AND m.created_at <= r.created_at ORDER BY m.id DESC LIMIT 1), (SELECT m.duration_s FROM "
    "materializations m WHERE m.cache_key = s.cache_key AND m.data_version = s.data_version "
    "ORDER BY m.id DESC LIMIT 1))"
)
_STEP_FACTS = (
    "SELECT s.run_id, s.asset, s.partition, s.status, s.duration_s, "
    "CASE WHEN s.status = 'executed' THEN (SELECT m.metadata FROM materializations m WHERE m.cache_key = "
    "s.cache_key AND m.run_id = s.run_id ORDER BY m.id DESC LIMIT 1) END, "
    f"CASE WHEN s.status = 'cached' THEN {_REUSED_DURATION} END "
    "FROM steps s JOIN runs r ON r.run_id = s.run_id"
)


class ObservabilityRecords(Database):
    """Incidents, alerts, and the reads behind run and asset metrics."""

    # -- facts for metrics ---------------------------------------------------------------------------

    def run_facts(self, since: float | None = None, until: float | None = None) -> list[RunFact]:
        """The runs created in ``[since, until)`` (all when not given), oldest first."""
        where, params = _window("created_at", since, until)
        rows = self._rows(
            "read runs for metrics",
            f"SELECT run_id, status, created_at, finished_at FROM runs {where}ORDER BY id",
            params,
        )
        from cairn.storage.observations import RunFact

        return [RunFact(str(r), str(s), float(c), None if f is None else float(f)) for r, s, c, f in rows]

    def step_facts(
        self, since: float | None = None, until: float | None = None, run_ids: Sequence[str] | None = None
    ) -> list[StepFact]:
        """The steps of the runs created in ``[since, until)``, or of the runs named, with CPU time and savings."""
        if run_ids is not None:
            rows: list[Any] = []
            ids = list(dict.fromkeys(run_ids))
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                rows += self._rows(
                    "read steps for metrics",
                    f"{_STEP_FACTS} WHERE s.run_id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
        else:
            where, params = _window("r.created_at", since, until)
            rows = self._rows("read steps for metrics", f"{_STEP_FACTS} {where}", params)
        from cairn.storage.observations import step_fact

        return [step_fact(row) for row in rows]

    def schedule_latencies(self, since: float | None = None, until: float | None = None) -> dict[str, float]:
        """Seconds from each started tick's due time to its run's start (``ticks.latency_s``), by run id, of the
        runs created in ``[since, until)``."""
        where, params = _window("r.created_at", since, until)
        rows = self._rows(
            "read schedule-to-start latencies",
            "SELECT t.run_id, t.latency_s FROM ticks t JOIN runs r ON r.run_id = t.run_id "
            f"WHERE t.latency_s IS NOT NULL {where.replace('WHERE', 'AND', 1)}",
            params,
        )
        return {str(run_id): float(latency) for run_id, latency in rows}

    def cache_savings(self, run_id: str) -> tuple[int, float]:
        """``(cached steps, seconds saved)`` of one run: each cached step saved the recorded duration of the
        materialization it reused."""
        rows = self._rows(
            f"read the cache savings of run {run_id}",
            f"SELECT COUNT(*), SUM({_REUSED_DURATION}) FROM steps s JOIN runs r ON r.run_id = s.run_id "
            "WHERE s.run_id = ? AND s.status = 'cached'",
            (run_id,),
        )
        count, saved = rows[0]
        return int(count), float(saved or 0.0)

    def run_check_results(self, run_id: str, assets: Sequence[str]) -> list[tuple[str, str, list[dict[str, Any]]]]:
        """``(asset, partition, rule results)`` of what one run committed of these assets (``cairn.checks``)."""
        out = []
        for asset in dict.fromkeys(assets):
            for partition, metadata in self._rows(
                f"read the check results of {asset} in run {run_id}",
                "SELECT partition, metadata FROM materializations WHERE asset = ? AND run_id = ? ORDER BY id",
                (asset, run_id),
            ):
                out.append((asset, str(partition), list(json.loads(metadata).get("cairn.checks") or [])))
        return out

    # -- incidents -------------------------------------------------------------------------------------

    def unrecovered_steps(self) -> list[tuple[int, str, str, str]]:
        """``(incident id, asset, partition, role)`` of the steps of open incidents still waiting to recover:
        the one read after a run that failed nothing (usually no rows)."""
        rows = self._rows(
            "read the steps of open incidents",
            "SELECT incident_id, asset, partition, role FROM incident_steps WHERE recovered_at IS NULL "
            f"AND role IN ({', '.join('?' * len(RECOVERING_ROLES))})",
            RECOVERING_ROLES,
        )
        return [(int(i), str(a), str(p), str(role)) for i, a, p, role in rows]

    def open_incident(
        self, incident: NewIncident, at: float, destinations: Sequence[tuple[str | None, str]]
    ) -> tuple[int, bool]:
        """Open an incident, or extend the open one with the same kind and subject; one transaction.

        A new incident queues an ``opened`` alert to each ``(owner, destination)``. Its steps are added (a step
        seen again is not recovered any more).

        Returns:
            The incident's id, and whether it is new.
        """
        detail = _dumps(incident.detail, "the incident detail")
        owners = _dumps(list(incident.owners), "the incident owners")

        def record(cur: Cursor) -> tuple[int, bool]:
            cur.execute(
                self._sql(
                    "INSERT INTO incidents (incident_key, kind, subject, opened_at, opened_by, detail, owners, "
                    "remediation, remediation_status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (incident_key) WHERE closed_at IS NULL DO NOTHING RETURNING id"
                ),
                (
                    incident.key,
                    incident.kind,
                    incident.subject,
                    at,
                    incident.run_id,
                    detail,
                    owners,
                    incident.remediation,
                    PENDING if incident.remediation else None,
                ),
            )
            row = cur.fetchone()
            new = row is not None
            if row is None:
                cur.execute(
                    self._sql("SELECT id FROM incidents WHERE incident_key = ? AND closed_at IS NULL"),
                    (incident.key,),
                )
                row = cur.fetchone()
            incident_id = int(row[0])
            if incident.steps:
                cur.executemany(
                    self._sql(
                        "INSERT INTO incident_steps (incident_id, asset, partition, role, first_run, last_run, "
                        "first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (incident_id, asset, partition) DO UPDATE SET last_run = excluded.last_run, "
                        "last_seen = excluded.last_seen, recovered_at = NULL, recovered_by = NULL, "
                        "role = CASE WHEN incident_steps.role = 'skipped' THEN excluded.role "
                        "ELSE incident_steps.role END"
                    ),
                    [
                        (incident_id, asset, partition, role, incident.run_id, incident.run_id, at, at)
                        for asset, partition, role in incident.steps
                    ],
                )
            if new:
                self._queue_alerts(cur, incident_id, OPENED, destinations, at)
            return incident_id, new

        return self._transaction(f"record incident {incident.key}", record)

    def recover_steps(
        self, steps: Sequence[tuple[int, str, str]], at: float, by: str, send_resolved: bool = True
    ) -> list[int]:
        """Mark steps of open incidents recovered (``(incident id, asset, partition)``) and close each incident
        that has nothing left to recover, queuing ``resolved`` alerts to where it alerted; one transaction.

        Returns:
            The ids of the incidents closed.
        """
        if not steps:
            return []

        def recover(cur: Cursor) -> list[int]:
            cur.executemany(
                self._sql(
                    "UPDATE incident_steps SET recovered_at = ?, recovered_by = ? "
                    "WHERE incident_id = ? AND asset = ? AND partition = ? AND recovered_at IS NULL"
                ),
                [(at, by, incident_id, asset, partition) for incident_id, asset, partition in steps],
            )
            closed = []
            for incident_id in sorted({s[0] for s in steps}):
                cur.execute(
                    self._sql(
                        "UPDATE incidents SET closed_at = ?, closed_by = ? WHERE id = ? AND closed_at IS NULL "
                        "AND NOT EXISTS (SELECT 1 FROM incident_steps s WHERE s.incident_id = incidents.id "
                        f"AND s.recovered_at IS NULL AND s.role IN ({', '.join('?' * len(RECOVERING_ROLES))})) "
                        "RETURNING id"
                    ),
                    (at, by, incident_id, *RECOVERING_ROLES),
                )
                if cur.fetchone() is not None:
                    closed.append(incident_id)
                    if send_resolved:
                        self._queue_resolved(cur, incident_id, at)
            return closed

        return self._transaction(f"recover {len(steps)} steps of incidents", recover)

    def close_incident(self, key: str, at: float, by: str, send_resolved: bool = True) -> int | None:
        """Close the open incident with this key (kind:subject), queuing its ``resolved`` alerts; its id, or None."""

        def close(cur: Cursor) -> int | None:
            cur.execute(
                self._sql(
                    "UPDATE incidents SET closed_at = ?, closed_by = ? WHERE incident_key = ? AND closed_at IS NULL "
                    "RETURNING id"
                ),
                (at, by, key),
            )
            row = cur.fetchone()
            if row is None:
                return None
            if send_resolved:
                self._queue_resolved(cur, int(row[0]), at)
            return int(row[0])

        return self._transaction(f"close incident {key}", close)

    def open_incident_keys(self, kind: str) -> set[str]:
        """The keys of the open incidents of one kind."""
        rows = self._rows(
            f"read open {kind} incidents",
            "SELECT incident_key FROM incidents WHERE closed_at IS NULL AND kind = ?",
            (kind,),
        )
        return {str(row[0]) for row in rows}

    def incidents(
        self, open_only: bool = False, limit: int = 100, ids: Sequence[int] | None = None, kind: str | None = None
    ) -> list[IncidentRecord]:
        """Incidents, newest first (only the open ones, of one kind, or these ids), with their steps."""
        clauses: list[str] = []
        params: list[Any] = []
        if open_only:
            clauses.append("closed_at IS NULL")
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        if ids is not None:
            if not ids:
                return []
            clauses.append(f"id IN ({', '.join('?' * len(ids))})")
            params.extend(ids)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        rows = self._rows(
            "read incidents",
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents {where}ORDER BY id DESC LIMIT ?",
            [*params, limit],
        )
        if not rows:
            return []
        from cairn.storage.observations import IncidentStep, incident

        steps: dict[int, list[IncidentStep]] = {}
        found = [int(row[0]) for row in rows]
        for start in range(0, len(found), _CHUNK):
            chunk = found[start : start + _CHUNK]
            for incident_id, *values in self._rows(
                "read the steps of incidents",
                "SELECT incident_id, asset, partition, role, first_run, last_run, first_seen, last_seen, "
                f"recovered_at, recovered_by FROM incident_steps WHERE incident_id IN ({', '.join('?' * len(chunk))}) "
                "ORDER BY incident_id, asset, partition",
                chunk,
            ):
                steps.setdefault(int(incident_id), []).append(IncidentStep(*values))
        return [incident(row, tuple(steps.get(int(row[0]), ()))) for row in rows]

    def incident_counts(self) -> dict[tuple[str, str], int]:
        """How many incidents there are, by ``(kind, open|closed)``."""
        rows = self._rows(
            "count incidents",
            "SELECT kind, CASE WHEN closed_at IS NULL THEN 'open' ELSE 'closed' END, COUNT(*) FROM incidents "
            "GROUP BY kind, CASE WHEN closed_at IS NULL THEN 'open' ELSE 'closed' END",
        )
        return {(str(kind), str(state)): int(n) for kind, state, n in rows}

    def pending_remediations(self) -> list[IncidentRecord]:
        """Open incidents whose remediation has not been started yet, oldest first, with their steps."""
        rows = self._rows(
            "read pending remediations",
            "SELECT id FROM incidents WHERE remediation_status = ? AND closed_at IS NULL ORDER BY id",
            (PENDING,),
        )
        ids = [int(row[0]) for row in rows]
        return sorted(self.incidents(limit=len(ids), ids=ids), key=lambda i: i.id) if ids else []

    def set_remediation(self, incident_id: int, status: str, run_id: str | None = None, claim: bool = False) -> bool:
        """Move an incident's remediation to `status` (with the run that carries it out); with `claim`, only
        from pending, so that of several daemons one starts it. Whether the row changed."""

        def update(cur: Cursor) -> bool:
            cur.execute(
                self._sql(
                    "UPDATE incidents SET remediation_status = ?, remediation_run = COALESCE(?, remediation_run) "
                    "WHERE id = ?" + (" AND remediation_status = ?" if claim else "")
                ),
                (status, run_id, incident_id, *((PENDING,) if claim else ())),
            )
            return bool(cur.rowcount == 1)

        return self._transaction(f"update the remediation of incident {incident_id}", update)

    # -- alerts ----------------------------------------------------------------------------------------

    def due_alerts(self, now: float, limit: int = 100) -> list[AlertRecord]:
        """Pending alerts whose next try is due, oldest first."""
        rows = self._rows(
            "read due alerts",
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE status = ? AND next_try_at <= ? ORDER BY id LIMIT ?",
            (PENDING, now, limit),
        )
        from cairn.storage.observations import AlertRecord

        return [AlertRecord(*row) for row in rows]

    def claim_alert(self, alert_id: int, attempts: int, now: float, hold_s: float) -> bool:
        """Take a due alert for one try: its next try moves `hold_s` ahead, so that another deliverer passes it
        over meanwhile. False when someone else took it first (its attempts moved on)."""

        def claim(cur: Cursor) -> bool:
            cur.execute(
                self._sql(
                    "UPDATE alerts SET attempts = attempts + 1, next_try_at = ? "
                    "WHERE id = ? AND status = ? AND attempts = ? AND next_try_at <= ?"
                ),
                (now + hold_s, alert_id, PENDING, attempts, now),
            )
            return bool(cur.rowcount == 1)

        return self._transaction(f"claim alert {alert_id}", claim)

    def finish_alert(
        self, alert_id: int, status: str, at: float, next_try_at: float | None = None, error: str | None = None
    ) -> None:
        """Record how a try went: sent or logged (done), pending again with its next try, or failed for good."""
        self._write1(
            f"record the delivery of alert {alert_id}",
            "UPDATE alerts SET status = ?, sent_at = CASE WHEN ? IN ('sent', 'logged') THEN ? ELSE sent_at END, "
            "next_try_at = COALESCE(?, next_try_at), last_error = ? WHERE id = ?",
            (status, status, at, next_try_at, error, alert_id),
        )

    def alerts(self, incident_ids: Sequence[int] | None = None, limit: int = 1000) -> list[AlertRecord]:
        """Alerts (of these incidents), oldest first."""
        if incident_ids is not None and not incident_ids:
            return []
        where, params = "", []
        if incident_ids is not None:
            where, params = f"WHERE incident_id IN ({', '.join('?' * len(incident_ids))}) ", list(incident_ids)
        rows = self._rows(
            "read alerts", f"SELECT {_ALERT_COLUMNS} FROM alerts {where}ORDER BY id LIMIT ?", [*params, limit]
        )
        from cairn.storage.observations import AlertRecord

        return [AlertRecord(*row) for row in rows]

    def alert_counts(self) -> dict[str, int]:
        """How many alerts there are, by status."""
        rows = self._rows("count alerts", "SELECT status, COUNT(*) FROM alerts GROUP BY status")
        return {str(status): int(n) for status, n in rows}

    # -- internals -------------------------------------------------------------------------------------

    def _queue_alerts(
        self, cur: Cursor, incident_id: int, event: str, destinations: Sequence[tuple[str | None, str]], at: float
    ) -> None:
        rows = []
        for owner, destination in dict.fromkeys(destinations):
            key = f"incident:{incident_id}:{event}:{destination}"
            rows.append((key, incident_id, event, destination, owner, PENDING, 0, at, at))
        if rows:
            cur.executemany(
                self._sql(
                    "INSERT INTO alerts (dedup_key, incident_id, event, destination, owner, status, attempts, "
                    "created_at, next_try_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedup_key) DO NOTHING"
                ),
                rows,
            )

    def _queue_resolved(self, cur: Cursor, incident_id: int, at: float) -> None:
        """Queue a ``resolved`` alert to every destination the incident's ``opened`` alerts went to."""
        cur.execute(
            self._sql("SELECT owner, destination FROM alerts WHERE incident_id = ? AND event = ? ORDER BY id"),
            (incident_id, OPENED),
        )
        destinations = [(None if owner is None else str(owner), str(dest)) for owner, dest in cur.fetchall()]
        self._queue_alerts(cur, incident_id, RESOLVED, destinations, at)


def _window(column: str, since: float | None, until: float | None) -> tuple[str, list[float]]:
    clauses, params = [], []
    if since is not None:
        clauses.append(f"{column} >= ?")
        params.append(since)
    if until is not None:
        clauses.append(f"{column} < ?")
        params.append(until)
    return (f"WHERE {' AND '.join(clauses)} " if clauses else ""), params


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot record {what}: {exc}; use JSON-compatible values") from exc
