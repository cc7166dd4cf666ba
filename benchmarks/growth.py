"""Growth: the layered no-op DAG of dag200.py at 200, 2,000 and 20,000 nodes, through the CLI.

    python benchmarks/growth.py [--sizes 200,2000,20000] [--repeat N] [--keep]

Each size is a fresh project of LAYERS x WIDTH nodes (20 x 10, 40 x 50, 100 x 200); node n{l}_{i} reads
n{l-1}_{i} and n{l-1}_{(i+1) % WIDTH}, one integer param k per node, trivial arithmetic. Per repetition, each
through the console script in a fresh interpreter (start-up included), output to a pipe as a user's redirect:

- `cairn plan` before anything ran (every step "never materialized");
- cold `cairn run` (process executor, 2 workers);
- `cairn plan` after it (every step cached) and the no-change `cairn run`;
- one change: `cairn run --set n{L/2}_{W/2}.k=99`, a param in the middle layer; the executed steps are checked
  against the node's descendants computed from the graph (false-stale / false-fresh);
- `cairn --help` as the start-up floor.

Printed per size: wall, peak RSS, per-node cost (wall / nodes) and per-node cost beyond start-up ((wall -
`cairn --help`) / nodes, which must stay flat as the graph grows). Targets: a 20,000-node plan under 1 s and
300 MiB, its no-change rerun under 2 s. The cold 20,000-node run takes about a minute; `--sizes` chooses.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as C

SHAPES = {200: (20, 10), 2000: (40, 50), 20000: (100, 200)}  # nodes -> (layers, width)
DEFAULT_SIZES = "200,2000,20000"
NEW_K = 99
MEASURES = ("plan, nothing run", "cold run", "plan, all cached", "no-change run", "one change")
TARGETS = {("plan, all cached", 20000): (1.0, 300.0), ("plan, nothing run", 20000): (1.0, 300.0)}
TARGETS[("no-change run", 20000)] = (2.0, float("inf"))


def changed_node(layers: int, width: int) -> str:
    return f"n{layers // 2}_{width // 2}"


def expected_descendants(layers: int, width: int) -> set[str]:
    """The changed node and everything downstream of it, from the same topology as `layered_pipeline`."""
    start = changed_node(layers, width)
    layer, i = (int(p) for p in start[1:].split("_"))
    found = {start}
    front = {i}
    for lay in range(layer + 1, layers):
        # n{lay}_{j} reads j and j+1 of the layer before: it is reached when either of them is
        front = {j for j in range(width) if j in front or (j + 1) % width in front}
        found.update(f"n{lay}_{j}" for j in front)
    return found


def executed_in(output: str) -> set[str]:
    """The steps `cairn run` lists as executed in its table (one row per step that was not cached)."""
    names = set()
    for line in output.splitlines():
        cells = line.split()
        if len(cells) >= 2 and cells[1] == "executed":
            names.add(cells[0])
    return names


def one_size(base: Path, nodes: int, rep: int, cli: list[str]) -> dict[str, C.Proc]:
    layers, width = SHAPES[nodes]
    root = C.write_project(base / f"n{nodes}-{rep}", f"growth{nodes}", C.layered_pipeline(layers, width))
    project = ["-C", str(root)]
    out: dict[str, C.Proc] = {}
    C.progress(f"{nodes} nodes #{rep + 1}: plan, cold run")
    out["plan, nothing run"] = C.run([*cli, *project, "plan"]).check()
    out["cold run"] = C.run([*cli, *project, "run"]).check()
    C.progress(f"{nodes} nodes #{rep + 1}: plan, no-change run, one change")
    out["plan, all cached"] = C.run([*cli, *project, "plan"]).check()
    out["no-change run"] = C.run([*cli, *project, "run"]).check()
    out["one change"] = C.run([*cli, *project, "run", "--set", f"{changed_node(layers, width)}.k={NEW_K}"]).check()
    return out


def main() -> None:
    p = C.parser(__doc__.splitlines()[0], default_repeat=3)
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"node counts, of {sorted(SHAPES)} (default {DEFAULT_SIZES})")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    unknown = [s for s in sizes if s not in SHAPES]
    if unknown:
        p.error(f"--sizes: {unknown} not among {sorted(SHAPES)}")
    C.header(f"growth: layered no-op DAGs of {', '.join(f'{s:,}' for s in sizes)} nodes through the CLI", args.repeat)
    paths = C.cli_paths()
    cli = paths.get("cairn (console script)", C.MODULE_CLI)
    runs: dict[tuple[str, int], list[C.Proc]] = {}
    helps: list[C.Proc] = []
    with C.workspace("growth", args.keep) as base:
        # Sizes alternate within a repetition so that load on the shared machine falls on all of them alike.
        for rep in range(args.repeat):
            for nodes in sizes:
                helps.append(C.run([*cli, "--help"]).check())
                for name, proc in one_size(base, nodes, rep, cli).items():
                    runs.setdefault((name, nodes), []).append(proc)
    floor = C.median(p.wall_s for p in helps)

    t = C.Table(
        f"Layered no-op DAGs through `{' '.join(cli)}` (start-up included), n={args.repeat}",
        ["measure", "nodes", "wall s", "peak RSS MiB", "ms / node", "ms / node beyond start-up", "target"],
    )
    for name in MEASURES:
        for nodes in sizes:
            procs = runs[name, nodes]
            wall = C.median(p.wall_s for p in procs)
            rss = C.median(p.maxrss_mib for p in procs)
            target = TARGETS.get((name, nodes))
            verdict = "-"
            if target is not None:
                ok = wall < target[0] and rss < target[1]
                limit = f"< {target[0]:g} s" + (f", < {target[1]:g} MiB" if target[1] != float("inf") else "")
                verdict = f"{limit}: {'meets' if ok else 'MISSES'}"
            t.add(
                name,
                f"{nodes:,}",
                C.spread([p.wall_s for p in procs], 3),
                f"{rss:.0f}",
                f"{wall / nodes * 1e3:.3f}",
                f"{(wall - floor) / nodes * 1e3:.3f}",
                verdict,
            )
    t.notes.append(
        f"Start-up floor: `cairn --help` {C.spread([p.wall_s for p in helps], 3)} s (n={len(helps)}), subtracted in "
        "the last figures column. Peak RSS is the largest process of the tree (engine or a step worker)."
    )
    checks = []
    for nodes in sizes:
        layers, width = SHAPES[nodes]
        expected = expected_descendants(layers, width)
        for proc in runs["one change", nodes]:
            got = executed_in(proc.stdout)
            checks.append(
                f"{nodes:,} nodes, {changed_node(layers, width)}.k={NEW_K}: {len(got)} executed of "
                f"{len(expected)} expected, false-stale {len(got - expected)}, false-fresh {len(expected - got)}"
            )
        for proc in runs["no-change run", nodes]:
            if executed_in(proc.stdout):
                checks.append(f"{nodes:,} nodes: the no-change run executed {len(executed_in(proc.stdout))} steps")
    t.notes.append("One change: " + "; ".join(dict.fromkeys(checks)) + ".")
    t.print()


if __name__ == "__main__":
    main()
