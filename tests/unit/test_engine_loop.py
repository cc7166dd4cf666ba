"""The engine's loop driven by a scripted executor over in-memory stores: no worker runs any asset code.

The executor completes one job per poll with the outcome its script names for that attempt ("ok", "flaky",
"fail", "timeout", "crash"), so each test fixes exactly what every attempt came to and reads back what the
engine decided, admitted and recorded.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cairn.core.keys import StepId
from cairn.core.records import StoredValue
from cairn.engine.history import StoreHistory
from cairn.engine.jobs import FAILED, OK, StepJob, StepOutcome
from cairn.engine.prepare import prepare
from cairn.engine.run import Engine, RunOptions, RunResult
from cairn.errors import CircuitOpen, SourceMissing, StepCrashed, StepFailed, StepTimeout
from cairn.executors.base import Capacity, Completed, Job
from cairn.project import Project, load_project
from cairn.storage.memory import MemoryArtifactStore
from cairn.storage.metadata import MetadataStore, open_metadata


class ScriptedExecutor:
    """Runs nothing: a job's outcome is the script's entry for its asset and attempt ("ok" by default); an ok
    attempt stores ``asset@partition`` as its output, so equal steps give byte-identical results."""

    def __init__(self, store: MemoryArtifactStore, script: dict[str, list[str]] | None = None, cpu: float = 2) -> None:
        self.capacity = Capacity(cpu, 4096)
        self.store = store
        self.script = script or {}
        self.jobs: list[StepJob] = []
        self.running: dict[int, StepJob] = {}
        self.most_at_once = 0

    def submit(self, fn: Job, arg: Any, timeout: float | None = None, resources: Any = None) -> int:
        ticket = len(self.jobs)
        self.jobs.append(arg)
        self.running[ticket] = arg
        self.most_at_once = max(self.most_at_once, len(self.running))
        return ticket

    def poll(self, timeout: float | None) -> list[Completed]:
        ticket = next(iter(self.running))
        return [self._complete(ticket, self.running.pop(ticket))]

    def close(self) -> None:
        pass

    def submitted(self) -> list[str]:
        return [f"{job.asset}@{job.partition}" if job.partition else job.asset for job in self.jobs]

    def _complete(self, ticket: int, job: StepJob) -> Completed:
        plan = self.script.get(job.asset, [])
        what = plan[job.attempt - 1] if job.attempt <= len(plan) else "ok"
        if what == "ok":
            digest, size = self.store.put_bytes(f"{job.asset}@{job.partition}".encode())
            return Completed(ticket, StepOutcome(OK, StoredValue(digest, size, "bytes", "bytes"), duration_s=0.25))
        if what in ("flaky", "fail"):
            error = "ValueError: boom"
            outcome = StepOutcome(FAILED, error=error, retryable=what == "flaky", error_class=StepFailed)
            return Completed(ticket, outcome)
        if what == "timeout":
            return Completed(ticket, timed_out=True)
        return Completed(ticket, crashed=True, error="the worker died")


class Stores:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta: MetadataStore = open_metadata("sqlite:///:memory:", root)
        self.artifacts = MemoryArtifactStore()

    def project(self, pipeline: str, extra: str = "") -> Project:
        config = '[project]\nname = "loop"\nmodules = ["pipeline"]\n\n[executor]\nkind = "inline"\n' + extra
        (self.root / "cairn.toml").write_text(config, encoding="utf-8")
        (self.root / "pipeline.py").write_text(textwrap.dedent(pipeline), encoding="utf-8")
        return load_project(self.root)

    def run(self, project: Project, executor: ScriptedExecutor, **options: Any) -> RunResult:
        return Engine(project, self.meta, self.artifacts, RunOptions(**options), executor=executor).run()


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stores]:
    monkeypatch.syspath_prepend(str(tmp_path))
    opened = Stores(tmp_path)
    yield opened
    opened.meta.close()


CHAIN = """
    from cairn import asset, Retry

    @asset(params={"n": 1}, retry=Retry(max_attempts=3, backoff=0.001, jitter=False))
    def a(ctx):
        return ctx.params["n"]

    @asset
    def b(a):
        return a

    @asset
    def c(b):
        return b
    """


def test_a_chain_runs_in_order_and_a_second_run_submits_nothing(stores: Stores) -> None:
    project = stores.project(CHAIN)
    first = ScriptedExecutor(stores.artifacts)
    result = stores.run(project, first)
    assert result.status == "succeeded" and first.submitted() == ["a", "b", "c"]
    assert [s.status for s in result.steps] == ["executed"] * 3
    again = ScriptedExecutor(stores.artifacts)
    second = stores.run(project, again)
    assert again.jobs == [] and [s.status for s in second.steps] == ["cached"] * 3
    recorded = {s.asset: s.status for s in stores.meta.run_steps(second.run_id)}
    assert recorded == {"a": "cached", "b": "cached", "c": "cached"}
    assert stores.meta.get_run(second.run_id).status == "succeeded"  # type: ignore[union-attr]


def test_byte_identical_output_after_a_param_change_keeps_the_descendants_cached(stores: Stores) -> None:
    project = stores.project(CHAIN)
    stores.run(project, ScriptedExecutor(stores.artifacts))
    executor = ScriptedExecutor(stores.artifacts)
    result = stores.run(project, executor, overrides={"a": {"n": 2}})
    assert executor.submitted() == ["a"]
    assert result["a"].reason == "param changed: n 1→2"
    assert result["b"].status == "cached" and result["c"].status == "cached"


class CountingReads:
    """The metadata store, counting the full records of materializations read through it: by id, and all of
    the latest at once."""

    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta
        self.records_read = 0
        self.all_read = 0

    def materializations_by_id(self, ids: Any) -> Any:
        self.records_read += len(ids)
        return self.meta.materializations_by_id(ids)

    def latest_materializations(self) -> Any:
        self.all_read += 1
        return self.meta.latest_materializations()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.meta, name)


def test_a_cached_plan_reads_references_and_a_miss_reads_its_own_record_once(stores: Stores) -> None:
    project = stores.project(CHAIN)
    stores.run(project, ScriptedExecutor(stores.artifacts))
    reads = CountingReads(stores.meta)
    history = StoreHistory(reads, stores.artifacts)
    cached = prepare(project, RunOptions(), stores.meta, history, datetime.now(UTC)).plan(history)
    assert [d.action for d in cached.steps] == ["cached"] * 3 and (reads.records_read, reads.all_read) == (0, 0)
    latest = stores.meta.latest_materializations()
    assert [d.cached for d in cached.steps] == [latest[(name, "")].ref for name in ("a", "b", "c")]
    changed = RunOptions(overrides={"a": {"n": 2}})
    for _ in range(2):  # the record of `a` is read for the first reason that compares it, then kept
        missed = prepare(project, changed, stores.meta, history, datetime.now(UTC)).plan(history)
        assert str(missed.steps[0].reason) == "param changed: n 1→2" and (reads.records_read, reads.all_read) == (1, 0)
    assert [str(d.reason) for d in missed.steps[1:]] == ["upstream runs: a", "upstream runs: b"]
    every = CountingReads(stores.meta)
    shown = StoreHistory(every, stores.artifacts, records=True)  # `status`: all of them, in one read
    assert shown.previous(StepId("c", "")) == latest[("c", "")] and (every.records_read, every.all_read) == (0, 1)
    assert shown.cached(StepId("c", ""), latest[("c", "")].cache_key) == latest[("c", "")].ref


def test_a_retryable_failure_is_retried_and_every_attempt_is_recorded(stores: Stores) -> None:
    project = stores.project(CHAIN)
    executor = ScriptedExecutor(stores.artifacts, {"a": ["flaky", "flaky", "ok"]})
    result = stores.run(project, executor)
    assert result.ok and result["a"].attempts == 3 and result["a"].error_class is None
    attempts = [(a.attempt, a.status) for a in stores.meta.attempts(result.run_id) if a.asset == "a"]
    assert attempts[:2] == [(1, "failed"), (2, "failed")] and attempts[2][0] == 3
    assert executor.submitted() == ["a", "a", "a", "b", "c"]


def test_failures_carry_their_error_class_and_skip_exactly_the_descendants(stores: Stores) -> None:
    project = stores.project(CHAIN)
    result = stores.run(project, ScriptedExecutor(stores.artifacts, {"a": ["fail"]}))
    assert result.status == "failed" and result["a"].error_class is StepFailed
    assert result["a"].to_dict()["error_class"] == "StepFailed"
    assert [(s.status, s.reason) for s in result.steps[1:]] == [("skipped", "upstream failed: a")] * 2
    assert result["b"].error_class is None


@pytest.mark.parametrize(("what", "error_class"), [("timeout", StepTimeout), ("crash", StepCrashed)])
def test_an_attempt_that_returns_nothing_fails_with_its_class(
    stores: Stores, what: str, error_class: type[Exception]
) -> None:
    project = stores.project(CHAIN)
    result = stores.run(project, ScriptedExecutor(stores.artifacts, {"a": [what] * 3}))
    assert result["a"].status == "failed" and result["a"].attempts == 3  # both are retryable
    assert result["a"].error_class is error_class
    assert result["a"].error is not None and result["a"].error.startswith(error_class.__name__)


WIDE = """
    from cairn import asset, Resources

    @asset(resources=Resources(cpu=1))
    def w1():
        return 1

    @asset(resources=Resources(cpu=1))
    def w2():
        return 2

    @asset(resources=Resources(cpu=1))
    def w3():
        return 3

    @asset(resources=Resources(cpu=1))
    def w4():
        return 4
    """


def test_admission_starts_no_more_than_the_cpus_allow(stores: Stores) -> None:
    executor = ScriptedExecutor(stores.artifacts, cpu=2)
    result = stores.run(stores.project(WIDE), executor)
    assert result.ok and len(executor.jobs) == 4 and executor.most_at_once == 2


def test_a_step_asking_for_every_cpu_runs_alone(stores: Stores) -> None:
    executor = ScriptedExecutor(stores.artifacts, cpu=2)
    big = WIDE.replace(
        "@asset(resources=Resources(cpu=1))\n    def w4", "@asset(resources=Resources(cpu=8))\n    def w4"
    )
    result = stores.run(stores.project(big), executor)
    assert result.ok and executor.most_at_once == 2
    alone = ScriptedExecutor(stores.artifacts, cpu=2)
    stores.run(stores.project(big), alone, selection=("w4",), force=True)
    assert alone.most_at_once == 1


BREAKER = """
    from cairn import asset, Resources

    @asset(uses=["warehouse"])
    def q1():
        return 1

    @asset(uses=["warehouse"])
    def q2():
        return 2

    @asset(uses=["warehouse"])
    def q3():
        return 3
    """


def test_an_open_breaker_fails_the_held_steps_with_circuit_open(stores: Stores) -> None:
    project = stores.project(BREAKER, "\n[circuit_breakers]\nwarehouse = { failures = 1, cooldown = 0.05 }\n")
    executor = ScriptedExecutor(stores.artifacts, {"q1": ["fail"], "q2": ["fail"], "q3": ["fail"]}, cpu=1)
    result = stores.run(project, executor)
    classes = {s.asset: s.error_class for s in result.steps}
    assert len(executor.jobs) == 2  # the first failure opens it; one trial after the cooldown fails too
    assert sorted(c.__name__ for c in classes.values() if c is not None) == ["CircuitOpen", "StepFailed", "StepFailed"]
    opened = next(s for s in result.steps if s.error_class is CircuitOpen)
    assert opened.reason == "circuit open" and opened.attempts == 0


SOURCES = """
    from cairn import asset, source, daily

    raw = source("raw", path="data/{partition}.csv", partitions=daily(start="2026-06-01", end="2026-06-03"))
    config = source("config", path="config.csv")

    @asset(partitions=daily(start="2026-06-01", end="2026-06-03"))
    def clean(raw):
        return raw

    @asset
    def settings(config):
        return config
    """


def test_the_plan_says_what_the_run_does_for_missing_sources(stores: Stores) -> None:
    project = stores.project(SOURCES)
    (stores.root / "data").mkdir()
    for day in ("01", "03"):
        (stores.root / "data" / f"2026-06-{day}.csv").write_text("x\n1\n", encoding="utf-8")
    history = StoreHistory(stores.meta, stores.artifacts)
    table = prepare(project, RunOptions(), stores.meta, history, datetime.now(UTC))
    planned = {str(d.step): (d.action, str(d.reason)) for d in table.plan(history).steps}
    result = stores.run(project, ScriptedExecutor(stores.artifacts))
    run = {f"{s.asset}@{s.partition}" if s.partition else s.asset: (s.status, s.reason) for s in result.steps}
    assert planned["raw@2026-06-02"] == ("skip", run["raw@2026-06-02"][1]) and run["raw@2026-06-02"][0] == "skipped"
    assert (
        planned["clean@2026-06-02"]
        == ("skip", "upstream not ready: raw@2026-06-02")
        == ("skip", run["clean@2026-06-02"][1])
    )
    assert planned["config"][0] == "fail" and run["config"] == ("failed", "source missing")
    assert planned["settings"] == ("skip", "upstream failed: config") == ("skip", run["settings"][1])
    assert result["config"].error_class is SourceMissing
    assert {k for k, (action, _) in planned.items() if action == "run"} == {
        k for k, (status, _) in run.items() if status == "executed"
    }
