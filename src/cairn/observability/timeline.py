"""A run's attempts on a time axis from its start: the data of `cairn show RUN --timeline` and of the web UI's
run timeline.

``{run_id, status, span_s, rows: [{step, status, bars: [{attempt, status, start_s, end_s, running, error}]}],
without_attempts, without_attempts_by_status}``: one row per step that made an attempt, in order of its first
attempt; steps that made none (cached, skipped, not started yet) are only counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cairn.core.keys import step_label

if TYPE_CHECKING:
    from cairn.core.records import AttemptRecord, RunRecord, StepRecord


def timeline(
    run: RunRecord, steps: Sequence[StepRecord], attempts: Sequence[AttemptRecord], now: float
) -> dict[str, Any]:
    """The run's attempts on a time axis from its start, rows in order of each step's first attempt.

    An unfinished attempt ends at `now` while the run goes on, at the run's end once it has finished.
    """
    by_step = {(s.asset, s.partition): s for s in steps}
    origin = run.created_at
    axis_end = run.finished_at if run.finished_at is not None else now
    last = axis_end
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for a in sorted(attempts, key=lambda a: (a.started_at, a.asset, a.partition, a.attempt)):
        key = (a.asset, a.partition)
        if key not in rows:
            step = by_step.get(key)
            rows[key] = {"step": step_label(*key), "status": step.status if step else a.status, "bars": []}
        end = a.finished_at if a.finished_at is not None else max(axis_end, a.started_at)
        last = max(last, end)
        rows[key]["bars"].append(
            {
                "attempt": a.attempt,
                "status": a.status,
                "start_s": round(max(a.started_at - origin, 0.0), 4),
                "end_s": round(max(end - origin, 0.0), 4),
                "running": a.finished_at is None,
                "error": a.error,
            }
        )
    without = Counter(s.status for key, s in by_step.items() if key not in rows)
    return {
        "run_id": run.run_id,
        "status": run.status,
        "span_s": round(max(last - origin, 0.0), 4),
        "rows": list(rows.values()),
        "without_attempts": sum(without.values()),
        "without_attempts_by_status": dict(sorted(without.items())),
    }
