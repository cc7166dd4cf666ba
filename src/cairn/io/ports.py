"""The slice of an artifact store that serializers use, as structural types.

They mirror `cairn.storage.base` because the layer contract keeps `cairn.io` and `cairn.storage` independent;
every `ArtifactStore` satisfies them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Sink(Protocol):
    """Where a serializer writes an object: an `ObjectWriter` (hashes as it writes, publishes on commit)."""

    def write(self, data: bytes | bytearray | memoryview) -> int: ...

    def commit(self) -> tuple[str, int]: ...

    def abort(self) -> None: ...


class Store(Protocol):
    """The artifact store operations serializers need; every `ArtifactStore` has them."""

    @property
    def url(self) -> str: ...

    def writer(self) -> Sink: ...

    def read_bytes(self, digest: str, size: int | None = None) -> bytes: ...

    def local_path(self, digest: str) -> str | None: ...


def write_object(store: Store, write: Callable[[Sink], object]) -> tuple[str, int]:
    """Run ``write`` on a new object writer and publish what it wrote; on any error publish nothing.

    Returns:
        The object's ``(digest, size)``.
    """
    sink = store.writer()
    try:
        write(sink)
        return sink.commit()
    except BaseException:
        sink.abort()
        raise
