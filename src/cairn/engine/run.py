"""One run: snapshot the project → decide steps → submit what must run → record every result.

    observe sources ─▶ decide ready steps ──cached──▶ resolve ─▶ children become ready
                             │ run
                             ▼
                 lease ─▶ attempt ─▶ executor ─▶ outcome ─ok─▶ commit (fenced) ─▶ resolve
                                                    └─fail─▶ retry later | fail, skip descendants

This is the single scheduling loop and the only writer of run metadata; executors only run step jobs.
"""

from __future__ import annotations

import heapq
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cairn.core import records as R
from cairn.core.asset import AssetDef, Resources
from cairn.core.events import RUN_FINISHED, RUN_STARTED, STEP_FINISHED, STEP_RETRYING, STEP_STARTED, Event
from cairn.core.keys import StepId, derive_seed
from cairn.core.partitions import check_key, key_range
from cairn.core.plan import (
    CACHED_ACTION,
    RUN,
    SOURCE_MISSING,
    Decision,
    Reason,
    ReasonCode,
    StepSpec,
    critical_path,
    decide,
)
from cairn.core.retry import BreakerPolicy, CircuitBreaker, Retry
from cairn.core.selection import select
from cairn.core.steps import StepInput, expand
from cairn.engine.context import checkpoint_path
from cairn.engine.history import StoreHistory
from cairn.engine.jobs import OK, TIMEOUT, DriftBaseline, InputSpec, StepJob, StepOutcome
from cairn.engine.sources import SourceObserver
from cairn.errors import DefinitionError, LeaseLost, UsageError
from cairn.executors.base import Capacity, Completed, Executor
from cairn.executors.factory import create_executor
from cairn.project import Project, installed_versions
from cairn.storage.base import ArtifactStore
from cairn.storage.metadata import MetadataStore
from cairn.storage.pools import SlotLease

EventSink = Callable[[Event], None]
# Seconds between asks for a slot of a pool that other engines fill.
_POOL_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What to run and how (the options of `cairn run`)."""

    selection: tuple[str, ...] = ()
    force: bool = False
    fail_fast: bool = False
    executor: str | None = None
    workers: int | None = None
    profile: str | None = None
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    partition: str | None = None
    partition_range: tuple[str, str] | None = None
    snapshot: str | None = None


@dataclass(frozen=True, slots=True)
class StepResult:
    """The outcome of one step of a run."""

    asset: str
    partition: str
    status: str
    attempts: int
    cache_key: str | None
    data_version: str | None
    duration_s: float | None
    reason: str
    error: str | None = None
    not_ready: str | None = None  # skipped for readiness: the step whose data is not there yet

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "partition": self.partition or None,
            "status": self.status,
            "attempts": self.attempts,
            "cache_key": self.cache_key,
            "data_version": self.data_version,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 6),
            "reason": self.reason,
            **({"error": self.error} if self.error else {}),
            **({"not_ready": self.not_ready} if self.not_ready else {}),
        }


@dataclass(frozen=True, slots=True)
class RunResult:
    """What `cairn.materialize` returns: the run id, its status and every step."""

    run_id: str
    status: str
    steps: tuple[StepResult, ...]

    @property
    def ok(self) -> bool:
        return self.status == R.SUCCEEDED

    def __getitem__(self, name: str) -> StepResult:
        asset, _, partition = name.partition("@")
        for step in self.steps:
            if step.asset == asset and step.partition == partition:
                return step
        raise KeyError(name)

    def count(self, status: str) -> int:
        return sum(1 for s in self.steps if s.status == status)

    @property
    def not_ready(self) -> list[StepResult]:
        """The steps skipped because data they need is not there yet (a source file, a complete period)."""
        return [s for s in self.steps if s.status == R.SKIPPED and s.not_ready]

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "steps": [s.to_dict() for s in self.steps]}


@dataclass(slots=True)
class _State:
    """Mutable bookkeeping of one step inside the loop."""

    step: StepId
    asset: AssetDef
    spec: StepSpec
    ups: list[StepInput]
    children: list[StepId] = field(default_factory=list)
    waiting: int = 0
    status: str = R.PENDING
    reason: str = ""
    decision: Decision | None = None
    attempts: int = 0
    token: int | None = None
    mat: R.Materialization | None = None
    error: str | None = None
    duration: float | None = None
    source_path: str | None = None
    not_ready: str | None = None
    submitted: float = 0.0  # monotonic time the running attempt was handed to the executor


def new_run_id() -> str:
    """A sortable, unique run id like ``20261123-081502-4f2a9c``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()


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
        self.settings = project.settings
        self.meta = meta
        self.artifacts = artifacts
        self._executor = executor
        self.options = options
        self.on_event = on_event or (lambda event: None)
        self.run_id = new_run_id()
        self.owner = f"{os.uname().nodename}:{os.getpid()}"
        self.history = StoreHistory(meta, artifacts)
        self.states: dict[StepId, _State] = {}
        self.order: list[StepId] = []
        self.ready: list[tuple[float, int, StepId]] = []
        self.running: dict[int, StepId] = {}
        self.lease_wait: dict[StepId, float] = {}
        self.retry_wait: dict[StepId, float] = {}
        self.pending_records: list[R.StepRecord] = []
        self.breakers: dict[str, CircuitBreaker] = {}
        self.pool_use: dict[str, int] = {}
        self.pool_slots: dict[StepId, SlotLease] = {}  # slots held in the database, shared with other engines
        self.pool_poll: float | None = None
        self.cpu_used = 0.0
        self.mem_used = 0
        self.priority: dict[StepId, float] = {}
        self.stopped = False
        self.forced: set[StepId] = set()
        self.kind = options.executor or self.settings.executor
        self._held: dict[StepId, tuple[float, int]] = {}
        self._recomputed: dict[StepId, int] = {}
        self.now = datetime.now(UTC)
        self.targets: set[str] = set()
        self.pinned: dict[tuple[str, str], R.Materialization] = {}
        self._all_keys: dict[str, list[str]] = {}
        self._observed: dict[str, str | None] = {}  # source path -> data version (None: no file), per run
        self._code: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {}
        self._snapshots: dict[str, dict[tuple[str, str], R.Materialization]] = {}  # drift references, per run
        self._seq = 0
        self._rng = random.Random()

    # ---- set-up -------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Resolve the selection into steps (asset x partition) with their key material; observe sources."""
        graph = self.project.graph
        targets = select(graph, self.options.selection)
        self.targets = targets
        if self.options.snapshot is not None:
            self.pinned = self.meta.snapshot(self.options.snapshot)
        target_keys = [(name, self._target_keys(graph.assets[name])) for name in sorted(targets)]
        self._check_partition_option(targets)
        observer = SourceObserver(self.settings.state_dir)
        order, inputs = expand(
            graph, target_keys, self._keys, lambda a, key: self._observe(a, key, observer) is not None
        )
        params = self.project.params(self.options.profile, self.options.overrides)
        forced = {StepId(name, key) for name, keys in target_keys for key in keys} if self.options.force else set()
        for step in order:
            asset = graph.assets[step.asset]
            self._check_pool(asset)
            ups = inputs[step]
            source_path = self._source_path(asset, step.partition) if asset.is_source else None
            spec = self._spec(asset, step, params[step.asset], source_path, observer)
            state = _State(step, asset, spec, ups, source_path=source_path)
            state.waiting = len(_distinct(ups))
            self.states[step] = state
            self.order.append(step)
        self.forced = forced
        observer.save()
        self.project.save_code_cache()
        for step in self.order:
            for up in _distinct(self.states[step].ups):
                self.states[up].children.append(step)
        durations = self.meta.mean_durations()
        downstream = {s: self.states[s].children for s in self.order}
        self.priority = critical_path(self.order, downstream, durations)

    def _keys(self, asset: AssetDef) -> list[str]:
        """Every partition key of an asset that exists now (cached for the run)."""
        keys = self._all_keys.get(asset.name)
        if keys is None:
            keys = asset.partitions.keys(self.now) if asset.partitions is not None else [""]
            self._all_keys[asset.name] = keys
        return keys

    def _target_keys(self, asset: AssetDef) -> list[str]:
        if asset.partitions is None:
            return [""]
        if self.options.partition is not None:
            return [check_key(asset.partitions, self.options.partition, self.now)]
        if self.options.partition_range is not None:
            first, last = self.options.partition_range
            return key_range(asset.partitions, first, last, self.now)
        return self._keys(asset)

    def _check_partition_option(self, targets: set[str]) -> None:
        asked = self.options.partition or self.options.partition_range
        if asked and not any(self.project.graph.assets[t].partitions is not None for t in targets):
            raise UsageError(
                f"--partition/--from/--to were given but no selected asset is partitioned "
                f"(selected: {', '.join(sorted(targets))})"
            )

    def _observe(self, asset: AssetDef, partition: str, observer: SourceObserver) -> str | None:
        """A source partition's data version now, or None when its file is not there (observed once per run)."""
        path = self._source_path(asset, partition)
        if path not in self._observed:
            self._observed[path] = observer.observe(Path(path))
        return self._observed[path]

    def _source_path(self, asset: AssetDef, partition: str) -> str:
        assert asset.path is not None
        return str(self.settings.root / asset.path.replace("{partition}", partition))

    def _spec(
        self,
        asset: AssetDef,
        step: StepId,
        params: dict[str, Any],
        source_path: str | None,
        observer: SourceObserver,
    ) -> StepSpec:
        if source_path is not None:
            version = self._observe(asset, step.partition, observer)
            return StepSpec(step, code_version="", source_version=version or SOURCE_MISSING)
        code = self._code.get(asset.name)
        if code is None:
            code = self._code[asset.name] = (*self.project.code(asset), installed_versions(asset.env))
        code_version, parts, env = code
        return StepSpec(
            step,
            code_version=code_version,
            code_parts=parts,
            params=params,
            seed=derive_seed(self.settings.seed, step),
            env=env,
            cache=asset.cache,
        )

    def _check_pool(self, asset: AssetDef) -> None:
        if asset.pool and asset.pool not in self.settings.pools:
            raise DefinitionError(
                f"asset '{asset.name}' uses pool '{asset.pool}', which is not declared: add "
                f"`{asset.pool} = <slots>` under [pools] in cairn.toml"
            )

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            workers = self.options.workers or self.settings.workers
            self._executor = create_executor(
                self.kind, workers, self.settings.executor_address, self.settings.executor_start
            )
        return self._executor

    def inputs_of(self) -> dict[StepId, list[StepId]]:
        """For each step, the steps it reads, without repeats."""
        return {s: _distinct(self.states[s].ups) for s in self.order}

    def specs(self) -> dict[StepId, StepSpec]:
        return {s: self.states[s].spec for s in self.order}

    # ---- the loop -----------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Prepare, record the run, and drive every step to a final status."""
        self.meta.abandon_stale_runs(self.settings.stale_after_s)
        self.prepare()
        from cairn.tracking.environment import capture

        self.meta.create_run(
            R.RunRecord(
                run_id=self.run_id,
                status=R.RUNNING,
                selection=" ".join(self.options.selection) or "*",
                created_at=time.time(),
                args=self._args(),
                environment=capture(self.settings.root),
                profile=self.options.profile,
            )
        )
        self.on_event(Event(RUN_STARTED, self.run_id, total=len(self.order)))
        status = R.FAILED
        try:
            self._loop()
            failed = any(self.states[s].status == R.FAILED for s in self.order)
            waiting = any(self.states[s].status == R.SKIPPED and self.states[s].not_ready for s in self.order)
            status = R.FAILED if failed else R.PARTIAL if waiting else R.SUCCEEDED
        except KeyboardInterrupt:
            status = R.CANCELLED
            self._cancel_all("the run was interrupted")
            raise
        finally:
            if self._executor is not None:
                self._executor.close()
                from cairn.engine.step import forget_inputs

                forget_inputs()  # inline and thread executors ran the steps in this process
            self._flush()
            self.meta.finish_run(self.run_id, status)
            self.on_event(Event(RUN_FINISHED, self.run_id, status=status, total=len(self.order)))
        return self.result(status)

    def result(self, status: str) -> RunResult:
        steps = []
        for step in self.order:
            st = self.states[step]
            key = st.decision.cache_key if st.decision else None
            steps.append(
                StepResult(
                    step.asset,
                    step.partition,
                    st.status,
                    st.attempts,
                    key,
                    st.mat.data_version if st.mat else None,
                    st.duration,
                    st.reason,
                    st.error,
                    st.not_ready if st.status == R.SKIPPED else None,
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
        }

    def _loop(self) -> None:
        for step in self.order:
            if self.states[step].waiting == 0:
                self._decide(step)
        next_heartbeat = time.monotonic() + self.settings.heartbeat_s
        while self.running or self.ready or self.lease_wait or self.retry_wait:
            now = time.monotonic()
            self._wake(now)
            self._start_ready()
            if now >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = now + self.settings.heartbeat_s
            if not (self.running or self.ready or self.lease_wait or self.retry_wait):
                break
            wait = self._wait_time(next_heartbeat)
            if self.running:
                for done in self.executor.poll(wait):
                    self._finished(done)
            elif wait is not None and wait > 0:
                time.sleep(wait)

    def _wait_time(self, next_heartbeat: float) -> float | None:
        now = time.monotonic()
        times = [next_heartbeat, *self.retry_wait.values(), *self.lease_wait.values()]
        if self.pool_poll is not None:
            times.append(self.pool_poll)
        for breaker in self.breakers.values():
            if breaker.state == "open":
                times.append(now + breaker.wait_time(time.time()))
        return max(0.0, min(times) - now)

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
                    self._resolve(step, R.CACHED, "computed by a concurrent run", hit)
                else:
                    self._push(step)

    # ---- deciding -----------------------------------------------------------------------------

    def _decide(self, first: StepId) -> None:
        """Decide `first` and, transitively, every child that a cache hit makes decidable."""
        work = [first]
        while work:
            step = work.pop()
            st = self.states[step]
            if st.status != R.PENDING:
                continue
            if st.spec.source_version == SOURCE_MISSING:
                if step.partition:
                    self._skip(step, f"source not ready: {st.source_path} does not exist", str(step))
                else:
                    self._fail(step, f"source file {st.source_path} does not exist", "source missing")
                continue
            empty = [u.param for u in st.ups if not u.steps and not u.as_dict]
            if empty:
                self._skip(step, f"no partition of input '{empty[0]}' exists yet", str(step))
                continue
            pinned = self._pinned(step)
            if pinned is not None:
                reason = f"pinned by snapshot {self.options.snapshot}"
                st.decision = Decision(step, CACHED_ACTION, Reason(ReasonCode.CACHED, reason), pinned.cache_key, pinned)
                work.extend(self._resolve(step, R.CACHED, reason, pinned, decide_children=False))
                continue
            refs = []
            for up in _distinct(st.ups):
                mat = self.states[up].mat
                assert mat is not None
                refs.append(R.InputRef(up.asset, up.partition, mat.data_version))
            decision = decide(st.spec, refs, self.history, step in self.forced)
            st.decision = decision
            st.reason = str(decision.reason)
            if decision.action == RUN:
                self._push(step)
            else:
                assert decision.cached is not None
                work.extend(self._resolve(step, R.CACHED, st.reason, decision.cached, decide_children=False))

    def _pinned(self, step: StepId) -> R.Materialization | None:
        """With --snapshot, an upstream step outside the selection reads its pinned materialization."""
        mat = self.pinned.get((step.asset, step.partition))
        if mat is None or step.asset in self.targets or not self.history.present(mat):
            return None
        return mat

    def _push(self, step: StepId) -> None:
        self._seq += 1
        self.states[step].status = "ready"
        heapq.heappush(self.ready, (-self.priority.get(step, 0.0), self._seq, step))

    def _resolve(
        self, step: StepId, status: str, reason: str, mat: R.Materialization, decide_children: bool = True
    ) -> list[StepId]:
        st = self.states[step]
        st.status, st.reason, st.mat = status, reason, mat
        if status == R.CACHED:
            self._record(st)
            self.on_event(Event(STEP_FINISHED, self.run_id, step, status, reason))
        unblocked = []
        for child in st.children:
            cst = self.states[child]
            cst.waiting -= 1
            if cst.waiting == 0 and cst.status == R.PENDING:
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
        full: set[str] = set()  # pools whose slots other engines hold, as found in this pass
        self.pool_poll = None
        while self.ready:
            if self.running and self.cpu_used >= capacity.cpu - 1e-9:
                break
            entry = heapq.heappop(self.ready)
            step = entry[2]
            st = self.states[step]
            if st.status != "ready":
                continue  # reopened while queued
            cpu, mem, alone = _share(st.asset.resources, capacity)
            fits = not self.running or (
                not alone and self.cpu_used + cpu <= capacity.cpu + 1e-9 and self.mem_used + mem <= capacity.memory_mb
            )
            if not fits or not self._references_settled(st) or not self._take_pool_slot(step, st.asset, full):
                deferred.append(entry)
                continue
            verdict = self._admit(st.asset)
            if verdict != "yes":
                self._give_pool_slot_back(step)
            if verdict == "wait":
                deferred.append(entry)
                continue
            if verdict == "fail":
                systems = ", ".join(st.asset.uses)
                self._fail(step, f"CircuitOpen: {systems} failed too often in a row; not started", "circuit open")
                continue
            self._submit(step, cpu, mem)
        for entry in deferred:
            heapq.heappush(self.ready, entry)

    def _take_pool_slot(self, step: StepId, asset: AssetDef, full: set[str]) -> bool:
        """Whether a step may start within its pool's limit, counted across every engine on the database.

        This engine's own count answers first (no query while it fills the pool itself); then the step takes
        a slot in the database, or waits while other engines hold them all.
        """
        if not asset.pool:
            return True
        limit = self.settings.pools[asset.pool]
        if self.pool_use.get(asset.pool, 0) >= limit or asset.pool in full:
            return False
        lease = self.meta.acquire_pool_slot(
            asset.pool, limit, self.run_id, self.owner, self.settings.lease_ttl_s, str(step)
        )
        if lease is None:
            full.add(asset.pool)
            for holder in self.meta.pool_holders(asset.pool):
                self._abandon_if_dead(holder.run_id, holder.owner)
            self.pool_poll = time.monotonic() + _POOL_POLL_S
            return False
        self.pool_slots[step] = lease
        return True

    def _give_pool_slot_back(self, step: StepId) -> None:
        lease = self.pool_slots.pop(step, None)
        if lease is not None:
            self.meta.release_pool_slot(lease)

    def _admit(self, asset: AssetDef) -> str:
        verdicts = [self._breaker(system).admit(time.time()) for system in asset.uses]
        if "fail" in verdicts:
            return "fail"
        return "wait" if "wait" in verdicts else "yes"

    def _breaker(self, system: str) -> CircuitBreaker:
        if system not in self.breakers:
            policy = self.settings.breakers.get(system, BreakerPolicy())
            self.breakers[system] = CircuitBreaker(policy)
        return self.breakers[system]

    def _submit(self, step: StepId, cpu: float, mem: int) -> None:
        st = self.states[step]
        assert st.decision is not None and st.decision.cache_key is not None
        key = st.decision.cache_key
        attempt = R.AttemptRecord(self.run_id, step.asset, step.partition, st.attempts + 1, "running", time.time())
        claim = self.meta.claim(key, self.run_id, self.owner, self.settings.lease_ttl_s, attempt)
        if claim.token is None:
            self._give_pool_slot_back(step)
            if claim.holder is not None:
                self._abandon_if_dead(*claim.holder)
            self.lease_wait[step] = time.monotonic() + 0.1
            st.status = "waiting"
            return
        hit = claim.committed
        if hit is not None and st.spec.cache and step not in self.forced and self.history.present(hit):
            # Another run committed this key since this run decided: its result is as good as this one.
            self._give_pool_slot_back(step)
            self.meta.end_attempt(
                self.run_id, step.asset, step.partition, attempt.attempt, "reused", lease=(key, claim.token)
            )
            self._resolve(step, R.CACHED, "computed by a concurrent run", hit)
            return
        st.token = claim.token
        st.attempts += 1
        st.status = "running"
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
            source_path=st.source_path,
            capture_output=self.kind in ("process", "ray"),  # one job per process main thread
            timeout=st.asset.timeout or self.settings.timeout,
            drift=self._drift_baselines(st),
        )
        self.cpu_used += cpu
        self.mem_used += mem
        if st.asset.pool:
            self.pool_use[st.asset.pool] = self.pool_use.get(st.asset.pool, 0) + 1
        self.on_event(Event(STEP_STARTED, self.run_id, step, "running", st.reason))
        st.submitted = time.monotonic()
        ticket = self.executor.submit(self._job_function(), job, job.timeout, st.asset.resources)
        self.running[ticket] = step
        self._held[step] = (cpu, mem)

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

        def latest(step: StepId) -> R.Materialization | None:
            known = self.states.get(step)
            if known is not None and known.mat is not None and step != st.step:
                return known.mat  # this run's result of the reference partition
            return self.history.previous(step)

        def pinned(name: str) -> dict[tuple[str, str], R.Materialization]:
            if name not in self._snapshots:
                self._snapshots[name] = self.meta.snapshot(name)
            return self._snapshots[name]

        return baselines.resolve(st.asset, st.step, self._keys(st.asset), latest, self.history.present, pinned)

    def _references_settled(self, st: _State) -> bool:
        """Whether the earlier partitions a drift check compares with, when part of this run, have settled."""
        if not any(check.drift is not None for check in st.asset.checks):
            return True
        from cairn.engine.baselines import reference_steps

        for ref in reference_steps(st.asset, self._keys(st.asset), st.step):
            known = self.states.get(ref)
            if known is not None and known.status not in (R.EXECUTED, R.CACHED, R.FAILED, R.SKIPPED):
                return False
        return True

    def _end_attempt(self, st: _State, status: str, error: str | None = None) -> None:
        """Record how the step's current attempt ended and give up its lease, if it still holds one."""
        key = st.decision.cache_key if st.decision else None
        lease = (key, st.token) if key is not None and st.token is not None else None
        self.meta.end_attempt(self.run_id, st.step.asset, st.step.partition, st.attempts, status, error, lease)
        st.token = None

    def _abandon_if_dead(self, run_id: str, owner: str) -> None:
        """Abandon a run whose engine was a process of this host that is gone: its leases and slots free at once."""
        host, _, pid = owner.rpartition(":")
        if host != os.uname().nodename or not pid.isdigit() or _alive(int(pid)):
            return
        self.meta.abandon_run(run_id, f"its engine (process {pid}) is no longer running")

    def _inputs(self, st: _State) -> tuple[InputSpec, ...]:
        specs = []
        for inp in st.ups:
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
        cpu, mem = self._held.pop(step)
        self.cpu_used -= cpu
        self.mem_used -= mem
        if st.asset.pool:
            self.pool_use[st.asset.pool] -= 1
            self._give_pool_slot_back(step)
        outcome = _outcome(done, st.asset.timeout or self.settings.timeout, time.monotonic() - st.submitted)
        if outcome.logs:
            self.meta.add_logs(
                [
                    R.LogRecord(self.run_id, step.asset, step.partition, st.attempts, t, level, msg)
                    for t, level, msg in outcome.logs
                ]
            )
        for system in st.asset.uses:
            self._breaker(system).record(outcome.status == OK, time.time())
        if outcome.status == OK:
            self._commit(step, outcome)
        elif outcome.bad_input is not None:
            self._recompute_input(step, outcome)
        else:
            self._attempt_failed(step, outcome)

    def _commit(self, step: StepId, outcome: StepOutcome) -> None:
        st = self.states[step]
        assert st.decision is not None and st.decision.cache_key is not None and outcome.stored is not None
        spec = st.spec
        metadata = dict(outcome.metadata)
        if spec.env:
            metadata["cairn.env"] = dict(spec.env)
        if outcome.checks:
            metadata["cairn.checks"] = list(outcome.checks)
        if outcome.timings:
            metadata["cairn.timings"] = {k: round(v, 6) for k, v in outcome.timings.items()}
        mat = R.Materialization(
            asset=step.asset,
            partition=step.partition,
            cache_key=st.decision.cache_key,
            data_version=outcome.stored.data_version,
            size=outcome.stored.size,
            format=outcome.stored.format,
            pytype=outcome.stored.pytype,
            run_id=self.run_id,
            attempt=st.attempts,
            code_version=spec.code_version or (spec.source_version or ""),
            code_parts=dict(spec.code_parts),
            params=dict(spec.params),
            seed=spec.seed,
            inputs=st.decision.inputs,
            duration_s=outcome.duration_s,
            created_at=time.time(),
            metadata=metadata,
            metrics=dict(outcome.metrics),
        )
        record = R.StepRecord(
            self.run_id,
            step.asset,
            step.partition,
            R.EXECUTED,
            st.reason,
            mat.cache_key,
            mat.data_version,
            st.attempts,
            outcome.duration_s,
        )
        assert st.token is not None
        try:
            self.meta.commit_materialization(mat, record, (mat.cache_key, st.token))
        except LeaseLost:
            # Another engine took the key over; if it committed, its result is as good as this one.
            hit = self.history.cached(step, mat.cache_key)
            if hit is not None:
                st.token = None  # lost: nothing to release
                self._end_attempt(st, "lost", "lease lost")
                self._resolve(step, R.CACHED, "computed by a concurrent run", hit)
                return
            st.token = None
            lost = StepOutcome("failed", error="LeaseLost: another engine took this step over", retryable=True)
            self._attempt_failed(step, lost)
            return
        st.duration = outcome.duration_s
        checkpoint_path(str(self.settings.root), mat.cache_key).unlink(missing_ok=True)
        self.history.remember(mat)
        self.on_event(Event(STEP_FINISHED, self.run_id, step, R.EXECUTED, st.reason))
        self._resolve(step, R.EXECUTED, st.reason, mat)

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
        producers = [up for up in _distinct(st.ups) if (m := self.states[up].mat) and m.data_version == version]
        self._recomputed[step] = self._recomputed.get(step, 0) + 1
        if not producers or self._recomputed[step] > 2:
            self._fail(step, outcome.error or "an input object is damaged", st.reason)
            return
        for damaged in dict.fromkeys((digest, version)):  # a Files member, then its manifest
            if self.artifacts.exists(damaged):
                quarantine_object(self.artifacts, damaged)
        self.on_event(Event(STEP_RETRYING, self.run_id, step, "retrying", f"input {version[:15]}… was damaged"))
        st.status = R.PENDING
        for up in producers:
            self._reopen(up)
        for up in producers:
            self._decide(up)

    def _reopen(self, step: StepId) -> None:
        """Make a resolved step undecided again; its waiting children wait for it once more."""
        st = self.states[step]
        st.status, st.mat, st.decision = R.PENDING, None, None
        for child in st.children:
            cst = self.states[child]
            if cst.status in (R.PENDING, "ready"):
                cst.status = R.PENDING  # a queued entry of it is skipped when popped
                cst.waiting += 1

    def _attempt_failed(self, step: StepId, outcome: StepOutcome) -> None:
        st = self.states[step]
        self._end_attempt(st, R.FAILED, outcome.error)
        policy: Retry = st.asset.retry or self.settings.retry
        if outcome.retryable and st.attempts < policy.max_attempts and not self.stopped:
            delay = policy.delay(st.attempts, self._rng.random())
            self.retry_wait[step] = time.monotonic() + delay
            st.status = "retrying"
            detail = f"attempt {st.attempts} failed, retrying in {delay:.1f} s: {_first_line(outcome.error)}"
            self.on_event(Event(STEP_RETRYING, self.run_id, step, "retrying", detail))
            return
        st.duration = outcome.duration_s
        self._fail(step, outcome.error or "failed", st.reason)

    def _fail(self, step: StepId, error: str, reason: str) -> None:
        st = self.states[step]
        st.status, st.error, st.reason = R.FAILED, error, reason
        self._record(st)
        self.on_event(Event(STEP_FINISHED, self.run_id, step, R.FAILED, _first_line(error)))
        self._skip_descendants(step, f"upstream failed: {step}")
        if self.options.fail_fast:
            self._stop("run stopped after a failure (--fail-fast)")

    def _skip(self, step: StepId, reason: str, not_ready: str) -> None:
        """A step that cannot run yet (its data is not there); not a failure, but the run is `partial`."""
        st = self.states[step]
        st.status, st.reason, st.not_ready = R.SKIPPED, reason, not_ready
        self._record(st)
        self.on_event(Event(STEP_FINISHED, self.run_id, step, R.SKIPPED, reason))
        self._skip_descendants(step, f"upstream not ready: {step}", not_ready)

    def _skip_descendants(self, step: StepId, reason: str, not_ready: str | None = None) -> None:
        stack = list(self.states[step].children)
        while stack:
            child = stack.pop()
            cst = self.states[child]
            if cst.status in (R.PENDING, "ready"):
                cst.status, cst.reason, cst.not_ready = R.SKIPPED, reason, not_ready
                self._record(cst)
                self.on_event(Event(STEP_FINISHED, self.run_id, child, R.SKIPPED, reason))
                stack.extend(cst.children)

    def _stop(self, reason: str) -> None:
        self.stopped = True
        self.ready.clear()
        self.retry_wait.clear()
        self.lease_wait.clear()
        for step in self.order:
            st = self.states[step]
            if st.status in (R.PENDING, "ready", "retrying", "waiting"):
                st.status, st.reason = R.SKIPPED, reason
                self._record(st)

    def _cancel_all(self, reason: str) -> None:
        for ticket, step in list(self.running.items()):
            st = self.states[step]
            self._end_attempt(st, R.FAILED, reason)
            self._give_pool_slot_back(step)
            st.status, st.error = R.FAILED, reason
            self._record(st)
            del self.running[ticket]
        self._stop(reason)

    def _record(self, st: _State) -> None:
        key = st.decision.cache_key if st.decision else None
        self.pending_records.append(
            R.StepRecord(
                self.run_id,
                st.step.asset,
                st.step.partition,
                st.status,
                st.reason,
                key,
                st.mat.data_version if st.mat else None,
                st.attempts,
                st.duration,
                st.error,
            )
        )

    def _flush(self) -> None:
        if self.pending_records:
            self.meta.upsert_steps(self.pending_records)
            self.pending_records = []

    def _heartbeat(self) -> None:
        self.meta.heartbeat_run(self.run_id)
        held = []
        for step in self.running.values():
            st = self.states[step]
            if st.decision and st.decision.cache_key and st.token is not None:
                held.append((st.decision.cache_key, st.token))
        if held:
            self.meta.renew_leases(held, self.settings.lease_ttl_s)
        # A slot lost meanwhile (this engine stalled past its expiry) stays lost: the step runs on, and the
        # finished step gives back nothing, as its token is no longer current.
        self.meta.renew_pool_slots(list(self.pool_slots.values()), self.settings.lease_ttl_s)
        self._flush()


def _outcome(done: Completed, timeout: float | None, elapsed: float) -> StepOutcome:
    """What an attempt came to. `elapsed` (the engine's wall time since submitting it) is the duration of an
    attempt that returned none: one killed for its timeout, or one whose worker died."""
    if done.result is not None:
        result: StepOutcome = done.result
        if result.status == TIMEOUT:
            error = f"StepTimeout: {result.error}"
            return StepOutcome(TIMEOUT, None, result.duration_s, result.logs, error=error, retryable=True)
        return result
    if done.timed_out:
        error = f"StepTimeout: the attempt ran longer than its timeout of {timeout} s"
        return StepOutcome(TIMEOUT, None, elapsed, error=error)
    if done.crashed:
        return StepOutcome("failed", None, elapsed, error=f"StepCrashed: {done.error}")
    error = f"StepCrashed: the step job failed outside user code: {done.error}"
    return StepOutcome("failed", None, elapsed, error=error)


def _share(resources: Resources, capacity: Capacity) -> tuple[float, int, bool]:
    """The CPU and memory a step holds while it runs, and whether it must run alone: a step that asks for the
    whole machine (or more) holds all of it, so nothing starts beside it."""
    alone = resources.cpu >= capacity.cpu or (resources.memory_mb > 0 and resources.memory_mb >= capacity.memory_mb)
    if alone:
        return capacity.cpu, capacity.memory_mb, True
    return resources.cpu, resources.memory_mb, False


def _distinct(ups: list[StepInput]) -> list[StepId]:
    """The upstream steps of a step's inputs, each once, in order."""
    return list(dict.fromkeys(step for inp in ups for step in inp.steps))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""
