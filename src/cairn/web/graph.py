"""The asset graph as SVG, laid out server-side in layers: an asset's layer is one more than its deepest input's,
and within a layer assets keep the project's topological order. No library: boxes and lines, each asset a
``<g data-asset="NAME">``; the page's script zooms and pans it by changing the ``viewBox``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 170, 34, 60, 18, 10
COLOURS = {"fresh": "#2e7d32", "stale": "#f9a825", "missing": "#9e9e9e"}


def layers(upstream: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each asset's layer (0 for those without inputs); `upstream` lists every asset in topological order."""
    depth: dict[str, int] = {}
    for name, inputs in upstream.items():
        depth[name] = 1 + max((depth[i] for i in inputs if i in depth), default=-1)
    return depth


def layered_svg(upstream: Mapping[str, Sequence[str]], states: Mapping[str, str]) -> str:
    """An SVG of the graph with each box coloured by its asset's state; every name is escaped."""
    depth = layers(upstream)
    columns: dict[int, list[str]] = {}
    for name in upstream:
        columns.setdefault(depth[name], []).append(name)
    where: dict[str, tuple[int, int]] = {}
    for col, names in columns.items():
        for row, name in enumerate(names):
            where[name] = (PAD + col * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y))
    width = PAD * 2 + max(columns, default=0) * (BOX_W + GAP_X) + BOX_W
    height = PAD * 2 + max((len(n) for n in columns.values()), default=1) * (BOX_H + GAP_Y)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="asset-graph" class="graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="asset graph of {len(upstream)} assets">'
        f'<title>asset graph: {len(upstream)} assets</title><g class="viewport">'
    ]
    for name, inputs in upstream.items():
        x2, y2 = where[name]
        for i in inputs:
            if i in where:
                x1, y1 = where[i]
                parts.append(
                    f'<line x1="{x1 + BOX_W}" y1="{y1 + BOX_H // 2}" x2="{x2}" y2="{y2 + BOX_H // 2}" class="edge"/>'
                )
    for name, (x, y) in where.items():
        state = states.get(name, "missing")
        colour = COLOURS.get(state, COLOURS["missing"])
        label = escape(name if len(name) <= 22 else name[:21] + "…")
        parts.append(
            f'<g class="node" data-asset="{escape(name)}" data-state="{escape(state)}">'
            f'<a href="/assets/{escape(name)}"><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="5" '
            f'fill="{colour}" class="box"><title>{escape(name)}: {escape(state)}</title></rect>'
            f'<text x="{x + 8}" y="{y + 22}" class="label">{label}</text></a></g>'
        )
    parts.append("</g></svg>")
    return "".join(parts)
