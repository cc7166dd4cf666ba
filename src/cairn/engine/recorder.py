"""The recorder: the only writer of a run's metadata.

    start ─▶ claim (attempt + lease, one call) ─▶ commit (fenced) | end_attempt ─▶ ... ─▶ finish
                 step records are batched and written with each heartbeat and at the end

    commit of a group (the results that finished together):
        publish every object (one fsync each, one per shard folder) ─▶ one transaction, each row fenced
        (the engine publishes a group on a thread of its own while it goes on dispatching, then records it)

The heartbeat keeps the run alive for other engines: the run row, the leases of running attempts and the
pool slots they hold are pushed forward together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from cairn.core import records as R
from cairn.core.graph import Graph
from cairn.core.keys import StepId
from cairn.errors import StoreError
from cairn.storage.artifacts import PendingObject
from cairn.storage.attempts import Claim


class RunWrites(Protocol):
    """What the engine writes to the metadata store while it runs."""

    def abandon_stale_runs(self, stale_after_s: float) -> list[str]: ...

    def abandon_run(self, run_id: str, why: str) -> bool: ...

    def create_run(self, run: R.RunRecord) -> None: ...

    def heartbeat_run(self, run_id: str) -> None: ...

    def finish_run(self, run_id: str, status: str) -> None: ...

    def claim(self, cache_key: str, run_id: str, owner: str, ttl_s: float, attempt: R.AttemptRecord) -> Claim: ...

    def end_attempt(
        self,
        run_id: str,
        asset: str,
        partition: str,
        attempt: int,
        status: str,
        error: str | None = None,
        lease: tuple[str, int] | None = None,
    ) -> None: ...

    def commit_materialization(
        self, mat: R.Materialization, step: R.StepRecord, lease: tuple[str, int] | None, model_author: str | None = None
    ) -> int: ...

    def commit_materializations(
        self, commits: Sequence[tuple[R.Materialization, R.StepRecord, tuple[str, int] | None, str | None]]
    ) -> list[int | None]: ...

    def renew_leases(self, leases: Sequence[tuple[str, int]], ttl_s: float) -> list[str]: ...

    def upsert_steps(self, steps: Sequence[R.StepRecord]) -> None: ...

    def add_logs(self, records: Sequence[R.LogRecord]) -> None: ...


class Publisher(Protocol):
    """What makes objects that step jobs left unpublished durable under their names (a local store)."""

    def publish(self, objects: Sequence[PendingObject]) -> None: ...


@dataclass(frozen=True, slots=True)
class Commit:
    """One result to record: its materialization, its step record, the lease that fences it, and the objects
    its step job left for the engine to publish."""

    mat: R.Materialization
    record: R.StepRecord
    lease: tuple[str, int]
    objects: tuple[PendingObject, ...] = ()


def model_assets(graph: Graph) -> frozenset[str]:
    """The assets whose materializations register model versions (``kind="model"``)."""
    return frozenset(name for name, a in graph.assets.items() if a.kind == "model")


def engine_owner() -> str:
    """How this engine names itself in leases and slots: ``host:pid``."""
    return f"{os.uname().nodename}:{os.getpid()}"


class Recorder:
    """Records one run: its row, the attempts of its steps with their leases, step records, logs, heartbeats."""

    def __init__(
        self,
        meta: RunWrites,
        run_id: str,
        owner: str,
        lease_ttl_s: float,
        author: str = "",
        models: frozenset[str] = frozenset(),
        objects: Publisher | None = None,
    ) -> None:
        self._meta = meta
        self._objects = objects
        self.run_id = run_id
        self.owner = owner
        self._ttl_s = lease_ttl_s
        self._pending: list[R.StepRecord] = []
        self.author = author  # who runs it: recorded as the run's actor and the author of its model versions
        self._models = models

    def start(self, run: R.RunRecord, stale_after_s: float) -> None:
        """Abandon runs whose engines stopped beating, then record this one as running (with its actor)."""
        self._meta.abandon_stale_runs(stale_after_s)
        self._meta.create_run(replace(run, args={**run.args, "actor": self.author}) if self.author else run)

    def claim(self, step: StepId, attempt: int, cache_key: str) -> Claim:
        """Start attempt `attempt` of a step and take the lease of its key, in one call (see `Claim`)."""
        # Started at 0: at now on the database's clock, the clock its end is recorded on.
        record = R.AttemptRecord(self.run_id, step.asset, step.partition, attempt, "running", 0.0)
        return self._meta.claim(cache_key, self.run_id, self.owner, self._ttl_s, record)

    def end_attempt(
        self, step: StepId, attempt: int, status: str, error: str | None = None, lease: tuple[str, int] | None = None
    ) -> None:
        """Record how an attempt ended and give up its lease (when it still holds one)."""
        self._meta.end_attempt(self.run_id, step.asset, step.partition, attempt, status, error, lease)

    def commit(self, mat: R.Materialization, record: R.StepRecord, lease: tuple[str, int]) -> None:
        """Publish a materialization fenced by its lease; raises `LeaseLost` when another engine took it over.

        A model asset's result is registered as a model version in the same transaction (once per distinct
        data version).
        """
        author = self.author if mat.asset in self._models else None
        self._meta.commit_materialization(mat, record, lease, author)

    def commit_group(self, commits: Sequence[Commit], logs: Sequence[R.LogRecord] = ()) -> list[bool]:
        """Record results that finished together: `publish` their objects, then `record_group` them."""
        self.publish(commits)
        return self.record_group(commits, logs)

    def publish(self, commits: Sequence[Commit]) -> None:
        """Make the objects of results durable under their names, all at once (`LocalArtifactStore.publish`).
        Touches only files, never the database, so the engine may run it on a thread of its own.

        Raises:
            OSError: an object could not be made durable; none of these results may be recorded.
        """
        objects = [obj for commit in commits for obj in commit.objects]
        if objects:
            if self._objects is None:
                raise StoreError("step jobs left objects to publish, but this run has no local store to publish them")
            self._objects.publish(objects)

    def record_group(self, commits: Sequence[Commit], logs: Sequence[R.LogRecord] = ()) -> list[bool]:
        """Write the logs, then commit every row in one transaction, each fenced by its own lease; called only
        once the results' objects are published, so that a row is only ever written after its object is durable.

        Returns:
            For each commit in order, whether it was recorded (False: another engine took its lease over,
            and nothing of it was written).
        """
        if logs:
            self._meta.add_logs(logs)
        rows = [(c.mat, c.record, c.lease, self.author if c.mat.asset in self._models else None) for c in commits]
        return [mat_id is not None for mat_id in self._meta.commit_materializations(rows)]

    def step(self, record: R.StepRecord) -> None:
        """Queue a step record; written with the next heartbeat or at the end of the run."""
        self._pending.append(record)

    def logs(self, step: StepId, attempt: int, lines: Sequence[tuple[float, str, str]]) -> None:
        if lines:
            self._meta.add_logs(self.log_records(step, attempt, lines))

    def log_records(self, step: StepId, attempt: int, lines: Sequence[tuple[float, str, str]]) -> list[R.LogRecord]:
        return [R.LogRecord(self.run_id, step.asset, step.partition, attempt, *line) for line in lines]

    def heartbeat(self, leases: Sequence[tuple[str, int]], renew_slots: Callable[[], None]) -> None:
        """Keep the run, the leases of its running attempts and their pool slots alive; write queued records."""
        self._meta.heartbeat_run(self.run_id)
        if leases:
            self._meta.renew_leases(leases, self._ttl_s)
        renew_slots()
        self.flush()

    def flush(self) -> None:
        if self._pending:
            self._meta.upsert_steps(self._pending)
            self._pending = []

    def finish(self, status: str) -> None:
        """Write the queued step records, then the run's final status: that even when the records could not be
        written (a full disk), so that a run whose engine is gone is never left ``running``."""
        try:
            self.flush()
        finally:
            self._meta.finish_run(self.run_id, status)

    def reap(self, run_id: str, owner: str) -> None:
        """Abandon a run whose engine was a process of this host that is gone: its leases and slots free at once."""
        host, _, pid = owner.rpartition(":")
        if host != os.uname().nodename or not pid.isdigit() or _alive(int(pid)):
            return
        self._meta.abandon_run(run_id, f"its engine (process {pid}) is no longer running")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
