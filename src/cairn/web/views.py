"""What the API returns and the pages show, read from the project's stores: one function per view, each a
JSON-compatible dict or list, so that a page shows exactly what its API route returns."""

from __future__ import annotations

import re
import threading
from typing import Any

from cairn.core.keys import StepId, validate_name, validate_partition
from cairn.core.records import RunStatus
from cairn.errors import UsageError, did_you_mean
from cairn.project import Project, load_project
from cairn.storage.metadata import MetadataStore
from cairn.web.state import AppState

RUN_STATUSES = tuple(s.value for s in RunStatus)
_MAT_FIELDS: tuple[str, ...] = ("id", "partition", "data_version", "code_version", "run_id", "attempt")
_MAT_FIELDS += ("created_at", "duration_s", "size", "format", "metrics")


_LOADING = threading.Lock()


def project(state: AppState) -> Project:
    """The project loaded now (the code may have changed since the last request).

    One load at a time: loading imports the project's modules, which changes `sys.modules` and `sys.path`.
    """
    with _LOADING:
        return load_project(state.settings)


def assets(state: AppState, meta: MetadataStore) -> list[dict[str, Any]]:
    """Every asset partition: fresh, stale or missing (`cairn.engine.api.status`), with its latest result."""
    from cairn.engine.api import Stores, status
    from cairn.storage.factory import open_artifacts

    settings = state.settings
    stores = Stores(meta, open_artifacts(settings.artifacts, settings.root, settings.artifacts_options))
    loaded = project(state)
    out = []
    for s in status(loaded, stores):
        latest = s.latest
        out.append(
            {
                "asset": s.step.asset,
                "partition": s.step.partition or None,
                "state": s.state,
                "reason": s.reason,
                "tags": dict(loaded.graph.assets[s.step.asset].tags) if s.step.asset in loaded.graph.assets else {},
                "latest": None
                if latest is None
                else latest.to_dict("id", "data_version", "run_id", "created_at", "duration_s", "size"),
            }
        )
    return out


def asset(state: AppState, meta: MetadataStore, name: str, partition: str | None, limit: int) -> dict[str, Any]:
    """One asset: its materializations (newest first), their check results, and its lineage up and down."""
    from cairn.lineage.graph import impact, lineage

    validate_name(name)
    if partition is not None:
        validate_partition(partition)
    loaded = project(state)
    graph = loaded.graph
    if name not in graph.assets:
        raise LookupError(f"asset '{name}' is not defined.{did_you_mean(name, graph.assets)}")
    mats = meta.materializations(name, partition, limit)
    upstream = None
    if mats:
        upstream = lineage(meta, mats[0]).to_dict()
    return {
        "asset": name,
        "upstream_assets": list(graph.upstream[name]),
        "downstream_assets": list(graph.downstream[name]),
        "materializations": [
            {
                **m.to_dict(*_MAT_FIELDS),
                "checks": m.metadata.get("cairn.checks", []),
            }
            for m in mats
        ],
        "lineage": {"upstream": upstream, "downstream": [i.to_dict() for i in impact(graph, meta, name)]},
    }


def runs(meta: MetadataStore, status: str | None, limit: int) -> list[dict[str, Any]]:
    """Run history, newest first, at most `limit`, only runs with `status` when given."""
    if status is not None and status not in RUN_STATUSES:
        raise UsageError(f"unknown run status {status!r}; one of: {', '.join(RUN_STATUSES)}")
    found = meta.runs_with_status(status, limit) if status else meta.list_runs(limit)
    out = []
    for r in found:
        counts: dict[str, int] = {}
        for s in meta.run_steps(r.run_id):
            counts[s.status] = counts.get(s.status, 0) + 1
        out.append({**r.to_dict(), "duration_s": r.duration_s, "steps": counts})
    return out


def run(meta: MetadataStore, run_id: str) -> dict[str, Any]:
    """One run with its steps (status, reason, duration, attempts) and every attempt."""
    rid = resolved_run(meta, run_id)
    record = meta.get_run(rid)
    if record is None:
        raise LookupError(f"no run {run_id!r}")
    return {
        **record.to_dict(details=True),
        "duration_s": record.duration_s,
        "steps": [s.to_dict() for s in meta.run_steps(rid)],
        "attempts": [a.to_dict() for a in meta.attempts(rid)],
    }


def logs(meta: MetadataStore, run_id: str, asset: str | None, partition: str | None) -> list[dict[str, Any]]:
    """The captured log lines of a run, or of one of its steps, then its failed attempts' errors as ERROR lines
    (what `cairn logs --json` prints)."""
    if asset is not None:
        validate_name(asset)
    if partition is not None:
        validate_partition(partition)
    rid = resolved_run(meta, run_id)
    lines = [r.to_dict() for r in meta.logs(rid, asset, partition)]
    for a in meta.attempts(rid):
        if a.error and asset in (None, a.asset) and partition in (None, a.partition):
            where = {"asset": a.asset, "partition": a.partition or None, "attempt": a.attempt}
            lines.append({**where, "at": a.finished_at, "level": "ERROR", "message": a.error})
    return lines


def resolved_run(meta: MetadataStore, text: str) -> str:
    """A run id from an id, a unique prefix or ``latest``; names that are no run id are refused first."""
    validate_name(text, "run id")
    try:
        return meta.resolve_run_id(text)
    except UsageError as e:
        raise LookupError(str(e)) from None


def snapshot(meta: MetadataStore, name: str) -> dict[str, Any]:
    validate_name(name, "snapshot")
    if name not in {s.name for s in meta.snapshots()}:
        raise LookupError(f"no snapshot {name!r}")
    pinned = meta.snapshot(name)
    return {
        "name": name,
        "pins": [
            {"asset": a, "partition": p or None, **m.to_dict("id", "data_version", "run_id")}
            for (a, p), m in sorted(pinned.items())
        ],
    }


def backfills(meta: MetadataStore, limit: int) -> list[dict[str, Any]]:
    from cairn.engine.backfill import progress

    return [{**b.to_dict(), **progress(meta, b).to_dict()} for b in meta.backfills(limit)]


_ACTION = re.compile(r"^[a-z_]{1,32}(\.[a-z_]{1,32})*(\.\*)?\Z")


def audit(
    meta: MetadataStore, limit: int, actor: str | None, action: str | None, subject: str | None
) -> list[dict[str, Any]]:
    """The audit log, newest first; each filter is checked for what it can be (a name, ``noun.verb``, ``x@y``)."""
    if actor is not None:
        validate_name(actor, "actor")
    if action is not None and not _ACTION.match(action):
        raise UsageError(f"action {action!r} is not allowed: use noun.verb (model.promote) or a family (model.*)")
    if subject is not None:
        name, _, rest = subject.partition("@")
        validate_name(name, "subject")
        validate_partition(rest)
    return [e.to_dict() for e in meta.audit_entries(limit, actor=actor, action=action, subject=subject)]


def step_id(asset_name: str, partition: str | None) -> StepId:
    return StepId(validate_name(asset_name), validate_partition(partition or ""))


def backfill(meta: MetadataStore, backfill_id: str) -> dict[str, Any]:
    """One backfill: its record and progress, its runs, and the status of each step of its range so far (a step
    done in any of its runs stays done; otherwise its last run's status)."""
    from cairn.engine.backfill import progress

    validate_name(backfill_id, "backfill id")
    try:
        record = meta.backfill(backfill_id)
    except UsageError as e:
        raise LookupError(str(e)) from None
    runs_of = []
    steps: dict[tuple[str, str], str] = {}
    for run_id in record.run_ids:
        found = meta.get_run(run_id)
        runs_of.append({"run_id": run_id, "status": found.status if found else None})
        for s in meta.run_steps(run_id):
            if steps.get((s.asset, s.partition)) not in ("executed", "cached"):
                steps[(s.asset, s.partition)] = s.status
    return {
        **record.to_dict(),
        **progress(meta, record).to_dict(),
        "created_at": record.created_at,
        "finished_at": record.finished_at,
        "options": record.options,
        "run_details": runs_of,
        "steps": [{"asset": a, "partition": p or None, "status": st} for (a, p), st in sorted(steps.items())],
    }


def aliases(meta: MetadataStore, asset: str | None) -> list[dict[str, Any]]:
    """Every alias (of one asset) with what it points at now and every move it made, oldest first."""
    from cairn import registry

    if asset is not None:
        validate_name(asset)
    out = []
    for a in registry.aliases(meta, asset):
        moves = meta.alias_moves(a.record.alias, a.record.asset)
        out.append({**a.to_dict(), "history": [m.to_dict() for m in moves]})
    return out


def alias_history(meta: MetadataStore, alias: str, asset: str | None) -> list[dict[str, Any]]:
    """Every move of one alias (of one asset), oldest first."""
    from cairn import registry

    validate_name(alias, "alias")
    if asset is not None:
        validate_name(asset)
    try:
        return [m.to_dict() for m in registry.alias_history(meta, alias, asset)]
    except UsageError as e:
        raise LookupError(str(e)) from None


def audit_verification(meta: MetadataStore) -> dict[str, Any]:
    """`cairn audit verify`: whether the hash chain holds, how many rows it has, and where it breaks."""
    rows, head = meta.audit_head()  # read first: every row up to it is then verified
    broken = meta.verify_audit()
    return {"intact": broken is None, "rows": rows, "head": head, "break": broken.to_dict() if broken else None}


def incidents(meta: MetadataStore, open_only: bool, limit: int) -> list[dict[str, Any]]:
    """`cairn incidents --json`: incidents newest first with their steps and alerts. An alert names its webhook
    by scheme and host only: the rest of a webhook URL is often its secret."""
    found = meta.incidents(open_only=open_only, limit=limit)
    alerts: dict[int, list[dict[str, Any]]] = {}
    for alert in meta.alerts([i.id for i in found]):
        shown = {**alert.to_dict(), "destination": webhook_host(alert.destination)}
        alerts.setdefault(alert.incident_id, []).append(shown)
    return [{**i.to_dict(), "alerts": alerts.get(i.id, [])} for i in found]


def webhook_host(destination: str) -> str:
    """``https://hooks.example.com/…`` for a webhook URL; ``log`` (or any other non-URL) as it is."""
    from urllib.parse import urlsplit

    parts = urlsplit(destination)
    if not parts.scheme or not parts.hostname:
        return destination if "/" not in destination else "…"
    rest = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{parts.hostname}{rest}"
