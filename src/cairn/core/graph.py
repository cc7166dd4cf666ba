"""The asset graph: validated once at load time (duplicates, unknown inputs, cycles), then immutable."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from cairn.core.asset import AssetDef, Input
from cairn.core.partitions import MultiPartitions, PartitionsDef, TimePartitions, nests, time_of
from cairn.errors import DefinitionError, did_you_mean

if TYPE_CHECKING:
    from cairn.core.contracts import Column


@dataclass(frozen=True, slots=True)
class Graph:
    """Assets by name, their edges both ways, and a topological order."""

    assets: Mapping[str, AssetDef]
    upstream: Mapping[str, tuple[str, ...]]
    downstream: Mapping[str, tuple[str, ...]]
    order: tuple[str, ...]

    def __contains__(self, name: object) -> bool:
        return name in self.assets

    def __getitem__(self, name: str) -> AssetDef:
        try:
            return self.assets[name]
        except KeyError:
            raise DefinitionError(f"asset '{name}' is not defined.{did_you_mean(name, self.assets)}") from None

    def ancestors(self, names: Iterable[str]) -> set[str]:
        """All assets upstream of `names` (not including them)."""
        return _walk(names, self.upstream)

    def descendants(self, names: Iterable[str]) -> set[str]:
        """All assets downstream of `names` (not including them)."""
        return _walk(names, self.downstream)


def build_graph(defs: Iterable[AssetDef]) -> Graph:
    """Validate definitions and return the graph; every mistake is a `DefinitionError` naming the fix."""
    assets: dict[str, AssetDef] = {}
    for d in defs:
        if d.name in assets and assets[d.name] is not d:
            raise DefinitionError(
                f"asset '{d.name}' is defined twice: at {assets[d.name].location} and at {d.location}; "
                "rename one of them (or pass name= to @asset)"
            )
        assets[d.name] = d
    for d in assets.values():
        for inp in d.inputs:
            if inp.asset not in assets:
                hint = did_you_mean(inp.asset, assets)
                raise DefinitionError(
                    f"asset '{d.name}' has input '{inp.param}' but no asset named '{inp.asset}' is defined."
                    f"{hint} Rename the parameter, map it with ins={{'{inp.param}': 'an_asset'}}, or define "
                    f"'{inp.asset}'."
                )
    for d in assets.values():
        for inp in d.inputs:
            _check_mapping(d, inp, assets[inp.asset])
        _check_requires(d, assets)
    upstream = {name: d.deps for name, d in assets.items()}
    downstream_lists: dict[str, list[str]] = {name: [] for name in assets}
    for name, ups in upstream.items():
        for up in ups:
            downstream_lists[up].append(name)
    downstream = {k: tuple(v) for k, v in downstream_lists.items()}
    return Graph(
        assets=MappingProxyType(assets),
        upstream=MappingProxyType(upstream),
        downstream=MappingProxyType(downstream),
        order=_topological_order(upstream, downstream),
    )


def _check_mapping(consumer: AssetDef, inp: Input, producer: AssetDef) -> None:
    """A partition mapping must fit the definitions on both sides of the edge."""
    up, down = producer.partitions, consumer.partitions
    if inp.mapping == "identity" and (up is None or up == down):
        return  # the common edge, checked for every input of every asset
    edge = f"asset '{consumer.name}' input '{inp.param}' (from '{producer.name}')"
    if up is None:  # an identity edge from an unpartitioned asset returned above
        raise DefinitionError(f"{edge}: {inp.mapping} mapping needs a partitioned input, '{producer.name}' is not")
    if inp.mapping == "identity":
        if down is None:
            raise DefinitionError(
                f"{edge}: '{producer.name}' is partitioned ({up.describe()}) but '{consumer.name}' is not; map it "
                f"with ins={{'{inp.param}': AllPartitions('{producer.name}')}} or Latest('{producer.name}')"
            )
        up_time, down_time = time_of(up), time_of(down)
        hint = (
            f"; to read the {up_time.unit} periods of each {down_time.unit} one, map it with "
            f"ins={{'{inp.param}': TimeWindow('{producer.name}')}}"
            if up_time and down_time and up_time.unit != down_time.unit
            else ""
        )
        raise DefinitionError(
            f"{edge}: partitions do not fit: '{producer.name}' is {up.describe()}, '{consumer.name}' is "
            f"{down.describe()}; give both the same partitions or map the input with Window, TimeWindow, "
            f"AllPartitions or Latest{hint}"
        )
    if inp.mapping == "window":
        _check_window(edge, consumer, producer, up, down)
    if inp.mapping == "timewindow":
        _check_time_window(edge, consumer, producer, up, down)


def _check_window(
    edge: str, consumer: AssetDef, producer: AssetDef, up: PartitionsDef, down: PartitionsDef | None
) -> None:
    """A window moves along the time dimension only: the consumer keeps its static key, if it has one."""
    fits = time_of(up) is not None and (
        up == down or (isinstance(up, TimePartitions) and isinstance(down, MultiPartitions) and down.time == up)
    )
    if fits:
        return
    have = down.describe() if down else "unpartitioned"
    fix = "give both assets the same time partitions"
    if isinstance(up, MultiPartitions) and isinstance(down, TimePartitions) and up.time == down:
        fix = (
            f"a window over '{producer.name}' would read every static key; partition '{consumer.name}' like "
            f"'{producer.name}' (product(...)), or window over an asset that combines the static keys per period"
        )
    elif time_of(up) and time_of(down) and time_of(up) != time_of(down):
        fix += f", or map it with TimeWindow('{producer.name}') to read periods of another unit"
    raise DefinitionError(
        f"{edge}: Window needs the time partitions of both assets to be the same; '{producer.name}' is "
        f"{up.describe()}, '{consumer.name}' is {have}; {fix}"
    )


def _check_time_window(
    edge: str, consumer: AssetDef, producer: AssetDef, up: PartitionsDef, down: PartitionsDef | None
) -> None:
    """TimeWindow maps between time partitions whose units nest, in one time zone, keeping static keys."""
    up_time, down_time = time_of(up), time_of(down)
    have = down.describe() if down else "unpartitioned"
    where = (
        f"{edge}: TimeWindow maps between time partitions; '{producer.name}' is {up.describe()}, "
        f"'{consumer.name}' is {have}"
    )
    if up_time is None or down_time is None:
        raise DefinitionError(f"{where}; give both assets time partitions (or a product with one), or use Latest")
    if isinstance(up, MultiPartitions) and not (isinstance(down, MultiPartitions) and down.static == up.static):
        raise DefinitionError(
            f"{where}; a product producer needs a consumer with the same static keys ({up.static.describe()})"
        )
    if up_time.unit == down_time.unit:
        raise DefinitionError(
            f"{where}; both are {up_time.unit}: read the same period with the default mapping, or the last n "
            f"with Window('{producer.name}', n)"
        )
    if not (nests(up_time.unit, down_time.unit) or nests(down_time.unit, up_time.unit)):
        raise DefinitionError(
            f"{where}; {up_time.unit} and {down_time.unit} periods do not nest (a week can span two months); "
            f"use daily partitions on one side"
        )
    if up_time.timezone != down_time.timezone:
        raise DefinitionError(
            f"{where}; the time zones differ ({up_time.timezone} and {down_time.timezone}), so periods do not "
            f"line up; give both the same timezone="
        )


def _check_requires(consumer: AssetDef, assets: Mapping[str, AssetDef]) -> None:
    """The columns a consumer requires from an input must be guaranteed by the producer's contract."""
    if not consumer.requires:
        return
    from cairn.core.contracts import Contract

    by_param = {i.param: i.asset for i in consumer.inputs}
    for param, columns in consumer.requires.items():
        if param not in by_param:
            raise DefinitionError(
                f"asset '{consumer.name}': requires= names '{param}', which is not one of its inputs "
                f"({', '.join(by_param) or 'none'}).{did_you_mean(param, by_param)}"
            )
        producer = assets[by_param[param]]
        contract = producer.contract
        if not isinstance(contract, Contract):
            raise DefinitionError(
                f"asset '{consumer.name}' requires columns {sorted(columns)} of '{producer.name}', which declares "
                f"no cairn.Contract to check them against; add contract=Contract(columns={{...}}) to "
                f"'{producer.name}'"
            )
        for name, need in columns.items():
            have = contract.columns.get(name)
            where = f"asset '{consumer.name}' requires {name}: {_describe(need)} from '{producer.name}'"
            if have is None:
                raise DefinitionError(
                    f"{where}, but the contract of '{producer.name}' has no column '{name}'"
                    f"{did_you_mean(name, contract.columns)} (it declares: {', '.join(contract.columns) or 'none'})"
                )
            if need.type is not None and have.type != need.type:
                raise DefinitionError(f"{where}, but '{producer.name}' declares {name}: {_describe(have)}")
            if not need.nullable and have.nullable:
                raise DefinitionError(
                    f"{where}, but '{producer.name}' declares {name}: {_describe(have)}, which may hold nulls; "
                    f"declare col(..., nullable=False) in '{producer.name}' or accept nulls in '{consumer.name}'"
                )


def _describe(column: Column) -> str:
    text = column.type or "any type"
    return text + ("" if column.nullable else " not null")


def _topological_order(
    upstream: Mapping[str, tuple[str, ...]], children: Mapping[str, tuple[str, ...]]
) -> tuple[str, ...]:
    """Kahn's algorithm taking the smallest ready name first, so the order is stable and reads naturally."""
    remaining = {name: len(ups) for name, ups in upstream.items()}
    ready = sorted(name for name, n in remaining.items() if n == 0)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for child in children[name]:
            remaining[child] -= 1
            if remaining[child] == 0:
                heapq.heappush(ready, child)
    if len(order) < len(upstream):
        cycle = _find_cycle({n: ups for n, ups in upstream.items() if remaining[n] > 0})
        raise DefinitionError(
            "the asset graph has a cycle: " + " -> ".join(cycle) + "; break it by removing one of these inputs"
        )
    return tuple(order)


def _find_cycle(upstream: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Follow inputs among the assets left over by the sort until a name repeats."""
    start = min(upstream)
    path = [start]
    seen = {start: 0}
    node = start
    while True:
        node = min(up for up in upstream[node] if up in upstream)
        if node in seen:
            cycle = [*path[seen[node] :], node]
            return list(reversed(cycle))
        seen[node] = len(path)
        path.append(node)


def _walk(names: Iterable[str], edges: Mapping[str, tuple[str, ...]]) -> set[str]:
    found: set[str] = set()
    stack = list(names)
    while stack:
        for nxt in edges.get(stack.pop(), ()):
            if nxt not in found:
                found.add(nxt)
                stack.append(nxt)
    return found
