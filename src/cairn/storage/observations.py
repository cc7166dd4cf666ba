"""The records `cairn.storage.observability` reads and writes (run and step facts, incidents and their alerts),
and how they are built from its rows.

Apart from the store, so that opening a metadata store does not create them: only the commands and runs that
read metrics, incidents or alerts import this module.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

OPEN = "open"  # incident statuses
CLOSED = "closed"
CPU_KEY = "cairn.cpu_s"  # the metadata key of an attempt's CPU seconds (written by the step job)


@dataclass(frozen=True, slots=True)
class RunFact:
    """What metrics need of one run."""

    run_id: str
    status: str
    created_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class StepFact:
    """What metrics need of one step of a run: its outcome, the CPU time of the attempt that produced it (for an
    executed step, when recorded) and the recorded duration of the materialization a cached step reused."""

    run_id: str
    asset: str
    partition: str
    status: str
    duration_s: float | None
    cpu_s: float | None = None
    saved_s: float | None = None


@dataclass(frozen=True, slots=True)
class IncidentStep:
    """One asset partition an incident affected, and whether a later run recovered it."""

    asset: str
    partition: str
    role: str  # failed | drifted | skipped
    first_run: str
    last_run: str
    first_seen: float
    last_seen: float
    recovered_at: float | None = None
    recovered_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "partition": self.partition or None,
            "role": self.role,
            "first_run": self.first_run,
            "last_run": self.last_run,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "recovered_at": self.recovered_at,
            "recovered_by": self.recovered_by,
        }


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """Something that went wrong, from when to when, what it affected and who owns it."""

    id: int
    key: str
    kind: str  # failure | violation | drift | slo
    subject: str  # the asset, or the SLO rule's name
    opened_at: float
    closed_at: float | None
    opened_by: str  # the run id, or "slo"
    closed_by: str | None
    detail: dict[str, Any]
    owners: tuple[str, ...]
    remediation: str | None = None
    remediation_status: str | None = None
    remediation_run: str | None = None
    steps: tuple[IncidentStep, ...] = ()

    @property
    def status(self) -> str:
        return OPEN if self.closed_at is None else CLOSED

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "status": self.status,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "duration_s": None if self.closed_at is None else round(self.closed_at - self.opened_at, 6),
            "opened_by": self.opened_by,
            "closed_by": self.closed_by,
            "owners": list(self.owners),
            "detail": dict(self.detail),
            "remediation": self.remediation,
            "remediation_status": self.remediation_status,
            "remediation_run": self.remediation_run,
            "steps": [step.to_dict() for step in self.steps],
        }


@dataclass(frozen=True, slots=True)
class NewIncident:
    """An incident as the observer asks for it; `steps` are ``(asset, partition, role)``."""

    kind: str
    subject: str
    run_id: str
    detail: dict[str, Any]
    owners: tuple[str, ...] = ()
    remediation: str | None = None
    steps: tuple[tuple[str, str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}"


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One notification of one incident event to one destination (a webhook URL or ``log``)."""

    id: int
    dedup_key: str
    incident_id: int
    event: str  # opened | resolved
    destination: str
    owner: str | None
    status: str  # pending | sent | logged | failed
    attempts: int
    created_at: float
    next_try_at: float
    sent_at: float | None = None
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dedup_key": self.dedup_key,
            "incident_id": self.incident_id,
            "event": self.event,
            "destination": self.destination,
            "owner": self.owner,
            "status": self.status,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "sent_at": self.sent_at,
            "last_error": self.last_error,
        }


def step_fact(row: Sequence[Any]) -> StepFact:
    """A `StepFact` from a row of the store's step-facts query."""
    run_id, asset, partition, status, duration, metadata, saved = row
    cpu = None
    if metadata and CPU_KEY in metadata:
        value = json.loads(metadata).get(CPU_KEY)
        cpu = float(value) if isinstance(value, int | float) else None
    return StepFact(
        str(run_id),
        str(asset),
        str(partition),
        str(status),
        None if duration is None else float(duration),
        cpu,
        None if saved is None else float(saved),
    )


def incident(row: Sequence[Any], steps: tuple[IncidentStep, ...]) -> IncidentRecord:
    """An `IncidentRecord` from a row of the incidents table, with its steps."""
    (id_, key, kind, subject, opened_at, closed_at, opened_by, closed_by, detail, owners, remedy, status, by) = row
    return IncidentRecord(
        int(id_),
        str(key),
        str(kind),
        str(subject),
        float(opened_at),
        None if closed_at is None else float(closed_at),
        str(opened_by),
        None if closed_by is None else str(closed_by),
        json.loads(detail),
        tuple(json.loads(owners)),
        remedy,
        status,
        by,
        steps,
    )
