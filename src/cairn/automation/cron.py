"""When a schedule is due: its cron expression read as wall-clock times in its time zone, DST-correct.

croniter iterates the wall-clock times (naive, so that it does no time-zone arithmetic of its own); each is
then placed on the time line in the schedule's zone, as cron does it:

    wall-clock time     on the time line
    ordinary            the one instant it names
    skipped (spring)    the end of the gap: 02:30 on a night that jumps from 02:00 to 03:00 fires at 03:00
    repeated (autumn)   the first pass only, for fixed hours ("0 2 * * *" fires once at 02:00 CEST);
                        both passes when the hour field is a wildcard ("*/30 * * * *" fires every real half hour)

Times that land on the same instant fire once (a skipped 02:00 and 02:30 and the 03:00 after the gap).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from cairn.core.automation import Schedule

# Wall-clock shifts are at most this large (DST changes are 1 h; a few zones have moved by 2 h or 30 min).
_MARGIN = timedelta(hours=3)
_MAX_STEPS = 100_000  # candidates looked at for one answer (a minutely cron over ~70 days)


def due_times(schedule: Schedule, after: datetime, until: datetime) -> list[datetime]:
    """The instants (UTC) at which `schedule` is due with ``after < t <= until``, in order."""
    if until <= after:
        return []
    zone = ZoneInfo(schedule.timezone)
    found: set[datetime] = set()
    stop = _wall(until, zone) + _MARGIN
    it = croniter(schedule.expression, _wall(after, zone) - _MARGIN)
    for _ in range(_MAX_STEPS):
        wall: datetime = it.get_next(datetime)
        if wall > stop:
            break
        found.update(t for t in instants(wall, zone, schedule.every_hour) if after < t <= until)
    return sorted(found)


def next_due(schedule: Schedule, after: datetime) -> datetime | None:
    """The first instant (UTC) after `after` at which `schedule` is due (None if none in ~70 days of steps)."""
    zone = ZoneInfo(schedule.timezone)
    it = croniter(schedule.expression, _wall(after, zone) - _MARGIN)
    best: datetime | None = None
    for _ in range(_MAX_STEPS):
        wall: datetime = it.get_next(datetime)
        if best is not None and wall > _wall(best, zone) + _MARGIN:
            return best
        for t in instants(wall, zone, schedule.every_hour):
            if t > after and (best is None or t < best):
                best = t
    return best


def instants(wall: datetime, zone: ZoneInfo, both_passes: bool) -> list[datetime]:
    """Where a naive wall-clock time of `zone` lies on the time line (UTC): see the module docstring."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if first.astimezone(zone).replace(tzinfo=None) != wall:  # skipped: it does not exist on this day
        return [_gap_end(second, first, zone)]
    return [first, second] if both_passes else [first]


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _gap_end(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """The instant a wall-clock gap ends: the UTC offset changes between `low` and `high` (found by bisection)."""
    offset = low.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)
