"""The contract test suite of `ArtifactStore`: every backend passes it by joining the list of subclasses.

Subclass `ArtifactStoreContract` as ``TestSomethingStore``, give it a ``store`` fixture that returns an
empty store, and implement `ArtifactStoreContract.replace_bytes` to damage an object behind the store's back::

    class TestMyStore(ArtifactStoreContract):
        @pytest.fixture
        def store(self, tmp_path: Path) -> ArtifactStore:
            return MyStore(tmp_path)

        def replace_bytes(self, store: ArtifactStore, digest: str, data: bytes) -> None:
            ...
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from blake3 import blake3

from cairn.errors import CorruptObject, MissingObject, StoreError
from cairn.storage.base import ArtifactStore

HOSTILE_DIGESTS = (
    "",
    "b3:",
    "../../etc/passwd",
    "b3:../../../../etc/passwd",
    "b3:" + "0" * 62 + "/..",
    "b3:" + "A" * 64,
    "b3:" + "0" * 63,
    "b3:" + "0" * 65,
    "sha256:" + "0" * 64,
    "b3:" + "0" * 64 + "\n",
)


class ArtifactStoreContract:
    """Behaviour every artifact store must have: verified, idempotent, atomic, content-addressed objects."""

    @pytest.fixture
    def store(self) -> ArtifactStore:
        raise NotImplementedError("a subclass provides the `store` fixture (an empty store)")

    def replace_bytes(self, store: ArtifactStore, digest: str, data: bytes) -> None:
        """Overwrite the stored bytes of ``digest`` without going through the store, to simulate damage."""
        raise NotImplementedError

    def test_put_bytes_round_trips(self, store: ArtifactStore) -> None:
        digest, size = store.put_bytes(b"hello cairn")
        assert size == 11
        assert store.read_bytes(digest) == b"hello cairn"
        assert store.read_bytes(digest, size) == b"hello cairn"

    def test_digest_is_the_blake3_of_the_bytes(self, store: ArtifactStore) -> None:
        data = bytes(range(256)) * 10
        digest, _ = store.put_bytes(data)
        assert digest == "b3:" + blake3(data).hexdigest()

    def test_chunked_writes_give_the_same_object_as_one_put(self, store: ArtifactStore) -> None:
        data = os.urandom(300_000)
        writer = store.writer()
        for start in range(0, len(data), 65_536):
            writer.write(memoryview(data)[start : start + 65_536])
        assert writer.commit() == store.put_bytes(data)
        assert list(store.digests()) == ["b3:" + blake3(data).hexdigest()]

    def test_writer_accepts_bytearray_and_memoryview(self, store: ArtifactStore) -> None:
        writer = store.writer()
        assert writer.write(bytearray(b"ab")) == 2
        assert writer.write(memoryview(b"cd")) == 2
        digest, size = writer.commit()
        assert (store.read_bytes(digest), size) == (b"abcd", 4)

    def test_empty_object_round_trips(self, store: ArtifactStore) -> None:
        digest, size = store.put_bytes(b"")
        assert size == 0
        assert store.read_bytes(digest, 0) == b""

    def test_large_object_round_trips(self, store: ArtifactStore) -> None:
        data = os.urandom(3 * 1024 * 1024 + 7)
        digest, size = store.put_bytes(data)
        assert size == len(data)
        assert store.read_bytes(digest, size) == data

    def test_rewriting_equal_bytes_is_idempotent(self, store: ArtifactStore) -> None:
        first = store.put_bytes(b"same bytes")
        second = store.put_bytes(b"same bytes")
        assert first == second
        assert list(store.digests()) == [first[0]]
        assert store.read_bytes(*first) == b"same bytes"

    def test_commit_twice_returns_the_same_result(self, store: ArtifactStore) -> None:
        writer = store.writer()
        writer.write(b"once")
        assert writer.commit() == writer.commit()

    def test_abort_publishes_nothing(self, store: ArtifactStore) -> None:
        writer = store.writer()
        writer.write(b"never published")
        writer.abort()
        digest = "b3:" + blake3(b"never published").hexdigest()
        assert not store.exists(digest)
        assert list(store.digests()) == []

    def test_a_writer_whose_block_fails_publishes_nothing(self, store: ArtifactStore) -> None:
        writer: Any = store.writer()  # every writer is also a context manager that aborts unless committed
        with pytest.raises(RuntimeError, match="serializer broke"), writer:
            writer.write(b"half an object")
            raise RuntimeError("serializer broke")
        assert not store.exists("b3:" + blake3(b"half an object").hexdigest())
        assert list(store.digests()) == []

    def test_writers_racing_on_the_same_object_publish_it_once_intact(self, store: ArtifactStore) -> None:
        data = os.urandom(200_000)

        def write(_: int) -> tuple[str, int]:
            writer = store.writer()
            for start in range(0, len(data), 50_000):
                writer.write(data[start : start + 50_000])
            return writer.commit()

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = set(pool.map(write, range(8)))
        assert results == {("b3:" + blake3(data).hexdigest(), len(data))}
        [(digest, size)] = results
        assert list(store.digests()) == [digest]
        assert store.read_bytes(digest, size) == data

    def test_rewriting_repairs_a_damaged_object(self, store: ArtifactStore) -> None:
        digest, size = store.put_bytes(b"0123456789")
        self.replace_bytes(store, digest, b"012")
        assert store.put_bytes(b"0123456789") == (digest, size)
        assert store.read_bytes(digest, size) == b"0123456789"

    def test_writing_after_commit_or_abort_is_refused(self, store: ArtifactStore) -> None:
        committed = store.writer()
        committed.write(b"x")
        committed.commit()
        with pytest.raises(StoreError, match="after commit"):
            committed.write(b"more")
        aborted = store.writer()
        aborted.abort()
        with pytest.raises(StoreError, match="aborted"):
            aborted.commit()

    def test_flipped_byte_is_detected_on_read(self, store: ArtifactStore) -> None:
        digest, size = store.put_bytes(b"precious model weights")
        self.replace_bytes(store, digest, b"precious model weightZ")
        with pytest.raises(CorruptObject, match=rf"{digest}.*cairn verify"):
            store.read_bytes(digest, size)
        with pytest.raises(CorruptObject, match=digest):
            store.read_bytes(digest)

    def test_truncated_object_is_detected_by_its_size(self, store: ArtifactStore) -> None:
        digest, size = store.put_bytes(b"0123456789")
        self.replace_bytes(store, digest, b"01234")
        with pytest.raises(CorruptObject, match=r"5 bytes but its record says 10"):
            store.read_bytes(digest, size)

    def test_wrong_recorded_size_is_detected(self, store: ArtifactStore) -> None:
        digest, size = store.put_bytes(b"0123456789")
        with pytest.raises(CorruptObject, match=r"10 bytes but its record says 11"):
            store.read_bytes(digest, size + 1)

    def test_missing_object_raises_missing(self, store: ArtifactStore) -> None:
        digest = "b3:" + blake3(b"never written").hexdigest()
        with pytest.raises(MissingObject, match=rf"{digest} is missing.*cairn verify"):
            store.read_bytes(digest)
        assert not store.exists(digest)
        assert store.size(digest) is None

    def test_exists_and_size_describe_stored_objects(self, store: ArtifactStore) -> None:
        digest, size = store.put_bytes(b"four")
        assert store.exists(digest)
        assert store.size(digest) == size == 4

    def test_delete_removes_and_is_idempotent(self, store: ArtifactStore) -> None:
        digest, _ = store.put_bytes(b"to delete")
        store.delete(digest)
        store.delete(digest)
        assert not store.exists(digest)
        with pytest.raises(MissingObject):
            store.read_bytes(digest)

    @pytest.mark.parametrize("digest", HOSTILE_DIGESTS)
    @pytest.mark.parametrize("method", ["read_bytes", "exists", "size", "delete", "local_path"])
    def test_hostile_digest_is_refused(self, store: ArtifactStore, method: str, digest: str) -> None:
        with pytest.raises(StoreError, match="invalid object digest"):
            getattr(store, method)(digest)

    def test_digests_lists_every_object_in_order(self, store: ArtifactStore) -> None:
        assert list(store.digests()) == []
        written = {store.put_bytes(f"object {n}".encode())[0] for n in range(20)}
        assert list(store.digests()) == sorted(written)

    def test_local_path_is_none_or_the_object_file(self, store: ArtifactStore) -> None:
        digest, _ = store.put_bytes(b"where am I")
        path = store.local_path(digest)
        if path is not None:
            with open(path, "rb") as file:
                assert file.read() == b"where am I"

    def test_writer_is_a_minimal_binary_file(self, store: ArtifactStore) -> None:
        """Serializers pass the writer to pyarrow and numpy, which need ``tell`` and ``closed`` too."""
        writer: Any = store.writer()
        writer.write(b"abc")
        assert writer.tell() == 3
        assert writer.closed is False
        writer.abort()
        assert writer.closed is True
