"""Runs each job at once in the engine's own thread: the simplest executor, for debugging and tests."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from cairn.errors import StepTimeout
from cairn.executors.base import Capacity, Completed, Job, memory_mb


class InlineExecutor:
    """One job at a time in the calling thread; timeouts interrupt Python code with SIGALRM."""

    def __init__(self) -> None:
        self.capacity = Capacity(cpu=1.0, memory_mb=memory_mb())
        self._done: list[Completed] = []
        self._next = 0

    def submit(self, fn: Job, arg: Any, timeout: float | None = None) -> int:
        self._next += 1
        ticket = self._next
        try:
            result = _call_with_alarm(fn, arg, timeout)
        except StepTimeout:
            self._done.append(Completed(ticket, timed_out=True))
        except BaseException as exc:  # the job reports user errors itself; this is a bug in the job
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            self._done.append(Completed(ticket, error=f"{type(exc).__name__}: {exc}"))
        else:
            self._done.append(Completed(ticket, result=result))
        return ticket

    def poll(self, timeout: float | None) -> list[Completed]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        self._done = []


def _call_with_alarm(fn: Job, arg: Any, timeout: float | None) -> Any:
    if timeout is None or threading.current_thread() is not threading.main_thread():
        return fn(arg)

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise StepTimeout(f"the attempt ran longer than its timeout of {timeout} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return fn(arg)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
