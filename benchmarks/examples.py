"""The README's first command: `cairn run` of examples/recsys at the default scale and at 10x, then again.

Each repetition copies the example into a fresh folder (no `.cairn` state), sets `[params] world.scale`, and
runs `cairn -C DIR run --json` through the console script, as the README does. For the cold run it reports:

- wall time, and CPU seconds of the whole process tree (from `os.wait4`);
- peak RSS two ways: the largest single process of the tree (`ru_maxrss` from `os.wait4`, which covers the
  forked step workers once they are reaped), and the peak of the tree's summed RSS, sampled from `/proc`
  every 50 ms (engine plus workers at the same moment);
- the time inside step jobs: the sum of the executed attempts' durations, split as `cairn show` splits it
  (from each materialization's recorded timings) into the asset functions (user code) and cairn's own work
  inside the job (loading inputs, checks, writing outputs); each as a share of the CPU capacity (wall x
  workers); the rest of the capacity is cairn's engine (start-up, planning, scheduling, recording) and
  idle cores waiting on the DAG;
- the number of events simulated and the model's test AUC (a sanity check of the work done).

Then the unchanged rerun (every step cached) is timed. ``--pip`` also times ``pip install --dry-run -e
".[examples]"`` once (the first half of the README's command, without touching the installed packages).

    python benchmarks/examples.py [--scales 1,10] [--repeat N] [--keep] [--pip]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # the benchmarks' shared helpers, next to this script

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "recsys"
DEFAULT_WORLD = "world = { scale = 1.0, seed = 7 }"


def cairn_command() -> list[str]:
    script = Path(sysconfig.get_path("scripts")) / "cairn"
    return [str(script)] if script.is_file() else list(common.MODULE_CLI)


def project(base: Path, scale: float, name: str) -> Path:
    target = base / name
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".cairn", "__pycache__"))
    config = target / "cairn.toml"
    text = config.read_text(encoding="utf-8")
    if DEFAULT_WORLD not in text:
        raise SystemExit(f"{config} no longer holds {DEFAULT_WORLD!r}; update benchmarks/examples.py")
    config.write_text(text.replace(DEFAULT_WORLD, f"world = {{ scale = {scale}, seed = 7 }}"), encoding="utf-8")
    return target


class TreeRss:
    """Samples the summed RSS of a process and all its descendants from /proc while it runs."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._root = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self, pid: int) -> None:
        self._root = pid
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kib / 1024

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, sum(_rss_kib(pid) for pid in _tree(self._root)))
            time.sleep(self.interval)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _tree(root: int) -> list[int]:
    seen, stack = [], [root]
    while stack:
        pid = stack.pop()
        seen.append(pid)
        stack.extend(_children(pid))
    return seen


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cold_run(root: Path) -> tuple[common.Proc, float]:
    """`cairn run --json` with the tree's summed RSS sampled while it runs (common.run cannot sample)."""
    import subprocess
    import tempfile

    argv = [*cairn_command(), "-C", str(root), "run", "--json"]
    sampler = TreeRss()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started_mono = time.monotonic()
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        sampler.start(child.pid)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        tree_peak = sampler.stop()
        out.seek(0)
        err.seek(0)
        proc = common.Proc(
            tuple(argv),
            started_mono,
            wall,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024,
            os.waitstatus_to_exitcode(status),
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )
    return proc.check(), tree_peak


def facts(root: Path, run_id: str) -> dict[str, Any]:
    """Events simulated, the model's test AUC and the worker count, read back from the project."""
    import cairn
    from cairn.config import load_settings
    from cairn.engine.api import open_stores

    settings = load_settings(root)
    with open_stores(settings) as stores:
        mats = stores.meta.run_materializations(run_id)
    mine = [m for m in mats.values() if m.run_id == run_id]
    events = sum(m.metrics.get("rows", 0.0) for m in mine if m.asset == "events")
    auc = cairn.load("evaluation", project=root)["test"]["auc"]
    timings = [m.metadata.get("cairn.timings", {}) for m in mine]
    split = {
        part: sum(t.get(part, 0.0) for t in timings) for part in ("function_s", "inputs_s", "checks_s", "output_s")
    }
    return {"events": int(events), "auc": auc, "workers": settings.worker_count(), **split}


def measure(base: Path, scale: float, rep: int) -> dict[str, Any]:
    root = project(base, scale, f"recsys-x{scale:g}-{rep}")
    common.progress(f"scale {scale:g}, repetition {rep + 1}: cold run")
    cold, tree_peak = cold_run(root)
    result = cold.json()
    steps = result["steps"]
    executed = [s for s in steps if s["status"] == "executed"]
    in_jobs = sum(s["duration_s"] or 0.0 for s in executed)
    by_asset: dict[str, float] = {}
    for s in executed:
        by_asset[s["asset"]] = by_asset.get(s["asset"], 0.0) + (s["duration_s"] or 0.0)
    common.progress(f"scale {scale:g}, repetition {rep + 1}: unchanged rerun")
    warm = common.run([*cairn_command(), "-C", str(root), "run", "--json"]).check()
    cached = sum(1 for s in warm.json()["steps"] if s["status"] == "cached")
    info = facts(root, result["run_id"])
    return {
        "scale": scale,
        "steps": len(steps),
        "executed": len(executed),
        "wall": cold.wall_s,
        "cpu": cold.cpu_s,
        "rss_largest": cold.maxrss_mib,
        "rss_tree": tree_peak,
        "in_jobs": in_jobs,
        "warm": warm.wall_s,
        "warm_cached": cached,
        "by_asset": dict(sorted(by_asset.items(), key=lambda item: -item[1])),
        **info,
    }


def pip_dry_run() -> float:
    common.progress('pip install --dry-run -e ".[examples]"')
    proc = common.run([sys.executable, "-m", "pip", "install", "--dry-run", "-q", "-e", ".[examples]"], cwd=REPO)
    proc.check()
    return proc.wall_s


def main() -> None:
    p = common.parser(__doc__.splitlines()[0], default_repeat=1)
    p.add_argument("--scales", default="1,10", help="comma-separated world scales (default 1,10)")
    p.add_argument("--pip", action="store_true", help='also time `pip install --dry-run -e ".[examples]"`')
    args = p.parse_args()
    scales = [float(s) for s in args.scales.split(",")]
    common.header("examples/recsys: the README's first command", args.repeat)
    rows: list[dict[str, Any]] = []
    with common.workspace("examples", keep=args.keep) as base:
        for scale in scales:
            rows += [measure(base, scale, rep) for rep in range(args.repeat)]
    table = common.Table(
        "`cairn run` of examples/recsys, cold, then unchanged",
        [
            "scale",
            "events",
            "steps executed",
            "wall s",
            "CPU s",
            "peak RSS MiB: largest process / tree",
            "in step jobs s",
            "asset functions s",
            "cairn in jobs s: load / checks / write",
            "functions / (wall x workers)",
            "step jobs / (wall x workers)",
            "test AUC",
            "rerun wall s (cached)",
        ],
    )
    for scale in scales:
        mine = [r for r in rows if r["scale"] == scale]
        r = mine[0]
        table.add(
            f"{scale:g}",
            f"{r['events']:,}",
            f"{r['executed']}/{r['steps']}",
            common.spread([m["wall"] for m in mine]),
            common.spread([m["cpu"] for m in mine], 1),
            f"{common.median(m['rss_largest'] for m in mine):.0f} / {common.median(m['rss_tree'] for m in mine):.0f}",
            common.spread([m["in_jobs"] for m in mine], 1),
            common.spread([m["function_s"] for m in mine], 1),
            " / ".join(f"{common.median(m[k] for m in mine):.1f}" for k in ("inputs_s", "checks_s", "output_s")),
            f"{common.median(m['function_s'] / (m['wall'] * m['workers']) for m in mine):.2f}",
            f"{common.median(m['in_jobs'] / (m['wall'] * m['workers']) for m in mine):.2f} ({r['workers']} workers)",
            f"{r['auc']}",
            f"{common.spread([m['warm'] for m in mine])} ({r['warm_cached']} cached)",
        )
    table.notes.append(
        "in step jobs: the sum of the executed attempts' durations, split into the asset functions (user code) "
        "and cairn's work inside the jobs (loading inputs, checks, writing outputs); x / (wall x workers) is the "
        "share of the machine's capacity spent in x, the rest is cairn's engine (start-up, planning, scheduling, "
        "recording) and cores idle on the DAG's dependencies."
    )
    for scale in scales:
        heaviest = next(r for r in rows if r["scale"] == scale)["by_asset"]
        shown = ", ".join(f"{name} {seconds:.1f}" for name, seconds in list(heaviest.items())[:6])
        table.notes.append(f"scale {scale:g}, step-job seconds by asset (first repetition): {shown}")
    if args.pip:
        table.notes.append(f'pip install --dry-run -e ".[examples]" (already installed): {pip_dry_run():.1f} s')
    table.print()
    print("\n" + json.dumps(rows))


if __name__ == "__main__":
    main()
