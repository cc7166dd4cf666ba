"""The artifact store on object storage (a real S3-compatible server on loopback) and on a shared folder.

S3: pipelines run, cache, verify and heal with ``[storage] artifacts = "s3://..."``; options reach the workers;
uploads are atomic (an interrupted or killed upload leaves nothing at the object's key); misconfiguration
gives errors that say what to fix. Shared folder: several processes publish into one folder at once.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

import cairn
from cairn.config import load_settings
from cairn.engine.api import open_stores
from cairn.engine.integrity import gc, verify
from cairn.engine.jobs import StepJob
from cairn.errors import ConfigError, StoreError
from cairn.storage import artifacts as artifacts_module
from cairn.storage.artifacts import LocalArtifactStore
from cairn.storage.factory import open_artifacts
from cairn.storage.remote import FsspecArtifactStore
from tests.conftest import ProjectFactory, cli
from tests.s3server import S3Server, StallingProxy

PIPELINE = """
import pyarrow as pa

from cairn import Context, Files, asset


@asset(params={"n": 6})
def events(ctx: Context) -> pa.Table:
    n = ctx.params["n"]
    return pa.table({"user": [i % 3 for i in range(n)], "amount": [float(i) for i in range(n)]})


@asset
def totals(events: pa.Table) -> dict:
    out = {}
    for user, amount in zip(events["user"].to_pylist(), events["amount"].to_pylist()):
        out[str(user)] = out.get(str(user), 0.0) + amount
    return out


@asset
def report(ctx: Context, totals: dict) -> Files:
    folder = ctx.workdir / "report"
    (folder / "by_user").mkdir(parents=True)
    (folder / "summary.txt").write_text(f"{len(totals)} users")
    for user, total in sorted(totals.items()):
        (folder / "by_user" / f"{user}.txt").write_text(str(total))
    return Files(folder)
"""

STEPS = ["events", "totals", "report"]
AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE")


@pytest.fixture(autouse=True)
def no_ambient_aws_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets reaches the server: options in cairn.toml, or the variables it sets itself."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def toml_options(options: dict[str, Any]) -> str:
    """An inline TOML table of (nested) string options."""
    parts = []
    for name, value in options.items():
        parts.append(f"{name} = {toml_options(value) if isinstance(value, dict) else json.dumps(value)}")
    return "{ " + ", ".join(parts) + " }"


def s3_project(
    make_project: ProjectFactory, url: str, options: dict[str, Any] | None, executor: str = "process"
) -> Path:
    storage = f'[storage]\nartifacts = "{url}"\n'
    if options is not None:
        storage += f"artifacts_options = {toml_options(options)}\n"
    return make_project(PIPELINE, executor=executor, extra=storage)


def run_json(project: Path, *args: str) -> dict[str, Any]:
    out = cli("run", "-C", str(project), "--json", *args)
    assert out.returncode == 0, out.stdout + out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {step["asset"]: step["status"] for step in result["steps"]}


def verify_json(project: Path) -> tuple[int, dict[str, Any]]:
    out = cli("verify", "-C", str(project), "--json")
    return out.returncode, json.loads(out.stdout)


def key_of(bucket: str, prefix: str, digest: str) -> str:
    hex_digest = digest.removeprefix("b3:")
    return f"{bucket}/{prefix}/objects/{hex_digest[:2]}/{hex_digest[2:]}"


def closed_port() -> int:
    """A loopback port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ---- a pipeline on S3 --------------------------------------------------------------------------


def test_a_pipeline_on_s3_runs_caches_verifies_and_heals_a_deleted_object(
    make_project: ProjectFactory, s3_server: S3Server, s3_bucket: str
) -> None:
    """The process executor's workers get the endpoint and credentials from the step job: no AWS_* is set."""
    project = s3_project(make_project, f"s3://{s3_bucket}/team/cairn", s3_server.options())
    first = run_json(project)
    assert first["status"] == "succeeded" and statuses(first) == dict.fromkeys(STEPS, "executed")
    second = run_json(project)
    assert statuses(second) == dict.fromkeys(STEPS, "cached")

    fs = s3_server.filesystem()
    stored = fs.find(f"{s3_bucket}/team/cairn/objects")
    code, report = verify_json(project)
    assert code == 0 and report["ok"] is True and report["unreferenced"] == 0
    assert report["objects"] == len(stored) == 7  # events, totals, the report's manifest and its 4 files
    assert not (project / ".cairn" / "artifacts").exists()
    assert fs.find(f"{s3_bucket}/team/cairn/tmp") == []

    totals = next(step for step in second["steps"] if step["asset"] == "totals")
    fs.rm_file(key_of(s3_bucket, "team/cairn", totals["data_version"]))
    code, report = verify_json(project)
    assert code == 1 and [m["used_by"] for m in report["missing"]] == [["totals"]]
    healed = run_json(project)
    assert statuses(healed) == {"events": "cached", "totals": "executed", "report": "cached"}
    healed_totals = next(step for step in healed["steps"] if step["asset"] == "totals")
    assert healed_totals["reason"].startswith("stored output missing")
    assert healed_totals["data_version"] == totals["data_version"]
    assert verify_json(project)[0] == 0

    assert cairn.load("totals", project=project) == {"0": 3.0, "1": 5.0, "2": 7.0}
    folder = cairn.load("report", project=project)
    assert (folder / "summary.txt").read_text() == "3 users" and (folder / "by_user" / "2.txt").read_text() == "7.0"


def test_aws_environment_variables_configure_the_store_without_options(
    make_project: ProjectFactory, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = s3_server.options()
    monkeypatch.setenv("AWS_ENDPOINT_URL", options["endpoint_url"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", options["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", options["secret"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    project = s3_project(make_project, f"s3://{s3_bucket}", None)
    result = run_json(project)
    assert statuses(result) == dict.fromkeys(STEPS, "executed")
    assert len(s3_server.filesystem().find(f"{s3_bucket}/objects")) == 7
    assert verify_json(project)[0] == 0


def test_verify_quarantines_a_corrupt_object_on_s3_and_gc_removes_orphans(
    make_project: ProjectFactory, s3_server: S3Server, s3_bucket: str
) -> None:
    project = s3_project(make_project, f"s3://{s3_bucket}/p", s3_server.options(), executor="inline")
    first = cairn.materialize(project=project)
    fs = s3_server.filesystem()
    digest = first["events"].data_version
    assert digest is not None
    key = key_of(s3_bucket, "p", digest)
    data = bytearray(fs.cat_file(key))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(key, bytes(data))
    code, report = verify_json(project)
    [corrupt] = report["corrupt"]
    assert code == 1 and corrupt["digest"] == digest and corrupt["used_by"] == ["events"]
    quarantined = f"{s3_bucket}/p/quarantine/{digest.removeprefix('b3:')}"
    assert corrupt["moved_to"].endswith(f"({quarantined})") and fs.exists(quarantined) and not fs.exists(key)
    again = cairn.materialize(project=project)
    assert again["events"].status == "executed" and again["totals"].status == "cached"

    with open_stores(load_settings(project)) as stores:
        orphan, size = stores.artifacts.put_bytes(b"written by a step that never committed")
        dry = gc(stores.meta, stores.artifacts)
        assert dry.objects == ((orphan, size),) and stores.artifacts.exists(orphan)
        applied = gc(stores.meta, stores.artifacts, apply=True)
        assert applied.objects == ((orphan, size),) and not stores.artifacts.exists(orphan)
        assert verify(stores.meta, stores.artifacts).ok


# ---- atomic uploads ------------------------------------------------------------------------------


def test_an_object_already_stored_is_not_uploaded_again(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    """Content addressing: the same name with the same size is the same bytes, so the upload is skipped."""
    data = os.urandom(300_000)
    url = f"s3://{s3_bucket}/skip"
    open_artifacts(url, tmp_path, s3_server.options()).put_bytes(data)
    with StallingProxy(s3_server.endpoint, stall_after=64_000) as proxy:
        through_proxy = FsspecArtifactStore(url, s3_server.options(endpoint_url=proxy.endpoint))
        assert through_proxy.put_bytes(data) == ("b3:" + blake3(data).hexdigest(), len(data))
        assert not proxy.stalled.is_set()  # only small requests went out: no upload


def test_an_upload_cut_off_midway_publishes_nothing_and_leaves_no_spool(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cairn.storage.remote.SPOOL_MAX_BYTES", 100_000)  # spill to a local file
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = os.urandom(1_500_000)
    digest = "b3:" + blake3(data).hexdigest()
    url = f"s3://{s3_bucket}/cut"
    fs = s3_server.filesystem()
    with StallingProxy(s3_server.endpoint, stall_after=200_000, drop=True) as proxy:
        options = s3_server.options(endpoint_url=proxy.endpoint, config_kwargs={"retries": {"max_attempts": 1}})
        store = FsspecArtifactStore(url, options)
        writer = store.writer()
        writer.write(data)
        with pytest.raises(StoreError, match=rf"cannot write object {digest}.*reachable at http://127\.0\.0\.1"):
            writer.commit()
        assert proxy.stalled.is_set()
    assert not fs.exists(key_of(s3_bucket, "cut", digest))
    assert fs.call_s3("list_multipart_uploads", Bucket=s3_bucket).get("Uploads", []) == []
    assert list(tmp_path.iterdir()) == []  # the local spool file is gone
    direct = FsspecArtifactStore(url, s3_server.options())
    assert list(direct.digests()) == []
    assert direct.put_bytes(data) == (digest, len(data)) and direct.read_bytes(digest, len(data)) == data


KILLED_WRITER = """
import json, sys
from cairn.storage.remote import FsspecArtifactStore

url, options = sys.argv[1], json.loads(sys.argv[2])
FsspecArtifactStore(url, options).put_bytes(b"model weights " * 200_000)
print("committed", flush=True)
"""


def test_a_writer_killed_during_its_upload_leaves_no_object_at_the_final_key(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    data = b"model weights " * 200_000
    digest = "b3:" + blake3(data).hexdigest()
    url = f"s3://{s3_bucket}/killed"
    with StallingProxy(s3_server.endpoint, stall_after=500_000) as proxy:
        options = s3_server.options(endpoint_url=proxy.endpoint)
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, url, json.dumps(options)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proxy.stalled.wait(timeout=120), "the writer never started its upload"
        finally:
            child.send_signal(signal.SIGKILL)
            out, _ = child.communicate()
    assert child.returncode == -signal.SIGKILL and "committed" not in out
    store = FsspecArtifactStore(url, s3_server.options())
    assert not store.exists(digest) and list(store.digests()) == []
    assert not s3_server.filesystem().exists(key_of(s3_bucket, "killed", digest))


def test_gc_aborts_multipart_uploads_that_a_killed_writer_left_under_the_prefix(
    make_project: ProjectFactory, s3_server: S3Server, s3_bucket: str
) -> None:
    project = s3_project(make_project, f"s3://{s3_bucket}/gc", s3_server.options(), executor="inline")
    fs = s3_server.filesystem()

    def start_upload(key: str) -> str:
        upload_id: str = fs.call_s3("create_multipart_upload", Bucket=s3_bucket, Key=key)["UploadId"]
        fs.call_s3("upload_part", Bucket=s3_bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"p" * 1000)
        return upload_id

    ours = start_upload("gc/objects/ab/" + "c" * 62)
    foreign = start_upload("elsewhere/objects/ab/" + "c" * 62)
    with open_stores(load_settings(project)) as stores:
        # The test server dates every upload to 2010, so an hour later than now both are old enough.
        later = time.time() + 7200
        dry = gc(stores.meta, stores.artifacts, now=later)
        assert dry.temp_files == ((f"{s3_bucket}/gc/objects/ab/{'c' * 62}?uploadId={ours}", 1000),)
        gc(stores.meta, stores.artifacts, apply=True, now=later)
    left = fs.call_s3("list_multipart_uploads", Bucket=s3_bucket).get("Uploads", [])
    assert [upload["UploadId"] for upload in left] == [foreign]


# ---- configuration and errors ----------------------------------------------------------------------


def test_a_missing_bucket_is_a_clear_error_before_anything_is_read(s3_server: S3Server, tmp_path: Path) -> None:
    store = open_artifacts("s3://no-such-bucket/prefix", tmp_path, s3_server.options())
    with pytest.raises(ConfigError, match=r"bucket 'no-such-bucket' does not exist at http://127.*aws s3 mb"):
        store.exists("b3:" + "0" * 64)
    with pytest.raises(ConfigError, match="does not exist"):
        store.put_bytes(b"x")


def test_a_run_against_a_missing_bucket_fails_its_steps_with_the_fix(
    make_project: ProjectFactory, s3_server: S3Server
) -> None:
    project = s3_project(make_project, "s3://no-such-bucket/prefix", s3_server.options())
    out = cli("run", "-C", str(project))
    assert out.returncode == 1
    assert "bucket 'no-such-bucket' does not exist" in out.stdout + out.stderr


def test_wrong_credentials_are_a_clear_error(s3_server_denying_all: S3Server, tmp_path: Path) -> None:
    store = open_artifacts("s3://some-bucket/prefix", tmp_path, s3_server_denying_all.options())
    with pytest.raises(ConfigError, match=r"access to bucket 'some-bucket' was denied.*AWS_ACCESS_KEY_ID"):
        list(store.digests())


def test_an_unreachable_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    options = {"endpoint_url": endpoint, "key": "k", "secret": "s", "config_kwargs": {"retries": {"max_attempts": 1}}}
    store = open_artifacts("s3://bucket/prefix", tmp_path, options)
    with pytest.raises(StoreError, match=rf"cannot reach the object store at {endpoint}.*AWS_ENDPOINT_URL"):
        store.read_bytes("b3:" + "0" * 64)


def test_unknown_s3_options_are_refused_with_the_closest_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'endpoint' is not an option of s3:// stores.*Did you mean 'endpoint_url'"):
        open_artifacts("s3://bucket/prefix", tmp_path, {"endpoint": "http://127.0.0.1:9000"})
    with pytest.raises(ConfigError, match=r"client_kwargs = \{ region_name"):
        open_artifacts("s3://bucket/prefix", tmp_path, {"region": "eu-west-1"})
    with pytest.raises(ConfigError, match="names no bucket"):
        open_artifacts("s3://", tmp_path)


def test_artifacts_options_must_be_a_table_and_only_go_with_urls(make_project: ProjectFactory, tmp_path: Path) -> None:
    project = make_project(PIPELINE, extra='[storage]\nartifacts_options = "endpoint_url=http://x"\n')
    with pytest.raises(ConfigError, match=r"\[storage\] artifacts_options must be a table of fsspec storage options"):
        load_settings(project)
    with pytest.raises(ConfigError, match="is not an fsspec URL, so nothing takes them"):
        open_artifacts(".cairn/artifacts", tmp_path, {"endpoint_url": "http://127.0.0.1:9000"})
    project = make_project(PIPELINE, extra="[storage]\nartifacts_options = { anon = true }\n", name="local")
    assert load_settings(project).artifacts_options == {"anon": True}
    out = cli("status", "-C", str(project))
    assert out.returncode == 2 and "storage.artifacts = '.cairn/artifacts' is not an fsspec URL" in out.stderr


def test_step_jobs_carry_the_options_but_do_not_print_them() -> None:
    job = StepJob("/p", "s3://b/p", "a", "", "run", 1, "b3:k", {}, 0, artifacts_options={"secret": "hunter2"})
    assert pickle.loads(pickle.dumps(job)).artifacts_options == {"secret": "hunter2"}
    assert "hunter2" not in repr(job)


def test_without_s3fs_the_error_names_the_extra_to_install(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["s3fs"] = None  # what an environment without s3fs looks like to an import
        from cairn.errors import ConfigError
        from cairn.storage.factory import open_artifacts
        try:
            open_artifacts("s3://bucket/prefix", ".")
        except ConfigError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "needs s3fs, which is not installed" in out.stdout and "pip install 'cairn[s3]'" in out.stdout


# ---- a folder shared by several machines -----------------------------------------------------------

SHARED_WRITER = """
import json, os, sys, time
from cairn.storage.artifacts import LocalArtifactStore

root, go, seeds = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
store = LocalArtifactStore(root)
while not os.path.exists(go):
    time.sleep(0.01)
written = {}
for seed in seeds:
    data = (f"object {seed} ".encode() * (1 + seed * 997 % 40_000))
    writer = store.writer()
    for start in range(0, len(data), 7_001):
        writer.write(data[start : start + 7_001])
    written[seed] = writer.commit()
print(json.dumps(written))
"""


def payload(seed: int) -> bytes:
    return f"object {seed} ".encode() * (1 + seed * 997 % 40_000)


def test_processes_sharing_one_folder_publish_the_same_and_different_objects_at_once(tmp_path: Path) -> None:
    root, go = tmp_path / "shared", tmp_path / "go"
    shared = list(range(12))  # every process writes these
    own = {n: list(range(100 + 10 * n, 108 + 10 * n)) for n in range(4)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", SHARED_WRITER, str(root), str(go), json.dumps(shared + own[n])],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    go.touch()
    results = []
    for child in children:
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0
        results.append({int(seed): tuple(result) for seed, result in json.loads(out).items()})
    expected = {seed: ("b3:" + blake3(payload(seed)).hexdigest(), len(payload(seed))) for seed in range(200)}
    for n, written in enumerate(results):
        assert written == {seed: expected[seed] for seed in shared + own[n]}
    store = LocalArtifactStore(root)
    everything = shared + [seed for seeds in own.values() for seed in seeds]
    assert list(store.digests()) == sorted(expected[seed][0] for seed in everything)
    for seed in everything:
        assert store.read_bytes(*expected[seed]) == payload(seed)
    assert os.listdir(store.tmp_dir) == []


def test_temporary_files_name_their_host_and_process(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    writer = store.writer()
    writer.write(b"in flight")
    [name] = os.listdir(store.tmp_dir)
    host = re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname()).strip("_.")
    assert name.startswith(f"{host}-{os.getpid()}-") and name.endswith(".part")
    writer.abort()


def test_publishing_never_replaces_an_intact_object(tmp_path: Path) -> None:
    """A reader holding the published file keeps it: a second writer of the same bytes does not swap the inode."""
    store = LocalArtifactStore(tmp_path)
    digest, size = store.put_bytes(b"published once")
    before = os.stat(store.object_path(digest)).st_ino
    assert store.put_bytes(b"published once") == (digest, size)
    assert os.stat(store.object_path(digest)).st_ino == before
    assert os.listdir(store.tmp_dir) == []


def test_a_folder_without_hard_links_falls_back_to_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(source: str, target: str) -> None:
        raise PermissionError(1, "Operation not permitted", target)  # what Linux answers on e.g. vfat

    monkeypatch.setattr(artifacts_module.os, "link", no_links)
    store = LocalArtifactStore(tmp_path)
    digest, size = store.put_bytes(b"no links here")
    assert store.put_bytes(b"no links here") == (digest, size)
    assert store.read_bytes(digest, size) == b"no links here" and os.listdir(store.tmp_dir) == []
