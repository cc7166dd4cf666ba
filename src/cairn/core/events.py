"""Events the engine emits while a run progresses, for live displays and the UI."""

from __future__ import annotations

from dataclasses import dataclass

from cairn.core.keys import StepId

STEP_STARTED = "step_started"
STEP_FINISHED = "step_finished"
STEP_RETRYING = "step_retrying"
RUN_STARTED = "run_started"
RUN_FINISHED = "run_finished"


@dataclass(frozen=True, slots=True)
class Event:
    """Something happened to a run or one of its steps."""

    kind: str
    run_id: str
    step: StepId | None = None
    status: str = ""
    detail: str = ""
    total: int = 0
