"""Shared fixtures: throwaway projects written to a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ["tests.postgres", "tests.s3server"]

ProjectFactory = Callable[..., Path]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the cairn command line in a subprocess (wide output, so lines do not wrap)."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", *args], capture_output=True, text=True, env=env, timeout=120
    )


def write_project(root: Path, pipeline: str, *, executor: str = "inline", extra: str = "", seed: int = 7) -> Path:
    """Write (or rewrite) a project folder with a cairn.toml and a pipeline.py; returns the folder."""
    root.mkdir(parents=True, exist_ok=True)
    config = f"""
        [project]
        name = "test"
        modules = ["pipeline"]
        seed = {seed}

        [executor]
        kind = "{executor}"
        workers = 2
        """
    (root / "cairn.toml").write_text(textwrap.dedent(config) + textwrap.dedent(extra), encoding="utf-8")
    set_pipeline(root, pipeline)
    return root


def set_pipeline(root: Path, pipeline: str) -> None:
    """Rewrite pipeline.py and move its mtime forward so that the change is noticed at once."""
    path = root / "pipeline.py"
    before = path.stat().st_mtime if path.exists() else 0.0
    path.write_text(textwrap.dedent(pipeline), encoding="utf-8")
    later = max(time.time(), before) + 2  # always a new whole second: bytecode caches compare seconds
    os.utime(path, (later, later))


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """``make_project(pipeline_text, executor="inline", extra="")`` → project folder."""

    def make(pipeline: str, *, executor: str = "inline", extra: str = "", name: str = "proj") -> Path:
        return write_project(tmp_path / name, pipeline, executor=executor, extra=extra)

    return make
