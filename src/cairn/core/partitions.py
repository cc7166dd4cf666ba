"""Partition definitions and mappings: time (hourly to monthly, time-zone aware), static, and their product.

Keys: hourly ``2026-06-01T13`` (in a zone other than UTC the offset follows, ``2026-03-29T03+02:00``, so the
repeated hour of a daylight-saving change has two distinct keys), daily ``2026-06-01``, weekly the date of
the week's Monday ``2026-06-01``, monthly ``2026-06``, static keys as given, products ``2026-06-01|us``.
Nothing here reads a clock: "now" is always a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

from cairn.core.keys import validate_partition
from cairn.errors import DefinitionError, UsageError

UNITS = ("hourly", "daily", "weekly", "monthly")
SEPARATOR = "|"


@dataclass(frozen=True, slots=True)
class TimePartitions:
    """Periods of one unit from `start` (inclusive) to `end` (exclusive; default: the last complete period)."""

    unit: str
    start: str
    end: str | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise DefinitionError(f"partition unit {self.unit!r} is not one of {', '.join(UNITS)}")
        _zone(self.timezone)
        _parse_start(self.start, self.unit, self.timezone)
        if self.end is not None:
            _parse_start(self.end, self.unit, self.timezone)

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    def keys(self, now: datetime) -> list[str]:
        """Every complete period's key up to `now` (or up to `end`)."""
        first = _parse_start(self.start, self.unit, self.timezone)
        stop = _parse_start(self.end, self.unit, self.timezone) if self.end else None
        out = []
        current = first
        while True:
            following = _next(current, self.unit, self.zone)
            if (stop is not None and current >= stop) or (stop is None and following > now.astimezone(UTC)):
                break
            out.append(self.key_of(current))
            current = following
        return out

    def key_of(self, period_start: datetime) -> str:
        local = period_start.astimezone(self.zone)
        if self.unit == "hourly":
            text = local.strftime("%Y-%m-%dT%H")
            if self.timezone != "UTC":
                offset = local.strftime("%z")
                text += f"{offset[:3]}:{offset[3:]}"
            return text
        if self.unit == "monthly":
            return local.strftime("%Y-%m")
        return local.strftime("%Y-%m-%d")

    def window(self, key: str) -> tuple[datetime, datetime]:
        """The period a key stands for: ``(start, end)`` as time-zone aware datetimes."""
        begin = self.parse(key)
        return _fixed(begin, self.zone), _fixed(_next(begin, self.unit, self.zone), self.zone)

    def parse(self, key: str) -> datetime:
        """The start of the period a key names (UTC), or a `UsageError` naming the expected form."""
        try:
            if self.unit == "hourly":
                stamp, offset = key[:13], key[13:]
                naive = datetime.strptime(stamp, "%Y-%m-%dT%H")
                if offset:
                    aware = datetime.strptime(stamp + offset.replace(":", ""), "%Y-%m-%dT%H%z")
                    return aware.astimezone(UTC)
                return _localize(naive, self.zone).astimezone(UTC)
            fmt = "%Y-%m" if self.unit == "monthly" else "%Y-%m-%d"
            naive = datetime.strptime(key, fmt)
        except ValueError:
            raise UsageError(f"partition key {key!r} is not a {self.unit} key ({_EXAMPLES[self.unit]})") from None
        if self.unit == "weekly" and naive.weekday() != 0:
            raise UsageError(f"weekly partition key {key!r} must be a Monday (the first day of its week)")
        return _localize(naive, self.zone).astimezone(UTC)

    def describe(self) -> str:
        return (
            f"{self.unit} from {self.start}"
            + (f" to {self.end}" if self.end else "")
            + (f" ({self.timezone})" if self.timezone != "UTC" else "")
        )


@dataclass(frozen=True, slots=True)
class StaticPartitions:
    """A fixed set of keys: segments, tenants, regions."""

    values: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise DefinitionError("static partitions need at least one key")
        for value in self.values:
            if not value:  # "" is the key of an unpartitioned asset, never one of a set
                raise DefinitionError(f"static partition keys must not be empty: {list(self.values)}")
            if SEPARATOR in value:
                raise DefinitionError(f"static partition key {value!r} must not contain '{SEPARATOR}'")
            validate_partition(value)
        if len(set(self.values)) != len(self.values):
            raise DefinitionError(f"static partition keys repeat: {list(self.values)}")

    def keys(self, now: datetime) -> list[str]:
        return list(self.values)

    def describe(self) -> str:
        return "static: " + ", ".join(self.values)


@dataclass(frozen=True, slots=True)
class MultiPartitions:
    """The product of a time dimension and a static one; keys are ``time|static``."""

    time: TimePartitions
    static: StaticPartitions

    def keys(self, now: datetime) -> list[str]:
        return [f"{t}{SEPARATOR}{s}" for t in self.time.keys(now) for s in self.static.values]

    def describe(self) -> str:
        return f"{self.time.describe()} x {self.static.describe()}"


PartitionsDef = TimePartitions | StaticPartitions | MultiPartitions


def hourly(start: str, end: str | None = None, timezone: str = "UTC") -> TimePartitions:
    """Hourly partitions from `start` (``"2026-06-01"`` or ``"2026-06-01T13"``)."""
    return TimePartitions("hourly", start, end, timezone)


def daily(start: str, end: str | None = None, timezone: str = "UTC") -> TimePartitions:
    """Daily partitions from `start` (``"2026-06-01"``)."""
    return TimePartitions("daily", start, end, timezone)


def weekly(start: str, end: str | None = None, timezone: str = "UTC") -> TimePartitions:
    """Weekly partitions (weeks start on Monday) from the Monday `start`."""
    return TimePartitions("weekly", start, end, timezone)


def monthly(start: str, end: str | None = None, timezone: str = "UTC") -> TimePartitions:
    """Monthly partitions from `start` (``"2026-06"``)."""
    return TimePartitions("monthly", start, end, timezone)


def static(*values: str) -> StaticPartitions:
    """Static partitions: ``static("us", "eu")``."""
    return StaticPartitions(tuple(values))


def product(time: TimePartitions, other: StaticPartitions) -> MultiPartitions:
    """Time x static partitions, keys like ``2026-06-01|us``."""
    return MultiPartitions(time, other)


def check_key(partitions: PartitionsDef, key: str, now: datetime) -> str:
    """Return `key` if the definition has it now, else a `UsageError` that shows the valid range."""
    try:
        validate_partition(key)
    except DefinitionError as exc:
        raise UsageError(str(exc)) from None
    keys = partitions.keys(now)
    if key in set(keys):
        return key
    if not keys:
        raise UsageError(f"partition {key!r} does not exist: {partitions.describe()} has no complete partition yet")
    span = f"{keys[0]} … {keys[-1]}" if len(keys) > 3 else ", ".join(keys)
    raise UsageError(f"partition {key!r} is outside {partitions.describe()}: valid keys are {span} ({len(keys)} keys)")


def key_range(partitions: PartitionsDef, first: str, last: str, now: datetime) -> list[str]:
    """The keys from `first` to `last` inclusive (both must exist)."""
    check_key(partitions, first, now)
    check_key(partitions, last, now)
    keys = partitions.keys(now)
    i, j = keys.index(first), keys.index(last)
    if i > j:
        raise UsageError(f"--from {first} comes after --to {last}")
    return keys[i : j + 1]


def window_start(partitions: PartitionsDef, key: str) -> datetime | None:
    """The time window of a key (the time dimension of a product), or None for static keys."""
    time = partitions.time if isinstance(partitions, MultiPartitions) else partitions
    if not isinstance(time, TimePartitions):
        return None
    return time.window(key.split(SEPARATOR)[0])[0]


def context_window(partitions: PartitionsDef | None, key: str) -> tuple[Any, Any] | None:
    """What `ctx.partition_window` shows: (start, end) of the key's time period, or None."""
    if partitions is None or not key:
        return None
    time = partitions.time if isinstance(partitions, MultiPartitions) else partitions
    if not isinstance(time, TimePartitions):
        return None
    return time.window(key.split(SEPARATOR)[0])


def time_of(partitions: PartitionsDef | None) -> TimePartitions | None:
    """The time dimension of a definition (itself, or the time side of a product), or None."""
    if isinstance(partitions, MultiPartitions):
        return partitions.time
    return partitions if isinstance(partitions, TimePartitions) else None


def split_key(key: str) -> tuple[str, str]:
    """``2026-06-01|us`` -> ``("2026-06-01", "|us")``; a key without a static part keeps ``""`` as its suffix."""
    time_key, sep, rest = key.partition(SEPARATOR)
    return time_key, sep + rest


def time_keys(partitions: PartitionsDef, keys: Sequence[str]) -> list[str]:
    """The distinct time parts of `keys`, in order (the keys themselves for a plain time definition)."""
    if not isinstance(partitions, MultiPartitions):
        return list(keys)
    return list(dict.fromkeys(split_key(k)[0] for k in keys))


def nests(finer: str, coarser: str) -> bool:
    """Whether every period of unit `finer` lies inside exactly one period of unit `coarser`."""
    if finer == coarser or (finer, coarser) == ("weekly", "monthly"):
        return False
    return UNITS.index(finer) < UNITS.index(coarser)


def period_keys(producer: TimePartitions, consumer: TimePartitions, key: str) -> list[str]:
    """The producer periods a consumer period `key` covers (coarser consumer) or lies in (finer consumer).

    Both definitions share a time zone and their units nest (see `nests`). The result is every candidate
    period; the caller keeps those the producer has (complete and inside its range).
    """
    begin, end = consumer.window(key)
    if nests(consumer.unit, producer.unit):
        return [producer.key_of(_containing(begin.astimezone(UTC), producer.unit, producer.zone))]
    out = []
    current = begin.astimezone(UTC)
    stop = end.astimezone(UTC)
    while current < stop:
        out.append(producer.key_of(current))
        current = _next(current, producer.unit, producer.zone)
    return out


def _containing(moment: datetime, unit: str, zone: ZoneInfo) -> datetime:
    """The start (UTC) of the period of `unit` in `zone` that contains `moment`."""
    day = moment.astimezone(zone).date()  # the producer is daily or coarser: a finer consumer exists
    if unit == "weekly":
        day -= timedelta(days=day.weekday())
    elif unit == "monthly":
        day = day.replace(day=1)
    return _localize(datetime.combine(day, datetime.min.time()), zone).astimezone(UTC)


_EXAMPLES = {
    "hourly": "like 2026-06-01T13",
    "daily": "like 2026-06-01",
    "weekly": "the Monday of the week, like 2026-06-01",
    "monthly": "like 2026-06",
}


def _fixed(moment: datetime, zone: ZoneInfo) -> datetime:
    """Local time with a fixed-offset tzinfo, so that ``end - start`` counts real elapsed time across DST."""
    local = moment.astimezone(zone)
    offset = local.utcoffset()
    assert offset is not None
    return local.replace(tzinfo=timezone(offset))


def _zone(name: str) -> ZoneInfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # here: only time partitions need it

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DefinitionError(f"unknown time zone {name!r}: use an IANA name like 'Europe/Berlin' or 'UTC'") from None


def _localize(naive: datetime, zone: ZoneInfo) -> datetime:
    """Attach a zone to a wall-clock time; a time that does not exist (spring forward) moves forward."""
    aware = naive.replace(tzinfo=zone)
    roundtrip = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if roundtrip != naive:
        aware = (naive + timedelta(hours=1)).replace(tzinfo=zone)
    return aware


def _parse_start(text: str, unit: str, timezone: str) -> datetime:
    zone = _zone(timezone)
    for fmt in ("%Y-%m-%dT%H", "%Y-%m-%d", "%Y-%m"):
        try:
            naive = datetime.strptime(text, fmt)
            break
        except ValueError:
            continue
    else:
        raise DefinitionError(f"partition start {text!r} must look like 2026-06-01 (or 2026-06-01T13, 2026-06)")
    if unit == "weekly" and naive.weekday() != 0:
        raise DefinitionError(f"weekly partitions must start on a Monday; {text} is a {naive:%A}")
    if unit == "monthly":
        naive = naive.replace(day=1, hour=0)
    elif unit != "hourly":
        naive = naive.replace(hour=0)
    return _localize(naive, zone).astimezone(UTC)


def _next(start: datetime, unit: str, zone: ZoneInfo) -> datetime:
    """The start of the following period, computed on the wall clock of the zone (DST-safe)."""
    if unit == "hourly":
        return start + timedelta(hours=1)
    local = start.astimezone(zone).replace(tzinfo=None)
    if unit == "daily":
        nxt = datetime.combine(local.date() + timedelta(days=1), local.time())
    elif unit == "weekly":
        nxt = datetime.combine(local.date() + timedelta(days=7), local.time())
    else:
        first = date(local.year + (local.month == 12), local.month % 12 + 1, 1)
        nxt = datetime.combine(first, local.time())
    return _localize(nxt, zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """Input mapping: the last `n` partitions of `asset` up to the consumer's partition (a dict by key)."""

    asset: str
    n: int

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise DefinitionError(f"Window({self.asset!r}, {self.n!r}): n must be an integer >= 1")


@dataclass(frozen=True, slots=True)
class AllPartitions:
    """Input mapping: every partition of `asset` (a dict by key), e.g. to aggregate into one asset."""

    asset: str


@dataclass(frozen=True, slots=True)
class Latest:
    """Input mapping: the newest partition of `asset` that is available now.

    For a partitioned source, the newest key whose file is present; for a computed asset, the newest key
    whose own inputs are available (it is cached or the run produces it).
    """

    asset: str


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Input mapping between time partitions of different units, e.g. a daily asset over an hourly one.

    A coarser consumer reads every producer period inside its own (the hours of its day, 23 or 25 on a
    daylight-saving day; the 7 days of its week), as a dict by key; a finer consumer reads the one producer
    period that contains its own. Only producer periods that are complete (and inside the producer's range)
    are read. The units must nest (hourly in daily, weekly, monthly; daily in weekly, monthly) and both
    definitions must use the same time zone.
    """

    asset: str


InputMapping = Window | AllPartitions | Latest | TimeWindow
