"""What the run pages show beyond the run's record: live progress, the timeline of its attempts, and the
comparison of two runs side by side. Each view is JSON-compatible and is what its API route returns."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from cairn.core.keys import step_label
from cairn.core.records import AttemptRecord, RunRecord, RunStatus, StepRecord
from cairn.storage.metadata import MetadataStore
from cairn.web.views import resolved_run

MAX_ROWS = 1000  # timeline rows drawn; the page's step table still lists every step


def _record(meta: MetadataStore, run_id: str) -> RunRecord:
    rid = resolved_run(meta, run_id)
    record = meta.get_run(rid)
    if record is None:
        raise LookupError(f"no run {run_id!r}")
    return record


def _counts(steps: list[StepRecord]) -> dict[str, int]:
    return dict(sorted(Counter(s.status for s in steps).items()))


def progress(meta: MetadataStore, run_id: str, now: float) -> dict[str, Any]:
    """How far a run is: its status, step counts by status, and each step's status, attempts and duration.

    `done` is true once the run is no longer running; the run page polls this view until then.
    """
    record = _record(meta, run_id)
    steps = live_steps(meta, record.run_id)
    end = record.finished_at or now
    return {
        "run_id": record.run_id,
        "status": record.status,
        "done": record.status != RunStatus.RUNNING,
        "created_at": record.created_at,
        "finished_at": record.finished_at,
        "elapsed_s": round(max(end - record.created_at, 0.0), 3),
        "total": len(steps),
        "counts": _counts(steps),
        "steps": [
            {
                "step": step_label(s.asset, s.partition),
                "status": s.status,
                "attempts": s.attempts,
                "duration_s": s.duration_s,
                "error": s.error,
            }
            for s in steps
        ],
    }


_FINAL = frozenset(("executed", "cached", "failed", "skipped"))


def live_steps(meta: MetadataStore, run_id: str) -> list[StepRecord]:
    """The run's step records, brought up to date by its attempts.

    The engine writes step records in batches (with its heartbeat), but an attempt's row the moment it starts:
    a step whose record is not final yet and whose last attempt has not ended is running, with that attempt's
    number, even before its record says so.
    """
    steps = {(s.asset, s.partition): s for s in meta.run_steps(run_id)}
    latest: dict[tuple[str, str], AttemptRecord] = {}
    for a in meta.attempts(run_id):
        key = (a.asset, a.partition)
        if key not in latest or a.attempt > latest[key].attempt:
            latest[key] = a
    for key, a in latest.items():
        step = steps.get(key)
        if step is not None and step.status in _FINAL:
            continue
        if a.finished_at is None:
            base = step or StepRecord(run_id, a.asset, a.partition, "running", "")
            steps[key] = replace(base, status="running", attempts=max(base.attempts, a.attempt))
    return list(steps.values())


def timeline(meta: MetadataStore, run_id: str, now: float) -> dict[str, Any]:
    """The run's attempts on a time axis (`cairn.observability.timeline`), at most `MAX_ROWS` rows; ``hidden``
    says how many more steps had attempts."""
    from cairn.observability.timeline import timeline as build

    record = _record(meta, run_id)
    view = build(record, meta.run_steps(record.run_id), meta.attempts(record.run_id), now)
    view["hidden"] = max(len(view["rows"]) - MAX_ROWS, 0)
    view["rows"] = view["rows"][:MAX_ROWS]
    return view


def diff(meta: MetadataStore, run_a: str, run_b: str) -> dict[str, Any]:
    """Two runs side by side: every step of either with its status, reason and duration in each, and what
    differs (`cairn diff`): per asset partition code, params, seed, inputs, env, output and metrics, and the
    runs' environments."""
    from cairn.lineage.diff import diff_runs

    a, b = _record(meta, run_a), _record(meta, run_b)
    found = diff_runs(meta, a.run_id, b.run_id)
    changes = {step_label(d.asset, d.partition): d.to_dict() for d in found.assets}
    steps_a = {step_label(s.asset, s.partition): s for s in meta.run_steps(a.run_id)}
    steps_b = {step_label(s.asset, s.partition): s for s in meta.run_steps(b.run_id)}

    def side(step: StepRecord | None) -> dict[str, Any] | None:
        if step is None:
            return None
        return {"status": step.status, "reason": step.reason, "duration_s": step.duration_s, "attempts": step.attempts}

    rows = []
    for label in dict.fromkeys([*steps_a, *steps_b]):
        change = changes.get(label, {})
        what = sorted(k for k in change if k not in ("asset", "partition", "presence"))
        rows.append({"step": label, "a": side(steps_a.get(label)), "b": side(steps_b.get(label)), "changed": what})
    summary = [
        {**r.to_dict(), "duration_s": r.duration_s, "steps": _counts(list(s.values()))}
        for r, s in ((a, steps_a), (b, steps_b))
    ]
    return {
        "run_a": summary[0],
        "run_b": summary[1],
        "steps": rows,
        "assets": [d.to_dict() for d in found.assets],
        "environment": found.environment.to_dict(),
        "same": found.empty,
    }
