"""`cairn models list` on 1,000 model versions: the registry's listing, in-process and through the CLI.

    python benchmarks/registry.py [--repeat N] [--versions V] [--models M] [--keep]

Builds a project folder with a SQLite metadata database holding V model versions (default 1,000) spread over
M models (default 10), as training leaves them: one materialization per version with two inputs, three
recorded gate results (one blocking gate failing on every fifth version), a model card and metrics; an
approval by another approver on every other version; a `champion` alias on each model (moved three times,
so it has a history) and a `canary` alias. Then, each repetition:

* `cairn.registry.models(meta)` in this process (the queries and building the views);
* `cairn models list --json` and `cairn models list` (the table) through `python -m cairn.cli.main` in a
  fresh interpreter: what a user waits for, start-up included;
* `cairn models show NAME@V --json` of one version, for comparison.

Prints median (min-max) seconds; targets: the in-process listing < 0.1 s, the CLI < 0.5 s with start-up.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as C

from cairn.core.records import EXECUTED, RUNNING, ApprovalRecord, InputRef, Materialization, RunRecord, StepRecord
from cairn.registry import models
from cairn.storage.metadata import MetadataStore, open_metadata
from cairn.storage.registry import AliasMove

PIPELINE = """
from cairn import asset

@asset
def placeholder() -> int:
    return 1
"""


def build(root: Path, versions: int, names: int) -> tuple[str, int]:
    """Record the versions; returns a model name and version for `models show`."""
    C.write_project(root, "registry-bench", PIPELINE, executor="inline")
    meta = open_metadata("sqlite:///.cairn/cairn.db", root)
    try:
        meta.insert_user("admin", "admin", "b3:admin", "admin", first=True)
        for user in ("alice", "bob"):
            meta.insert_user(user, "approver", f"b3:{user}", "admin")
        meta.create_run(RunRecord("bench", RUNNING, "*", time.time()))
        per_model = -(-versions // names)
        created = 0
        for m in range(names):
            name = f"model_{m:02d}"
            mat_ids = []
            for v in range(per_model):
                if created == versions:
                    break
                created += 1
                mat_ids.append(_version(meta, name, v))
            for mat_id in mat_ids[-3:]:
                meta.move_alias(_move("champion", name, mat_id))
            meta.move_alias(_move("canary", name, mat_ids[-1]))
        C.progress(f"recorded {created} versions of {names} models")
    finally:
        meta.close()
    return "model_00", 1


def _version(meta: MetadataStore, name: str, v: int) -> int:
    digest = f"b3:{name}-{v:06d}".ljust(67, "0")
    gates = [
        {"gate": "metric_threshold:auc", "passed": v % 5 != 0, "blocking": True, "metrics": {"auc": 0.7 + v / 1e4},
         "detail": "auc within [0.7, -]"},
        {"gate": "no_regression:auc", "passed": True, "blocking": True, "metrics": {"delta": 0.001}, "detail": ""},
        {"gate": "size_budget", "passed": True, "blocking": False, "metrics": {"size_bytes": 1 << 20}, "detail": ""},
    ]  # fmt: skip
    mat = Materialization(
        asset=name,
        partition="",
        cache_key=f"b3:key-{name}-{v}",
        data_version=digest,
        size=1 << 20,
        format="skops",
        pytype="sklearn.ensemble._forest.RandomForestClassifier",
        run_id="bench",
        attempt=1,
        code_version="b3:code",
        params={"num_trees": 100 + v, "max_depth": 8},
        seed=v,
        inputs=(InputRef("train", "", f"b3:train-{v}"), InputRef("test", "", f"b3:test-{v}")),
        duration_s=1.5,
        created_at=time.time(),
        metadata={
            "cairn.gates": gates,
            "model_card": {"owner": "ranking", "intended_use": "home feed", "limitations": "new users" * 3},
        },
        metrics={"auc": 0.7 + v / 1e4, "ndcg@10": 0.3},
    )
    step = StepRecord("bench", name, "", EXECUTED, "bench", mat.cache_key, digest, 1, 1.5)
    mat_id = meta.commit_materialization(mat, step, None)
    number = meta.register_model_version(name, mat_id, digest, "bench", "alice")
    if v % 2 == 0:
        meta.add_approval(ApprovalRecord(name, number, "bob", "reviewed", 0.0), {"reason": "reviewed"})
    return mat_id


def _move(alias: str, name: str, mat_id: int) -> AliasMove:
    return AliasMove(alias, name, mat_id, None, "promote", "bob", "bench", "model.promote", name, {"alias": alias})


def main() -> None:
    parser = C.parser(__doc__.splitlines()[0], default_repeat=5)
    parser.add_argument("--versions", type=int, default=1000, help="model versions to record (default 1000)")
    parser.add_argument("--models", type=int, default=10, help="models they are spread over (default 10)")
    args = parser.parse_args()
    C.header(f"cairn models list on {args.versions:,} versions", args.repeat)
    with C.workspace("registry", keep=args.keep) as root:
        show_name, show_version = build(root, args.versions, args.models)
        times: dict[str, list[float]] = {
            "registry.models(meta), in-process": [],
            "cairn models list --json": [],
            "cairn models list (table)": [],
            f"cairn models show {show_name}@{show_version} --json": [],
        }
        listed = 0
        for i in range(args.repeat):
            C.progress(f"repetition {i + 1}/{args.repeat}")
            with open_metadata("sqlite:///.cairn/cairn.db", root) as meta:
                seconds, found = C.timed(lambda meta=meta: models(meta))
            listed = len(found)
            times["registry.models(meta), in-process"].append(seconds)
            out = C.run([*C.MODULE_CLI, "-C", str(root), "models", "list", "--json"]).check()
            assert len(out.json()) == args.versions
            times["cairn models list --json"].append(out.wall_s)
            table = C.run([*C.MODULE_CLI, "-C", str(root), "models", "list"], env={**os.environ, "COLUMNS": "200"})
            times["cairn models list (table)"].append(table.check().wall_s)
            shown = C.run([*C.MODULE_CLI, "-C", str(root), "models", "show", f"{show_name}@{show_version}", "--json"])
            times[f"cairn models show {show_name}@{show_version} --json"].append(shown.check().wall_s)
        help_s = C.median(C.run([*C.MODULE_CLI, "--help"]).check().wall_s for _ in range(args.repeat))
    result = C.Table(
        f"Listing {listed:,} model versions of {args.models} models (SQLite on disk)",
        ["what", "seconds", "target"],
    )
    targets = {"registry.models(meta), in-process": 0.1}
    for name, ts in times.items():
        target = targets.get(name, 0.5)
        result.add(name, C.spread(ts, 3), f"< {target}: {C.verdict(C.median(ts), target)}")
    result.add("`cairn --help` (start-up alone)", f"{help_s:.3f}", "-")
    result.notes.append(
        "Each version: one materialization with 2 inputs, 3 gate results and a model card; approvals on every "
        "other version; aliases champion (3 moves) and canary per model. CLI rows are fresh interpreters."
    )
    result.print()


if __name__ == "__main__":
    main()
