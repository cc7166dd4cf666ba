"""The executor port: submit a job, poll for what completed, close. Timeouts are enforced here."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cairn.errors import ConfigError

if TYPE_CHECKING:
    from urllib.parse import SplitResult

    from cairn.core.asset import Resources

Job = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Capacity:
    """What an executor can run at once: CPU cores (step `Resources.cpu` add up) and memory."""

    cpu: float
    memory_mb: int


@dataclass(frozen=True, slots=True)
class Completed:
    """A finished job: its return value, or how it ended without one."""

    ticket: int
    result: Any = None
    error: str | None = None
    timed_out: bool = False
    crashed: bool = False


class Executor(Protocol):
    """Runs jobs; the engine is the only caller and the only one that records anything."""

    capacity: Capacity

    def submit(self, fn: Job, arg: Any, timeout: float | None = None, resources: Resources | None = None) -> int:
        """Start `fn(arg)`; return a ticket.

        `timeout` is the job's own limit: a job is expected to stop itself then (the step job does, where it
        runs in a main thread); an executor that can stop it from outside (threads: stop waiting; processes:
        kill the worker, after a grace) reports it timed out. `resources` is what the job needs: a cluster
        executor asks its scheduler for them; local executors leave them to the engine's own accounting.
        """
        ...

    def poll(self, timeout: float | None) -> list[Completed]:
        """Wait up to `timeout` seconds (None: until something completes) and return what completed."""
        ...

    def close(self) -> None:
        """Stop every worker; running jobs are abandoned."""
        ...


_started_hook: Callable[[], None] | None = None


def job_started() -> None:
    """Called by a job when its own timed work begins (after start-up and loading inputs).

    In a process worker this tells the executor to arm the job's deadline from now; elsewhere it does
    nothing.
    """
    if _started_hook is not None:
        _started_hook()


def set_job_started_hook(hook: Callable[[], None] | None) -> None:
    global _started_hook
    _started_hook = hook


def until_deadline(timeout: float | None, deadlines: list[float | None]) -> float | None:
    """How long a poll may wait: `timeout`, or less when one of the `deadlines` (monotonic) comes first."""
    pending = [d for d in deadlines if d is not None]
    if not pending:
        return timeout
    left = max(0.0, min(pending) - time.monotonic())
    return left if timeout is None else min(timeout, left)


def memory_mb() -> int:
    """Physical memory of this machine in MiB."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024))
    except (ValueError, OSError, AttributeError):
        return 8192


def check_reachable(address: str, url: SplitResult, *, forms: str, what: str, start: str, timeout: float) -> None:
    """Fail fast when a cluster's ``[executor] address`` (parsed as `url`) is no host:port or nothing answers
    there: connecting to a missing scheduler or head node would otherwise wait for minutes.

    Raises:
        ConfigError: naming the address `forms` that work, or the `what` that does not answer and the command
            that starts one.
    """
    import socket

    try:
        host, port = url.hostname, url.port
    except ValueError as exc:
        raise ConfigError(f"[executor] address = {address!r} is not a valid address: use {forms}") from exc
    if not host or not port:
        raise ConfigError(f"[executor] address = {address!r} names no host and port: use {forms}")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(
            f"no {what} answers at [executor] address = {address!r} ({exc}): start one with {start} or fix the address"
        ) from exc
