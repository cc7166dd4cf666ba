"""Step jobs as Ray tasks: on the cluster at an address, or on a local Ray this executor starts and stops.

Each job is one task with ``num_cpus``/``memory`` from the step's `Resources` and ``max_retries=0``: Ray
never re-runs a task by itself, the engine's retry policy decides. A task whose worker process dies (killed,
out of memory, ``os._exit``, ``SystemExit``) ends with `WorkerCrashedError` and is reported as crashed.

The project's code goes with the jobs (`cairn.executors.shipping`): the zip of its modules and cairn.toml is
put in Ray's object store once per run and passed to each task, which unpacks it once per node (into the
temporary folder) and loads the project from it wherever the project is not at the engine's path. (A
``runtime_env`` working_dir would do the same, but starts a pool of worker processes for every code version,
seconds each on a small machine, and moves the task's working directory into the package.)

A Ray task runs in its worker process's main thread, so the step job's own alarm stops it at its timeout;
a job stuck where no signal reaches it is cancelled with ``force=True`` (its worker process is killed)
once a generous grace has passed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import ray as _ray

from cairn.errors import ConfigError
from cairn.executors.base import Capacity, Completed, Job, check_reachable, memory_mb, until_deadline
from cairn.executors.local import STARTUP_GRACE_S
from cairn.executors.shipping import package_project, running_from, unpack

if TYPE_CHECKING:
    from cairn.core.asset import Resources

ray: Any = _ray  # its API is only partly typed; what is used here is checked by the tests

CONNECT_TIMEOUT_S = 10.0  # reaching the cluster at a configured address
CAPACITY_REFRESH_S = 2.0  # how often the cluster's resources are read again (nodes come and go)
_CRASHES = (
    "WorkerCrashedError",
    "NodeDiedError",
    "LocalRayletDiedError",
    "OutOfMemoryError",
    "ObjectLostError",
    "OwnerDiedError",
    "RaySystemError",
    "TaskCancelledError",
)


CODE_FOLDER = "cairn-code"  # where shipped code packages are unpacked, under the node's temporary folder


def run_job(fn: Job, arg: Any, shipped: bytes | None = None) -> Any:
    """The Ray task: ``fn(arg)`` in the worker's main thread, with the project's code `shipped` (a package's
    bytes, from the object store) unpacked on this node."""
    if shipped is None:
        return fn(arg)
    with running_from(unpack(shipped, os.path.join(tempfile.gettempdir(), CODE_FOLDER))):
        return fn(arg)


def start_local_ray(workers: int) -> None:
    """Start a new local Ray for this process with `workers` CPUs, quiet and without a dashboard."""
    try:
        ray.init(address="local", num_cpus=workers or os.cpu_count() or 1, **_QUIET)
    except BaseException:
        ray.shutdown()  # stops (and reaps) whatever part of it did start
        raise


_QUIET: dict[str, Any] = {
    "include_dashboard": False,
    "log_to_driver": False,  # what a step prints is the step's business (its worker's log file)
    "logging_level": logging.WARNING,
}


class RayExecutor:
    """Runs each job as one Ray task; the engine bounds how many run at once by the cluster's resources.

    If this process is already connected to Ray (``ray.init`` was called, as in a notebook), that
    connection is used and left open; otherwise the executor connects to `address` (``auto``,
    ``host:6379`` or ``ray://host:10001``) or starts a local Ray with `workers` CPUs, and `close` undoes it.
    """

    def __init__(self, workers: int = 0, address: str | None = None) -> None:
        self.address = address
        self._started = False
        if not ray.is_initialized():
            if address:
                _connect(address)
            else:
                start_local_ray(workers)
            self._started = True
        self._remote = ray.remote(run_job)
        self._refs: dict[Any, int] = {}  # ObjectRef -> ticket
        self._deadlines: dict[int, float | None] = {}
        self._done: list[Completed] = []
        self._next = 0
        self._biggest: dict[str, float] = {}
        self._shipped: dict[str, Any] = {}  # project folder -> ObjectRef of its code package (None: no project)
        self.capacity = Capacity(cpu=1.0, memory_mb=memory_mb())
        try:
            self._measure()
        except BaseException:
            self.close()
            raise

    def submit(self, fn: Job, arg: Any, timeout: float | None = None, resources: Resources | None = None) -> int:
        self._next += 1
        ticket = self._next
        try:
            ref = self._remote.options(max_retries=0, retry_exceptions=False, **self._request(resources)).remote(
                fn, arg, self._ship(arg)
            )
        except Exception as exc:  # the connection to the cluster is gone: the job could not start anywhere
            self._done.append(Completed(ticket, crashed=True, error=f"Ray refused the job: {exc}"))
            return ticket
        self._refs[ref] = ticket
        self._deadlines[ticket] = time.monotonic() + timeout + STARTUP_GRACE_S if timeout else None
        return ticket

    def poll(self, timeout: float | None) -> list[Completed]:
        done, self._done = self._done, []
        if done or not self._refs:
            return done
        refs = list(self._refs)
        wait_for = until_deadline(timeout, list(self._deadlines.values()))
        ready, rest = ray.wait(refs, num_returns=1, timeout=wait_for)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        done.extend(self._collect(ref) for ref in ready)
        now = time.monotonic()
        for ref, ticket in list(self._refs.items()):
            deadline = self._deadlines[ticket]
            if deadline is not None and now >= deadline:
                self._forget(ref)
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)  # kills the worker process running it
                done.append(Completed(ticket, timed_out=True))
        if now >= self._measured + CAPACITY_REFRESH_S:
            self._measure()
        return done

    def close(self) -> None:
        """Cancel what still runs; disconnect from (or stop) the Ray this executor started."""
        for ref in list(self._refs):
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        self._refs.clear()
        self._deadlines.clear()
        self._shipped.clear()  # the packages' objects are freed with their last reference
        if self._started:
            self._started = False
            ray.shutdown()

    def _ship(self, arg: Any) -> Any:
        """The object-store reference of the code of the project a job belongs to, put there once per executor
        (which lives for one run: one code version); None for a job of no project."""
        project_dir = getattr(arg, "project_dir", None)
        if not isinstance(project_dir, str):
            return None
        if project_dir not in self._shipped:
            package = package_project(project_dir)
            self._shipped[project_dir] = ray.put(package.data) if package is not None else None
        return self._shipped[project_dir]

    def _collect(self, ref: Any) -> Completed:
        ticket = self._forget(ref)
        try:
            return Completed(ticket, result=ray.get(ref))
        except ray.exceptions.RayTaskError as exc:  # the job raised (the step job reports user errors itself)
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return Completed(ticket, error=f"{type(cause).__name__}: {cause}")
        except ray.exceptions.RayError as exc:
            what = type(exc).__name__
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else what
            if what in _CRASHES or isinstance(exc, ray.exceptions.ObjectLostError):
                return Completed(
                    ticket, crashed=True, error=f"the Ray worker running the job was lost ({what}: {detail})"
                )
            return Completed(ticket, crashed=True, error=f"{what}: {detail}")

    def _forget(self, ref: Any) -> int:
        ticket = self._refs.pop(ref)
        self._deadlines.pop(ticket, None)
        return ticket

    # ---- capacity and resources -----------------------------------------------------------------

    def _measure(self) -> None:
        """Capacity from the cluster's resources now, and the biggest node (no task can ask for more)."""
        self._measured = time.monotonic()
        total = ray.cluster_resources()
        if not total.get("CPU"):
            return
        biggest: dict[str, float] = {}
        for node in ray.nodes():
            if node.get("Alive"):
                for name in ("CPU", "memory"):
                    biggest[name] = max(biggest.get(name, 0.0), float(node.get("Resources", {}).get(name, 0.0)))
        self._biggest = biggest
        memory = total.get("memory") or memory_mb() * 1024 * 1024
        self.capacity = Capacity(cpu=float(total["CPU"]), memory_mb=int(memory // (1024 * 1024)))

    def _request(self, resources: Resources | None) -> dict[str, Any]:
        """``num_cpus`` and ``memory`` (bytes) for a task, at most what the biggest node has."""
        if resources is None:
            return {}
        out: dict[str, Any] = {"num_cpus": min(float(resources.cpu), self._biggest.get("CPU", float(resources.cpu)))}
        if resources.memory_mb > 0:
            wanted = resources.memory_mb * 1024 * 1024
            out["memory"] = int(min(wanted, self._biggest.get("memory", wanted)))
        return out


def _connect(address: str) -> None:
    _check_reachable(address)
    try:
        ray.init(address=address, **_QUIET)
    except (ConnectionError, OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"cannot connect to Ray at [executor] address = {address!r}: {exc}. Use 'auto' for a cluster "
            "started on this machine with `ray start --head`, host:6379 for a cluster's head node, or "
            "ray://host:10001 for Ray Client"
        ) from exc


def _check_reachable(address: str) -> None:
    if address in ("auto", "local"):
        return
    check_reachable(
        address,
        urlsplit(address if "://" in address else f"ray://{address}"),
        forms="auto, host:6379 or ray://host:10001",
        what="Ray cluster",
        start="`ray start --head`",
        timeout=CONNECT_TIMEOUT_S,
    )
