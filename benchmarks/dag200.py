"""W1/W2/W3 of PEERS.md on cairn: the 200-node layered DAG cold, rerun unchanged, and with one param changed.

    python benchmarks/dag200.py [--repeat N]

Measures, each repetition on a fresh project (20 layers x 10 nodes; n{l}_{i} reads n{l-1}_{i} and
n{l-1}_{(i+1) % 10}; one integer param k per node; trivial arithmetic):

(a) W1 cold through the API (`cairn.materialize`) with the inline and the process executor, in a fresh
    interpreter: the wall time of the `materialize()` call, the same from interpreter start, the per-step
    overhead ((wall - time in user functions) / 200), and how much of it is durable writes: a micro-benchmark
    of the per-step writes (claim, object write, fsync and publication, commit), one step at a time and in
    groups of 10, on the same disk, and the same cold run with the project on tmpfs (/dev/shm, where fsync
    costs nothing) as a cross-check;
(b) W2 the unchanged rerun: in the same process (API) and as `cairn -C DIR run --json` (start-up included);
(c) W3 `--set n10_3.k=99` / ``params=``: executed count against the descendants computed from the graph;
(d) `cairn -C DIR status` after a run; (e) `cairn --help` and `python -c "import cairn"` start-up.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as C

LAYERS = 20
WIDTH = 10
N_NODES = LAYERS * WIDTH
CHANGED = "n10_3"
WRITES = ("claim", "write", "fsync", "commit")
GROUP = 10  # steps per group in the durable-writes micro-benchmark: a layer, as the inline executor commits it
NEW_K = 99

PIPELINE = C.layered_pipeline(LAYERS, WIDTH)

# Runs in a fresh interpreter: W1 cold, W2 rerun, W3 one change, through the API; prints JSON.
DRIVER = """\
import json, sys, time
t_start = time.monotonic()
import cairn
t_imported = time.monotonic()
# The modules `materialize` imports on first use, loaded here so that the cold run's wall is the run itself;
# the time is reported apart and is included in "from interpreter start".
import cairn.engine.api, cairn.engine.step, cairn.io, cairn.tracking.environment
import cairn.executors.inline, cairn.executors.local
t_lazy = time.monotonic()
project, executor, changed, new_k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def go(**kw):
    t = time.perf_counter()
    r = cairn.materialize(project=project, executor=executor, workers=2, **kw)
    wall = time.perf_counter() - t
    done = time.monotonic()
    steps = [s for s in r.steps if s.status == "executed"]
    return {
        "wall": wall, "done": done, "ok": r.ok, "status": r.status,
        **{k: r.count(k) for k in ("executed", "cached", "failed", "skipped")},
        "step_s": sum(s.duration_s or 0.0 for s in steps), "executed_names": [s.asset for s in steps],
        "errors": [s.error for s in r.steps if s.error][:3],
    }

cold = go()
cached = go()
w3 = go(params={changed: {"k": new_k}})

# Time in user functions: the same 200 functions evaluated by plain Python in topological order.
from types import SimpleNamespace
from cairn.project import load_project
graph = load_project(project).graph
t = time.perf_counter()
values = {}
for name in graph.order:
    a = graph.assets[name]
    ctx = SimpleNamespace(params=dict(a.params))
    values[name] = a.fn(ctx, *(values[i.asset] for i in a.inputs))
user_s = time.perf_counter() - t
final = cairn.load(graph.order[-1], project=project)
print(json.dumps({"t_start": t_start, "import_s": t_imported - t_start, "lazy_s": t_lazy - t_imported,
                  "cold": cold, "cached": cached, "w3": w3, "user_s": user_s}))
"""

# Runs in a fresh interpreter: the durable writes the engine does for 200 executed steps, in two ways on one
# database: one step at a time (put_bytes fsyncs and links each object, one commit per step: what the engine did
# before group durability) and in groups of 10 (a layer of the DAG, as the inline executor finishes them: objects
# written unpublished, one `publish` pass, one `commit_materializations` transaction). Each is split into the
# claim (attempt + lease), the object write, its fsync and publication, and the commit.
DURABLE = """\
import json, os, socket, sys, time
from cairn.core import records as R
from cairn.storage.artifacts import LocalArtifactStore, deferred_publishing
from cairn.storage.metadata import open_metadata

root, group = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.join(root, ".cairn"), exist_ok=True)
meta = open_metadata("sqlite:///.cairn/cairn.db", root)
store = LocalArtifactStore(os.path.join(root, ".cairn", "artifacts"))
owner = f"{socket.gethostname()}:{os.getpid()}"
out = {}
for mode in ("step", "group"):
    run_id = f"20261123-000000-{mode}"
    meta.create_run(R.RunRecord(run_id, R.RUNNING, "*", time.time(), args={}, environment={}))
    spent = {"claim": 0.0, "write": 0.0, "fsync": 0.0, "commit": 0.0}
    prev = []
    size = 1 if mode == "step" else group
    t_all = time.perf_counter()
    for first in range(0, 200, size):
        batch = []
        for i in range(first, first + size):
            name, key = f"{mode}{i // 10}_{i % 10}", f"b3:{mode == 'group':032x}{i:032x}"
            t0 = time.perf_counter()
            claim = meta.claim(key, run_id, owner, 60.0, R.AttemptRecord(run_id, name, "", 1, "running", time.time()))
            t1 = time.perf_counter()
            with deferred_publishing() as unpublished:
                writer = store.writer()
                writer.write(f"{mode}{1000003 + i}".encode())
                digest, size_b = writer.commit()
            t2 = time.perf_counter()
            spent["claim"] += t1 - t0
            spent["write"] += t2 - t1
            inputs = tuple(R.InputRef(a, "", d) for a, d in prev[-2:])
            mat = R.Materialization(name, "", key, digest, size_b, "json", "json", run_id, 1, "b3:" + "0" * 64,
                                    {name: "b3:" + "1" * 64}, {"k": i % 10}, i, inputs, 0.0001, time.time())
            step = R.StepRecord(run_id, name, "", R.EXECUTED, "never materialized", key, digest, 1, 0.0001)
            batch.append(((mat, step, (key, claim.token), None), unpublished.objects))
            prev.append((name, digest))
        t2 = time.perf_counter()
        store.publish([obj for _, objects in batch for obj in objects])
        t3 = time.perf_counter()
        meta.commit_materializations([row for row, _ in batch])
        t4 = time.perf_counter()
        spent["fsync"] += t3 - t2
        spent["commit"] += t4 - t3
    out[mode] = {"total": time.perf_counter() - t_all, **spent}
meta.close()
print(json.dumps(out))
"""


def durable_mode(executor: str) -> str:
    """Which micro-benchmark figures stand for an executor's durable writes."""
    return "group" if executor == "inline" else "step"


def expected_descendants() -> set[str]:
    """The changed node and everything downstream of it, from the same topology as PIPELINE."""
    children: dict[str, list[str]] = {}
    for layer in range(1, LAYERS):
        for i in range(WIDTH):
            for up in (i, (i + 1) % WIDTH):
                children.setdefault(f"n{layer - 1}_{up}", []).append(f"n{layer}_{i}")
    seen, stack = {CHANGED}, [CHANGED]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def api_runs(base: Path, executor: str, repeat: int, label: str) -> list[dict[str, Any]]:
    """Per repetition: the API driver on a fresh project, then the durable-writes micro-benchmark beside it
    (same file system, right after, so that both see the same disk and the same load on the machine)."""
    out = []
    for rep in range(repeat):
        project = C.write_project(base / f"{label}-{executor}-{rep}", "w1", PIPELINE, executor=executor)
        C.progress(f"API {label} {executor} #{rep + 1}/{repeat}")
        proc = C.run([sys.executable, "-c", DRIVER, str(project), executor, CHANGED, str(NEW_K)]).check()
        data = proc.json()
        data["proc"] = proc
        data["w1_e2e"] = data["cold"]["done"] - proc.started
        for run in ("cold", "cached", "w3"):
            if not data[run]["ok"]:
                raise RuntimeError(f"{label} {executor} {run} run failed: {data[run]}")
        if data["cold"]["executed"] != N_NODES:
            raise RuntimeError(f"{label} {executor}: the cold run executed {data['cold']['executed']} steps")
        micro = base / f"{label}-{executor}-{rep}-durable"
        micro.mkdir()
        spent = C.run([sys.executable, "-c", DURABLE, str(micro), str(GROUP)]).check().json()
        data["durable_ms"] = {mode: {k: spent[mode][k] / N_NODES * 1e3 for k in WRITES} for mode in spent}
        data["overhead_ms"] = (data["cold"]["wall"] - data["user_s"]) / N_NODES * 1e3
        data["beyond_ms"] = data["overhead_ms"] - sum(data["durable_ms"][durable_mode(executor)].values())
        out.append(data)
    return out


def cli_runs(base: Path, repeat: int) -> dict[str, list[Any]]:
    paths = C.cli_paths()
    main = paths.get("cairn (console script)", C.MODULE_CLI)
    res: dict[str, list[Any]] = {"cold": [], "w3": []}
    for rep in range(repeat):
        project = str(C.write_project(base / f"cli-{rep}", "w1", PIPELINE, executor="process"))
        C.progress(f"CLI #{rep + 1}/{repeat}")
        res["cold"].append(C.run([*main, "-C", project, "run", "--json"]).check())
        for name, argv in paths.items():
            res.setdefault(f"cached|{name}", []).append(C.run([*argv, "-C", project, "run", "--json"]).check())
            res.setdefault(f"status|{name}", []).append(C.run([*argv, "-C", project, "status"]).check())
        res["w3"].append(C.run([*main, "-C", project, "run", "--json", "--set", f"{CHANGED}.k={NEW_K}"]).check())
    return res


def startup_runs(repeat: int) -> dict[str, list[C.Proc]]:
    res: dict[str, list[C.Proc]] = {}
    probes = {
        "python -c pass (interpreter alone)": [sys.executable, "-c", "pass"],
        'python -c "import cairn"': [sys.executable, "-c", "import cairn"],
        **{f"{name} --help": [*argv, "--help"] for name, argv in C.cli_paths().items()},
    }
    for rep in range(repeat):
        C.progress(f"start-up #{rep + 1}/{repeat}")
        for name, argv in probes.items():
            res.setdefault(name, []).append(C.run(argv).check())
    return res


def counts(result: dict[str, Any]) -> str:
    return f"{result['executed']} ex / {result['cached']} ca"


def main() -> None:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    n = args.repeat
    C.header("dag200: W1 cold / W2 no-change / W3 one change (200-node layered DAG)", n)
    expected = expected_descendants()
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with C.workspace("dag200", args.keep) as base:
        api = {ex: api_runs(base, ex, n, "disk") for ex in ("inline", "process")}
        tmpfs: dict[str, list[dict[str, Any]]] = {}
        if shm:
            with C.workspace("dag200", args.keep, base=shm) as shm_base:
                tmpfs = {ex: api_runs(shm_base, ex, n, "tmpfs") for ex in ("inline", "process")}
        cli = cli_runs(base, n)
    startup = startup_runs(max(10, 2 * n))

    # ---- (a) W1 cold, API -----------------------------------------------------------------------------
    t = C.Table(
        f"W1 cold, API (`cairn.materialize`, fresh interpreter and project each time), n={n}",
        [
            "executor",
            "file system",
            "materialize() s",
            "from interpreter start s",
            "in step jobs s",
            "overhead ms/step",
            "durable writes ms/step",
            "beyond durable ms/step",
            "target",
            "peak RSS MiB",
        ],
    )
    beyond: dict[tuple[str, str], float] = {}
    users = [r["user_s"] for ex in api for r in api[ex]]
    for ex, target in (("inline", 1.0), ("process", 5.0)):
        for fs, runs in (("disk", api[ex]), ("tmpfs", tmpfs.get(ex, []))):
            if not runs:
                continue
            beyond[ex, fs] = C.median(r["beyond_ms"] for r in runs)
            t.add(
                ex,
                fs,
                C.spread([r["cold"]["wall"] for r in runs]),
                C.spread([r["w1_e2e"] for r in runs]),
                C.spread([r["cold"]["step_s"] for r in runs]),
                C.spread([r["overhead_ms"] for r in runs]),
                C.spread([sum(r["durable_ms"][durable_mode(ex)].values()) for r in runs]),
                C.spread([r["beyond_ms"] for r in runs]),
                f"< {target:g} ms: {C.verdict(beyond[ex, fs], target)}",
                f"{C.median(r['proc'].maxrss_mib for r in runs):.0f}",
            )
    t.notes.append(
        f"Time in user functions (the 200 functions called by plain Python): {C.median(users) * 1e3:.2f} ms in all, "
        "subtracted. 'in step jobs' is the sum of StepResult.duration_s (load inputs, call, serialize, hash, "
        "write+fsync the object). 'from interpreter start' = spawn of the interpreter to the end of the cold "
        "run, comparable with the peers' wall; it includes `import cairn` "
        f"({C.median(r['import_s'] for ex in api for r in api[ex]) * 1e3:.0f} ms) and the modules `materialize` "
        f"imports on first use ({C.median(r['lazy_s'] for ex in api for r in api[ex]) * 1e3:.0f} ms), which the "
        "driver loads before timing materialize() so that the per-step figures hold no one-off import."
    )
    for fs, group in (("disk", api), ("tmpfs", tmpfs)):
        if not group:
            continue
        for mode, how in (("step", "one step at a time"), ("group", f"in groups of {GROUP}")):
            ms = {k: C.median(r["durable_ms"][mode][k] for ex in group for r in group[ex]) for k in WRITES}
            t.notes.append(
                f"Durable writes per executed step on {fs}, {how} (micro-benchmark run right after each cold run, "
                f"median of {2 * n} x 200 steps): claim {ms['claim']:.3f} + write {ms['write']:.3f} + fsync and "
                f"publish {ms['fsync']:.3f} + commit {ms['commit']:.3f} = {sum(ms.values()):.2f} ms."
            )
    t.notes.append(
        f"'durable writes' and 'beyond durable' (= overhead minus the paired micro-benchmark) use the groups of "
        f"{GROUP} for inline runs (the engine publishes and commits a layer at once) and the one-step-at-a-time "
        "figures for process runs (each worker fsyncs and links its own objects; only the commits are grouped)."
    )
    t.notes.append(
        "On tmpfs (/dev/shm) fsync costs nothing, so its rows show the engine's cost with durability almost free; "
        "with the process executor the workers' object writes overlap, so subtracting all writes is approximate."
    )
    t.print()

    # ---- (b) W2 ------------------------------------------------------------------------------------------
    t2 = C.Table(
        f"W2 no-change rerun of the 200-node DAG (ideal: 0 executed), n={n}",
        ["how", "wall s", "executed / cached", "peak RSS MiB", "target", "verdict"],
    )
    for ex in ("inline", "process"):
        runs = api[ex]
        w = [r["cached"]["wall"] for r in runs]
        t2.add(
            f"API in-process, {ex} (2nd materialize() in the same process)",
            C.spread(w, 3),
            counts(runs[0]["cached"]),
            "-",
            "< 0.3 s",
            C.verdict(C.median(w), 0.3),
        )
    for key, procs in cli.items():
        if key.startswith("cached|"):
            w = [p.wall_s for p in procs]
            ex = sum(1 for s in procs[0].json()["steps"] if s["status"] == "executed")
            ca = sum(1 for s in procs[0].json()["steps"] if s["status"] == "cached")
            t2.add(
                f"CLI `run --json` via {key.split('|', 1)[1]}",
                C.spread(w, 3),
                f"{ex} ex / {ca} ca",
                f"{C.median(p.maxrss_mib for p in procs):.0f}",
                "< 0.3 s",
                C.verdict(C.median(w), 0.3),
            )
    t2.print()

    # ---- (c) W3 ------------------------------------------------------------------------------------------
    t3 = C.Table(
        f"W3 one change ({CHANGED}.k={NEW_K}; expected {len(expected)} executed = the node and its "
        f"{len(expected) - 1} descendants, computed from the graph), n={n}",
        ["how", "wall s", "executed", "false-stale", "false-fresh", "ms per executed step"],
    )
    for ex in ("inline", "process"):
        runs = api[ex]
        names = set(runs[0]["w3"]["executed_names"])
        w = [r["w3"]["wall"] for r in runs]
        t3.add(
            f"API in-process, {ex}",
            C.spread(w, 3),
            " / ".join(sorted({str(r["w3"]["executed"]) for r in runs})),
            len(names - expected),
            len(expected - names),
            f"{C.median(w) / len(expected) * 1e3:.1f}",
        )
    w3 = cli["w3"]
    names = {s["asset"] for s in w3[0].json()["steps"] if s["status"] == "executed"}
    executed = sorted({str(sum(1 for s in p.json()["steps"] if s["status"] == "executed")) for p in w3})
    t3.add(
        "CLI `run --json --set`, process executor",
        C.spread([p.wall_s for p in w3], 3),
        " / ".join(executed),
        len(names - expected),
        len(expected - names),
        f"{C.median(p.wall_s for p in w3) / len(expected) * 1e3:.1f}",
    )
    t3.print()

    # ---- (d) status, (e) start-up ------------------------------------------------------------------------
    t4 = C.Table(
        "Start-up and read-only commands (wall including interpreter start-up)",
        ["command", "n", "wall s", "peak RSS MiB", "target", "verdict"],
    )
    for key, procs in cli.items():
        if key.startswith("status|"):
            w = [p.wall_s for p in procs]
            t4.add(
                f"`{key.split('|', 1)[1]} -C DIR status` (200 assets, after a run)",
                len(w),
                C.spread(w, 3),
                f"{C.median(p.maxrss_mib for p in procs):.0f}",
                "< 0.3 s",
                C.verdict(C.median(w), 0.3),
            )
    for name, procs in startup.items():
        w = [p.wall_s for p in procs]
        is_help = name.endswith("--help")
        t4.add(
            f"`{name}`",
            len(w),
            C.spread(w, 3),
            f"{C.median(p.maxrss_mib for p in procs):.0f}",
            "< 0.2 s" if is_help else "-",
            C.verdict(C.median(w), 0.2) if is_help else "-",
        )
    t4.print()

    # ---- peers -------------------------------------------------------------------------------------------
    cold_cli = C.median(p.wall_s for p in cli["cold"])
    w2_cli = min(C.median(p.wall_s for p in procs) for k, procs in cli.items() if k.startswith("cached|"))
    w3_cli = C.median(p.wall_s for p in cli["w3"])
    e2e = {ex: C.median(r["w1_e2e"] for r in api[ex]) for ex in api}
    w2_api = {ex: C.median(r["cached"]["wall"] for r in api[ex]) for ex in api}
    w3_api = {ex: C.median(r["w3"]["wall"] for r in api[ex]) for ex in api}
    tp = C.Table(
        "cairn beside the peers (PEERS.md, wall s medians; peers' W1-W3 run in one fresh process each)",
        ["tool", "W1 cold", "W2 no-change", "W3 one change"],
    )
    tp.add("**cairn CLI** (process executor, start-up included)", f"{cold_cli:.2f}", f"{w2_cli:.2f}", f"{w3_cli:.2f}")
    for ex in ("inline", "process"):
        tp.add(
            f"**cairn API** {ex} (W1 from interpreter start; W2/W3 in-process)",
            f"{e2e[ex]:.2f}",
            f"{w2_api[ex]:.3f}",
            f"{w3_api[ex]:.2f}",
        )
    for row in (
        ("hamilton 1.90", "1.05", "0.73", "0.84"),
        ("prefect 3.8", "13.48", "13.59", "12.95"),
        ("dagster 1.13", "22.71", "22.41", "23.47"),
        ("dvc 3.67", "142.63", "5.59", "79.38"),
    ):
        tp.add(*row)
    tp.print()

    best_help = min(C.median(p.wall_s for p in procs) for k, procs in startup.items() if k.endswith("--help"))
    status_best = min(C.median(p.wall_s for p in procs) for k, procs in cli.items() if k.startswith("status|"))
    print(
        "\nSummary: W1 cold "
        f"{C.median(r['cold']['wall'] for r in api['inline']):.2f} s inline / "
        f"{C.median(r['cold']['wall'] for r in api['process']):.2f} s process (API), {cold_cli:.2f} s CLI; "
        f"beyond durable writes {beyond['inline', 'disk']:.2f} ms/step inline (target < 1), "
        f"{beyond['process', 'disk']:.2f} ms/step process (target < 5); "
        f"W2 {w2_cli:.2f} s CLI (target < 0.3); W3 {w3_cli:.2f} s CLI, "
        f"{api['process'][0]['w3']['executed']}/{len(expected)} executed; status {status_best:.2f} s "
        f"(target < 0.3); --help {best_help:.2f} s (target < 0.2)."
    )


if __name__ == "__main__":
    main()
