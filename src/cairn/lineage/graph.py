"""Lineage and impact: walks over recorded materializations (upstream) and the asset graph (downstream).

Lineage reads records only, so it explains results of assets that the code no longer defines. Each
materialization names its inputs by ``(asset, partition, data version)``; the materialization behind an
input is the one of that asset partition with that data version, preferring (in this order) one committed
by the consumer's run, the newest committed before the consumer, and the newest::

    report ─ inputs ─▶ parity@"" b3:77… ─ inputs ─▶ numbers b3:12… ─ inputs ─▶ raw (source) b3:9a…
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cairn.core.graph import Graph
from cairn.core.keys import StepId, step_label
from cairn.core.records import InputRef, Materialization
from cairn.errors import UsageError, did_you_mean
from cairn.storage.metadata import MetadataStore

SOURCE_FORMAT = "source"


def is_source(mat: Materialization) -> bool:
    """Whether a materialization is an observed source (stored as read, computed from nothing)."""
    return mat.format == SOURCE_FORMAT and not mat.inputs


@dataclass(frozen=True, slots=True)
class LineageNode:
    """One materialization in an upstream tree, with the nodes of its inputs.

    ``mat`` is None when no materialization with the recorded data version is known any more (its rows
    were removed); ``repeated`` marks a node already shown elsewhere in the tree (its inputs are not
    repeated).
    """

    asset: str
    partition: str
    data_version: str
    mat: Materialization | None
    inputs: tuple[LineageNode, ...] = ()
    repeated: bool = False

    @property
    def label(self) -> str:
        return step_label(self.asset, self.partition)

    @property
    def source(self) -> bool:
        return self.mat is not None and is_source(self.mat)

    def walk(self) -> Iterator[LineageNode]:
        """This node and every node below it, depth first, each shown node once."""
        yield self
        for node in self.inputs:
            yield from node.walk()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "asset": self.asset,
            "partition": self.partition or None,
            "data_version": self.data_version,
        }
        mat = self.mat
        if mat is None:
            out["recorded"] = False
        else:
            out.update(mat.to_dict("code_version", "run_id", "created_at", "cache_key"), source=self.source)
        if self.repeated:
            out["repeated"] = True
        else:
            out["inputs"] = [node.to_dict() for node in self.inputs]
        return out


def find_materialization(meta: MetadataStore, step: StepId, run: str | None = None) -> Materialization:
    """The latest materialization of an asset partition, or the one a given run produced or reused.

    Args:
        meta: The metadata store.
        step: The asset partition.
        run: A run id, a unique prefix of one, or ``latest``; None for the latest materialization.

    Raises:
        UsageError: Nothing is recorded for that asset partition (in that run).
    """
    if run is None:
        mat = meta.latest_materialization(step.asset, step.partition)
        if mat is None:
            known = sorted({step_label(a, p) for a, p in meta.latest_materializations()})
            raise UsageError(
                f"'{step}' has no materialization yet.{did_you_mean(str(step), known)} Run "
                f"`cairn run {step.asset}` first, or check the name with `cairn status`."
            )
        return mat
    run_id = meta.resolve_run_id(run)
    produced = meta.run_materializations(run_id)
    mat = produced.get((step.asset, step.partition))
    if mat is None:
        known = sorted(step_label(a, p) for a, p in produced)
        raise UsageError(
            f"run {run_id} has no materialization of '{step}'.{did_you_mean(str(step), known)} It has: "
            f"{', '.join(known) or 'none'}; `cairn show {run_id}` lists its steps."
        )
    return mat


def input_materialization(meta: MetadataStore, ref: InputRef, consumer: Materialization) -> Materialization | None:
    """The materialization behind one recorded input of `consumer`, or None when none is recorded."""
    found = meta.materializations_with_version(ref.asset, ref.partition, ref.data_version)
    for mat in found:
        if mat.run_id == consumer.run_id:
            return mat
    for mat in found:
        if mat.id < consumer.id:
            return mat
    return found[0] if found else None


def lineage(meta: MetadataStore, mat: Materialization) -> LineageNode:
    """The upstream tree of a materialization, down to the sources (materializations without inputs)."""
    shown: set[int] = set()

    def node(current: Materialization) -> LineageNode:
        if current.id in shown:
            return LineageNode(current.asset, current.partition, current.data_version, current, repeated=True)
        shown.add(current.id)
        children = []
        for ref in current.inputs:
            upstream = input_materialization(meta, ref, current)
            if upstream is None:
                children.append(LineageNode(ref.asset, ref.partition, ref.data_version, None))
            else:
                children.append(node(upstream))
        return LineageNode(current.asset, current.partition, current.data_version, current, tuple(children))

    return node(mat)


@dataclass(frozen=True, slots=True)
class Impacted:
    """One asset downstream of another: how far, through which of its inputs, and what is stored now."""

    asset: str
    depth: int
    via: tuple[str, ...]
    current: tuple[Materialization, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "depth": self.depth,
            "via": list(self.via),
            "materializations": [
                mat.to_dict("partition", "data_version", "code_version", "run_id", "created_at") for mat in self.current
            ],
        }


def impact(graph: Graph, meta: MetadataStore, asset: str) -> list[Impacted]:
    """Every asset downstream of `asset` in the project graph, in topological order, with its current
    materializations (the latest of each partition).

    Raises:
        UsageError: `asset` is not defined (the message suggests the closest name).
    """
    if asset not in graph:
        raise UsageError(
            f"asset '{asset}' is not defined.{did_you_mean(asset, graph.assets)} `cairn list` shows the assets."
        )
    depth = {asset: 0}
    queue = deque([asset])
    while queue:
        name = queue.popleft()
        for child in graph.downstream[name]:
            if child not in depth:
                depth[child] = depth[name] + 1
                queue.append(child)
    affected = set(depth) - {asset}
    current: dict[str, list[Materialization]] = {}
    for (name, _partition), mat in sorted(meta.latest_materializations().items()):
        if name in affected:
            current.setdefault(name, []).append(mat)
    return [
        Impacted(
            name,
            depth[name],
            tuple(up for up in graph.upstream[name] if up in depth),
            tuple(current.get(name, ())),
        )
        for name in graph.order
        if name in affected
    ]
