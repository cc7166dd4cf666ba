"""Results that finished together, on their way to the metadata store.

    finished ─▶ staged ─▶ Group: objects published on a thread ─▶ rows committed in one transaction ─▶ resolved

The engine stages each successful outcome, starts a `Group` of what is staged (its objects made durable on a
thread of their own, since fsync releases the GIL, while the loop goes on dispatching), and records the group
once it is published. `result_commit` turns one outcome into what the recorder commits for it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from cairn.core import records as R
from cairn.core.keys import StepId
from cairn.core.plan import Decision, StepSpec
from cairn.engine.jobs import StepOutcome
from cairn.engine.recorder import Commit, Recorder


@dataclass(slots=True)
class Group:
    """Staged results and their commits; `error` keeps what the publishing thread raised."""

    staged: list[tuple[StepId, StepOutcome]]
    commits: list[Commit]
    thread: threading.Thread | None = None
    error: BaseException | None = None

    @classmethod
    def publish(cls, staged: list[tuple[StepId, StepOutcome]], commits: list[Commit], recorder: Recorder) -> Group:
        """Start publishing the objects of `commits` on a thread (none is needed when there are no objects)."""
        group = cls(staged, commits)
        if any(commit.objects for commit in commits):

            def work() -> None:
                try:
                    recorder.publish(commits)
                except BaseException as exc:  # handed to the engine's thread by whoever records the group
                    group.error = exc

            group.thread = threading.Thread(target=work, name="cairn-publish", daemon=True)
            group.thread.start()
        return group

    @property
    def published(self) -> bool:
        return self.thread is None or not self.thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def steps(self) -> list[StepId]:
        return [step for step, _ in self.staged]


def result_commit(
    run_id: str,
    step: StepId,
    spec: StepSpec,
    decision: Decision,
    attempt: int,
    reason: str,
    lease: tuple[str, int],
    outcome: StepOutcome,
) -> Commit:
    """The materialization, step record and lease of one successful attempt, with the objects it left."""
    assert decision.cache_key is not None and outcome.stored is not None
    metadata = dict(outcome.metadata)
    if spec.env:
        metadata["cairn.env"] = dict(spec.env)
    if outcome.checks:
        metadata["cairn.checks"] = list(outcome.checks)
    if outcome.timings:
        metadata["cairn.timings"] = {k: round(v, 6) for k, v in outcome.timings.items()}
    mat = R.Materialization(
        asset=step.asset,
        partition=step.partition,
        cache_key=decision.cache_key,
        data_version=outcome.stored.data_version,
        size=outcome.stored.size,
        format=outcome.stored.format,
        pytype=outcome.stored.pytype,
        run_id=run_id,
        attempt=attempt,
        code_version=spec.code_version or (spec.source_version or ""),
        code_parts=dict(spec.code_parts),
        params=dict(spec.params),
        seed=spec.seed,
        inputs=decision.inputs,
        duration_s=outcome.duration_s,
        created_at=time.time(),
        metadata=metadata,
        metrics=dict(outcome.metrics),
    )
    record = R.StepRecord(
        run_id,
        step.asset,
        step.partition,
        R.EXECUTED,
        reason,
        mat.cache_key,
        mat.data_version,
        attempt,
        outcome.duration_s,
    )
    return Commit(mat, record, lease, outcome.objects)
