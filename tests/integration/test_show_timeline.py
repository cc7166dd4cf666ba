"""`cairn show RUN --timeline`: a Gantt chart of a run's attempts in the terminal, retries side by side, and its
data with --json (real SQLite, the CLI in a subprocess)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

from rich.console import Console

from cairn.cli.common import STATUS_STYLE
from cairn.cli.timeline import FAILED_SHADE, FULL, bar_width, cells, print_timeline
from tests.conftest import ProjectFactory, cli

# `flaky` fails its first attempt (a data problem that the retry, after a pause, no longer meets) and
# `report` reads it; a second run finds both cached.
PIPELINE = """

from cairn import Retry, asset

@asset
def numbers() -> list[int]:
    return [1, 2, 3]

@asset(retry=Retry(max_attempts=2, backoff=0.3, jitter=False))
def flaky(numbers: list[int]) -> int:
    import pathlib

    marker = pathlib.Path(__file__).with_name("flaky-failed-once")
    if not marker.exists():
        marker.write_text("x")
        raise RuntimeError("first attempt fails")
    return sum(numbers)

@asset
def report(flaky: int) -> str:
    return f"total {flaky}"
"""


def coloured_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with Rich's colours forced on (its output is not a terminal here)."""
    env = {**os.environ, "COLUMNS": "120", "FORCE_COLOR": "1"}
    env.pop("NO_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_the_timeline_shows_each_attempt_of_a_retried_step_on_the_runs_time_axis(
    make_project: ProjectFactory,
) -> None:
    root = make_project(PIPELINE)
    first = json.loads(cli("-C", str(root), "run", "--json").stdout)
    assert first["status"] == "succeeded"
    run_id = first["run_id"]

    out = cli("-C", str(root), "show", run_id, "--timeline", "--json")
    assert out.returncode == 0, out.stderr
    view: dict[str, Any] = json.loads(out.stdout)
    assert (view["run_id"], view["status"], view["without_attempts"]) == (run_id, "succeeded", 0)
    rows = {r["step"]: r for r in view["rows"]}
    assert [r["step"] for r in view["rows"]] == ["numbers", "flaky", "report"]  # by first attempt's start
    assert {s: r["status"] for s, r in rows.items()} == {
        "numbers": "executed",
        "flaky": "executed",
        "report": "executed",
    }
    failed, retried = rows["flaky"]["bars"]
    assert (failed["attempt"], failed["status"], retried["attempt"], retried["status"]) == (1, "failed", 2, "succeeded")
    assert "first attempt fails" in failed["error"] and retried["error"] is None
    assert failed["end_s"] <= retried["start_s"], "the retry started before its failed attempt ended"
    bars = [b for r in view["rows"] for b in r["bars"]]
    assert all(0 <= b["start_s"] <= b["end_s"] <= view["span_s"] and not b["running"] for b in bars)
    assert rows["numbers"]["bars"][0]["end_s"] <= rows["flaky"]["bars"][0]["start_s"]
    assert rows["flaky"]["bars"][1]["end_s"] <= rows["report"]["bars"][0]["start_s"]

    shown = coloured_cli("-C", str(root), "show", run_id, "--timeline")
    assert shown.returncode == 0, shown.stderr
    lines = {_plain(line).split()[0]: line for line in shown.stdout.splitlines()[1:] if line.strip()}
    assert set(lines) == {"step", "numbers", "flaky", "report"}
    flaky = _plain(lines["flaky"])
    assert "2 (1 failed)" in flaky
    assert flaky.index(FAILED_SHADE) < flaky.index(FULL), "the failed attempt is drawn left of its retry"
    assert FAILED_SHADE not in _plain(lines["numbers"]) and FULL in _plain(lines["numbers"])
    assert "\x1b[1;31m" in lines["flaky"] and "\x1b[32m" in lines["report"]  # failed in red, executed in green

    again = json.loads(cli("-C", str(root), "run", "--json").stdout)
    assert {s["status"] for s in again["steps"]} == {"cached"}
    cached = json.loads(cli("-C", str(root), "show", "latest", "--timeline", "--json").stdout)
    assert (cached["rows"], cached["without_attempts"], cached["without_attempts_by_status"]) == ([], 3, {"cached": 3})
    text = cli("-C", str(root), "show", "latest", "--timeline").stdout
    assert "3 steps made no attempt: 3 cached" in text


def test_bars_are_scaled_to_the_runs_wall_time_and_a_short_retry_keeps_a_column() -> None:
    view = {
        "run_id": "r",
        "status": "succeeded",
        "span_s": 10.0,
        "rows": [
            {"step": "a", "status": "executed", "bars": [_bar(1, "executed", 0.0, 5.0)]},
            {
                "step": "b",
                "status": "executed",
                "bars": [_bar(1, "failed", 5.0, 5.01), _bar(2, "executed", 5.01, 10.0)],
            },
        ],
        "without_attempts": 1,
        "without_attempts_by_status": {"cached": 1},
    }
    console = Console(width=80, record=True, color_system=None)
    print_timeline(console, view, STATUS_STYLE)
    header, a, b, note = console.export_text().splitlines()
    assert header.split()[:3] == ["step", "status", "tries"]
    start, width = header.index("0 to 10.00 s"), bar_width(80, 1)
    half = cells(0.0, 5.0, 10.0, width)[1]
    assert half in (width // 2, width // 2 + 1)
    assert a[start:].rstrip() == FULL * half
    failed = cells(5.0, 5.01, 10.0, width)[0]
    assert b[start:].rstrip() == " " * failed + FAILED_SHADE + FULL * (width - failed - 1)
    assert "2 (1 failed)" in b
    assert note == "1 step made no attempt: 1 cached"


def _bar(attempt: int, status: str, start: float, end: float) -> dict[str, Any]:
    error = "RuntimeError: boom" if status == "failed" else None
    return {"attempt": attempt, "status": status, "start_s": start, "end_s": end, "running": False, "error": error}


def test_a_timeline_needs_a_known_run(make_project: ProjectFactory) -> None:
    root = make_project(PIPELINE)
    out = cli("-C", str(root), "show", "nosuchrun", "--timeline")
    assert out.returncode == 2 and "nosuchrun" in out.stderr, out.stderr
