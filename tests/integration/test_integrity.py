"""`cairn verify` and `cairn gc` on a real store: damage is found and healed by the next run; gc keeps references."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import cairn
from cairn.core.records import RUNNING, RunRecord
from cairn.engine.api import open_stores
from cairn.engine.integrity import gc, verify
from cairn.project import load_project
from cairn.storage.artifacts import LocalArtifactStore
from cairn.storage.memory import MemoryArtifactStore
from tests.conftest import ProjectFactory, cli

PIPELINE = """
from cairn import Context, Files, asset


@asset(params={"n": 5})
def numbers(ctx: Context) -> list[int]:
    return list(range(ctx.params["n"]))


@asset
def total(numbers: list[int]) -> int:
    return sum(numbers)


@asset
def folder(ctx: Context, numbers: list[int]) -> Files:
    out = ctx.workdir / "out"
    (out / "sub").mkdir(parents=True)
    (out / "a.txt").write_text("a" * 100)
    (out / "sub" / "b.txt").write_text(",".join(map(str, numbers)))
    return Files(out)
"""


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_project(PIPELINE)


def store(root: Path) -> LocalArtifactStore:
    return LocalArtifactStore(root / ".cairn" / "artifacts")


def object_file(root: Path, digest: str | None) -> Path:
    assert digest is not None
    return Path(store(root).object_path(digest))


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def verify_json(root: Path) -> tuple[int, dict[str, object]]:
    out = cli("verify", "-C", str(root), "--json")
    return out.returncode, json.loads(out.stdout)


def test_a_clean_store_verifies_and_reports_throughput(project: Path) -> None:
    cairn.materialize(project=project)
    code, report = verify_json(project)
    assert code == 0 and report["ok"] is True
    assert report["objects"] == 5  # numbers, total, and folder: its manifest and its two files
    assert report["bytes"] > 100 and report["bytes_per_second"] > 0 and report["unreferenced"] == 0
    text = cli("verify", "-C", str(project))
    assert text.returncode == 0 and "ok: every referenced object is present and intact" in text.stdout


def test_a_flipped_byte_is_found_quarantined_and_recomputed(project: Path) -> None:
    first = cairn.materialize(project=project)
    damaged = object_file(project, first["numbers"].data_version)
    flip_a_byte(damaged)
    code, report = verify_json(project)
    assert code == 1 and report["ok"] is False and report["missing"] == []
    [corrupt] = report["corrupt"]
    assert corrupt["digest"] == first["numbers"].data_version and corrupt["used_by"] == ["numbers"]
    assert "hash to b3:" in corrupt["detail"]
    quarantined = project / ".cairn" / "artifacts" / "quarantine" / damaged.parent.name
    assert corrupt["moved_to"] == str(quarantined.parent / (damaged.parent.name + damaged.name))
    assert not damaged.exists() and Path(corrupt["moved_to"]).exists()
    again = cairn.materialize(project=project)
    assert again["numbers"].status == "executed" and again["numbers"].reason.startswith("stored output missing")
    assert again["total"].status == "cached"  # the recomputed bytes are equal: early cutoff
    assert cairn.load("numbers", project=project) == [0, 1, 2, 3, 4]
    assert verify_json(project)[0] == 0


def test_a_deleted_object_is_reported_missing_and_the_step_runs_again(project: Path) -> None:
    first = cairn.materialize(project=project)
    object_file(project, first["total"].data_version).unlink()
    out = cli("verify", "-C", str(project))
    assert out.returncode == 1 and "missing" in out.stdout and "total" in out.stdout
    code, report = verify_json(project)
    assert code == 1 and [m["used_by"] for m in report["missing"]] == [["total"]]
    again = cairn.materialize(project=project)
    assert again["total"].status == "executed" and again["numbers"].status == "cached"
    assert verify_json(project)[0] == 0


def test_a_damaged_files_member_makes_the_step_rebuild_its_files(project: Path) -> None:
    first = cairn.materialize(project=project)
    manifest = json.loads(object_file(project, first["folder"].data_version).read_bytes())
    assert sorted(manifest) == ["a.txt", "sub/b.txt"]
    flip_a_byte(object_file(project, manifest["a.txt"]["digest"]))
    code, report = verify_json(project)
    assert code == 1
    assert [c["used_by"] for c in report["corrupt"]] == [["folder:a.txt"]]
    [incomplete] = report["incomplete"]
    assert incomplete["digest"] == first["folder"].data_version and "is corrupt" in incomplete["detail"]
    again = cairn.materialize(project=project)
    assert again["folder"].status == "executed" and again["folder"].data_version == first["folder"].data_version
    assert (cairn.load("folder", project=project) / "a.txt").read_text() == "a" * 100
    assert verify_json(project)[0] == 0


def test_gc_removes_orphans_and_stale_temp_files_and_keeps_every_reference(project: Path) -> None:
    cairn.materialize(project=project)
    clean = json.loads(cli("gc", "-C", str(project), "--json").stdout)
    assert clean["objects"] == [] and clean["temp_files"] == [] and clean["applied"] is False
    assert clean["kept"] == 5 and cli("gc", "-C", str(project)).stdout.startswith("nothing to remove")
    artifacts = store(project)
    referenced = sorted(artifacts.digests())
    orphan, size = artifacts.put_bytes(b"an object written by a step that never committed")
    tmp = Path(artifacts.tmp_dir)
    old, fresh = tmp / "old.part", tmp / "fresh.part"
    old.write_bytes(b"x" * 10)
    fresh.write_bytes(b"y")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    dry = json.loads(cli("gc", "-C", str(project), "--json").stdout)
    assert dry["objects"] == [{"digest": orphan, "size": size}]
    assert dry["temp_files"] == [{"path": str(old), "size": 10}] and dry["bytes"] == size + 10
    assert artifacts.exists(orphan) and old.exists()
    text = cli("gc", "-C", str(project))
    assert f"would remove object {orphan}" in text.stdout and "run `cairn gc --apply`" in text.stdout
    applied = cli("gc", "--apply", "-C", str(project))
    assert applied.returncode == 0 and f"removed object {orphan}" in applied.stdout
    assert not artifacts.exists(orphan) and not old.exists() and fresh.exists()
    assert sorted(artifacts.digests()) == referenced
    assert verify_json(project)[0] == 0
    assert json.loads(cli("gc", "-C", str(project), "--json").stdout)["objects"] == []


def test_gc_does_not_apply_while_a_run_is_in_progress(project: Path) -> None:
    cairn.materialize("numbers", project=project)
    settings = load_project(project).settings
    with open_stores(settings) as stores:
        stores.meta.create_run(RunRecord("20261123-000000-aaaaaa", RUNNING, "*", time.time()))
    refused = cli("gc", "--apply", "-C", str(project))
    assert refused.returncode == 2 and "run 20261123-000000-aaaaaa is in progress" in refused.stderr
    assert cli("gc", "-C", str(project)).returncode == 0  # a dry run is always allowed
    with open_stores(settings) as stores:
        report = gc(stores.meta, stores.artifacts, apply=True, stale_after_s=0.0)  # its heartbeat is now stale
    assert report.applied and report.objects == ()


def test_verify_and_gc_work_through_the_port_on_a_memory_store(project: Path) -> None:
    first = cairn.materialize(project=project)
    local = store(project)
    memory = MemoryArtifactStore()
    for digest in local.digests():
        memory.put_bytes(local.read_bytes(digest))
    orphan, _ = memory.put_bytes(b"orphan")
    damaged = first["total"].data_version
    assert damaged is not None
    memory.objects[damaged] = b"not the sum"
    with open_stores(load_project(project).settings) as stores:
        report = verify(stores.meta, memory)
        assert [p.digest for p in report.corrupt] == [damaged] and report.corrupt[0].moved_to == "deleted"
        assert report.unreferenced == 1 and not memory.exists(damaged)
        collected = gc(stores.meta, memory, apply=True)
    assert [d for d, _ in collected.objects] == [orphan] and not memory.exists(orphan)
