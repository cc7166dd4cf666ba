"""Captures the environment of a run once, cheaply: interpreter, OS, distributions, git state, host.

What a run records (every value JSON-able; `cairn diff` and `cairn reproduce` compare these entries)::

    python, implementation, os, arch, executable   the interpreter and the machine
    cairn, host                                     cairn's version and the host name
    distributions                                   {normalized name: version} of every installed distribution
    git_commit, git_dirty, git_diff                 the project's commit, whether its tree had changes
                                                    (untracked files count), and the hash of `git diff HEAD`
                                                    (only when dirty); absent outside a git work tree

The distribution list is read from the ``*.dist-info`` / ``*.egg-info`` folder names on `sys.path` (not
through `importlib.metadata`, which parses every METADATA file and costs ~0.1-0.3 s) and cached per process.
Git runs at most two commands, in parallel, each with a short timeout.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

GIT_TIMEOUT_S = 2.0

_NORMALIZE = re.compile(r"[-_.]+")
# ``name-version.dist-info``, ``name-version-py3.11.egg-info`` and ``name.egg-info`` (no version: read PKG-INFO).
_DIST_DIR = re.compile(r"^(?P<name>[^-]+)(?:-(?P<version>[^-]+)(?:-py[\d.]+)?)?\.(?:dist|egg)-info$")


def capture(root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The run's environment as a JSON-able dict.

    Args:
        root: The project folder; when given and inside a git work tree, its commit and dirty state are
            recorded too.
    """
    return capture_started(root)()


def capture_started(root: str | os.PathLike[str] | None = None) -> Callable[[], dict[str, Any]]:
    """`capture`, with git's commands started now: the returned function waits for them and returns the
    environment (the same dict each time it is called), so that the caller can work meanwhile (a run prepares
    its steps)."""
    git = git_started(root) if root is not None else dict
    return functools.cache(lambda: {**_interpreter(), **git()})


def _interpreter() -> dict[str, Any]:
    from cairn.version import __version__

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cairn": __version__,
        "host": socket.gethostname(),
        "executable": sys.executable,
        "distributions": dict(distributions()),
    }
    return env


def normalize_name(name: str) -> str:
    """A distribution name as PEP 503 compares them: lowercase, runs of ``-_.`` as one ``-``."""
    return _NORMALIZE.sub("-", name).lower()


@functools.cache
def distributions() -> tuple[tuple[str, str], ...]:
    """Installed distributions as sorted ``(normalized name, version)`` pairs; the first on `sys.path` wins.

    A `sys.path` folder inside a package of site-packages (a package's private copies of its dependencies,
    which some packages add when imported) installs nothing and is skipped.
    """
    found: dict[str, str] = {}
    for entry in sys.path:
        if _vendored(entry):
            continue
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            match = _DIST_DIR.match(folder)
            if match is None:
                continue
            name = normalize_name(match["name"])
            if name in found:
                continue
            version = match["version"] or _pkg_info_version(os.path.join(entry or ".", folder))
            if version:
                found[name] = version
    return tuple(sorted(found.items()))


def _vendored(entry: str) -> bool:
    parts = os.path.normpath(os.path.abspath(entry or ".")).split(os.sep)
    return any(part in ("site-packages", "dist-packages") for part in parts[:-1])


def _pkg_info_version(folder: str) -> str | None:
    """The ``Version:`` header of an egg-info folder's PKG-INFO (a development install names no version)."""
    try:
        with open(os.path.join(folder, "PKG-INFO"), encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip() or None
                if not line.strip():
                    break
    except OSError:
        return None
    return None


def git_state(root: str | os.PathLike[str]) -> dict[str, Any]:
    """``git_commit``, ``git_dirty`` and (when dirty) ``git_diff`` of the work tree holding `root`.

    Empty when git is not installed, `root` is not in a work tree, the repository has no commit yet, or
    git does not answer within `GIT_TIMEOUT_S`.
    """
    return git_started(root)()


def git_started(root: str | os.PathLike[str]) -> Callable[[], dict[str, Any]]:
    """`git_state` with its commands started now; the returned function waits for them (call it once)."""
    folder = str(Path(root))
    # Both commands start at once: the diff is only needed when the tree is dirty, but waiting for the
    # status first would add a whole git start-up to every run.
    try:
        status = _start(["git", "-C", folder, "status", "--porcelain=v2", "--branch"])
    except OSError:
        return dict
    try:
        diff = _start(["git", "-C", folder, "diff", "HEAD", "--no-color", "--no-ext-diff"])
    except OSError:
        _stop(status)
        return dict
    return lambda: _git_result(status, diff)


def _git_result(status: subprocess.Popen[bytes], diff: subprocess.Popen[bytes]) -> dict[str, Any]:
    try:
        status_out = _finish(status)
        diff_out = _finish(diff)
    finally:
        _stop(status)
        _stop(diff)
    if status_out is None:
        return {}
    commit = None
    dirty = False
    for line in status_out.decode("utf-8", "replace").splitlines():
        if line.startswith("# branch.oid "):
            commit = line.split()[2]
        elif line and not line.startswith("#"):
            dirty = True
    if commit is None or commit == "(initial)":
        return {}
    state: dict[str, Any] = {"git_commit": commit, "git_dirty": dirty}
    if dirty and diff_out is not None:
        from cairn.hashing import digest_bytes

        state["git_diff"] = digest_bytes(diff_out)
    return state


def _start(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
    )


def _finish(process: subprocess.Popen[bytes]) -> bytes | None:
    """The command's output when it succeeded in time, else None."""
    try:
        out, _ = process.communicate(timeout=GIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None
    return out if process.returncode == 0 else None


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.communicate()
    elif process.stdout is not None:
        process.stdout.close()
