"""The `cairn` application: the table of commands, loaded lazily, and cairn errors turned into exit codes.

    cairn --help    lists COMMANDS from the table below: no command module is imported
    cairn run ...   imports cairn.cli.run only, and registers its commands on a throwaway app

Each command module has ``register(app)``, which adds its commands and command groups to a Typer app. The
table names, in the order `--help` lists them, each command, the module that registers it and the first
sentence of its help (the rest of its help is read from the module when the command itself is asked for);
tests/integration/test_startup.py checks the table against what the modules register.
"""

from __future__ import annotations

import importlib
import os
import sys
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer._click.exceptions import UsageError as ClickUsageError
from typer.core import TyperGroup
from typer.main import get_group

from cairn.errors import CairnError, UsageError

if TYPE_CHECKING:
    from typer import _click

# (command, module under cairn.cli that registers it, first sentence of its help); commands before groups.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("init", "init", "Scaffold a project (cairn.toml, pipeline.py with two assets)."),
    ("list", "inspect", "Assets with their kind, inputs and tags."),
    ("graph", "inspect", "The asset DAG as text, Mermaid or Graphviz dot."),
    ("plan", "inspect", "What a run would do, step by step, each with its reason; runs nothing."),
    ("status", "inspect", "Every asset: last materialization, fresh or stale, and why."),
    ("why", "inspect", "Is an asset fresh or stale, and exactly what changed: code, params, an input's data, env."),
    (
        "run",
        "run",
        "Materialize a selection: run what is stale, reuse what is cached; with --sweep, a grid of tracked trials.",
    ),
    (
        "runs",
        "history",
        "Run history, newest first; with --metric, chosen metrics as columns; with --sweep, a sweep's trials ranked.",
    ),
    ("show", "history", "One run with its steps and attempts; with --timeline, when each attempt ran."),
    ("logs", "history", "Captured logs of a run (ctx.log lines, printed output, and errors of failed attempts)."),
    ("backfill", "datasets", "Run a selection over a partition range as a recorded, resumable backfill."),
    (
        "lineage",
        "lineage",
        "The upstream tree of a materialization down to its sources, with versions and runs.",
    ),
    ("impact", "lineage", "Every asset downstream of ASSET, with its current materializations."),
    (
        "diff",
        "lineage",
        "What differs between two runs: code, params, input data versions, env versions, metrics, environment.",
    ),
    (
        "reproduce",
        "lineage",
        "Re-execute one materialization from its exact recorded inputs; exit 1 unless the output is identical.",
    ),
    (
        "verify",
        "lineage",
        "Re-hash every stored object; list missing and corrupt ones and move corrupt ones to quarantine.",
    ),
    (
        "gc",
        "lineage",
        "Remove objects no materialization references, and stale temporary files (a dry run unless --apply).",
    ),
    (
        "slo",
        "observability",
        "Run and asset metrics over a window (latency, duration, success ratio, CPU, cost, cache savings) and "
        "every [[slo]] rule over its own window; exits 1 when a rule is breached.",
    ),
    (
        "incidents",
        "observability",
        "Incidents, newest first: what failed, broke a contract, drifted or breached an SLO, which assets and "
        "partitions it affected, from when to when, who was alerted, and its remediation.",
    ),
    (
        "daemon",
        "automation",
        "Run schedules, sensors and freshness policies forever; SIGTERM lets the current run finish, then stops.",
    ),
    (
        "tick",
        "automation",
        "Evaluate every schedule, sensor and freshness policy once and run what is due; exit 1 if a run failed.",
    ),
    ("ui", "ui", "Web UI and HTTP API (every route needs a user's token; see docs/ui.md)."),
    ("snapshot", "datasets", "Pin the current data versions of a selection as a named dataset version."),
    (
        "users",
        "security",
        "Users, their roles (viewer < operator < approver < admin) and tokens; see docs/security.md.",
    ),
    ("audit", "security", "The audit log, newest first, and `audit verify` to check its hash chain."),
    ("models", "models", "Model versions, their gates and approvals; promotion and rollback of their aliases."),
    ("alias", "models", "Aliases of any asset (production, champion): set, roll back, list, history."),
    (
        "schedules",
        "automation",
        "Schedules and sensors: their state, last tick and next due time; pause and resume them.",
    ),
)
_MODULE_OF = {name: module for name, module, _ in COMMANDS}


def registered(module: str) -> dict[str, _click.Command]:
    """The click commands that ``cairn.cli.<module>`` registers, by name (imports that module)."""
    sub = typer.Typer(rich_markup_mode=None, add_completion=False)
    importlib.import_module(f"cairn.cli.{module}").register(sub)
    return dict(get_group(sub).commands)


class _LazyGroup(TyperGroup):
    """The root group: lists the table; imports a command's module only when that command is resolved."""

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return [name for name, _, _ in COMMANDS]

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        if cmd_name not in self.commands and cmd_name in _MODULE_OF:
            for name, command in registered(_MODULE_OF[cmd_name]).items():
                self.commands.setdefault(name, command)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: _click.Context, args: list[str]
    ) -> tuple[str | None, _click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except ClickUsageError as exc:  # Typer suggests among the commands loaded: here, among all of them
            matches = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if matches and "Did you mean" not in exc.message:
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {', '.join(repr(m) for m in matches)}?"
            raise

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """The commands section of `--help` from the table, as Click would write it from the commands."""
        from typer._click.utils import make_default_short_help

        limit = formatter.width - 6 - max(len(name) for name, _, _ in COMMANDS)
        rows = [(name, make_default_short_help(summary, limit)) for name, _, summary in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    name="cairn",
    help="A dependency-aware orchestrator for ML feature-engineering and training pipelines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    cls=_LazyGroup,
)


@app.callback()
def _global(
    directory: Annotated[
        Path | None, typer.Option("-C", help="Run as if cairn was started in this folder (like git -C).")
    ] = None,
) -> None:
    """A dependency-aware orchestrator for ML feature-engineering and training pipelines."""
    if directory is not None:
        try:
            os.chdir(directory)
        except OSError as exc:
            raise UsageError(f"-C {directory}: cannot enter that folder ({exc.strerror})") from exc


def main() -> None:
    """Entry point of the `cairn` script."""
    try:
        _check_arguments(sys.argv[1:])
        app()
    except CairnError as exc:
        from cairn.cli.common import err_console, escape

        err_console().print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        from cairn.cli.common import err_console

        err_console().print("[yellow]interrupted[/]")
        sys.exit(130)


def _check_arguments(args: list[str]) -> None:
    """Refuse an argument that is not UTF-8 text (Python keeps its undecodable bytes as lone surrogates, which no
    name, key or query can hold) before any command passes it to a path, a hash or the database."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(
                f"the argument {arg!r} is not valid UTF-8 text (it holds an undecodable byte): names, keys and "
                "values on the command line must be UTF-8"
            ) from None


if __name__ == "__main__":
    main()
