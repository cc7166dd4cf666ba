"""Step jobs on a Dask cluster: a `distributed.Client` to a scheduler's address, or a `LocalCluster` it starts.

    engine ─submit─▶ Client ─▶ scheduler ─▶ worker thread: run_job ─▶ fn(arg)
       ▲                                         │ "running" / "timed" events (log_event)
       └──────── poll ◀── done callbacks ◀───────┴─ result

Dask only runs jobs; the engine owns retries. A worker that dies mid-job makes the job's future err with
`KilledWorker` (the `LocalCluster` this executor starts allows no automatic re-run), which is reported as
crashed. On a cluster whose scheduler does re-run tasks of lost workers (Dask's default ``allowed-failures``
is 3), a job's second "running" event gives the re-run away: the attempt is reported as crashed at once,
so that the engine's retry policy decides as for any crash, and the re-run is cancelled and stopped in its
worker thread. Its result is never collected, so nothing of it is committed (should it have written an
object before it stopped, the object is unreferenced, and ``cairn gc`` removes it). A worker sends its events
in batches every few milliseconds: one lost before the first start event left it gives the scheduler's re-run
away as the only start, and that re-run is then the attempt, committed like any other.

The project's code goes with the jobs (`cairn.executors.shipping`): the first job of a project registers
a worker plugin holding the zip of its modules and cairn.toml, which every worker, and every worker that joins
later, unpacks into its local directory; a job names the package it runs with, so a worker without the project
at the engine's path (another machine, another cwd, no sys.path entry) imports the shipped copy.

Jobs run on worker threads, where the step job's own alarm cannot fire. A job is stopped by raising an
exception inside its thread (`stop_job`): from a timer when its timed work has run for its timeout, or on
request of the executor; code that sits in a native call notices it when the call returns. Past a further
grace the executor reports the job timed out, and restarts its worker if the cluster is one it started.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import dask
import distributed as _distributed
from distributed.diagnostics.plugin import WorkerPlugin

from cairn.errors import ConfigError
from cairn.executors.base import (
    Capacity,
    Completed,
    Job,
    check_reachable,
    memory_mb,
    set_job_started_hook,
    until_deadline,
)
from cairn.executors.local import STARTUP_GRACE_S, STOP_GRACE_S
from cairn.executors.shipping import CodePackage, package_project, running_from, unpack

if TYPE_CHECKING:
    from cairn.core.asset import Resources

distributed: Any = _distributed  # its API is only partly typed; what is used here is checked by the tests

CONNECT_TIMEOUT_S = 10.0  # reaching the scheduler at a configured address
WORKER_WAIT_S = 60.0  # a cluster without workers yet (scaling up from zero) gets this long to get one
CAPACITY_REFRESH_S = 2.0  # how often the cluster's workers are counted again (workers come and go)
RESULT_TIMEOUT_S = 60.0  # fetching a finished job's result from its worker
CPU_RESOURCE = "CPU"  # worker resources that steps' Resources(cpu=..., memory_mb=...) are requested as
MEMORY_RESOURCE = "MEMORY"  # in bytes, as in ``dask worker --resources "CPU=4,MEMORY=16e9"``
CODE_FOLDER = "cairn-code"  # where shipped code packages are unpacked, under a worker's local directory

_RUNNING = "running"
_TIMED = "timed"
_TIMEOUT = "timeout"
_DONE = "done"


@dataclass(slots=True)
class _Task:
    key: str
    future: Any  # distributed.Future
    timeout: float | None
    deadline: float | None
    worker: str | None = None


class DaskExecutor:
    """Runs each job as one Dask task; the engine bounds how many run at once by the cluster's capacity.

    Capacity is the sum over the cluster's workers of their threads and memory limits, or of their
    ``CPU``/``MEMORY`` resources where the workers declare them; it is measured again every few seconds.
    """

    def __init__(self, workers: int = 0, address: str | None = None) -> None:
        self.address = address
        self._cluster: Any = None  # a LocalCluster this executor started
        self._client: Any = None
        self._tasks: dict[int, _Task] = {}
        self._by_key: dict[str, int] = {}
        self._done: list[Completed] = []
        self._next = 0
        self._biggest: dict[str, float] = {}
        self._shipped: dict[str, str | None] = {}  # project folder -> the name of its package on the workers
        self.capacity = Capacity(cpu=1.0, memory_mb=memory_mb())
        if address:
            self._client = _connect(address)
        else:
            self._cluster = _local_cluster(workers or os.cpu_count() or 1)
            self._client = distributed.Client(self._cluster, set_as_default=False)
        try:
            self._client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except (TimeoutError, distributed.TimeoutError) as exc:
            self.close()
            raise ConfigError(
                f"the Dask scheduler at {address} has no workers after {WORKER_WAIT_S:.0f} s: start workers "
                f"with `dask worker {address}` (or scale the cluster up) and run again"
            ) from exc
        except BaseException:
            self.close()
            raise
        self._topic = f"cairn-{uuid.uuid4().hex}"
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._client.subscribe_topic(self._topic, lambda event: self._events.put(("event", event[1])))
        self._measure()

    def submit(self, fn: Job, arg: Any, timeout: float | None = None, resources: Resources | None = None) -> int:
        self._next += 1
        ticket = self._next
        key = f"cairn-step-{ticket}-{uuid.uuid4().hex[:12]}"
        try:
            future = self._client.submit(
                run_job,
                fn,
                arg,
                timeout,
                self._topic,
                self._cluster is not None,
                self._ship(arg),
                key=key,
                pure=False,
                retries=0,
                resources=self._request(resources),
            )
        except Exception as exc:  # the scheduler is gone: the job could not start anywhere
            self._done.append(Completed(ticket, crashed=True, error=f"the Dask scheduler refused the job: {exc}"))
            return ticket
        deadline = time.monotonic() + timeout + STARTUP_GRACE_S if timeout else None
        self._tasks[ticket] = _Task(key, future, timeout, deadline)
        self._by_key[key] = ticket
        future.add_done_callback(lambda _: self._events.put((_DONE, ticket)))
        return ticket

    def poll(self, timeout: float | None) -> list[Completed]:
        done, self._done = self._done, []
        if done or not self._tasks:
            return done
        wait_for = until_deadline(timeout, [t.deadline for t in self._tasks.values()])
        events = []
        try:
            events.append(self._events.get(timeout=wait_for))
            while True:
                events.append(self._events.get_nowait())
        except queue.Empty:
            pass
        for kind, payload in events:
            result = self._collect(payload) if kind == _DONE else self._on_event(payload)
            if result is not None:
                done.append(result)
        done.extend(self._past_deadline())
        if time.monotonic() >= self._measured + CAPACITY_REFRESH_S:
            self._measure()
        return done

    def close(self) -> None:
        """Cancel what still runs, disconnect, and stop the cluster if this executor started it."""
        futures = [t.future for t in self._tasks.values()]
        self._tasks.clear()
        if self._client is not None:
            with contextlib.suppress(Exception):
                if futures:
                    self._client.cancel(futures)
            with contextlib.suppress(Exception):
                self._client.close()
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()
            self._cluster = None

    def _ship(self, arg: Any) -> str | None:
        """Send the code of the project a job belongs to (once per executor, which lives for one run: one code
        version); the name of its package on the workers, or None for a job of no project."""
        project_dir = getattr(arg, "project_dir", None)
        if not isinstance(project_dir, str):
            return None
        if project_dir not in self._shipped:
            package = package_project(project_dir)
            if package is not None:
                # One plugin per project: a new code version replaces the last (workers keep what they unpacked).
                self._client.register_plugin(ShipCode(package), name=package.slot)
            self._shipped[project_dir] = package.name if package is not None else None
        return self._shipped[project_dir]

    # ---- events and results ---------------------------------------------------------------------

    def _on_event(self, message: Any) -> Completed | None:
        ticket = self._by_key.get(str(message.get("key")))
        task = self._tasks.get(ticket) if ticket is not None else None
        if ticket is None or task is None:
            return None
        phase = message.get("phase")
        if phase == _RUNNING:
            if task.worker is not None:  # started a second time: Dask re-ran it after losing its worker
                self._forget(ticket)
                self._abandon(task, str(message.get("worker")))
                return Completed(
                    ticket,
                    crashed=True,
                    error=f"the Dask worker {task.worker} running the job was lost (the scheduler started it "
                    f"again on {message.get('worker')}; that re-run is abandoned)",
                )
            task.worker = str(message.get("worker"))
        elif phase == _TIMED and task.timeout is not None:
            task.deadline = time.monotonic() + task.timeout + STOP_GRACE_S
        return None

    def _collect(self, ticket: int) -> Completed | None:
        task = self._tasks.get(ticket)
        if task is None:  # already reported (timed out, or re-run detected)
            return None
        self._forget(ticket)
        future = task.future
        where = f" {task.worker}" if task.worker else ""
        if future.status == "finished":
            try:
                kind, value = future.result(timeout=RESULT_TIMEOUT_S)
            except Exception as exc:  # the worker holding the result died before it was fetched
                return Completed(ticket, crashed=True, error=f"the result was lost with its Dask worker: {exc}")
            if kind == _TIMEOUT:
                return Completed(ticket, timed_out=True)
            return Completed(ticket, result=value)
        if future.status == "error":
            failure = future.exception()
            if isinstance(failure, distributed.KilledWorker):
                return Completed(ticket, crashed=True, error=f"the Dask worker{where} running the job died")
            return Completed(ticket, error=f"{type(failure).__name__}: {failure}")
        return Completed(ticket, crashed=True, error=f"the Dask scheduler dropped the job (future {future.status})")

    def _past_deadline(self) -> list[Completed]:
        now = time.monotonic()
        out = []
        for ticket, task in list(self._tasks.items()):
            if task.deadline is not None and now >= task.deadline:
                self._forget(ticket)
                self._abandon(task, task.worker)
                if self._cluster is not None and task.worker is not None:
                    # A job that outlived its own stop sits in native code: end it for good by restarting
                    # its worker (only in a cluster this executor started), before anything else is sent there.
                    with contextlib.suppress(Exception):
                        self._client.restart_workers([task.worker], raise_for_error=False)
                out.append(Completed(ticket, timed_out=True))
        return out

    def _abandon(self, task: _Task, worker: str | None) -> None:
        """Cancel a job's future and stop the job where it runs: a cancelled task's thread runs on otherwise."""
        with contextlib.suppress(Exception):
            task.future.cancel()
        if worker is not None:
            with contextlib.suppress(Exception):
                self._client.run(stop_job, task.key, workers=[worker], wait=False)

    def _forget(self, ticket: int) -> None:
        task = self._tasks.pop(ticket)
        self._by_key.pop(task.key, None)

    # ---- capacity and resources -----------------------------------------------------------------

    def _measure(self) -> None:
        """Capacity from the workers the scheduler knows now (an empty moment keeps the last figure)."""
        self._measured = time.monotonic()
        try:
            workers = self._client.scheduler_info(n_workers=-1)["workers"].values()
        except TypeError:  # versions before n_workers= return every worker
            workers = self._client.scheduler_info()["workers"].values()
        if not workers:
            return
        cpu = mem = 0.0
        biggest: dict[str, float] = {}
        for info in workers:
            declared = info.get("resources") or {}
            for name in (CPU_RESOURCE, MEMORY_RESOURCE):
                if name in declared:
                    biggest[name] = max(biggest.get(name, 0.0), float(declared[name]))
            cpu += float(declared.get(CPU_RESOURCE, info.get("nthreads", 1)))
            limit = declared.get(MEMORY_RESOURCE) or info.get("memory_limit") or memory_mb() * 1024 * 1024
            mem += float(limit)
        self._biggest = biggest
        self.capacity = Capacity(cpu=cpu, memory_mb=int(mem // (1024 * 1024)))

    def _request(self, resources: Resources | None) -> dict[str, float] | None:
        """The worker resources a job asks for: only those the cluster's workers declare, at most what the
        biggest worker has (more could never be placed)."""
        if resources is None or not self._biggest:
            return None
        wanted = {CPU_RESOURCE: float(resources.cpu), MEMORY_RESOURCE: float(resources.memory_mb) * 1024 * 1024}
        out = {name: min(amount, self._biggest[name]) for name, amount in wanted.items() if name in self._biggest}
        return {name: amount for name, amount in out.items() if amount > 0} or None


def _local_cluster(workers: int) -> Any:
    """A cluster of `workers` processes with one thread each; the scheduler re-runs nothing by itself."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # No dashboard, and the scheduler's HTTP routes on a free port rather than 8787, which another
            # cluster on this machine may hold.
            scheduler_kwargs={"dashboard_address": ":0"},
            silence_logs=logging.CRITICAL,  # crashes and errors are cairn's to report, once
        )


def _connect(address: str) -> Any:
    _check_reachable(address)
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(
            f"cannot connect to the Dask scheduler at [executor] address = {address!r}: {exc}. Check that the "
            "scheduler runs (`dask scheduler`) and that the address is its `tcp://host:port` (default port 8786)"
        ) from exc


def _check_reachable(address: str) -> None:
    url = urlsplit(address if "://" in address else f"tcp://{address}")
    if url.scheme == "tcp":
        check_reachable(
            address,
            url,
            forms="tcp://host:port (default port 8786)",
            what="Dask scheduler",
            start="`dask scheduler`",
            timeout=CONNECT_TIMEOUT_S,
        )


# ---- on the worker --------------------------------------------------------------------------------


class ShipCode(WorkerPlugin):
    """A worker plugin that unpacks one project's code package on each worker, present and future."""

    def __init__(self, package: CodePackage) -> None:
        self.data = package.data

    def setup(self, worker: Any) -> None:
        unpack(self.data, os.path.join(worker.local_directory, CODE_FOLDER))


def run_job(
    fn: Job, arg: Any, timeout: float | None, topic: str, prints_to_stderr: bool, shipped: str | None = None
) -> tuple[str, Any]:
    """The Dask task: report the start, run ``fn(arg)`` within its timeout, return ``(kind, value)``.

    On a worker of the local cluster, whose output is the engine's terminal, what a job prints goes to
    stderr, so that the engine's own output (``cairn run --json``) stays clean. `shipped` names the code
    package (unpacked by `ShipCode`) that the job's project is loaded from where the project is not.
    """
    if prints_to_stderr and sys.stdout is not sys.stderr:
        sys.stdout = sys.stderr
    worker = distributed.get_worker()
    key = str(worker.get_current_task())
    worker.log_event(topic, {"key": key, "phase": _RUNNING, "worker": worker.address})
    code = contextlib.nullcontext() if shipped is None else running_from(_unpacked(worker, shipped))
    try:
        with _tracked(key, timeout, lambda: worker.log_event(topic, {"key": key, "phase": _TIMED})), code:
            return _DONE, fn(arg)
    except _Stopped:
        return _TIMEOUT, None


def _unpacked(worker: Any, name: str) -> str:
    folder = os.path.join(worker.local_directory, CODE_FOLDER, name)
    if not os.path.isdir(folder):
        raise RuntimeError(
            f"the code package {name} is not on the Dask worker {worker.address}: it joined while another version "
            "of the project's code was being shipped; run again"
        )
    return folder


async def stop_job(key: str) -> bool:
    """Stop the job of task `key` if it runs on this worker (through ``Client.run``, on the worker's event
    loop: a coroutine, so that the caller need not wait for it)."""
    with _running_lock:
        ident = next((i for i, job in _running.items() if job.key == key), None)
    if ident is None:
        return False
    _interrupt(ident)
    return True


class _Stopped(BaseException):
    """Raised inside a job's thread to stop it; a BaseException, so ``except Exception`` lets it pass."""


@dataclass(slots=True)
class _Running:
    key: str
    timeout: float | None
    on_start: Callable[[], None]
    timer: threading.Timer | None = None
    fired: bool = False


_running: dict[int, _Running] = {}  # thread id -> the job running on that thread
_running_lock = threading.Lock()


@contextlib.contextmanager
def _tracked(key: str, timeout: float | None, on_start: Callable[[], None]) -> Iterator[None]:
    """Register the job running on this thread, so that it can be stopped: by a timer armed when the job
    says its timed work begins (`job_started`), or by `stop_job`. Leaving the block unregisters it and
    drops a stop that was requested but not raised yet."""
    ident = threading.get_ident()
    with _running_lock:
        _running[ident] = _Running(key, timeout, on_start)
    if timeout is not None:
        set_job_started_hook(_arm)
    try:
        yield
    finally:
        with _running_lock:
            job = _running.pop(ident)
            if job.timer is not None:
                job.timer.cancel()
            if job.fired:
                _raise_in(ident, None)


def _arm() -> None:
    ident = threading.get_ident()
    with _running_lock:
        job = _running.get(ident)
        if job is None or job.timeout is None or job.timer is not None:
            return
        job.timer = threading.Timer(job.timeout, _interrupt, (ident,))
        job.timer.daemon = True
        job.timer.start()
    with contextlib.suppress(Exception):
        job.on_start()


def _interrupt(ident: int) -> None:
    with _running_lock:
        job = _running.get(ident)
        if job is None or job.fired:
            return
        job.fired = True
        _raise_in(ident, _Stopped)


def _raise_in(ident: int, exc: type[BaseException] | None) -> None:
    """Raise `exc` in another thread at its next bytecode (None: cancel one not raised yet)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None if exc is None else ctypes.py_object(exc))
