"""Cluster executors beside the process executor: per-step overhead (200-node no-op DAG) and parallel efficiency.

    python benchmarks/distributed.py [--repeat N] [--iterations K] [--executors process,dask,ray] [--keep]

Each repetition, for each executor, runs a fresh interpreter (a driver calling the API) that first brings its
"cluster" up and only then measures runs on it, so that start-up is reported apart from per-step costs:

- process: nothing to start (workers are forked on demand by each run);
- dask: a `LocalCluster` of 2 worker processes with 1 thread each, reached by its address as a user's
  cluster is (`[executor] address`);
- ray: a local Ray with 2 CPUs (`start_local_ray(2)`), which the executor finds running and uses.

(a) The 200-node layered no-op DAG of `dag200.py`: a cold run (workers have not imported cairn or the project
    yet) and a forced rerun on the same workers (warm). *Per-step overhead* = (time from the run's
    `run_started` event to its last `step_finished` - time in user functions) / 200; planning before and
    closing the executor after are outside that span.
(b) The 8 one-second CPU burns and a join of `parallel.py` on 2 workers: wall of the steps (same span) and
    parallel efficiency = 4 x single burn CPU (measured again in each repetition) / wall, beside a plain
    `ProcessPoolExecutor(2)` run right after (paired ratio = pool wall / cairn wall, which is less sensitive
    to other load on the machine).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as C
import dag200
import parallel

EXECUTORS = ("process", "dask", "ray")
WORKERS = 2

# Runs in a fresh interpreter: brings the executor's cluster up, then times runs on it; prints JSON.
DRIVER = """\
import json, logging, sys, time
import cairn
import cairn.engine.api, cairn.engine.step, cairn.io, cairn.tracking.environment
from cairn.executors.factory import create_executor

kind, workers, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
projects = sys.argv[4:]
t = time.perf_counter()
address = None
cluster = None
if kind == "dask":
    import distributed
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"},
                                       silence_logs=logging.CRITICAL)
    address = cluster.scheduler_address
elif kind == "ray":
    from cairn.executors.ray import start_local_ray
    start_local_ray(workers)
startup = time.perf_counter() - t


def go(project, **kw):
    marks = {}
    def on_event(event):
        now = time.perf_counter()
        if event.kind == "run_started":
            marks["start"] = now
        elif event.kind == "step_finished":
            marks["last"] = now
    t = time.perf_counter()
    executor = create_executor(kind, workers, address)
    connect = time.perf_counter() - t
    t = time.perf_counter()
    r = cairn.materialize(project=project, executor=kind, workers=workers, executor_instance=executor,
                          on_event=on_event, **kw)
    wall = time.perf_counter() - t
    return {"ok": r.ok, "executed": r.count("executed"), "connect": connect, "wall": wall,
            "steps_wall": marks["last"] - marks["start"],
            "errors": [s.error for s in r.steps if s.error][:3]}


out = {"startup": startup}
if mode == "dag":
    out["cold"] = go(projects[0])
    out["warm"] = go(projects[0], force=True)
else:
    out["burns"] = go(projects[0])
if cluster is not None:
    cluster.close()
elif kind == "ray":
    import ray
    ray.shutdown()
print(json.dumps(out))
"""

# Time in user functions of the 200-node DAG: the same functions called from plain Python.
USER_TIME = """\
import json, sys, time
from types import SimpleNamespace
from cairn.project import load_project
graph = load_project(sys.argv[1]).graph
t = time.perf_counter()
values = {}
for name in graph.order:
    a = graph.assets[name]
    values[name] = a.fn(SimpleNamespace(params=dict(a.params)), *(values[i.asset] for i in a.inputs))
print(json.dumps({"user_s": time.perf_counter() - t}))
"""


def driver(kind: str, mode: str, project: Path) -> dict[str, Any]:
    proc = C.run([sys.executable, "-c", DRIVER, kind, str(WORKERS), mode, str(project)]).check()
    data: dict[str, Any] = proc.json()
    for run in ("cold", "warm", "burns"):
        if run in data and not data[run]["ok"]:
            raise RuntimeError(f"{kind} {mode} {run} run failed: {data[run]}")
    return data


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=0, help="loop iterations of one burn (default: calibrate to 1 s)")
    p.add_argument("--executors", default=",".join(EXECUTORS), help="comma-separated (default: all three)")
    args = p.parse_args()
    n = args.repeat
    kinds = [k for k in args.executors.split(",") if k]
    C.header("distributed: per-step overhead (200-node no-op DAG) and 8 x 1 s burns on 2 workers", n)
    iterations = args.iterations or parallel.calibrate()
    singles = [parallel.single_burn(iterations).json() for _ in range(5)]
    single = C.median(s["cpu"] for s in singles)
    ideal = parallel.BURNS / WORKERS * single
    print(
        f"burn = {iterations:,} iterations, single burn CPU {single:.3f} s; "
        f"ideal wall on {WORKERS} workers {ideal:.2f} s"
    )

    dag: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    burns: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    pool: list[float] = []
    rep_single: list[float] = []  # one burn's CPU in a plain process, measured in each repetition
    with C.workspace("distributed", args.keep) as base:
        user = C.run_python(USER_TIME, str(C.write_project(base / "user", "w1", dag200.PIPELINE))).check()
        user_s = user.json()["user_s"]
        for rep in range(n):
            rep_single.append(C.median(parallel.single_burn(iterations).json()["cpu"] for _ in range(2)))
            for kind in kinds:  # interleaved, so that changing load on the machine hits every executor alike
                C.progress(f"#{rep + 1}/{n} {kind}: 200-node DAG")
                project = C.write_project(base / f"dag-{kind}-{rep}", "w1", dag200.PIPELINE, executor=kind)
                dag[kind].append(driver(kind, "dag", project))
                C.progress(f"#{rep + 1}/{n} {kind}: 8 burns")
                project = C.write_project(
                    base / f"burn-{kind}-{rep}", "w4", parallel.pipeline(iterations), executor=kind
                )
                burns[kind].append(driver(kind, "burns", project))
            pool.append(C.run_python(parallel.POOL, str(iterations), str(parallel.BURNS), str(WORKERS)).check().wall_s)

    t1 = C.Table(
        f"Per-step overhead on the 200-node no-op DAG, {WORKERS} workers, n={n} (ms per step, median (min-max))",
        [
            "executor",
            "cluster start s",
            "cold: steps wall s",
            "cold ms/step",
            "warm: steps wall s",
            "warm ms/step",
            "materialize() cold s",
        ],
    )
    for kind in kinds:
        runs = dag[kind]
        t1.add(
            kind,
            C.spread([r["startup"] for r in runs]),
            C.spread([r["cold"]["steps_wall"] for r in runs]),
            C.spread([(r["cold"]["steps_wall"] - user_s) / dag200.N_NODES for r in runs], 2, 1e3),
            C.spread([r["warm"]["steps_wall"] for r in runs]),
            C.spread([(r["warm"]["steps_wall"] - user_s) / dag200.N_NODES for r in runs], 2, 1e3),
            C.spread([r["cold"]["wall"] for r in runs]),
        )
    t1.notes.append(
        f"Steps wall = from the run_started event to the last step_finished (planning and closing the executor "
        f"excluded); user functions take {user_s * 1e3:.2f} ms in all. 'cold': the workers run their first steps "
        "(they import cairn's step job and the project); 'warm': a forced rerun on the same workers. The process "
        "executor forks its workers for every run, so its two figures are alike. Cluster start: LocalCluster "
        "(dask), ray.init (ray); not part of any run."
    )
    t1.print()

    t2 = C.Table(
        f"8 x ~1 s CPU burns + join on {WORKERS} workers, n={n} (ideal {ideal:.2f} s)",
        ["executor", "steps wall s", "parallel efficiency", "vs plain pool (paired)", "materialize() s"],
    )

    def efficiency(walls: list[float]) -> str:
        """Per repetition: 4 x that repetition's single burn / wall (the CPU's speed drifts on a shared VM)."""
        effs = [parallel.BURNS / WORKERS * one / wall for one, wall in zip(rep_single, walls, strict=True)]
        return C.spread(effs)

    for kind in kinds:
        walls = [r["burns"]["steps_wall"] for r in burns[kind]]
        t2.add(
            kind,
            C.spread(walls),
            efficiency(walls),
            f"{C.median(pw / w for pw, w in zip(pool, walls, strict=True)):.2f}",
            C.spread([r["burns"]["wall"] for r in burns[kind]]),
        )
    t2.add("plain ProcessPoolExecutor(2)", C.spread(pool), efficiency(pool), "1.00", "-")
    t2.notes.append(
        "Parallel efficiency = 4 x single-burn CPU / steps wall, with the single burn measured in a plain process "
        "at the start of the same repetition (median of 2). The plain pool's wall includes its interpreter's "
        "start-up; it runs right after the executors of the same repetition."
    )
    t2.print()
    eff = {
        k: C.median(
            parallel.BURNS / WORKERS * one / r["burns"]["steps_wall"]
            for one, r in zip(rep_single, burns[k], strict=True)
        )
        for k in kinds
    }
    over = {k: C.median((r["warm"]["steps_wall"] - user_s) / dag200.N_NODES * 1e3 for r in dag[k]) for k in kinds}
    print(
        "\nSummary: warm per-step overhead "
        + ", ".join(f"{k} {over[k]:.1f} ms" for k in kinds)
        + "; efficiency of 8 burns on 2 workers "
        + ", ".join(f"{k} {eff[k]:.2f}" for k in kinds)
        + "."
    )


if __name__ == "__main__":
    main()
