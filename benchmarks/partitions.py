"""Partitioned workloads: plan time and memory for large backfills, and the rate of no-op partition steps.

    python benchmarks/partitions.py [--repeat N]

1. Plan of a backfill of 3 daily assets (a chain, the middle one a 7-day window) over 3 years: ~3,300 steps.
2. Plan of 20 segments x 365 days (a product partition, 2 assets): 14,600 steps.
3. Execution rate of no-op partition steps with the process executor (2 workers): a cold run of 1 asset over
   3 years of days (1,096 steps) and the fully cached rerun of it.
Targets: plan under 1 s, over 300 no-op partition steps per second with processes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common as C

CHAIN = """
from cairn import Window, asset, daily

DAYS = daily("2023-01-01", end="2026-01-01")

@asset(partitions=DAYS)
def events(ctx) -> int:
    return 1

@asset(partitions=DAYS, ins={"days": Window("events", 7)})
def rolling(days: dict) -> int:
    return sum(days.values())

@asset(partitions=DAYS)
def features(rolling: int) -> int:
    return rolling + 1
"""

SEGMENTS = """
from cairn import asset, daily, product, static

PARTS = product(daily("2025-01-01", end="2026-01-01"), static(*[f"s{i:02d}" for i in range(20)]))

@asset(partitions=PARTS)
def raw(ctx) -> int:
    return 1

@asset(partitions=PARTS)
def agg(raw: int) -> int:
    return raw + 1
"""

NOOP = """
from cairn import asset, daily

@asset(partitions=daily("2023-01-01", end="2026-01-01"))
def noop(ctx) -> int:
    return 0
"""

PLAN = """
import json, resource, sys, time
t0 = time.perf_counter()
from cairn.engine.api import open_stores, preview
from cairn.engine.run import RunOptions
from cairn.project import load_project
project = load_project(sys.argv[1])
t1 = time.perf_counter()
with open_stores(project.settings) as stores:
    _, plan = preview(project, RunOptions(), stores)
t2 = time.perf_counter()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"steps": len(plan.steps), "load_s": t1 - t0, "plan_s": t2 - t1, "rss_mib": rss}))
"""

RUN = """
import json, sys, time
import cairn
t0 = time.perf_counter()
result = cairn.materialize(project=sys.argv[1])
print(json.dumps({"wall": time.perf_counter() - t0, "executed": result.count("executed"),
                  "cached": result.count("cached"), "steps": len(result.steps)}))
"""


def plan_figures(root: Path, repeat: int) -> list[dict[str, float]]:
    return [C.run_python(PLAN, str(root)).check().json() for _ in range(repeat)]


def main() -> None:
    args = C.parser(__doc__ or "").parse_args()
    C.header("Partitions: plan time and no-op step rate", args.repeat)
    table = C.Table(
        "Plan (no history; runs nothing)", ["workload", "steps", "plan s", "load s", "peak RSS MiB", "target"]
    )
    with C.workspace("partitions", args.keep) as base:
        for name, text in (("3 assets x 3 years daily", CHAIN), ("20 segments x 365 days x 2 assets", SEGMENTS)):
            C.progress(f"plan {name}")
            root = C.write_project(base / name.split()[0], "p", text)
            figures = plan_figures(root, args.repeat)
            plan_s = [f["plan_s"] for f in figures]
            table.add(
                name,
                int(figures[0]["steps"]),
                C.spread(plan_s, 3),
                C.spread([f["load_s"] for f in figures], 3),
                f"{C.median(f['rss_mib'] for f in figures):.0f}",
                f"< 1 s: {C.verdict(C.median(plan_s), 1.0)}",
            )
        table.print()
        rates = C.Table(
            "No-op partition steps, process executor, 2 workers", ["run", "steps", "wall s", "steps/s", "target"]
        )
        cold, cached = [], []
        for i in range(args.repeat):
            C.progress(f"no-op run {i + 1}/{args.repeat}")
            root = C.write_project(base / f"noop{i}", "noop", NOOP)
            cold.append(C.run_python(RUN, str(root)).check().json())
            cached.append(C.run_python(RUN, str(root)).check().json())
        for label, runs in (("cold (all executed)", cold), ("rerun (all cached)", cached)):
            walls = [r["wall"] for r in runs]
            rate = runs[0]["steps"] / C.median(walls)
            rates.add(
                label, runs[0]["steps"], C.spread(walls), f"{rate:.0f}", f"> 300/s: {C.verdict(rate, 300, False)}"
            )
        rates.print()


if __name__ == "__main__":
    main()
