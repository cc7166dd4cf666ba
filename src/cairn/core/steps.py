"""Expands a selection of assets into steps (asset x partition) and the steps each one reads."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cairn.core.asset import AssetDef, Input
from cairn.core.graph import Graph
from cairn.core.keys import StepId
from cairn.core.partitions import previous_keys

KeysOf = Callable[[AssetDef], list[str]]


@dataclass(frozen=True, slots=True)
class StepInput:
    """One parameter of a step: the upstream steps that fill it, as one value or as a dict by partition."""

    param: str
    steps: tuple[StepId, ...]
    as_dict: bool
    annotation: str = ""


def upstream_keys(inp: Input, key: str, producer: AssetDef, keys_of: KeysOf) -> list[str]:
    """The producer partitions that the consumer partition `key` reads through `inp`'s mapping."""
    if producer.partitions is None:
        return [""]
    if inp.mapping == "identity":
        return [key]
    if inp.mapping == "window":
        return previous_keys(keys_of(producer), key, inp.n)
    if inp.mapping == "all":
        return keys_of(producer)
    return keys_of(producer)[-1:]


def expand(
    graph: Graph, targets: Iterable[tuple[str, Iterable[str]]], keys_of: KeysOf
) -> tuple[list[StepId], dict[StepId, list[StepInput]]]:
    """Every step needed to materialize the target partitions, in topological order, with its inputs.

    Args:
        graph: the validated asset graph.
        targets: ``(asset, partition keys)`` to materialize (``[""]`` for an unpartitioned asset).
        keys_of: every partition key of an asset that exists now, in order.
    """
    needed: dict[str, set[str]] = {}
    for name, keys in targets:
        needed.setdefault(name, set()).update(keys)
    for name in reversed(graph.order):
        if name not in needed:
            continue
        asset = graph.assets[name]
        for inp in asset.inputs:
            producer = graph.assets[inp.asset]
            wanted = needed.setdefault(inp.asset, set())
            for key in needed[name]:
                wanted.update(upstream_keys(inp, key, producer, keys_of))
    order: list[StepId] = []
    inputs: dict[StepId, list[StepInput]] = {}
    for name in graph.order:
        if name not in needed:
            continue
        asset = graph.assets[name]
        position = {k: i for i, k in enumerate(keys_of(asset))} if asset.partitions is not None else {}
        for key in sorted(needed[name], key=lambda k: (position.get(k, -1), k)):
            step = StepId(name, key)
            order.append(step)
            inputs[step] = [
                StepInput(
                    inp.param,
                    tuple(StepId(inp.asset, k) for k in upstream_keys(inp, key, graph.assets[inp.asset], keys_of)),
                    inp.mapping in ("window", "all"),
                    inp.annotation,
                )
                for inp in asset.inputs
            ]
    return order, inputs
