"""A dict-backed artifact store with the same semantics as the others, for unit tests and notebooks."""

from __future__ import annotations

from collections.abc import Container, Iterator
from typing import ClassVar

from cairn.errors import StoreError
from cairn.storage.artifacts import HashingWriter, check_digest, missing_object, verify_object


class _MemoryWriter(HashingWriter):
    """Collects bytes in a buffer and adds them to the store's dict on commit."""

    def __init__(self, store: MemoryArtifactStore) -> None:
        super().__init__()
        self._store = store
        self._buffer = bytearray()

    def _write_raw(self, data: memoryview) -> None:
        self._buffer += data

    def _publish(self, digest: str, size: int) -> None:
        self._store.objects[digest] = bytes(self._buffer)
        self._buffer = bytearray()

    def _discard(self) -> None:
        self._buffer = bytearray()


class MemoryArtifactStore:
    """Objects kept in a dict, named by their digest; nothing survives the process.

    ``objects`` maps each digest to its bytes; tests may change it to simulate damage.
    """

    url = "memory://"
    _shared: ClassVar[MemoryArtifactStore | None] = None

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    @classmethod
    def shared(cls) -> MemoryArtifactStore:
        """The process-wide store that ``memory://`` opens, so every opener sees the same objects."""
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def writer(self) -> HashingWriter:
        """A writer for one new object."""
        return _MemoryWriter(self)

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; return ``(digest, size)``."""
        with self.writer() as writer:
            writer.write(data)
            return writer.commit()

    def read_bytes(self, digest: str, size: int | None = None) -> bytes:
        """Read an object and verify its size and hash; raise `MissingObject` or `CorruptObject`."""
        check_digest(digest)
        where = f"{self.url}{digest}"
        try:
            data = self.objects[digest]
        except KeyError:
            raise missing_object(digest, where) from None
        return verify_object(digest, data, size, where)

    def exists(self, digest: str) -> bool:
        check_digest(digest)
        return digest in self.objects

    def size(self, digest: str) -> int | None:
        check_digest(digest)
        data = self.objects.get(digest)
        return None if data is None else len(data)

    def delete(self, digest: str) -> None:
        """Remove an object; removing a missing object does nothing."""
        check_digest(digest)
        self.objects.pop(digest, None)

    def digests(self) -> Iterator[str]:
        """Every stored object's digest, in sorted order."""
        yield from sorted(self.objects)

    def local_path(self, digest: str) -> str | None:
        """Always None: objects in memory are not files."""
        check_digest(digest)
        return None

    # ---- maintenance (the `StoreMaintenance` port): no root to quarantine to, and no leftovers ------

    def quarantine(self, digest: str, folder: str) -> str:
        """Delete the object: a dict has no folder to move it to. Returns ``"deleted"``."""
        self.delete(digest)
        return "deleted"

    def stale_uploads(self, before: float) -> list[tuple[str, int]]:
        """None: a writer publishes from its own buffer, so nothing is left behind."""
        return []

    def remove_upload(self, name: str) -> None:
        """Refuse: the store has no unfinished uploads."""
        raise StoreError(f"{name!r} is not an unfinished upload of {self.url}: it has none.")

    def stale_caches(self, keep: Container[str], before: float) -> list[tuple[str, int]]:
        """None: objects in memory are not rebuilt into folders of the store."""
        return []

    def remove_cache(self, name: str) -> None:
        """Refuse: the store has no caches."""
        raise StoreError(f"{name!r} is not a cache of {self.url}: it has none.")

    def tidy(self) -> None:
        """Nothing to tidy."""
