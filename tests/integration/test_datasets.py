"""Snapshots (pinned dataset versions) and backfills (recorded, resumable partition ranges)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cairn
from cairn.errors import UsageError
from tests.conftest import ProjectFactory

CHAIN = """
from cairn import Context, asset, daily, source

DAYS = daily("2026-06-01", end="2026-06-07")

raw = source("raw", path="data/raw_{partition}.json", partitions=DAYS)

@asset(partitions=DAYS)
def clean(raw: dict) -> int:
    return sum(raw["values"])

@asset(partitions=DAYS)
def doubled(clean: int) -> int:
    return clean * 2
"""

SLOW = """
import os
import time
from pathlib import Path
from cairn import Context, asset, daily

DAYS = daily("2026-06-01", end="2026-06-13")

@asset(partitions=DAYS)
def slow(ctx: Context) -> str:
    with open(Path(__file__).with_name("executions.log"), "a") as log:
        log.write(f"{ctx.partition} {ctx.run_id}\\n")
    time.sleep(0.4)
    return ctx.partition
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", *args], capture_output=True, text=True, timeout=180, check=False
    )


@pytest.fixture
def chain(make_project: ProjectFactory) -> Path:
    root = make_project(CHAIN)
    (root / "data").mkdir()
    for d in range(1, 7):
        (root / "data" / f"raw_2026-06-0{d}.json").write_text(json.dumps({"values": [d]}))
    return root


def test_snapshot_pins_versions_that_later_runs_do_not_overwrite(chain: Path) -> None:
    assert cairn.materialize(project=chain).ok
    created = cli("snapshot", "create", "v1", "clean", "-C", str(chain), "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout) == {"name": "v1", "entries": 6}
    (chain / "data" / "raw_2026-06-02.json").write_text(json.dumps({"values": [100]}))
    assert cairn.materialize(project=chain).ok
    assert cairn.load("clean", "2026-06-02", project=chain) == 100
    assert cairn.load("clean", "2026-06-02", project=chain, snapshot="v1") == 2
    listed = json.loads(cli("snapshot", "list", "-C", str(chain), "--json").stdout)
    assert [(s["name"], s["entries"]) for s in listed] == [("v1", 6)]
    shown = json.loads(cli("snapshot", "show", "v1", "-C", str(chain), "--json").stdout)
    assert {row["partition"] for row in shown} == {f"2026-06-0{d}" for d in range(1, 7)}
    again = cli("snapshot", "create", "v1", "-C", str(chain))
    assert again.returncode == 2 and "already exists" in again.stderr
    with pytest.raises(UsageError, match="snapshot 'v2' does not exist. Known snapshots: v1"):
        cairn.load("clean", "2026-06-02", project=chain, snapshot="v2")


def test_a_run_can_read_its_inputs_from_a_snapshot(chain: Path) -> None:
    cairn.materialize(project=chain)
    cli("snapshot", "create", "before", "clean", "-C", str(chain))
    (chain / "data" / "raw_2026-06-03.json").write_text(json.dumps({"values": [50]}))
    result = cairn.materialize("doubled", project=chain, snapshot="before", partition="2026-06-03")
    assert result["clean@2026-06-03"].reason == "pinned by snapshot before"
    assert result["doubled@2026-06-03"].status == "cached"  # same inputs as before: nothing to recompute
    fresh = cairn.materialize("doubled", project=chain, partition="2026-06-03")
    assert cairn.load("doubled", "2026-06-03", project=chain) == 100 and fresh.ok
    again = cairn.materialize("doubled", project=chain, snapshot="before", partition="2026-06-03")
    assert again["doubled@2026-06-03"].status == "cached" and cairn.load("doubled", "2026-06-03", project=chain) == 100
    show = json.loads(cli("show", again.run_id, "-C", str(chain), "--json").stdout)
    assert show["args"]["snapshot"] == "before"


def test_backfill_killed_half_way_and_resumed_executes_each_partition_once(make_project: ProjectFactory) -> None:
    root = make_project(SLOW, executor="process")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cairn.cli.main",
            "-C",
            str(root),
            "backfill",
            "slow",
            "--from",
            "2026-06-01",
            "--to",
            "2026-06-12",
            "--workers",
            "2",
            "--json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    log = root / "executions.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 5):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    status = json.loads(cli("backfill", "status", "-C", str(root), "--json").stdout)
    assert len(status) == 1 and status[0]["total"] == 12 and 0 < status[0]["done"] < 12
    backfill_id = status[0]["backfill_id"]
    resumed = cli("backfill", "resume", backfill_id[:12], "-C", str(root), "--json")
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads(cli("backfill", "status", backfill_id, "-C", str(root), "--json").stdout)[0]
    assert (final["status"], final["done"], final["total"], len(final["runs"])) == ("succeeded", 12, 12, 2)
    executed = json.loads(resumed.stdout)
    committed_before = {s["partition"] for s in executed["steps"] if s["status"] == "cached"}
    lines = [line.split() for line in log.read_text().splitlines()]
    by_partition: dict[str, list[str]] = {}
    for partition, run_id in lines:
        by_partition.setdefault(partition, []).append(run_id)
    assert set(by_partition) == {f"2026-06-{d:02d}" for d in range(1, 13)}
    for partition in committed_before:
        assert by_partition[partition][-1] != executed["run_id"], partition  # committed steps never ran again
    assert all(len(runs) == 1 for p, runs in by_partition.items() if p in committed_before)


def test_backfill_needs_a_range(make_project: ProjectFactory) -> None:
    root = make_project(SLOW)
    out = cli("backfill", "slow", "-C", str(root))
    assert out.returncode == 2 and "a backfill needs a range" in out.stderr
