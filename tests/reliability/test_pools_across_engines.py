"""Pool slot limits hold across engines that share one metadata database (SQLite and PostgreSQL alike).

The pooled assets log their start and end (``executions.log``, see test_concurrency); the intervals of a
one-slot pool must never overlap, whichever engine ran them.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from cairn.storage.metadata import open_metadata
from tests.reliability.test_concurrency import (
    executions,
    make_project,
    pooled_assets,
    query,
    start_engine,
    started,
    stop,
)
from tests.reliability.test_engines_sqlite_postgres import run_engines

POOLED = pooled_assets(6, 0.3)
ONE_SLOT = """
[pools]
db = 1
"""


def intervals(root: Path) -> list[tuple[float, float]]:
    """(start, end) of every pooled function call, in start order."""
    spans: dict[tuple[str, str], list[float]] = {}
    for asset, run_id, _, when in executions(root):
        spans.setdefault((asset, run_id), []).append(when)
    return sorted((min(times), max(times)) for times in spans.values())


def test_a_one_slot_pool_holds_across_three_engines(tmp_path: Path, database_url: str) -> None:
    """Each engine could run two of its pooled steps at once; across all three, one runs at a time, and the
    steps that found the slot taken by another engine waited for it rather than failed."""
    root, _ = make_project(tmp_path / "proj", POOLED, extra=ONE_SLOT, database=database_url)
    results = run_engines(root, [("q0", "q1"), ("q2", "q3"), ("q4", "q5")])

    assert [r["status"] for r in results] == ["succeeded"] * 3
    assert Counter(s["status"] for r in results for s in r["steps"]) == Counter({"executed": 6})
    assert started(root) == Counter({f"q{k}": 1 for k in range(6)})
    spans = intervals(root)
    assert len(spans) == 6
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"steps of the one-slot pool overlapped: {spans}"
    with open_metadata(database_url, root) as store:
        assert store.pool_holders("db") == []  # every slot was given back


HOGGED = """
@cairn.asset(pool="db")
def hog(ctx):
    first = calls("hog") == 1
    log("hog", ctx.run_id, "start")
    if first:
        time.sleep(600)  # its engine is killed in here, holding the pool's only slot
    return 1


@cairn.asset(pool="db")
def other(ctx):
    log("other", ctx.run_id, "start")
    return 2
"""


def test_the_slot_of_a_killed_engine_is_freed_for_the_next_engine(tmp_path: Path, database_url: str) -> None:
    """A slot's lease lasts 600 s here: the next engine does not wait for it to expire, as it sees that the
    holder's process is gone from this machine and abandons its run, which frees its slots."""
    root, _ = make_project(
        tmp_path / "proj", HOGGED, extra=ONE_SLOT, database=database_url, engine="lease_ttl_s = 600\n"
    )
    first = start_engine(root, "hog")
    try:
        deadline = time.monotonic() + 60
        while not started(root) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started(root) == Counter({"hog": 1}), "the first engine did not start hog"
    finally:
        stop(first)
    with open_metadata(database_url, root) as store:
        [held] = store.pool_holders("db")
    assert held.step == "hog"

    second = subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", "-C", str(root), "run", "--json", "other"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert (result["status"], [s["status"] for s in result["steps"]]) == ("succeeded", ["executed"])
    runs = dict(query(root, "SELECT run_id, status FROM runs"))
    assert runs == {held.run_id: "abandoned", result["run_id"]: "succeeded"}
