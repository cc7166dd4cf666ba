"""PostgreSQL connections of an engine lost in the middle of a run: the server ends its sessions.

A second connection terminates the engine's sessions (``pg_terminate_backend``), found by the
``application_name`` that the engine's database URL sets, at chosen points: while the engine's connection
is idle during a step, in the middle of a transaction, during COMMIT, and over and over through a whole
run. Every asset appends ``<asset> <run_id>`` to ``executions.log`` when it runs, so the tests know what
really ran. What must hold:

- a lost connection is replaced and what it cut off before COMMIT runs again: the run finishes;
- a COMMIT cut off (its outcome unknown) is not repeated: the run fails saying that the connection was
  lost and that `cairn run` resumes; the rerun reuses what was committed and runs the rest;
- no committed step runs again, no cache key is committed twice, and every row points to an object.
"""

from __future__ import annotations

import json
import random
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

import psycopg
import pytest

from cairn.errors import ConnectionLost
from cairn.storage.metadata import MetadataStore, open_metadata
from cairn.testing.metadata import make_mat, make_step, start_attempt, start_run
from tests.postgres import libpq_url

# How long a wait for something the test caused may take before the test gives up (never a pass condition).
DEADLINE_S = 60.0

PRELUDE = """\
import os
import time

import psycopg

from cairn import asset

HERE = os.path.dirname(os.path.abspath(__file__))
ADMIN = {admin!r}
ENGINE = {engine!r}


def ran(name, ctx):
    with open(os.path.join(HERE, "executions.log"), "a", encoding="utf-8") as log:
        log.write(f"{{name}} {{ctx.run_id}}\\n")


def kill_engine():
    \"\"\"End the engine's sessions from a connection of this step, and wait until they are gone.\"\"\"
    with psycopg.connect(ADMIN, autocommit=True, application_name="cairn-test-step") as admin:
        pids = [row[0] for row in admin.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (ENGINE,)
        )]
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchall():
            time.sleep(0.01)


def kills():
    path = os.path.join(HERE, "kills.txt")
    return os.path.getsize(path) if os.path.exists(path) else 0


def wait_for_kills(count):
    \"\"\"Wait until the test's killer has ended `count` more sessions of the engine.\"\"\"
    goal = kills() + count
    deadline = time.monotonic() + 120
    while kills() < goal and time.monotonic() < deadline:
        time.sleep(0.01)
"""


class Server:
    """An admin connection to the test database that finds and ends the engine's sessions."""

    def __init__(self, url: str, engine: str) -> None:
        self.url = url
        self.engine = engine
        self.admin = psycopg.connect(libpq_url(url), autocommit=True, application_name="cairn-test-admin")

    def sessions(self, where: str = "TRUE") -> list[tuple[Any, ...]]:
        """``(pid, state, wait_event_type, query)`` of the engine's sessions that match `where`."""
        query = (
            f"SELECT pid, state, wait_event_type, query FROM pg_stat_activity WHERE application_name = %s AND ({where})"
        )
        return self.admin.execute(query, (self.engine,)).fetchall()

    def kill(self, where: str = "TRUE") -> int:
        """End the engine's sessions that match `where`, and wait until they are gone; returns how many."""
        rows = self.admin.execute(
            f"SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s AND ({where})",
            (self.engine,),
        ).fetchall()
        pids = [int(row[0]) for row in rows]
        deadline = time.monotonic() + DEADLINE_S
        while pids and self.admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchall():
            assert time.monotonic() < deadline, f"sessions {pids} were not ended"
            time.sleep(0.01)
        return len(pids)

    def wait_for(self, where: str) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + DEADLINE_S
        while not (found := self.sessions(where)):
            assert time.monotonic() < deadline, f"no session of the engine became {where}"
            time.sleep(0.01)
        return found

    def close(self) -> None:
        self.admin.close()


@pytest.fixture
def engine_name() -> str:
    return f"cairn-engine-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def server(postgres_url: str, engine_name: str) -> Iterator[Server]:
    found = Server(postgres_url, engine_name)
    try:
        yield found
    finally:
        found.close()


def engine_url(postgres_url: str, engine: str) -> str:
    """The database URL the engine uses: the test's database, with the engine's own application name."""
    return f"{postgres_url}?application_name={engine}"


def write_project(root: Path, url: str, server: Server, body: str, executor: str = "inline") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config = f"""\
        [project]
        name = "connloss"
        modules = ["pipeline"]
        seed = 3

        [storage]
        artifacts = ".cairn/artifacts"
        database = "{url}"

        [executor]
        kind = "{executor}"
        workers = 2

        [defaults]
        retry = {{ max_attempts = 1 }}

        [engine]
        heartbeat_s = 0.1
        lease_ttl_s = 600
        """
    prelude = PRELUDE.format(admin=libpq_url(server.url), engine=server.engine)
    (root / "cairn.toml").write_text(textwrap.dedent(config), encoding="utf-8")
    (root / "pipeline.py").write_text(prelude + textwrap.dedent(body), encoding="utf-8")
    return root


def start_cli(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cairn.cli.main", "-C", str(root), "run", "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(root: Path, *args: str) -> tuple[int, dict[str, Any] | None, str]:
    """``(exit code, the --json result or None, stderr)`` of one `cairn run`."""
    proc = start_cli(root, *args)
    out, err = proc.communicate(timeout=240)
    return proc.returncode, json.loads(out) if out.strip() else None, err


def executions(root: Path) -> list[tuple[str, str]]:
    """``(asset, run_id)`` of every call of an asset function, in order."""
    log = root / "executions.log"
    if not log.exists():
        return []
    return [(line.split()[0], line.split()[1]) for line in log.read_text(encoding="utf-8").splitlines()]


def check_store(root: Path, url: str) -> dict[str, list[str]]:
    """Check the stored results and return, per asset, the runs that committed it (oldest first).

    No cache key is committed twice, every materialization's object exists, and no committed step ran again:
    after the run that committed an asset, its function never ran, and in that run it ran once.
    """
    objects = root / ".cairn" / "artifacts" / "objects"
    with open_metadata(url, root) as store:
        mats = sorted(store.latest_materializations().values(), key=lambda mat: mat.id)
        all_mats = [m for mat in mats for m in store.materializations(mat.asset, mat.partition)]
        runs = [run.run_id for run in reversed(store.list_runs())]  # oldest first
        held = store._rows("read held leases", "SELECT cache_key FROM leases WHERE expires_at > 0")
    keys = Counter(mat.cache_key for mat in all_mats)
    assert [key for key, count in keys.items() if count > 1] == []
    for mat in all_mats:
        digest = mat.data_version.removeprefix("b3:")
        assert (objects / digest[:2] / digest[2:]).is_file(), f"{mat.asset}: no object {mat.data_version}"
    assert held == [], "a finished run still holds leases"
    committed: dict[str, list[str]] = {}
    for mat in all_mats:
        committed.setdefault(mat.asset, []).append(mat.run_id)
    calls = executions(root)
    for asset, by in committed.items():
        first = runs.index(by[0])
        in_run = [run for name, run in calls if name == asset and run == by[0]]
        after = [run for name, run in calls if name == asset and runs.index(run) > first]
        assert in_run == [by[0]], f"{asset} ran {len(in_run)} times in the run that committed it"
        assert after == [], f"{asset} ran again after it was committed by {by[0]}: in {after}"
    return committed


# ---- the store on its own ------------------------------------------------------------------------------


def test_a_transaction_cut_off_before_commit_runs_again_once_on_a_new_connection(
    postgres_url: str, server: Server, tmp_path: Path
) -> None:
    store = open_metadata(engine_url(postgres_url, server.engine), tmp_path)
    try:
        start_run(store, "r1")
        tries: list[int] = []

        def body(cur: Any) -> None:
            tries.append(store._connection.info.backend_pid)  # type: ignore[attr-defined]
            update = store._sql("UPDATE runs SET selection = selection || ? WHERE run_id = ?")
            cur.execute(update, ("+", "r1"))
            if len(tries) == 1:
                assert server.kill() == 1  # the session ends inside the transaction, before COMMIT
            cur.execute(update, ("!", "r1"))

        store._transaction("append twice", body)
        run = store.get_run("r1")
    finally:
        store.close()
    assert len(tries) == 2 and tries[0] != tries[1]  # run again, on a new session
    assert run is not None and run.selection.endswith("+!") and not run.selection.endswith("+!+!")


def test_a_session_ended_while_idle_is_replaced_before_a_write_that_cannot_be_repeated(
    postgres_url: str, server: Server, tmp_path: Path
) -> None:
    """A one-statement write commits itself, so losing the connection during it leaves its outcome unknown:
    a dead idle connection must be found before the statement is sent, not by sending it."""
    store = open_metadata(engine_url(postgres_url, server.engine), tmp_path)
    try:
        before = server.sessions()
        assert server.kill() == 1
        store._write1("record an environment", "INSERT INTO environments VALUES (?, ?)", ("sha256:x", "{}"))
        rows = store._rows("read environments", "SELECT env_hash FROM environments")
        after = server.sessions()
    finally:
        store.close()
    assert rows == [("sha256:x",)]
    assert len(after) == 1 and after[0][0] != before[0][0]


def test_a_commit_cut_off_is_not_repeated_and_says_to_run_again(
    postgres_url: str, server: Server, tmp_path: Path
) -> None:
    """A deferred trigger makes the COMMIT of a materialization wait on a lock the test holds; the session is
    ended during that COMMIT. The store raises ConnectionLost instead of committing again, and goes on
    working on a new connection."""
    store = open_metadata(engine_url(postgres_url, server.engine), tmp_path)
    server.admin.execute(
        "CREATE FUNCTION wait_at_commit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NULL; END $$"
    )
    server.admin.execute(
        "CREATE CONSTRAINT TRIGGER wait_at_commit AFTER INSERT ON materializations "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wait_at_commit()"
    )
    holder = psycopg.connect(libpq_url(postgres_url))  # holds the lock in an open transaction
    holder.execute("SELECT pg_advisory_xact_lock(4242)")
    errors: list[BaseException] = []
    try:
        start_run(store, "run-1")
        mat = make_mat("k1")
        token = store.acquire_lease("k1", "run-1", "me", 600)
        assert token is not None
        start_attempt(store, mat, token)

        def commit() -> None:
            try:
                store.commit_materialization(mat, make_step(mat), ("k1", token))
            except BaseException as exc:
                errors.append(exc)

        committer = threading.Thread(target=commit)
        committer.start()
        server.wait_for("query = 'COMMIT' AND wait_event_type = 'Lock'")
        assert server.kill() == 1
        committer.join(timeout=DEADLINE_S)
        holder.rollback()
        assert len(errors) == 1 and isinstance(errors[0], ConnectionLost), errors
        message = str(errors[0])
        assert "lost the connection to the metadata database" in message
        assert "commit the materialization of features" in message and "`cairn run`" in message
        assert store.find_by_cache_key("k1") is None  # the server rolled it back; it was not tried again
        assert store.lease_holder("k1") is not None  # still fenced: the lease of the attempt is held
    finally:
        holder.close()
        store.close()


def test_a_lost_server_that_does_not_come_back_is_a_clear_error(
    postgres_url: str, postgres_server: str, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cairn.storage import database

    monkeypatch.setattr(database, "RECONNECT_S", 0.5)
    store = open_metadata(engine_url(postgres_url, server.engine), tmp_path)
    name = postgres_url.rpartition("/")[2]
    try:
        start_run(store, "r1")
        # Sessions are ended and new ones refused, as by a server that is gone.
        with psycopg.connect(libpq_url(postgres_server), autocommit=True) as other:
            other.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            try:
                assert server.kill() == 1
                with pytest.raises(ConnectionLost, match="was lost and no new one could be made") as caught:
                    store.heartbeat_run("r1")
            finally:
                other.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert "heartbeat run r1" in str(caught.value) and "`cairn run`" in str(caught.value)
        store.heartbeat_run("r1")  # the server is back: the store works again
    finally:
        store.close()


# ---- an engine ------------------------------------------------------------------------------------------

CHAIN = """

@asset
def a(ctx):
    ran("a", ctx)
    kill_engine()  # the engine's connection dies while it waits for this step
    return [1, 2, 3]


@asset
def b(ctx, a):
    ran("b", ctx)
    kill_engine()
    ctx.log.info("b is done")
    return sum(a)


@asset
def c(ctx, b):
    ran("c", ctx)
    return b * 2
"""


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_sessions_ended_while_steps_run_are_replaced_and_the_run_succeeds(
    postgres_url: str, server: Server, tmp_path: Path, executor: str
) -> None:
    url = engine_url(postgres_url, server.engine)
    root = write_project(tmp_path / "proj", url, server, CHAIN, executor)
    code, result, err = run_cli(root)
    assert code == 0, err
    assert result is not None and {s["asset"]: s["status"] for s in result["steps"]} == dict.fromkeys("abc", "executed")
    assert executions(root) == [(name, result["run_id"]) for name in "abc"]
    check_store(root, postgres_url)
    with open_metadata(postgres_url, root) as store:
        logs = [log.message for log in store.logs(result["run_id"], "b")]
    assert [line for line in logs if "b is done" in line] != []


LONG_STEP = """

@asset
def raw(ctx):
    ran("raw", ctx)
    return list(range(10))


@asset
def train(ctx, raw):
    ran("train", ctx)
    wait_for_kills(4)  # the engine heartbeats meanwhile: each kill needs a new session to have been made
    return sum(raw)


@asset
def report(ctx, train):
    ran("report", ctx)
    return {"total": train}
"""


def test_sessions_ended_again_and_again_during_a_long_step_are_replaced_by_the_heartbeat(
    postgres_url: str, server: Server, tmp_path: Path
) -> None:
    url = engine_url(postgres_url, server.engine)
    root = write_project(tmp_path / "proj", url, server, LONG_STEP, "process")
    proc = start_cli(root)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while "train" not in [name for name, _ in executions(root)]:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr and proc.stderr.read()
            time.sleep(0.01)
        pids: set[int] = set()
        with (root / "kills.txt").open("ab", buffering=0) as kills:
            for _ in range(4):
                # A kill counts once the heartbeat has made a new session after the previous kill.
                (pid, *_), *_ = server.wait_for(f"pid NOT IN ({','.join(map(str, pids)) or '0'})")
                pids.add(pid)
                assert server.kill(f"pid = {pid}") == 1
                kills.write(b"x")
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert {s["asset"]: s["status"] for s in result["steps"]} == dict.fromkeys(("raw", "train", "report"), "executed")
    assert len(pids) == 4
    check_store(root, postgres_url)
    with open_metadata(postgres_url, root) as store:
        run = store.get_run(result["run_id"])
    assert run is not None and run.status == "succeeded"  # never taken for abandoned


SLOW_COMMIT = """

@asset
def first(ctx):
    ran("first", ctx)
    return "one"


@asset
def second(ctx, first):
    ran("second", ctx)
    return first + " two"


@asset
def third(ctx, second):
    ran("third", ctx)
    return second + " three"
"""


def hold_commits_of(server: Server, asset: str) -> psycopg.Connection[Any]:
    """Make each COMMIT that records `asset` wait on an advisory lock, held by the returned connection."""
    server.admin.execute(
        "CREATE OR REPLACE FUNCTION wait_at_commit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_advisory_xact_lock(4243); RETURN NULL; END $$"
    )
    server.admin.execute(
        "CREATE CONSTRAINT TRIGGER wait_at_commit AFTER INSERT ON materializations DEFERRABLE INITIALLY DEFERRED "
        f"FOR EACH ROW WHEN (NEW.asset = '{asset}') EXECUTE FUNCTION wait_at_commit()"
    )
    holder = psycopg.connect(libpq_url(server.url))
    holder.execute("SELECT pg_advisory_xact_lock(4243)")
    return holder


def test_a_run_whose_commit_is_cut_off_fails_clearly_and_a_rerun_resumes(
    postgres_url: str, server: Server, tmp_path: Path
) -> None:
    url = engine_url(postgres_url, server.engine)
    root = write_project(tmp_path / "proj", url, server, SLOW_COMMIT)
    open_metadata(postgres_url, root).close()  # the schema, so that the trigger has its table
    holder = hold_commits_of(server, "second")
    try:
        proc = start_cli(root)
        server.wait_for("query = 'COMMIT' AND wait_event_type = 'Lock'")
        assert server.kill() == 1
        out, err = proc.communicate(timeout=240)
    finally:
        holder.close()
    assert proc.returncode == 1, err
    assert "lost the connection to the metadata database" in err
    assert "commit the materialization of second" in err and "resume with: cairn run" in err
    assert "Traceback" not in err and out == ""
    with open_metadata(postgres_url, root) as store:
        held = store._rows("read held leases", "SELECT run_id FROM leases WHERE expires_at > 0")
    assert held == []  # the failed run gave its leases up: the rerun need not wait for them to expire

    code, result, err = run_cli(root)
    assert code == 0, err
    assert result is not None
    assert {s["asset"]: s["status"] for s in result["steps"]} == {
        "first": "cached",
        "second": "executed",  # its first commit never happened, so it runs again
        "third": "executed",
    }
    assert [name for name, _ in executions(root)] == ["first", "second", "second", "third"]
    check_store(root, postgres_url)
    with open_metadata(postgres_url, root) as store:
        failed = store.list_runs()[1]
        attempts = {a.asset: a.status for a in store.attempts(failed.run_id)}
    assert failed.status == "failed" and attempts == {"first": "succeeded", "second": "abandoned"}


def test_a_commit_whose_acknowledgement_is_lost_is_not_repeated_and_a_rerun_reuses_it(
    postgres_url: str, server: Server, tmp_path: Path
) -> None:
    """The COMMIT of `second` goes through, and then the session ends before the engine hears back: the
    engine cannot know that it committed. It stops without committing again; the rerun finds it cached."""
    from cairn.engine.api import materialize
    from cairn.engine.run import Engine, RunOptions
    from cairn.project import load_project
    from cairn.storage.factory import open_artifacts

    url = engine_url(postgres_url, server.engine)
    root = write_project(tmp_path / "proj", url, server, SLOW_COMMIT)
    project = load_project(root)
    store = open_metadata(url, root)
    lose_acknowledgement(store, server, "second")
    try:
        artifacts = open_artifacts(project.settings.artifacts, root, {})
        engine = Engine(project, store, artifacts, RunOptions())
        with pytest.raises(ConnectionLost, match=r"commit the materialization of second.*`cairn run`"):
            engine.run()
    finally:
        store.close()
    rerun = materialize(project=project)
    assert rerun.ok
    assert {s.asset: s.status for s in rerun.steps} == {"first": "cached", "second": "cached", "third": "executed"}
    assert [name for name, _ in executions(root)] == ["first", "second", "third"]
    committed = check_store(root, postgres_url)
    assert committed["second"] == [engine.run_id]


def lose_acknowledgement(store: MetadataStore, server: Server, asset: str) -> None:
    """Once, after the COMMIT that records `asset` succeeded, end the store's session before it returns."""
    real = store._cursor
    pending: list[bool] = []

    class Cursor:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def execute(self, sql: str, params: Any = ()) -> Any:
            if "INSERT INTO materializations" in sql and params and params[0] == asset:
                pending.append(True)
            done = real.execute(sql, params)
            if sql == "COMMIT" and pending:
                pending.clear()
                store._cursor = real  # only once
                assert server.kill() == 1
                real.execute("SELECT 1")  # raises: the session is gone
            return done

    store._cursor = Cursor()


# ---- over and over --------------------------------------------------------------------------------------

STEPS = 15

MANY = """

@asset
def seed(ctx):
    ran("seed", ctx)
    wait_for_kills(1)
    return 1
""" + "".join(
    f"""

@asset
def s{i}(ctx, {"seed" if i < 3 else f"s{i - 3}"}):
    ran("s{i}", ctx)
    ctx.log.info("step s{i}")
    wait_for_kills(2)
    return {"seed" if i < 3 else f"s{i - 3}"} + {i}
"""
    for i in range(STEPS)
)


@pytest.mark.slow
@pytest.mark.parametrize(("executor", "seed"), [("thread", 11), ("process", 12)])
def test_sessions_ended_over_and_over_through_a_run_lose_nothing_and_run_nothing_twice(
    postgres_url: str, server: Server, tmp_path: Path, executor: str, seed: int
) -> None:
    """A killer ends the engine's sessions at random moments, every few milliseconds, through whole runs
    (each step waits until it has ended one more). A run either succeeds or fails saying the connection was
    lost during a commit; `cairn run` is then run again, until a run succeeds."""
    url = engine_url(postgres_url, server.engine)
    root = write_project(tmp_path / "proj", url, server, MANY, executor)
    open_metadata(postgres_url, root).close()  # the schema first: its upgrade is one long transaction
    stop = threading.Event()
    rng = random.Random(seed)
    killed: list[int] = []

    def killer() -> None:
        with (
            psycopg.connect(libpq_url(postgres_url), autocommit=True) as admin,
            (root / "kills.txt").open("ab", buffering=0) as kills,
        ):
            while not stop.is_set():
                rows = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    (server.engine,),
                ).fetchall()
                if rows:
                    killed.append(len(rows))
                    kills.write(b"x")
                stop.wait(rng.uniform(0.002, 0.03))

    thread = threading.Thread(target=killer)
    thread.start()
    outcomes: list[int] = []
    try:
        for _ in range(10):
            code, result, err = run_cli(root)
            outcomes.append(code)
            if code == 0:
                break
            assert code == 1 and "lost the connection to the metadata database" in err, err
            assert "resume with: cairn run" in err and "Traceback" not in err
    finally:
        stop.set()
        thread.join()
    assert outcomes[-1] == 0, outcomes
    assert result is not None
    assert {s["status"] for s in result["steps"]} <= {"executed", "cached"} and len(result["steps"]) == STEPS + 1
    assert len(killed) >= 2 * (STEPS // 3 + 1)  # each step of the longest chain waited for two
    committed = check_store(root, postgres_url)
    assert sorted(committed) == sorted(["seed", *(f"s{i}" for i in range(STEPS))])
    assert all(len(runs) == 1 for runs in committed.values())
    print(f"\nconnection loss: {len(killed)} sessions ended over {len(outcomes)} runs, exit codes {outcomes}")
