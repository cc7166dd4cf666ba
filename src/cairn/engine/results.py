"""What a run returns: `RunResult` with a `StepResult` per step (`cairn.materialize`, `cairn run --json`), and
the run id every run is named by."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from cairn.core import records as R
from cairn.errors import CairnError

__all__ = ["RunResult", "StepResult", "new_run_id"]


@dataclass(frozen=True, slots=True)
class StepResult:
    """The outcome of one step of a run."""

    asset: str
    partition: str
    status: str
    attempts: int
    cache_key: str | None
    data_version: str | None
    duration_s: float | None
    reason: str
    error: str | None = None
    not_ready: str | None = None  # skipped for readiness: the step whose data is not there yet
    error_class: type[CairnError] | None = None  # what the failure was: StepFailed, StepTimeout, CircuitOpen...

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "partition": self.partition or None,
            "status": self.status,
            "attempts": self.attempts,
            "cache_key": self.cache_key,
            "data_version": self.data_version,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 6),
            "reason": self.reason,
            **({"error": self.error} if self.error else {}),
            **({"error_class": self.error_class.__name__} if self.error_class else {}),
            **({"not_ready": self.not_ready} if self.not_ready else {}),
        }


@dataclass(frozen=True, slots=True)
class RunResult:
    """What `cairn.materialize` returns: the run id, its status and every step."""

    run_id: str
    status: str
    steps: tuple[StepResult, ...]

    @property
    def ok(self) -> bool:
        return self.status == R.SUCCEEDED

    def __getitem__(self, name: str) -> StepResult:
        asset, _, partition = name.partition("@")
        for step in self.steps:
            if step.asset == asset and step.partition == partition:
                return step
        raise KeyError(name)

    def count(self, status: str) -> int:
        return sum(1 for s in self.steps if s.status == status)

    @property
    def not_ready(self) -> list[StepResult]:
        """The steps skipped because data they need is not there yet (a source file, a complete period)."""
        return [s for s in self.steps if s.status == R.SKIPPED and s.not_ready]

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "steps": [s.to_dict() for s in self.steps]}


def new_run_id() -> str:
    """A sortable, unique run id like ``20261123-081502-4f2a9c``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()
