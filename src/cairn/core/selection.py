"""Selection syntax as dbt and Dagster users know it: name, +name, name+, tag:key=value, *."""

from __future__ import annotations

from collections.abc import Iterable

from cairn.core.graph import Graph
from cairn.errors import UsageError, did_you_mean


def select(graph: Graph, tokens: Iterable[str]) -> set[str]:
    """Resolve selection tokens to asset names; several tokens are a union; no tokens means all."""
    chosen: set[str] = set()
    items = [t for token in tokens for t in token.replace(",", " ").split()]
    if not items:
        return set(graph.assets)
    for token in items:
        chosen |= _one(graph, token)
    return chosen


def _one(graph: Graph, token: str) -> set[str]:
    if token == "*":
        return set(graph.assets)
    if token.startswith("tag:"):
        key, _, value = token[4:].partition("=")
        matched = {name for name, d in graph.assets.items() if key in d.tags and (not value or d.tags[key] == value)}
        if not matched:
            tags = sorted({f"{k}={v}" for d in graph.assets.values() for k, v in d.tags.items()})
            raise UsageError(f"no asset has tag '{token[4:]}'. Known tags: {', '.join(tags) or 'none'}")
        return matched
    with_up = token.startswith("+")
    with_down = token.endswith("+")
    name = token.strip("+")
    if name not in graph.assets:
        raise UsageError(
            f"selection '{token}': asset '{name}' is not defined.{did_you_mean(name, graph.assets)} "
            "Run `cairn list` to see the assets."
        )
    result = {name}
    if with_up:
        result |= graph.ancestors([name])
    if with_down:
        result |= graph.descendants([name])
    return result
