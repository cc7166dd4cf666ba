"""`cairn show RUN --timeline`: a run's attempts as a terminal Gantt chart, one line per step that made one.

    step            status    tries         0 to 12.40 s
    report          executed  2 (1 failed)  ▒▒▒ ████              attempt 1 failed, attempt 2 ran
    ranker          executed  1                      ███████████

Each bar spans its attempt's start to its end on an axis from the run's start to its end (to now while it
runs), in the attempt's status colour; a failed attempt is drawn with a lighter shade, so a retried step shows
its attempts side by side. Steps that made no attempt (cached, skipped, not started yet) are counted below.
The JSON (``--json``) is `cairn.observability.timeline.timeline`, the data of the web UI's timeline too.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


FULL, FAILED_SHADE = "█", "▒"  # an attempt that ran to its end; one that failed, crashed or timed out
_OK = frozenset({"executed", "succeeded", "cached", "running"})
_MIN_BAR, _MAX_BAR = 20, 100


def cells(start_s: float, end_s: float, span_s: float, width: int) -> tuple[int, int]:
    """The columns ``[first, last)`` a bar covers on an axis of `width` columns: at least one column."""
    scale = width / span_s if span_s > 0 else 0.0
    first = min(int(start_s * scale), width - 1)
    last = max(min(math.ceil(end_s * scale), width), first + 1)
    return first, last


def bar_width(console_width: int, label_width: int) -> int:
    """Columns of the time axis: what the console has left beside the step, status and tries columns."""
    return max(_MIN_BAR, min(_MAX_BAR, console_width - min(label_width, 40) - 30))


def print_timeline(out: Console, view: dict[str, Any], style_of: dict[str, str]) -> None:
    """Draw `view` (what `timeline` returns) on `out`, one line per row, bars scaled to the console's width."""
    from rich.table import Table
    from rich.text import Text

    rows = view["rows"]
    span = float(view["span_s"])
    width = bar_width(out.width, max((len(r["step"]) for r in rows), default=4))
    grid = Table(box=None, header_style="bold", pad_edge=False)
    grid.add_column("step", overflow="ellipsis", max_width=40, no_wrap=True)
    grid.add_column("status", no_wrap=True)
    grid.add_column("tries", justify="right", no_wrap=True)
    grid.add_column(f"0 to {span:.2f} s", no_wrap=True)
    for row in rows:
        chars, styles = [" "] * width, [""] * width
        drawn = 0  # columns left of this are an earlier attempt's
        for b in row["bars"]:
            first, last = cells(float(b["start_s"]), float(b["end_s"]), span, width)
            if first < drawn < width:  # a retry shorter than a column still gets one of its own
                first, last = drawn, max(last, drawn + 1)
            drawn = last
            ok = b["status"] in _OK and not b["error"]
            for i in range(first, last):
                chars[i] = FULL if ok else FAILED_SHADE
                styles[i] = style_of.get(b["status"], "green" if ok else "red")
        bar = Text()
        for char, style in zip(chars, styles, strict=True):
            bar.append(char, style=style or None)
        failed = sum(1 for b in row["bars"] if b["status"] not in _OK or b["error"])
        tries = f"{len(row['bars'])}" + (f" ({failed} failed)" if failed else "")
        status = Text(row["status"], style=style_of.get(row["status"], ""))
        grid.add_row(Text(row["step"]), status, tries, bar)
    out.print(grid)
    if view["without_attempts"]:
        counts = ", ".join(f"{n} {status}" for status, n in view["without_attempts_by_status"].items())
        n = view["without_attempts"]
        out.print(f"{n} step{'s' if n != 1 else ''} made no attempt: {counts}")
