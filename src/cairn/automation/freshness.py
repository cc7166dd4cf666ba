"""Freshness policies: an asset with ``max_age`` whose newest materialization is older is due for a run.

The breach is due at ``created_at + max_age`` of the asset's newest materialization (of any partition), or,
for an asset never materialized, when a daemon first saw the policy. While the asset stays stale, the
policy is due again every ``max_age`` after that (a failed remedy is tried again, an alert repeated), and the
due time, being derived from the records, is the same for every daemon: the tick row is claimed once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from cairn.core.asset import AssetDef
from cairn.core.automation import AutomationState, format_duration
from cairn.core.graph import Graph


@dataclass(frozen=True, slots=True)
class Breach:
    """An asset past its max_age: when the breach is due, and why."""

    asset: AssetDef
    due_at: float
    reason: str


def policies(graph: Graph) -> list[AssetDef]:
    """The assets with a freshness policy, in graph order."""
    return [a for name in graph.order if (a := graph.assets[name]).max_age is not None and not a.is_source]


def breaches(
    assets: list[AssetDef],
    states: Mapping[tuple[str, str], AutomationState],
    newest: Mapping[str, tuple[int, float]],
    now: float,
    kind: str,
) -> list[Breach]:
    """The policies due at `now`; `newest` holds each asset's newest materialization (id, created_at)."""
    out = []
    for asset in assets:
        assert asset.max_age is not None
        state = states.get((kind, asset.name))
        if state is None or state.paused:
            continue
        found = newest.get(asset.name)
        first = found[1] + asset.max_age if found is not None else state.since
        if now < first:
            continue
        due = first + math.floor((now - first) / asset.max_age) * asset.max_age
        limit = format_duration(asset.max_age)
        if found is None:
            reason = f"never materialized (max_age {limit})"
        else:
            reason = f"last materialized {format_duration(now - found[1])} ago, over max_age {limit}"
        out.append(Breach(asset, due, reason))
    return out
