"""W5 of PEERS.md on cairn: a 5,000,000 x 5 float64 pandas DataFrame through 3 steps (make, add a column, mean).

    python benchmarks/dataframe.py [--repeat N] [--rows R] [--base-src DIR]

Each repetition, in fresh processes (wall includes interpreter start-up and imports, as in PEERS.md):
plain Python with the 3 steps as functions in memory (the 1.00x reference); plain Python with Parquet
(pyarrow) written and read between the steps, once with pyarrow's default writer options (PEERS.md's
baseline: snappy, dictionary encoding on every column) and once with cairn's
(`cairn.io.parquet.PARQUET_WRITE_OPTIONS`: snappy, no dictionary for float columns), both reading with
``pq.read_table(path).to_pandas()``; and cairn (`cairn -C DIR run --json` on a fresh project) with the
process executor and with the inline executor. The variants run in a rotated order in each repetition (none
always first), and cairn / plain-Parquet ratios of wall, peak RSS and CPU are taken within each repetition,
then their median reported, so that load from other users of the machine cancels out as far as it can (the
CPU ratio, of the process trees' CPU seconds, is the least sensitive to it). Reports wall, ratio to plain
in-memory, CPU seconds of the process tree and peak RSS (largest process of the tree), and checks that all
variants agree on the mean. ``--base-src DIR`` adds both cairn variants once more with another cairn's
sources first on PYTHONPATH (e.g. ``git archive HEAD src | tar -x -C DIR``: the committed code beside the
working tree's), in the same rotation, for before/after figures taken in one run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

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
import json, os, sys
import pyarrow as pa
import pyarrow.parquet as pq

rows, folder, options = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
one, two = os.path.join(folder, "make.parquet"), os.path.join(folder, "add_column.parquet")
pq.write_table(pa.Table.from_pandas(make(rows), preserve_index=False), one, **options)
pq.write_table(pa.Table.from_pandas(add_column(pq.read_table(one).to_pandas()), preserve_index=False), two, **options)
print(repr(mean(pq.read_table(two).to_pandas())))
"""
)


def cairn_options() -> dict[str, object]:
    """cairn's Parquet writer options for these all-float frames (no column gets dictionary encoding)."""
    from cairn.io.parquet import PARQUET_WRITE_OPTIONS

    return {**PARQUET_WRITE_OPTIONS, "use_dictionary": []}


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


def ratios(runs: list[C.Proc], baseline: list[C.Proc]) -> tuple[list[float], list[float], list[float]]:
    """Per repetition: wall, peak RSS and CPU of ``runs`` over those of ``baseline``."""
    pairs = list(zip(runs, baseline, strict=True))
    return (
        [a.wall_s / b.wall_s for a, b in pairs],
        [a.maxrss_mib / b.maxrss_mib for a, b in pairs],
        [a.cpu_s / b.cpu_s for a, b in pairs],
    )


PLAIN = "plain-parquet"  # pyarrow's default writer options (PEERS.md)
SAME = "plain-parquet, cairn's options"
CAIRN = ("cairn process", "cairn inline")
BASE = ("base process", "base inline")


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=ROWS, help=f"rows of the DataFrame (default {ROWS:,})")
    p.add_argument("--base-src", help="another cairn's src/ folder, run as the 'base' variants")
    args = p.parse_args()
    n, rows = args.repeat, args.rows
    variants = ("plain-mem", PLAIN, SAME, *CAIRN, *(BASE if args.base_src else ()))
    C.header(f"dataframe: W5, {rows:,} x 5 float64 DataFrame through 3 steps", n)
    cli = next(iter(v for k, v in C.cli_paths().items() if k.startswith("cairn (console")), C.MODULE_CLI)
    options = {PLAIN: "{}", SAME: json.dumps(cairn_options())}
    runs: dict[str, list[C.Proc]] = {name: [] for name in variants}
    means: dict[str, set[str]] = {name: set() for name in variants}
    step_times: dict[str, list[dict[str, float]]] = {}
    with C.workspace("dataframe", args.keep) as base:
        for rep in range(n):
            order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
            C.progress(f"#{rep + 1}/{n}: {', '.join(order)}")
            for name in order:
                if name == "plain-mem":
                    proc = C.run_python(PLAIN_MEM, str(rows)).check()
                    value = proc.stdout.strip()
                elif name in options:
                    folder = base / f"parquet-{rep}-{variants.index(name)}"
                    folder.mkdir()
                    proc = C.run_python(PLAIN_PARQUET, str(rows), str(folder), options[name]).check()
                    value = proc.stdout.strip()
                    shutil.rmtree(folder)
                else:
                    kind, executor = name.split()
                    env = {**os.environ, "PYTHONPATH": args.base_src} if kind == "base" else None
                    project = C.write_project(base / f"w5-{kind}-{executor}-{rep}", "w5", pipeline(rows), workers=2)
                    argv = [*cli, "-C", str(project), "run", "--json", "--executor", executor]
                    proc = C.run(argv, env=env).check()
                    executed = sum(1 for s in proc.json()["steps"] if s["status"] == "executed")
                    if executed != 3:
                        raise RuntimeError(f"{name}: expected 3 executed steps, got {executed}")
                    value = C.run([sys.executable, "-c", LOAD_MEAN, str(project)], env=env).check().stdout.strip()
                    steps = {s["asset"]: s["duration_s"] for s in proc.json()["steps"]}
                    step_times.setdefault(name, []).append(steps)
                    shutil.rmtree(project)
                runs[name].append(proc)
                means[name].add(value)

    base_wall = C.median(r.wall_s for r in runs["plain-mem"])
    reference = means["plain-mem"]
    t = C.Table(
        f"W5, {rows:,} x 5 float64 through make / add a column / mean, n={n} (wall includes start-up and imports)",
        ["variant", "wall s median (min-max)", "vs plain-mem", "peak RSS MiB", "CPU s", "result ok"],
    )
    for name in variants:
        procs = runs[name]
        wall = C.median(r.wall_s for r in procs)
        ok = "yes" if means[name] == reference else f"NO: {sorted(means[name])} vs {sorted(reference)}"
        t.add(
            name,
            C.spread([r.wall_s for r in procs]),
            f"{wall / base_wall:.2f}x",
            f"{C.median(r.maxrss_mib for r in procs):.0f}",
            f"{C.median(r.cpu_s for r in procs):.1f}",
            ok,
        )
    for name, ratio in (("dagster 1.13", 3.51), ("dvc 3.67", 6.39), ("prefect 3.8", 15.30), ("hamilton 1.90", 35.28)):
        t.add(f"{name} (PEERS.md)", "-", f"{ratio:.2f}x", "-", "-", "-")
    for name in variants[3:]:
        per_step = step_times[name]
        t.notes.append(
            f"{name}: time inside the step jobs (load input, call, serialize+hash+write+fsync), median s: "
            + ", ".join(f"{a} {C.median(s[a] for s in per_step):.2f}" for a in ("frame", "with_f", "mean"))
        )
    t.notes.append("PEERS.md: plain-parquet 2.11x, dagster 3.51x, dvc 6.39x, prefect 15.30x, hamilton 35.28x.")
    t.print()

    r = C.Table(
        f"cairn / plain Parquet, paired within each repetition: median (min-max) of n={n} (target: wall <= 1.10x, "
        "peak RSS <= 1.00x)",
        ["cairn", "baseline", "wall ratio", "peak RSS ratio", "CPU ratio", "wall", "peak RSS"],
    )
    for name in variants[3:]:
        for baseline in (PLAIN, SAME):
            walls, rss, cpu = ratios(runs[name], runs[baseline])
            r.add(
                name,
                baseline,
                C.spread(walls),
                C.spread(rss),
                C.spread(cpu),
                C.verdict(C.median(walls), 1.10),
                C.verdict(C.median(rss), 1.00),
            )
    if args.base_src:
        for name, before in zip(CAIRN, BASE, strict=True):
            walls, rss, cpu = ratios(runs[name], runs[before])
            r.add(name, f"{before} ({args.base_src})", C.spread(walls), C.spread(rss), C.spread(cpu), "-", "-")
    r.print()
    paired = C.median(a.wall_s / b.wall_s for a, b in zip(runs["cairn process"], runs[PLAIN], strict=True))
    proc_ratio = C.median(r.wall_s for r in runs["cairn process"]) / base_wall
    inline_ratio = C.median(r.wall_s for r in runs["cairn inline"]) / base_wall
    parquet_wall = C.median(r.wall_s for r in runs[PLAIN])
    print(
        f"\nSummary: W5 cairn {proc_ratio:.2f}x plain-mem with processes, {inline_ratio:.2f}x inline "
        f"(plain-parquet {parquet_wall / base_wall:.2f}x here; best peer dagster 3.51x); plain-mem {base_wall:.2f} s; "
        f"cairn process / plain-parquet {paired:.2f}x paired."
    )


if __name__ == "__main__":
    main()
