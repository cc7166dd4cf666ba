"""Which ticks of a schedule are due at a moment, and what its catchup policy does with the missed ones.

A schedule's ticks are the due times after its cursor (the newest tick claimed, or, before any, the moment a
daemon first saw it or it was resumed) up to now. The newest is run; the older ones were missed (no daemon
ran, or it was busy): ``catchup="all"`` runs each of them too, ``"latest"`` records them as skipped, and
``"none"`` also skips the newest when it is more than `ON_TIME_S` late.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cairn.automation.cron import due_times, next_due
from cairn.core.automation import CLAIMED, ON_TIME_S, SCHEDULE, SKIPPED, AutomationState, Schedule, TickRecord


@dataclass(frozen=True, slots=True)
class DueTicks:
    """A schedule's due ticks: the ones to run, in order, and the missed ones to record as skipped."""

    run: tuple[TickRecord, ...] = ()
    skipped: tuple[TickRecord, ...] = ()


def due_ticks(schedule: Schedule, state: AutomationState, now: datetime, owner: str) -> DueTicks:
    """The ticks of `schedule` due at `now` given its `state` (nothing while it is paused)."""
    if state.paused:
        return DueTicks()
    due = due_times(schedule, datetime.fromtimestamp(cursor(state), UTC), now)
    if not due:
        return DueTicks()
    ts = now.timestamp()
    *missed, newest = due
    run = list(missed) if schedule.catchup == "all" else []
    skipped = [] if schedule.catchup == "all" else list(missed)
    late = ts - newest.timestamp()
    if schedule.catchup == "none" and late > ON_TIME_S:
        skipped.append(newest)
    else:
        run.append(newest)
    why = {
        "latest": "missed; catchup = latest runs only the newest missed tick",
        "none": f"missed by more than {ON_TIME_S:.0f} s; catchup = none",
    }.get(schedule.catchup, "")
    return DueTicks(
        tuple(_tick(schedule, t, CLAIMED, owner, ts, f"due {local(t, schedule.timezone)}") for t in run),
        tuple(_tick(schedule, t, SKIPPED, owner, ts, why, finished=ts) for t in skipped),
    )


def cursor(state: AutomationState) -> float:
    """After which moment a schedule's ticks are due: the newest one claimed, else when it was first seen (or
    resumed), inclusive: a tick due exactly then is due."""
    if state.last_due is not None and state.last_due >= state.since:
        return state.last_due
    return state.since - 1e-3


class Upcoming:
    """Each schedule's next due time after a moment, remembered: croniter (slow) is asked again only for a
    schedule whose remembered time has passed, so a daemon's idle tick costs no cron arithmetic."""

    def __init__(self) -> None:
        self._known: dict[Schedule, tuple[float, datetime | None]] = {}

    def after(self, schedule: Schedule, moment: float) -> datetime | None:
        """The first due time after `moment` (None if none is found)."""
        known = self._known.get(schedule)
        # Known after m0 to be X: for every m0 <= m < X the answer is X as well.
        if known is not None and known[0] <= moment and known[1] is not None and moment < known[1].timestamp():
            return known[1]
        value = next_due(schedule, datetime.fromtimestamp(moment, UTC))
        self._known[schedule] = (moment, value)
        return value


def local(moment: datetime, tz: str) -> str:
    """``2026-03-29 03:00 CEST``: a moment on the wall clock of a zone."""
    return moment.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


def _tick(
    schedule: Schedule, due: datetime, status: str, owner: str, now: float, reason: str, finished: float | None = None
) -> TickRecord:
    return TickRecord(
        SCHEDULE, schedule.name, due.timestamp(), "", status, owner, None, None, reason, now, finished_at=finished
    )
