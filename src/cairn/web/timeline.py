"""A run's steps and attempts as a Gantt chart in SVG: one row per step, one bar per attempt from its start to its
end (to now while it runs), coloured by the attempt's status, so that retries show as several bars on a row.

It draws the JSON of `cairn.web.runs.timeline` (the API's ``/runs/{id}/timeline``): at most that view's row cap,
a row ``ROW`` pixels high, so a run of a thousand steps is a tall chart the page scrolls, never a blur.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from cairn.web.plots import colour, seconds

ROW, BAR, LABEL_W, CHART_W, AXIS_H = 14, 10, 210, 640, 20
TICKS = 5


def timeline_svg(view: Mapping[str, Any]) -> str:
    """The chart of a timeline view: ``{"span_s", "rows": [{"step", "status", "bars": [...]}]}``."""
    rows = view["rows"]
    span = max(float(view["span_s"]), 1e-3)
    width, height = LABEL_W + CHART_W + 10, AXIS_H + len(rows) * ROW + 4
    attempts = sum(len(r["bars"]) for r in rows)
    label = f"timeline of run {view['run_id']}: {len(rows)} steps, {attempts} attempts over {seconds(span)}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot timeline" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" '
        f'data-run="{escape(str(view["run_id"]))}"><title>{escape(label)}</title>'
    ]
    for i in range(TICKS + 1):
        x = LABEL_W + CHART_W * i / TICKS
        anchor = "start" if i == 0 else "end" if i == TICKS else "middle"
        parts.append(
            f'<line x1="{x:.1f}" y1="{AXIS_H - 4}" x2="{x:.1f}" y2="{height}" stroke="#eceff1" class="grid"/>'
            f'<text x="{x:.1f}" y="{AXIS_H - 7}" text-anchor="{anchor}" class="tick">'
            f"{escape(seconds(span * i / TICKS))}</text>"
        )
    for r, row in enumerate(rows):
        y = AXIS_H + r * ROW
        step = str(row["step"])
        text = step if len(step) <= 30 else step[:29] + "…"
        parts.append(
            f'<g class="row" data-step="{escape(step)}" data-status="{escape(str(row["status"]))}">'
            f'<text x="{LABEL_W - 6}" y="{y + BAR}" text-anchor="end" class="tick">{escape(text)}'
            f"<title>{escape(step)}: {escape(str(row['status']))}</title></text>"
        )
        for bar in row["bars"]:
            start, end = float(bar["start_s"]), float(bar["end_s"])
            x = LABEL_W + start / span * CHART_W
            w = max((end - start) / span * CHART_W, 1.5)
            status = str(bar["status"])
            note = f"{step} attempt {bar['attempt']}: {status}, {seconds(end - start)}"
            if bar.get("error"):
                note += f" ({str(bar['error']).splitlines()[0][:200]})"
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{BAR}" rx="2" fill="{colour(status)}" '
                f'class="bar" data-attempt="{int(bar["attempt"])}" data-status="{escape(status)}">'
                f"<title>{escape(note)}</title></rect>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)
