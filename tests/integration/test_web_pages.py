"""The web UI's pages and the API routes behind them (FastAPI's TestClient over a real SQLite project with several
runs): plots with one mark per record, a run's timeline with its retries, live progress of a running run, two
runs side by side, backfills, snapshots, aliases, the audit log, incidents and code history; bad names refused."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

import cairn
from cairn import registry
from cairn.config import load_settings
from cairn.security import TOKEN_VARIABLE
from cairn.storage.metadata import open_metadata
from cairn.web import create_app
from tests.conftest import ProjectFactory
from tests.web_site import Site, add_users

PIPELINE = """
import time
from pathlib import Path

from cairn import Context, Retry, asset, daily, gate

HERE = Path(__file__).parent

@asset
def events() -> list:
    return [1, 2, 3]

@asset(partitions=daily("2026-06-01", end="2026-06-05"))
def daily_counts(ctx: Context) -> int:
    return len(ctx.partition)

@asset(retry=Retry(max_attempts=2, backoff=0))
def flaky(events: list) -> int:
    marker = HERE / "flaky-failed-once"
    if not marker.exists():
        marker.write_text("x")
        raise RuntimeError("first attempt fails")
    return sum(events)

@asset(params={"fail": False})
def fragile(ctx: Context, events: list) -> int:
    if ctx.params["fail"]:
        raise ValueError("fragile was told to fail")
    return len(events)

@asset
def slow() -> int:
    (HERE / "slow-started").write_text("x")
    for _ in range(1200):  # until the test releases it (at most a minute)
        if (HERE / "slow-release").exists():
            break
        time.sleep(0.05)
    return 1

@asset(params={"quality": 0.9}, kind="model")
def ranker(ctx: Context, events: list) -> dict:
    ctx.log_metric("auc", ctx.params["quality"])
    ctx.log_metric("loss", 1 - ctx.params["quality"])
    return {"weights": [ctx.params["quality"], len(events)]}

@gate("ranker")
def auc_floor(model, ctx) -> bool:
    return ctx.metrics["auc"] >= 0.8
"""

QUALITIES = (0.9, 0.95, 0.85)


@dataclass
class TrainedSite(Site):
    """A project with three trainings of the ranker (alice trained them), a retried step, a backfill, a snapshot,
    a promoted alias and a failed run."""

    trainings: list[str] = field(default_factory=list)


@pytest.fixture(autouse=True)
def no_ambient_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)


@pytest.fixture
def site(make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[TrainedSite]:
    root = make_project(PIPELINE)
    settings = load_settings(root)
    tokens = add_users(root)
    monkeypatch.setenv(TOKEN_VARIABLE, tokens["alice"])
    trainings = []
    for quality in QUALITIES:
        run = cairn.materialize(["ranker"], project=root, params={"ranker": {"quality": quality}})
        assert run.ok
        trainings.append(run.run_id)
    assert cairn.materialize(["flaky"], project=root).ok
    assert cairn.materialize(["daily_counts"], project=root, partition="2026-06-02").ok
    assert not cairn.materialize(["fragile"], project=root, params={"fragile": {"fail": True}}).ok
    assert cairn.backfill(["daily_counts"], partition_range=("2026-06-01", "2026-06-03"), project=root).ok
    with open_metadata(settings.database, settings.root) as meta:
        pins = [("events", "", meta.materializations("events")[0].id)]
        meta.create_snapshot("june", "events", pins)
        registry.approve(meta, "ranker", 2, "AUC up", {TOKEN_VARIABLE: tokens["bob"]})
        registry.promote(meta, "ranker", 2, "champion", {TOKEN_VARIABLE: tokens["bob"]}, "best so far")
    monkeypatch.delenv(TOKEN_VARIABLE)
    with TestClient(create_app(root), follow_redirects=False) as client:
        yield TrainedSite(root, tokens, client, trainings)


def _page(client: TestClient, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])
    return answer.text


def _svg(html: str, css_class: str) -> list[str]:
    """Every ``<svg>`` element of `html` whose class list holds `css_class`."""
    return re.findall(rf'<svg[^>]*class="[^"]*\b{css_class}\b[^"]*".*?</svg>', html, re.S)


def test_the_asset_page_plots_each_metric_with_a_point_per_training_and_a_histogram_of_its_durations(
    site: TrainedSite,
) -> None:
    html = _page(site.login("vic"), "/assets/ranker")
    plots = _svg(html, "metric-plot")
    assert len(plots) == 2  # auc and loss: every numeric metric, one plot each
    auc = next(p for p in plots if 'data-metric="auc"' in p)
    assert auc.count('class="point"') == len(QUALITIES)
    values = [float(v) for v in re.findall(r'class="point" data-run="[^"]+" data-value="([^"]+)"', auc)]
    assert values == list(QUALITIES)  # oldest first, one point per training
    assert "<title>" in auc and "auc = 0.95" in auc
    histogram = _svg(html, "duration-histogram")
    assert len(histogram) == 1
    counts = [int(n) for n in re.findall(r'class="bar" data-count="(\d+)"', histogram[0])]
    assert sum(counts) == len(QUALITIES) and len(counts) == 2  # ceil(sqrt(3)) bins
    assert 'id="lineage"' in html and 'id="code-history"' in html
    api = site.client.get("/api/v1/assets/ranker/metrics").json()
    assert [p["value"] for p in api["metrics"]["auc"]] == list(QUALITIES)
    assert [p["run_id"] for p in api["metrics"]["auc"]] == site.trainings
    durations = site.client.get("/api/v1/assets/ranker/durations").json()
    assert durations["count"] == 3 and [d["run_id"] for d in durations["executions"]] == site.trainings


def test_a_partitioned_asset_shows_a_heat_map_cell_per_partition_coloured_by_state(site: TrainedSite) -> None:
    html = _page(site.login("vic"), "/assets/daily_counts")
    heat = _svg(html, "partition-heatmap")
    assert len(heat) == 1
    cells = dict(re.findall(r'data-partition="([^"]+)" data-state="([^"]+)"', heat[0]))
    assert cells == {
        "2026-06-01": "fresh",
        "2026-06-02": "fresh",
        "2026-06-03": "fresh",
        "2026-06-04": "missing",
    }
    api = site.client.get("/api/v1/assets/daily_counts/partitions").json()
    assert api["partitioned"] and [c["state"] for c in api["partitions"]] == ["fresh"] * 3 + ["missing"]
    assert not _svg(_page(site.client, "/assets/events"), "partition-heatmap")


def test_the_run_page_draws_a_timeline_row_per_step_with_a_bar_per_attempt(site: TrainedSite) -> None:
    client = site.login("vic")
    with site.meta() as meta:
        run_id = next(r.run_id for r in meta.list_runs(50) if r.selection == "flaky")
    html = _page(client, f"/runs/{run_id}")
    assert re.search(r'id="run-status"[^>]*>succeeded<', html)
    timeline = _svg(html, "timeline")
    assert len(timeline) == 1
    rows = re.findall(r'<g class="row" data-step="([^"]+)" data-status="([^"]+)">(.*?)</g>', timeline[0], re.S)
    assert [(step, status) for step, status, _ in rows] == [("flaky", "executed")]
    bars = re.findall(r'data-attempt="(\d)" data-status="(\w+)"', rows[0][2])
    assert bars == [("1", "failed"), ("2", "succeeded")]  # the retry is visible
    assert 'data-step="events"' in html and "cached" in html  # its cached input is a row of the step table
    assert re.search(r'id="cache-savings">1 steps reused from the cache, [0-9.]+ ?m?s of computation saved', html)
    row = r'<tr data-level="(\w+)"><td>flaky</td><td>(\d)</td>.*?class="log-message">(.*?)</td>'
    logs = re.findall(row, html, re.S)
    assert any(level == "ERROR" and attempt == "1" and "RuntimeError" in text for level, attempt, text in logs), logs
    api = client.get(f"/api/v1/runs/{run_id}/timeline").json()
    assert [len(r["bars"]) for r in api["rows"]] == [2] and api["without_attempts"] == 1
    first, second = api["rows"][0]["bars"]
    assert 0 <= first["start_s"] <= first["end_s"] <= second["start_s"] <= second["end_s"] <= api["span_s"]
    svg = client.get(f"/runs/{run_id}/timeline.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and svg.text.count('class="bar"') == 2


def test_a_timeline_of_a_thousand_steps_stays_one_row_per_step_and_readable() -> None:
    from cairn.web.timeline import ROW, timeline_svg

    rows = [
        {"step": f"asset_{i}@2026-06-01", "status": "executed", "bars": [_bar(1, i * 0.01, i * 0.01 + 0.5)]}
        for i in range(1000)
    ]
    svg = timeline_svg({"run_id": "r1", "span_s": 11.0, "rows": rows})
    assert svg.count('<g class="row"') == 1000 and svg.count('class="bar"') == 1000
    height = int(re.search(r'height="(\d+)"', svg).group(1))  # type: ignore[union-attr]
    assert height >= 1000 * ROW  # a row per step at full height: the page scrolls it


def _bar(attempt: int, start: float, end: float) -> dict[str, Any]:
    return {"attempt": attempt, "status": "succeeded", "start_s": start, "end_s": end, "error": None}


def test_the_progress_endpoint_reports_a_running_run_until_it_ends(site: TrainedSite) -> None:
    client = site.login("olga")
    page = client.get("/assets/slow")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None and 'data-action="run"' in page.text
    started = client.post("/runs", data={"selection": "slow", "csrf": csrf.group(1), "next": "/assets/slow"})
    assert started.status_code == 303
    run_id = started.headers["location"].rsplit("/", 1)[1]
    _wait_for(site.root / "slow-started")
    try:
        live = client.get(f"/api/v1/runs/{run_id}/progress").json()  # the session cookie reads the API
        assert live["status"] == "running" and live["done"] is False
        assert [(s["step"], s["status"], s["attempts"]) for s in live["steps"]] == [("slow", "running", 1)]
        html = _page(client, f"/runs/{run_id}")
        assert 'data-status="running"' in html and re.search(r'id="run-status"[^>]*>running<', html)
        assert 'id="flash-ok"' in html  # "run ... started", once
        assert 'id="flash-ok"' not in _page(client, f"/runs/{run_id}")
        line = client.get(f"/api/v1/runs/{run_id}/timeline").json()
        assert line["rows"][0]["bars"][0]["running"] is True
    finally:
        (site.root / "slow-release").write_text("x")
    deadline = time.monotonic() + 60
    while not (done := client.get(f"/api/v1/runs/{run_id}/progress").json())["done"]:
        assert time.monotonic() < deadline, done
        time.sleep(0.05)
    assert done["status"] == "succeeded" and done["counts"] == {"executed": 1}
    assert re.search(r'id="run-status"[^>]*>succeeded<', _page(client, f"/runs/{run_id}"))


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def test_the_diff_page_shows_two_trainings_side_by_side_with_the_changed_param(site: TrainedSite) -> None:
    client = site.login("vic")
    first, second = site.trainings[:2]
    html = _page(client, f"/diff?a={first}&b={second}")
    rows = dict(re.findall(r'<tr data-step="([^"]+)" data-changed="([^"]*)">', html))
    assert rows == {"events": "", "ranker": "data_version metrics params"}
    ranker = re.search(r'<section class="diff-asset" data-asset="ranker".*?</section>', html, re.S)
    assert ranker is not None
    param = re.search(
        r'data-kind="params" data-name="quality">.*?<code>([^<]+)</code></td><td><code>([^<]+)</code>',
        ranker.group(0),
        re.S,
    )
    assert param is not None and param.groups() == ("0.9", "0.95")
    api = client.get(f"/api/v1/runs/{first}/diff/{second}").json()
    assert api["assets"][0]["params"] == {"quality": {"a": 0.9, "b": 0.95}}
    assert [(s["step"], s["a"]["status"], s["b"]["status"]) for s in api["steps"]] == [
        ("events", "executed", "cached"),
        ("ranker", "executed", "executed"),
    ]
    same = client.get(f"/api/v1/runs/{first}/diff/{first}").json()
    assert same["same"] is True and same["assets"] == []
    assert 'id="compare-form"' in _page(client, "/diff") and 'id="compare-form"' in _page(client, "/runs")


def test_backfill_snapshot_alias_audit_and_incident_pages_show_their_records(site: TrainedSite) -> None:
    client = site.login("vic")
    backfills = client.get("/api/v1/backfills").json()
    assert len(backfills) == 1 and backfills[0]["done"] == backfills[0]["total"] == 3
    bid = backfills[0]["backfill_id"]
    assert f'data-backfill="{bid}"' in _page(client, "/backfills")
    html = _page(client, f"/backfills/{bid}")
    assert 'data-done="3" data-total="3" data-failed="0"' in html
    heat = _svg(html, "partition-heatmap")
    assert len(heat) == 1 and heat[0].count('class="cell') == 3
    detail = client.get(f"/api/v1/backfills/{bid}").json()
    assert [s["partition"] for s in detail["steps"]] == ["2026-06-01", "2026-06-02", "2026-06-03"]

    assert 'data-snapshot="june"' in _page(client, "/snapshots")
    assert 'data-asset="events"' in _page(client, "/snapshots/june")

    aliases = _page(client, "/aliases")
    assert 'data-alias="champion" data-asset="ranker"' in aliases and 'data-action="promote"' in aliases
    history = client.get("/api/v1/aliases/champion/history", params={"asset": "ranker"}).json()
    assert [(m["action"], m["actor"], m["reason"]) for m in history] == [("promote", "bob", "best so far")]
    assert client.get("/api/v1/aliases/nothing/history").status_code == 404

    audit = _page(client, "/audit")
    assert 'id="audit-verify" data-intact="true"' in audit and 'data-action="model.promote"' in audit
    assert client.get("/api/v1/audit/verify").json()["intact"] is True
    filtered = _page(client, "/audit?action=model.*")
    assert 'data-action="user.add"' not in filtered and 'data-action="model.approve"' in filtered

    incidents = client.get("/api/v1/incidents").json()
    assert [(i["kind"], i["subject"], i["status"]) for i in incidents] == [("failure", "fragile", "open")]
    assert 'id="asset-incidents"' in _page(client, "/assets/fragile")
    assert 'id="asset-incidents"' not in _page(client, "/assets/ranker")
    html = _page(client, "/incidents")
    assert 'data-kind="failure"' in html and ">fragile</a>" in html
    nav = re.search(r'<nav id="nav">.*?</nav>', html, re.S)
    assert nav is not None
    for link in ("/backfills", "/snapshots", "/aliases", "/audit", "/incidents", "/diff", "/graph"):
        assert f'href="{link}"' in nav.group(0)


def test_a_broken_audit_chain_is_shown_as_broken(site: TrainedSite) -> None:
    with sqlite3.connect(site.root / ".cairn" / "cairn.db") as db:
        db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
    html = _page(site.login("vic"), "/audit")
    assert 'id="audit-verify" data-intact="false"' in html and "chain broken at row 2" in html


def test_the_asset_page_lists_its_code_versions_with_the_run_and_git_commit_that_first_used_each(
    site: TrainedSite,
) -> None:
    import subprocess

    git = ["git", "-C", str(site.root), "-c", "user.name=Dana Coder", "-c", "user.email=dana@example.com"]
    if subprocess.run(["git", "--version"], capture_output=True, check=False).returncode != 0:
        pytest.skip("git is not installed")
    subprocess.run([*git, "init", "-q"], check=True)
    (site.root / ".gitignore").write_text("/*\n!/pipeline.py\n!/cairn.toml\n!/.gitignore\n")
    subprocess.run([*git, "add", "pipeline.py", "cairn.toml", ".gitignore"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "ranker: first cut"], check=True)
    text = (site.root / "pipeline.py").read_text().replace("len(events)]}", "len(events) + 1]}")
    from tests.conftest import set_pipeline

    set_pipeline(site.root, text)
    subprocess.run([*git, "commit", "-q", "-am", "ranker: count one more"], check=True)
    started = site.client.post("/api/v1/runs", headers=site.auth("olga"), json={"selection": ["ranker"]})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    deadline = time.monotonic() + 60
    while site.client.get(f"/api/v1/runs/{run_id}", headers=site.auth("olga")).json()["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    code = site.client.get("/api/v1/assets/ranker/code", headers=site.auth("vic")).json()
    assert code["current_ran"] is True and len(code["versions"]) == 2
    newest, oldest = code["versions"]
    assert (newest["first_run"], newest["actor"]) == (run_id, "olga")
    assert newest["commit"]["author"] == "Dana Coder" and newest["commit"]["subject"] == "ranker: count one more"
    assert newest["changed"] == ["pipeline.ranker"] and newest["git_dirty"] is False
    assert (oldest["first_run"], oldest["actor"], oldest["commit"], oldest["materializations"]) == (
        site.trainings[0],
        "alice",
        None,  # trained before the folder was a git work tree
        3,
    )
    html = _page(site.login("vic"), "/assets/ranker")
    assert "Dana Coder" in html and "ranker: count one more" in html


def test_the_graph_has_a_node_per_asset_and_operators_get_a_run_form(site: TrainedSite) -> None:
    html = _page(site.login("vic"), "/graph")
    graph = re.search(r'<svg[^>]*id="asset-graph".*?</svg>', html, re.S)
    assert graph is not None and "viewBox=" in graph.group(0)
    assert set(re.findall(r'data-asset="([^"]+)"', graph.group(0))) == {
        "events",
        "daily_counts",
        "flaky",
        "fragile",
        "slow",
        "ranker",
    }
    assert 'id="run-form"' not in html and 'id="zoom-in"' in html
    _page(site.client, "/assets")
    site.client.cookies.clear()
    assert 'id="run-form"' in _page(site.login("olga"), "/graph")


def test_a_refused_approval_comes_back_as_a_flash_error_and_an_accepted_one_as_a_flash_ok(site: TrainedSite) -> None:
    client = site.login("alice")  # alice trained the ranker: approving her own version is refused
    models = _page(client, "/models")
    assert 'button type="submit" data-action="approve"' in models and 'data-action="promote"' in models
    csrf = re.search(r'name="csrf" value="([^"]+)"', models)
    assert csrf is not None
    refused = client.post("/models/ranker/3/approve", data={"reason": "mine", "csrf": csrf.group(1)})
    assert refused.status_code == 303 and refused.headers["location"] == "/models"
    shown = _page(client, "/models")
    error = re.search(r'<p id="flash-error"[^>]*>([^<]+)</p>', shown)
    assert error is not None and "self-approval is not allowed" in error.group(1)
    assert 'id="flash-error"' not in _page(client, "/models")  # shown once
    early = client.post("/models/ranker/3/promote", data={"alias": "champion", "csrf": csrf.group(1)})
    assert early.status_code == 303
    assert "no approval" in _page(client, "/models")
    client.cookies.clear()
    client = site.login("bob")
    csrf = re.search(r'name="csrf" value="([^"]+)"', _page(client, "/models"))
    assert csrf is not None
    client.post("/models/ranker/3/approve", data={"reason": "fine", "csrf": csrf.group(1)})
    assert re.search(r'<p id="flash-ok"[^>]*>approved ranker version 3</p>', _page(client, "/models"))
    back = client.post("/models/ranker/rollback", data={"alias": "champion", "csrf": csrf.group(1)})
    assert back.status_code == 303 and 'id="flash-error"' in _page(client, "/models")  # nothing to roll back to


BAD = ["..", "../etc", "..%2F..%2Fetc%2Fpasswd", "a%2F..%2Fb", "x'%20OR%20'1'='1", "a;drop", "%00", "a%20b", "~root"]


@pytest.mark.parametrize("bad", BAD)
def test_bad_names_in_the_new_pages_and_routes_are_refused_with_a_message(site: TrainedSite, bad: str) -> None:
    client = site.login("admin")
    # A path segment of dots alone never arrives (clients resolve it): the bad value follows a letter there.
    for path in (
        f"/assets/x{bad}",
        f"/backfills/x{bad}",
        f"/snapshots/x{bad}",
        f"/runs/{bad}/timeline.svg",
        f"/diff?a={bad}&b=latest",
        f"/diff?a=latest&b={bad}",
        f"/audit?actor={bad}",
        f"/audit?subject={bad}",
        f"/api/v1/runs/latest/diff/{bad}x",
        f"/api/v1/aliases/x{bad}/history",
    ):
        answer = client.get(path)
        assert 400 <= answer.status_code < 500, (path, answer.status_code)
        if answer.headers["content-type"].startswith("application/json"):
            assert answer.json()["detail"], path
    answer = client.get("/api/v1/runs/latest/diff/a;drop")
    assert answer.status_code == 400 and "not allowed" in answer.json()["detail"]
    started = client.post("/runs", data={"selection": "nope", "csrf": _csrf(client), "next": "//evil.example"})
    assert started.status_code == 303 and started.headers["location"] == "/assets"  # never off the site
    assert "asset &#39;nope&#39; is not defined" in _page(client, "/assets")


def _csrf(client: TestClient) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/assets").text)
    assert found is not None
    return found.group(1)


def test_histogram_bins_count_every_value_once_and_plots_escape_names() -> None:
    from cairn.web.plots import bins, metric_plot, partition_heatmap

    assert bins([]) == []
    assert bins([2.0, 2.0, 2.0]) == [(2.0, 2.0, 3)]
    found = bins([float(i) for i in range(101)])
    assert len(found) == 11 and sum(n for _, _, n in found) == 101 and found[-1][2] == 10
    assert len(bins([float(i) for i in range(10_000)])) == 20
    svg = metric_plot("<b>", [{"value": 1.0, "run_id": "r<1>", "partition": None}])
    assert "<b>" not in svg and "&lt;b&gt;" in svg and svg.count('class="point"') == 1
    many = partition_heatmap([{"partition": f"k{i}", "state": "fresh"} for i in range(5000)])
    assert many.count('class="cell') == 2000 and 'data-partition="k4999"' in many  # the newest are kept
