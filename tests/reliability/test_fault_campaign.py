"""The fault campaign: kills, signals, full and failing disks, and damaged stores, each followed by a check.

Every case ends with the audit of `faults.Auditor`: no object whose bytes do not match its name, no row naming
a missing object, no cache key committed twice, no committed step executed again (the asset functions log each
execution keyed by its data: asset, partition, epoch), nothing left running once the engine is gone and a later
run has reaped it, and nothing stored before the fault lost. A case that makes cairn stop checks the exit code
and that the message says what is wrong and what to do.

- SIGKILL of workers inside long runs (the process executor replaces them; the step runs again) and of whole
  engines (engine and workers) at seeded random points, each followed by an audit; every few kills a resume
  run completes the epoch.
- SIGINT and SIGTERM of `cairn run`: exit 130 / 143, the run recorded ``cancelled``, no lease held, and a rerun
  executes only what was not committed.
- ENOSPC and EIO at every write site of the local artifact store, and SQLite's "database or disk is full" and
  "disk I/O error" at every kind of write transaction of a run (at its first statement and at its COMMIT).
- A database truncated, garbled in its header or in a table, or deleted while the artifacts remain; an object
  with a flipped byte, an object deleted.

The default suite runs a handful of injections per category; ``-m slow`` runs the campaign (over 1,000 kills).
``CAIRN_FAULT_SEED`` picks the seed (printed with the figures at the end of the module).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.reliability.faults import (
    ARTIFACT_SITES,
    DB_SITES,
    FIGURES,
    Auditor,
    Zygote,
    cli_in_process,
    epoch_args,
    kill_worker,
    os_faults,
    sqlite_faults,
    worker_pids,
    write_project,
)

SEED = int(os.environ.get("CAIRN_FAULT_SEED", "20261204"))


@pytest.fixture(scope="module", autouse=True)
def figures(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the campaign's figures at the end of the module."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and FIGURES.counts:
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.write_line("")
            for line in FIGURES.lines():
                reporter.write_line(line)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


def assert_clean(
    category: str, auditor: Auditor, *, settled: bool = False, lost: frozenset[tuple[str, str]] = frozenset()
) -> None:
    """Audit the store (counted in the figures of `category`) and fail on anything it found."""
    report = auditor.audit(settled=settled, lost=lost)
    FIGURES.add(
        category,
        audits=1,
        corrupt_objects_found=len(report.corrupt),
        dangling_rows=len(report.dangling),
        double_executions=len(report.double_executions) + len(report.double_commits),
        left_running=len(report.running),
    )
    assert report.problems() == [], "\n".join(report.problems()[:20])


def run_result(out: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(out)
    return result


def step_statuses(result: dict[str, object]) -> set[str]:
    steps = result["steps"]
    assert isinstance(steps, list)
    return {str(s["status"]) for s in steps}


# ---- SIGKILL of workers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "partitions"), [pytest.param(6, 20, id="6"), pytest.param(880, 160, id="880", marks=pytest.mark.slow)]
)
def test_workers_killed_at_random_points_are_replaced_and_their_steps_run_again(
    tmp_path: Path, zygote: Zygote, target: int, partitions: int
) -> None:
    """SIGKILL a random worker of a running engine every 5-40 ms: each kill costs its step one attempt (at least
    once), every step of every run is committed once, and nothing committed runs again."""
    rng = random.Random(SEED)
    FIGURES.seeds["worker kills"] = SEED
    root = write_project(tmp_path / "proj", rng, partitions, attempts=1000)
    auditor = Auditor(root)
    kills = crashed = runs = 0
    while kills < target:
        runs += 1
        started = zygote.start(root, ["run", "--json", *epoch_args(runs)])
        in_run = 0
        while not zygote.exited(rng.uniform(0.005, 0.04)):
            victims = worker_pids(started.pid)
            if victims and kills < target and kill_worker(rng.choice(victims)):
                kills += 1
                in_run += 1
        done = zygote.wait()
        out, err = done.output()
        assert done.code == 0, err[-2000:]
        result = run_result(out)
        assert result["status"] == "succeeded" and step_statuses(result) == {"executed"}
        assert_clean("worker kills", auditor, settled=True)
        (crashes,) = auditor.query(
            f"SELECT COUNT(*) FROM attempts WHERE run_id = '{result['run_id']}' AND error LIKE 'StepCrashed%'"
        )[0]
        # A kill between jobs is found at the worker's next job; only those of the last idle workers go unseen.
        assert in_run - 2 <= crashes <= in_run, (in_run, crashes)
        crashed += crashes
    executions = len(auditor.executions())
    assert executions >= runs * 2 * partitions
    FIGURES.add("worker kills", kills=kills, attempts_crashed_and_retried=crashed, runs=runs, executions=executions)


# ---- SIGKILL of engines --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "partitions"), [pytest.param(5, 8, id="5"), pytest.param(150, 12, id="150", marks=pytest.mark.slow)]
)
def test_engines_killed_at_random_points_leave_a_consistent_store_and_resume(
    tmp_path: Path, zygote: Zygote, target: int, partitions: int
) -> None:
    """SIGKILL the engine and its workers at a random point (during start-up, planning, steps and commits):
    after each kill the store is consistent; after a few, a resume run completes the epoch without running
    anything committed again; at the end every killed run is found and marked abandoned."""
    rng = random.Random(SEED + 1)
    FIGURES.seeds["engine kills"] = SEED + 1
    root = write_project(tmp_path / "proj", rng, partitions, sleep=(0.005, 0.03), stale_after_s=1.0)
    auditor = Auditor(root)
    kills = resumes = finished_first = 0
    epoch, in_epoch, budget = 1, 0, rng.randint(2, 6)
    while kills < target:
        lines = len(auditor.executions())
        zygote.start(root, ["run", "--json", *epoch_args(epoch)])
        if rng.random() < 0.4:
            delay = rng.uniform(0.0, 0.5)  # from the start: start-up, planning, the first steps
        else:
            while len(auditor.executions()) == lines and not zygote.exited(0.005):
                pass
            delay = rng.uniform(0.0, 0.25)  # from the first step: steps running and committing
        if zygote.exited(delay):
            done = zygote.wait()  # it finished first: a resume that completed the epoch
            assert done.code == 0, done.output()[1][-2000:]
            finished_first += 1
            in_epoch, budget, epoch = 0, rng.randint(2, 6), epoch + 1
            continue
        zygote.kill()
        kills += 1
        in_epoch += 1
        assert_clean("engine kills", auditor)
        if in_epoch >= budget:
            done = zygote.run(root, ["run", "--json", *epoch_args(epoch)])
            out, err = done.output()
            assert done.code == 0, err[-2000:]
            result = run_result(out)
            assert result["status"] == "succeeded" and step_statuses(result) <= {"executed", "cached"}
            assert_clean("engine kills", auditor)
            resumes += 1
            in_epoch, budget, epoch = 0, rng.randint(2, 6), epoch + 1

    # After the stale period even a run killed before it took any lease is found and abandoned.
    time.sleep(1.3)
    done = zygote.run(root, ["run", "--json", *epoch_args(epoch)])
    assert done.code == 0, done.output()[1][-2000:]
    assert run_result(done.output()[0])["status"] == "succeeded"
    resumes += 1
    assert_clean("engine kills", auditor, settled=True)
    statuses = dict(auditor.query("SELECT status, COUNT(*) FROM runs GROUP BY status"))
    assert set(statuses) <= {"succeeded", "abandoned"}, statuses
    assert statuses.get("abandoned", 0) >= kills // 2, statuses  # most kills land after the run was recorded
    FIGURES.add(
        "engine kills", kills=kills, runs_abandoned=statuses.get("abandoned", 0), resumes=resumes + finished_first
    )


# ---- SIGINT and SIGTERM --------------------------------------------------------------------------

SIGNALS = {
    "SIGINT to the process group": (signal.SIGINT, True, 130),  # Ctrl-C in a terminal
    "SIGTERM to the engine": (signal.SIGTERM, False, 143),  # kill PID, docker stop, a scheduler
    "SIGTERM to the process group": (signal.SIGTERM, True, 143),  # systemd's default stop
}


@pytest.mark.parametrize("how", list(SIGNALS))
@pytest.mark.parametrize("rounds", [pytest.param(1, id="1"), pytest.param(8, id="8", marks=pytest.mark.slow)])
def test_a_signalled_run_stops_cleanly_and_a_rerun_resumes(
    tmp_path: Path, zygote: Zygote, how: str, rounds: int
) -> None:
    """A signal while steps run: exit 130 (SIGINT) or 143 (SIGTERM) with the command that resumes, the run
    recorded cancelled with nothing left running and no lease held; a rerun runs only what was not committed."""
    sig, group, code = SIGNALS[how]
    rng = random.Random(SEED + 2)
    FIGURES.seeds["signals"] = SEED + 2
    root = write_project(tmp_path / "proj", rng, 6, sleep=(0.05, 0.15))
    auditor = Auditor(root)
    stopped = 0
    for epoch in range(1, rounds + 1):
        lines = len(auditor.executions())
        started = zygote.start(root, ["run", *epoch_args(epoch)])
        while len(auditor.executions()) == lines and not zygote.exited(0.005):
            pass
        zygote.exited(rng.uniform(0.0, 0.3))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(started.pid, sig) if group else os.kill(started.pid, sig)
        done = zygote.wait()
        _, err = done.output()
        assert done.code == code, err[-2000:]
        assert "resume with: cairn run" in err and "Traceback" not in err, err
        ((status,),) = auditor.query("SELECT status FROM runs ORDER BY id DESC LIMIT 1")
        assert status == "cancelled"
        assert_clean("signals", auditor, settled=True)
        stopped += 1
        rerun = zygote.run(root, ["run", "--json", *epoch_args(epoch)])
        assert rerun.code == 0, rerun.output()[1][-2000:]
        assert run_result(rerun.output()[0])["status"] == "succeeded"
        assert_clean("signals", auditor, settled=True)
    FIGURES.add("signals", **{f"{how.split()[0]}_stops": stopped, "resumes": rounds})


# ---- full and failing disks: the artifact store --------------------------------------------------

ERRNOS = {"ENOSPC": errno.ENOSPC, "EIO": errno.EIO}


@pytest.fixture(scope="module")
def stored_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project materialized once (epoch 0, inline executor), copied by each fault case."""
    root = write_project(
        tmp_path_factory.mktemp("stored") / "proj", random.Random(SEED + 3), 3, executor="inline", sleep=(0.0, 0.0)
    )
    code, out = cli_in_process(root, ["run", "--json", *epoch_args(0)])
    assert code == 0, out
    return root


def copy_project(stored: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A copy of the stored project, and its objects' bytes (nothing of them may be lost)."""
    root = tmp_path / "proj"
    shutil.copytree(stored, root)
    objects = root / ".cairn" / "artifacts" / "objects"
    return root, {str(p.relative_to(objects)): p.read_bytes() for p in objects.glob("*/*")}


def assert_nothing_lost(root: Path, before: dict[str, bytes]) -> None:
    objects = root / ".cairn" / "artifacts" / "objects"
    lost = [
        name for name, data in before.items() if not (objects / name).is_file() or (objects / name).read_bytes() != data
    ]
    assert lost == [], f"stored objects lost or changed: {lost}"


# What each site's fault does to the run: cairn fails the step (exit 1), or it recovers by itself.
RECOVERS = {
    "link",  # a failed hard link falls back to a rename of the complete, fsynced temporary file
    "tmp-remove",  # the object is published; the temporary file left behind is for `cairn gc`
}


def sampled(cases: Sequence[tuple[str, ...]], step: int) -> list[object]:
    """Every case; the default suite runs one in `step` (each site once), the rest are marked slow."""
    return [
        pytest.param(*case, id="-".join(case), marks=() if i % step == 0 else pytest.mark.slow)
        for i, case in enumerate(cases)
    ]


ARTIFACT_CASES = [
    (site, code) for i, site in enumerate(ARTIFACT_SITES) for code in (list(ERRNOS)[i % 2], list(ERRNOS)[1 - i % 2])
]


@pytest.mark.parametrize(("site", "code"), sampled(ARTIFACT_CASES, 2))
def test_a_full_or_failing_disk_at_each_artifact_write_site(
    tmp_path: Path, stored_project: Path, site: str, code: str
) -> None:
    root, before = copy_project(stored_project, tmp_path)
    auditor = Auditor(root)
    store = root / ".cairn" / "artifacts"
    code_ = ERRNOS[code]
    with (
        os_faults(store, "link" if site == "replace" else site, code=code_) as first,
        os_faults(store, "replace", code=code_) if site == "replace" else contextlib.nullcontext(first) as fault,
    ):  # a replace is only reached when the link failed: that fails first
        exit_code, out = cli_in_process(root, ["run", *epoch_args(1)])
    assert first.raised == 1, f"the site {site} was never reached"
    assert fault.raised == 1, f"the site {site} was never reached"
    assert "Traceback" not in out, out
    if site in RECOVERS:
        assert exit_code == 0, out
    else:
        assert exit_code == 1, out
        assert os.strerror(ERRNOS[code]) in out and str(store) in out, out
        assert "resume with: cairn run" in out, out
    assert_clean("disk faults", auditor, settled=True)
    assert_nothing_lost(root, before)
    again, out = cli_in_process(root, ["run", "--json", *epoch_args(1)])
    assert again == 0, out
    assert step_statuses(run_result(out)) <= {"executed", "cached"}
    assert_clean("disk faults", auditor, settled=True)
    assert_nothing_lost(root, before)
    FIGURES.add("disk faults", artifact_faults_injected=first.raised + (fault.raised if fault is not first else 0))
    FIGURES.add("disk faults", resumes=1)


def test_a_disk_that_stays_full_fails_the_step_after_its_attempts_and_keeps_what_was_stored(
    tmp_path: Path, stored_project: Path
) -> None:
    root, before = copy_project(stored_project, tmp_path)
    (root / "cairn.toml").write_text(
        (root / "cairn.toml").read_text(encoding="utf-8").replace("max_attempts = 1,", "max_attempts = 3,"),
        encoding="utf-8",
    )
    with os_faults(root / ".cairn" / "artifacts", "tmp-write", times=10**6) as fault:
        exit_code, out = cli_in_process(root, ["run", *epoch_args(1)])
    assert exit_code == 1 and fault.raised >= 3, out
    assert os.strerror(errno.ENOSPC) in out and "resume with: cairn run" in out, out
    assert_clean("disk faults", Auditor(root), settled=True)
    assert_nothing_lost(root, before)
    again, out = cli_in_process(root, ["run", *epoch_args(1)])
    assert again == 0, out
    FIGURES.add("disk faults", artifact_faults_injected=fault.raised, resumes=1)


# ---- full and failing disks: the database --------------------------------------------------------

DB_MESSAGES = {"full": "database or disk is full", "ioerr": "disk I/O error"}
DB_FIXES = {"full": "is full: free space on it, then run the command again", "ioerr": "check its disk and file system"}


DB_CASES = [
    (site, error, at)
    for i, site in enumerate(site for site in DB_SITES if site != "any")
    for error, at in [(list(DB_MESSAGES)[(i + k // 2) % 2], ("statement", "commit")[(i + k) % 2]) for k in range(4)]
]


@pytest.mark.parametrize(("site", "error", "at"), sampled(DB_CASES, 4))
def test_a_full_or_failing_disk_at_each_database_write(
    tmp_path: Path, stored_project: Path, site: str, error: str, at: str
) -> None:
    root, before = copy_project(stored_project, tmp_path)
    auditor = Auditor(root)
    config = (root / "cairn.toml").read_text(encoding="utf-8")
    config = config.replace('kind = "inline"', 'kind = "thread"').replace("max_attempts = 1,", "max_attempts = 2,")
    (root / "cairn.toml").write_text(config, encoding="utf-8")
    # What makes the run write each kind of transaction: steps that outlast a heartbeat (heartbeats renew the
    # leases of running attempts), a first attempt that fails (an attempt ends), a partition that always fails
    # (its step record and its skipped child's are written on their own).
    knobs = {
        "slow": 0.25 if site in ("heartbeat", "renew") else 0.0,
        "flaky": site == "end-attempt",
        "broken": ["p002"] if site == "steps" else [],
    }
    (root / "knobs.json").write_text(json.dumps(knobs), encoding="utf-8")
    with sqlite_faults(auditor.db, site, error=error, at=at) as fault:
        exit_code, out = cli_in_process(root, ["run", *epoch_args(1)])
    assert fault.raised == 1, f"no {site} transaction was written"
    assert "Traceback" not in out, out
    assert exit_code == 1, out
    assert DB_MESSAGES[error] in out and DB_FIXES[error] in out and str(auditor.db) in out, out
    assert_clean("disk faults", auditor)
    assert_nothing_lost(root, before)
    if site == "finish":
        time.sleep(1.2)  # the run could not be marked finished: the next run finds it stale
    (root / "knobs.json").unlink()
    again, out = cli_in_process(root, ["run", "--json", *epoch_args(1)])
    assert again == 0, out
    assert step_statuses(run_result(out)) <= {"executed", "cached"}
    assert_clean("disk faults", auditor, settled=True)
    assert_nothing_lost(root, before)
    FIGURES.add("disk faults", database_faults_injected=fault.raised, resumes=1)


# ---- damaged stores ------------------------------------------------------------------------------


def garble(path: Path, offset: int, size: int, rng: random.Random) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(bytes(rng.randrange(256) for _ in range(size)))


def damage_database(db: Path, how: str, rng: random.Random) -> None:
    if how == "truncated":
        os.truncate(db, db.stat().st_size // 2)
    elif how == "header garbled":
        garble(db, 0, 100, rng)
    else:  # the first page of the materializations table: its b-tree page header and cells
        with contextlib.closing(sqlite3.connect(db)) as conn:
            (page_size,) = conn.execute("PRAGMA page_size").fetchone()
            (root_page,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'materializations'").fetchone()
        garble(db, (root_page - 1) * page_size, 64, rng)


def move_aside(path: Path) -> None:
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if part.exists():
            os.replace(part, part.with_name(part.name + ".damaged"))


def objects_of(root: Path) -> set[str]:
    objects = root / ".cairn" / "artifacts" / "objects"
    return {str(p.relative_to(objects)) for p in objects.glob("*/*")}


@pytest.mark.parametrize("how", ["truncated", "header garbled", "table garbled"])
def test_a_damaged_database_is_reported_with_the_fix_and_the_fix_works(
    tmp_path: Path, stored_project: Path, how: str
) -> None:
    """Every command that needs the damaged database exits 1 saying that the file is damaged and how to move it
    aside; done so, a run rebuilds the records, writing the very objects that are already stored."""
    root, before = copy_project(stored_project, tmp_path)
    db = root / ".cairn" / "cairn.db"
    damage_database(db, how, random.Random(SEED + 4))
    for args in (["run", *epoch_args(1)], ["status"]):
        code, out = cli_in_process(root, args)
        assert code == 1, out
        assert "is damaged" in out and f"mv {db} {db}.damaged" in out and "Traceback" not in out, out
    assert_nothing_lost(root, before)

    move_aside(db)
    (root / "executions.log").rename(root / "executions.before.log")  # its runs were in the damaged file
    code, out = cli_in_process(root, ["run", "--json", *epoch_args(0)])
    assert code == 0, out
    assert step_statuses(run_result(out)) == {"executed"}  # no record survived: everything runs again
    assert objects_of(root) == set(before), "running again must write the objects that are stored, byte for byte"
    assert_nothing_lost(root, before)
    assert_clean("damaged stores", Auditor(root), settled=True)
    FIGURES.add("damaged stores", databases_damaged=1, resumes=1)


def test_a_deleted_database_is_rebuilt_by_running_again_and_keeps_every_object(
    tmp_path: Path, stored_project: Path
) -> None:
    root, before = copy_project(stored_project, tmp_path)
    for path in (root / ".cairn").glob("cairn.db*"):
        path.unlink()
    (root / "executions.log").rename(root / "executions.before.log")
    code, out = cli_in_process(root, ["run", "--json", *epoch_args(0)])
    assert code == 0, out
    assert step_statuses(run_result(out)) == {"executed"}
    assert objects_of(root) == set(before)
    assert_nothing_lost(root, before)
    assert_clean("damaged stores", Auditor(root), settled=True)
    FIGURES.add("damaged stores", databases_deleted=1, resumes=1)


def object_of(auditor: Auditor, asset: str, partition: str) -> Path:
    ((version,),) = auditor.query(
        f"SELECT data_version FROM materializations WHERE asset = '{asset}' AND partition = '{partition}'"
    )
    hexdigest = str(version).removeprefix("b3:")
    return auditor.objects / hexdigest[:2] / hexdigest[2:]


@pytest.mark.parametrize("how", ["flipped", "deleted"])
@pytest.mark.parametrize("found_by", ["verify", "a reading step"])
def test_a_damaged_or_missing_object_is_found_and_recomputed(
    tmp_path: Path, stored_project: Path, how: str, found_by: str
) -> None:
    """`cairn verify` names the object (and moves a damaged one to quarantine), or the step that reads it finds
    it; either way the next run recomputes it, and no other stored object is touched."""
    root, before = copy_project(stored_project, tmp_path)
    auditor = Auditor(root)
    victim = object_of(auditor, "w", "p000")
    name = str(victim.relative_to(auditor.objects))
    if how == "flipped":
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
    else:
        victim.unlink()
    if found_by == "verify":
        code, out = cli_in_process(root, ["verify"])
        assert code == 1, out
        assert ("corrupt" if how == "flipped" else "missing") in out and "w@p000" in out, out
        assert "the next `cairn run` recomputes" in out, out
        args = ["run", "--json", *epoch_args(0)]
    else:
        args = ["run", "--json", "--set", "w.epoch=0", "--set", "v.epoch=7"]  # v reads every w again
    code, out = cli_in_process(root, args)
    assert code == 0, out
    assert run_result(out)["status"] == "succeeded"
    assert victim.read_bytes() == before[name], "the recomputed object has the original bytes"
    assert_nothing_lost(root, before)
    assert_clean("damaged stores", auditor, settled=True, lost=frozenset({("w", "p000")}))
    code, out = cli_in_process(root, ["verify"])
    assert code == 0, out
    FIGURES.add("damaged stores", objects_damaged=1, resumes=1)


@pytest.mark.parametrize("error", ["full", pytest.param("ioerr", marks=pytest.mark.slow)])
def test_a_database_disk_that_stays_full_stops_the_run_and_a_later_run_reaps_it(
    tmp_path: Path, stored_project: Path, error: str
) -> None:
    """From the first claim on, every write fails (even the run's final status): the run stops with the fix
    named; once the disk has space again, the next run finds the stopped one stale, abandons it and resumes."""
    root, before = copy_project(stored_project, tmp_path)
    auditor = Auditor(root)
    with sqlite_faults(auditor.db, "any", nth=3, error=error, times=10**6) as fault:  # after the run's row
        exit_code, out = cli_in_process(root, ["run", *epoch_args(1)])
    assert exit_code == 1 and fault.raised >= 2, out  # the claim, then the final status
    assert DB_MESSAGES[error] in out and DB_FIXES[error] in out and "Traceback" not in out, out
    ((status,),) = auditor.query("SELECT status FROM runs ORDER BY id DESC LIMIT 1")
    assert status == "running"  # nothing could be written: found stale by the next run
    assert_clean("disk faults", auditor)
    assert_nothing_lost(root, before)
    time.sleep(1.2)
    again, out = cli_in_process(root, ["run", "--json", *epoch_args(1)])
    assert again == 0, out
    assert_clean("disk faults", auditor, settled=True)
    ((status,),) = auditor.query("SELECT status FROM runs ORDER BY id DESC LIMIT 1 OFFSET 1")
    assert status == "abandoned"
    assert_nothing_lost(root, before)
    FIGURES.add("disk faults", database_faults_injected=fault.raised, resumes=1)


# ---- the seam itself -----------------------------------------------------------------------------


def test_os_faults_fail_only_the_chosen_call_at_the_site_under_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "tmp").mkdir(parents=True)
    with os_faults(store, "tmp-write", nth=2, code=errno.EIO) as fault:
        (tmp_path / "elsewhere.bin").write_bytes(b"not under the store")
        fd = os.open(store / "tmp" / "a.part", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"1")
            with pytest.raises(OSError, match="Input/output error"):
                os.write(fd, b"2")
            os.write(fd, b"3")
        finally:
            os.close(fd)
    assert (fault.calls, fault.raised) == (3, 1)
    assert (store / "tmp" / "a.part").read_bytes() == b"13"


def test_sqlite_faults_fail_the_chosen_transaction_and_it_rolls_back(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE logs (x INTEGER)")
    with (
        sqlite_faults(db, "logs", nth=2, at="commit") as fault,
        contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn,
    ):
        cur = conn.cursor()
        for i in range(3):
            cur.execute("BEGIN IMMEDIATE")
            cur.execute("INSERT INTO logs VALUES (?)", (i,))
            try:
                cur.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                assert "database or disk is full" in str(exc)
                cur.execute("ROLLBACK")
        cur.close()
    assert (fault.seen, fault.raised) == (3, 1)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT x FROM logs ORDER BY x").fetchall() == [(0,), (2,)]
