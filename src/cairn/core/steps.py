"""Expands a selection of assets into steps (asset x partition) and the steps each one reads.

How a consumer partition maps to producer partitions, per input mapping:

    identity     the same key
    window       the last n periods of the time dimension, same static key (``d-1|eu``, ``d|eu``)
    timewindow   the producer periods inside the consumer's period (coarser consumer), or the one that
                 contains it (finer consumer); only periods the producer has (complete ones) count
    all          every producer key
    latest       the newest producer key that is available (see `Expansion.available`)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from cairn.core.asset import AssetDef, Input
from cairn.core.graph import Graph
from cairn.core.keys import StepId
from cairn.core.partitions import MultiPartitions, nests, period_keys, split_key, time_keys, time_of

KeysOf = Callable[[AssetDef], list[str]]
Ready = Callable[[AssetDef, str], bool]
"""Whether a source partition's data is present now (the engine observes the file)."""


class StepInput(NamedTuple):
    """One parameter of a step: the upstream steps that fill it, as one value or as a dict by partition."""

    param: str
    steps: tuple[StepId, ...]
    as_dict: bool
    annotation: str = ""


def reads_dict(inp: Input, producer: AssetDef, consumer: AssetDef) -> bool:
    """Whether the parameter receives a dict by partition key (it may read several producer partitions)."""
    if inp.mapping in ("window", "all"):
        return True
    if inp.mapping == "timewindow":
        up, down = time_of(producer.partitions), time_of(consumer.partitions)
        return up is not None and down is not None and nests(up.unit, down.unit)
    return False


class Expansion:
    """Maps consumer partitions to producer partitions for one graph, memoizing what it derives.

    Args:
        graph: the validated asset graph.
        keys_of: every partition key of an asset that exists now, in order.
        ready: whether a source partition's data is present; only `Latest` asks. Default: all are.
    """

    def __init__(self, graph: Graph, keys_of: KeysOf, ready: Ready | None = None) -> None:
        self.graph = graph
        self.keys_of = keys_of
        self.ready = ready
        self._positions: dict[str, dict[str, int]] = {}
        self._times: dict[str, tuple[list[str], dict[str, int]]] = {}
        self._latest: dict[str, list[str]] = {}
        self._available: dict[StepId, bool] = {}

    def upstream_keys(self, inp: Input, key: str, consumer: AssetDef) -> list[str]:
        """The producer partitions that the consumer partition `key` reads through `inp`'s mapping."""
        producer = self.graph.assets[inp.asset]
        if producer.partitions is None:
            return [""]
        if inp.mapping == "identity":
            return [key]
        if inp.mapping == "window":
            return self._window(producer, key, inp.n)
        if inp.mapping == "timewindow":
            return self._periods(producer, consumer, key)
        if inp.mapping == "all":
            return self.keys_of(producer)
        return self.latest(producer)

    def latest(self, producer: AssetDef) -> list[str]:
        """The newest available partition of `producer` (``[]`` when none is)."""
        found = self._latest.get(producer.name)
        if found is None:
            found = next(([k] for k in reversed(self.keys_of(producer)) if self.available(producer, k)), [])
            self._latest[producer.name] = found
        return found

    def available(self, asset: AssetDef, key: str) -> bool:
        """Whether a run can have this partition: a source's data is present, or every input it reads is.

        A computed partition whose inputs are available is either cached or produced by the run.
        """
        step = StepId(asset.name, key)
        known = self._available.get(step)
        if known is not None:
            return known
        if asset.is_source:
            result = self.ready is None or self.ready(asset, key)
        else:
            result = all(self._input_available(inp, key, asset) for inp in asset.inputs)
        self._available[step] = result
        return result

    def _input_available(self, inp: Input, key: str, consumer: AssetDef) -> bool:
        producer = self.graph.assets[inp.asset]
        keys = self.upstream_keys(inp, key, consumer)
        if not keys and not reads_dict(inp, producer, consumer):
            return False  # a single-value input with no partition to read yet
        return all(self.available(producer, k) for k in keys)

    def position(self, asset: AssetDef) -> dict[str, int]:
        """Each key's index in the asset's key order."""
        found = self._positions.get(asset.name)
        if found is None:
            found = self._positions[asset.name] = {k: i for i, k in enumerate(self.keys_of(asset))}
        return found

    def _window(self, producer: AssetDef, key: str, n: int) -> list[str]:
        """The last `n` periods of the time dimension up to the consumer's, with the consumer's static key."""
        assert producer.partitions is not None
        time_key, suffix = split_key(key)
        times, where = self._time_keys(producer)
        i = where.get(time_key)
        if i is None:
            return []
        if not isinstance(producer.partitions, MultiPartitions):
            suffix = ""  # a product consumer over a time-only producer reads the producer's plain keys
        return [t + suffix for t in times[max(0, i - n + 1) : i + 1]]

    def _periods(self, producer: AssetDef, consumer: AssetDef, key: str) -> list[str]:
        up, down = time_of(producer.partitions), time_of(consumer.partitions)
        assert up is not None and down is not None  # the graph validated the edge
        time_key, suffix = split_key(key)
        if not isinstance(producer.partitions, MultiPartitions):
            suffix = ""
        have = self.position(producer)
        return [k for t in period_keys(up, down, time_key) if (k := t + suffix) in have]

    def _time_keys(self, asset: AssetDef) -> tuple[list[str], dict[str, int]]:
        found = self._times.get(asset.name)
        if found is None:
            assert asset.partitions is not None
            times = time_keys(asset.partitions, self.keys_of(asset))
            found = self._times[asset.name] = (times, {t: i for i, t in enumerate(times)})
        return found


def expand(
    graph: Graph,
    targets: Iterable[tuple[str, Iterable[str]]],
    keys_of: KeysOf,
    ready: Ready | None = None,
) -> tuple[list[StepId], dict[StepId, list[StepInput]]]:
    """Every step needed to materialize the target partitions, in topological order, with its inputs.

    Args:
        graph: the validated asset graph.
        targets: ``(asset, partition keys)`` to materialize (``[""]`` for an unpartitioned asset).
        keys_of: every partition key of an asset that exists now, in order.
        ready: whether a source partition's data is present (decides what `Latest` resolves to).
    """
    mapper = Expansion(graph, keys_of, ready)
    needed: dict[str, set[str]] = {}
    for name, keys in targets:
        needed.setdefault(name, set()).update(keys)
    for name in reversed(graph.order):
        consumer_keys = needed.get(name)
        if consumer_keys is None:
            continue
        asset = graph.assets[name]
        for inp in asset.inputs:
            wanted = needed.setdefault(inp.asset, set())
            if graph.assets[inp.asset].partitions is None:
                wanted.add("")  # what `upstream_keys` returns for it, whatever the mapping and key
                continue
            for key in consumer_keys:
                wanted.update(mapper.upstream_keys(inp, key, asset))
    order: list[StepId] = []
    inputs: dict[StepId, list[StepInput]] = {}
    whole: dict[str, tuple[StepId]] = {}  # the one step of each unpartitioned asset, built once
    for name in graph.order:
        found = needed.get(name)
        if found is None:
            continue
        asset = graph.assets[name]
        step_keys: Iterable[str] = found
        if asset.partitions is not None:
            position = mapper.position(asset)
            step_keys = sorted(found, key=lambda k: (position.get(k, -1), k))
        for key in step_keys:
            step = (whole.get(name) or whole.setdefault(name, (StepId(name, ""),)))[0] if not key else StepId(name, key)
            order.append(step)
            row = []
            for inp in asset.inputs:
                producer = graph.assets[inp.asset]
                ups: tuple[StepId, ...]
                if producer.partitions is None:  # read through an identity edge (the graph allows no other)
                    ups = whole.get(inp.asset) or whole.setdefault(inp.asset, (StepId(inp.asset, ""),))
                    row.append(StepInput(inp.param, ups, False, inp.annotation))
                else:
                    keys = mapper.upstream_keys(inp, key, asset)
                    ups = tuple([StepId(inp.asset, k) for k in keys])
                    row.append(StepInput(inp.param, ups, reads_dict(inp, producer, asset), inp.annotation))
            inputs[step] = row
    return order, inputs
