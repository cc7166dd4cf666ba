"""Which partition a tick's run materializes: a schedule's ``partition=`` resolved at the tick's time.

    "yesterday", "today", "today-N"   a day in the schedule's time zone -> the key of the period holding it
                                      (daily: the day; weekly: its Monday; monthly: its month)
    "latest", "latest-N"              the newest complete period at the tick's time (N periods before it),
                                      within the definition's end
    anything else                     a fixed key

Over a product (``2026-06-01|us``) a time key becomes the range of its static keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cairn.core.automation import relative_partition
from cairn.core.graph import Graph
from cairn.core.partitions import SEPARATOR, MultiPartitions, PartitionsDef, TimePartitions, time_of
from cairn.core.selection import select
from cairn.errors import UsageError


@dataclass(frozen=True, slots=True)
class PartitionChoice:
    """A run's partitions: one key, a range of keys (both included), or every partition (neither)."""

    partition: str | None = None
    partition_range: tuple[str, str] | None = None

    @property
    def label(self) -> str | None:
        """How a tick records it: the key, ``first..last``, or None."""
        if self.partition_range is not None:
            return f"{self.partition_range[0]}..{self.partition_range[1]}"
        return self.partition

    @classmethod
    def from_label(cls, label: str | None) -> PartitionChoice:
        if label is None:
            return cls()
        first, dots, last = label.partition("..")  # a key never holds '..'
        return cls(partition_range=(first, last)) if dots else cls(partition=label)


def resolve(graph: Graph, selection: tuple[str, ...], spec: str | None, now: datetime, tz: str) -> PartitionChoice:
    """The partitions that `spec` names at `now` for the selection's partitioned assets.

    Raises:
        UsageError: No complete period exists yet (``latest``), or the spec needs time partitions.
    """
    if spec is None:
        return PartitionChoice()
    partitions = _partitions_of(graph, selection)
    relative = relative_partition(spec)
    if relative is None:
        return PartitionChoice(partition=spec)
    time = time_of(partitions)
    if time is None:
        raise UsageError(f"partition {spec!r} needs time partitions; the selection has {_describe(partitions)}")
    base, back = relative
    if base == "latest":
        keys = complete_keys(time, now)
        if len(keys) <= back:
            raise UsageError(
                f"partition {spec!r}: {time.describe()} has {len(keys)} complete partition(s) at {now.isoformat()}"
            )
        key = keys[-1 - back]
    else:
        day = now.astimezone(ZoneInfo(tz)).date() - timedelta(days=back)
        if time.unit == "weekly":
            day -= timedelta(days=day.weekday())
        key = day.strftime("%Y-%m") if time.unit == "monthly" else day.isoformat()
    if isinstance(partitions, MultiPartitions):
        values = partitions.static.values
        return PartitionChoice(partition_range=(f"{key}{SEPARATOR}{values[0]}", f"{key}{SEPARATOR}{values[-1]}"))
    return PartitionChoice(partition=key)


def latest_partition(partitions: PartitionsDef | None, now: datetime) -> PartitionChoice:
    """The newest complete partition of one definition (a product: its newest time key's range)."""
    if partitions is None:
        return PartitionChoice()
    time = time_of(partitions)
    keys = complete_keys(time, now) if time is not None else partitions.keys(now)
    if not keys:
        raise UsageError(f"{partitions.describe()} has no complete partition at {now.isoformat()}")
    if isinstance(partitions, MultiPartitions):
        values = partitions.static.values
        return PartitionChoice(
            partition_range=(f"{keys[-1]}{SEPARATOR}{values[0]}", f"{keys[-1]}{SEPARATOR}{values[-1]}")
        )
    return PartitionChoice(partition=keys[-1])


def complete_keys(time: TimePartitions, now: datetime) -> list[str]:
    """The keys of the periods that are over at `now` (a definition with an ``end`` also lists later ones)."""
    keys = time.keys(now)
    while keys and time.window(keys[-1])[1] > now:
        keys.pop()
    return keys


def _partitions_of(graph: Graph, selection: tuple[str, ...]) -> PartitionsDef | None:
    """The partitions of the first partitioned target (in graph order): a run's --partition applies to all."""
    targets = select(graph, selection)
    for name in graph.order:
        asset = graph.assets[name]
        if name in targets and asset.partitions is not None:
            return asset.partitions
    return None


def _describe(partitions: PartitionsDef | None) -> str:
    return partitions.describe() if partitions is not None else "no partitioned asset"
