"""Crash safety: engines SIGKILLed at random points leave a consistent store, and a rerun completes the work.

Each round starts `cairn run` as a subprocess (process executor) in its own session and kills the whole
process group (engine and workers) after a seeded random delay, counted either from the engine's start
(kills during start-up and planning) or from the first step it starts (kills during execution and
commits). A final run then completes every asset. Checked afterwards (DESIGN §4, crash safety):

- every object's bytes hash to its name: no partial object was ever published;
- every materialization row points to an object that exists: the row is written last;
- each cache key is materialized once, and a step committed by one run is never executed by a later one
  (execution is logged by the asset functions themselves, with O_APPEND);
- the killed runs end up ``abandoned``, and a further run finds everything cached.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from cairn.hashing import digest_bytes
from tests.reliability.faults import group_members

# The first seed runs in the default suite (about 10 s); more seeds run with the slow tests.
SEEDS = (20261123, pytest.param(7, marks=pytest.mark.slow), pytest.param(1, marks=pytest.mark.slow))
ASSETS = 24
ROUNDS = 8
STALE_AFTER_S = 1.0

CONFIG = f"""\
[project]
name = "crash"
modules = ["pipeline"]
seed = 3

[storage]
artifacts = ".cairn/artifacts"
database = "sqlite:///.cairn/cairn.db"

[executor]
kind = "process"
workers = 2

[defaults]
retry = {{ max_attempts = 1 }}

[engine]
heartbeat_s = 0.2
lease_ttl_s = 2
stale_after_s = {STALE_AFTER_S}
"""

HEADER = '''\
"""A generated pipeline whose steps log each execution, sleep, and return a value of some size."""

import os
import time

import cairn

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "executions.log")


def _log(asset, run_id):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{asset} {run_id}\\n".encode())
    finally:
        os.close(fd)
'''


def pipeline_text(rng: random.Random) -> str:
    """`ASSETS` assets in a random, deep DAG; each sleeps 0.05-0.2 s; some return ~100 kB so that writes take time."""
    out = [HEADER]
    for i in range(ASSETS):
        window = range(max(0, i - 4), i)  # inputs among the last few assets: a deep graph, not a flat one
        ups = sorted(rng.sample(window, min(len(window), rng.randint(0, 3))))
        args = ", ".join(["ctx", *(f"x{j}" for j in range(len(ups)))])
        ins = {f"x{j}": f"a{k:02d}" for j, k in enumerate(ups)}
        total = " + ".join(f'x{j}["v"]' for j in range(len(ups))) or "0"
        pad = rng.choice([0, 0, 20_000])
        out += [
            "",
            "",
            f"@cairn.asset(name='a{i:02d}', ins={ins!r})",
            f"def f_a{i:02d}({args}):",
            f"    _log('a{i:02d}', ctx.run_id)",
            f"    time.sleep({rng.uniform(0.05, 0.2):.3f})",
            f'    return {{"v": ({total}) * 7 + {i}, "pad": list(range({pad}))}}',
        ]
    return "\n".join(out) + "\n"


# ---- processes ---------------------------------------------------------------------------------


def engine_command(root: Path) -> list[str]:
    return [sys.executable, "-m", "cairn.cli.main", "-C", str(root), "run", "--json"]


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the engine and every worker it started (they share its session's process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)  # reaps it and closes its pipes
    deadline = time.monotonic() + 10
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not group_members(proc.pid), "processes of a killed engine survived SIGKILL"


def log_lines(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split()) for line in log.read_text(encoding="utf-8").splitlines()]  # type: ignore[misc]


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn, conn:
        return conn.execute(sql).fetchall()


def running_runs(db: Path) -> set[str]:
    if not db.exists():
        return set()
    return {str(row[0]) for row in query(db, "SELECT run_id FROM runs WHERE status = 'running'")}


def committed_assets(db: Path) -> int:
    if not db.exists():
        return 0
    return int(query(db, "SELECT COUNT(DISTINCT asset) FROM materializations")[0][0])


def kill_round(root: Path, rng: random.Random) -> tuple[bool, str]:
    """Start an engine and SIGKILL its process group after a random delay; True if it was killed."""
    log = root / "executions.log"
    # From the engine's start: kills during start-up, planning and the first steps. From its first step:
    # kills while steps run and commit, with work left for later rounds.
    anchor = rng.choice(["start", "first step", "first step"])
    delay = rng.uniform(0.05, 1.5) if anchor == "start" else rng.uniform(0.05, 0.5)
    lines_before = len(log_lines(log))
    proc = subprocess.Popen(
        engine_command(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        if anchor == "first step":
            deadline = time.monotonic() + 20
            while len(log_lines(log)) == lines_before and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
        time.sleep(delay)
        killed = proc.poll() is None
    finally:
        kill_group(proc)
    return killed, f"{anchor} + {delay:.2f} s"


# ---- the test ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_sigkilled_engines_leave_a_consistent_store_and_a_rerun_completes_every_asset(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    root = tmp_path / "proj"
    root.mkdir()
    (root / "cairn.toml").write_text(CONFIG, encoding="utf-8")
    (root / "pipeline.py").write_text(pipeline_text(rng), encoding="utf-8")
    db = root / ".cairn" / "cairn.db"
    log = root / "executions.log"
    objects = root / ".cairn" / "artifacts" / "objects"

    killed_rounds = []
    left_running: set[str] = set()  # runs whose engine was killed while they were recorded as running
    for _ in range(ROUNDS):
        if committed_assets(db) == ASSETS:
            break  # nothing is left to interrupt
        killed, how = kill_round(root, rng)
        if killed:
            killed_rounds.append(how)
        left_running |= running_runs(db)
    assert len(killed_rounds) >= 3, f"too few rounds were killed mid-run: {killed_rounds}"
    assert left_running, f"no kill landed after a run was recorded: {killed_rounds}"

    # Started at once: the dead engines' leases are taken over without waiting for their expiry.
    final = subprocess.run(engine_command(root), capture_output=True, text=True, timeout=180)
    assert final.returncode == 0, final.stderr
    result = json.loads(final.stdout)
    assert result["status"] == "succeeded"
    assert len(result["steps"]) == ASSETS
    assert {s["status"] for s in result["steps"]} <= {"executed", "cached"}

    # After the stale period even a run killed before it took any lease is found and abandoned.
    time.sleep(STALE_AFTER_S + 0.5)
    lines_before_check = log_lines(log)
    check = subprocess.run(engine_command(root), capture_output=True, text=True, timeout=180)
    assert check.returncode == 0, check.stderr
    checked = json.loads(check.stdout)
    assert [s["status"] for s in checked["steps"]] == ["cached"] * ASSETS
    assert log_lines(log) == lines_before_check, "a run after completion executed something"

    # Objects: every file's bytes hash to its name; nothing but objects under objects/ab/.
    assert objects.is_dir()
    for path in objects.rglob("*"):
        if path.is_dir():
            assert len(path.name) == 2 and path.parent == objects, path
            continue
        assert path.parent.parent == objects, path
        assert digest_bytes(path.read_bytes()) == "b3:" + path.parent.name + path.name, f"corrupt object {path}"

    # Materializations: each points to an existing object; each cache key is committed once.
    mats = query(db, "SELECT asset, run_id, cache_key, data_version FROM materializations")
    assert {str(a) for a, _, _, _ in mats} == {f"a{i:02d}" for i in range(ASSETS)}
    for asset, _, _, data_version in mats:
        hexdigest = str(data_version).removeprefix("b3:")
        assert (objects / hexdigest[:2] / hexdigest[2:]).is_file(), f"{asset}: missing object {data_version}"
    per_key = Counter(str(key) for _, _, key, _ in mats)
    assert [key for key, n in per_key.items() if n > 1] == []

    # No committed step executed again by a later run (runs are ordered by their row id).
    order = {str(run_id): int(row_id) for row_id, run_id in query(db, "SELECT id, run_id FROM runs")}
    executions = log_lines(log)
    assert {run_id for _, run_id in executions} <= set(order), "a step ran under a run that was never recorded"
    for asset, committed_by, _, _ in mats:
        later = [run for a, run in executions if a == asset and order[run] > order[str(committed_by)]]
        assert later == [], f"{asset} was committed by run {committed_by} and executed again by {later}"
    assert len(executions) >= ASSETS

    # Every killed run that got recorded is abandoned; no run is left "running".
    statuses = {str(run_id): str(status) for run_id, status in query(db, "SELECT run_id, status FROM runs")}
    assert statuses[result["run_id"]] == "succeeded" and statuses[checked["run_id"]] == "succeeded"
    assert {run_id: statuses[run_id] for run_id in left_running} == dict.fromkeys(left_running, "abandoned"), (
        f"kill rounds: {killed_rounds}"
    )
    assert "running" not in statuses.values()
    assert query(db, "SELECT COUNT(*) FROM attempts WHERE status = 'running'") == [(0,)]
    assert query(db, "SELECT COUNT(*) FROM leases WHERE expires_at > 0") == [(0,)]


# ---- one engine killed or interrupted while a step runs -----------------------------------------

SMALL = (
    HEADER
    + """

@cairn.asset
def x(ctx):
    _log("x", ctx.run_id)
    time.sleep(1.0)
    return {"v": 1}


@cairn.asset
def y(ctx, x):
    _log("y", ctx.run_id)
    return {"v": x["v"] + 1}
"""
)


def small_project(root: Path, engine: str) -> Path:
    root.mkdir()
    config = CONFIG[: CONFIG.index("[engine]")] + "[engine]\n" + engine
    (root / "cairn.toml").write_text(config, encoding="utf-8")
    (root / "pipeline.py").write_text(SMALL, encoding="utf-8")
    return root


def start_and_wait_for_x(root: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        engine_command(root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while not log_lines(root / "executions.log") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log_lines(root / "executions.log"), "the engine never started x"
    return proc


def test_a_rerun_takes_over_the_lease_of_a_killed_engine_at_once(tmp_path: Path) -> None:
    """With the default 60 s lease and 120 s stale period, the dead engine's lease must not be waited out."""
    root = small_project(tmp_path / "proj", "heartbeat_s = 0.2\n")
    db = root / ".cairn" / "cairn.db"
    proc = start_and_wait_for_x(root)
    kill_group(proc)
    (killed,) = running_runs(db)

    began = time.monotonic()
    rerun = subprocess.run(engine_command(root), capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - began
    assert rerun.returncode == 0, rerun.stderr
    result = json.loads(rerun.stdout)
    assert {s["asset"]: s["status"] for s in result["steps"]} == {"x": "executed", "y": "executed"}
    assert elapsed < 30, f"the rerun waited {elapsed:.1f} s, as if for the dead engine's lease to expire"
    statuses = dict(query(db, "SELECT run_id, status FROM runs"))
    assert statuses == {killed: "abandoned", result["run_id"]: "succeeded"}
    attempts = query(db, f"SELECT status FROM attempts WHERE run_id = '{killed}'")
    assert attempts == [("abandoned",)]


def test_an_interrupted_run_is_cancelled_and_releases_its_leases(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) ends the run cleanly: exit code 130,
    the run recorded cancelled, nothing left running, no lease held, and a rerun starts at once."""
    root = small_project(tmp_path / "proj", "heartbeat_s = 0.2\n")
    db = root / ".cairn" / "cairn.db"
    proc = start_and_wait_for_x(root)
    try:
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        kill_group(proc)
    assert proc.returncode == 130, err
    assert b"resume with: cairn run" in err
    ((run_id, status),) = query(db, "SELECT run_id, status FROM runs")
    assert status == "cancelled"
    steps = dict(query(db, f"SELECT asset, status FROM steps WHERE run_id = '{run_id}'"))
    assert steps == {"x": "failed", "y": "skipped"}
    assert query(db, "SELECT COUNT(*) FROM leases WHERE expires_at > 0") == [(0,)]
    assert query(db, "SELECT COUNT(*) FROM materializations") == [(0,)]

    began = time.monotonic()
    rerun = subprocess.run(engine_command(root), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["status"] == "succeeded"
    assert time.monotonic() - began < 30
