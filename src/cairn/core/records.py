"""Value types for what is recorded: runs, steps, attempts and materializations."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple


class RunStatus(StrEnum):
    """How a run stands or ended."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # finished without failures, but some steps were skipped because their data is not ready
    FAILED = "failed"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    """How a step of a run stands: DESIGN §3's final four (executed, cached, failed, skipped) and the
    in-flight ones the engine moves it through."""

    PENDING = "pending"  # waiting for its inputs
    READY = "ready"  # decided to run, queued for a slot
    WAITING = "waiting"  # another engine holds its lease
    RUNNING = "running"
    RETRYING = "retrying"  # an attempt failed; the next one is due after a delay
    EXECUTED = "executed"
    CACHED = "cached"
    FAILED = "failed"
    SKIPPED = "skipped"


RUNNING = RunStatus.RUNNING
SUCCEEDED = RunStatus.SUCCEEDED
PARTIAL = RunStatus.PARTIAL
FAILED = RunStatus.FAILED
ABANDONED = RunStatus.ABANDONED
CANCELLED = RunStatus.CANCELLED
PENDING = StepStatus.PENDING
EXECUTED = StepStatus.EXECUTED
CACHED = StepStatus.CACHED
SKIPPED = StepStatus.SKIPPED


@dataclass(frozen=True, slots=True)
class StoredValue:
    """What a serializer wrote: the object's content hash and how to read it back."""

    data_version: str
    size: int
    format: str
    pytype: str


class InputRef(NamedTuple):
    """One input of a materialization: which asset partition, at which data version.

    A named tuple (immutable, and a third of a frozen dataclass's cost to create: a plan of 20,000 steps reads
    and builds 40,000 of them); it hashes into a cache key as the triple it is.
    """

    asset: str
    partition: str
    data_version: str

    def to_dict(self) -> dict[str, Any]:
        return {"asset": self.asset, "partition": self.partition or None, "data_version": self.data_version}


class MaterializationRef(NamedTuple):
    """Which materialization a step reuses, with its cache key and stored object: all that planning and running
    need of it. Its lineage, params and metadata stay in the store until asked for (`Materialization`).

    A named tuple, as `InputRef` is: a cached plan of 20,000 steps reads 20,000 of them, where reading the full
    records would take most of its time. `id` is 0 for a result committed by the run that holds it.
    """

    id: int
    asset: str
    partition: str
    cache_key: str
    data_version: str
    size: int
    format: str
    pytype: str

    @property
    def stored(self) -> StoredValue:
        return StoredValue(self.data_version, self.size, self.format, self.pytype)


@dataclass(frozen=True, slots=True)
class Materialization:
    """One stored result of one asset partition, immutable, with its lineage."""

    asset: str
    partition: str
    cache_key: str
    data_version: str
    size: int
    format: str
    pytype: str
    run_id: str
    attempt: int
    code_version: str
    code_parts: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    inputs: tuple[InputRef, ...] = ()
    duration_s: float = 0.0
    created_at: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    id: int = 0

    @property
    def stored(self) -> StoredValue:
        return StoredValue(self.data_version, self.size, self.format, self.pytype)

    @property
    def ref(self) -> MaterializationRef:
        return MaterializationRef(
            self.id, self.asset, self.partition, self.cache_key, self.data_version, self.size, self.format, self.pytype
        )

    def to_dict(self, *fields: str) -> dict[str, Any]:
        """The JSON form of the record (partition ``""`` as null); only `fields`, in that order, when given."""
        out: dict[str, Any] = {
            "asset": self.asset,
            "partition": self.partition or None,
            "data_version": self.data_version,
            "cache_key": self.cache_key,
            "code_version": self.code_version,
            "run_id": self.run_id,
            "attempt": self.attempt,
            "created_at": self.created_at,
            "duration_s": self.duration_s,
            "size": self.size,
            "format": self.format,
            "pytype": self.pytype,
            "seed": self.seed,
            "params": dict(self.params),
            "code_parts": dict(self.code_parts),
            "inputs": [ref.to_dict() for ref in self.inputs],
            "metrics": dict(self.metrics),
            "metadata": dict(self.metadata),
            "id": self.id,
        }
        return {name: out[name] for name in fields} if fields else out


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One execution of a selection."""

    run_id: str
    status: str
    selection: str
    created_at: float
    finished_at: float | None = None
    heartbeat_at: float | None = None
    args: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to finish; None while it has not finished."""
        return (self.finished_at - self.created_at) if self.finished_at else None

    def to_dict(self, *, details: bool = False) -> dict[str, Any]:
        """The JSON form of `cairn runs`; with `details`, also the arguments and environment (`cairn show`)."""
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "status": self.status,
            "selection": self.selection,
            "profile": self.profile,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }
        if details:
            out.update(args=self.args, environment=self.environment)
        return out


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step (asset x partition) of a run, with its outcome."""

    run_id: str
    asset: str
    partition: str
    status: str
    reason: str
    cache_key: str | None = None
    data_version: str | None = None
    attempts: int = 0
    duration_s: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "partition": self.partition or None,
            "status": self.status,
            "reason": self.reason,
            "attempts": self.attempts,
            "cache_key": self.cache_key,
            "data_version": self.data_version,
            "duration_s": self.duration_s,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of a step; it holds a lease (fencing token) while it runs."""

    run_id: str
    asset: str
    partition: str
    attempt: int
    status: str
    started_at: float
    finished_at: float | None = None
    lease_token: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; the lease token is the engine's business and is left out."""
        return {
            "asset": self.asset,
            "partition": self.partition or None,
            "attempt": self.attempt,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A captured log line of one attempt."""

    run_id: str
    asset: str
    partition: str
    attempt: int
    created_at: float
    level: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "partition": self.partition or None,
            "attempt": self.attempt,
            "at": self.created_at,
            "level": self.level,
            "message": self.message,
        }
