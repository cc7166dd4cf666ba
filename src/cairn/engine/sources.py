"""Observes source files: their data version is the BLAKE3 of their bytes, cached by (size, mtime, inode)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cairn.hashing import finish, new_hasher

STAT_CACHE = "stat-cache.json"


class SourceObserver:
    """Hashes source files, re-hashing only those whose size, mtime or inode changed since last seen."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / STAT_CACHE
        self._entries: dict[str, list[int | str]] = {}
        self._dirty = False
        try:
            loaded = json.loads(self._path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self._entries = loaded
        except (OSError, ValueError):
            self._entries = {}

    def observe(self, path: Path) -> str | None:
        """The data version of the file, or None when it does not exist."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        key = str(path)
        stamp: list[int | str] = [st.st_size, st.st_mtime_ns, st.st_ino]
        entry = self._entries.get(key)
        if entry is not None and entry[:3] == stamp:
            return str(entry[3])
        version = hash_file(path)
        self._entries[key] = [*stamp, version]
        self._dirty = True
        return version

    def save(self) -> None:
        """Write the cache back atomically if anything changed."""
        if not self._dirty:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._entries, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self._path)
        self._dirty = False


def hash_file(path: Path) -> str:
    """BLAKE3 of a file's bytes, read in 1 MiB chunks."""
    hasher = new_hasher()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
    return finish(hasher)
