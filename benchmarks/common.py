"""Shared helpers of the benchmark scripts: projects, subprocess timing, medians, peak RSS, tables.

Every measured cairn run happens in a child process (the CLI, or a small driver script that calls the API),
so that "cold" really is cold (fresh interpreter, fresh project folder) and so that the CPU time and peak
RSS of that run, its step workers included, can be read from `os.wait4` (the child's own
``RUSAGE_CHILDREN``-style accounting: CPU summed over the tree, RSS the largest process of the tree).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATE = "2026-11-23"
MODULE_CLI = [sys.executable, "-m", "cairn.cli.main"]


# ---- command line of the scripts --------------------------------------------------------------------


def parser(description: str, default_repeat: int = 5) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--repeat", type=int, default=default_repeat, help=f"repetitions (default {default_repeat})")
    p.add_argument("--keep", action="store_true", help="keep the temporary projects (their paths are printed)")
    return p


# ---- projects -----------------------------------------------------------------------------------------


def write_project(root: Path, name: str, pipeline: str, executor: str = "process", workers: int = 2) -> Path:
    """Create ``root`` with a `cairn.toml` and a `pipeline.py`; return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cairn.toml").write_text(
        textwrap.dedent(
            f"""\
            [project]
            name = "{name}"
            modules = ["pipeline"]
            seed = 0

            [storage]
            artifacts = ".cairn/artifacts"
            database = "sqlite:///.cairn/cairn.db"

            [executor]
            kind = "{executor}"
            workers = {workers}
            """
        )
    )
    (root / "pipeline.py").write_text(textwrap.dedent(pipeline))
    return root


@contextmanager
def workspace(prefix: str, keep: bool = False, base: str | None = None) -> Iterator[Path]:
    """A temporary folder for one script's projects, removed afterwards unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix=f"cairn-bench-{prefix}-", dir=base))
    try:
        yield path
    finally:
        if keep:
            print(f"(kept {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


# ---- running children ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proc:
    """One finished child process: wall time, CPU (user+sys, its whole tree), peak RSS, output."""

    argv: tuple[str, ...]
    started: float  # time.monotonic() just before the child was started (the clock is shared between processes)
    wall_s: float
    cpu_s: float
    maxrss_mib: float
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Proc:
        if self.returncode != 0:
            raise RuntimeError(
                f"command failed with exit code {self.returncode}: {' '.join(self.argv)}\n"
                f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"
            )
        return self

    def json(self) -> Any:
        return json.loads(self.stdout)


def run(argv: Sequence[str], cwd: str | Path | None = None, env: dict[str, str] | None = None) -> Proc:
    """Run a command to completion, timing it with `time.perf_counter` and reading its rusage via wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started_mono = time.monotonic()
        started = time.perf_counter()
        child = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Proc(
            tuple(argv),
            started_mono,
            wall,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024,  # KiB on Linux
            child.returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )


def run_python(code: str, *args: str, cwd: str | Path | None = None) -> Proc:
    """Run a Python snippet in a fresh interpreter (``python -c``)."""
    return run([sys.executable, "-c", code, *args], cwd=cwd)


def cli_paths() -> dict[str, list[str]]:
    """The ways to start the CLI that may differ in start-up cost: ``python -m``, the console script, the shim.

    ``shutil.which("cairn")`` can be a pyenv shim (a shell script that execs the real script), which adds
    its own start-up; the console script installed next to this interpreter is measured separately.
    """
    paths: dict[str, list[str]] = {"python -m cairn.cli.main": list(MODULE_CLI)}
    script = Path(sysconfig.get_path("scripts")) / "cairn"
    if script.is_file():
        paths["cairn (console script)"] = [str(script)]
    # Under pyenv, `python` is a shim that puts the version's bin folder first on PATH, so `which` finds the
    # real script; a user's shell finds $PYENV_ROOT/shims/cairn first, which is measured too.
    candidates = [shutil.which("cairn")]
    if os.environ.get("PYENV_ROOT"):
        candidates.append(os.path.join(os.environ["PYENV_ROOT"], "shims", "cairn"))
    for found in candidates:
        if found and os.path.isfile(found) and Path(found).resolve() != script.resolve():
            paths[f"cairn (shell PATH: {found})"] = [found]
    return paths


def children_rusage() -> resource.struct_rusage:
    return resource.getrusage(resource.RUSAGE_CHILDREN)


def self_peak_rss_mib() -> float:
    """VmHWM of this process in MiB (peak resident set size)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ---- statistics and tables ----------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def spread(values: Sequence[float], digits: int = 2, scale: float = 1.0) -> str:
    """``median (min-max)`` of values, scaled and formatted."""
    vs = [v * scale for v in values]
    if not vs:
        return "-"
    return f"{statistics.median(vs):.{digits}f} ({min(vs):.{digits}f}-{max(vs):.{digits}f})"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


@dataclass(slots=True)
class Table:
    """A Markdown table printed once all rows are in."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        self.rows.append([str(c) for c in cells])

    def print(self) -> None:
        print(f"\n### {self.title}\n")
        print("| " + " | ".join(self.columns) + " |")
        print("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            print("| " + " | ".join(row) + " |")
        for note in self.notes:
            print(f"\n{note}")
        sys.stdout.flush()


def verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    ok = value <= target if lower_is_better else value >= target
    return "meets" if ok else "MISSES"


def header(title: str, repeat: int) -> None:
    import platform

    import cairn

    print(f"# {title}")
    print(
        f"cairn {cairn.__version__}, Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, repeat={repeat}, load average {os.getloadavg()[0]:.2f} "
        "(the machine is shared: other load shows up as spread)"
    )
    print(f"source: {source_state()}; {byte_compile()}")
    sys.stdout.flush()


def byte_compile() -> str:
    """Byte-compile cairn's sources as installing a wheel does, and say so.

    An editable install under ``PYTHONDONTWRITEBYTECODE=1`` (this machine sets it) would otherwise compile
    every module of cairn again in every process measured: 0.1-0.35 s per start that no installed user pays.
    The ``__pycache__`` folders it writes are ignored by git.
    """
    import compileall

    import cairn

    src = Path(cairn.__file__).resolve().parent
    ok = compileall.compile_dir(str(src), quiet=1)
    return f"byte-compiled {src} as a wheel install does" if ok else f"byte-compiling {src} FAILED (slower starts)"


def source_state() -> str:
    """The commit of the cairn checkout measured and how many files under src/ differ from it (read-only git)."""
    import cairn

    src = Path(cairn.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(src), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return f"{src} (not a git checkout)"
    return f"{src} at commit {commit}" + (f", {len(dirty)} file(s) under src/ modified" if dirty else ", clean")


def progress(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


def layered_pipeline(layers: int, width: int) -> str:
    """pipeline.py of a `layers` x `width` layered DAG: node n{l}_{i} reads n{l-1}_{i} and n{l-1}_{(i+1) % width}."""
    return f'''\
"""A {layers} x {width} layered DAG; every node reads two nodes of the layer before."""

from cairn import asset

LAYERS = {layers}
WIDTH = {width}


def _root(ctx):
    return ctx.params["k"] + 1


def _node(ctx, a, b):
    return (a + b + ctx.params["k"]) % 1000003


NODES = [asset(name=f"n0_{{i}}", params={{"k": i}})(_root) for i in range(WIDTH)]
for layer in range(1, LAYERS):
    for i in range(WIDTH):
        ins = {{"a": f"n{{layer - 1}}_{{i}}", "b": f"n{{layer - 1}}_{{(i + 1) % WIDTH}}"}}
        NODES.append(asset(name=f"n{{layer}}_{{i}}", params={{"k": i}}, ins=ins)(_node))
'''
