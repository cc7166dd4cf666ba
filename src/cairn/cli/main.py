"""The `cairn` application: registers the command groups and turns cairn errors into exit codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cairn.cli import automation, datasets, history, inspect, lineage, models, observability, run, security, ui
from cairn.cli.common import err_console, escape
from cairn.cli.init import init
from cairn.errors import CairnError, UsageError

app = typer.Typer(
    name="cairn",
    help="A dependency-aware orchestrator for ML feature-engineering and training pipelines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
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


app.command()(init)
inspect.register(app)
run.register(app)
history.register(app)
datasets.register(app)
lineage.register(app)
observability.register(app)
security.register(app)
models.register(app)
automation.register(app)
ui.register(app)


def main() -> None:
    """Entry point of the `cairn` script."""
    try:
        _check_arguments(sys.argv[1:])
        app()
    except CairnError as exc:
        err_console().print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
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
