"""Content-addressed artifact stores: objects named by their BLAKE3 digest, written atomically, read verified.

Layout, the same for every backend::

    <root>/objects/ab/cdef...   one immutable object; the name is its digest's hex, split after 2 chars
    <root>/tmp/                 writers' temporary files (local stores only)
    <root>/files/<hex>/         directories rebuilt from `cairn.io.Files` manifests (local stores only)

A write goes through an `ObjectWriter` that hashes the bytes as they arrive (one pass) and publishes them
under their digest on `commit`:

    write ... write -> commit: flush, fsync, rename into objects/ab/..., fsync the directory
                    -> abort:  remove the temporary file; nothing is published
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from cairn.errors import ConfigError, CorruptObject, MissingObject, StoreError
from cairn.hashing import PREFIX, digest_bytes, finish, new_hasher
from cairn.storage.base import ArtifactStore

DIGEST_PATTERN = re.compile(r"b3:[0-9a-f]{64}")
# Bytes a fsspec writer keeps in memory before it spills to a local temporary file.
SPOOL_MAX_BYTES = 16 * 1024 * 1024
COPY_CHUNK_BYTES = 1024 * 1024
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def check_digest(digest: str) -> str:
    """Return the hex part of a valid ``b3:<64 hex>`` digest; refuse anything that could leave the root.

    Raises:
        StoreError: the digest is not ``b3:`` followed by 64 lowercase hex digits.
    """
    if not DIGEST_PATTERN.fullmatch(digest):
        raise StoreError(
            f"invalid object digest {digest!r}: expected 'b3:' followed by 64 lowercase hex digits. "
            "Digests come from ObjectWriter.commit or the metadata records; run `cairn verify` if a record "
            "holds this value."
        )
    return digest[len(PREFIX) :]


def verify_object(digest: str, data: bytes, size: int | None, where: str) -> bytes:
    """Return ``data`` when its size and hash match the recorded ones.

    Raises:
        CorruptObject: the size or the hash differs; the message names the object and where it is.
    """
    if size is not None and len(data) != size:
        raise corrupt_object(digest, where, f"it has {len(data)} bytes but its record says {size}")
    actual = digest_bytes(data)
    if actual != digest:
        raise corrupt_object(digest, where, f"its {len(data)} bytes hash to {actual}")
    return data


def corrupt_object(digest: str, where: str, what: str) -> CorruptObject:
    """The error for an object whose bytes are not what its name and record say."""
    error = CorruptObject(
        f"object {digest} at {where} is corrupt: {what}. Run `cairn verify` to list every damaged object, "
        "then re-run the steps that produced them with `cairn run --force`."
    )
    error.digest = digest
    return error


def missing_object(digest: str, where: str) -> MissingObject:
    """The error for an object that its record names but the store does not hold."""
    error = MissingObject(
        f"object {digest} is missing: {where} does not exist. It was removed (e.g. by `cairn gc`) or written "
        "to another store; check `storage.artifacts` in cairn.toml, run `cairn verify` to list missing "
        "objects, and re-run the steps that produced them with `cairn run --force`."
    )
    error.digest = digest
    return error


class HashingWriter:
    """Base of the object writers: hashes bytes as they are written and publishes them once.

    It is a minimal binary file object (``write``, ``tell``, ``flush``, ``closed``), so serializers can
    pass it as the sink of ``pyarrow.parquet.write_table``, ``numpy.save`` or ``pickle.dump``. Used as a
    context manager it aborts on leaving unless `commit` was called.
    """

    def __init__(self) -> None:
        self._hasher = new_hasher()
        self._size = 0
        self._closed = False
        self._result: tuple[str, int] | None = None

    @property
    def closed(self) -> bool:
        """True once the writer was committed or aborted."""
        return self._closed

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Hash and keep ``data``; return the number of bytes written."""
        if self._closed:
            raise StoreError("cannot write to an object writer after commit() or abort(); open a new writer")
        view = memoryview(data).cast("B")
        self._hasher.update(view)
        self._write_raw(view)
        self._size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        """The number of bytes written so far."""
        return self._size

    def flush(self) -> None:
        """Nothing to do: bytes are made durable by `commit`."""

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def commit(self) -> tuple[str, int]:
        """Publish the object under its content hash; return ``(digest, size)``. Idempotent."""
        if self._result is not None:
            return self._result
        if self._closed:
            raise StoreError("cannot commit an object writer that was aborted; open a new writer")
        digest = finish(self._hasher)
        self._closed = True
        try:
            self._publish(digest, self._size)
        except BaseException:
            self._discard()
            raise
        self._result = (digest, self._size)
        return self._result

    def abort(self) -> None:
        """Discard what was written; nothing is published. Does nothing after `commit`."""
        if self._result is None:
            self._closed = True
            self._discard()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()

    def _write_raw(self, data: memoryview) -> None:
        raise NotImplementedError

    def _publish(self, digest: str, size: int) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError


class _LocalWriter(HashingWriter):
    """Writes to ``<root>/tmp/<random>.part``, then renames into ``objects/`` on commit."""

    def __init__(self, store: LocalArtifactStore) -> None:
        super().__init__()
        self._store = store
        os.makedirs(store.tmp_dir, exist_ok=True)
        self._tmp_path = os.path.join(store.tmp_dir, f"{uuid.uuid4().hex}.part")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        self._file: IO[bytes] = os.fdopen(os.open(self._tmp_path, flags, 0o666), "wb")

    def _write_raw(self, data: memoryview) -> None:
        self._file.write(data)

    def _publish(self, digest: str, size: int) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final = self._store.object_path(digest)
        shard = os.path.dirname(final)
        if not os.path.isdir(shard):
            os.makedirs(shard, exist_ok=True)
            _fsync_dir(self._store.objects_dir)
        if _file_size(final) == size:
            # Same name, same size: the same bytes are already published.
            os.remove(self._tmp_path)
            return
        os.replace(self._tmp_path, final)
        _fsync_dir(shard)

    def _discard(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._tmp_path)


class LocalArtifactStore:
    """An artifact store in a local (or mounted shared) directory, through plain `os` calls.

    Args:
        root: the store's directory; created on the first write.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.url = Path(self.root).as_uri()
        self.objects_dir = os.path.join(self.root, "objects")
        self.tmp_dir = os.path.join(self.root, "tmp")

    def __repr__(self) -> str:
        return f"LocalArtifactStore({self.root!r})"

    def object_path(self, digest: str) -> str:
        """Where the object named ``digest`` lives (whether or not it exists)."""
        hex_digest = check_digest(digest)
        return os.path.join(self.objects_dir, hex_digest[:2], hex_digest[2:])

    def writer(self) -> HashingWriter:
        """A writer for one new object."""
        return _LocalWriter(self)

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; return ``(digest, size)``."""
        with self.writer() as writer:
            writer.write(data)
            return writer.commit()

    def read_bytes(self, digest: str, size: int | None = None) -> bytes:
        """Read an object and verify its size and hash; raise `MissingObject` or `CorruptObject`."""
        path = self.object_path(digest)
        try:
            with open(path, "rb") as file:
                actual = os.fstat(file.fileno()).st_size
                if size is not None and actual != size:
                    raise corrupt_object(digest, path, f"it has {actual} bytes but its record says {size}")
                data = file.read()
        except FileNotFoundError:
            raise missing_object(digest, path) from None
        return verify_object(digest, data, size, path)

    def exists(self, digest: str) -> bool:
        return os.path.isfile(self.object_path(digest))

    def size(self, digest: str) -> int | None:
        return _file_size(self.object_path(digest))

    def delete(self, digest: str) -> None:
        """Remove an object; removing a missing object does nothing."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.object_path(digest))

    def digests(self) -> Iterator[str]:
        """Every stored object's digest, in sorted order."""
        for shard in _sorted_entries(self.objects_dir):
            for name in _sorted_entries(os.path.join(self.objects_dir, shard)):
                digest = f"{PREFIX}{shard}{name}"
                if DIGEST_PATTERN.fullmatch(digest):
                    yield digest

    def local_path(self, digest: str) -> str | None:
        """The object's file path when it exists, else None."""
        path = self.object_path(digest)
        return path if os.path.isfile(path) else None


class _SpoolWriter(HashingWriter):
    """Spools bytes locally (memory, then a temporary file) and uploads them to the digest's key on commit."""

    def __init__(self, store: FsspecArtifactStore) -> None:
        super().__init__()
        self._store = store
        self._spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES)  # noqa: SIM115

    def _write_raw(self, data: memoryview) -> None:
        self._spool.write(data)

    def _publish(self, digest: str, size: int) -> None:
        fs, key = self._store.fs, self._store.object_key(digest)
        with self._spool:
            if _remote_size(fs, key) == size:
                return
            # Object stores have no rename. A PUT there is atomic, and the name is the hash, so a concurrent
            # writer uploads the same bytes; a partial object left by a crash elsewhere is caught on read.
            self._spool.seek(0)
            with fs.open(key, "wb") as out:
                shutil.copyfileobj(self._spool, out, COPY_CHUNK_BYTES)
        uploaded = _remote_size(fs, key)
        if uploaded != size:
            raise StoreError(
                f"upload of object {digest} to {self._store.url} did not complete: {uploaded} of {size} "
                "bytes arrived. Check the connection and permissions of the store, then retry."
            )

    def _discard(self) -> None:
        self._spool.close()


class FsspecArtifactStore:
    """An artifact store at any fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://name``, ...).

    Args:
        url: the store's root URL.
        storage_options: passed on to the fsspec filesystem (credentials, endpoint).

    Raises:
        ConfigError: the URL's scheme is unknown or its filesystem package is not installed.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec  # here, not on top: the start-up budget (DESIGN §5)

        try:
            fs, base = fsspec.core.url_to_fs(url, **(storage_options or {}))
        except ImportError as exc:
            raise ConfigError(
                f"artifact store {url!r} needs a filesystem package that is not installed ({exc}). Install "
                "it, e.g. `pip install s3fs` for s3:// or `pip install gcsfs` for gs://."
            ) from exc
        except ValueError as exc:
            raise ConfigError(
                f"artifact store {url!r} cannot be opened: {exc}. Use a local path or an fsspec URL such as "
                "s3://bucket/prefix."
            ) from exc
        self.url = url
        self.fs: Any = fs
        self._base = str(base).rstrip("/")

    def __repr__(self) -> str:
        return f"FsspecArtifactStore({self.url!r})"

    def object_key(self, digest: str) -> str:
        """The filesystem key of the object named ``digest``."""
        hex_digest = check_digest(digest)
        return f"{self._base}/objects/{hex_digest[:2]}/{hex_digest[2:]}"

    def writer(self) -> HashingWriter:
        """A writer for one new object."""
        return _SpoolWriter(self)

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; return ``(digest, size)``."""
        with self.writer() as writer:
            writer.write(data)
            return writer.commit()

    def read_bytes(self, digest: str, size: int | None = None) -> bytes:
        """Read an object and verify its size and hash; raise `MissingObject` or `CorruptObject`."""
        key = self.object_key(digest)
        where = f"{self.url} ({key})"
        try:
            data = bytes(self.fs.cat_file(key))
        except FileNotFoundError:
            raise missing_object(digest, where) from None
        return verify_object(digest, data, size, where)

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self.object_key(digest)))

    def size(self, digest: str) -> int | None:
        return _remote_size(self.fs, self.object_key(digest))

    def delete(self, digest: str) -> None:
        """Remove an object; removing a missing object does nothing."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.object_key(digest))

    def digests(self) -> Iterator[str]:
        """Every stored object's digest, in sorted order."""
        found = []
        for path in self.fs.find(f"{self._base}/objects"):
            shard, name = str(path).rstrip("/").split("/")[-2:]
            digest = f"{PREFIX}{shard}{name}"
            if DIGEST_PATTERN.fullmatch(digest):
                found.append(digest)
        yield from sorted(found)

    def local_path(self, digest: str) -> str | None:
        """Always None: objects of a fsspec store are not local files."""
        check_digest(digest)
        return None


def open_artifacts(url: str, project_dir: str | os.PathLike[str]) -> ArtifactStore:
    """Open the artifact store that a ``storage.artifacts`` setting names.

    Args:
        url: a path (relative ones are resolved against ``project_dir``), a ``file://`` URL, ``memory://``
            (the process-wide in-memory store) or any other fsspec URL (``s3://bucket/prefix``,
            ``memory://bucket/prefix``, ...).
        project_dir: the project's folder.

    Raises:
        ConfigError: the setting is empty, or its scheme cannot be opened.
    """
    from cairn.storage.memory import MemoryArtifactStore  # here: memory imports this module

    if not url.strip():
        raise ConfigError(
            "storage.artifacts is empty; set it to a folder (e.g. '.cairn/artifacts') or a URL such as "
            "s3://bucket/prefix."
        )
    scheme = _URL_SCHEME.match(url)
    if scheme is None:
        path = Path(url).expanduser()
    elif scheme.group(1).lower() == "file":
        rest = url[scheme.end() :]
        rest = rest[len("localhost") :] if rest.startswith("localhost/") else rest
        from urllib.request import url2pathname

        path = Path(url2pathname(rest))
    elif url == "memory://":
        return MemoryArtifactStore.shared()
    else:
        return FsspecArtifactStore(url)
    return LocalArtifactStore(path if path.is_absolute() else Path(project_dir) / path)


def _file_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def _remote_size(fs: Any, key: str) -> int | None:
    try:
        return int(fs.size(key))
    except FileNotFoundError:
        return None


def _sorted_entries(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _fsync_dir(path: str) -> None:
    """Make a rename or a new entry in ``path`` durable (POSIX; Windows has no directory handles)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
