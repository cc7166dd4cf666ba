"""Where W4's wall goes beyond a plain pool's: start-up, dispatch between steps, and the end of the run.

    python benchmarks/dispatch.py [--repeat N] [--iterations K]

The same 8 burns and 2 workers as benchmarks/parallel.py (shorter by default: 3,000,000 iterations, about
0.2 s each, since the burn's length does not change these costs), but each burn appends, on the system-wide
monotonic clock, when it began and ended to a log. cairn (`cairn -C DIR run`, process executor, a fresh
project each time) and a plain `ProcessPoolExecutor(2)` run alternately, and for each the script prints the
median of:

- first start: from launching the command to the first burn beginning (interpreter, imports, planning,
  starting the workers);
- gap: from one burn ending to the next beginning on the same worker (recording a result and dispatching);
- end: from the last burn ending to the command exiting (cairn also runs the join and records the run);
- wall, and the mean burn.

It also times the imports each needs before its first submit, in fresh interpreters: cairn's run path
(`cairn.cli.main`, `cairn.engine.run`, the process executor) and `concurrent.futures`.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as C

BURNS = 8
WORKERS = 2

BURN = """\
def burn(n, log):
    began = time.monotonic()
    x = 0
    for i in range(n):
        x = (x * 31 + i) & 0xFFFFFFFF
    with open(log, "a") as f:
        f.write(f"{began} {time.monotonic()} {os.getpid()}\\n")
    return x
"""

PIPELINE = f'''\
"""8 burns that log when they run, and a join."""

import os
import time

from cairn import asset

{BURN}

def _burn(ctx):
    return burn(ctx.params["n"], ctx.params["log"])


def burns(n, log):
    return [asset(name=f"burn_{{j}}", params={{"n": n, "log": log, "j": j}})(_burn) for j in range({BURNS})]
'''

POOL = f"""\
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

{BURN}

if __name__ == "__main__":
    n, log = int(sys.argv[1]), sys.argv[2]
    with ProcessPoolExecutor({WORKERS}) as pool:
        print(sum(pool.map(burn, [n] * {BURNS}, [log] * {BURNS})))
"""

IMPORTS = {
    "cairn's run path": "import cairn.cli.main, cairn.cli.run, cairn.engine.run, cairn.executors.local",
    "concurrent.futures": "import concurrent.futures",
}


def project(root: Path, iterations: int, log: Path) -> Path:
    names = ", ".join(f"burn_{j}" for j in range(BURNS))
    pipeline = (
        PIPELINE
        + f"\n\nBURNS = burns({iterations}, {str(log)!r})\n\n\n@asset\ndef join({names}):\n"
        + f"    return {' + '.join(f'burn_{j}' for j in range(BURNS))}\n"
    )
    return C.write_project(root, "dispatch", pipeline, workers=WORKERS)


def split(proc: C.Proc, log: Path) -> dict[str, float]:
    """The phases of one run from its burns' log (seconds)."""
    rows = [line.split() for line in log.read_text().splitlines()]
    log.unlink()
    if len(rows) != BURNS:
        raise RuntimeError(f"expected {BURNS} burns in the log, found {len(rows)}")
    spans = sorted((float(began), float(ended), pid) for began, ended, pid in rows)
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for began, ended, pid in spans:
        by_worker.setdefault(pid, []).append((began, ended))
    gaps = [nxt[0] - prev[1] for jobs in by_worker.values() for prev, nxt in itertools.pairwise(jobs)]
    return {
        "first start": spans[0][0] - proc.started,
        "gap": sum(gaps) / len(gaps),
        "end": proc.started + proc.wall_s - max(ended for _, ended, _ in spans),
        "wall": proc.wall_s,
        "burn": sum(ended - began for began, ended, _ in spans) / BURNS,
    }


def import_ms(code: str, times: int = 11) -> float:
    return C.median(C.run_python(code).check().wall_s for _ in range(times)) * 1e3


def main() -> None:
    p = C.parser(__doc__.splitlines()[0], default_repeat=10)
    p.add_argument("--iterations", type=int, default=3_000_000, help="loop iterations of one burn")
    args = p.parse_args()
    C.header("dispatch: W4's phases, cairn against a plain pool", args.repeat)
    cli = next(iter(v for k, v in C.cli_paths().items() if k.startswith("cairn (console")), C.MODULE_CLI)
    phases: dict[str, list[dict[str, float]]] = {"cairn": [], "pool": []}
    with C.workspace("dispatch", args.keep) as base:
        log = base / "burns.log"
        for rep in range(args.repeat):
            C.progress(f"#{rep + 1}/{args.repeat}")
            for tool in ("cairn", "pool") if rep % 2 == 0 else ("pool", "cairn"):
                if tool == "cairn":
                    root = project(base / f"p{rep}", args.iterations, log)
                    proc = C.run([*cli, "-C", str(root), "run", "--executor", "process"]).check()
                else:
                    proc = C.run_python(POOL, str(args.iterations), str(log)).check()
                phases[tool].append(split(proc, log))
    t = C.Table(
        f"W4 phases, {BURNS} burns of {args.iterations:,} iterations on {WORKERS} workers, n={args.repeat} "
        "(medians, ms)",
        ["tool", "first start", "gap", "end", "wall", "mean burn"],
    )
    medians = {tool: {k: C.median(run[k] for run in runs) * 1e3 for k in runs[0]} for tool, runs in phases.items()}
    for tool, m in medians.items():
        t.add(tool, *(f"{m[k]:.1f}" for k in ("first start", "gap", "end", "wall", "burn")))
    c, pool = medians["cairn"], medians["pool"]
    t.add("difference", *(f"{c[k] - pool[k]:+.1f}" for k in ("first start", "gap", "end", "wall", "burn")))
    t.notes.append(
        f"Each worker runs {BURNS // WORKERS} burns one after another, so {BURNS // WORKERS - 1} gaps lie on the "
        "critical path; the 'end' of cairn includes its join step and the run's record."
    )
    t.print()
    print()
    for name, code in IMPORTS.items():
        print(f"imports, {name}: {import_ms(code):.1f} ms in a fresh interpreter ({code!r})")
    print(f"a bare interpreter: {import_ms('pass'):.1f} ms")


if __name__ == "__main__":
    main()
