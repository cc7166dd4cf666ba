"""Schedules, sensors and freshness policies as definitions, and the records of their ticks: values only.

A cron expression is checked here for its shape (five fields or an ``@daily``-style alias, numbers and names
in range); when it fires is worked out by `cairn.automation.cron` (croniter), which core does not import.
Nothing here reads a clock: "now" is always a parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, overload

from cairn.core.keys import validate_name, validate_partition
from cairn.errors import DefinitionError, UsageError, did_you_mean

if TYPE_CHECKING:
    from cairn.core.graph import Graph

# Tick kinds: what a row of the tick table was claimed for.
SCHEDULE = "schedule"
SENSOR = "sensor"
FRESHNESS = "freshness"

# What a schedule does with ticks that were due while no daemon ran (or while it was busy).
CATCHUP_MODES = ("latest", "all", "none")
# A late tick still runs under catchup="none" when it is at most this late.
ON_TIME_S = 300.0
# What a freshness policy does when its asset is older than max_age.
ON_STALE = ("materialize", "alert")

# Tick statuses besides a run's own (succeeded, failed, partial, cancelled, abandoned).
CLAIMED = "claimed"  # the row exists; its run has not been started yet
STARTING = "starting"  # a daemon is starting its run
RUNNING = "running"  # the run is recorded (run_id)
SKIPPED = "skipped"  # not run: missed under the schedule's catchup policy
ALERTED = "alerted"  # a freshness breach with on_stale="alert"
ERROR = "error"  # the run could not be started (the message says why)
ABANDONED = "abandoned"  # the daemon that started it died before its run was recorded
OPEN_STATUSES = (CLAIMED, STARTING, RUNNING)

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = (  # name, lowest, highest, names
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_ITEM = re.compile(r"^(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?$")
_CRON_HELP = (
    "a cron expression has five fields, minute hour day-of-month month day-of-week, e.g. '0 2 * * *' "
    "(02:00 every day) or '*/15 * * * 1-5' (every 15 minutes on weekdays), or is one of " + ", ".join(_ALIASES)
)
_RELATIVE = re.compile(r"^(today|yesterday|latest)(?:-([0-9]+))?$")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(w|d|h|m|s)")
_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


# -- schedules -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    """Run a selection at the times of a cron expression, in a time zone (see `schedule`)."""

    name: str
    cron: str
    selection: tuple[str, ...] = ()
    timezone: str = "UTC"
    partition: str | None = None
    catchup: str = "latest"
    profile: str | None = None
    location: str = ""

    @property
    def expression(self) -> str:
        """The five-field form of the cron expression (aliases expanded)."""
        return _ALIASES.get(self.cron.strip().lower(), self.cron.strip())

    @property
    def every_hour(self) -> bool:
        """Whether the hour field is a wildcard (``*``, ``*/2``): such a schedule fires in both passes of the
        hour that a daylight-saving change repeats; one with fixed hours fires in the first pass only."""
        return self.expression.split()[1].startswith("*")

    def describe(self) -> str:
        return f"{self.cron} ({self.timezone})"


def schedule(
    name: str,
    cron: str,
    *,
    select: str | Iterable[str] = (),
    tz: str = "UTC",
    partition: str | None = None,
    catchup: str = "latest",
    profile: str | None = None,
) -> Schedule:
    """Define a schedule: run `select` at the times of `cron`, read as wall-clock times in `tz`.

    Args:
        name: The schedule's name (``cairn schedules pause NAME``).
        cron: Five fields, minute hour day-of-month month day-of-week (``"0 2 * * *"``), or an alias
            (``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``).
        select: Selection tokens as for ``cairn run`` (``"+model"``); empty means every asset.
        tz: An IANA time zone (``"Europe/Berlin"``). A time that a daylight-saving change skips fires at the
            end of the gap; a fixed time that it repeats fires once.
        partition: Which partition each run materializes, resolved at the tick's time in `tz`:
            ``"yesterday"``, ``"today"`` (``"today-N"``: N days before), ``"latest"`` (the newest complete
            partition; ``"latest-N"``: N before it) or a fixed key. None runs every partition that exists.
        catchup: Ticks missed while no daemon ran: ``"latest"`` runs the newest of them once, ``"all"`` runs
            each, ``"none"`` runs none (a tick more than 5 minutes late is skipped).
        profile: The params overlay ``[profiles.NAME]`` of cairn.toml to run with.
    """
    where = f"schedule '{name}'"
    validate_name(name, "schedule")
    if not isinstance(cron, str) or not cron.strip():
        raise DefinitionError(f"{where}: cron must be a string; {_CRON_HELP}")
    check_cron(cron, where)
    check_timezone(tz, where)
    if catchup not in CATCHUP_MODES:
        raise DefinitionError(
            f"{where}: catchup={catchup!r} is not one of {', '.join(CATCHUP_MODES)}."
            f"{did_you_mean(str(catchup), CATCHUP_MODES)}"
        )
    if partition is not None:
        check_partition_spec(partition, where)
    if profile is not None:
        validate_name(profile, "profile")
    return Schedule(
        name=name,
        cron=cron.strip(),
        selection=selection_tokens(select, where),
        timezone=tz,
        partition=partition,
        catchup=catchup,
        profile=profile,
    )


def check_cron(cron: str, where: str) -> str:
    """Return `cron` if it has the shape of a cron expression, else a DefinitionError naming the field."""
    expression = _ALIASES.get(cron.strip().lower(), cron.strip())
    fields = expression.split()
    if len(fields) != len(_FIELDS):
        raise DefinitionError(f"{where}: cron {cron!r} has {len(fields)} fields; {_CRON_HELP}")
    for text, (field_name, low, high, names) in zip(fields, _FIELDS, strict=True):
        for item in text.lower().split(","):
            _check_item(item, field_name, low, high, names, f"{where}: cron {cron!r}")
    return cron


def _check_item(item: str, field_name: str, low: int, high: int, names: Sequence[str], where: str) -> None:
    if field_name in ("day of month", "day of week") and item in ("?", "l"):
        return
    if field_name == "day of week" and re.fullmatch(r"[0-7a-z]{1,3}(#[1-5]|l)", item):
        return
    match = _ITEM.match(item)
    if match is None:
        raise DefinitionError(f"{where}: {item!r} is not a valid {field_name}; {_CRON_HELP}")
    span, step = match.groups()
    if step is not None and int(step) == 0:
        raise DefinitionError(f"{where}: the {field_name} step '/0' never fires; use a step of 1 or more")
    if span == "*":
        return
    for value in span.split("-"):
        number = names.index(value) + (1 if field_name == "month" else 0) if value in names else None
        if number is None and not value.isdigit():
            known = f" (or {', '.join(names)})" if names else ""
            raise DefinitionError(f"{where}: {value!r} is not a {field_name} {low}-{high}{known}; {_CRON_HELP}")
        if number is None:
            number = int(value)
        if not low <= number <= high:
            raise DefinitionError(f"{where}: {field_name} {number} is outside {low}-{high}; {_CRON_HELP}")


def check_timezone(tz: str, where: str) -> str:
    """Return `tz` if it names an IANA time zone, else a DefinitionError naming the form."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # here: only schedules with a zone need it

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise DefinitionError(
            f"{where}: unknown time zone {tz!r}: use an IANA name like 'Europe/Berlin' or 'UTC'"
        ) from None
    return tz


def check_partition_spec(spec: str, where: str) -> str:
    """Return `spec` if it is ``today``, ``yesterday``, ``latest`` (with an optional ``-N``) or a valid key."""
    if not isinstance(spec, str) or not spec:
        raise DefinitionError(
            f"{where}: partition must be 'yesterday', 'today', 'latest' (with an optional '-N') or a key, got {spec!r}"
        )
    if _RELATIVE.match(spec) is None:
        validate_partition(spec)
    return spec


def relative_partition(spec: str) -> tuple[str, int] | None:
    """``("today", 0)`` for ``yesterday``-like specs: the base and how many periods before it; None for a key."""
    match = _RELATIVE.match(spec)
    if match is None:
        return None
    base, back = match.group(1), int(match.group(2) or 0)
    if base == "yesterday":
        return "today", back + 1
    return base, back


def selection_tokens(select: str | Iterable[str], where: str) -> tuple[str, ...]:
    """Selection tokens from a string (``"+model tag:tier=gold"``) or a list of them."""
    items = [select] if isinstance(select, str) else list(select)
    if not all(isinstance(s, str) for s in items):
        raise DefinitionError(f"{where}: select= must be selection tokens like '+model', got {select!r}")
    return tuple(t for s in items for t in s.replace(",", " ").split())


# -- sensors ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SensorContext:
    """What a custom sensor function is given: the evaluation's time, its cursor, the project folder."""

    name: str
    now: datetime
    cursor: str | None
    root: str


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A run a sensor asks for: of its selection, for one partition (or all), named by a run key.

    A request whose `run_key` a run of the sensor already had is not run again; without a key, every
    request is run.
    """

    partition: str | None = None
    run_key: str | None = None

    def __post_init__(self) -> None:
        if self.partition is not None:
            validate_partition(self.partition)
        if self.run_key is not None and (not isinstance(self.run_key, str) or not self.run_key):
            raise UsageError(f"RunRequest(run_key={self.run_key!r}): a run key must be a non-empty string")


@dataclass(frozen=True, slots=True)
class SensorResult:
    """What a custom sensor function may return: its requests and the cursor to remember for next time."""

    requests: tuple[RunRequest, ...] = ()
    cursor: str | None = None


SensorFn = Callable[[SensorContext], Any]


@dataclass(frozen=True, slots=True)
class Sensor:
    """Run a selection when something happened: a source partition landed, an asset was materialized, or a
    custom function said so (see `sensor`)."""

    name: str
    selection: tuple[str, ...] = ()
    on_source: str | None = None
    on_asset: str | None = None
    fn: SensorFn | None = None
    interval_s: float = 30.0
    location: str = ""

    @property
    def kind(self) -> str:
        """``source``, ``asset`` or ``custom``."""
        return "source" if self.on_source else "asset" if self.on_asset else "custom"

    def describe(self) -> str:
        if self.on_source:
            return f"new data of source {self.on_source}"
        if self.on_asset:
            return f"new materialization of {self.on_asset}"
        return f"custom, every {self.interval_s:g}s"


@overload
def sensor(fn: SensorFn, /) -> Sensor: ...


@overload
def sensor(
    name: str | None = None,
    /,
    *,
    on_source: str | None = None,
    on_asset: str | None = None,
    select: str | Iterable[str] = (),
    interval_s: float = 30.0,
) -> Any: ...


def sensor(
    name: str | SensorFn | None = None,
    /,
    *,
    on_source: str | None = None,
    on_asset: str | None = None,
    select: str | Iterable[str] = (),
    interval_s: float = 30.0,
) -> Any:
    """Define a sensor: run `select` when a source partition lands, an asset is materialized, or a function
    says so.

    ``sensor("landed", on_source="raw_events", select="raw_events+")`` fires when a partition file of the
    source appears or changes; ``sensor("retrain", on_asset="features")`` when a new materialization of
    the asset is committed (default selection: what is downstream of it). As a decorator,
    ``@sensor(select="+model")`` (or bare ``@sensor``) wraps a function ``fn(ctx: SensorContext)`` that
    returns True (run once), a `RunRequest`, a list of them, a `SensorResult` (requests and a new cursor)
    or None/False (nothing).

    Args:
        name: The sensor's name (a decorated function's name by default).
        on_source: A source asset to watch for new or changed partition files.
        on_asset: An asset to watch for new materializations.
        select: Selection tokens as for ``cairn run``.
        interval_s: Seconds between evaluations in the daemon.
    """
    if callable(name):
        return _custom(name, None, select, interval_s)
    if name is not None and not isinstance(name, str):
        raise DefinitionError(f"sensor(...): the name must be a string, got {name!r}")
    if interval_s is None or not isinstance(interval_s, int | float) or isinstance(interval_s, bool) or interval_s <= 0:
        raise DefinitionError(f"sensor {name!r}: interval_s must be a positive number of seconds, got {interval_s!r}")
    if on_source is not None or on_asset is not None:
        if name is None:
            raise DefinitionError("a sensor on a source or an asset needs a name: sensor('landed', on_source='raw')")
        where = f"sensor '{name}'"
        validate_name(name, "sensor")
        if on_source is not None and on_asset is not None:
            raise DefinitionError(f"{where}: watch a source (on_source=) or an asset (on_asset=), not both")
        watched = on_source if on_source is not None else on_asset
        validate_name(str(watched))
        return Sensor(name, selection_tokens(select, where), on_source, on_asset, None, float(interval_s))

    def decorate(fn: SensorFn) -> Sensor:
        return _custom(fn, name, select, interval_s)

    return decorate


def _custom(fn: SensorFn, name: str | None, select: str | Iterable[str], interval_s: float) -> Sensor:
    sensor_name = name or str(getattr(fn, "__name__", ""))
    validate_name(sensor_name, "sensor")
    code = getattr(fn, "__code__", None)
    where = f"{code.co_filename}:{code.co_firstlineno}" if code is not None else ""
    selection = selection_tokens(select, f"sensor '{sensor_name}'")
    return Sensor(sensor_name, selection, None, None, fn, float(interval_s), where)


def sensor_requests(value: Any, where: str) -> SensorResult:
    """What a custom sensor function returned, as a `SensorResult`; anything else is a UsageError."""
    if value is None or value is False:
        return SensorResult()
    if value is True:
        return SensorResult((RunRequest(),))
    if isinstance(value, SensorResult):
        return value
    if isinstance(value, RunRequest):
        return SensorResult((value,))
    if isinstance(value, list | tuple) and all(isinstance(v, RunRequest) for v in value):
        return SensorResult(tuple(value))
    raise UsageError(
        f"{where} returned {value!r}; return True (run once), a cairn.RunRequest, a list of them, "
        "a cairn.SensorResult(requests, cursor), or None"
    )


# -- freshness policies ----------------------------------------------------------------------------


def parse_duration(value: Any, where: str) -> float:
    """Seconds from ``"26h"``, ``"90m"``, ``"1d12h"``, ``"2w"``, a number of seconds or a `timedelta`."""
    seconds: float | None = None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds is None or seconds <= 0:
        raise DefinitionError(
            f"{where} must be a positive duration like '26h', '90m', '1d12h' or a number of seconds, got {value!r}"
        )
    return seconds


def freshness_options(asset_name: str, max_age: Any, on_stale: str) -> dict[str, Any]:
    """The ``max_age`` (in seconds) and ``on_stale`` options of `@asset`, checked."""
    if on_stale not in ON_STALE:
        raise DefinitionError(
            f"asset '{asset_name}': on_stale={on_stale!r} is not one of {', '.join(ON_STALE)}"
            f"{did_you_mean(str(on_stale), ON_STALE)}"
        )
    seconds = None if max_age is None else parse_duration(max_age, f"asset '{asset_name}': max_age=")
    return {"max_age": seconds, "on_stale": on_stale}


def format_duration(seconds: float) -> str:
    """``26h``, ``2d``, ``1h30m``, ``90s``: a duration as people write it (whole days only as days)."""
    out = []
    rest = round(seconds)
    units = (("d", 86400),) if rest % 86400 == 0 else ()
    for unit, size in (*units, ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out) or f"{seconds:.1f}s"


# -- project-level checks --------------------------------------------------------------------------


def check_automation(
    graph: Graph, schedules: Sequence[Schedule], sensors: Sequence[Sensor]
) -> tuple[tuple[Schedule, ...], tuple[Sensor, ...]]:
    """Check schedules and sensors against the graph; return the sensors with their default selections.

    Raises:
        DefinitionError: A duplicate name, a selection that names no asset, a partition for a selection
            without partitioned assets, a sensor watching something that does not exist.
    """
    from cairn.core.selection import select  # selection builds on the asset graph, which builds on asset.py

    seen: dict[str, str] = {}
    defined: list[Schedule | Sensor] = [*schedules, *sensors]
    for item in defined:
        kind = "schedule" if isinstance(item, Schedule) else "sensor"
        where = f"{kind} in {item.location or 'cairn.toml'}"
        if item.name in seen:
            raise DefinitionError(
                f"the name '{item.name}' is defined twice, as a {seen[item.name]} and as a {where}; schedules and "
                "sensors share one namespace: rename one of them"
            )
        seen[item.name] = where
    resolved: list[Sensor] = []
    for s in sensors:
        watched = s.on_source or s.on_asset
        if watched is not None:
            if watched not in graph.assets or (s.on_source and not graph.assets[watched].is_source):
                what = "source" if s.on_source else "asset"
                names = [n for n, a in graph.assets.items() if a.is_source or not s.on_source]
                raise DefinitionError(
                    f"sensor '{s.name}' watches {what} '{watched}', which is not defined.{did_you_mean(watched, names)}"
                )
            if not s.selection:
                s = replace(s, selection=_downstream_tokens(graph, watched, s))
        resolved.append(s)
    checked: list[Schedule | Sensor] = [*schedules, *resolved]
    for item in checked:
        kind = "schedule" if isinstance(item, Schedule) else "sensor"
        try:
            targets = select(graph, item.selection)
        except UsageError as exc:
            raise DefinitionError(f"{kind} '{item.name}': {exc}") from None
        if isinstance(item, Schedule) and item.partition is not None:
            _check_schedule_partition(graph, item, targets)
    return tuple(schedules), tuple(resolved)


def _downstream_tokens(graph: Graph, watched: str, s: Sensor) -> tuple[str, ...]:
    if s.on_source:
        return (f"{watched}+",)
    children = graph.downstream.get(watched, ())
    if not children:
        raise DefinitionError(
            f"sensor '{s.name}' watches '{watched}', which nothing reads: give it select= (what to run)"
        )
    return tuple(f"{child}+" for child in children)


def _check_schedule_partition(graph: Graph, item: Schedule, targets: set[str]) -> None:
    from cairn.core.partitions import time_of

    partitioned = [graph.assets[n] for n in graph.order if n in targets and graph.assets[n].partitions is not None]
    if not partitioned:
        raise DefinitionError(
            f"schedule '{item.name}' has partition={item.partition!r} but none of its assets is partitioned: "
            "drop partition= (or select partitioned assets)"
        )
    relative = relative_partition(item.partition or "")
    first = partitioned[0]
    time = time_of(first.partitions)
    if relative is not None and time is None and first.partitions is not None:
        raise DefinitionError(
            f"schedule '{item.name}': partition={item.partition!r} needs time partitions, but '{first.name}' has "
            f"{first.partitions.describe()}; give a fixed key"
        )
    if relative is not None and relative[0] == "today" and time is not None and time.unit == "hourly":
        raise DefinitionError(
            f"schedule '{item.name}': partition={item.partition!r} names a day, but '{partitioned[0].name}' is "
            "hourly: use partition='latest' (the newest complete hour) or 'latest-N'"
        )


# -- records ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TickRecord:
    """One tick: a schedule's due time, a sensor's request, or a freshness breach; claimed by one daemon.

    `due_at`, `claimed_at`, `started_at` and `finished_at` are epoch seconds on the daemon's clock (the clock
    it was given: the machine's, or ``cairn tick --now``); `latency_s` is schedule-to-start, `started_at -
    due_at`. `request` tells the requests of one sensor evaluation apart ("" for schedules and freshness).
    `partition` is the key the run materializes, ``first..last`` for a range, None for every partition.
    """

    kind: str
    name: str
    due_at: float
    request: str = ""
    status: str = CLAIMED
    owner: str = ""
    partition: str | None = None
    run_id: str | None = None
    reason: str = ""
    claimed_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    latency_s: float | None = None
    error: str | None = None

    @property
    def id(self) -> tuple[str, str, float, str]:
        return (self.kind, self.name, self.due_at, self.request)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def finished(self) -> bool:
        return self.status not in OPEN_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "due_at": iso(self.due_at),
            "request": self.request or None,
            "status": self.status,
            "owner": self.owner,
            "partition": self.partition,
            "run_id": self.run_id,
            "reason": self.reason,
            "claimed_at": iso(self.claimed_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "latency_s": None if self.latency_s is None else round(self.latency_s, 6),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class AutomationState:
    """What the daemons keep per schedule, sensor and freshness policy.

    `since`: when a daemon first saw it (or it was resumed); no tick before is due. `last_due`: the newest
    tick claimed. A sensor's `cursor` (what it has seen) is committed together with its requests, compared
    and bumped by `generation`, so that of two daemons evaluating from the same state only one acts.
    `error`: the last evaluation's error (a sensor function that raised), None when it went well.
    """

    kind: str
    name: str
    paused: bool = False
    since: float = 0.0
    last_due: float | None = None
    cursor: str | None = None
    generation: int = 0
    evaluated_at: float | None = None
    error: str | None = None
    changed_by: str = ""
    changed_at: float | None = None


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC time (``2026-03-29T01:00:00Z``), None for None."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, UTC).isoformat()
    return text.replace("+00:00", "Z")
