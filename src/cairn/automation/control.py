"""`cairn schedules list|pause|resume|ticks`: what is defined, its state and last tick; pausing and resuming.

Pausing and resuming are audited (``schedule.pause``, ``sensor.resume``). Once users are defined they need the
operator role (the user in ``CAIRN_TOKEN``); before, anyone who can open the database may, as the OS user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cairn.automation.cron import next_due
from cairn.core.automation import SCHEDULE, SENSOR, AutomationState, Schedule, Sensor, TickRecord, iso
from cairn.errors import UsageError, did_you_mean
from cairn.project import Project
from cairn.security import Role, require
from cairn.security.authors import os_user
from cairn.storage.metadata import MetadataStore


@dataclass(frozen=True, slots=True)
class Entry:
    """One schedule or sensor as `cairn schedules list` shows it."""

    kind: str
    name: str
    when: str
    selection: tuple[str, ...]
    partition: str | None
    catchup: str | None
    paused: bool
    last: TickRecord | None
    next_due: datetime | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "when": self.when,
            "select": list(self.selection),
            "partition": self.partition,
            "catchup": self.catchup,
            "paused": self.paused,
            "last_tick": self.last.to_dict() if self.last is not None else None,
            "next_due": iso(self.next_due.timestamp()) if self.next_due is not None else None,
            "error": self.error,
        }


def entries(project: Project, meta: MetadataStore, now: datetime) -> list[Entry]:
    """Every schedule and sensor of the project with its state, last tick and (schedules) next due time."""
    states = meta.automation_states()
    last = meta.last_ticks()
    out = []
    for item in defined(project):
        kind = SCHEDULE if isinstance(item, Schedule) else SENSOR
        state = states.get((kind, item.name), AutomationState(kind, item.name))
        out.append(
            Entry(
                kind=kind,
                name=item.name,
                when=item.describe(),
                selection=item.selection,
                partition=item.partition if isinstance(item, Schedule) else None,
                catchup=item.catchup if isinstance(item, Schedule) else None,
                paused=state.paused,
                last=last.get((kind, item.name)),
                next_due=next_due(item, now) if isinstance(item, Schedule) and not state.paused else None,
                error=state.error,
            )
        )
    return out


def set_paused(project: Project, meta: MetadataStore, name: str, paused: bool, now: datetime) -> AutomationState:
    """Pause or resume the schedule or sensor `name`, as the acting user (see the module docstring).

    Raises:
        UsageError: No schedule or sensor has this name.
        AccessDenied: Users are defined and the acting user is not an operator.
    """
    found = next((s for s in defined(project) if s.name == name), None)
    if found is None:
        known = [s.name for s in defined(project)]
        raise UsageError(
            f"no schedule or sensor is named '{name}'.{did_you_mean(name, known)} "
            f"Defined: {', '.join(known) or 'none'} (`cairn schedules list`)"
        )
    kind = SCHEDULE if isinstance(found, Schedule) else SENSOR
    verb = "pause" if paused else "resume"
    actor = require(meta, Role.OPERATOR, f"{verb} {kind} {name}").name if meta.has_users() else os_user()
    return meta.set_paused(kind, name, paused, now.timestamp(), actor)


def defined(project: Project) -> list[Schedule | Sensor]:
    """The project's schedules, then its sensors."""
    return [*project.schedules, *project.sensors]
