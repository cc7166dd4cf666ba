"""Local pools: threads, and processes (the default) that can be killed one by one on timeout or crash.

A process worker receives ``(fn, arg)`` on its socket, runs it, and sends the result back. The executor
watches each busy worker's socket, so a worker that dies mid-job (its socket closes) is reported as
crashed and one past its deadline is killed and replaced, without disturbing the other workers.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.connection
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from cairn.executors.base import Capacity, Completed, Job, memory_mb, set_job_started_hook, until_deadline

if TYPE_CHECKING:
    from cairn.core.asset import Resources

STARTUP_GRACE_S = 60.0  # a worker's start-up and the job's input loading, before its timed work begins
STOP_GRACE_S = 1.0  # after its timeout, how long a job has to stop itself before its worker is killed


class ThreadExecutor:
    """Each job on its own thread (the engine bounds how many run at once).

    A timed-out job is reported and abandoned: a thread cannot be killed, so it runs on and its late
    result is discarded, but it holds no slot that a later job would have to wait for.
    """

    def __init__(self, workers: int = 0) -> None:
        count = workers or os.cpu_count() or 1
        self.capacity = Capacity(cpu=float(count), memory_mb=memory_mb())
        self._finished: queue.SimpleQueue[Completed] = queue.SimpleQueue()
        self._deadlines: dict[int, float | None] = {}
        self._next = 0

    def submit(self, fn: Job, arg: Any, timeout: float | None = None, resources: Resources | None = None) -> int:
        self._next += 1
        ticket = self._next
        self._deadlines[ticket] = time.monotonic() + timeout if timeout else None

        def work() -> None:
            try:
                self._finished.put(Completed(ticket, result=fn(arg)))
            except BaseException as exc:
                self._finished.put(Completed(ticket, error=f"{type(exc).__name__}: {exc}"))

        threading.Thread(target=work, name=f"cairn-step-{ticket}", daemon=True).start()
        return ticket

    def poll(self, timeout: float | None) -> list[Completed]:
        if not self._deadlines:
            return []
        out: list[Completed] = []
        try:
            out.append(self._finished.get(timeout=until_deadline(timeout, list(self._deadlines.values()))))
            while True:
                out.append(self._finished.get_nowait())
        except queue.Empty:
            pass
        kept = []
        for done in out:
            if done.ticket in self._deadlines:  # the late result of a timed-out job is dropped
                del self._deadlines[done.ticket]
                kept.append(done)
        now = time.monotonic()
        for ticket, deadline in list(self._deadlines.items()):
            if deadline is not None and now >= deadline:
                del self._deadlines[ticket]
                kept.append(Completed(ticket, timed_out=True))
        return kept

    def close(self) -> None:
        self._deadlines.clear()


class _Forked:
    """The handful of `subprocess.Popen` methods the executor uses, for a child made with `os.fork`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        if self.poll() is None:
            self._exited(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
            time.sleep(0.005)
        assert self.returncode is not None
        return self.returncode

    def _exited(self, timeout: float | None) -> None:
        """Block until the child exits or `timeout` passes, woken by the kernel (a pidfd) rather than polling."""
        try:
            fd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            return  # no pidfd here (or the child is reaped): `wait` polls
        try:
            select.select([fd], [], [], timeout)
        finally:
            os.close(fd)


@dataclass(slots=True)
class _Worker:
    process: subprocess.Popen[bytes] | _Forked
    conn: Connection
    ticket: int = 0
    deadline: float | None = None
    timeout: float | None = None


class ProcessExecutor:
    """Jobs on long-lived worker processes, one job per worker at a time, started on demand.

    ``start="fork"`` (the default where the OS has it) forks workers from the engine, so they begin with
    cairn and the project already imported; ``start="spawn"`` starts fresh interpreters (``python -c`` with
    a socket inherited as the job pipe), which never re-run the caller's ``__main__`` and inherit nothing.
    """

    def __init__(self, workers: int = 0, start: str = "fork") -> None:
        self.size = workers or os.cpu_count() or 1
        self.start = start if hasattr(os, "fork") else "spawn"
        self.capacity = Capacity(cpu=float(self.size), memory_mb=memory_mb())
        self._idle: list[_Worker] = []
        self._busy: dict[int, _Worker] = {}
        self._done: list[Completed] = []
        self._next = 0

    def submit(self, fn: Job, arg: Any, timeout: float | None = None, resources: Resources | None = None) -> int:
        self._next += 1
        worker = self._idle.pop() if self._idle else self._start()
        worker.ticket = self._next
        # Until the job says its timed work has begun (start-up and imports do not count), only a generous
        # backstop applies; then the deadline is the timeout plus a short grace for the job to stop itself.
        worker.timeout = timeout
        worker.deadline = time.monotonic() + timeout + STARTUP_GRACE_S if timeout else None
        try:
            worker.conn.send((fn, arg))
        except (BrokenPipeError, OSError):
            self._discard(worker)
            self._done.append(Completed(self._next, crashed=True, error="the worker process was gone"))
            return self._next
        self._busy[worker.ticket] = worker
        return worker.ticket

    def start_workers(self) -> None:
        """Start every worker now instead of on the first submits (the engine does it before planning)."""
        while len(self._idle) + len(self._busy) < self.size:
            self._idle.append(self._start())

    def poll(self, timeout: float | None) -> list[Completed]:
        done, self._done = self._done, []
        if done or not self._busy:
            return done
        wait_for = until_deadline(timeout, [w.deadline for w in self._busy.values()])
        by_conn = {w.conn: w for w in self._busy.values()}
        for conn in multiprocessing.connection.wait(list(by_conn), timeout=wait_for):
            worker = by_conn[conn]  # type: ignore[index]
            result = self._collect(worker)
            if result is not None:
                del self._busy[worker.ticket]
                done.append(result)
        now = time.monotonic()
        for ticket, worker in list(self._busy.items()):
            if worker.deadline is not None and now >= worker.deadline:
                del self._busy[ticket]
                self._discard(worker)
                done.append(Completed(ticket, timed_out=True))
        return done

    def close(self) -> None:
        """Stop the workers: busy ones are killed; idle ones are told to stop and reaped later (by the next
        `close` in this process, or at its exit), so that closing a pool never waits for them."""
        for worker in self._idle:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
            worker.conn.close()
            _stopping.append((time.monotonic(), worker.process))
        for worker in list(self._busy.values()):
            self._discard(worker)
        self._idle.clear()
        self._busy.clear()
        _reap()

    def _start(self) -> _Worker:
        if self.start == "fork":
            return self._fork()
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

    def _fork(self) -> _Worker:
        parent, child = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the worker: serve jobs, then leave without running the engine's exit handlers
            code = 0
            try:
                parent.close()
                for other in [*self._idle, *self._busy.values()]:
                    other.conn.close()
                serve(child.detach())
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        child.close()
        return _Worker(_Forked(pid), Connection(parent.detach()))

    def _collect(self, worker: _Worker) -> Completed | None:
        """Read what a worker sent: None while its job is still running (it only reported its start)."""
        try:
            while True:
                message = worker.conn.recv()
                if message[0] == "started":
                    if worker.timeout is not None:
                        worker.deadline = time.monotonic() + worker.timeout + STOP_GRACE_S
                    if not worker.conn.poll():
                        return None
                    continue
                _, ok, payload = message
                break
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


# Idle workers told to stop, with when: each exits by itself at once; one that has not after `STOP_GRACE_S` is
# killed. Reaped without waiting by every `close`, and at the latest when this process exits.
_stopping: list[tuple[float, subprocess.Popen[bytes] | _Forked]] = []


def _reap(exiting: bool = False) -> None:
    """Reap the stopped workers; kill those still alive after their grace, or all of them when this process
    exits (an idle worker holds nothing)."""
    now = time.monotonic()
    left = []
    for since, process in _stopping:
        if process.poll() is not None:
            continue
        if exiting or now - since >= STOP_GRACE_S:
            process.kill()
            process.wait()
            continue
        left.append((since, process))
    _stopping[:] = left


atexit.register(_reap, True)


def serve(fd: int) -> None:
    """Loop of a worker process: run each ``(fn, arg)`` received on `fd` until sent None."""
    # Ctrl-C and SIGTERM are the engine's to handle: it records the run cancelled and stops its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(fd)
    set_job_started_hook(lambda: conn.send(("started",)))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        fn, arg = message
        try:
            reply = ("result", True, fn(arg))
        except BaseException as exc:
            reply = ("result", False, f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return
