"""Checkpoint-resume: a long step whose worker is SIGKILLed at ~80% of its iterations resumes from its last
checkpoint, on its retry or on the next `cairn run`, and ends with the result of an uninterrupted run.

The step (`fit`, process executor) appends a line to ``iterations.log`` in its project folder, outside the
store, for every iteration it computes and every checkpoint it saves::

    start <run_id> <attempt> <first iteration>
    compute <run_id> <attempt> <iteration> <worker pid>
    saved <run_id> <attempt> <iterations done>

so the test knows which worker to kill, and can prove that the resumed attempt did not start over.
The slow test does the same to the recsys example's trainer, which checkpoints every 25 trees.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

ITERATIONS = 20
EVERY = 3  # iterations between checkpoints
KILL_AT = 16  # 80% of the iterations

PIPELINE = '''
"""A long, iterative step that checkpoints every EVERY iterations and logs what it computes."""

import math
import os
import time

import cairn

HERE = os.path.dirname(os.path.abspath(__file__))
ITERATIONS = {iterations}
EVERY = {every}


def note(*words):
    fd = os.open(os.path.join(HERE, "iterations.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (" ".join(str(w) for w in words) + "\\n").encode())
    finally:
        os.close(fd)


@cairn.asset(retry=cairn.Retry(max_attempts={attempts}, backoff=0.01))
def fit(ctx) -> dict:
    state = ctx.checkpoint.load({{"done": 0, "weights": [0.0, 0.0, 0.0, 0.0]}})
    done, weights = state["done"], state["weights"]
    note("start", ctx.run_id, ctx.attempt, done)
    while done < ITERATIONS:
        note("compute", ctx.run_id, ctx.attempt, done, os.getpid())
        weights = [0.9 * w + math.sin(ctx.seed % 1000 + done * 4 + k) for k, w in enumerate(weights)]
        time.sleep(0.05)
        done += 1
        if done % EVERY == 0:
            ctx.checkpoint.save({{"done": done, "weights": weights}})
            note("saved", ctx.run_id, ctx.attempt, done)
    return {{"weights": weights, "iterations": done}}
'''

CONFIG = """\
[project]
name = "checkpoints"
modules = ["pipeline"]
seed = 11

[executor]
kind = "process"
workers = 1
"""


def make(root: Path, attempts: int) -> Path:
    root.mkdir(parents=True)
    (root / "cairn.toml").write_text(CONFIG, encoding="utf-8")
    body = PIPELINE.format(iterations=ITERATIONS, every=EVERY, attempts=attempts)
    (root / "pipeline.py").write_text(textwrap.dedent(body), encoding="utf-8")
    return root


def cairn_cmd(project: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cairn.cli.main", "-C", str(project), *args]


def run_json(project: Path, *args: str, expect: int = 0) -> dict[str, Any]:
    done = subprocess.run(cairn_cmd(project, "run", "--json", *args), capture_output=True, text=True, timeout=600)
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def lines(project: Path) -> list[list[str]]:
    log = project / "iterations.log"
    return [line.split() for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []


def kill_worker_when(project: Path, proc: subprocess.Popen[str], ready: Any, timeout: float = 120.0) -> Any:
    """Poll until `ready(project)` returns a worker pid, SIGKILL that worker, return what was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = ready(project)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            return pid
        assert proc.poll() is None, f"the run ended before its worker was killed:\n{proc.communicate()}"
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the step never got far enough to be killed")


def at_kill_point(project: Path) -> int | None:
    for words in lines(project):
        if words[0] == "compute" and int(words[3]) >= KILL_AT:
            return int(words[4])
    return None


def step(result: dict[str, Any], asset: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in result["steps"] if s["asset"] == asset)
    return found


@pytest.mark.parametrize("resumed_by", ["retry", "next run"])
def test_a_killed_step_resumes_from_its_last_checkpoint(tmp_path: Path, resumed_by: str) -> None:
    attempts = 2 if resumed_by == "retry" else 1
    reference = make(tmp_path / "uninterrupted", attempts)
    clean = step(run_json(reference), "fit")
    assert [w[3] for w in lines(reference) if w[0] == "compute"] == [str(i) for i in range(ITERATIONS)]

    project = make(tmp_path / "killed", attempts)
    proc = subprocess.Popen(
        cairn_cmd(project, "run", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    killed = kill_worker_when(project, proc, at_kill_point)
    out, err = proc.communicate(timeout=600)
    first = json.loads(out)
    if resumed_by == "retry":
        assert proc.returncode == 0, err
        resumed = step(first, "fit")
        assert resumed["status"] == "executed" and resumed["attempts"] == 2
    else:
        assert proc.returncode == 1, err
        crashed = step(first, "fit")
        assert crashed["status"] == "failed" and crashed["error_class"] == "StepCrashed", crashed
        again = run_json(project)
        resumed = step(again, "fit")
        assert resumed["status"] == "executed" and resumed["reason"] == "previous attempt failed", resumed

    log = lines(project)
    starts = [w for w in log if w[0] == "start"]
    assert len(starts) == 2 and starts[0][3] == "0"
    killed_run, killed_attempt = starts[0][1:3]
    before = [w for w in log if w[1:3] == [killed_run, killed_attempt]]
    after = [w for w in log if w[1:3] == starts[1][1:3]]
    computed_before = [int(w[3]) for w in before if w[0] == "compute"]
    saved_before = [int(w[3]) for w in before if w[0] == "saved"]
    assert {int(w[4]) for w in before if w[0] == "compute"} == {killed}
    assert max(computed_before) >= KILL_AT and max(computed_before) < ITERATIONS - 1, "killed at ~80%"
    resumed_at = int(starts[1][3])
    assert resumed_at == max(saved_before) > 0, "the resumed attempt did not start from the last checkpoint"
    assert [int(w[3]) for w in after if w[0] == "compute"] == list(range(resumed_at, ITERATIONS))
    every = computed_before + [int(w[3]) for w in after if w[0] == "compute"]
    assert every.count(0) == 1 and len(every) - ITERATIONS <= EVERY, "more than the last few iterations recomputed"
    assert resumed["data_version"] == clean["data_version"], "the resumed result differs from an uninterrupted one"
    assert not list((project / ".cairn" / "checkpoints").glob("*")), "the committed step's checkpoint remains"


# ---- the recsys example's trainer -------------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "recsys"


def _checkpointed_trees(project: Path) -> int | None:
    """The number of trees in the ranker's checkpoint, if there is one (this test trusts its own pickles)."""
    from cairn.engine.context import Checkpoint

    for path in (project / ".cairn" / "checkpoints").glob("*"):
        if path.suffix == ".tmp":
            continue
        state = Checkpoint(path).load(None)
        if isinstance(state, dict) and "trees" in state:
            return int(state["trees"])
    return None


def _workers(pid: int) -> list[int]:
    """The child processes of a process (the engine's forked workers)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with open(task / "children", encoding="utf-8") as fh:
            children += [int(p) for p in fh.read().split()]
    return children


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the worker through /proc")
def test_the_recsys_trainer_resumes_from_its_checkpoint_after_its_worker_is_killed(tmp_path: Path) -> None:
    """The ranker's worker is SIGKILLed once 125 of its 150 trees are checkpointed; the next `cairn run`
    resumes the fit from those 125 trees (its log says so) and stores the same model bytes as a fit that was
    never interrupted."""
    pytest.importorskip("sklearn.ensemble")  # imported now: unpickling the checkpoint while polling must be quick
    project = tmp_path / "recsys"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".cairn", "__pycache__"))
    config = project / "cairn.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("scale = 1.0", "scale = 0.2").replace("workers = 0", "workers = 1"),
        encoding="utf-8",
    )
    run_json(project, "+split")  # everything the ranker reads

    output = tmp_path / "killed.json"  # a file, not a pipe: a run that ended first must not block on its output
    with output.open("w", encoding="utf-8") as sink:
        proc = subprocess.Popen(cairn_cmd(project, "run", "ranker", "--json"), stdout=sink, text=True)

    def ready(root: Path) -> int | None:
        trees = _checkpointed_trees(root)
        if trees is None or trees < 120:
            return None
        workers = _workers(proc.pid)
        assert len(workers) == 1, f"expected one worker process, found {workers}"
        return workers[0]

    kill_worker_when(project, proc, ready)
    assert proc.wait(timeout=600) == 1
    assert step(json.loads(output.read_text(encoding="utf-8")), "ranker")["error_class"] == "StepCrashed"

    again = run_json(project, "ranker")
    resumed = step(again, "ranker")
    assert resumed["status"] == "executed"
    logs = subprocess.run(cairn_cmd(project, "logs", again["run_id"], "ranker"), capture_output=True, text=True)
    assert "resuming the fit from its checkpoint: 125 of 150 trees grown" in logs.stdout, logs.stdout

    clean = step(run_json(project, "ranker", "--force"), "ranker")  # the checkpoint is gone: a fit from scratch
    assert clean["status"] == "executed" and clean["data_version"] == resumed["data_version"]
