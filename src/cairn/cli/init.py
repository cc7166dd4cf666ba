"""`cairn init`: scaffold a project folder with a cairn.toml and a pipeline of two assets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from cairn.cli.common import console
from cairn.errors import UsageError

CONFIG = """\
[project]
name = "{name}"
modules = ["pipeline"]          # modules that define assets, imported from this folder
seed = 42

[storage]
artifacts = ".cairn/artifacts"
database = "sqlite:///.cairn/cairn.db"

[executor]
kind = "process"                # inline | thread | process
workers = 0                     # 0 = number of cores

[defaults]
retry = {{ max_attempts = 2, backoff = 1.0 }}

[profiles.strict]               # an experiment branch: `cairn run --profile strict`
summary = {{ threshold = 14.0 }}
"""

PIPELINE = '''\
"""A two-asset pipeline: seeded measurements and their summary."""

import random

from cairn import Context, asset


@asset(params={"n": 1000}, tags={"tier": "raw"})
def measurements(ctx: Context) -> list[float]:
    """Synthetic sensor readings, reproducible from the project seed."""
    rng = random.Random(ctx.seed)
    return [round(rng.gauss(10.0, 2.0), 4) for _ in range(ctx.params["n"])]


@asset(params={"threshold": 12.0}, tags={"tier": "report"})
def summary(ctx: Context, measurements: list[float]) -> dict[str, float]:
    """Count, mean and the share of readings above a threshold."""
    above = sum(1 for m in measurements if m > ctx.params["threshold"])
    share = above / len(measurements)
    ctx.log_metric("share_above", share)
    ctx.log.info("%d of %d readings above %s", above, len(measurements), ctx.params["threshold"])
    return {"count": len(measurements), "mean": round(sum(measurements) / len(measurements), 4), "share_above": share}
'''

GITIGNORE = ".cairn/\n__pycache__/\n"


def register(app: typer.Typer) -> None:
    app.command()(init)


def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")] = Path("."),
    name: Annotated[str | None, typer.Option(help="Project name (default: the folder name).")] = None,
) -> None:
    """Scaffold a project (cairn.toml, pipeline.py with two assets)."""
    directory = directory.resolve()
    if (directory / "cairn.toml").exists():
        raise UsageError(f"{directory / 'cairn.toml'} already exists; nothing was changed")
    if (directory / "pipeline.py").exists():
        raise UsageError(f"{directory / 'pipeline.py'} already exists; move it away or choose another folder")
    project = name or re.sub(r"[^A-Za-z0-9_.-]", "_", directory.name) or "project"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cairn.toml").write_text(CONFIG.format(name=project), encoding="utf-8")
    (directory / "pipeline.py").write_text(PIPELINE, encoding="utf-8")
    if not (directory / ".gitignore").exists():
        (directory / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    console().print(f"Created project [bold]{project}[/] in {directory}")
    console().print(f"Next: cairn -C {directory} plan   then   cairn -C {directory} run")
