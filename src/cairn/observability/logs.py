"""Structured logs: one JSON object per line for each run and step event (``cairn run --log-format json``).

    {"ts": "2026-11-23T08:15:02.412Z", "level": "info", "event": "step_finished", "run_id": "20261123-…",
     "asset": "clean", "partition": "2026-06-01", "status": "executed", "detail": "never materialized"}

``level`` is ``error`` for a failed step or run, ``warning`` for a retry, else ``info``; ``partition`` is null
for an unpartitioned asset; run events carry ``total`` (the steps of the run) instead of an asset.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

from cairn.core.events import RUN_FINISHED, RUN_STARTED, STEP_RETRYING, Event


def event_record(event: Event, at: float) -> dict[str, Any]:
    """The JSON object of one event at `at` (epoch seconds)."""
    failed = event.status in ("failed", "abandoned", "cancelled")
    level = "error" if failed else "warning" if event.kind == STEP_RETRYING else "info"
    record: dict[str, Any] = {
        "ts": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": level,
        "event": event.kind,
        "run_id": event.run_id,
    }
    if event.kind in (RUN_STARTED, RUN_FINISHED):
        record["total"] = event.total
    if event.step is not None:
        record["asset"] = event.step.asset
        record["partition"] = event.step.partition or None
    if event.status:
        record["status"] = event.status
    if event.detail:
        record["detail"] = event.detail
    return record


class JsonEvents:
    """An event sink writing one JSON line per event to a stream (stderr for `cairn run --log-format json`)."""

    def __init__(self, stream: IO[str], clock: Callable[[], float] = time.time) -> None:
        self.stream = stream
        self.clock = clock

    def __call__(self, event: Event) -> None:
        self.stream.write(json.dumps(event_record(event, self.clock()), ensure_ascii=False) + "\n")
        self.stream.flush()
