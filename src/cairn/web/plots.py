"""Plots drawn server-side as SVG, from the JSON the API returns: metric trends, a duration histogram and a
partition heat map. No script and no library: lines, circles and rectangles, each with a ``<title>`` that says
what it shows (screen readers and tooltips read it), every text escaped.

Sizes are bounded whatever the data: a trend keeps its last `MAX_POINTS` points, a heat map its newest
`MAX_CELLS` partitions (the page scrolls it sideways), a histogram at most `MAX_BINS` bars.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

MAX_POINTS = 200
MAX_BINS = 20
MAX_CELLS = 2000
CELL, CELL_GAP, WRAP = 14, 2, 31
PLOT_W, PLOT_H, MARGIN_L, MARGIN_B, MARGIN_T = 420, 150, 56, 28, 22
COLOURS = {
    "fresh": "#2e7d32",
    "executed": "#2e7d32",
    "succeeded": "#2e7d32",
    "cached": "#66bb6a",
    "reused": "#66bb6a",
    "stale": "#f9a825",
    "running": "#f9a825",
    "retrying": "#f9a825",
    "failed": "#c62828",
    "lost": "#c62828",
    "missing": "#bdbdbd",
}
OTHER = "#9e9e9e"


def colour(status: str) -> str:
    """The fill of a state or status (fresh and succeeded green, stale and running amber, failed red)."""
    return COLOURS.get(status, OTHER)


def number(value: float) -> str:
    """A value as an axis or a tooltip shows it: at most four significant digits, no exponent for usual sizes."""
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return f"{value:.2e}"


def seconds(value: float) -> str:
    """A duration as an axis shows it: ``0 s``, ``4.2 ms``, ``1.5 s``, ``3.2 min``."""
    if value == 0:
        return "0 s"
    if value < 1:
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} s" if value < 120 else f"{value / 60:.3g} min"


def _open(kind: str, width: float, height: float, label: str, **data: str) -> str:
    attrs = "".join(f' data-{k}="{escape(v)}"' for k, v in data.items())
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot {kind}" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(label)}"{attrs}>'
        f"<title>{escape(label)}</title>"
    )


def metric_plot(name: str, points: Sequence[Mapping[str, Any]]) -> str:
    """One metric over the materializations that recorded it, oldest left: a line and one circle per point.

    Each point is ``{"value", "run_id", "partition", "created_at"}``; only the last `MAX_POINTS` are drawn.
    """
    shown = list(points)[-MAX_POINTS:]
    width, height = MARGIN_L + PLOT_W + 10, MARGIN_T + PLOT_H + MARGIN_B
    label = f"metric {name} over {len(shown)} materializations"
    parts = [_open("metric-plot", width, height, label, metric=name)]
    parts.append(f'<text x="{MARGIN_L}" y="14" class="plot-title">{escape(name)}</text>')
    values = [float(p["value"]) for p in shown]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high == low:
        low, high = low - (abs(low) * 0.1 or 1.0), high + (abs(high) * 0.1 or 1.0)
    step = PLOT_W / max(len(shown) - 1, 1)

    def x(i: int) -> float:
        return MARGIN_L + (i * step if len(shown) > 1 else PLOT_W / 2)

    def y(v: float) -> float:
        return MARGIN_T + PLOT_H - (v - low) / (high - low) * PLOT_H

    parts.append(_axes(width, height, number(low), number(high), "oldest", "newest"))
    if len(shown) > 1:
        line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline points="{line}" fill="none" stroke="#1565c0" stroke-width="1.5" class="line"/>')
    for i, (p, v) in enumerate(zip(shown, values, strict=True)):
        where = f"run {p.get('run_id', '')}" + (f" @{p['partition']}" if p.get("partition") else "")
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="#1565c0" class="point" '
            f'data-run="{escape(str(p.get("run_id", "")))}" data-value="{v!r}">'
            f"<title>{escape(where)}: {escape(name)} = {escape(number(v))}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _axes(width: float, height: float, low: str, high: str, left: str, right: str) -> str:
    bottom = MARGIN_T + PLOT_H
    return (
        f'<line x1="{MARGIN_L}" y1="{MARGIN_T}" x2="{MARGIN_L}" y2="{bottom}" class="axis" stroke="#90a4ae"/>'
        f'<line x1="{MARGIN_L}" y1="{bottom}" x2="{MARGIN_L + PLOT_W}" y2="{bottom}" class="axis" stroke="#90a4ae"/>'
        f'<text x="{MARGIN_L - 4}" y="{MARGIN_T + 4}" text-anchor="end" class="tick">{escape(high)}</text>'
        f'<text x="{MARGIN_L - 4}" y="{bottom}" text-anchor="end" class="tick">{escape(low)}</text>'
        f'<text x="{MARGIN_L}" y="{height - 8}" class="tick">{escape(left)}</text>'
        f'<text x="{MARGIN_L + PLOT_W}" y="{height - 8}" text-anchor="end" class="tick">{escape(right)}</text>'
    )


def bins(values: Sequence[float], most: int = MAX_BINS) -> list[tuple[float, float, int]]:
    """Equal-width bins ``(low, high, count)`` over `values`: about the square root of their number, at most
    `most`; the last bin includes its upper edge, so every value is counted once."""
    if not values:
        return []
    low, high = min(values), max(values)
    count = max(1, min(most, math.ceil(math.sqrt(len(values)))))
    if high == low:
        return [(low, high, len(values))]
    width = (high - low) / count
    counts = [0] * count
    for v in values:
        counts[min(int((v - low) / width), count - 1)] += 1
    return [(low + i * width, low + (i + 1) * width, n) for i, n in enumerate(counts)]


def duration_histogram(durations: Sequence[float], title: str = "durations") -> str:
    """How long the executions took: one bar per bin of seconds, its height the number of executions."""
    found = bins(durations)
    width, height = MARGIN_L + PLOT_W + 10, MARGIN_T + PLOT_H + MARGIN_B
    label = f"{title}: {len(durations)} executions in {len(found)} bins"
    parts = [_open("duration-histogram", width, height, label)]
    parts.append(f'<text x="{MARGIN_L}" y="14" class="plot-title">{escape(title)}</text>')
    most = max((n for _, _, n in found), default=1)
    left = seconds(found[0][0]) if found else "0 s"
    right = seconds(found[-1][1]) if found else "0 s"
    parts.append(_axes(width, height, "0", str(most), left, right))
    bar_w = PLOT_W / max(len(found), 1)
    for i, (lo, hi, n) in enumerate(found):
        h = n / most * PLOT_H
        x = MARGIN_L + i * bar_w
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{MARGIN_T + PLOT_H - h:.1f}" width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" '
            f'fill="#5c6bc0" class="bar" data-count="{n}"><title>{n} executions took {escape(seconds(lo))} to '
            f"{escape(seconds(hi))}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def partition_heatmap(cells: Sequence[Mapping[str, Any]]) -> str:
    """A square per partition, coloured by its state, in key order.

    Each cell is ``{"partition", "state"}``, with ``"row"`` when the caller groups them (a backfill: one row
    per asset). Otherwise keys ``time|segment`` (a product of partitions) put each segment on its own row and
    time along it, and other keys wrap every `WRAP` squares, each row labelled with its first key. Only the
    newest `MAX_CELLS` cells are drawn.
    """
    shown = list(cells)[-MAX_CELLS:]
    grid: dict[str, list[Mapping[str, Any]]] = {}
    if shown and all("row" in c for c in shown):
        for c in shown:
            grid.setdefault(str(c["row"]), []).append(c)
    elif shown and all("|" in str(c["partition"]) for c in shown):
        for c in shown:
            grid.setdefault(str(c["partition"]).split("|", 1)[1], []).append(c)
    else:
        for start in range(0, len(shown), WRAP):
            row = shown[start : start + WRAP]
            grid[str(row[0]["partition"])] = row
    label_w = 8 + 7 * min(max((len(k) for k in grid), default=4), 24)
    columns = max((len(r) for r in grid.values()), default=1)
    pitch = CELL + CELL_GAP
    width, height = label_w + columns * pitch + 4, len(grid) * pitch + 6
    states: dict[str, int] = {}
    for c in shown:
        states[str(c["state"])] = states.get(str(c["state"]), 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    parts = [_open("partition-heatmap", width, height, f"{len(shown)} partitions: {summary or 'none'}")]
    for r, (name, row) in enumerate(grid.items()):
        y = 3 + r * pitch
        text = name if len(name) <= 24 else name[:23] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + CELL - 2}" text-anchor="end" class="tick">{escape(text)}</text>')
        for col, c in enumerate(row):
            key, state = str(c["partition"]), str(c["state"])
            where = f"{c['row']}@{key}" if "row" in c else key
            parts.append(
                f'<rect x="{label_w + col * pitch}" y="{y}" width="{CELL}" height="{CELL}" rx="2" '
                f'fill="{colour(state)}" class="cell state-{escape(state)}" data-partition="{escape(key)}" '
                f'data-state="{escape(state)}"><title>{escape(where)}: {escape(state)}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)
