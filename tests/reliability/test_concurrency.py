"""Concurrent engines, retries, timeouts, crashed workers, fail-fast, circuit breakers and pools.

Every asset function logs what it does to ``executions.log`` in its project folder (one ``os.write`` per line
with O_APPEND, so lines from concurrent workers never interleave)::

    <asset> <run_id> start|end <time.time()>

so that the tests know what really ran, independently of what the engine reports.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cairn
from cairn.config import load_settings
from cairn.engine.results import RunResult
from cairn.storage.metadata import open_metadata

PRELUDE = '''\
"""A test pipeline; every function logs its start (and end) to executions.log."""

import os
import signal
import time

import cairn

HERE = os.path.dirname(os.path.abspath(__file__))


def log(asset, run_id, what):
    fd = os.open(os.path.join(HERE, "executions.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{asset} {run_id} {what} {time.time():.6f}\\n".encode())
    finally:
        os.close(fd)


def calls(asset):
    """Count this call in a per-asset file and return how many calls there were, this one included."""
    fd = os.open(os.path.join(HERE, f"calls-{asset}.txt"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)
    return os.path.getsize(os.path.join(HERE, f"calls-{asset}.txt"))

'''


def make_project(
    root: Path,
    body: str,
    extra: str = "",
    workers: int = 2,
    engine: str = "",
    start: str | None = None,
    database: str = "sqlite:///.cairn/cairn.db",
) -> tuple[Path, str]:
    """Write a project with a process executor; the module gets a unique name, so in-process runs of
    several projects never share a module. Returns ``(folder, module name)``."""
    module = f"pipe_{uuid.uuid4().hex[:10]}"
    root.mkdir(parents=True, exist_ok=True)
    config = f"""\
        [project]
        name = "reliability"
        modules = ["{module}"]
        seed = 5

        [storage]
        artifacts = ".cairn/artifacts"
        database = "{database}"

        [executor]
        kind = "process"
        workers = {workers}
        {f'start = "{start}"' if start else ""}

        [defaults]
        retry = {{ max_attempts = 1 }}

        [engine]
        heartbeat_s = 0.2
        """
    text = textwrap.dedent(config) + textwrap.dedent(engine) + textwrap.dedent(extra)
    (root / "cairn.toml").write_text(text, encoding="utf-8")
    path = root / f"{module}.py"
    path.write_text(PRELUDE + textwrap.dedent(body), encoding="utf-8")
    return root, module


@pytest.fixture
def forget_modules() -> Iterator[list[tuple[Path, str]]]:
    """Projects registered here are removed from sys.modules and sys.path after the test."""
    made: list[tuple[Path, str]] = []
    yield made
    for root, module in made:
        sys.modules.pop(module, None)
        while str(root) in sys.path:
            sys.path.remove(str(root))


@pytest.fixture
def project(tmp_path: Path, forget_modules: list[tuple[Path, str]]) -> Any:
    def make(body: str, extra: str = "", workers: int = 2, start: str | None = None) -> Path:
        made = make_project(tmp_path / "proj", body, extra, workers, start=start)
        forget_modules.append(made)
        return made[0]

    return make


def executions(root: Path) -> list[tuple[str, str, str, float]]:
    """``(asset, run_id, start|end, time)`` for every line of the execution log."""
    log = root / "executions.log"
    if not log.exists():
        return []
    out = []
    for line in log.read_text(encoding="utf-8").splitlines():
        asset, run_id, what, when = line.split()
        out.append((asset, run_id, what, float(when)))
    return out


def started(root: Path) -> Counter[str]:
    return Counter(asset for asset, _, what, _ in executions(root) if what == "start")


def query(root: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a read on the project's metadata database (SQLite or PostgreSQL), with ``?`` placeholders."""
    with open_metadata(load_settings(root).database, root) as store:
        return [tuple(row) for row in store._rows("test query", sql, params)]


def materialize(root: Path, **options: Any) -> RunResult:
    return cairn.materialize(project=root, **options)


def statuses(result: RunResult) -> dict[str, str]:
    return {s.asset: s.status for s in result.steps}


# ---- concurrent engines ------------------------------------------------------------------------

SLOW_DAG = """
@cairn.asset
def s0(ctx):
    log("s0", ctx.run_id, "start")
    time.sleep(0.3)
    return {"v": 1}


@cairn.asset
def s1(ctx):
    log("s1", ctx.run_id, "start")
    time.sleep(0.3)
    return {"v": 2}


@cairn.asset
def s2(ctx):
    log("s2", ctx.run_id, "start")
    time.sleep(0.3)
    return {"v": 3}


@cairn.asset
def m0(ctx, s0, s1):
    log("m0", ctx.run_id, "start")
    time.sleep(0.3)
    return {"v": s0["v"] + s1["v"]}


@cairn.asset
def m1(ctx, s1, s2):
    log("m1", ctx.run_id, "start")
    time.sleep(0.3)
    return {"v": s1["v"] * s2["v"]}


@cairn.asset
def top(ctx, m0, m1):
    log("top", ctx.run_id, "start")
    time.sleep(0.3)
    return {"v": m0["v"] - m1["v"]}


@cairn.asset
def solo(ctx):
    log("solo", ctx.run_id, "start")
    time.sleep(0.3)
    return {"v": 0}
"""
SLOW_ASSETS = {"s0", "s1", "s2", "m0", "m1", "top", "solo"}


def start_engine(root: Path, *selection: str) -> subprocess.Popen[str]:
    """``cairn run --json [SELECTION]`` in a new process group (so that a test can kill it with its workers)."""
    return subprocess.Popen(
        [sys.executable, "-m", "cairn.cli.main", "-C", str(root), "run", "--json", *selection],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill an engine's whole process group if it is still running, and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


@pytest.mark.parametrize("engines", [2, 3])
def test_concurrent_engines_compute_each_cache_key_once_and_all_succeed(tmp_path: Path, engines: int) -> None:
    root, _ = make_project(tmp_path / "proj", SLOW_DAG)
    procs = [start_engine(root) for _ in range(engines)]
    try:
        outputs = [proc.communicate(timeout=180) for proc in procs]
    finally:
        for proc in procs:
            stop(proc)
    results = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert [r["status"] for r in results] == ["succeeded"] * engines
    for r in results:
        assert {s["asset"]: s["status"] in ("executed", "cached") for s in r["steps"]} == dict.fromkeys(
            SLOW_ASSETS, True
        )

    # Each asset ran once in total, and exactly one run reports executing it.
    assert started(root) == Counter(dict.fromkeys(SLOW_ASSETS, 1))
    executed = Counter(s["asset"] for r in results for s in r["steps"] if s["status"] == "executed")
    assert executed == Counter(dict.fromkeys(SLOW_ASSETS, 1))

    # Each cache key was materialized exactly once, and every run agrees on keys and data versions.
    rows = query(root, "SELECT cache_key, COUNT(*) FROM materializations GROUP BY cache_key")
    assert len(rows) == len(SLOW_ASSETS)
    assert [n for _, n in rows] == [1] * len(SLOW_ASSETS)
    seen = {tuple(sorted((s["asset"], s["cache_key"], s["data_version"]) for s in r["steps"])) for r in results}
    assert len(seen) == 1
    runs = query(root, "SELECT run_id, status FROM runs")
    assert sorted(status for _, status in runs) == ["succeeded"] * engines
    assert cairn.load("top", project=root) == {"v": 3 - 6}


STALL = """
@cairn.asset
def x(ctx):
    log("x", ctx.run_id, "start")
    time.sleep(1.0)
    return {"v": 1}


@cairn.asset
def y(ctx, x):
    log("y", ctx.run_id, "start")
    return {"v": x["v"] + 1}
"""
STALL_ENGINE = """
lease_ttl_s = 2
stale_after_s = 1
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stalled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Engine A is frozen (SIGSTOP) while it runs `x`, past its lease and heartbeat; engine B then runs the
    same selection to completion; then A is resumed and finishes. Returns what each reported.

    Runs on an SQLite file, then on a PostgreSQL database: leases expire on the database's clock either way."""
    if request.param == "sqlite":
        yield run_stalled(tmp_path_factory.mktemp("stall"), "sqlite:///.cairn/cairn.db")
        return
    databases = request.getfixturevalue("postgres_databases")
    url = databases.create()
    try:
        yield run_stalled(tmp_path_factory.mktemp("stall"), url)
    finally:
        databases.drop(url)


def run_stalled(folder: Path, database: str) -> dict[str, Any]:
    root, _ = make_project(folder / "proj", STALL, engine=STALL_ENGINE, database=database)
    first = start_engine(root)
    try:
        deadline = time.monotonic() + 60
        while not started(root) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started(root) == Counter({"x": 1}), "engine A did not start x"
        os.killpg(first.pid, signal.SIGSTOP)
        time.sleep(2.5)  # past the lease's 2 s and the 1 s stale period
        second = subprocess.run(
            [sys.executable, "-m", "cairn.cli.main", "-C", str(root), "run", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        os.killpg(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGCONT)
        stop(first)
    return {
        "root": root,
        "first": (first.returncode, out, err),
        "second": (second.returncode, second.stdout, second.stderr),
    }


def test_a_stalled_engine_that_lost_its_lease_cannot_commit(stalled: dict[str, Any]) -> None:
    """Fencing: the engine that took over computes `x`; the late result of the stalled one is rejected."""
    root = stalled["root"]
    code, out, err = stalled["second"]
    assert code == 0, err
    second = json.loads(out)
    assert second["status"] == "succeeded"
    assert {s["asset"]: s["status"] for s in second["steps"]} == {"x": "executed", "y": "executed"}
    rows = query(root, "SELECT asset, run_id FROM materializations ORDER BY asset")
    assert rows == [("x", second["run_id"]), ("y", second["run_id"])]
    assert [(a, what) for a, _, what, _ in executions(root)] == [("x", "start"), ("x", "start"), ("y", "start")]


def test_a_stalled_engine_that_lost_its_lease_reuses_the_result_of_the_engine_that_took_over(
    stalled: dict[str, Any],
) -> None:
    """After its commit is rejected, the stalled run finds `x` committed by the other run: it reuses it
    (as it does when it waits on a live lease) instead of failing `x` and skipping `y`."""
    code, out, err = stalled["first"]
    first = json.loads(out)
    assert {s["asset"]: s["status"] for s in first["steps"]} == {"x": "cached", "y": "cached"}, first
    assert (code, first["status"]) == (0, "succeeded"), err


# ---- retries, fatal errors, timeouts, crashed workers ------------------------------------------


def test_a_flaky_asset_is_retried_until_it_succeeds(project: Any) -> None:
    root = project(
        """
        @cairn.asset(retry=cairn.Retry(max_attempts=3, backoff=0.01))
        def flaky(ctx):
            n = calls("flaky")
            log("flaky", ctx.run_id, "start")
            if n < 3:
                raise RuntimeError(f"transient failure {n}")
            return {"calls": n, "attempt": ctx.attempt}


        @cairn.asset
        def after(flaky):
            return {"seen": flaky["calls"]}
        """
    )
    result = materialize(root)
    assert result.status == "succeeded"
    assert (result["flaky"].status, result["flaky"].attempts) == ("executed", 3)
    assert result["after"].status == "executed"
    assert cairn.load("flaky", project=root) == {"calls": 3, "attempt": 3}
    attempts = query(
        root,
        "SELECT attempt, status, error FROM attempts WHERE run_id = ? AND asset = 'flaky' ORDER BY attempt",
        (result.run_id,),
    )
    assert [(n, status) for n, status, _ in attempts] == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert "transient failure 1" in attempts[0][2] and "transient failure 2" in attempts[1][2]


def test_an_asset_raising_fatal_fails_after_one_attempt_despite_its_retry_policy(project: Any) -> None:
    root = project(
        """
        @cairn.asset(retry=cairn.Retry(max_attempts=3, backoff=0.01))
        def doomed(ctx):
            calls("doomed")
            raise cairn.Fatal("the input is malformed; retrying cannot help")


        @cairn.asset
        def below(doomed):
            return 1


        @cairn.asset
        def other():
            return 2
        """
    )
    result = materialize(root)
    assert result.status == "failed"
    assert statuses(result) == {"doomed": "failed", "below": "skipped", "other": "executed"}
    assert result["doomed"].attempts == 1
    assert "Fatal" in (result["doomed"].error or "") and "malformed" in (result["doomed"].error or "")
    assert (root / "calls-doomed.txt").read_bytes() == b"x"


def test_a_step_past_its_timeout_is_stopped_on_every_attempt(project: Any) -> None:
    root = project(
        """
        @cairn.asset(timeout=0.5, retry=cairn.Retry(max_attempts=2, backoff=0.01))
        def sleepy(ctx):
            log("sleepy", ctx.run_id, "start")
            time.sleep(10)
            log("sleepy", ctx.run_id, "end")
            return 1


        @cairn.asset
        def quick():
            return 2
        """
    )
    began = time.monotonic()
    result = materialize(root)
    elapsed = time.monotonic() - began
    assert elapsed < 10, f"a single uninterrupted attempt takes 10 s; the run took {elapsed:.1f} s"
    assert result.status == "failed"
    assert statuses(result) == {"sleepy": "failed", "quick": "executed"}
    assert result["sleepy"].attempts == 2
    assert "StepTimeout" in (result["sleepy"].error or "")
    # Each attempt was killed: none reached the end of the function. (An attempt may be cut before its
    # function even starts, because the deadline includes the start-up of a fresh worker; see below.)
    logged = [what for asset, _, what, _ in executions(root) if asset == "sleepy"]
    assert 1 <= len(logged) <= 2 and set(logged) == {"start"}, logged


def test_a_step_that_swallows_exceptions_is_still_stopped_at_its_timeout(project: Any) -> None:
    """ "A timeout kills the attempt" (DESIGN §4): also one whose code catches every exception (or sits in
    native code that never returns to the interpreter), so interrupting it from inside is not enough."""
    root = project(
        """
        @cairn.asset(timeout=0.5)
        def stubborn(ctx):
            log("stubborn", ctx.run_id, "start")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    time.sleep(0.05)
                except Exception:
                    pass
            return 1
        """
    )
    began = time.monotonic()
    result = materialize(root)
    elapsed = time.monotonic() - began
    assert result["stubborn"].status == "failed"
    assert "StepTimeout" in (result["stubborn"].error or "")
    assert elapsed < 15, f"the attempt with a 0.5 s timeout ran for {elapsed:.1f} s"


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_step_that_finishes_well_within_its_timeout_is_not_timed_out_on_a_fresh_worker(
    project: Any, start: str
) -> None:
    """The timeout bounds the attempt's own run time, not the start-up of the worker process it lands on.

    Workers are started on demand; a spawned one is a new interpreter that imports cairn and the project's
    modules. The module here takes 1 s to import, as one that imports torch or pandas does; a step that
    needs a few milliseconds must not fail its 0.5 s timeout because of that.
    """
    root = project(
        """
        time.sleep(1.0)  # stands in for heavy imports at the top of a pipeline module


        @cairn.asset(timeout=0.5)
        def fast(ctx):
            log("fast", ctx.run_id, "start")
            return 1
        """,
        workers=1,
        start=start,
    )
    result = materialize(root)
    assert (result["fast"].status, result["fast"].error) == ("executed", None)
    assert started(root) == Counter({"fast": 1})


def test_a_timed_out_thread_does_not_make_the_next_step_time_out_while_it_waits_for_a_thread(
    project: Any,
) -> None:
    """Threads cannot be killed: a timed-out step's thread runs on. The next step must not be charged for
    waiting until a thread is free: its timeout bounds its own run."""
    root = project(
        """
        @cairn.asset(timeout=0.5)
        def z_slow(ctx):
            time.sleep(2.0)
            return 1


        @cairn.asset
        def z_child(z_slow):
            return z_slow


        @cairn.asset(timeout=1.0)
        def a_fast(ctx):
            log("a_fast", ctx.run_id, "start")
            return 2
        """
    )
    try:
        # z_slow heads the longer chain, so it starts first; a_fast waits for the only thread.
        result = materialize(root, executor="thread", workers=1)
    finally:
        for thread in threading.enumerate():
            if thread.name.startswith("cairn-step"):
                thread.join(timeout=10)
    assert result["z_slow"].status == "failed" and "StepTimeout" in (result["z_slow"].error or "")
    assert (result["a_fast"].status, result["a_fast"].error) == ("executed", None)


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_a_timed_out_attempt_records_how_long_it_ran(project: Any, executor: str) -> None:
    """The recorded duration of an attempt stopped at its timeout is the time it ran, never 0: both for one
    interrupted from inside (``sleepy``) and one the executor had to give up on (``stubborn``)."""
    root = project(
        """
        @cairn.asset(timeout=0.5)
        def sleepy(ctx):
            time.sleep(3)
            return 1


        @cairn.asset(timeout=0.5)
        def stubborn(ctx):
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                try:
                    time.sleep(0.05)
                except Exception:
                    pass
            return 1
        """
    )
    try:
        result = materialize(root, executor=executor)
    finally:
        for thread in threading.enumerate():
            if thread.name.startswith("cairn-step"):
                thread.join(timeout=10)
    for name in ("sleepy", "stubborn"):
        step = result[name]
        assert step.status == "failed" and "StepTimeout" in (step.error or ""), step
        assert step.duration_s is not None and step.duration_s >= 0.5, step
    recorded = query(root, "SELECT asset, duration_s FROM steps WHERE run_id = ?", (result.run_id,))
    assert all(duration >= 0.5 for _, duration in recorded), recorded


def test_a_step_asking_for_more_memory_than_the_machine_has_runs_alone(project: Any) -> None:
    """Like a step asking for more CPUs than there are, one asking for more memory than the machine has
    holds all of it while it runs: nothing starts beside it, and it starts only when nothing else runs."""
    body = """
        @cairn.asset(resources=cairn.Resources(memory_mb=10**9))
        def huge(ctx):
            log("huge", ctx.run_id, "start")
            time.sleep(0.4)
            log("huge", ctx.run_id, "end")
            return 0
        """ + "".join(
        f"""

        @cairn.asset
        def small{k}(ctx):
            log("small{k}", ctx.run_id, "start")
            time.sleep(0.2)
            log("small{k}", ctx.run_id, "end")
            return {k}
        """
        for k in range(3)
    )
    root = project(body, workers=2)
    assert materialize(root).ok
    spans: dict[str, list[float]] = {}
    for asset, _, _, when in executions(root):
        spans.setdefault(asset, []).append(when)
    begin, end = spans.pop("huge")
    assert len(spans) == 3
    for name, (s, e) in spans.items():
        assert e <= begin or s >= end, f"{name} ran {s:.3f}-{e:.3f}, beside huge {begin:.3f}-{end:.3f}"


def test_a_checkpoint_survives_an_attempt_whose_commit_was_lost(project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint is cleared only once the step's result is committed: an attempt that finished but
    lost its lease before the commit leaves its saved state to the next attempt."""
    from cairn.storage.metadata import MetadataStore

    root = project(
        """
        @cairn.asset(retry=cairn.Retry(max_attempts=2, backoff=0.01))
        def long_step(ctx):
            state = ctx.checkpoint.load(None)
            if state is None:
                ctx.checkpoint.save("halfway")
                return "from scratch"
            return f"resumed from {state}"
        """
    )
    commit = MetadataStore.commit_materializations
    lost: list[str] = []

    def lose_the_first(self: MetadataStore, commits: Any) -> Any:
        if not lost:
            lost.append("once")
            return [None] * len(commits)  # as the store answers when another engine took the lease over
        return commit(self, commits)

    monkeypatch.setattr(MetadataStore, "commit_materializations", lose_the_first)
    result = materialize(root)
    assert lost and result["long_step"].attempts == 2, result
    assert cairn.load("long_step", project=root) == "resumed from halfway"
    assert not list((root / ".cairn" / "checkpoints").glob("*")), "the committed step's checkpoint remains"


def test_a_worker_that_dies_is_reported_as_crashed_and_independent_branches_finish(project: Any) -> None:
    root = project(
        """
        @cairn.asset
        def dies(ctx):
            log("dies", ctx.run_id, "start")
            os.kill(os.getpid(), signal.SIGKILL)


        @cairn.asset
        def after_death(dies):
            return 1


        @cairn.asset
        def left(ctx):
            time.sleep(0.2)
            return 1


        @cairn.asset
        def right(ctx, left):
            time.sleep(0.2)
            return left + 1


        @cairn.asset
        def exits(ctx):
            os._exit(3)
        """
    )
    result = materialize(root)
    assert result.status == "failed"
    assert statuses(result) == {
        "dies": "failed",
        "after_death": "skipped",
        "exits": "failed",
        "left": "executed",
        "right": "executed",
    }
    assert "StepCrashed" in (result["dies"].error or "")
    assert "signal 9" in (result["dies"].error or "")
    assert "StepCrashed" in (result["exits"].error or "")
    assert "code 3" in (result["exits"].error or "")
    assert cairn.load("right", project=root) == 2


def test_fail_fast_skips_independent_steps_that_have_not_started(project: Any) -> None:
    # `boom` heads the longest chain, so it is started first; with one worker nothing else runs beside it.
    body = """
        @cairn.asset
        def boom(ctx):
            log("boom", ctx.run_id, "start")
            raise RuntimeError("boom")


        @cairn.asset
        def c1(boom):
            return 1


        @cairn.asset
        def c2(c1):
            return 2


        @cairn.asset
        def c3(c2):
            return 3
        """ + "".join(
        f"""

        @cairn.asset
        def i{k}(ctx):
            log("i{k}", ctx.run_id, "start")
            time.sleep(0.05)
            return {k}
        """
        for k in range(4)
    )
    root = project(body, workers=1)
    independents = {f"i{k}" for k in range(4)}

    result = materialize(root, fail_fast=True)
    assert result.status == "failed"
    assert result["boom"].status == "failed"
    assert {result[c].status for c in ("c1", "c2", "c3")} == {"skipped"}
    skipped = {name for name in independents if result[name].status == "skipped"}
    assert skipped, statuses(result)
    assert all("fail-fast" in result[name].reason for name in skipped), [result[n].reason for n in skipped]
    assert not skipped & set(started(root)), "a step reported skipped had run"

    # Without --fail-fast the same failure leaves the independent branches running.
    again = materialize(root)
    assert again.status == "failed"
    assert {again[name].status for name in independents} <= {"executed", "cached"}
    assert {again[name].status for name in skipped} == {"executed"}


# ---- circuit breakers and pools ----------------------------------------------------------------

WAREHOUSE = "\n".join(
    f"""

@cairn.asset(uses=["warehouse"])
def w{k}(ctx):
    log("w{k}", ctx.run_id, "start")
    if calls("warehouse") <= FAILING_CALLS:
        raise ConnectionError("warehouse unreachable")
    return {k}
"""
    for k in range(5)
)
BREAKER = """
    [circuit_breakers]
    warehouse = { failures = 2, cooldown = 0.5 }
    """


def test_a_circuit_breaker_opens_after_repeated_failures_and_a_failed_trial_fails_the_rest(project: Any) -> None:
    root = project(
        "FAILING_CALLS = 1000\n"
        + WAREHOUSE
        + """

@cairn.asset
def unrelated():
    return 0
""",
        BREAKER,
        workers=1,
    )
    result = materialize(root)
    assert result.status == "failed"
    warehouse = [f"w{k}" for k in range(5)]
    assert {result[w].status for w in warehouse} == {"failed"}
    assert result["unrelated"].status == "executed"

    ran = [(asset, when) for asset, _, what, when in executions(root) if what == "start"]
    assert len(ran) == 3, f"two failures open the breaker, then one trial runs: {ran}"
    circuit_open = {w for w in warehouse if "CircuitOpen" in (result[w].error or "")}
    assert circuit_open == set(warehouse) - {asset for asset, _ in ran}
    assert len(circuit_open) == 2
    assert all(result[w].attempts == 0 for w in circuit_open)
    assert all("warehouse unreachable" in (result[asset].error or "") for asset, _ in ran)
    # The trial waited for the cool-down that began when the second failure was recorded.
    assert ran[2][1] - ran[1][1] >= 0.5


def test_a_circuit_breaker_closes_again_when_the_trial_succeeds(project: Any) -> None:
    root = project("FAILING_CALLS = 2\n" + WAREHOUSE, BREAKER, workers=1)
    result = materialize(root)
    assert result.status == "failed"
    outcomes = Counter(s.status for s in result.steps)
    assert outcomes == Counter({"failed": 2, "executed": 3})
    assert not any("CircuitOpen" in (s.error or "") for s in result.steps)
    starts = [when for _, _, what, when in executions(root) if what == "start"]
    assert len(starts) == 5
    assert starts[2] - starts[1] >= 0.5, "the trial waited for the cool-down"


def pooled_assets(count: int, seconds: float) -> str:
    """Assets q0 … q{count-1} in pool "db", each logging its start and end around a sleep of `seconds`."""
    return "".join(
        f"""

@cairn.asset(pool="db")
def q{k}(ctx):
    log("q{k}", ctx.run_id, "start")
    time.sleep({seconds})
    log("q{k}", ctx.run_id, "end")
    return {k}
"""
        for k in range(count)
    )


def test_steps_of_a_one_slot_pool_never_overlap(project: Any) -> None:
    root = project(
        pooled_assets(4, 0.2),
        """
    [pools]
    db = 1
    """,
        workers=2,
    )
    result = materialize(root)
    assert result.status == "succeeded"
    assert result.count("executed") == 4
    spans: dict[str, list[float]] = {}
    for asset, _, _, when in executions(root):
        spans.setdefault(asset, []).append(when)
    intervals = sorted((start, end) for start, end in spans.values())
    assert len(intervals) == 4
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert start >= end, f"pool steps overlapped: {intervals}"
