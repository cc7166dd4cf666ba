"""Group durability: the objects of steps that finish together are made durable together, and a row is only
ever written after its object is durable under its name (real files, a real SQLite database)."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import cairn
from cairn.engine.run import Engine
from cairn.errors import MissingObject
from cairn.storage import artifacts
from cairn.storage.artifacts import LocalArtifactStore, PendingObject, deferred_publishing
from tests.conftest import ProjectFactory

LAYER = """
from cairn import asset

@asset
def a() -> dict:
    return {"v": 1}

@asset
def b() -> dict:
    return {"v": 2}

@asset
def c() -> dict:
    return {"v": 3}

@asset
def total(a: dict, b: dict, c: dict) -> int:
    return a["v"] + b["v"] + c["v"]
"""

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")


def rows(root: Path) -> dict[str, str]:
    """asset -> data version of every materialization recorded so far."""
    db = root / ".cairn" / "cairn.db"
    if not db.exists():
        return {}
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        return {str(a): str(v) for a, v in conn.execute("SELECT asset, data_version FROM materializations")}


def test_a_deferred_object_gets_its_name_only_when_published(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    with deferred_publishing() as unpublished:
        digest, size = store.put_bytes(b"hello")
        assert not os.path.exists(store.object_path(digest))
        assert store.read_bytes(digest, size) == b"hello", "the thread that wrote it reads it before publication"
    assert [obj.digest for obj in unpublished.objects] == [digest]
    with pytest.raises(MissingObject):
        store.read_bytes(digest, size)
    store.publish(unpublished.objects)
    assert store.read_bytes(digest, size) == b"hello"
    assert os.listdir(store.tmp_dir) == []
    with deferred_publishing() as again:
        assert store.put_bytes(b"hello") == (digest, size)
    assert again.objects == [], "an object already published is not published twice"
    assert os.listdir(store.tmp_dir) == []


def test_an_object_already_stored_is_not_written_durable_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    digest, size = store.put_bytes(b"the same bytes")
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    assert store.put_bytes(b"the same bytes") == (digest, size)
    assert synced == [], "the copy that is thrown away was fsynced (its name already holds durable bytes)"
    assert os.listdir(store.tmp_dir) == []
    assert store.read_bytes(digest, size) == b"the same bytes"
    store.put_bytes(b"other bytes")
    assert len(synced) >= 2, "a new object is fsynced, and its folder"


def test_objects_of_another_store_are_refused(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    other = PendingObject(str(tmp_path / "elsewhere"), "b3:" + "0" * 64, 1, "x.part")
    with pytest.raises(cairn.errors.StoreError, match="not to this store"):
        store.publish([other])
    with pytest.raises(cairn.errors.StoreError, match="not the name of a temporary file"):
        store.publish([PendingObject(store.root, "b3:" + "0" * 64, 1, "../objects/x")])


@linux_only
@pytest.mark.parametrize("whole_file_system", [False, True], ids=["fsync each", "syncfs"])
def test_publishing_makes_bytes_durable_before_names_and_names_before_returning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole_file_system: bool
) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    with deferred_publishing() as unpublished:
        for i in range(6):
            store.put_bytes(f"object {i}".encode())
    events: list[tuple[str, str]] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def link(src: str, dst: str) -> None:
        events.append(("link", dst))
        real_link(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(artifacts, "_syncfs_safe", lambda own: whole_file_system)
    monkeypatch.setattr(artifacts, "_syncfs", lambda path: events.append(("syncfs", path)))
    store.publish(unpublished.objects)

    for obj in unpublished.objects:
        final = store.object_path(obj.digest)
        linked = events.index(("link", final))
        tmp = os.path.join(store.tmp_dir, obj.tmp_name)
        durable = ("syncfs", store.tmp_dir) if whole_file_system else ("fsync", tmp)
        assert events.index(durable) < linked, f"{obj.digest} was named before its bytes were durable"
        assert ("fsync", os.path.dirname(final)) in events[linked + 1 :], "its folder was not made durable after"
        assert os.path.isfile(final)
    shards = [path for kind, path in events if kind == "fsync" and os.path.dirname(path) == store.objects_dir]
    assert len(shards) == len(set(shards)), "a shard folder was fsynced more than once"


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_rows_are_written_only_after_their_objects_are_durable(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    root = make_project(LAYER, executor=executor)
    groups: list[int] = []
    violations: list[str] = []
    real_publish = LocalArtifactStore.publish

    def publish(self: LocalArtifactStore, objects: Sequence[PendingObject]) -> None:
        recorded = set(rows(root).values())
        for obj in objects:
            if obj.digest in recorded:
                violations.append(f"a row references {obj.digest} before it was published")
            if os.path.exists(self.object_path(obj.digest)):
                violations.append(f"{obj.digest} had its name before it was durable")
        real_publish(self, objects)
        groups.append(len(objects))

    monkeypatch.setattr(LocalArtifactStore, "publish", publish)
    result = cairn.materialize(project=root)
    assert result.ok and cairn.load("total", project=root) == 6
    assert violations == []
    store = LocalArtifactStore(root / ".cairn" / "artifacts")
    assert all(store.exists(version) for version in rows(root).values())
    assert os.listdir(store.tmp_dir) == []
    if executor == "inline":
        assert groups == [3, 1], "the three independent steps were not published together"


def test_children_start_only_from_committed_results(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(LAYER, executor="process")
    started: list[tuple[str, set[str]]] = []
    real_submit: Callable[[Engine, Any], None] = Engine._submit

    def submit(self: Engine, step: Any) -> None:
        started.append((step.asset, set(rows(root))))
        real_submit(self, step)

    monkeypatch.setattr(Engine, "_submit", submit)
    assert cairn.materialize(project=root).ok
    [(_, committed)] = [entry for entry in started if entry[0] == "total"]
    assert committed == {"a", "b", "c"}


def test_a_group_that_cannot_be_made_durable_records_nothing_and_a_rerun_completes(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(LAYER)

    def broken(self: LocalArtifactStore, objects: Sequence[PendingObject]) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(LocalArtifactStore, "publish", broken)
    failed = cairn.materialize(project=root)
    assert not failed.ok
    assert {s.asset: s.status for s in failed.steps} == {
        "a": "failed",
        "b": "failed",
        "c": "failed",
        "total": "skipped",
    }
    assert all("could not be written durably" in (s.error or "") for s in failed.steps if s.status == "failed")
    assert rows(root) == {}
    store = LocalArtifactStore(root / ".cairn" / "artifacts")
    assert list(store.digests()) == [] and os.listdir(store.tmp_dir) == []

    monkeypatch.undo()
    again = cairn.materialize(project=root)
    assert again.ok and again.count("executed") == 4


SLOW_AND_FAST = """
import time

from cairn import asset

@asset
def a_slow() -> int:
    time.sleep(0.2)
    return 1

@asset
def b_fast() -> int:
    return 2

@asset
def c_fast() -> int:
    return 3
"""


def test_a_long_steps_result_is_recorded_before_the_next_inline_step_runs(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Grouping is for short steps: a crash must not lose a long step's result to a group that waits."""
    root = make_project(SLOW_AND_FAST)
    started: list[tuple[str, set[str]]] = []
    real_submit: Callable[[Engine, Any], None] = Engine._submit

    def submit(self: Engine, step: Any) -> None:
        started.append((step.asset, set(rows(root))))
        real_submit(self, step)

    monkeypatch.setattr(Engine, "_submit", submit)
    assert cairn.materialize(project=root).ok
    assert started == [("a_slow", set()), ("b_fast", {"a_slow"}), ("c_fast", {"a_slow"})]
