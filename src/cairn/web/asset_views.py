"""What the asset page plots and tells beyond its materializations: the numeric metrics its steps recorded over
runs, how long its executions took, the state of each partition, and its code versions over time (who ran
each first, at which git commit, and what changed). Each view is JSON-compatible and is what its API route
returns.

The code history is read from what runs record: a materialization's code version and code parts (one hash
per function, by ``module.qualname``), its run's actor and the git commit and dirty state of the project.
A commit's author and subject are not recorded; when the project folder is a git work tree that still has the
commit, ``git show`` supplies them (once per commit: a commit never changes).
"""

from __future__ import annotations

import functools
import math
import os
import re
import subprocess
from typing import Any

from cairn.core.keys import validate_name
from cairn.core.records import Materialization
from cairn.errors import did_you_mean
from cairn.project import Project
from cairn.storage.metadata import MetadataStore

HISTORY_LIMIT = 1000  # materializations read for the code history and the plots
MAX_METRICS = 12
RECENT_RUNS = 10  # runs whose step statuses mark partitions that failed
_COMMIT = re.compile(r"^[0-9a-f]{7,64}\Z")
GIT_TIMEOUT_S = 2.0


def _known(loaded: Project, name: str) -> None:
    validate_name(name)
    graph = loaded.graph
    if name not in graph.assets:
        raise LookupError(f"asset '{name}' is not defined.{did_you_mean(name, graph.assets)}")


def _history(meta: MetadataStore, name: str, limit: int) -> list[Materialization]:
    """The asset's materializations, oldest first (the newest `limit`)."""
    return list(reversed(meta.materializations(name, None, limit)))


def metrics(loaded: Project, meta: MetadataStore, name: str, limit: int = 200) -> dict[str, Any]:
    """Each numeric metric of the asset over its newest `limit` materializations, oldest first:
    ``{"asset", "metrics": {metric: [{"value", "run_id", "partition", "created_at"}]}}``."""
    _known(loaded, name)
    series: dict[str, list[dict[str, Any]]] = {}
    for m in _history(meta, name, limit):
        for metric, value in sorted(m.metrics.items()):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                continue
            if metric not in series and len(series) >= MAX_METRICS:
                continue
            point = {"value": value, "run_id": m.run_id, "partition": m.partition or None, "created_at": m.created_at}
            series.setdefault(metric, []).append(point)
    return {"asset": name, "metrics": series}


def durations(loaded: Project, meta: MetadataStore, name: str, limit: int = 200) -> dict[str, Any]:
    """How long the asset's step took each time it executed (a cached step reuses a result and takes none),
    oldest first, with their count, mean and maximum."""
    _known(loaded, name)
    mats = _history(meta, name, limit)
    found = [
        {"duration_s": m.duration_s, "run_id": m.run_id, "partition": m.partition or None, "created_at": m.created_at}
        for m in mats
    ]
    values = [m.duration_s for m in mats]
    return {
        "asset": name,
        "count": len(values),
        "mean_s": sum(values) / len(values) if values else None,
        "max_s": max(values, default=None),
        "executions": found,
    }


def partitions(loaded: Project, meta: MetadataStore, name: str) -> dict[str, Any]:
    """Each partition of the asset in key order with its state: ``fresh``, ``stale`` or ``missing`` (as
    `cairn status` says), or ``failed`` when it is not fresh and its step failed in one of the last runs."""
    from cairn.engine.api import Stores, status
    from cairn.engine.prepare import RunOptions
    from cairn.storage.factory import open_artifacts

    _known(loaded, name)
    if loaded.graph.assets[name].partitions is None:
        return {"asset": name, "partitioned": False, "partitions": []}
    settings = loaded.settings
    stores = Stores(meta, open_artifacts(settings.artifacts, settings.root, settings.artifacts_options))
    failed: dict[str, bool] = {}
    for run in meta.list_runs(RECENT_RUNS):  # newest first: the first status seen of a partition is its latest
        for step in meta.run_steps(run.run_id):
            if step.asset == name and step.partition not in failed and step.status in ("executed", "cached", "failed"):
                failed[step.partition] = step.status == "failed"
    cells = []
    for s in status(loaded, stores, RunOptions(selection=(name,))):
        if s.step.asset != name:
            continue
        state_now = "failed" if s.state != "fresh" and failed.get(s.step.partition) else s.state
        cells.append({"partition": s.step.partition, "state": state_now, "reason": s.reason})
    return {"asset": name, "partitioned": True, "partitions": cells}


def code_history(loaded: Project, meta: MetadataStore, name: str) -> dict[str, Any]:
    """The asset's code versions in the order they first ran, newest first, each with the run that first used
    it, who ran it, the project's git commit then (with its author and subject when git still knows it), how
    many materializations it made, and which functions changed from the version before.

    ``current`` is the code version the project defines now, ``current_ran`` whether any run used it yet.
    """
    _known(loaded, name)
    current, _ = loaded.code(loaded.graph.assets[name])
    versions: dict[str, dict[str, Any]] = {}
    parts: dict[str, dict[str, str]] = {}
    runs: dict[str, Any] = {}
    for m in _history(meta, name, HISTORY_LIMIT):
        seen = versions.get(m.code_version)
        if seen is not None:
            seen["materializations"] += 1
            seen["last_at"] = m.created_at
            continue
        run = runs.get(m.run_id)
        if run is None:
            run = runs[m.run_id] = meta.get_run(m.run_id)
        env = run.environment if run is not None else {}
        commit = env.get("git_commit")
        before = parts.get(next(reversed(versions))) if versions else None
        versions[m.code_version] = {
            "code_version": m.code_version,
            "first_run": m.run_id,
            "first_at": m.created_at,
            "last_at": m.created_at,
            "materializations": 1,
            "actor": run.args.get("actor") if run is not None else None,
            "git_commit": commit,
            "git_dirty": env.get("git_dirty"),
            "commit": commit_info(str(loaded.settings.root), commit) if isinstance(commit, str) else None,
            "changed": None if before is None else _changed(before, m.code_parts),
        }
        parts[m.code_version] = dict(m.code_parts)
    return {
        "asset": name,
        "current": current,
        "current_ran": current in versions,
        "versions": list(reversed(versions.values())),
    }


def _changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The functions (and contract, checks, gates) whose hashes differ, were added or were removed."""
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


@functools.lru_cache(maxsize=512)
def commit_info(root: str, commit: str) -> dict[str, Any] | None:
    """``{"author", "at", "subject"}`` of a git commit of the work tree holding `root`; None when git, the
    work tree or the commit is not there (or git does not answer within `GIT_TIMEOUT_S`)."""
    if not _COMMIT.match(commit):
        return None
    try:
        done = subprocess.run(
            ["git", "-C", root, "show", "-s", "--no-show-signature", "--format=%an%x1f%at%x1f%s", commit, "--"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = done.stdout.decode("utf-8", "replace").strip().split("\x1f")
    if done.returncode != 0 or len(fields) != 3:
        return None
    author, at, subject = fields
    return {"author": author, "at": float(at) if at.isdigit() else None, "subject": subject[:300]}
