"""Ships a project's code to cluster workers: a zip of its modules and cairn.toml, named by their content.

    engine: package_project(dir) ─▶ CodePackage(zip, digest) ─▶ executor sends it once per code version
                                                                  (Dask: a worker plugin; Ray: the object store)
    worker: unpack(package) ─▶ <local>/<digest>/{cairn.toml, pipeline.py, ...}
            with running_from(dir, local): run_step(job) ─▶ project_root(job.project_dir) ─▶ which folder to load

A worker loads the project from `job.project_dir` when the files there are byte for byte the shipped ones
(a shared folder, or the same machine): paths and ``__file__`` stay what the project expects. Anywhere else
(another machine, a checkout at another commit, a folder it may not read) it loads the shipped copy, so it
runs exactly the code the engine fingerprinted. The package holds the project's modules that the engine
imported (the ``.py`` files under the project folder in ``sys.modules``) and ``cairn.toml``; data files,
compiled extensions and modules imported only inside a function are not in it. The artifact store is not
shipped: workers reach it by its URL (a shared path or object storage), see docs/deployment.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from cairn.hashing import digest_bytes, hash_struct

PACKAGE_TAG = "cairn.code-package/1"
MANIFEST = ".cairn-code.json"
CONFIG_FILE = "cairn.toml"  # as `cairn.config` names it (that layer sits above the executors)
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip entries carry no real time: the same files make the same bytes


@dataclass(frozen=True, slots=True)
class CodePackage:
    """The code of one project at one version: a deterministic zip and the digest of the files in it."""

    project_dir: str
    digest: str
    data: bytes
    files: tuple[str, ...]

    @property
    def slot(self) -> str:
        """What the project's current package is known by on a cluster: a new code version replaces it."""
        return f"cairn-code-{digest_bytes(self.project_dir.encode())[3:15]}"

    @property
    def name(self) -> str:
        """A folder and plugin name: the project's folder and the code version, both hashed short."""
        return f"{self.slot}-{self.digest[3:19]}"


def package_project(project_dir: str) -> CodePackage | None:
    """Package the project's imported modules and its cairn.toml (engine side); None without a cairn.toml."""
    import zipfile  # only shipping code to remote workers packages it

    root = os.path.abspath(project_dir)
    try:
        files = {CONFIG_FILE: _read(os.path.join(root, CONFIG_FILE))}
    except OSError:
        return None
    for path in sorted(_module_files(root)):
        with contextlib.suppress(OSError):  # a module whose file is gone cannot be shipped, nor imported
            files[os.path.relpath(path, root).replace(os.sep, "/")] = _read(path)
    digest = _digest(files)
    names = tuple(sorted(files))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        manifest = {"project_dir": root, "digest": digest, "files": list(names)}
        for name, data in [(MANIFEST, json.dumps(manifest, sort_keys=True).encode()), *sorted(files.items())]:
            archive.writestr(zipfile.ZipInfo(name, _EPOCH), data)
    return CodePackage(root, digest, buffer.getvalue(), names)


def unpack(data: bytes, into: str) -> str:
    """Extract a package under `into` once (worker side); return its folder. Safe for concurrent callers."""
    import tempfile
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read(MANIFEST))
        package = CodePackage(manifest["project_dir"], manifest["digest"], data, tuple(manifest["files"]))
        target = os.path.join(into, package.name)
        if os.path.isfile(os.path.join(target, MANIFEST)):
            return target
        os.makedirs(into, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".unpacking-", dir=into)
        try:
            for member in archive.namelist():
                if not _safe_member(member):
                    raise ValueError(f"the code package {package.name} holds an unsafe path: {member!r}")
            archive.extractall(staging)
            try:
                os.rename(staging, target)
            except OSError:  # another worker process unpacked it first
                if not os.path.isfile(os.path.join(target, MANIFEST)):
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


class _Shipped(NamedTuple):
    project_dir: str
    local: str
    digest: str
    files: tuple[str, ...]


_active: contextvars.ContextVar[_Shipped | None] = contextvars.ContextVar("cairn_shipped_code", default=None)
_same_files: dict[tuple[str, str], bool] = {}  # (project folder, digest) -> the folder holds the shipped files


@contextlib.contextmanager
def running_from(local: str) -> Iterator[None]:
    """Within the block (one job, on one worker thread), the code shipped in folder `local` is the job's."""
    with open(os.path.join(local, MANIFEST), "rb") as fh:
        manifest = json.loads(fh.read())
    token = _active.set(_Shipped(manifest["project_dir"], local, manifest["digest"], tuple(manifest["files"])))
    try:
        yield
    finally:
        _active.reset(token)


def project_root(project_dir: str) -> str:
    """The folder a worker loads the project of `project_dir` from: that folder itself when it holds exactly the
    shipped files (or when nothing was shipped), else the shipped copy."""
    shipped = _active.get()
    if shipped is None or shipped.project_dir != os.path.abspath(project_dir):
        return project_dir
    key = (shipped.project_dir, shipped.digest)
    if key not in _same_files:
        _same_files[key] = _holds(shipped.project_dir, shipped.files, shipped.digest)
    return project_dir if _same_files[key] else shipped.local


def _holds(folder: str, names: tuple[str, ...], digest: str) -> bool:
    try:
        return _digest({name: _read(os.path.join(folder, *name.split("/"))) for name in names}) == digest
    except (OSError, ValueError):  # not there, not readable: this worker does not have the project
        return False


def _module_files(root: str) -> set[str]:
    """The ``.py`` files under `root` of the modules this process imported (not those of an environment)."""
    prefix = root + os.sep
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) or ""
        if not path.startswith(prefix) or not path.endswith(".py"):
            continue
        inside = path[len(prefix) :]
        if "site-packages" in inside or inside.startswith((".venv" + os.sep, ".cairn" + os.sep)):
            continue
        found.add(path)
    return found


def _safe_member(name: str) -> bool:
    parts = name.split("/")
    return not name.startswith("/") and "\\" not in name and ".." not in parts and "" not in parts


def _digest(files: dict[str, bytes]) -> str:
    return hash_struct([PACKAGE_TAG, sorted([name, digest_bytes(data)] for name, data in files.items())])


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()
