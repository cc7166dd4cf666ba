"""`Files`: a directory (or one file) stored as one object per file plus a JSON manifest of them."""

from __future__ import annotations

import functools
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cairn.core.records import StoredValue
from cairn.errors import SerializationError
from cairn.io.jsonvalue import decode_json, encode_json
from cairn.io.ports import Sink, Store, write_object

FORMAT: Final = "files"
PYTYPE_DIRECTORY: Final = "files"
PYTYPE_FILE: Final = "file"
COPY_CHUNK_BYTES: Final = 1024 * 1024
_DIGEST = re.compile(r"b3:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Files:
    """Return ``Files(path)`` from an asset to store a directory (or one file) that the step wrote.

    Loading gives back a `pathlib.Path` into a shared cache (do not modify it): the directory, or for one
    file the file itself.
    Regular files and subdirectories are kept; empty directories, permissions and times are not.
    """

    path: str | os.PathLike[str]


def dump_files(files: Files, store: Store) -> StoredValue:
    """Store every file under ``files.path`` as its own object, then the manifest ``{relative_path:
    {"digest", "size"}}`` (canonical JSON) whose digest is the data version.

    Raises:
        SerializationError: the path does not exist or holds something other than files and directories.
    """
    root = Path(files.path)
    if root.is_file():
        entries, pytype = [(root.name, root)], PYTYPE_FILE
    elif root.is_dir():
        entries, pytype = _walk(root, ""), PYTYPE_DIRECTORY
    else:
        raise SerializationError(
            f"cannot store cairn.Files({str(root)!r}): no such file or directory. Return Files with the path "
            "of what the step wrote, e.g. Files(ctx.workdir / 'model')."
        )
    manifest: dict[str, dict[str, object]] = {}
    for relative, path in entries:
        check_relative(relative)
        digest, size = write_object(store, functools.partial(_copy_file, path))
        manifest[relative] = {"digest": digest, "size": size}
    data = encode_json(manifest)
    digest, size = write_object(store, functools.partial(_write_all, data))
    return StoredValue(digest, size, FORMAT, pytype)


def load_files(stored: StoredValue, store: Store) -> Path:
    """Rebuild the stored files in a cache directory (reused when present) and return its path.

    The cache is ``<root>/files/<hex>/`` for a local store, else a private folder under the temp directory.
    """
    manifest = _read_manifest(stored, store)
    cache = _cache_root(store)
    target = cache / stored.data_version.removeprefix("b3:")
    if not target.is_dir():
        _rebuild(manifest, store, cache, target)
    if stored.pytype == PYTYPE_FILE:
        return target / next(iter(manifest))
    return target


def check_relative(relative: str) -> None:
    """Refuse a manifest path that is absolute, climbs out (``..``) or is not portable.

    Raises:
        SerializationError: the path is not a plain relative path with ``/`` separators.
    """
    parts = relative.split("/")
    if any(part in ("", ".", "..") or "\\" in part or "\0" in part for part in parts) or ":" in parts[0]:
        raise SerializationError(
            f"unsafe path {relative!r} in a cairn.Files manifest: only relative paths with '/' separators "
            "and no '.', '..' or '\\\\' parts are allowed. Rename the file."
        )


def _walk(directory: Path, prefix: str) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        relative = prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            found.extend(_walk(Path(entry.path), relative + "/"))
        elif entry.is_file():
            found.append((relative, Path(entry.path)))
        else:
            raise SerializationError(
                f"cannot store {entry.path} in cairn.Files: it is not a regular file or directory (a link "
                "to a directory, a socket or a device). Copy what it holds into the directory instead."
            )
    return found


def _copy_file(path: Path, sink: Sink) -> None:
    with open(path, "rb") as source:
        while chunk := source.read(COPY_CHUNK_BYTES):
            sink.write(chunk)


def _write_all(data: bytes, sink: Sink) -> None:
    sink.write(data)


def _read_manifest(stored: StoredValue, store: Store) -> dict[str, tuple[str, int]]:
    if not _DIGEST.fullmatch(stored.data_version):
        raise SerializationError(f"invalid data version {stored.data_version!r} for cairn.Files; run `cairn verify`.")
    value = decode_json(store.read_bytes(stored.data_version, stored.size))
    bad = SerializationError(
        f"object {stored.data_version} is not a cairn.Files manifest. Its record says format 'files' but the "
        "object holds something else; run `cairn verify` and re-run the step that produced it."
    )
    if not isinstance(value, dict) or (stored.pytype == PYTYPE_FILE and len(value) != 1):
        raise bad
    manifest: dict[str, tuple[str, int]] = {}
    for relative, entry in value.items():
        if not isinstance(entry, dict):
            raise bad
        digest, size = entry.get("digest"), entry.get("size")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest) or type(size) is not int:
            raise bad
        check_relative(relative)
        manifest[relative] = (digest, size)
    return manifest


def _rebuild(manifest: dict[str, tuple[str, int]], store: Store, cache: Path, target: Path) -> None:
    """Write every file into a temporary folder next to ``target``, then rename it into place."""
    cache.mkdir(parents=True, exist_ok=True)
    import shutil
    import tempfile

    building = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))
    try:
        for relative, (digest, size) in manifest.items():
            destination = building.joinpath(*relative.split("/"))
            destination.parent.mkdir(parents=True, exist_ok=True)
            with open(destination, "wb") as out:
                out.write(store.read_bytes(digest, size))
                out.flush()
                os.fsync(out.fileno())
        building.chmod(0o755)
        try:
            building.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(building)  # another process rebuilt the same manifest first
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def _cache_root(store: Store) -> Path:
    if store.url.startswith("file://"):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        return Path(url2pathname(urlparse(store.url).path)) / "files"
    return _private_temp_root()


def _private_temp_root() -> Path:
    """A per-user folder under the temp directory that nobody else can have planted files in."""
    import tempfile

    if not hasattr(os, "getuid"):
        return Path(tempfile.gettempdir()) / "cairn-files"
    root = Path(tempfile.gettempdir()) / f"cairn-files-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    info = root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise SerializationError(
            f"cannot use {root} to rebuild cairn.Files: it is not a private directory of this user. "
            "Remove it or point TMPDIR to another folder."
        )
    return root
