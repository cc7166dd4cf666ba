"""`cairn ui`: serve the web UI and HTTP API of a project (FastAPI and uvicorn are imported only here, when run)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from cairn.cli.common import ProjectOpt, err_console
from cairn.errors import UsageError

LOCAL = "127.0.0.1"


def register(app: typer.Typer) -> None:
    app.command()(ui)


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ui(
    project: ProjectOpt = ".",
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = LOCAL,
    port: Annotated[int, typer.Option("--port", help="The port to listen on.", min=1, max=65535)] = 8765,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow a --host that other machines can reach.")
    ] = False,
) -> None:
    """Web UI and HTTP API (every route needs a user's token; see docs/ui.md)."""
    if not is_loopback(host) and not allow_remote:
        raise UsageError(
            f"--host {host} can be reached from other machines: add --allow-remote to serve there, preferably "
            "behind a TLS-terminating proxy (tokens travel in every request)"
        )
    try:
        import uvicorn

        from cairn.web import create_app
    except ImportError as e:
        raise UsageError(f"`cairn ui` needs the ui extra ({e.name} is missing): pip install 'cairn[ui]'") from None
    if not is_loopback(host):
        err_console().print(
            f"[yellow]warning[/]: serving on {host}, reachable from other machines; without TLS in front, "
            "tokens can be read on the network"
        )
    app = create_app(project)
    err_console().print(f"cairn ui on http://{host}:{port}/ (log in with your token; Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
