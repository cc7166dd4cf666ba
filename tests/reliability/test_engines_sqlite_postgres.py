"""Several engines, each its own process, sharing one metadata database: an SQLite file and PostgreSQL alike.

The assets log what really ran to ``executions.log`` (see test_concurrency), independently of what the
engines report.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cairn.errors import LeaseLost
from cairn.storage.metadata import open_metadata
from cairn.testing.metadata import make_mat, make_step, start_run
from tests.reliability.test_concurrency import (
    SLOW_ASSETS,
    SLOW_DAG,
    executions,
    make_project,
    query,
    start_engine,
    started,
    stop,
)

# What must never reach a user from a healthy shared database.
LOCK_ERRORS = ("locked", "busy", "deadlock", "could not serialize", "Traceback")

# Four overlapping selections: s1 is in all of them, every asset in at least two.
SELECTIONS: list[tuple[str, ...]] = [("+top",), ("+m0", "solo"), ("+m1",), ()]


def run_engines(root: Path, selections: list[tuple[str, ...]]) -> list[dict[str, Any]]:
    """Start one engine per selection at once, wait for all, check none failed or met a lock error."""
    procs = [start_engine(root, *selection) for selection in selections]
    try:
        outputs = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            stop(proc)
    results = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert not [word for word in LOCK_ERRORS if word in err.lower() or word in out.lower()], err
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_four_engines_with_overlapping_selections_compute_every_shared_key_once(
    tmp_path: Path, database_url: str
) -> None:
    root, _ = make_project(tmp_path / "proj", SLOW_DAG, database=database_url)
    results = run_engines(root, SELECTIONS)

    assert [r["status"] for r in results] == ["succeeded"] * len(SELECTIONS)
    expected = [
        {"s0", "s1", "s2", "m0", "m1", "top"},
        {"s0", "s1", "m0", "solo"},
        {"s1", "s2", "m1"},
        SLOW_ASSETS,
    ]
    for result, assets in zip(results, expected, strict=True):
        assert {s["asset"]: s["status"] in ("executed", "cached") for s in result["steps"]} == dict.fromkeys(
            assets, True
        )
    # Every asset's function ran once in all, and exactly one run reports executing it.
    assert started(root) == Counter(dict.fromkeys(SLOW_ASSETS, 1))
    executed = Counter(s["asset"] for r in results for s in r["steps"] if s["status"] == "executed")
    assert executed == Counter(dict.fromkeys(SLOW_ASSETS, 1))
    # One materialization per cache key, and the engines agree on every key and data version.
    rows = query(root, "SELECT cache_key, COUNT(*) FROM materializations GROUP BY cache_key")
    assert sorted(n for _, n in rows) == [1] * len(SLOW_ASSETS)
    seen: dict[str, set[tuple[str, str]]] = {}
    for result in results:
        for step in result["steps"]:
            seen.setdefault(step["asset"], set()).add((step["cache_key"], step["data_version"]))
    assert all(len(versions) == 1 for versions in seen.values()), seen
    assert sorted(status for (status,) in query(root, "SELECT status FROM runs")) == ["succeeded"] * 4


KILLED = """
@cairn.asset
def x(ctx):
    first = calls("x") == 1
    log("x", ctx.run_id, "start")
    if first:
        time.sleep(600)  # the first engine is killed in here
    return {"v": 1}


@cairn.asset
def y(ctx, x):
    log("y", ctx.run_id, "start")
    return {"v": x["v"] + 1}
"""


def test_an_engine_killed_mid_step_is_taken_over_by_the_next_engine(tmp_path: Path, database_url: str) -> None:
    """The killed engine's lease outlives it; the next engine sees that its process is gone, abandons its
    run and computes the step itself (lease expiry covers engines on other machines: see below)."""
    root, _ = make_project(tmp_path / "proj", KILLED, database=database_url, engine="lease_ttl_s = 600\n")
    first = start_engine(root)
    try:
        deadline = time.monotonic() + 60
        while not started(root) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started(root) == Counter({"x": 1}), "the first engine did not start x"
    finally:
        stop(first)  # SIGKILL to the engine and its workers, and reaped
    [(dead_run,)] = query(root, "SELECT run_id FROM runs")

    second = subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", "-C", str(root), "run", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert (result["status"], {s["asset"]: s["status"] for s in result["steps"]}) == (
        "succeeded",
        {"x": "executed", "y": "executed"},
    )
    runs = dict(query(root, "SELECT run_id, status FROM runs"))
    assert runs == {dead_run: "abandoned", result["run_id"]: "succeeded"}
    assert query(root, "SELECT asset, run_id FROM materializations ORDER BY asset") == [
        ("x", result["run_id"]),
        ("y", result["run_id"]),
    ]
    x_key = next(s["cache_key"] for s in result["steps"] if s["asset"] == "x")
    assert query(root, "SELECT token FROM leases WHERE cache_key = ?", (x_key,)) == [(2,)]
    assert [(asset, what) for asset, _, what, _ in executions(root)] == [("x", "start"), ("x", "start"), ("y", "start")]


HOLDER = textwrap.dedent(
    """
    import json, sys, time
    from cairn.storage.metadata import open_metadata
    from cairn.testing.metadata import start_run

    store = open_metadata(sys.argv[1], sys.argv[2])
    start_run(store, "dead")
    # An engine on another machine: no process of this host to look for, only the lease's expiry.
    token = store.acquire_lease("k", "dead", "elsewhere:1", ttl_s=3.0)
    slot = store.acquire_pool_slot("db", 1, "dead", "elsewhere:1", ttl_s=3.0)
    [holder] = store.pool_holders("db")
    print(json.dumps([token, slot.token, store.lease_holder("k")[1], holder.expires_at]), flush=True)
    time.sleep(600)
    """
)


def take_when_free(take: Any) -> Any:
    """Call `take` until it returns something (the database says the lease expired), for at most 60 s."""
    deadline = time.monotonic() + 60
    while (got := take()) is None:
        assert time.monotonic() < deadline, "the lease of the killed process never expired"
        time.sleep(0.05)
    return got


def test_a_lease_and_a_pool_slot_of_a_killed_process_expire_on_the_database_clock(
    tmp_path: Path, database_url: str
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, database_url, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        token, slot_token, lease_expiry, slot_expiry = json.loads(holder.stdout.readline())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    assert (token, slot_token) == (1, 1)

    with open_metadata(database_url, tmp_path) as store:
        start_run(store, "alive")
        taken = take_when_free(lambda: store.acquire_lease("k", "alive", "here:2", ttl_s=600))
        slot = take_when_free(lambda: store.acquire_pool_slot("db", 1, "alive", "here:2", ttl_s=600))
        # Taken over with the next tokens, and only once the database's clock had passed the expiries.
        assert (taken, slot.token) == (2, 2)
        lease = store.lease_holder("k")
        assert lease is not None and lease[1] - 600 >= lease_expiry
        [now_holding] = store.pool_holders("db")
        assert now_holding.run_id == "alive" and now_holding.expires_at - 600 >= slot_expiry
        # What the dead process might still try to commit is fenced off.
        late = make_mat("k", run_id="dead")
        with pytest.raises(LeaseLost):
            store.commit_materialization(late, make_step(late), ("k", 1))
        assert store.find_by_cache_key("k") is None


LAYERS, WIDTH, ROUNDS = 4, 6, 5
WIDE_DAG = "".join(
    f"""

@cairn.asset(params={{"k": 0}})
def l0_{i}(ctx):
    log("l0_{i}", ctx.run_id, "start")
    time.sleep(0.02)
    log("l0_{i}", ctx.run_id, "end")
    return ctx.params["k"] + {i}
"""
    for i in range(WIDTH)
) + "".join(
    f"""

@cairn.asset({'pool="db"' if layer == 2 else ""})
def l{layer}_{i}(ctx, l{layer - 1}_{i}, l{layer - 1}_{(i + 1) % WIDTH}):
    log("l{layer}_{i}", ctx.run_id, "start")
    time.sleep(0.02)
    log("l{layer}_{i}", ctx.run_id, "end")
    return l{layer - 1}_{i} + l{layer - 1}_{(i + 1) % WIDTH}
"""
    for layer in range(1, LAYERS)
    for i in range(WIDTH)
)
WIDE_ASSETS = {f"l{layer}_{i}" for layer in range(LAYERS) for i in range(WIDTH)}
TWO_SLOTS = """
[pools]
db = 2
"""


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals open at the same moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    open_now = peak = 0
    for _, change in events:
        open_now += change
        peak = max(peak, open_now)
    return peak


@pytest.mark.slow
def test_rounds_of_four_engines_on_a_wider_dag_compute_every_key_once_within_the_pool(
    tmp_path: Path, database_url: str
) -> None:
    """Five rounds; each changes every root's param, so that all 24 keys are new and the four engines
    contend for all of them again (and for the two slots of the pool of the middle layer)."""
    root, _ = make_project(tmp_path / "proj", WIDE_DAG, extra=TWO_SLOTS, database=database_url)
    last = [f"l{LAYERS - 1}_{i}" for i in range(WIDTH)]
    selections = [("+" + last[0], "+" + last[1]), ("+" + last[2], "+" + last[3]), ("+" + last[4], "+" + last[0]), ()]
    seen = 0
    for round_ in range(1, ROUNDS + 1):
        settings = tuple(arg for i in range(WIDTH) for arg in ("--set", f"l0_{i}.k={round_}"))
        results = run_engines(root, [(*selection, *settings) for selection in selections])
        assert [r["status"] for r in results] == ["succeeded"] * 4
        lines = executions(root)[seen:]
        seen += len(lines)
        assert Counter(asset for asset, _, what, _ in lines if what == "start") == Counter(
            dict.fromkeys(WIDE_ASSETS, 1)
        ), f"round {round_}"
        spans: dict[str, list[float]] = {}
        for asset, _, _, when in lines:
            if asset.startswith("l2_"):
                spans.setdefault(asset, []).append(when)
        assert most_at_once([(min(t), max(t)) for t in spans.values()]) <= 2, f"round {round_}: pool exceeded"
    rows = query(root, "SELECT cache_key, COUNT(*) FROM materializations GROUP BY cache_key")
    assert len(rows) == ROUNDS * len(WIDE_ASSETS) and {n for _, n in rows} == {1}
