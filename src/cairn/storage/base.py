"""The narrow ports of storage: an artifact store of immutable, content-addressed objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class ObjectWriter(Protocol):
    """Receives an object's bytes, hashing them as they are written; `commit` publishes atomically.

    Atomic means that the object's name shows all of its bytes or nothing, to every reader, whatever happens
    to the writer (an exception, a killed process, a lost connection); nothing is sent to the name before the
    digest is known. Publishing an object that is already stored intact leaves it as it is.
    """

    def write(self, data: bytes | bytearray | memoryview) -> int: ...

    def commit(self) -> tuple[str, int]:
        """Publish the object under its content hash; return ``(digest, size)``. Idempotent for equal bytes."""
        ...

    def abort(self) -> None:
        """Discard what was written; nothing is published."""
        ...


class ArtifactStore(Protocol):
    """Immutable objects named by their BLAKE3 digest (``b3:<hex>``), laid out as ``objects/ab/cdef...``."""

    url: str

    def writer(self) -> ObjectWriter: ...

    def put_bytes(self, data: bytes) -> tuple[str, int]: ...

    def read_bytes(self, digest: str, size: int | None = None) -> bytes:
        """Read an object and verify its size and hash; raise `MissingObject` or `CorruptObject`."""
        ...

    def exists(self, digest: str) -> bool: ...

    def size(self, digest: str) -> int | None: ...

    def delete(self, digest: str) -> None: ...

    def digests(self) -> Iterator[str]: ...

    def local_path(self, digest: str) -> str | None:
        """A filesystem path to the object when the store is local, else None."""
        ...
