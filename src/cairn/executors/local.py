"""Local pools: threads, and processes (the default) that can be killed one by one on timeout or crash.

A process worker receives ``(fn, arg)`` on its socket, runs it, and sends the result back. The executor
watches each busy worker's socket, so a worker that dies mid-job (its socket closes) is reported as
crashed and one past its deadline is killed and replaced, without disturbing the other workers.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from cairn.executors.base import Capacity, Completed, Job, memory_mb


class ThreadExecutor:
    """Jobs on a thread pool. A timed-out job is reported and abandoned (threads cannot be killed)."""

    def __init__(self, workers: int = 0) -> None:
        count = workers or os.cpu_count() or 1
        self.capacity = Capacity(cpu=float(count), memory_mb=memory_mb())
        self._pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="cairn-step")
        self._running: dict[Future[Any], tuple[int, float | None]] = {}
        self._next = 0

    def submit(self, fn: Job, arg: Any, timeout: float | None = None) -> int:
        self._next += 1
        deadline = time.monotonic() + timeout if timeout else None
        self._running[self._pool.submit(fn, arg)] = (self._next, deadline)
        return self._next

    def poll(self, timeout: float | None) -> list[Completed]:
        if not self._running:
            return []
        wait_for = _until_deadline(timeout, [d for _, d in self._running.values()])
        done, _ = wait(list(self._running), timeout=wait_for, return_when=FIRST_COMPLETED)
        out = []
        for future in done:
            ticket, _ = self._running.pop(future)
            exc = future.exception()
            out.append(Completed(ticket, error=repr(exc)) if exc else Completed(ticket, result=future.result()))
        now = time.monotonic()
        for future, (ticket, deadline) in list(self._running.items()):
            if deadline is not None and now >= deadline:
                del self._running[future]
                future.cancel()
                out.append(Completed(ticket, timed_out=True))
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._running.clear()


@dataclass(slots=True)
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection
    ticket: int = 0
    deadline: float | None = None


class ProcessExecutor:
    """Jobs on long-lived worker processes, one job per worker at a time, started on demand.

    Workers are fresh interpreters (``python -c`` with a socket inherited as the job pipe): they never
    re-run the caller's ``__main__`` and inherit no threads or locks, unlike fork-based pools.
    """

    def __init__(self, workers: int = 0) -> None:
        self.size = workers or os.cpu_count() or 1
        self.capacity = Capacity(cpu=float(self.size), memory_mb=memory_mb())
        self._idle: list[_Worker] = []
        self._busy: dict[int, _Worker] = {}
        self._done: list[Completed] = []
        self._next = 0

    def submit(self, fn: Job, arg: Any, timeout: float | None = None) -> int:
        self._next += 1
        worker = self._idle.pop() if self._idle else self._start()
        worker.ticket = self._next
        worker.deadline = time.monotonic() + timeout if timeout else None
        try:
            worker.conn.send((fn, arg))
        except (BrokenPipeError, OSError):
            self._discard(worker)
            self._done.append(Completed(self._next, crashed=True, error="the worker process was gone"))
            return self._next
        self._busy[worker.ticket] = worker
        return worker.ticket

    def poll(self, timeout: float | None) -> list[Completed]:
        done, self._done = self._done, []
        if done or not self._busy:
            return done
        wait_for = _until_deadline(timeout, [w.deadline for w in self._busy.values()])
        by_conn = {w.conn: w for w in self._busy.values()}
        for conn in multiprocessing.connection.wait(list(by_conn), timeout=wait_for):
            worker = by_conn[conn]  # type: ignore[index]
            del self._busy[worker.ticket]
            done.append(self._collect(worker))
        now = time.monotonic()
        for ticket, worker in list(self._busy.items()):
            if worker.deadline is not None and now >= worker.deadline:
                del self._busy[ticket]
                self._discard(worker)
                done.append(Completed(ticket, timed_out=True))
        return done

    def close(self) -> None:
        for worker in self._idle:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in list(self._busy.values()):
            self._discard(worker)
        for worker in self._idle:
            try:
                worker.process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.conn.close()
        self._idle.clear()
        self._busy.clear()

    def _start(self) -> _Worker:
        parent, child = socket.socketpair()
        fd = child.fileno()
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from cairn.executors.local import serve; serve(int(sys.argv[1]))",
                str(fd),
            ],
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
        )
        child.close()
        return _Worker(process, Connection(parent.detach()))

    def _collect(self, worker: _Worker) -> Completed:
        try:
            ok, payload = worker.conn.recv()
        except (EOFError, OSError):
            self._discard(worker)
            code = worker.process.returncode
            how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
            return Completed(worker.ticket, crashed=True, error=f"the worker process {how}")
        self._idle.append(worker)
        return Completed(worker.ticket, result=payload) if ok else Completed(worker.ticket, error=payload)

    def _discard(self, worker: _Worker) -> None:
        if worker.process.poll() is None:
            worker.process.kill()
        worker.process.wait()
        worker.conn.close()


def serve(fd: int) -> None:
    """Loop of a worker process: run each ``(fn, arg)`` received on `fd` until sent None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the engine's to handle
    conn = Connection(fd)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, arg = message
        try:
            reply = (True, fn(arg))
        except BaseException as exc:
            reply = (False, f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


def _until_deadline(timeout: float | None, deadlines: list[float | None]) -> float | None:
    pending = [d for d in deadlines if d is not None]
    if not pending:
        return timeout
    left = max(0.0, min(pending) - time.monotonic())
    return left if timeout is None else min(timeout, left)
