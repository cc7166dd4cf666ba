"""What every command shares: the -C option, opening a project's stores, --set parsing, JSON output, error
rendering, time formats."""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from cairn.errors import UsageError

if TYPE_CHECKING:  # the CLI imports these where a command needs them: `cairn --help` stays fast
    from rich.console import Console
    from rich.table import Table

    from cairn.config import Settings
    from cairn.core.records import Materialization
    from cairn.engine.api import Stores
    from cairn.project import Project
    from cairn.storage.base import ArtifactStore
    from cairn.storage.metadata import MetadataStore

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


class ProjectStores:
    """A project's settings and its stores: the metadata database is open, the artifact store opens on first use
    (commands about history never touch it, and a remote one costs an import and a connection)."""

    def __init__(self, settings: Settings, meta: MetadataStore) -> None:
        self.settings = settings
        self.meta = meta
        self._artifacts: ArtifactStore | None = None

    @property
    def artifacts(self) -> ArtifactStore:
        if self._artifacts is None:
            from cairn.storage.factory import open_artifacts

            s = self.settings
            self._artifacts = open_artifacts(s.artifacts, s.root, s.artifacts_options)
        return self._artifacts

    @property
    def stores(self) -> Stores:
        """Both stores, as the engine's functions take them."""
        from cairn.engine.api import Stores

        return Stores(self.meta, self.artifacts)


@contextmanager
def project_stores(project: str | Project) -> Iterator[ProjectStores]:
    """Read a project's cairn.toml (or take a loaded project's settings) and open its stores; close them after."""
    from cairn.storage.metadata import open_metadata

    if isinstance(project, str):
        from cairn.config import load_settings

        settings = load_settings(project)
    else:
        settings = project.settings
    meta = open_metadata(settings.database, settings.root)
    try:
        yield ProjectStores(settings, meta)
    finally:
        meta.close()


def check_summary(materializations: list[Materialization]) -> str:
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
    if sys.stdout.isatty():
        out = [_row(headers, widths, bold=True), *(_row(r, widths) for r in rows)]
    else:  # the same text in one format call per row: `cairn plan` of 20,000 steps prints 20,000 of them
        line = "  ".join([*(f"{{:<{w}}}" for w in widths[:-1]), "{}"])
        out = [line.format(*r).rstrip() for r in (headers, *rows)]
    sys.stdout.write("\n".join(out) + "\n")


def _row(cells: list[str], widths: list[int], bold: bool = False) -> str:
    """A row for a terminal: bold (the header), or with each status cell in its colour."""
    parts = [
        _ansi(cell.ljust(width), "1" if bold else _ANSI.get(STATUS_STYLE.get(cell, "")))
        for cell, width in zip(cells, widths, strict=True)
    ]
    return "  ".join(parts).rstrip()


def _ansi(text: str, code: str | None) -> str:
    return f"\033[{code}m{text}\033[0m" if code else text


def table(*columns: str) -> Table:
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


def parse_sets(values: list[str] | None) -> dict[str, dict[str, object]]:
    """Parse ``--set asset.param=value`` options; values are TOML literals, else plain strings."""
    from cairn.config import parse_overrides

    return parse_overrides(values or [])


def print_json(data: object) -> None:
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


def painted(text: str, status: str) -> str:
    """`text` in the colour of `status` on a terminal, plain elsewhere (`styled` without Rich)."""
    return _ansi(text, _ANSI.get(STATUS_STYLE.get(status, ""))) if sys.stdout.isatty() else text
