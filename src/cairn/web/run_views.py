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
    """The run's attempts on a time axis from its start: one row per step that made an attempt, in order of
    its first attempt, each bar ``{attempt, status, start_s, end_s, error}`` (a running attempt ends now).

    At most `MAX_ROWS` rows; ``hidden`` says how many more steps had attempts, ``without_attempts`` how many
    steps made none (cached, skipped, or not started yet).
    """
    record = _record(meta, run_id)
    steps = {(s.asset, s.partition): s for s in meta.run_steps(record.run_id)}
    attempts = sorted(meta.attempts(record.run_id), key=lambda a: (a.started_at, a.attempt))
    origin = record.created_at
    last = record.finished_at or now
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for a in attempts:
        key = (a.asset, a.partition)
        row = rows.get(key)
        if row is None:
            step = steps.get(key)
            row = rows[key] = {
                "step": step_label(a.asset, a.partition),
                "status": step.status if step else a.status,
                "bars": [],
            }
        end = a.finished_at if a.finished_at is not None else max(last, a.started_at)
        last = max(last, end)
        row["bars"].append(
            {
                "attempt": a.attempt,
                "status": a.status,
                "start_s": round(max(a.started_at - origin, 0.0), 4),
                "end_s": round(max(end - origin, 0.0), 4),
                "running": a.finished_at is None,
                "error": a.error,
            }
        )
    shown = list(rows.values())
    return {
        "run_id": record.run_id,
        "status": record.status,
        "span_s": round(max(last - origin, 0.0), 4),
        "rows": shown[:MAX_ROWS],
        "hidden": max(len(shown) - MAX_ROWS, 0),
        "without_attempts": sum(1 for key in steps if key not in rows),
    }


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
