"""What every command shares: the -C option, --set parsing, JSON output, error rendering, time formats."""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import tomllib
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cairn.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

ProjectOpt = Annotated[str, typer.Option("-C", "--project", help="The project folder (holding cairn.toml).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a param: asset.param=value (value is a TOML literal).", metavar="A.P=V"),
]
PartitionOpt = Annotated[str | None, typer.Option("--partition", help="Only this partition key.")]
FromOpt = Annotated[str | None, typer.Option("--from", help="First partition key of a range.")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last partition key of a range (included).")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="Apply the params overlay [profiles.NAME].")]


@functools.cache
def console() -> Console:
    """The console for output (Rich is imported on first use: `--help` does not need it)."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else _width())


@functools.cache
def err_console() -> Console:
    """The console for errors and hints, on stderr."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else _width())


def _width() -> int:
    try:
        return max(80, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 160


def check_summary(materializations: list[Any]) -> str:
    """``ok``, ``2 warnings`` or ``-`` from the rule results recorded with materializations."""
    results = [r for m in materializations for r in m.metadata.get("cairn.checks", [])]
    if not results:
        return "-"
    warnings = sum(1 for r in results if not r["passed"])
    return f"{warnings} warning{'s' if warnings != 1 else ''}" if warnings else f"{len(results)} ok"


def escape(text: str) -> str:
    """Escape Rich markup in user text (names, reasons, errors)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


_ANSI = {"green": "32", "dim": "2", "bold red": "1;31", "yellow": "33", "cyan": "36", "magenta": "35", "red": "31"}


def print_rows(headers: list[str], rows: list[list[str]]) -> None:
    """Aligned plain-text columns, fast for thousands of rows; statuses are coloured on a terminal only."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    colour = sys.stdout.isatty()
    out = [_row(headers, widths, bold=colour)]
    out += [_row(r, widths, colour=colour) for r in rows]
    sys.stdout.write("\n".join(out) + "\n")


def _row(cells: list[str], widths: list[int], bold: bool = False, colour: bool = False) -> str:
    parts = []
    for cell, width in zip(cells, widths, strict=True):
        text = cell.ljust(width)
        code = _ANSI.get(STATUS_STYLE.get(cell, "")) if colour else None
        if bold:
            code = "1"
        parts.append(f"\033[{code}m{text}\033[0m" if code else text)
    return "  ".join(parts).rstrip()


def table(*columns: str) -> Any:
    """A borderless Rich table with bold headers."""
    from rich.table import Table

    return Table(*columns, box=None, header_style="bold")


def partition_range(partition: str | None, first: str | None, last: str | None) -> tuple[str, str] | None:
    """Validate --partition / --from / --to together and return the range, if any."""
    if partition is not None and (first or last):
        raise UsageError("use either --partition K or --from A --to B, not both")
    if (first is None) != (last is None):
        raise UsageError("--from and --to go together: give both ends of the partition range")
    return (first, last) if first is not None and last is not None else None


def parse_sets(values: list[str] | None) -> dict[str, dict[str, Any]]:
    """Parse ``--set asset.param=value`` options; values are TOML literals, else plain strings."""
    out: dict[str, dict[str, Any]] = {}
    for item in values or []:
        target, eq, raw = item.partition("=")
        asset, dot, param = target.strip().partition(".")
        if not eq or not dot or not asset or not param:
            raise UsageError(f"--set {item!r} must look like asset.param=value, e.g. --set train.num_trees=800")
        out.setdefault(asset, {})[param] = toml_literal(raw.strip())
    return out


def toml_literal(raw: str) -> Any:
    """``14`` → 14, ``true`` → True, ``[1, 2]`` → [1, 2], ``"x"`` → "x"; anything else stays a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def ago(ts: float | None) -> str:
    if not ts:
        return "-"
    delta = max(0.0, time.time() - ts)
    if delta < 60:
        return f"{delta:.0f}s ago"
    if delta < 3600:
        return f"{delta / 60:.0f}m ago"
    if delta < 86400:
        return f"{delta / 3600:.1f}h ago"
    return f"{delta / 86400:.1f}d ago"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"


def short(digest: str | None, n: int = 12) -> str:
    if not digest:
        return "-"
    return digest[: 3 + n]


STATUS_STYLE = {
    "executed": "green",
    "cached": "dim",
    "failed": "bold red",
    "skipped": "yellow",
    "succeeded": "green",
    "partial": "yellow",
    "running": "cyan",
    "abandoned": "magenta",
    "cancelled": "yellow",
    "fresh": "green",
    "stale": "yellow",
    "missing": "red",
    "run": "cyan",
}


def styled(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status
