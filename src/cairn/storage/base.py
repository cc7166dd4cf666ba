"""The narrow ports of storage: an artifact store of immutable, content-addressed objects, and its upkeep."""

from __future__ import annotations

from collections.abc import Container, Iterator
from typing import Protocol, runtime_checkable


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


@runtime_checkable
class StoreMaintenance(Protocol):
    """What `cairn verify` and `cairn gc` need of a store beyond `ArtifactStore`: a quarantine and its leftovers.

    Leftovers are what writers and readers leave next to the objects: unfinished uploads (temporary files,
    staging keys, S3 multipart uploads) and caches rebuilt from objects (the folders of `cairn.io.Files`).
    Each is named by a string the store hands out and takes back; the age limit, what is kept and when to
    remove anything are decided above this port, in `cairn.storage.maintenance`.
    """

    def quarantine(self, digest: str, folder: str) -> str:
        """Take an object out of the store (to ``<root>/<folder>/<hex>`` where the store has a root, else
        deleting it) so that nothing reads it again; return where it went."""
        ...

    def stale_uploads(self, before: float) -> list[tuple[str, int]]:
        """Unfinished uploads last changed before ``before`` (epoch seconds), as ``(name, bytes)`` pairs."""
        ...

    def remove_upload(self, name: str) -> None:
        """Remove one unfinished upload named by `stale_uploads`; a name of something else is refused."""
        ...

    def stale_caches(self, keep: Container[str], before: float) -> list[tuple[str, int]]:
        """Rebuilt caches of objects not in ``keep``, and half-built ones last changed before ``before``."""
        ...

    def remove_cache(self, name: str) -> None:
        """Remove one cache named by `stale_caches`; a name of something else is refused."""
        ...

    def tidy(self) -> None:
        """Remove what deleting objects left empty (the shard folders of a local store)."""
        ...
