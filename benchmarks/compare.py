"""Two versions of cairn side by side on the 200-node DAG of dag200.py: no-change rerun, plan, one change.

    python benchmarks/compare.py [--base REV] [--repeat N]

The base revision (default HEAD~1) is checked out read-only into a temporary git worktree; each repetition
runs a fresh interpreter per version, alternating base and current `src/`, so that load on a shared
machine falls on both alike. Each driver materializes once cold, then times in process: 7 no-change
reruns, 7 plans (`cairn.engine.api.preview`) and 5 one-parameter changes (exactly 55 steps re-execute).
Printed: the median of the per-repetition medians for each version and their ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as C
import dag200

REPO = Path(__file__).resolve().parents[1]

DRIVER = """\
import json, statistics, sys, time
import cairn
from cairn.engine.api import open_stores, preview
from cairn.engine.run import RunOptions
from cairn.project import load_project

root, changed = sys.argv[1], sys.argv[2]
cairn.materialize(project=root, executor="inline")
rerun, plans, change = [], [], []
for _ in range(7):
    t = time.perf_counter()
    result = cairn.materialize(project=root, executor="inline")
    rerun.append(time.perf_counter() - t)
    assert result.count("cached") == 200, result.to_dict()
for _ in range(7):
    t = time.perf_counter()
    project = load_project(root)
    with open_stores(project.settings) as stores:
        preview(project, RunOptions(), stores)
    plans.append(time.perf_counter() - t)
for k in range(5):
    t = time.perf_counter()
    result = cairn.materialize(project=root, executor="inline", params={changed: {"k": 1000 + k}})
    change.append(time.perf_counter() - t)
    assert result.count("executed") == 55, result.count("executed")
print(json.dumps([statistics.median(rerun), statistics.median(plans), statistics.median(change)]))
"""

MEASURES = ("no-change rerun (s)", "plan (s)", "one change, 55 executed (s)")


def measure(src: Path, root: Path) -> list[float]:
    C.write_project(root, "dag", dag200.PIPELINE, executor="inline")
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(root), dag200.CHANGED], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"the driver failed with {src}:\n{done.stderr[-3000:]}")
    return [float(v) for v in json.loads(done.stdout)]


def main() -> None:
    p = C.parser("compare two revisions of cairn on the 200-node DAG", default_repeat=4)
    p.add_argument("--base", default="HEAD~1", help="the git revision to compare with (default HEAD~1)")
    args = p.parse_args()
    C.header(f"compare with {args.base}", args.repeat)
    with C.workspace("compare", args.keep) as work:
        base = Path(tempfile.mkdtemp(prefix="cairn-base-", dir=work))
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.base],
            check=True,
            capture_output=True,
        )
        try:
            runs: dict[str, list[list[float]]] = {"base": [], "current": []}
            for n in range(args.repeat):
                for label, src in (("base", base / "src"), ("current", REPO / "src")):
                    C.progress(f"repetition {n + 1}/{args.repeat}: {label}")
                    runs[label].append(measure(src, work / f"{label}-{n}"))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], capture_output=True)
    table = C.Table(
        "200-node DAG, in process (median of the repetitions' medians)",
        ["measure", args.base, "current", "current / base"],
    )
    for i, name in enumerate(MEASURES):
        old = C.median(r[i] for r in runs["base"])
        new = C.median(r[i] for r in runs["current"])
        table.add(name, f"{old:.4f}", f"{new:.4f}", f"{new / old:.2f}")
    table.print()


if __name__ == "__main__":
    main()
