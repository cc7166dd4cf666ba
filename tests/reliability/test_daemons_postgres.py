"""Several daemons, each its own process, on one metadata database (PostgreSQL, and an SQLite file alike):
every tick is claimed and run exactly once, and a daemon that dies leaves nothing stuck.

The daemons run on injected clocks (`ManualClock`) that start at the same instant and move on by what each
daemon sleeps, so 200 minutes of ticks take seconds, and both daemons race for every one of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from cairn.storage.metadata import open_metadata

START = "2026-06-01T00:00:00+00:00"

ASSETS = """
from pathlib import Path
import time
from cairn import RunRequest, asset, schedule, sensor

@asset
def report() -> int:
    return 1

@asset
def slow() -> int:
    Path(__file__).with_name("slow-started").touch()
    time.sleep(600)  # the daemon running it is killed in here
    return 2
"""

PIPELINE = (
    ASSETS
    + """
minutely = schedule("minutely", "* * * * *", select="report")


@sensor(select="report", interval_s=1)
def every_ten(ctx):
    if ctx.now.minute % 10 == 0:
        return RunRequest(run_key=ctx.now.strftime("%H:%M"))
"""
)

KILLED = (
    ASSETS
    + """
minutely = schedule("minutely", "* * * * *", select="slow")
"""
)

DRIVER = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime
    from pathlib import Path
    from cairn.automation.clock import ManualClock
    from cairn.automation.daemon import Daemon

    root, name, start, ticks, peers = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    (root / f"ready-{name}").touch()
    while len(list(root.glob("ready-*"))) < peers:  # start together, so that they race for every tick
        time.sleep(0.005)
    daemon = Daemon(root, clock=ManualClock(datetime.fromisoformat(start)), interval_s=60, owner=name)
    print(daemon.run(max_ticks=ticks))
    """
)


def write_project(root: Path, database: str, body: str = PIPELINE, engine: str = "") -> Path:
    root.mkdir(parents=True)
    (root / "cairn.toml").write_text(
        textwrap.dedent(
            f"""\
            [project]
            name = "daemons"
            modules = ["pipeline"]

            [storage]
            database = "{database}"

            [executor]
            kind = "inline"

            [engine]
            heartbeat_s = 0.2
            {engine}
            """
        ),
        encoding="utf-8",
    )
    (root / "pipeline.py").write_text(textwrap.dedent(body), encoding="utf-8")
    return root


def start_daemon(root: Path, name: str, ticks: int, peers: int, start: str = START) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(root), name, start, str(ticks), str(peers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def rows(root: Path, database: str, query: str, *params: object) -> list[tuple[object, ...]]:
    with open_metadata(database, root) as meta:
        return [tuple(row) for row in meta._rows("test", query, params)]


@pytest.mark.parametrize("backend", [pytest.param("sqlite", marks=pytest.mark.slow), "postgresql"])
def test_two_daemons_never_double_trigger_over_200_ticks(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    database_url = "sqlite:///.cairn/cairn.db" if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))
    root = write_project(tmp_path / "proj", database_url)
    daemons = [start_daemon(root, name, 200, 2) for name in ("a", "b")]
    try:
        outputs = [d.communicate(timeout=600) for d in daemons]
    finally:
        for d in daemons:
            if d.poll() is None:
                d.kill()
                d.wait()
    for d, (out, err) in zip(daemons, outputs, strict=True):
        assert d.returncode == 0 and out.strip() == "200", err
        assert "Traceback" not in err and "locked" not in err.lower(), err

    ticks = rows(root, database_url, "SELECT kind, name, due_at, request, status, owner, run_id FROM ticks")
    schedule = [t for t in ticks if t[0] == "schedule"]
    sensor = [t for t in ticks if t[0] == "sensor"]
    # Every minute's tick is recorded once and ran once. The sensor's requests (every tenth minute) are each
    # run at most once; as each daemon has its own test clock, an evaluation that loses the race to commit the
    # sensor's state to the other daemon's evaluation of another minute is dropped, so some minutes may not fire.
    start = rows(root, database_url, "SELECT MIN(due_at) FROM ticks")[0][0]
    assert sorted(float(t[2]) - float(start) for t in schedule) == [60.0 * n for n in range(200)]  # type: ignore[arg-type]
    keys = [str(t[3]) for t in sensor]
    assert len(keys) == len(set(keys)) and set(keys) <= {f"{m // 60:02d}:{m % 60:02d}" for m in range(0, 200, 10)}
    assert len(keys) >= 10, keys
    assert {t[4] for t in ticks} == {"succeeded"}
    run_ids = [t[6] for t in ticks]
    assert len(set(run_ids)) == len(run_ids) == 200 + len(keys)
    runs = rows(root, database_url, "SELECT run_id, status FROM runs")
    assert sorted(str(r[0]) for r in runs) == sorted(str(r) for r in run_ids)  # no run without its tick
    # Both daemons won ticks: they really raced.
    owners = Counter(str(t[5]) for t in ticks)
    assert set(owners) == {"a", "b"} and min(owners.values()) >= 10, owners


def test_a_killed_daemons_run_is_abandoned_and_its_tick_finished_by_the_next(tmp_path: Path, database_url: str) -> None:
    root = write_project(tmp_path / "proj", database_url, KILLED, engine="stale_after_s = 1")
    first = start_daemon(root, "a", 5, 1)
    try:
        deadline = time.monotonic() + 120
        while not (root / "slow-started").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (root / "slow-started").exists(), "the first daemon did not start the slow run"
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the daemon and everything it started
        first.communicate(timeout=30)
    [(status, run_id)] = rows(root, database_url, "SELECT status, run_id FROM ticks")
    assert status == "running" and run_id
    time.sleep(1.5)  # the dead run's heartbeat goes stale ([engine] stale_after_s = 1)

    (root / "ready-a").unlink()
    second = start_daemon(root, "b", 1, 1, start="2026-06-01T00:00:30+00:00")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert rows(root, database_url, "SELECT status FROM runs WHERE run_id = ?", run_id) == [("abandoned",)]
    assert rows(root, database_url, "SELECT status, owner, due_at FROM ticks") == [("abandoned", "a", 1780272000.0)]
