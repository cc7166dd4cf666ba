"""Lineage, impact, run diffs and the OpenLineage export, on real runs (SQLite, files, the CLI in a subprocess)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

import cairn
from cairn.core.records import Materialization
from cairn.lineage.diff import Change, diff_environments, diff_materializations
from tests.conftest import ProjectFactory, cli, set_pipeline
from tests.unit.test_openlineage import validate_event

PIPELINE = """
from pathlib import Path

import pyarrow as pa
from cairn import Context, Retry, asset, source

raw = source("raw", path="data/raw.json")


def _shift(x):
    return x + 1


@asset(params={"k": 1})
def clean(ctx: Context, raw: dict) -> list[int]:
    return [_shift(v) * ctx.params["k"] for v in raw["values"]]


@asset
def features(clean: list[int]) -> pa.Table:
    return pa.table({"value": clean, "double": [2 * v for v in clean]})


@asset(retry=Retry(max_attempts=2, backoff=0))
def report(ctx: Context, features: pa.Table) -> dict:
    marker = Path(__file__).with_name("report-failed-once")
    if not marker.exists():
        marker.write_text("x")
        raise RuntimeError("first attempt fails")
    total = sum(features.column("value").to_pylist())
    ctx.log_metric("total", total)
    return {"rows": features.num_rows, "total": total}


@asset
def side(raw: dict) -> int:
    return len(raw["values"])
"""


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    root = make_project(PIPELINE)
    (root / "data").mkdir()
    (root / "data" / "raw.json").write_text('{"values": [3, 1, 2]}', encoding="utf-8")
    return root


def _chain(node: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """Follow the first input down to the bottom: (asset, data version, run, source) per level."""
    out = []
    while True:
        out.append((node["asset"], node["data_version"], node["run_id"], node["source"]))
        if not node["inputs"]:
            return out
        node = node["inputs"][0]


def test_lineage_walks_a_chain_down_to_its_source_with_the_recorded_versions(project: Path) -> None:
    run = cairn.materialize(project=project)
    assert run.ok
    out = cli("lineage", "report", "-C", str(project), "--json")
    assert out.returncode == 0, out.stderr
    tree = json.loads(out.stdout)
    assert _chain(tree) == [
        (name, run[name].data_version, run.run_id, name == "raw") for name in ("report", "features", "clean", "raw")
    ]
    assert tree["code_version"].startswith("b3:") and tree["created_at"] > 0 and tree["partition"] is None
    assert tree["inputs"][0]["cache_key"] == run["features"].cache_key
    text = cli("lineage", "report", "-C", str(project))
    assert text.returncode == 0 and "raw (source)" in text.stdout and "└── features" in text.stdout


def test_lineage_of_an_older_run_and_of_reused_results(project: Path) -> None:
    first = cairn.materialize(project=project)
    second = cairn.materialize(project=project, params={"clean": {"k": 2}})
    assert second["raw"].status == "cached" and second["clean"].status == "executed"
    latest = json.loads(cli("lineage", "report", "-C", str(project), "--json").stdout)
    assert [(a, v, r) for a, v, r, _ in _chain(latest)] == [
        ("report", second["report"].data_version, second.run_id),
        ("features", second["features"].data_version, second.run_id),
        ("clean", second["clean"].data_version, second.run_id),
        ("raw", first["raw"].data_version, first.run_id),  # reused: recorded by the first run
    ]
    old = json.loads(cli("lineage", "report", "--run", first.run_id, "-C", str(project), "--json").stdout)
    assert [(a, v) for a, v, _, _ in _chain(old)] == [
        (name, first[name].data_version) for name in ("report", "features", "clean", "raw")
    ]
    reused = json.loads(cli("lineage", "raw", "--run", second.run_id, "-C", str(project), "--json").stdout)
    assert reused["run_id"] == first.run_id and reused["source"] is True and reused["inputs"] == []


def test_lineage_errors_name_the_fix(project: Path) -> None:
    never = cli("lineage", "report", "-C", str(project))
    assert never.returncode == 2 and "'report' has no materialization yet" in never.stderr
    run = cairn.materialize("side", project=project)
    typo = cli("lineage", "sdie", "-C", str(project))
    assert typo.returncode == 2 and "Did you mean 'side'" in typo.stderr
    other = cli("lineage", "report", "--run", run.run_id, "-C", str(project))
    assert other.returncode == 2 and f"run {run.run_id} has no materialization of 'report'" in other.stderr
    assert "It has: raw, side" in other.stderr


def test_impact_lists_every_descendant_with_its_current_materialization(project: Path) -> None:
    run = cairn.materialize(["clean", "side"], project=project)
    out = cli("impact", "raw", "-C", str(project), "--json")
    assert out.returncode == 0, out.stderr
    found = {entry["asset"]: entry for entry in json.loads(out.stdout)}
    assert {name: (e["depth"], e["via"]) for name, e in found.items()} == {
        "clean": (1, ["raw"]),
        "side": (1, ["raw"]),
        "features": (2, ["clean"]),
        "report": (3, ["features"]),
    }
    assert [m["data_version"] for m in found["clean"]["materializations"]] == [run["clean"].data_version]
    assert found["features"]["materializations"] == []
    assert json.loads(cli("impact", "report", "-C", str(project), "--json").stdout) == []
    text = cli("impact", "clean", "-C", str(project))
    assert "features" in text.stdout and "never" in text.stdout
    typo = cli("impact", "clena", "-C", str(project))
    assert typo.returncode == 2 and "asset 'clena' is not defined. Did you mean 'clean'" in typo.stderr


def test_diff_lists_exactly_the_changed_param_and_helper(project: Path) -> None:
    first = cairn.materialize(project=project)
    set_pipeline(project, PIPELINE.replace("return x + 1", "return x + 2"))
    second = cairn.materialize(project=project, params={"clean": {"k": 2}})
    out = cli("diff", first.run_id, second.run_id, "-C", str(project), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["run_a"], data["run_b"], data["environment"]) == (first.run_id, second.run_id, {})
    found = {entry["asset"]: entry for entry in data["assets"]}
    assert sorted(found) == ["clean", "features", "report"]  # raw and side were reused: no difference
    clean = found["clean"]
    assert set(clean) == {"asset", "partition", "presence", "code_version", "code_parts", "params", "data_version"}
    assert list(clean["code_parts"]) == ["pipeline._shift"]
    assert clean["params"] == {"k": {"a": 1, "b": 2}}
    assert set(found["features"]) == {"asset", "partition", "presence", "inputs", "data_version"}
    assert found["features"]["inputs"] == {
        "clean": {"a": first["clean"].data_version, "b": second["clean"].data_version}
    }
    assert found["report"]["metrics"] == {"total": {"a": 9.0, "b": 24.0}}
    text = cli("diff", first.run_id, second.run_id, "-C", str(project)).stdout
    assert "(changed: pipeline._shift)" in text and "param k: 1 → 2" in text and "metric total: 9.0 → 24.0" in text
    same = json.loads(cli("diff", second.run_id, "latest", "-C", str(project), "--json").stdout)
    assert same["assets"] == [] and same["environment"] == {}
    bad = cli("diff", "nope", "latest", "-C", str(project))
    assert bad.returncode == 2 and "no run id starts with 'nope'" in bad.stderr


def test_assets_in_only_one_run_and_environment_differences() -> None:
    mat = Materialization("a", "", "k", "b3:x", 1, "json", "int", "r1", 1, "b3:c", id=1)
    only_a = diff_materializations(mat, None)
    assert only_a is not None and only_a.presence == "only_a" and only_a.to_dict()["data_version"]["b"] is None
    assert diff_materializations(mat, mat) is None
    env = diff_environments(
        {"python": "3.11.7", "git_commit": "abc", "distributions": {"numpy": "1.26", "pandas": "2.1"}},
        {"python": "3.11.7", "git_commit": "def", "distributions": {"numpy": "2.0", "polars": "1.0"}},
    )
    assert env.entries == (Change("git_commit", "abc", "def"),)
    assert env.to_dict()["distributions"] == {
        "added": {"polars": "1.0"},
        "removed": {"pandas": "2.1"},
        "changed": {"numpy": {"a": "1.26", "b": "2.0"}},
    }
    old = diff_environments({"python": "3.11.7"}, {"python": "3.11.7", "distributions": {"numpy": "2.0"}})
    assert old.to_dict() == {"distributions": {"a": "not recorded", "b": "1 recorded"}}


class _Collector(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.headers["Content-Type"] == "application/json"
        type(self).received.append(json.loads(body))
        self.send_response(201)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def lineage_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_Collector,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v1/lineage", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_openlineage_events_are_written_posted_and_valid(
    project: Path, tmp_path: Path, lineage_server: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = lineage_server
    run = cairn.materialize(project=project)
    target = tmp_path / "events.jsonl"
    out = cli("lineage", "report", "-C", str(project), "--openlineage", str(target), "--openlineage-url", url)
    assert out.returncode == 0, out.stderr
    assert f"wrote 10 OpenLineage events to {target}" in out.stdout and "sent 10 OpenLineage events" in out.stdout
    events = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert received == events
    for event in events:
        validate_event(event)
    by_job: dict[str, list[str]] = {}
    for event in events:
        by_job.setdefault(event["job"]["name"], []).append(event["eventType"])
    assert by_job == {
        "raw": ["START", "COMPLETE"],
        "clean": ["START", "COMPLETE"],
        "features": ["START", "COMPLETE"],
        "report": ["START", "FAIL", "START", "COMPLETE"],
    }
    assert [e["eventTime"] for e in events] == sorted(e["eventTime"] for e in events)
    assert {e["job"]["namespace"] for e in events} == {"cairn://test"}
    complete = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    [features_out] = complete["features"]["outputs"]
    assert features_out["facets"]["datasetVersion"]["datasetVersion"] == run["features"].data_version
    assert [(f["name"], f["type"]) for f in features_out["facets"]["schema"]["fields"]] == [
        ("value", "int64"),
        ("double", "int64"),
    ]
    assert features_out["outputFacets"]["outputStatistics"]["rowCount"] == 3
    [report_in] = complete["report"]["inputs"]
    assert report_in["name"] == "features" and report_in["facets"]["schema"] == features_out["facets"]["schema"]
    fail = next(e for e in events if e["eventType"] == "FAIL")
    assert "RuntimeError: first attempt fails" in fail["run"]["facets"]["errorMessage"]["message"]
    parents = {e["run"]["facets"]["parent"]["run"]["runId"] for e in events}
    assert len(parents) == 1


def test_an_unreachable_openlineage_endpoint_fails_with_the_count_sent(project: Path) -> None:
    cairn.materialize("side", project=project)
    out = cli("lineage", "side", "-C", str(project), "--openlineage-url", "http://127.0.0.1:9/api/v1/lineage")
    assert out.returncode == 1 and "cannot send OpenLineage events to http://127.0.0.1:9" in out.stderr
    assert "0 of 4 were sent" in out.stderr


def _fake_distribution(site: Path, version: str) -> None:
    """An installed distribution `cairnfakedist` of `version`, found by importlib.metadata on `site`."""
    for old in site.glob("cairnfakedist-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = site / f"cairnfakedist-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: cairnfakedist\nVersion: {version}\n")


def test_diff_lists_an_env_version_change_under_the_asset_that_declares_it(
    make_project: ProjectFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    _fake_distribution(site, "1.26")
    monkeypatch.syspath_prepend(str(site))
    root = make_project(
        'from cairn import asset\n\n@asset(env=["cairnfakedist"])\ndef model() -> int:\n    return 1\n\n'
        "@asset\ndef other() -> int:\n    return 2\n"
    )
    first = cairn.materialize(project=root)
    _fake_distribution(site, "2.0")
    second = cairn.materialize(project=root)
    assert second["model"].status == "executed" and second["other"].status == "cached"
    data = json.loads(cli("diff", first.run_id, second.run_id, "-C", str(root), "--json").stdout)
    found = {entry["asset"]: entry for entry in data["assets"]}
    assert list(found) == ["model"]
    assert found["model"]["env"] == {"cairnfakedist": {"a": "1.26", "b": "2.0"}}
    text = cli("diff", first.run_id, second.run_id, "-C", str(root)).stdout
    section = text.split("model", 1)[1].split("environment", 1)[0]
    assert "env changed: cairnfakedist 1.26 → 2.0" in section
