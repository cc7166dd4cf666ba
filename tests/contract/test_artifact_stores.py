"""The ArtifactStore and StoreMaintenance contract suites run over every artifact store, plus what is specific
to each."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.errors import ConfigError, StoreError
from cairn.storage.artifacts import LocalArtifactStore
from cairn.storage.base import ArtifactStore, StoreMaintenance
from cairn.storage.factory import open_artifacts
from cairn.storage.memory import MemoryArtifactStore
from cairn.storage.remote import FsspecArtifactStore
from cairn.testing.artifacts import ArtifactStoreContract
from tests.s3server import S3Server


class StoreMaintenanceContract:
    """Behaviour every store's `StoreMaintenance` must have; joined by each store's test class below."""

    def test_the_store_offers_maintenance(self, store: ArtifactStore) -> None:
        assert isinstance(store, StoreMaintenance)

    def test_quarantine_takes_the_object_out_and_leaves_the_others(self, store: ArtifactStore) -> None:
        assert isinstance(store, StoreMaintenance)
        damaged, _ = store.put_bytes(b"to be quarantined")
        intact, size = store.put_bytes(b"left alone")
        assert store.quarantine(damaged, "quarantine")
        assert not store.exists(damaged) and list(store.digests()) == [intact]
        assert store.read_bytes(intact, size) == b"left alone"

    def test_a_store_after_plain_writes_has_no_leftovers(self, store: ArtifactStore) -> None:
        assert isinstance(store, StoreMaintenance)
        digest, _ = store.put_bytes(b"published")
        later = time.time() + 60
        assert store.stale_uploads(before=later) == []
        assert store.stale_caches(set(), before=later) == []
        assert store.exists(digest)

    def test_removing_a_leftover_it_did_not_name_is_refused(self, store: ArtifactStore) -> None:
        assert isinstance(store, StoreMaintenance)
        with pytest.raises(StoreError, match="is not an"):
            store.remove_upload("/elsewhere/tmp/x.part")
        with pytest.raises(StoreError, match="is not an? "):
            store.remove_cache("/elsewhere/files/" + "0" * 64)

    def test_tidy_keeps_every_object(self, store: ArtifactStore) -> None:
        assert isinstance(store, StoreMaintenance)
        removed, _ = store.put_bytes(b"removed")
        kept, size = store.put_bytes(b"kept")
        store.delete(removed)
        store.tidy()
        assert list(store.digests()) == [kept] and store.read_bytes(kept, size) == b"kept"


class TestLocalArtifactStore(ArtifactStoreContract, StoreMaintenanceContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> ArtifactStore:
        return LocalArtifactStore(tmp_path / "artifacts")

    def replace_bytes(self, store: ArtifactStore, digest: str, data: bytes) -> None:
        assert isinstance(store, LocalArtifactStore)
        Path(store.object_path(digest)).write_bytes(data)


class TestMemoryArtifactStore(ArtifactStoreContract, StoreMaintenanceContract):
    @pytest.fixture
    def store(self) -> ArtifactStore:
        return MemoryArtifactStore()

    def replace_bytes(self, store: ArtifactStore, digest: str, data: bytes) -> None:
        assert isinstance(store, MemoryArtifactStore)
        store.objects[digest] = data


class TestFsspecArtifactStore(ArtifactStoreContract, StoreMaintenanceContract):
    """Runs over fsspec's in-memory filesystem: the staged path of filesystems that are not object stores."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[ArtifactStore]:
        url = f"memory://cairn-test-{uuid.uuid4().hex}/prefix"
        store = open_artifacts(url, tmp_path)
        assert isinstance(store, FsspecArtifactStore)
        yield store
        if store.fs.exists(url):
            store.fs.rm(url, recursive=True)

    def replace_bytes(self, store: ArtifactStore, digest: str, data: bytes) -> None:
        assert isinstance(store, FsspecArtifactStore)
        store.fs.pipe_file(store.object_key(digest), data)


class TestS3ArtifactStore(ArtifactStoreContract, StoreMaintenanceContract):
    """Runs over a real S3-compatible server on loopback, one bucket per test."""

    @pytest.fixture
    def store(self, s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> ArtifactStore:
        store = open_artifacts(f"s3://{s3_bucket}/some/prefix", tmp_path, s3_server.options())
        assert isinstance(store, FsspecArtifactStore)
        return store

    def replace_bytes(self, store: ArtifactStore, digest: str, data: bytes) -> None:
        assert isinstance(store, FsspecArtifactStore)
        store.fs.pipe_file(store.object_key(digest), data)


def test_local_objects_live_at_objects_ab_cdef(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    digest, _ = store.put_bytes(b"layout")
    hex_digest = digest.removeprefix("b3:")
    assert (tmp_path / "objects" / hex_digest[:2] / hex_digest[2:]).read_bytes() == b"layout"
    assert store.local_path(digest) == str(tmp_path / "objects" / hex_digest[:2] / hex_digest[2:])


def test_local_writer_publishes_nothing_at_a_final_name_before_commit(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    writer = store.writer()
    writer.write(b"in flight")
    assert list(store.digests()) == []
    assert len(os.listdir(store.tmp_dir)) == 1
    writer.commit()
    assert os.listdir(store.tmp_dir) == []
    assert len(list(store.digests())) == 1


def test_local_abort_and_idempotent_commit_leave_no_temporary_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    aborted = store.writer()
    aborted.write(b"dropped")
    aborted.abort()
    store.put_bytes(b"twice")
    store.put_bytes(b"twice")
    assert os.listdir(store.tmp_dir) == []


def test_local_writer_as_context_manager_aborts_when_the_block_fails(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(RuntimeError, match="serializer broke"), store.writer() as writer:
        writer.write(b"half an object")
        raise RuntimeError("serializer broke")
    assert list(store.digests()) == []
    assert os.listdir(store.tmp_dir) == []


def test_local_store_replaces_a_truncated_object_on_rewrite(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    digest, size = store.put_bytes(b"0123456789")
    Path(store.object_path(digest)).write_bytes(b"012")
    store.put_bytes(b"0123456789")
    assert store.read_bytes(digest, size) == b"0123456789"


def test_local_store_names_stale_temp_files_and_caches_and_removes_only_those(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    kept, _ = store.put_bytes(b"a manifest that is kept")
    os.makedirs(store.tmp_dir, exist_ok=True)  # the write made it
    old_part, fresh_part = os.path.join(store.tmp_dir, "old.part"), os.path.join(store.tmp_dir, "fresh.part")
    Path(old_part).write_bytes(b"x" * 10)
    Path(fresh_part).write_bytes(b"y")
    unkept = os.path.join(store.files_dir, "1" * 64)
    half_built, building = os.path.join(store.files_dir, ".tmp-old"), os.path.join(store.files_dir, ".tmp-new")
    for folder in (os.path.join(store.files_dir, kept.removeprefix("b3:")), unkept, half_built, building):
        os.makedirs(folder)
        Path(folder, "f.txt").write_bytes(b"abc")
    hour_ago = time.time() - 3600
    for path in (old_part, half_built):
        os.utime(path, (hour_ago - 60, hour_ago - 60))
    assert store.stale_uploads(before=hour_ago) == [(old_part, 10)]
    assert store.stale_caches({kept}, before=hour_ago) == [(half_built, 3), (unkept, 3)]
    with pytest.raises(StoreError, match="is not an entry of"):
        store.remove_upload(os.path.join(store.tmp_dir, ".."))
    store.remove_upload(old_part)
    for name, _ in store.stale_caches({kept}, before=hour_ago):
        store.remove_cache(name)
    assert os.listdir(store.tmp_dir) == ["fresh.part"]
    assert sorted(os.listdir(store.files_dir)) == sorted([".tmp-new", kept.removeprefix("b3:")])


def test_local_quarantine_moves_the_object_by_rename_under_the_root(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    digest, _ = store.put_bytes(b"damaged")
    moved = store.quarantine(digest, "quarantine")
    assert moved == str(tmp_path / "quarantine" / digest.removeprefix("b3:"))
    assert Path(moved).read_bytes() == b"damaged" and not store.exists(digest)


def test_open_artifacts_resolves_a_relative_path_against_the_project(tmp_path: Path) -> None:
    store = open_artifacts(".cairn/artifacts", tmp_path)
    assert isinstance(store, LocalArtifactStore)
    assert store.root == str(tmp_path / ".cairn" / "artifacts")
    assert store.url == (tmp_path / ".cairn" / "artifacts").as_uri()


def test_open_artifacts_opens_file_urls_locally(tmp_path: Path) -> None:
    store = open_artifacts((tmp_path / "a b").as_uri(), "/elsewhere")
    assert isinstance(store, LocalArtifactStore)
    assert store.root == str(tmp_path / "a b")


def test_open_artifacts_shares_one_memory_store_for_bare_memory_url(tmp_path: Path) -> None:
    first, second = open_artifacts("memory://", tmp_path), open_artifacts("memory://", tmp_path)
    assert isinstance(first, MemoryArtifactStore)
    assert first is second


def test_open_artifacts_sends_other_urls_to_fsspec(tmp_path: Path) -> None:
    assert isinstance(open_artifacts("memory://bucket/prefix", tmp_path), FsspecArtifactStore)


def test_open_artifacts_refuses_unknown_schemes_and_empty_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'nosuch://bucket/x' cannot be opened.*s3://"):
        open_artifacts("nosuch://bucket/x", tmp_path)
    with pytest.raises(ConfigError, match=r"storage\.artifacts is empty"):
        open_artifacts("  ", tmp_path)


def test_fsspec_writer_spills_large_objects_to_disk_and_uploads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cairn.storage.remote.SPOOL_MAX_BYTES", 1024)
    url = f"memory://cairn-test-{uuid.uuid4().hex}/spill"
    store = FsspecArtifactStore(url)
    data = os.urandom(200_000)
    try:
        digest, size = store.put_bytes(data)
        assert store.read_bytes(digest, size) == data
    finally:
        store.fs.rm(url, recursive=True)


@pytest.fixture
def staged_store() -> Iterator[FsspecArtifactStore]:
    """A fsspec store on a filesystem that is not an object store: uploads are staged under tmp/."""
    url = f"memory://cairn-test-{uuid.uuid4().hex}/staged"
    store = FsspecArtifactStore(url)
    yield store
    if store.fs.exists(url):
        store.fs.rm(url, recursive=True)


def test_fsspec_staged_upload_leaves_nothing_under_tmp(staged_store: FsspecArtifactStore) -> None:
    digest, size = staged_store.put_bytes(b"staged, then moved into place")
    assert staged_store.read_bytes(digest, size) == b"staged, then moved into place"
    assert staged_store.fs.find(f"{staged_store.root}/tmp") == []


def test_fsspec_store_lists_and_removes_only_stale_staging_files(staged_store: FsspecArtifactStore) -> None:
    digest, _ = staged_store.put_bytes(b"a published object")
    leftover = f"{staged_store.root}/tmp/otherhost-123-0123456789abcdef.part"
    staged_store.fs.pipe_file(leftover, b"half")
    assert staged_store.stale_uploads(before=time.time() - 3600) == []  # too young: it may be in progress
    assert staged_store.stale_uploads(before=time.time() + 1) == [(leftover, 4)]
    for name in (staged_store.object_key(digest), "/elsewhere/tmp/x.part", f"{staged_store.root}/tmp/../objects"):
        with pytest.raises(StoreError, match="is not an unfinished upload"):
            staged_store.remove_upload(name)
    staged_store.remove_upload(leftover)
    assert staged_store.stale_uploads(before=time.time() + 1) == [] and staged_store.exists(digest)
