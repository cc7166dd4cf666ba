"""W5 of PEERS.md on cairn: a 5,000,000 x 5 float64 pandas DataFrame through 3 steps (make, add a column, mean).

    python benchmarks/dataframe.py [--repeat N] [--rows R]

Each repetition, in fresh processes (wall includes interpreter start-up and imports, as in PEERS.md):
plain Python with the 3 steps as functions in memory (the 1.00x reference), plain Python with Parquet
(pyarrow) written and read between the steps, and cairn (`cairn -C DIR run --json` on a fresh project)
with the process executor and with the inline executor. Reports wall, ratio to plain in-memory, CPU seconds
of the process tree and peak RSS (largest process of the tree), and checks that all variants agree on the mean.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as C

ROWS = 5_000_000

STEPS = """\
import numpy as np
import pandas as pd


def make(rows):
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.random((rows, 5)), columns=["a", "b", "c", "d", "e"])


def add_column(df):
    return df.assign(f=df["a"] + df["b"])


def mean(df):
    return float(df["f"].mean())
"""

PLAIN_MEM = (
    STEPS
    + """
import sys
print(repr(mean(add_column(make(int(sys.argv[1]))))))
"""
)

PLAIN_PARQUET = (
    STEPS
    + """
import os, sys
import pyarrow as pa
import pyarrow.parquet as pq

rows, folder = int(sys.argv[1]), sys.argv[2]
one, two = os.path.join(folder, "make.parquet"), os.path.join(folder, "add_column.parquet")
pq.write_table(pa.Table.from_pandas(make(rows), preserve_index=False), one)
pq.write_table(pa.Table.from_pandas(add_column(pq.read_table(one).to_pandas()), preserve_index=False), two)
print(repr(mean(pq.read_table(two).to_pandas())))
"""
)


def pipeline(rows: int) -> str:
    return f'''\
"""W5: a {rows:,} x 5 float64 DataFrame through 3 steps."""

import numpy as np
import pandas as pd

from cairn import asset

ROWS = {rows}


@asset
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.random((ROWS, 5)), columns=["a", "b", "c", "d", "e"])


@asset
def with_f(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(f=frame["a"] + frame["b"])


@asset
def mean(with_f: pd.DataFrame) -> float:
    return float(with_f["f"].mean())
'''


LOAD_MEAN = "import sys, cairn; print(repr(cairn.load('mean', project=sys.argv[1])))"


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=ROWS, help=f"rows of the DataFrame (default {ROWS:,})")
    args = p.parse_args()
    n, rows = args.repeat, args.rows
    C.header(f"dataframe: W5, {rows:,} x 5 float64 DataFrame through 3 steps", n)
    cli = next(iter(v for k, v in C.cli_paths().items() if k.startswith("cairn (console")), C.MODULE_CLI)
    runs: dict[str, list[C.Proc]] = {}
    means: dict[str, set[str]] = {}
    step_times: dict[str, list[dict[str, float]]] = {}
    with C.workspace("dataframe", args.keep) as base:
        for rep in range(n):
            C.progress(f"#{rep + 1}/{n}")
            proc = C.run_python(PLAIN_MEM, str(rows)).check()
            runs.setdefault("plain-mem", []).append(proc)
            means.setdefault("plain-mem", set()).add(proc.stdout.strip())
            folder = base / f"parquet-{rep}"
            folder.mkdir()
            proc = C.run_python(PLAIN_PARQUET, str(rows), str(folder)).check()
            runs.setdefault("plain-parquet", []).append(proc)
            means.setdefault("plain-parquet", set()).add(proc.stdout.strip())
            for executor in ("process", "inline"):
                name = f"cairn {executor}"
                project = C.write_project(Path(base) / f"w5-{executor}-{rep}", "w5", pipeline(rows), workers=2)
                proc = C.run([*cli, "-C", str(project), "run", "--json", "--executor", executor]).check()
                executed = sum(1 for s in proc.json()["steps"] if s["status"] == "executed")
                if executed != 3:
                    raise RuntimeError(f"{name}: expected 3 executed steps, got {executed}")
                runs.setdefault(name, []).append(proc)
                value = C.run_python(LOAD_MEAN, str(project)).check().stdout.strip()
                means.setdefault(name, set()).add(value)
                steps = {s["asset"]: s["duration_s"] for s in proc.json()["steps"]}
                step_times.setdefault(name, []).append(steps)

    base_wall = C.median(r.wall_s for r in runs["plain-mem"])
    reference = means["plain-mem"]
    t = C.Table(
        f"W5, {rows:,} x 5 float64 through make / add a column / mean, n={n} (wall includes start-up and imports)",
        [
            "variant",
            "wall s median (min-max)",
            "vs plain-mem",
            "vs plain-parquet",
            "peak RSS MiB",
            "CPU s",
            "result ok",
        ],
    )
    parquet_wall = C.median(r.wall_s for r in runs["plain-parquet"])
    for name in ("plain-mem", "plain-parquet", "cairn process", "cairn inline"):
        procs = runs[name]
        wall = C.median(r.wall_s for r in procs)
        ok = "yes" if means[name] == reference else f"NO: {sorted(means[name])} vs {sorted(reference)}"
        t.add(
            name,
            C.spread([r.wall_s for r in procs]),
            f"{wall / base_wall:.2f}x",
            f"{wall / parquet_wall:.2f}x",
            f"{C.median(r.maxrss_mib for r in procs):.0f}",
            f"{C.median(r.cpu_s for r in procs):.1f}",
            ok,
        )
    for name, ratio in (("dagster 1.13", 3.51), ("dvc 3.67", 6.39), ("prefect 3.8", 15.30), ("hamilton 1.90", 35.28)):
        t.add(f"{name} (PEERS.md)", "-", f"{ratio:.2f}x", "-", "-", "-", "-")
    for name in ("cairn process", "cairn inline"):
        per_step = step_times[name]
        t.notes.append(
            f"{name}: time inside the step jobs (load input, call, serialize+hash+write+fsync), median s: "
            + ", ".join(f"{a} {C.median(s[a] for s in per_step):.2f}" for a in ("frame", "with_f", "mean"))
        )
    t.notes.append("PEERS.md: plain-parquet 2.11x, dagster 3.51x, dvc 6.39x, prefect 15.30x, hamilton 35.28x.")
    t.print()
    proc_ratio = C.median(r.wall_s for r in runs["cairn process"]) / base_wall
    inline_ratio = C.median(r.wall_s for r in runs["cairn inline"]) / base_wall
    print(
        f"\nSummary: W5 cairn {proc_ratio:.2f}x plain-mem with processes, {inline_ratio:.2f}x inline "
        f"(plain-parquet {parquet_wall / base_wall:.2f}x here; best peer dagster 3.51x); plain-mem {base_wall:.2f} s."
    )


if __name__ == "__main__":
    main()
