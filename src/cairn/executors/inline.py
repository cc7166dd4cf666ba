"""Runs each job at once in the engine's own thread: the simplest executor, for debugging and tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cairn.executors.base import Capacity, Completed, Job, memory_mb

if TYPE_CHECKING:
    from cairn.core.asset import Resources


class InlineExecutor:
    """One job at a time in the calling thread.

    A job's own timeout (the step job interrupts the asset function with ``SIGALRM``) is all there is:
    nothing can stop a job from outside the thread that runs it.
    """

    def __init__(self) -> None:
        self.capacity = Capacity(cpu=1.0, memory_mb=memory_mb())
        self._done: list[Completed] = []
        self._next = 0

    def submit(self, fn: Job, arg: Any, timeout: float | None = None, resources: Resources | None = None) -> int:
        self._next += 1
        try:
            self._done.append(Completed(self._next, result=fn(arg)))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # the job reports user errors itself; this is a bug in the job
            self._done.append(Completed(self._next, error=f"{type(exc).__name__}: {exc}"))
        return self._next

    def poll(self, timeout: float | None) -> list[Completed]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        self._done = []
