"""The dask and ray executors: the same results as the process executor, lost workers, timeouts, resources.

Ray starts in several seconds, so one local Ray (2 CPUs) serves the whole module (`ray_local`); a run finds
it initialized and leaves it running. Dask is tried both ways: a `LocalCluster` the executor starts for one
run (no `[executor] address`), and one long-lived cluster reached by its address (`dask_address`), whose
scheduler keeps Dask's default of re-running the tasks of lost workers.

Asset functions log what they do to files in their project folder (one ``os.write`` with O_APPEND per line),
so the tests know what really ran, in which process, independently of what the engine reports.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

import cairn
from cairn.engine.results import RunResult
from cairn.errors import ConfigError
from cairn.executors.base import Capacity
from cairn.executors.factory import create_executor
from tests.conftest import cli
from tests.integration.test_properties import (
    PROPERTY_SETTINGS,
    Dag,
    assert_values,
    changed_inputs,
    changes,
    dags,
    descendants,
    evaluate,
    expect,
    failures,
    project,
    render,
    statuses,
    with_node,
    write_module,
)

distributed = pytest.importorskip("distributed")
ray = pytest.importorskip("ray")


# ---- clusters ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """One local Ray with 2 CPUs for the module; every run of the ray executor uses it."""
    from cairn.executors.ray import start_local_ray

    if ray.is_initialized():
        ray.shutdown()
    start_local_ray(2)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """A long-lived cluster of 2 single-threaded worker processes, with Dask's default scheduler settings."""
    cluster = local_cluster(threads_per_worker=1)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def local_cluster(**options: Any) -> Any:
    """A LocalCluster of 2 worker processes, as a user would start one (no dashboard, any free ports)."""
    return distributed.LocalCluster(
        n_workers=2,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},
        silence_logs=logging.CRITICAL,
        **options,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- projects ----------------------------------------------------------------------------------

PRELUDE = '''\
"""A test pipeline; its functions log what they do, with their process id, to files beside this module."""

import os
import sys
import time

import cairn

HERE = os.path.dirname(os.path.abspath(__file__))


def log(name, text):
    fd = os.open(os.path.join(HERE, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{text}\\n".encode())
    finally:
        os.close(fd)


def lines(name):
    path = os.path.join(HERE, name)
    return open(path).read().splitlines() if os.path.exists(path) else []

'''


def write_project(root: Path, body: str, executor: str, extra: str = "", retry: int = 1) -> Path:
    """A project whose module (named uniquely, as workers are shared between tests) is PRELUDE + body."""
    module = f"dist_{uuid.uuid4().hex[:10]}"
    root.mkdir(parents=True, exist_ok=True)
    config = f"""\
        [project]
        name = "distributed"
        modules = ["{module}"]
        seed = 9

        [executor]
        kind = "{executor}"
        workers = 2
        {extra}

        [defaults]
        retry = {{ max_attempts = {retry}, backoff = 0.05 }}
        """
    (root / "cairn.toml").write_text(textwrap.dedent(config), encoding="utf-8")
    write_module(root, module, PRELUDE + textwrap.dedent(body))
    return root


@pytest.fixture
def forget_modules() -> Iterator[None]:
    """Drop the modules and path entries this test's projects added to the test process."""
    before_modules, before_path = set(sys.modules), list(sys.path)
    yield
    for name in set(sys.modules) - before_modules:
        if name.startswith("dist_"):
            del sys.modules[name]
    sys.path[:] = before_path


def attempts(root: Path, run_id: str, asset: str) -> list[tuple[int, str, str | None]]:
    with contextlib.closing(sqlite3.connect(root / ".cairn" / "cairn.db")) as conn:
        rows = conn.execute(
            "SELECT attempt, status, error FROM attempts WHERE run_id = ? AND asset = ? ORDER BY attempt",
            (run_id, asset),
        ).fetchall()
    return [(int(n), str(status), error) for n, status, error in rows]


def materializations(root: Path, asset: str) -> list[tuple[str, int, str]]:
    with contextlib.closing(sqlite3.connect(root / ".cairn" / "cairn.db")) as conn:
        rows = conn.execute(
            "SELECT run_id, attempt, data_version FROM materializations WHERE asset = ?", (asset,)
        ).fetchall()
    return [(str(r), int(a), str(d)) for r, a, d in rows]


def stored_objects(root: Path) -> set[str]:
    objects = root / ".cairn" / "artifacts" / "objects"
    return {path.parent.name + path.name for path in objects.glob("*/*") if path.is_file()}


def referenced_objects(root: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(root / ".cairn" / "cairn.db")) as conn:
        versions = [str(row[0]) for row in conn.execute("SELECT data_version FROM materializations")]
    return {version.split(":", 1)[1] for version in versions}


def wait_for_line(path: Path, count: int = 1, timeout: float = 60.0) -> list[str]:
    """The lines of a log file once it has at least `count` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{path.name} did not get {count} line(s) within {timeout} s")


def materialize_while(root: Path, action: Any, **options: Any) -> RunResult:
    """Run the project with `action` running beside it on a thread (it waits for a step to signal)."""
    failures: list[BaseException] = []

    def side() -> None:
        try:
            action()
        except BaseException as exc:
            failures.append(exc)

    helper = threading.Thread(target=side, daemon=True)
    helper.start()
    result = cairn.materialize(project=root, **options)
    helper.join(timeout=60)
    if failures:
        raise failures[0]
    return result


# ---- the property tests of the core, on dask and ray ---------------------------------------------


@settings(PROPERTY_SETTINGS, max_examples=4)
@given(dags(max_nodes=8))
def test_dask_and_ray_store_the_same_data_versions_as_the_process_executor(ray_local: None, dag: Dag) -> None:
    """Separate folders with the same pipeline text: process workers (spawned), a LocalCluster the dask
    executor starts for the run, and the module's local Ray."""
    text = render(dag)
    versions = {}
    for executor in ("process", "dask", "ray"):
        with project(text, executor=executor, start="spawn") as (root, _):
            result = cairn.materialize(project=root)
            assert result.status == "succeeded", (executor, [s.error for s in result.steps if s.error])
            assert statuses(result) == expect(dag, "executed")
            versions[executor] = {s.asset: s.data_version for s in result.steps}
            assert_values(root, evaluate(dag))
    assert versions["dask"] == versions["process"]
    assert versions["ray"] == versions["process"]


CLUSTERS = ("dask", "ray")


def cluster(kind: str, request: pytest.FixtureRequest) -> str | None:
    """Bring up the session's cluster of this kind: the Dask scheduler's address, or None for the local Ray."""
    if kind == "dask":
        return str(request.getfixturevalue("dask_address"))
    request.getfixturevalue("ray_local")
    return None


@pytest.mark.slow
@pytest.mark.parametrize("kind", CLUSTERS)
def test_a_change_on_a_long_lived_cluster_executes_exactly_the_changed_asset_and_affected_descendants(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """Early cutoff and caching, with workers that outlive runs (they must run each run's code)."""
    address = cluster(kind, request)

    @settings(PROPERTY_SETTINGS, max_examples=6)
    @given(changes())
    def check(change: tuple[Dag, int, str, int]) -> None:
        dag, index, what, delta = change
        node = dag[index]
        changed = with_node(dag, index, **{what: getattr(node, what) + delta})
        before, after = evaluate(dag), evaluate(changed)
        expected_runs = {node.name} | changed_inputs(dag, before, after)
        overrides = {node.name: {"p": changed[index].param}} if what == "param" else {}
        with project(render(dag), executor=kind, address=address) as (root, module):
            assert cairn.materialize(project=root).status == "succeeded"
            if what != "param":
                write_module(root, module, render(changed))
            result = cairn.materialize(project=root, params=overrides)
            assert result.status == "succeeded"
            assert statuses(result) == expect(dag, "cached", executed=expected_runs)
            assert_values(root, after)

    check()


@pytest.mark.slow
@pytest.mark.parametrize("kind", CLUSTERS)
def test_a_failing_asset_on_a_cluster_fails_alone_and_a_fixed_rerun_runs_only_it_and_its_descendants(
    kind: str, request: pytest.FixtureRequest
) -> None:
    address = cluster(kind, request)

    @settings(PROPERTY_SETTINGS, max_examples=6)
    @given(failures())
    def check(case: tuple[Dag, int]) -> None:
        dag, index = case
        bad = dag[index].name
        below = descendants(dag, bad)
        with project(render(with_node(dag, index, fails=True)), executor=kind, address=address) as (root, module):
            broken = cairn.materialize(project=root)
            assert broken.status == "failed"
            assert statuses(broken) == expect(dag, "executed", failed={bad}, skipped=below)
            assert f"injected failure in {bad}" in (broken[bad].error or "")
            write_module(root, module, render(dag))
            fixed = cairn.materialize(project=root)
            assert fixed.status == "succeeded"
            assert statuses(fixed) == expect(dag, "cached", executed={bad} | below)
            assert_values(root, evaluate(dag))

    check()


# ---- workers lost in the middle of a step --------------------------------------------------------

VICTIM = """
@cairn.asset(retry=cairn.Retry(max_attempts=2, backoff=0.05))
def victim(ctx):
    log("started.log", f"{ctx.attempt} {os.getpid()}")
    if ctx.attempt == 1:
        # Wait to be killed (or, for a re-run of this attempt by Dask itself, to be released).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not os.path.exists(os.path.join(HERE, "release")):
            time.sleep(0.02)
    return {"attempt": ctx.attempt}


@cairn.asset
def after(victim):
    return victim["attempt"] * 10


@cairn.asset
def bystander(ctx):
    return 7
"""


def running_jobs() -> list[str]:
    """On a Dask worker: the keys of the cairn jobs running there now."""
    from cairn.executors import dask

    return [job.key for job in dask._running.values()]


def kill_first_start(root: Path, dask_address: str | None = None) -> int:
    """SIGKILL the worker process of the first attempt once it has started the step; returns its pid.

    With `dask_address`, only once that scheduler holds the job's "running" event: a worker sends its
    events in batches, and one killed within milliseconds of starting the job loses the event with it."""
    since = time.time()  # before the run's executor exists: the events of its jobs are all later
    _, pid = wait_for_line(root / "started.log")[0].split()
    if dask_address is not None:
        wait_for_start_event(dask_address, since)
    os.kill(int(pid), signal.SIGKILL)
    return int(pid)


def wait_for_start_event(address: str, since: float, timeout: float = 30.0) -> None:
    """Wait until the scheduler holds a cairn job's "running" event logged after `since` (wall clock)."""
    with distributed.Client(address, set_as_default=False) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = client.get_events()
            if any(
                stamp >= since and message.get("phase") == "running"
                for topic, logged in events.items()
                if topic.startswith("cairn-")
                for stamp, message in logged
            ):
                return
            time.sleep(0.02)
    raise AssertionError(f"the Dask scheduler got no job start event within {timeout} s")


def assert_only_the_retry_was_published(root: Path, result: RunResult, killed: int) -> None:
    assert result.status == "succeeded", [s.error for s in result.steps if s.error]
    assert statuses(result) == {"victim": "executed", "after": "executed", "bystander": "executed"}
    assert result["victim"].attempts == 2
    recorded = attempts(root, result.run_id, "victim")
    assert [(n, status) for n, status, _ in recorded] == [(1, "failed"), (2, "succeeded")]
    assert "StepCrashed" in (recorded[0][2] or ""), recorded
    assert cairn.load("victim", project=root) == {"attempt": 2}
    assert cairn.load("after", project=root) == 20
    assert [(run, attempt) for run, attempt, _ in materializations(root, "victim")] == [(result.run_id, 2)]
    # Nothing of the killed attempt is in the store: every object belongs to a committed materialization.
    assert stored_objects(root) == referenced_objects(root)
    retried = [line.split() for line in (root / "started.log").read_text().splitlines() if line.startswith("2 ")]
    assert len(retried) == 1 and int(retried[0][1]) != killed


def test_a_dask_worker_killed_mid_step_is_reported_crashed_and_the_step_is_retried_elsewhere(
    tmp_path: Path, forget_modules: None
) -> None:
    """On the LocalCluster the executor starts, Dask re-runs nothing by itself: the step ran exactly twice
    (the killed attempt and the engine's retry), and the run succeeds."""
    root = write_project(tmp_path / "p", VICTIM, "dask")
    killed: list[int] = []
    result = materialize_while(root, lambda: killed.append(kill_first_start(root)))
    assert_only_the_retry_was_published(root, result, killed[0])
    assert [line.split()[0] for line in (root / "started.log").read_text().splitlines()] == ["1", "2"]


@pytest.mark.slow
def test_a_dask_re_run_of_a_lost_workers_step_is_abandoned_and_the_engine_retries_it(
    tmp_path: Path, forget_modules: None, dask_address: str
) -> None:
    """A scheduler with Dask's default allowed-failures re-runs the step on another worker by itself; the
    executor sees the second start, reports the attempt as crashed and the engine's retry is what counts.
    The re-run is abandoned: it may finish, but it is never committed."""
    root = write_project(tmp_path / "p", VICTIM, "dask", extra=f'address = "{dask_address}"')
    killed: list[int] = []
    try:
        result = materialize_while(root, lambda: killed.append(kill_first_start(root, dask_address)))
        started = [line.split()[0] for line in (root / "started.log").read_text().splitlines()]
        assert started == ["1", "1", "2"]  # the killed attempt, Dask's re-run of it, the engine's retry
        assert_only_the_retry_was_published(root, result, killed[0])
        # The re-run was stopped in its worker thread (it waits for the release file, which does not exist).
        with distributed.Client(dask_address, set_as_default=False) as client:
            deadline = time.monotonic() + 30
            while any(client.run(running_jobs).values()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not any(client.run(running_jobs).values())
    finally:
        (root / "release").touch()


def test_a_ray_worker_killed_mid_step_is_reported_crashed_and_the_step_is_retried(
    tmp_path: Path, forget_modules: None, ray_local: None
) -> None:
    root = write_project(tmp_path / "p", VICTIM, "ray")
    killed: list[int] = []
    result = materialize_while(root, lambda: killed.append(kill_first_start(root)))
    assert_only_the_retry_was_published(root, result, killed[0])
    assert [line.split()[0] for line in (root / "started.log").read_text().splitlines()] == ["1", "2"]


# ---- workers never touch the database ------------------------------------------------------------

AUDITED = """
ENGINE_PID = {engine_pid}
GUARD = "_cairn_audit_{token}"


def _audit(event, args):
    # Records every SQLite connection and every Python-level open of a path under .cairn/cairn.db.
    try:
        if event == "sqlite3.connect" or (
            event == "open" and isinstance(args[0], str) and "cairn.db" in args[0]
        ):
            log("db-access.log", f"{{os.getpid()}} {{event}} {{args[0]}}")
    except Exception:
        pass


if os.getpid() != ENGINE_PID and not getattr(sys, GUARD, False):
    setattr(sys, GUARD, True)
    sys.addaudithook(_audit)


@cairn.asset
def probe(ctx):
    # Proves the hook is live in the worker: a connection to another database is recorded.
    import sqlite3

    sqlite3.connect(os.path.join(HERE, "probe.db")).close()
    log("steps.log", os.getpid())
    return 1


@cairn.asset
def reader(ctx, probe):
    log("steps.log", os.getpid())
    return probe + 1
"""


@pytest.mark.parametrize("kind", CLUSTERS)
def test_workers_never_open_the_metadata_database(
    tmp_path: Path, forget_modules: None, kind: str, request: pytest.FixtureRequest
) -> None:
    if kind == "ray":
        request.getfixturevalue("ray_local")
    body = AUDITED.format(engine_pid=os.getpid(), token=uuid.uuid4().hex[:8])
    root = write_project(tmp_path / "p", body, kind)
    result = cairn.materialize(project=root)
    assert result.status == "succeeded"
    workers = {int(pid) for pid in (root / "steps.log").read_text().split()}
    assert os.getpid() not in workers
    seen = [line.split(" ", 2) for line in (root / "db-access.log").read_text().splitlines()]
    assert any(event == "sqlite3.connect" and path.endswith("probe.db") for _, event, path in seen), seen
    assert not [line for line in seen if "cairn.db" in line[2]], seen
    assert {int(pid) for pid, _, _ in seen} <= workers


# ---- timeouts --------------------------------------------------------------------------------------

STUBBORN = """
@cairn.asset(timeout=0.5, retry=cairn.Retry(max_attempts=2, backoff=0.05))
def stubborn(ctx):
    log("timeouts.log", f"start {ctx.attempt}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            sum(range(10_000))
        except Exception:
            pass
    log("timeouts.log", f"end {ctx.attempt}")
    return 1


@cairn.asset(timeout=0.5)
def asleep(ctx):
    log("timeouts.log", "start asleep")
    time.sleep(60)
    log("timeouts.log", "end asleep")
    return 1


@cairn.asset(timeout=30)
def quick(ctx):
    return 2
"""


@pytest.mark.parametrize("kind", CLUSTERS)
def test_steps_past_their_timeout_are_stopped_on_every_attempt_and_other_steps_finish(
    tmp_path: Path, forget_modules: None, kind: str, request: pytest.FixtureRequest
) -> None:
    """A loop that swallows exceptions and a sleep in native code: neither reaches its end. On Dask the
    first is interrupted inside its worker thread, the second by restarting the worker of the cluster the
    executor started; on Ray the step's own alarm stops both (a task runs in its worker's main thread)."""
    if kind == "ray":
        request.getfixturevalue("ray_local")
    root = write_project(tmp_path / "p", STUBBORN, kind)
    result = cairn.materialize(project=root)
    logged = (root / "timeouts.log").read_text().splitlines()
    assert result.status == "failed"
    assert statuses(result) == {"stubborn": "failed", "asleep": "failed", "quick": "executed"}
    assert result["stubborn"].attempts == 2
    assert "StepTimeout" in (result["stubborn"].error or "")
    assert "StepTimeout" in (result["asleep"].error or "")
    assert sorted(logged) == ["start 1", "start 2", "start asleep"], logged
    for name in ("stubborn", "asleep"):  # the time each ran until it was stopped, never 0
        assert (result[name].duration_s or 0) >= 0.5, result[name]


# ---- resources and capacity ------------------------------------------------------------------------

RESOURCED = """
@cairn.asset(resources=cairn.Resources(cpu=2, memory_mb=256))
def big(ctx):
    return {when}


@cairn.asset(resources=cairn.Resources(cpu=0.5))
def small(ctx):
    return {when}


@cairn.asset(resources=cairn.Resources(cpu=64))
def greedy(ctx):
    return {when}
"""

DASK_HELD = "dict(__import__('distributed').get_worker().state.available_resources)"
RAY_HELD = "__import__('ray').get_runtime_context().get_assigned_resources()"


def test_dask_steps_ask_for_the_worker_resources_the_cluster_declares(tmp_path: Path, forget_modules: None) -> None:
    """Workers declaring CPU=2 and MEMORY=1 GiB: each step holds its Resources while it runs (a request
    larger than any worker is cut to the biggest worker), and capacity is the sum of the declared amounts."""
    cluster = local_cluster(threads_per_worker=2, resources={"CPU": 2, "MEMORY": 2**30})
    try:
        executor = create_executor("dask", 0, cluster.scheduler_address)
        assert executor.capacity == Capacity(cpu=4.0, memory_mb=2048)
        root = write_project(
            tmp_path / "p", RESOURCED.format(when=DASK_HELD), "dask", extra=f'address = "{cluster.scheduler_address}"'
        )
        result = cairn.materialize(project=root, executor_instance=executor)
    finally:
        cluster.close()
    assert result.status == "succeeded", [s.error for s in result.steps if s.error]
    # What was left of the worker's resources while each step ran.
    assert cairn.load("big", project=root) == {"CPU": 0.0, "MEMORY": float(2**30 - 256 * 2**20)}
    assert cairn.load("small", project=root) == {"CPU": 1.5, "MEMORY": float(2**30)}
    assert cairn.load("greedy", project=root) == {"CPU": 0.0, "MEMORY": float(2**30)}


def test_ray_tasks_get_num_cpus_and_memory_from_the_steps_resources(
    tmp_path: Path, forget_modules: None, ray_local: None
) -> None:
    root = write_project(tmp_path / "p", RESOURCED.format(when=RAY_HELD), "ray")
    executor = create_executor("ray", 0)
    assert executor.capacity.cpu == 2.0
    result = cairn.materialize(project=root, executor_instance=executor)
    assert result.status == "succeeded", [s.error for s in result.steps if s.error]
    assert cairn.load("big", project=root) == {"CPU": 2.0, "memory": float(256 * 2**20)}
    assert cairn.load("small", project=root) == {"CPU": 0.5}
    assert cairn.load("greedy", project=root) == {"CPU": 2.0}  # no node has 64: the biggest one's CPUs
    assert ray.is_initialized()  # the executor found Ray running and left it running


def test_the_dask_executor_capacity_is_its_local_clusters_threads_and_memory() -> None:
    executor = create_executor("dask", 2)
    try:
        info = executor._client.scheduler_info()["workers"].values()  # type: ignore[attr-defined]
        assert executor.capacity.cpu == 2.0
        assert executor.capacity.memory_mb == sum(w["memory_limit"] for w in info) // 2**20
    finally:
        executor.close()


# ---- long-lived workers run each run's code ----------------------------------------------------------


@pytest.mark.parametrize("kind", CLUSTERS)
def test_workers_that_outlive_a_run_run_the_next_runs_code(
    tmp_path: Path, forget_modules: None, kind: str, request: pytest.FixtureRequest
) -> None:
    address = cluster(kind, request)
    extra = f'address = "{address}"' if address else ""
    body = "@cairn.asset\ndef value(ctx):\n    return {n}\n\n\n@cairn.asset\ndef double(value):\n    return value * 2\n"
    root = write_project(tmp_path / "p", body.format(n=1), kind, extra=extra)
    module = next(p.stem for p in root.glob("dist_*.py"))
    assert cairn.materialize(project=root).ok
    for n in (2, 3):
        write_module(root, module, PRELUDE + body.format(n=n))
        result = cairn.materialize(project=root)
        assert statuses(result) == {"value": "executed", "double": "executed"}
        assert cairn.load("double", project=root) == 2 * n


# ---- configuration errors ----------------------------------------------------------------------------


def test_a_dask_address_where_no_scheduler_answers_is_a_clear_configuration_error() -> None:
    address = f"tcp://127.0.0.1:{closed_port()}"
    with pytest.raises(ConfigError, match=r"no Dask scheduler answers at \[executor\] address = .*dask scheduler"):
        create_executor("dask", 0, address)
    with pytest.raises(ConfigError, match="names no host and port"):
        create_executor("dask", 0, "tcp://")


@pytest.mark.parametrize(
    ("kind", "address", "forms"),
    [("dask", "tcp://127.0.0.1:99999", "tcp://host:port"), ("ray", "127.0.0.1:port", "auto, host:6379")],
)
def test_a_malformed_cluster_address_names_the_forms_that_work(kind: str, address: str, forms: str) -> None:
    """Checked by the adapter itself: a Ray already running in this process would take any address."""
    adapter = importlib.import_module(f"cairn.executors.{kind}")
    with pytest.raises(ConfigError, match=f"address = '{address}' is not a valid address: use {forms}"):
        adapter._check_reachable(address)


@pytest.mark.parametrize("kind", CLUSTERS)
def test_cairn_run_with_a_bad_cluster_address_exits_2_and_says_what_to_fix(tmp_path: Path, kind: str) -> None:
    root = write_project(
        tmp_path / "p",
        "@cairn.asset\ndef one(ctx):\n    return 1\n",
        kind,
        extra=f'address = "127.0.0.1:{closed_port()}"',
    )
    done = cli("-C", str(root), "run")
    assert done.returncode == 2, done.stderr
    assert "address" in done.stderr and "127.0.0.1" in done.stderr
    assert ("dask scheduler" if kind == "dask" else "ray start --head") in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("kind", "module"), [("dask", "distributed"), ("ray", "ray")])
def test_a_missing_cluster_package_names_the_extra_to_install(kind: str, module: str) -> None:
    """Run where the package cannot be imported (its entry in sys.modules is None, as Python does for a
    module that is not there)."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from cairn.executors.factory import create_executor\n"
        "from cairn.errors import ConfigError\n"
        f"try:\n    create_executor({kind!r}, 1)\nexcept ConfigError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"pip install 'cairn[{kind}]'" in done.stdout


@pytest.mark.slow
def test_cairn_run_starts_a_local_ray_for_the_run_and_stops_it(tmp_path: Path) -> None:
    """No address and no Ray running in the process: the CLI starts a local Ray and shuts it down."""
    root = write_project(
        tmp_path / "p",
        "@cairn.asset\ndef one(ctx):\n    log('pids.log', os.getpid())\n    return 1\n",
        "process",
    )
    done = cli("-C", str(root), "run", "--executor", "ray", "--json")
    assert done.returncode == 0, done.stderr
    worker = int((root / "pids.log").read_text().split()[0])
    deadline = time.monotonic() + 30
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), "a Ray worker of the finished run is still running"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
