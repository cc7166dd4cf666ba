"""One tick of evaluation: what is due now, claimed once across daemons, run through the engine, recorded.

    reconcile open ticks ─▶ schedules ─▶ sensors ─▶ freshness policies
    (finished runs, claims left behind)   each due tick: claim ─▶ start (CAS) ─▶ execute ─▶ finish ─▶ hooks

A tick's row is inserted before its run starts and is this daemon's only if the insert created it, so two
daemons on one database never start the same tick. Runs happen one at a time, in the calling thread: the
engine parallelizes the steps of each run. When `stopping` turns true, the run in progress finishes and no
other starts; ticks this daemon claimed but did not start are released for another daemon.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cairn.automation import freshness, sensors
from cairn.automation.clock import Clock
from cairn.automation.hooks import notify
from cairn.automation.partitions import PartitionChoice, latest_partition, resolve
from cairn.automation.schedules import Upcoming, cursor, due_ticks
from cairn.core import records as R
from cairn.core.automation import (
    ABANDONED,
    ALERTED,
    CLAIMED,
    ERROR,
    FRESHNESS,
    RUNNING,
    SCHEDULE,
    SENSOR,
    STARTING,
    AutomationState,
    TickRecord,
    iso,
)
from cairn.core.events import RUN_STARTED, Event
from cairn.engine.api import execute
from cairn.engine.prepare import RunOptions
from cairn.engine.results import RunResult
from cairn.errors import CairnError, UsageError
from cairn.executors.base import Executor
from cairn.project import Project
from cairn.storage.metadata import MetadataStore

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one tick did: every tick it recorded or finished (in order), and when a schedule is next due."""

    now: datetime
    ticks: tuple[TickRecord, ...]
    next_due: datetime | None
    stopped: bool = False

    @property
    def ok(self) -> bool:
        """No tick's run failed and none could not be started."""
        return not any(t.status in (R.FAILED, ERROR, ABANDONED) for t in self.ticks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": iso(self.now.timestamp()),
            "ticks": [t.to_dict() for t in self.ticks],
            "next_due": iso(self.next_due.timestamp()) if self.next_due is not None else None,
            "stopped": self.stopped,
        }


def daemon_owner() -> str:
    """How a daemon names itself on the tick rows it claims: ``host:pid``."""
    return f"{os.uname().nodename}:{os.getpid()}"


class Runner:
    """Runs ticks for one metadata store with one clock; a daemon keeps one, `cairn tick` makes one.

    Args:
        meta: The project's metadata store (kept open by the caller).
        clock: Where "now" comes from (`SystemClock`, or a `ManualClock` in tests and ``--now``).
        owner: How this daemon names itself (default ``host:pid``).
        log: Called with one line per finished tick and per problem.
        stopping: Asked before every run; once true, no further run starts.
        pace_sensors: Evaluate a sensor only when its ``interval_s`` has passed since any daemon last did
            (the daemon paces; `cairn tick` evaluates every sensor).
        executor: An executor for the runs instead of the one cairn.toml names (tests).
    """

    def __init__(
        self,
        meta: MetadataStore,
        clock: Clock,
        *,
        owner: str | None = None,
        log: Log | None = None,
        stopping: Callable[[], bool] = lambda: False,
        pace_sensors: bool = True,
        executor: Executor | None = None,
    ) -> None:
        self.meta = meta
        self.clock = clock
        self.owner = owner or daemon_owner()
        self.log: Log = log or (lambda line: None)
        self.stopping = stopping
        self.pace_sensors = pace_sensors
        self.executor = executor
        self._done: list[TickRecord] = []
        self._upcoming = Upcoming()

    def tick(self, project: Project) -> TickReport:
        """Evaluate every schedule, sensor and freshness policy of `project` once, at the clock's now."""
        now = self.clock.now()
        self._done = []
        states: dict[tuple[str, str], AutomationState] = {}
        try:
            self._reconcile(project)
            states = self.meta.ensure_automation_states(_wanted(project), now.timestamp())
            for step in (self._schedules, self._sensors, self._freshness):
                if self.stopping():
                    break
                step(project, states, now)
        finally:
            if self.stopping():
                self.meta.release_ticks(self.owner)
        return TickReport(now, tuple(self._done), self.next_due(project, states, now), self.stopping())

    def next_due(
        self, project: Project, states: dict[tuple[str, str], AutomationState], now: datetime
    ) -> datetime | None:
        """The earliest time after `now` at which a schedule that is not paused is due."""
        times = []
        for s in project.schedules:
            state = states.get((SCHEDULE, s.name))
            if state is None or not state.paused:
                t = self._upcoming.after(s, now.timestamp())
                times += [t] if t is not None else []
        return min(times, default=None)

    # -- what is due ----------------------------------------------------------------------------

    def _schedules(self, project: Project, states: dict[tuple[str, str], AutomationState], now: datetime) -> None:
        for schedule in project.schedules:
            state = states[(SCHEDULE, schedule.name)]
            if state.paused:
                continue
            upcoming = self._upcoming.after(schedule, cursor(state))
            if upcoming is None or upcoming > now:
                continue  # nothing due: no cron arithmetic beyond the remembered next due time
            due = due_ticks(schedule, state, now, self.owner)
            if due.skipped:
                self.meta.record_ticks(due.skipped)
                for tick in due.skipped:
                    self._finished(tick, None)
            for tick in due.run:
                if self.stopping():
                    return
                try:
                    choice = resolve(
                        project.graph, schedule.selection, schedule.partition, _at(tick.due_at, now), schedule.timezone
                    )
                except CairnError as exc:
                    self._claim_failed(replace(tick, status=ERROR, finished_at=now.timestamp(), error=str(exc)))
                    continue
                claimed = replace(tick, partition=choice.label)
                if self.meta.claim_tick(claimed):
                    self._run(project, claimed)

    def _sensors(self, project: Project, states: dict[tuple[str, str], AutomationState], now: datetime) -> None:
        ts = now.timestamp()
        for sensor in project.sensors:
            if self.stopping():
                return
            state = states[(SENSOR, sensor.name)]
            if state.paused or (
                self.pace_sensors
                and state.evaluated_at is not None
                and 0 <= ts - state.evaluated_at < sensor.interval_s
            ):
                continue
            try:
                found = sensors.evaluate(sensor, state, project, self.meta, now)
            except Exception as exc:  # a sensor function's own error: recorded on its state, the daemon goes on
                error = f"{type(exc).__name__}: {exc}"
                self.meta.note_evaluation(SENSOR, sensor.name, ts, error)
                self.log(f"sensor {sensor.name}: evaluation failed: {error}")
                continue
            ticks = [
                TickRecord(SENSOR, sensor.name, ts, r.key, CLAIMED, self.owner, r.partition, None, r.reason, ts)
                for r in found.requests
            ]
            claimed = self.meta.commit_sensor(sensor.name, state.generation, found.cursor, ts, ticks)
            for tick in claimed or []:
                if self.stopping():
                    return
                self._run(project, tick)

    def _freshness(self, project: Project, states: dict[tuple[str, str], AutomationState], now: datetime) -> None:
        assets = freshness.policies(project.graph)
        if not assets:
            return
        ts = now.timestamp()
        newest = self.meta.newest_materializations([a.name for a in assets])
        for breach in freshness.breaches(assets, states, newest, ts, FRESHNESS):
            if self.stopping():
                return
            tick = TickRecord(
                FRESHNESS, breach.asset.name, breach.due_at, "", CLAIMED, self.owner, reason=breach.reason
            )
            tick = replace(tick, claimed_at=ts)
            if breach.asset.on_stale == "alert":
                alert = replace(tick, status=ALERTED, finished_at=ts)
                if self.meta.claim_tick(alert):
                    self._finished(alert, None)
                continue
            try:
                choice = latest_partition(breach.asset.partitions, now)
            except CairnError as exc:
                self._claim_failed(replace(tick, status=ERROR, finished_at=ts, error=str(exc)))
                continue
            claimed = replace(tick, partition=choice.label)
            if self.meta.claim_tick(claimed):
                self._run(project, claimed)

    # -- claims left behind ---------------------------------------------------------------------

    def _reconcile(self, project: Project) -> None:
        """Finish ticks whose runs ended elsewhere; start claims that were released or whose daemon is gone."""
        open_ticks = self.meta.open_ticks()
        if not open_ticks:
            return
        if any(t.status == RUNNING for t in open_ticks):
            self.meta.abandon_stale_runs(project.settings.stale_after_s)
        for tick in open_ticks:
            if tick.status == RUNNING and tick.run_id is not None:
                run = self.meta.get_run(tick.run_id)
                if run is None or run.status != R.RUNNING:
                    status = run.status if run is not None else ABANDONED
                    self.meta.finish_tick(tick, status, run.finished_at if run is not None else None)
                    self._finished(replace(tick, status=status), None)
            elif tick.status in (STARTING, RUNNING) and tick.owner != self.owner and _gone(tick.owner):
                why = f"its daemon ({tick.owner}) stopped before the run was recorded"
                self.meta.finish_tick(tick, ABANDONED, self.clock.now().timestamp(), why)
                self._finished(replace(tick, status=ABANDONED, error=why), None)
            elif tick.status == CLAIMED and not self.stopping():
                mine = tick.owner == self.owner or self.meta.take_over_tick(
                    tick, self.owner, project.settings.stale_after_s, _gone(tick.owner)
                )
                if mine:
                    self._run(project, replace(tick, owner=self.owner))

    # -- running one tick -----------------------------------------------------------------------

    def _run(self, project: Project, tick: TickRecord) -> None:
        """Start the run of a claimed tick (unless another daemon took it over) and record how it went."""
        if not self.meta.start_tick(tick, self.owner):
            return
        tick = replace(tick, status=STARTING)
        try:
            options = run_options(project, tick)
        except CairnError as exc:
            self._end(tick, ERROR, None, str(exc))
            return

        def on_event(event: Event) -> None:
            nonlocal tick
            if event.kind == RUN_STARTED:
                started = self.clock.now().timestamp()
                self.meta.tick_started(tick, event.run_id, started)
                tick = replace(
                    tick, status=RUNNING, run_id=event.run_id, started_at=started, latency_s=started - tick.due_at
                )

        try:
            result = execute(project, options, on_event, self.executor)
        except KeyboardInterrupt:
            self._end(tick, R.CANCELLED, None, "the daemon was interrupted")
            raise
        except CairnError as exc:
            self._end(tick, ERROR, None, str(exc))
            return
        except Exception as exc:  # a bug must not end the daemon: the tick says what happened
            self._end(tick, ERROR, None, f"{type(exc).__name__}: {exc}")
            return
        self._end(tick, result.status, result, None)

    def _end(self, tick: TickRecord, status: str, result: RunResult | None, error: str | None) -> None:
        finished = self.clock.now().timestamp()
        self.meta.finish_tick(tick, status, finished, error)
        self._finished(replace(tick, status=status, finished_at=finished, error=error), result)

    def _claim_failed(self, tick: TickRecord) -> None:
        """Record a tick that could not be run at all (its partition does not resolve), once."""
        if self.meta.claim_tick(tick):
            self._finished(tick, None)

    def _finished(self, tick: TickRecord, result: RunResult | None) -> None:
        self._done.append(tick)
        self.log(describe(tick))
        notify(self.meta, tick, result, self.log)


def run_options(project: Project, tick: TickRecord) -> RunOptions:
    """What a tick runs: its definition's selection (as defined now) and the partitions it recorded."""
    choice = PartitionChoice.from_label(tick.partition)
    common: dict[str, Any] = {"partition": choice.partition, "partition_range": choice.partition_range}
    if tick.kind == SCHEDULE:
        found = next((s for s in project.schedules if s.name == tick.name), None)
        if found is not None:
            return RunOptions(selection=found.selection, profile=found.profile, **common)
    elif tick.kind == SENSOR:
        sensor = next((s for s in project.sensors if s.name == tick.name), None)
        if sensor is not None:
            return RunOptions(selection=sensor.selection, **common)
    elif tick.kind == FRESHNESS and tick.name in project.graph.assets:
        return RunOptions(selection=(tick.name,), force=True, **common)
    raise UsageError(f"{tick.kind} '{tick.name}' is no longer defined in the project, so its tick was not run")


def describe(tick: TickRecord) -> str:
    """One line about a finished tick, for the daemon's output."""
    parts = [f"{tick.label} due {iso(tick.due_at)}: {tick.status}"]
    if tick.partition:
        parts.append(f"partition {tick.partition}")
    if tick.run_id:
        parts.append(f"run {tick.run_id}")
    if tick.latency_s is not None:
        parts.append(f"started {tick.latency_s:.1f}s after due")
    text = ", ".join(parts)
    detail = tick.error or tick.reason
    return f"{text} ({detail})" if detail else text


def _wanted(project: Project) -> list[tuple[str, str]]:
    return (
        [(SCHEDULE, s.name) for s in project.schedules]
        + [(SENSOR, s.name) for s in project.sensors]
        + [(FRESHNESS, a.name) for a in freshness.policies(project.graph)]
    )


def _at(ts: float, now: datetime) -> datetime:
    """A tick's due time as an aware datetime (in the zone of `now`)."""
    return datetime.fromtimestamp(ts, now.tzinfo)


def _gone(owner: str) -> bool:
    """Whether `owner` (``host:pid``) is a process of this machine that no longer runs."""
    host, _, pid = owner.rpartition(":")
    if host != os.uname().nodename or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
