"""What every command shares: the -C option, --set parsing, JSON output, error rendering, time formats."""

from __future__ import annotations

import json
import sys
import time
import tomllib
from typing import Annotated, Any

import typer
from rich.console import Console

from cairn.errors import UsageError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

ProjectOpt = Annotated[str, typer.Option("-C", "--project", help="The project folder (holding cairn.toml).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a param: asset.param=value (value is a TOML literal).", metavar="A.P=V"),
]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="Apply the params overlay [profiles.NAME].")]


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
