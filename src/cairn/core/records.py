"""Value types for what is recorded: runs, steps, attempts and materializations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Run statuses.
RUNNING = "running"
SUCCEEDED = "succeeded"
PARTIAL = "partial"  # finished without failures, but some steps were skipped because their data is not ready
FAILED = "failed"
ABANDONED = "abandoned"
CANCELLED = "cancelled"

# Step statuses (DESIGN §3: executed, cached, failed, skipped; plus the in-flight ones).
PENDING = "pending"
EXECUTED = "executed"
CACHED = "cached"
SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class StoredValue:
    """What a serializer wrote: the object's content hash and how to read it back."""

    data_version: str
    size: int
    format: str
    pytype: str


@dataclass(frozen=True, slots=True)
class InputRef:
    """One input of a materialization: which asset partition, at which data version."""

    asset: str
    partition: str
    data_version: str


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


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A named, pinned set of materializations: a dataset version."""

    name: str
    created_at: float
    selection: str
    entries: int = 0


@dataclass(frozen=True, slots=True)
class BackfillRecord:
    """A recorded run over a partition range; resuming it starts another run over the same range."""

    backfill_id: str
    selection: str
    first_key: str
    last_key: str
    status: str
    created_at: float
    finished_at: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    steps_total: int = 0
    run_ids: tuple[str, ...] = ()
