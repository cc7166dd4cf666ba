"""One run: prepare the step table → decide steps → submit what must run → record every result.

    step table ─▶ decide ready steps ──cached──▶ resolve ─▶ children become ready
                       │ run
                       ▼
           admit ─▶ claim ─▶ executor ─▶ outcome ─ok─▶ staged ─▶ group commit (fenced) ─▶ resolve
         (cpu, mem,  (attempt             └─fail─▶ retry later | fail, skip descendants
         pool, breaker) + lease)

One pass of the loop: start what is ready, then take every outcome that is in; the successful ones are
staged, and once nothing more has finished (or the group is full, or waited `GROUP_WAIT_S`, or holds a long
step's result) the group is recorded: the objects that inline step jobs left unpublished are made durable
together (on a thread, while the loop goes on), then all rows are written in one transaction. A staged
result is not resolved, so no child starts from it and no cache decision reads it, until it is committed. A
local process pool of a run that can only execute is started before the run is planned, so its workers are
up when the first step is submitted.

The engine is the loop and the state transitions of steps; `prepare` builds what it runs, `Admission`
decides when a step may start and `Recorder` writes everything. Executors only run step jobs.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cairn.core import records as R
from cairn.core.asset import AssetDef
from cairn.core.events import RUN_FINISHED, RUN_STARTED, STEP_FINISHED, STEP_RETRYING, STEP_STARTED, Event
from cairn.core.keys import StepId
from cairn.core.plan import FAIL, RUN, SKIP, Decision, StepSpec, decide
from cairn.core.records import StepStatus as S
from cairn.core.retry import Retry
from cairn.engine.admission import Admission, Verdict
from cairn.engine.context import checkpoint_path
from cairn.engine.groups import Group, result_commit
from cairn.engine.history import StoreHistory
from cairn.engine.jobs import OK, TIMEOUT, ChampionRef, DriftBaseline, InputSpec, StepJob, StepOutcome
from cairn.engine.prepare import PreparedStep, RunOptions, StepTable, prepare
from cairn.engine.recorder import Commit, Recorder, engine_owner, model_assets
from cairn.engine.results import RunResult, StepResult, new_run_id
from cairn.errors import (
    CairnError,
    CircuitOpen,
    CorruptObject,
    LeaseLost,
    SourceMissing,
    StepCrashed,
    StepTimeout,
    StoreError,
)
from cairn.executors.base import Completed, Executor
from cairn.executors.factory import create_executor
from cairn.project import Project
from cairn.security.authors import run_author
from cairn.storage.artifacts import LocalArtifactStore, discard
from cairn.storage.base import ArtifactStore
from cairn.storage.metadata import MetadataStore

__all__ = ["Engine", "EventSink", "RunOptions", "RunResult", "StepResult", "new_run_id"]

EventSink = Callable[[Event], None]
# The final statuses: a step in one of them is settled.
_SETTLED = (S.EXECUTED, S.CACHED, S.FAILED, S.SKIPPED)
# Executors whose step jobs leave their objects for the engine to publish, a group at a time. Process and thread
# workers fsync their own objects, in parallel with each other and with the engine's dispatching: measured on
# the 200-node DAG, one publication pass in the engine at a time made their runs 10-30 % slower (each layer's
# results waited for it), while inline runs, whose jobs are in the engine's thread anyway, got 30-40 % faster.
_ENGINE_PUBLISHES = ("inline",)
# At most this many finished steps wait in one group for their commit, and for at most this long: the result
# of a step that ran this long (or of a group that waited this long) is recorded before another step starts,
# so a crash only ever loses short steps' results, and heartbeats go out on time.
GROUP_MAX = 64
GROUP_WAIT_S = 0.05


@dataclass(slots=True)
class _State:
    """Mutable bookkeeping of one step inside the loop."""

    prep: PreparedStep
    waiting: int  # upstream steps not resolved yet
    status: S = S.PENDING
    reason: str = ""
    decision: Decision | None = None
    attempts: int = 0
    token: int | None = None  # the fencing token of the lease the running attempt holds
    mat: R.MaterializationRef | None = None  # what the step resolved to: its result, or the one it reuses
    error: str | None = None
    error_class: type[CairnError] | None = None
    duration: float | None = None
    not_ready: str | None = None
    submitted: float = 0.0  # monotonic time the running attempt was handed to the executor

    @property
    def step(self) -> StepId:
        return self.prep.step

    @property
    def asset(self) -> AssetDef:
        return self.prep.asset

    @property
    def spec(self) -> StepSpec:
        return self.prep.spec

    @property
    def lease(self) -> tuple[str, int] | None:
        key = self.decision.cache_key if self.decision else None
        return (key, self.token) if key is not None and self.token is not None else None


class Engine:
    """Runs one selection of a project to completion."""

    def __init__(
        self,
        project: Project,
        meta: MetadataStore,
        artifacts: ArtifactStore,
        options: RunOptions,
        on_event: EventSink | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.project = project
        self.settings = settings = project.settings
        self.meta = meta
        self.artifacts = artifacts
        self.options = options
        self.on_event = on_event or (lambda event: None)
        self.kind = options.executor or settings.executor
        self._executor = executor
        self.run_id = new_run_id()
        self.history = StoreHistory(meta, artifacts)
        # Step jobs leave their objects unpublished; the engine publishes each group before recording it.
        self.defer_publish = self.kind in _ENGINE_PUBLISHES and isinstance(artifacts, LocalArtifactStore)
        self.recorder = Recorder(
            meta,
            self.run_id,
            engine_owner(),
            settings.lease_ttl_s,
            options.actor or run_author(meta),
            model_assets(project.graph),
            artifacts if isinstance(artifacts, LocalArtifactStore) else None,
        )
        self.admission = Admission(
            meta,
            settings.pools,
            settings.breakers,
            self.run_id,
            self.recorder.owner,
            settings.lease_ttl_s,
            self.recorder.reap,
        )
        self.now = datetime.now(UTC)
        self.table: StepTable | None = None
        self.states: dict[StepId, _State] = {}
        self.ready: list[tuple[float, int, StepId]] = []  # (-priority, sequence, step)
        self.priority: dict[StepId, float] | None = None  # read when the first step is ready to execute
        self.running: dict[int, StepId] = {}  # executor ticket -> step
        self.staged: list[tuple[StepId, StepOutcome]] = []  # finished and stored, waiting for the next group
        self.staged_at = 0.0  # monotonic time the first of them was staged
        self.publishing: Group | None = None  # the group whose objects are being made durable
        self.lease_wait: dict[StepId, float] = {}  # another engine holds the key: look again at
        self.retry_wait: dict[StepId, float] = {}  # the next attempt is due at
        self.stopped = False
        self._recomputed: dict[StepId, int] = {}
        self._snapshots: dict[str, dict[tuple[str, str], R.Materialization]] = {}  # drift references, per run
        self._seq = 0
        self._rng = random.Random()

    @property
    def executor(self) -> Executor:
        """The executor, built on first use (a run with nothing to execute never needs one)."""
        if self._executor is None:
            workers = self.options.workers or self.settings.workers
            self._executor = create_executor(
                self.kind, workers, self.settings.executor_address, self.settings.executor_start
            )
        return self._executor

    @property
    def order(self) -> tuple[StepId, ...]:
        return self.table.order if self.table is not None else ()

    # ---- the loop -----------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Prepare, record the run, and drive every step to a final status."""
        from cairn.tracking.environment import capture_started

        self._start_pool()
        environment = capture_started(self.settings.root)  # git answers while the steps are prepared
        try:
            self.table = prepare(self.project, self.options, self.meta, self.history, self.now)
            for step in self.table.order:
                prep = self.table[step]
                self.states[step] = _State(prep, waiting=len(prep.upstream))
            self.recorder.start(
                R.RunRecord(
                    run_id=self.run_id,
                    status=R.RUNNING,
                    selection=" ".join(self.options.selection) or "*",
                    created_at=time.time(),
                    args=self._args(),
                    environment=environment(),
                    profile=self.options.profile,
                ),
                self.settings.stale_after_s,
            )
        except BaseException:
            environment()  # git's commands end with the run that started them
            if self._executor is not None:  # started before planning: stop it again
                self._executor.close()
            raise
        self.on_event(Event(RUN_STARTED, self.run_id, total=len(self.order)))
        status = R.FAILED
        try:
            self._loop()
            failed = any(self.states[s].status == S.FAILED for s in self.order)
            waiting = any(self.states[s].status == S.SKIPPED and self.states[s].not_ready for s in self.order)
            status = R.FAILED if failed else R.PARTIAL if waiting else R.SUCCEEDED
        except KeyboardInterrupt:
            status = R.CANCELLED
            self._cancel_all("the run was interrupted")
            raise
        finally:
            if self._executor is not None:
                self._executor.close()
                from cairn.io.reading import forget_inputs

                forget_inputs()  # inline and thread executors ran the steps in this process
            self.recorder.finish(status)
            self.on_event(Event(RUN_FINISHED, self.run_id, status=status, total=len(self.order)))
        return self.result(status)

    def result(self, status: str) -> RunResult:
        steps = []
        for step in self.order:
            st = self.states[step]
            steps.append(
                StepResult(
                    step.asset,
                    step.partition,
                    st.status,
                    st.attempts,
                    st.decision.cache_key if st.decision else None,
                    st.mat.data_version if st.mat else None,
                    st.duration,
                    st.reason,
                    st.error,
                    st.not_ready if st.status == S.SKIPPED else None,
                    st.error_class if st.status == S.FAILED else None,
                )
            )
        return RunResult(self.run_id, status, tuple(steps))

    def _args(self) -> dict[str, Any]:
        o = self.options
        return {
            "force": o.force,
            "fail_fast": o.fail_fast,
            "executor": self.kind,
            "workers": o.workers,
            "profile": o.profile,
            "set": {a: dict(v) for a, v in o.overrides.items()},
            "partition": o.partition,
            "partition_range": list(o.partition_range) if o.partition_range else None,
            "snapshot": o.snapshot,
            **o.labels,
        }

    def _start_pool(self) -> None:
        """Start a local process pool's workers before the run is planned when the run can only execute (a
        store with nothing materialized yet, or ``--force``), so that they are up when the first step is
        submitted: spawned interpreters boot meanwhile; forked ones begin as this process is then, with the
        step job and its serializers imported and the graph registered, so that no worker imports them on
        its first step. A run that may find everything cached starts no worker before it has to (forking
        costs this process its copy-on-write faults, about 10 ms for a no-change rerun)."""
        if self._executor is not None or self.kind != "process":
            return
        if not (self.options.force or self.history.empty):
            return
        from cairn.executors.local import ProcessExecutor

        executor = self.executor
        if isinstance(executor, ProcessExecutor):
            self._job_function()
            import cairn.io.serializers  # noqa: F401  (what the first step job would import in each worker)

            executor.start_workers()

    def _busy(self) -> bool:
        return bool(self.running or self.staged or self.publishing or self.ready or self.lease_wait or self.retry_wait)

    def _loop(self) -> None:
        for step in self.order:
            if self.states[step].waiting == 0:
                self._decide(step)
        next_heartbeat = time.monotonic() + self.settings.heartbeat_s
        while self._busy():
            now = time.monotonic()
            self._wake(now)
            if self.kind == "inline" and self._group_due(now):
                self._record_all()  # an inline step runs as it is submitted: record what waits before it
            self._start_ready()  # what is ready starts first; what finished is recorded after
            if now >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = now + self.settings.heartbeat_s
            if self._group_due(now):
                self._record_all()
                continue
            if self.publishing is not None and self.publishing.published:
                self._record_group()
                continue
            if self.staged and self.publishing is None:
                if self.running and len(self.staged) < GROUP_MAX and self._collect(0.0):
                    continue  # more finished meanwhile: they join the group, after the next submits
                self._publish_group()
                continue
            if not self._busy():
                break
            now = time.monotonic()
            wait = max(
                0.0,
                min([next_heartbeat, *self.retry_wait.values(), *self.lease_wait.values(), *self.admission.due(now)])
                - now,
            )
            if self.publishing is not None:
                if not (self.running and self._collect(0.0)):
                    self.publishing.wait(wait)  # nothing else to do until it is published
            elif self.running:
                self._collect(wait)
            elif wait > 0:
                time.sleep(wait)

    def _group_due(self, now: float) -> bool:
        """Whether the staged results must be recorded before anything more starts: a long step's, or a group
        that has waited `GROUP_WAIT_S` (grouping pays for short steps only)."""
        if not self.staged:
            return False
        return now - self.staged_at >= GROUP_WAIT_S or any(o.duration_s >= GROUP_WAIT_S for _, o in self.staged)

    def _collect(self, timeout: float) -> bool:
        """Take what the executor finished within `timeout` seconds; whether anything did."""
        done = self.executor.poll(timeout)
        for completed in done:
            self._finished(completed)
        return bool(done)

    def _wake(self, now: float) -> None:
        for step, due in list(self.retry_wait.items()):
            if now >= due:
                del self.retry_wait[step]
                self._push(step)
        for step, due in list(self.lease_wait.items()):
            if now >= due:
                del self.lease_wait[step]
                st = self.states[step]
                assert st.decision is not None
                hit = self.history.cached(step, st.decision.cache_key or "")
                if hit is not None:
                    self._resolve(step, S.CACHED, "computed by a concurrent run", hit)
                else:
                    self._push(step)

    # ---- deciding -----------------------------------------------------------------------------

    def _decide(self, first: StepId) -> None:
        """Decide `first` and, transitively, every child that a cache hit makes decidable."""
        work = [first]
        while work:
            step = work.pop()
            st = self.states[step]
            if st.status != S.PENDING:
                continue
            decision = st.prep.precheck
            if decision is None:
                refs = []
                for up in st.prep.upstream:
                    mat = self.states[up].mat
                    assert mat is not None
                    refs.append(R.InputRef(up.asset, up.partition, mat.data_version))
                decision = decide(st.spec, refs, self.history, st.prep.forced)
            if decision.action == SKIP:
                self._skip(step, str(decision.reason), str(step))
            elif decision.action == FAIL:
                self._fail(step, str(decision.reason), decision.reason.code.value, SourceMissing)
            elif decision.action == RUN:
                st.decision, st.reason = decision, str(decision.reason)
                self._push(step)
            else:
                assert decision.cached is not None
                st.decision = decision
                work.extend(self._resolve(step, S.CACHED, str(decision.reason), decision.cached, decide_children=False))

    def _push(self, step: StepId) -> None:
        self._seq += 1
        self.states[step].status = S.READY
        if self.priority is None:
            assert self.table is not None
            self.priority = self.table.priority(self.meta.mean_durations())
        heapq.heappush(self.ready, (-self.priority.get(step, 0.0), self._seq, step))

    def _resolve(
        self, step: StepId, status: S, reason: str, mat: R.MaterializationRef, decide_children: bool = True
    ) -> list[StepId]:
        st = self.states[step]
        st.status, st.reason, st.mat = status, reason, mat
        if status == S.CACHED:
            self._record(st)
            self.on_event(Event(STEP_FINISHED, self.run_id, step, status, reason))
        unblocked = []
        for child in st.prep.children:
            cst = self.states[child]
            cst.waiting -= 1
            if cst.waiting == 0 and cst.status == S.PENDING:
                unblocked.append(child)
        if decide_children:
            for child in unblocked:
                self._decide(child)
        return unblocked

    # ---- starting -----------------------------------------------------------------------------

    def _start_ready(self) -> None:
        if self.stopped:
            return
        capacity = self.executor.capacity
        deferred = []
        self.admission.new_pass()
        while self.ready and not self.admission.saturated(capacity):
            entry = heapq.heappop(self.ready)
            step = entry[2]
            st = self.states[step]
            if st.status != S.READY:
                continue  # reopened while queued
            verdict = self.admission.admit(step, st.asset, capacity) if self._references_settled(st) else Verdict.DEFER
            if verdict == Verdict.DEFER:
                deferred.append(entry)
            elif verdict == Verdict.BREAKER_OPEN:
                systems = ", ".join(st.asset.uses)
                error = f"CircuitOpen: {systems} failed too often in a row; not started"
                self._fail(step, error, "circuit open", CircuitOpen)
            else:
                self._submit(step)
        for entry in deferred:
            heapq.heappush(self.ready, entry)

    def _submit(self, step: StepId) -> None:
        """Claim an admitted step's key and hand its job to the executor (or wait, or reuse a result)."""
        st = self.states[step]
        assert st.decision is not None and st.decision.cache_key is not None
        key = st.decision.cache_key
        claim = self.recorder.claim(step, st.attempts + 1, key)
        if claim.token is None:
            self.admission.release(step)
            if claim.holder is not None:
                self.recorder.reap(*claim.holder)
            self.lease_wait[step] = time.monotonic() + 0.1
            st.status = S.WAITING
            return
        hit = claim.committed
        if hit is not None and st.spec.cache and not st.prep.forced and self.history.present(hit):
            # Another run committed this key since this run decided: its result is as good as this one.
            self.admission.release(step)
            self.recorder.end_attempt(step, st.attempts + 1, "reused", lease=(key, claim.token))
            self._resolve(step, S.CACHED, "computed by a concurrent run", hit.ref)
            return
        st.token = claim.token
        st.attempts += 1
        st.status = S.RUNNING
        job = StepJob(
            project_dir=str(self.settings.root),
            artifacts_url=self.settings.artifacts,
            artifacts_options=dict(self.settings.artifacts_options),
            asset=step.asset,
            partition=step.partition,
            run_id=self.run_id,
            attempt=st.attempts,
            cache_key=key,
            params=dict(st.spec.params),
            seed=st.spec.seed,
            inputs=self._inputs(st),
            source_path=st.prep.source_path,
            capture_output=self.kind in ("process", "ray"),  # one job per process main thread
            timeout=st.asset.timeout or self.settings.timeout,
            drift=self._drift_baselines(st),
            champion=self._champion(st),
            defer_publish=self.defer_publish,
        )
        self.on_event(Event(STEP_STARTED, self.run_id, step, "running", st.reason))
        st.submitted = time.monotonic()
        ticket = self.executor.submit(self._job_function(), job, job.timeout, st.asset.resources)
        self.running[ticket] = step

    def _champion(self, st: _State) -> ChampionRef | None:
        """What a model's gates compare with: the materialization its ``champion`` alias points at now."""
        if not st.asset.gates:
            return None
        mat = self.meta.alias_target("champion", st.asset.name)
        return ChampionRef(mat.stored, dict(mat.metrics)) if mat is not None else None

    def _job_function(self) -> Any:
        """The step job, imported on first use (a run with nothing to execute never needs it)."""
        from cairn.engine.step import register_graph, run_step

        register_graph(str(self.settings.root), self.project.graph)
        return run_step

    def _drift_baselines(self, st: _State) -> tuple[DriftBaseline, ...]:
        """What each drift check of the step compares with (see `cairn.engine.baselines`)."""
        if not any(check.drift is not None for check in st.asset.checks):
            return ()
        from cairn.engine import baselines

        def latest(step: StepId) -> R.Materialization | R.MaterializationRef | None:
            known = self.states.get(step)
            if known is not None and known.mat is not None and step != st.step:
                return known.mat  # this run's result of the reference partition
            return self.history.previous(step)

        def pinned(name: str) -> dict[tuple[str, str], R.Materialization]:
            if name not in self._snapshots:
                self._snapshots[name] = self.meta.snapshot(name)
            return self._snapshots[name]

        keys = self._keys(st.asset)
        return baselines.resolve(st.asset, st.step, keys, latest, self.history.present, pinned)

    def _references_settled(self, st: _State) -> bool:
        """Whether the earlier partitions a drift check compares with, when part of this run, have settled."""
        if not any(check.drift is not None for check in st.asset.checks):
            return True
        from cairn.engine.baselines import reference_steps

        for ref in reference_steps(st.asset, self._keys(st.asset), st.step):
            known = self.states.get(ref)
            if known is not None and known.status not in _SETTLED:
                return False
        return True

    def _keys(self, asset: AssetDef) -> Sequence[str]:
        assert self.table is not None
        return self.table.keys_of(asset)

    def _inputs(self, st: _State) -> tuple[InputSpec, ...]:
        specs = []
        for inp in st.prep.inputs:
            for up in inp.steps:
                mat = self.states[up].mat
                assert mat is not None
                ref = R.InputRef(up.asset, up.partition, mat.data_version)
                key = up.partition if inp.as_dict else None
                specs.append(InputSpec(inp.param, ref, mat.stored, inp.annotation, key))
        return tuple(specs)

    # ---- finishing ----------------------------------------------------------------------------

    def _finished(self, done: Completed) -> None:
        step = self.running.pop(done.ticket)
        st = self.states[step]
        self.admission.release(step)
        outcome = _outcome(done, st.asset.timeout or self.settings.timeout, time.monotonic() - st.submitted)
        self.admission.record(st.asset.uses, outcome.status == OK)
        if outcome.status == OK:
            if not self.staged:
                self.staged_at = time.monotonic()
            self.staged.append((step, outcome))  # recorded with the others that finish together
            return
        self.recorder.logs(step, st.attempts, outcome.logs)
        if outcome.bad_input is not None:
            self._recompute_input(step, outcome)
        else:
            self._attempt_failed(step, outcome)

    def _publish_group(self) -> None:
        """Start making the staged results' objects durable (see `Group`); what finishes meanwhile forms the
        next group."""
        staged, self.staged = self.staged, []
        self.publishing = Group.publish(staged, [self._commit_of(step, o) for step, o in staged], self.recorder)

    def _record_group(self) -> None:
        """Commit the published group's rows in one transaction; then resolve each result, which decides and
        queues its children."""
        group, self.publishing = self.publishing, None
        assert group is not None
        group.wait()
        if isinstance(group.error, OSError):  # the objects could not be made durable: nothing is recorded
            discard([obj for commit in group.commits for obj in commit.objects])
            error = f"StoreError: the output could not be written durably: {group.error}"
            for step, _ in group.staged:
                self._attempt_failed(step, StepOutcome("failed", error=error, retryable=True, error_class=StoreError))
            return
        if group.error is not None:
            raise group.error
        logs = [
            log
            for step, outcome in group.staged
            for log in self.recorder.log_records(step, self.states[step].attempts, outcome.logs)
        ]
        recorded = self.recorder.record_group(group.commits, logs)
        for (step, outcome), commit, ok in zip(group.staged, group.commits, recorded, strict=True):
            if ok:
                self._committed(step, outcome, commit.mat)
            else:
                self._lease_lost(step, commit.mat)

    def _record_all(self) -> None:
        """Record every result that finished: the group being published, then the staged ones."""
        if self.publishing is not None:
            self._record_group()
        if self.staged:
            self._publish_group()
            self._record_group()

    def _commit_of(self, step: StepId, outcome: StepOutcome) -> Commit:
        st = self.states[step]
        assert st.decision is not None and st.lease is not None
        return result_commit(self.run_id, step, st.spec, st.decision, st.attempts, st.reason, st.lease, outcome)

    def _lease_lost(self, step: StepId, mat: R.Materialization) -> None:
        st = self.states[step]
        st.token = None  # lost: nothing to release
        # Another engine took the key over; if it committed, its result is as good as this one.
        hit = self.history.cached(step, mat.cache_key)
        if hit is not None:
            self._end_attempt(st, "lost", "lease lost")
            self._resolve(step, S.CACHED, "computed by a concurrent run", hit)
            return
        error = "LeaseLost: another engine took this step over"
        self._attempt_failed(step, StepOutcome("failed", error=error, retryable=True, error_class=LeaseLost))

    def _committed(self, step: StepId, outcome: StepOutcome, mat: R.Materialization) -> None:
        st = self.states[step]
        st.duration = outcome.duration_s
        checkpoint_path(str(self.settings.root), mat.cache_key).unlink(missing_ok=True)
        self.history.remember(mat)
        self.on_event(Event(STEP_FINISHED, self.run_id, step, R.EXECUTED, st.reason))
        self._resolve(step, S.EXECUTED, st.reason, mat.ref)

    def _recompute_input(self, step: StepId, outcome: StepOutcome) -> None:
        """An input object was missing or damaged on read: quarantine it, recompute its producer, run again.

        A damaged object is never served: the producer's materialization no longer counts as a cache hit
        once its object is gone, so the producer re-runs (reason "stored output missing") and this step
        waits for it again.
        """
        from cairn.storage.maintenance import quarantine_object

        st = self.states[step]
        assert outcome.bad_input is not None
        version, digest = outcome.bad_input
        self._end_attempt(st, R.FAILED, outcome.error)
        producers = [up for up in st.prep.upstream if (m := self.states[up].mat) and m.data_version == version]
        self._recomputed[step] = self._recomputed.get(step, 0) + 1
        if not producers or self._recomputed[step] > 2:
            error = outcome.error or "an input object is damaged"
            self._fail(step, error, st.reason, outcome.error_class or CorruptObject)
            return
        for damaged in dict.fromkeys((digest, version)):  # a Files member, then its manifest
            if self.artifacts.exists(damaged):
                quarantine_object(self.artifacts, damaged)
        self.on_event(Event(STEP_RETRYING, self.run_id, step, "retrying", f"input {version[:15]}… was damaged"))
        st.status = S.PENDING
        for up in producers:
            self._reopen(up)
        for up in producers:
            self._decide(up)

    def _reopen(self, step: StepId) -> None:
        """Make a resolved step undecided again; its waiting children wait for it once more."""
        st = self.states[step]
        st.status, st.mat, st.decision = S.PENDING, None, None
        for child in st.prep.children:
            cst = self.states[child]
            if cst.status in (S.PENDING, S.READY):
                cst.status = S.PENDING  # a queued entry of it is skipped when popped
                cst.waiting += 1

    def _attempt_failed(self, step: StepId, outcome: StepOutcome) -> None:
        st = self.states[step]
        self._end_attempt(st, R.FAILED, outcome.error)
        policy: Retry = st.asset.retry or self.settings.retry
        if outcome.retryable and st.attempts < policy.max_attempts and not self.stopped:
            delay = policy.delay(st.attempts, self._rng.random())
            self.retry_wait[step] = time.monotonic() + delay
            st.status = S.RETRYING
            detail = f"attempt {st.attempts} failed, retrying in {delay:.1f} s: {_first_line(outcome.error)}"
            self.on_event(Event(STEP_RETRYING, self.run_id, step, "retrying", detail))
            return
        st.duration = outcome.duration_s
        self._fail(step, outcome.error or "failed", st.reason, outcome.error_class)

    def _end_attempt(self, st: _State, status: str, error: str | None = None) -> None:
        """Record how the step's current attempt ended and give up its lease, if it still holds one."""
        self.recorder.end_attempt(st.step, st.attempts, status, error, st.lease)
        st.token = None

    def _fail(self, step: StepId, error: str, reason: str, error_class: type[CairnError] | None = None) -> None:
        st = self.states[step]
        st.status, st.error, st.reason, st.error_class = S.FAILED, error, reason, error_class
        self._record(st)
        self.on_event(Event(STEP_FINISHED, self.run_id, step, R.FAILED, _first_line(error)))
        self._skip_descendants(step, f"upstream failed: {step}")
        if self.options.fail_fast:
            self._stop("run stopped after a failure (--fail-fast)")

    def _skip(self, step: StepId, reason: str, not_ready: str) -> None:
        """A step that cannot run yet (its data is not there); not a failure, but the run is `partial`."""
        st = self.states[step]
        st.status, st.reason, st.not_ready = S.SKIPPED, reason, not_ready
        self._record(st)
        self.on_event(Event(STEP_FINISHED, self.run_id, step, R.SKIPPED, reason))
        self._skip_descendants(step, f"upstream not ready: {step}", not_ready)

    def _skip_descendants(self, step: StepId, reason: str, not_ready: str | None = None) -> None:
        stack = list(self.states[step].prep.children)
        while stack:
            child = stack.pop()
            cst = self.states[child]
            if cst.status in (S.PENDING, S.READY):
                cst.status, cst.reason, cst.not_ready = S.SKIPPED, reason, not_ready
                self._record(cst)
                self.on_event(Event(STEP_FINISHED, self.run_id, child, R.SKIPPED, reason))
                stack.extend(cst.prep.children)

    def _stop(self, reason: str) -> None:
        self.stopped = True
        self.ready.clear()
        self.retry_wait.clear()
        self.lease_wait.clear()
        for step in self.order:
            st = self.states[step]
            if st.status in (S.PENDING, S.READY, S.RETRYING, S.WAITING):
                st.status, st.reason = S.SKIPPED, reason
                self._record(st)

    def _cancel_all(self, reason: str) -> None:
        self._record_all()  # finished and stored: record them rather than run them again
        for ticket, step in list(self.running.items()):
            st = self.states[step]
            self._end_attempt(st, R.FAILED, reason)
            self.admission.release(step)
            st.status, st.error = S.FAILED, reason
            self._record(st)
            del self.running[ticket]
        self._stop(reason)

    def _record(self, st: _State) -> None:
        self.recorder.step(
            R.StepRecord(
                self.run_id,
                st.step.asset,
                st.step.partition,
                st.status,
                st.reason,
                st.decision.cache_key if st.decision else None,
                st.mat.data_version if st.mat else None,
                st.attempts,
                st.duration,
                st.error,
            )
        )

    def _heartbeat(self) -> None:
        publishing = self.publishing.steps() if self.publishing is not None else []
        steps = [*self.running.values(), *(step for step, _ in self.staged), *publishing]
        leases = [lease for step in steps if (lease := self.states[step].lease) is not None]
        self.recorder.heartbeat(leases, self.admission.renew)


def _outcome(done: Completed, timeout: float | None, elapsed: float) -> StepOutcome:
    """What an attempt came to. `elapsed` (the engine's wall time since submitting it) is the duration of an
    attempt that returned none: one killed for its timeout, or one whose worker died."""
    if done.result is not None:
        result: StepOutcome = done.result
        if result.status == TIMEOUT:
            error = f"StepTimeout: {result.error}"
            return StepOutcome(
                TIMEOUT, None, result.duration_s, result.logs, error=error, retryable=True, error_class=StepTimeout
            )
        return result
    if done.timed_out:
        error = f"StepTimeout: the attempt ran longer than its timeout of {timeout} s"
        return StepOutcome(TIMEOUT, None, elapsed, error=error, error_class=StepTimeout)
    if done.crashed:
        return StepOutcome("failed", None, elapsed, error=f"StepCrashed: {done.error}", error_class=StepCrashed)
    error = f"StepCrashed: the step job failed outside user code: {done.error}"
    return StepOutcome("failed", None, elapsed, error=error, error_class=StepCrashed)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""
