"""`cairn daemon`: tick forever; a stop request (SIGTERM) lets the run in progress finish and starts no other.

    loop: load the project (its code and cairn.toml may have changed) ─▶ tick ─▶ sleep until the next
          schedule is due or `interval_s` passed, whichever is sooner ─▶ ...

A project that fails to load (a definition error while someone edits it) is reported and tried again at the
next interval; the daemon keeps running.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cairn.automation.clock import Clock, SystemClock
from cairn.automation.hooks import hooks
from cairn.automation.runner import Log, Runner, TickReport
from cairn.config import Settings, load_settings
from cairn.engine.api import execute
from cairn.engine.prepare import RunOptions
from cairn.errors import CairnError, UsageError
from cairn.executors.base import Executor
from cairn.observability.daemon import observing
from cairn.project import load_project
from cairn.storage.metadata import open_metadata

DEFAULT_INTERVAL_S = 30.0


class Daemon:
    """Runs the ticks of one project until stopped.

    Args:
        project: The project folder (or its settings).
        clock: Where "now" comes from and how waiting is done (a `ManualClock` runs days of ticks at once).
        interval_s: The longest wait between ticks (sensors and freshness policies are looked at this often).
        owner: How this daemon names itself on the tick rows (default ``host:pid``).
        log: Called with each line the daemon reports.
        executor: An executor for the runs instead of the one cairn.toml names (tests).
    """

    def __init__(
        self,
        project: str | os.PathLike[str] | Settings = ".",
        *,
        clock: Clock | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        owner: str | None = None,
        log: Log | None = None,
        executor: Executor | None = None,
    ) -> None:
        if interval_s <= 0:
            raise UsageError(f"--interval {interval_s}: the interval must be a positive number of seconds")
        self.root = project.root if isinstance(project, Settings) else Path(project)
        self.clock = clock or SystemClock()
        self.interval_s = interval_s
        self.owner = owner
        self.log: Log = log or (lambda line: None)
        self.executor = executor
        self._stop = threading.Event()
        self.ticks = 0

    def stop(self) -> None:
        """Ask the daemon to stop: the run in progress finishes, no other starts (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, max_ticks: int | None = None) -> int:
        """Tick until stopped (or `max_ticks` ticks were made); return the number of ticks made."""
        settings = load_settings(self.root)
        observed = observing(hooks, settings, execute, RunOptions, self.executor)  # SLOs, alerts, remediations
        with open_metadata(settings.database, settings.root) as meta, observed:
            runner = Runner(
                meta, self.clock, owner=self.owner, log=self.log, stopping=self._stop.is_set, executor=self.executor
            )
            while not self._stop.is_set() and (max_ticks is None or self.ticks < max_ticks):
                report = self._tick(runner)
                self.ticks += 1
                if self._stop.is_set() or (max_ticks is not None and self.ticks >= max_ticks):
                    break
                self.clock.sleep(self._wait(report), self._stop)
        return self.ticks

    def _tick(self, runner: Runner) -> TickReport | None:
        try:
            project = load_project(self.root)
        except CairnError as exc:
            self.log(f"error: the project does not load, trying again in {self.interval_s:g}s: {exc}")
            return None
        return runner.tick(project)

    def _wait(self, report: TickReport | None) -> float:
        """Until the next schedule is due, at most `interval_s`."""
        if report is None or report.next_due is None:
            return self.interval_s
        until_due = (report.next_due - self.clock.now()).total_seconds()
        return max(0.0, min(self.interval_s, until_due))
