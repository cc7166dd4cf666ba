"""Automation: tick latency with 100 schedules and 1,000 assets, schedule-to-start latency, daemon idle CPU.

    python benchmarks/automation.py [--repeat N] [--window S] [--keep]

The project: 1,000 assets in 100 independent chains of 10 (``g{j}_0 -> ... -> g{j}_9``), 100 schedules (schedule
j runs its chain's end, ``g{j}_9``, at minute j of January 1st, so none is due while the idle figures are
taken), materialized once; a second variant also puts ``max_age="30d"`` on every asset (1,000 freshness
policies, none breached). Each figure comes from a child process (a driver script calling the API, or the
CLI), with SQLite as the metadata database:

* first tick of a `Runner` (state rows created, every next due time computed), then idle ticks of the same
  runner when nothing is due (the project loaded), and with `load_project` first (what the daemon does every
  tick);
* `cairn tick --now T` with nothing due, start-up included;
* schedule-to-start: a tick at the exact due time of one schedule on a clock that runs at real speed; the
  latency recorded on the tick (due time to the run's start: evaluating the schedules before it, claiming
  the tick, planning its 10-step chain) and the tick's whole wall time with the (cached) run;
* daemon idle CPU: `cairn daemon --interval S` with nothing due, its CPU time read from /proc over a
  `--window` (default 60 s) after its first tick, for the default interval (30 s) and for 5 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common as C

CHAINS, LENGTH = 100, 10


def pipeline(max_age: str | None) -> str:
    option = f'max_age="{max_age}"' if max_age else ""
    lines = ["from cairn import asset, schedule", ""]
    for j in range(CHAINS):
        for k in range(LENGTH):
            args = f"g{j}_{k - 1}: int" if k else ""
            body = f"g{j}_{k - 1} + 1" if k else str(j)
            lines += [f"@asset({option})", f"def g{j}_{k}({args}) -> int:", f"    return {body}", ""]
    for j in range(CHAINS):
        lines.append(f's{j} = schedule("s{j}", "{j % 60} {j // 60} 1 1 *", select="g{j}_{LENGTH - 1}")')
    return "\n".join(lines) + "\n"


DRIVER = """
import json, statistics, sys, time
from datetime import UTC, datetime, timedelta
import cairn
from cairn.automation.clock import ManualClock
from cairn.automation.runner import Runner
from cairn.project import load_project
from cairn.storage.metadata import open_metadata

class RealSpeed(ManualClock):
    # Starts at a chosen moment and runs at the machine's speed from there.
    def __init__(self, start):
        super().__init__(start)
        self.t0 = time.perf_counter()
    def now(self):
        return super().now() + timedelta(seconds=time.perf_counter() - self.t0)

root, repeat = sys.argv[1], int(sys.argv[2])
cairn.materialize(project=root, executor="inline")
project = load_project(root)
idle = datetime(2026, 12, 31, 12, tzinfo=UTC)
out = {"idle_tick_s": [], "idle_tick_with_load_s": [], "latency_s": [], "due_tick_s": []}
with open_metadata(project.settings.database, project.settings.root) as meta:
    clock = ManualClock(idle)
    t0 = time.perf_counter()
    runner = Runner(meta, clock)  # kept from tick to tick, as the daemon keeps it
    runner.tick(project)  # first sight: every state row is created, every next due time computed
    out["first_tick_s"] = time.perf_counter() - t0
    for n in range(repeat):
        clock.advance(1)
        t0 = time.perf_counter()
        report = runner.tick(project)
        out["idle_tick_s"].append(time.perf_counter() - t0)
        assert report.ticks == (), report.ticks
        clock.advance(1)
        t0 = time.perf_counter()
        report = runner.tick(load_project(root))
        out["idle_tick_with_load_s"].append(time.perf_counter() - t0)
    Runner(meta, ManualClock(datetime(2027, 1, 1, 0, 4, 59, tzinfo=UTC))).tick(project)  # s0 .. s4 run
    for n in range(repeat):
        due = datetime(2027, 1, 1, 0, 5 + n, tzinfo=UTC)  # schedule s{5+n}, exactly on time
        t0 = time.perf_counter()
        report = Runner(meta, RealSpeed(due)).tick(project)
        out["due_tick_s"].append(time.perf_counter() - t0)
        [tick] = report.ticks
        assert tick.status == "succeeded", tick
        out["latency_s"].append(tick.latency_s)
print(json.dumps(out))
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def daemon_idle(root: Path, interval: float, window: float) -> tuple[float, float]:
    """CPU % of one core used by an idle daemon over `window` seconds, and its CPU seconds per tick."""
    proc = subprocess.Popen(
        [*C.MODULE_CLI, "-C", str(root), "daemon", "--interval", str(interval)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(min(10.0, interval / 2 + 3))  # start-up and the first tick
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(window)
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"the daemon failed: {err}")
    ticks = max(1.0, (t1 - t0) / interval)
    return (cpu1 - cpu0) / (t1 - t0) * 100, (cpu1 - cpu0) / ticks


def main() -> None:
    parser = C.parser(__doc__.splitlines()[0], default_repeat=5)
    parser.add_argument("--window", type=float, default=60.0, help="seconds of daemon idling measured (default 60)")
    args = parser.parse_args()
    C.header(f"automation: {CHAINS} schedules, {CHAINS * LENGTH} assets", args.repeat)
    ticks = C.Table(
        f"Ticks with {CHAINS} schedules and {CHAINS * LENGTH} assets (SQLite)",
        ["project", "first tick s", "idle tick s", "idle tick + load_project s", "cairn tick (CLI) s",
         "schedule-to-start s", "due tick with its run s"],
    )  # fmt: skip
    idle = C.Table("Daemon with nothing due", ["project", "--interval s", "CPU % of one core", "CPU s per tick"])
    with C.workspace("automation", args.keep) as base:
        for label, max_age in (("1,000 assets", None), ("1,000 assets with max_age", "30d")):
            C.progress(f"{label}: ticks")
            root = C.write_project(
                base / ("fresh" if max_age else "plain"), "auto", pipeline(max_age), executor="inline"
            )
            figures = C.run_python(DRIVER, str(root), str(args.repeat)).check().json()
            cli = [
                C.run([*C.MODULE_CLI, "-C", str(root), "tick", "--now", f"2026-12-31T13:00:{n:02d}Z"]).check().wall_s
                for n in range(args.repeat)
            ]
            ticks.add(
                label,
                f"{figures['first_tick_s']:.3f}",
                C.spread(figures["idle_tick_s"], 4),
                C.spread(figures["idle_tick_with_load_s"], 3),
                C.spread(cli, 3),
                C.spread(figures["latency_s"], 3),
                C.spread(figures["due_tick_s"], 3),
            )
            for interval in (30.0, 5.0):
                C.progress(f"{label}: idle daemon, --interval {interval:g}, {args.window:g} s")
                percent, per_tick = daemon_idle(root, interval, args.window)
                idle.add(label, f"{interval:g}", f"{percent:.2f}", f"{per_tick:.3f}")
    ticks.notes.append(
        "first tick: a new `Runner` (creates the state rows, computes every schedule's next due time with "
        "croniter); idle tick: the same runner with nothing due (the daemon keeps it: next due times are "
        "remembered until they pass); + load_project: what the daemon does every tick; schedule-to-start: due "
        "time to the run's start on the tick (evaluating the schedules before it, the claim, planning the "
        "10-step chain); the due tick includes the cached run."
    )
    ticks.print()
    idle.print()


if __name__ == "__main__":
    main()
