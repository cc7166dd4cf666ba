"""Content-addressed artifact stores: objects named by their BLAKE3 digest, written atomically, read verified.

Layout, the same for every backend::

    <root>/objects/ab/cdef...   one immutable object; the name is its digest's hex, split after 2 chars
    <root>/tmp/                 writers' temporary files, named <host>-<pid>-<random>.part
    <root>/files/<hex>/         directories rebuilt from `cairn.io.Files` manifests (local stores only)

A write goes through an `ObjectWriter` that hashes the bytes as they arrive (one pass) and publishes them
under their digest on `commit`. The local store (a local disk, or a folder shared by several machines over
NFS) does it with plain `os` calls and no locks:

    write ... write -> commit: an object of that digest and size already stored is on disk: remove the
                               temporary file; otherwise flush, fsync, hard-link into objects/ab/... (fails if
                               already there: then the same bytes are published, or a damaged object is
                               replaced by rename), remove the temporary file, fsync the directory
                    -> abort:  remove the temporary file; nothing is published

Under `deferred_publishing` (the engine's local executors use it: the step jobs that finish together are
published together) a commit stops after closing the temporary file and lists it as a `PendingObject`; the
engine then calls `LocalArtifactStore.publish` on all of them right before it records their rows:

    publish: fsync every temporary file ─▶ link each into objects/ab/... ─▶ fsync each folder once ─▶ rows

So a name under ``objects/`` still only ever holds bytes that are on disk, and a row is only ever written
after its object's name is.

Other URLs (``s3://``, ``gs://``, ...) go to `cairn.storage.remote.FsspecArtifactStore`; which store a
``storage.artifacts`` setting names is decided by `cairn.storage.factory.open_artifacts`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import sys
import uuid
from collections.abc import Container, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from cairn.errors import CorruptObject, MissingObject, StoreError
from cairn.hashing import PREFIX, digest_bytes, finish, new_hasher

DIGEST_PATTERN = re.compile(r"b3:[0-9a-f]{64}")
# From this many objects published together, one syncfs of the file system is used where it is safe.
SYNCFS_MIN = 4
# ... and only while no more than this much (beyond the objects' own bytes) waits to be written back.
SYNCFS_MAX_DIRTY = 64 << 20
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9.]+")


@dataclass(frozen=True, slots=True)
class PendingObject:
    """An object written in full to a temporary file of a local store, not yet durable nor published under
    its name; small and picklable, so that a worker can hand it to the engine that publishes it."""

    root: str  # the store's directory
    digest: str
    size: int
    tmp_name: str  # the temporary file's name in <root>/tmp/


class Unpublished:
    """The objects written while `deferred_publishing` was on, in the order written."""

    def __init__(self) -> None:
        self.objects: list[PendingObject] = []

    def path_of(self, root: str, digest: str) -> str | None:
        """Where an object of this list is readable before it is published, if it is in the list."""
        for obj in self.objects:
            if obj.digest == digest and obj.root == root:
                return os.path.join(root, "tmp", obj.tmp_name)
        return None


_deferred: ContextVar[Unpublished | None] = ContextVar("cairn_unpublished_objects", default=None)


@contextlib.contextmanager
def deferred_publishing() -> Iterator[Unpublished]:
    """Within it (in this thread), local writers neither fsync nor publish what they commit: the objects stay
    in the store's ``tmp/``, readable by digest from the same thread, and are listed in the value yielded,
    for `LocalArtifactStore.publish` (or `discard`). Other stores publish as usual and list nothing."""
    unpublished = Unpublished()
    token = _deferred.set(unpublished)
    try:
        yield unpublished
    finally:
        _deferred.reset(token)


def discard(objects: Sequence[PendingObject]) -> None:
    """Remove the temporary files of objects that will not be published (their attempt failed)."""
    for obj in objects:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(obj.root, "tmp", _bare(obj.tmp_name)))


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


def temp_name() -> str:
    """A temporary file name no other writer can pick, on this machine or another sharing the folder:
    ``<host>-<pid>-<random>.part``, so that a leftover also says which machine and process left it."""
    return f"{_host()}-{os.getpid()}-{uuid.uuid4().hex[:16]}.part"


@functools.cache
def _host() -> str:
    import socket  # only a command that writes objects needs it

    return _NOT_IN_NAMES.sub("_", socket.gethostname()).strip("_.") or "host"


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
    """Writes to ``<root>/tmp/<host>-<pid>-<random>.part``, then links it into ``objects/`` on commit."""

    def __init__(self, store: LocalArtifactStore) -> None:
        super().__init__()
        self._store = store
        os.makedirs(store.tmp_dir, exist_ok=True)
        self._tmp_path = os.path.join(store.tmp_dir, temp_name())
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        self._file: IO[bytes] = os.fdopen(os.open(self._tmp_path, flags, 0o666), "wb")

    def _write_raw(self, data: memoryview) -> None:
        self._file.write(data)

    def _publish(self, digest: str, size: int) -> None:
        final = self._store.object_path(digest)
        if _file_size(final) == size:  # published before, so already on disk
            self._file.close()
            os.remove(self._tmp_path)
            return
        unpublished = _deferred.get()
        if unpublished is not None:
            self._file.close()
            name = os.path.basename(self._tmp_path)
            unpublished.objects.append(PendingObject(self._store.root, digest, size, name))
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        shard = os.path.dirname(final)
        if not os.path.isdir(shard):
            os.makedirs(shard, exist_ok=True)
            _fsync_dir(self._store.objects_dir)
        _place(self._tmp_path, final, size)  # keeps an intact object another writer placed meanwhile
        _fsync_dir(shard)
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._tmp_path)

    def _discard(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._tmp_path)


def _place(tmp_path: str, final: str, size: int) -> None:
    """Publish ``tmp_path`` at ``final`` without ever replacing an intact object.

    A hard link creates the name only if it is absent (atomically, on NFS too), so when several writers, on
    one machine or several, publish the same object at once, the first wins and the others find the same
    bytes there. A damaged object (another size) is replaced by rename. A filesystem without hard links
    renames directly: the bytes are equal, so a lost race only replaces an object with itself.
    """
    try:
        os.link(tmp_path, final)
    except FileExistsError:
        # Also what NFS answers when the reply to a link that succeeded was lost and the call was resent.
        if _file_size(final) != size:
            os.replace(tmp_path, final)
    except OSError:
        os.replace(tmp_path, final)


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
        self.files_dir = os.path.join(self.root, "files")

    def __repr__(self) -> str:
        return f"LocalArtifactStore({self.root!r})"

    def object_path(self, digest: str) -> str:
        """Where the object named ``digest`` lives (whether or not it exists)."""
        hex_digest = check_digest(digest)
        # os.path.join's result, built directly: a plan of 20,000 cached steps asks for 20,000 of these
        return f"{self.objects_dir}{os.sep}{hex_digest[:2]}{os.sep}{hex_digest[2:]}"

    def writer(self) -> HashingWriter:
        """A writer for one new object."""
        return _LocalWriter(self)

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; return ``(digest, size)``."""
        with self.writer() as writer:
            writer.write(data)
            return writer.commit()

    def publish(self, objects: Sequence[PendingObject]) -> None:
        """Make objects written under `deferred_publishing` durable and give them their names, all at once.

        One fsync per distinct object, then the hard links (an intact object already there is kept, as a
        single writer does), then one fsync per shard folder that received a name (and of ``objects/`` when a
        shard folder is new), then the temporary files go. When this returns, every object is on disk under
        its name, so rows that reference them may be written.

        For a group of `SYNCFS_MIN` objects or more on Linux, one ``syncfs`` replaces the fsyncs of the files
        (each of which would commit the journal for its own blocks) where that is safe: the kernel reports
        write-back errors to it (5.8 and later) and little else is waiting to be written (``Dirty`` in
        /proc/meminfo), so that it does not wait for other programs' writes. The folders are fsynced as usual.

        Raises:
            StoreError: an object belongs to another store's directory.
            OSError: a write to the disk failed (nothing may be recorded then).
        """
        todo: dict[str, PendingObject] = {}
        for obj in objects:
            if obj.root != self.root:
                raise StoreError(f"object {obj.digest} was written to {obj.root}, not to this store ({self.root})")
            if obj.digest not in todo and _file_size(self.object_path(obj.digest)) != obj.size:
                todo[obj.digest] = obj
        whole = len(todo) >= SYNCFS_MIN and _syncfs_safe(sum(obj.size for obj in todo.values()))
        if whole:
            _syncfs(self.tmp_dir)
        else:
            for obj in todo.values():
                _fsync_file(self._tmp_path(obj))
        new_shard, touched = False, set()
        for obj in todo.values():
            final = self.object_path(obj.digest)
            shard = os.path.dirname(final)
            if shard not in touched and not os.path.isdir(shard):
                os.makedirs(shard, exist_ok=True)
                new_shard = True
            if _file_size(final) != obj.size:
                _place(self._tmp_path(obj), final, obj.size)
                touched.add(shard)
        if new_shard:
            _fsync_dir(self.objects_dir)
        for shard in sorted(touched):
            _fsync_dir(shard)  # after the first, each finds the journal committed already (ext4, xfs)
        discard(objects)

    def _tmp_path(self, obj: PendingObject) -> str:
        return os.path.join(self.tmp_dir, _bare(obj.tmp_name))

    def _readable(self, digest: str) -> str:
        """The object's path; for one this thread wrote under `deferred_publishing`, its temporary file."""
        path = self.object_path(digest)
        unpublished = _deferred.get()
        if unpublished is not None and unpublished.objects and not os.path.isfile(path):
            return unpublished.path_of(self.root, digest) or path
        return path

    def read_bytes(self, digest: str, size: int | None = None) -> bytes:
        """Read an object and verify its size and hash; raise `MissingObject` or `CorruptObject`."""
        path = self._readable(digest)
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
        return os.path.isfile(self._readable(digest))

    def size(self, digest: str) -> int | None:
        return _file_size(self._readable(digest))

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
        path = self._readable(digest)
        return path if os.path.isfile(path) else None

    # ---- maintenance (the `StoreMaintenance` port) ------------------------------------------------

    def quarantine(self, digest: str, folder: str) -> str:
        """Move an object to ``<root>/<folder>/<hex>`` by rename; return its new path."""
        target = os.path.join(self.root, folder, check_digest(digest))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(self.object_path(digest), target)
        return target

    def stale_uploads(self, before: float) -> list[tuple[str, int]]:
        """Entries of ``tmp/`` (writers' temporary files) not modified since ``before``, as ``(path, bytes)``."""
        found = []
        for name in _sorted_entries(self.tmp_dir):
            path = os.path.join(self.tmp_dir, name)
            with contextlib.suppress(FileNotFoundError):
                if os.lstat(path).st_mtime <= before:
                    found.append((path, _tree_size(path)))
        return found

    def remove_upload(self, name: str) -> None:
        """Remove one entry of ``tmp/`` named by `stale_uploads`.

        Raises:
            StoreError: the name is not an entry of this store's ``tmp/``.
        """
        _remove(_entry_of(self.tmp_dir, name, self.url))

    def stale_caches(self, keep: Container[str], before: float) -> list[tuple[str, int]]:
        """Folders under ``files/`` rebuilt from manifests not in ``keep``, and half-built ones (``.tmp-*``) not
        modified since ``before``, as ``(path, bytes)``."""
        found = []
        for name in _sorted_entries(self.files_dir):
            path = os.path.join(self.files_dir, name)
            if name.startswith(".tmp-"):
                with contextlib.suppress(FileNotFoundError):
                    if os.lstat(path).st_mtime <= before:
                        found.append((path, _tree_size(path)))
            elif DIGEST_PATTERN.fullmatch(PREFIX + name) and PREFIX + name not in keep:
                found.append((path, _tree_size(path)))
        return found

    def remove_cache(self, name: str) -> None:
        """Remove one folder of ``files/`` named by `stale_caches`.

        Raises:
            StoreError: the name is not an entry of this store's ``files/``.
        """
        _remove(_entry_of(self.files_dir, name, self.url))

    def tidy(self) -> None:
        """Remove the shard folders under ``objects/`` that deleting objects left empty."""
        for name in _sorted_entries(self.objects_dir):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(self.objects_dir, name))  # only succeeds when empty


def _file_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def _sorted_entries(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _entry_of(folder: str, name: str, url: str) -> str:
    """``name`` when it is an entry directly inside ``folder``; refuse anything else."""
    if os.path.dirname(name) != folder or os.path.basename(name) in ("", ".", ".."):
        raise StoreError(f"{name!r} is not an entry of {folder} in the store {url}; take names from `cairn gc`.")
    return name


def _tree_size(path: str) -> int:
    if not os.path.isdir(path) or os.path.islink(path):
        return os.lstat(path).st_size
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(base, name)).st_size
    return total


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _bare(name: str) -> str:
    """A temporary file's name, refused when it could name anything outside ``tmp/``."""
    if not name or os.path.basename(name) != name or name in (".", ".."):
        raise StoreError(f"{name!r} is not the name of a temporary file of an artifact store")
    return name


def _fsync_file(path: str) -> None:
    """Make a file's bytes durable, whichever process wrote them (fsync flushes the file, not a handle)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs_safe(own_bytes: int) -> bool:
    """Whether one ``syncfs`` may stand for many fsyncs: Linux 5.8 or later (before, it reported no
    write-back errors), and little dirty data besides the objects' own, system-wide."""
    if not sys.platform.startswith("linux") or _kernel() < (5, 8):
        return False
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"Dirty:"):
                    return int(line.split()[1]) * 1024 <= SYNCFS_MAX_DIRTY + own_bytes
    except (OSError, ValueError, IndexError):
        pass
    return False


def _kernel() -> tuple[int, int]:
    numbers = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(numbers[1]), int(numbers[2])) if numbers else (0, 0)


@functools.cache
def _libc() -> Any:
    import ctypes  # only where syncfs is used: a few ms to import

    return ctypes.CDLL(None, use_errno=True)


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def _syncfs(path: str) -> None:
    """Write back every dirty file and the journal of the file system holding ``path`` (Linux ``syncfs``)."""
    libc = _libc()
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.syncfs(fd) != 0:
            error = _errno()
            raise OSError(error, f"syncfs of the file system holding {path}: {os.strerror(error)}")
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    """Make a rename or a new entry in ``path`` durable (POSIX; Windows has no directory handles)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
