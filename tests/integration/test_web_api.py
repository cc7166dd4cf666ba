"""The web UI and HTTP API (FastAPI's TestClient over a real SQLite project): every route needs a token and its
role, reads and actions answer as the CLI would, bad names touch nothing, pages need a session and never show a
token."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

import cairn
from cairn.config import load_settings
from cairn.security import add_user
from cairn.storage.metadata import MetadataStore, open_metadata
from cairn.web import create_app
from tests.conftest import ProjectFactory, cli
from tests.web_site import Site, add_users

PIPELINE = """
from cairn import Context, asset, gate

@asset
def events() -> list:
    return [1, 2, 3]

@asset(params={"quality": 0.9}, kind="model")
def ranker(ctx: Context, events: list) -> dict:
    ctx.log_metric("auc", ctx.params["quality"])
    ctx.log.info("training ranker")
    return {"weights": [ctx.params["quality"], len(events)]}

@gate("ranker")
def auc_floor(model, ctx) -> bool:
    return ctx.metrics["auc"] >= 0.8
"""

ROLES = ("viewer", "operator", "approver", "admin")
USER_OF = {"viewer": "vic", "operator": "olga", "approver": "bob", "admin": "admin"}
PATH_VALUES = {"name": "ranker", "version": "1", "run_id": "latest", "other": "latest", "backfill_id": "latest"}
PATH_VALUES |= {"alias": "champion", "user": "vic"}


@pytest.fixture(autouse=True)
def no_ambient_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAIRN_TOKEN", raising=False)


@pytest.fixture
def site(make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    root = make_project(PIPELINE)
    tokens = add_users(root)
    monkeypatch.setenv("CAIRN_TOKEN", tokens["alice"])
    assert cairn.materialize(["ranker"], project=root).ok
    monkeypatch.delenv("CAIRN_TOKEN")
    with TestClient(create_app(root), follow_redirects=False) as client:
        yield Site(root, tokens, client)


def operations(client: TestClient) -> list[tuple[str, str, str]]:
    """(method, path with its parameters filled in, least role) of every operation in the OpenAPI schema."""
    schema = client.get("/api/v1/openapi.json").json()
    out = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            assert "x-cairn-role" in op, f"{method.upper()} {path} does not say which role it needs"
            filled = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
            out.append((method.upper(), filled, op["x-cairn-role"]))
    return out


def test_every_route_answers_401_without_a_valid_token_and_403_below_its_role(site: Site) -> None:
    ops = operations(site.client)
    assert len(ops) >= 18
    assert {path for _, path, _ in ops} >= {"/api/v1/assets", "/api/v1/runs", "/api/v1/models", "/api/v1/audit"}
    before = _counts(site)
    for method, path, role in ops:
        for headers in ({}, {"Authorization": "Bearer cairn_" + "x" * 43}, {"Authorization": "Basic abc"}):
            answer = site.client.request(method, path, headers=headers, json={})
            assert answer.status_code == 401, (method, path, headers, answer.text)
        for weaker in ROLES[: ROLES.index(role)]:
            answer = site.client.request(method, path, headers=site.auth(USER_OF[weaker]), json={"reason": "x"})
            assert answer.status_code == 403, (method, path, weaker, answer.text)
            assert f"needs {role}" in answer.json()["detail"]
    assert _counts(site) == before


def test_a_disabled_users_token_is_refused(site: Site) -> None:
    from cairn.security import disable_user

    with site.meta() as meta:
        disable_user(meta, "vic", "admin")
    assert site.client.get("/api/v1/assets", headers=site.auth("vic")).status_code == 401


def test_a_viewer_reads_assets_runs_one_asset_with_lineage_and_one_run(site: Site) -> None:
    headers = site.auth("vic")
    assets = site.client.get("/api/v1/assets", headers=headers).json()
    assert {(a["asset"], a["state"]) for a in assets} == {("events", "fresh"), ("ranker", "fresh")}
    one = site.client.get("/api/v1/assets/ranker", headers=headers).json()
    assert one["upstream_assets"] == ["events"] and len(one["materializations"]) == 1
    assert one["lineage"]["upstream"]["inputs"][0]["asset"] == "events"
    down = site.client.get("/api/v1/assets/events", headers=headers).json()
    assert [d["asset"] for d in down["lineage"]["downstream"]] == ["ranker"]
    runs = site.client.get("/api/v1/runs", headers=headers, params={"status": "succeeded", "limit": 5}).json()
    assert len(runs) == 1 and runs[0]["steps"] == {"executed": 2}
    assert site.client.get("/api/v1/runs", headers=headers, params={"status": "failed"}).json() == []
    run = site.client.get(f"/api/v1/runs/{runs[0]['run_id']}", headers=headers).json()
    assert [(s["asset"], s["status"]) for s in run["steps"]] == [("events", "executed"), ("ranker", "executed")]
    assert all(s["reason"] == "never materialized" for s in run["steps"]) and len(run["attempts"]) == 2
    logs = site.client.get(f"/api/v1/runs/{runs[0]['run_id']}/logs", headers=headers).json()
    assert any("training ranker" in line["message"] for line in logs)
    models = site.client.get("/api/v1/models", headers=headers).json()
    assert [(m["name"], m["version"], m["author"]) for m in models] == [("ranker", 1, "alice")]
    assert site.client.get("/api/v1/me", headers=headers).json() == {"name": "vic", "role": "viewer"}
    for path in ("/api/v1/snapshots", "/api/v1/backfills", "/api/v1/aliases", "/api/v1/audit"):
        assert site.client.get(path, headers=headers).status_code == 200, path
    users = site.client.get("/api/v1/users", headers=site.auth("admin")).json()
    assert {u["name"] for u in users} == set(site.tokens) and "token" not in str(users)


def test_an_operator_triggers_a_run_that_finishes_and_is_audited(site: Site) -> None:
    headers = site.auth("olga")
    started = site.client.post("/api/v1/runs", headers=headers, json={"selection": ["ranker"], "force": True})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    deadline = time.monotonic() + 60
    while True:
        run = site.client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        if run["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert run["status"] == "succeeded", run
    assert {s["asset"]: s["status"] for s in run["steps"]} == {"events": "cached", "ranker": "executed"}
    assert run["args"]["actor"] == "olga"  # the web user, not the server's environment
    audit = site.client.get("/api/v1/audit", headers=headers, params={"action": "run.start"}).json()
    assert [(e["actor"], e["subject"]) for e in audit] == [("olga", run_id)]


def test_an_approver_approves_and_promotes_another_users_version_and_the_author_is_refused(site: Site) -> None:
    own = site.client.post("/api/v1/models/ranker/1/approve", headers=site.auth("alice"), json={"reason": "mine"})
    assert own.status_code == 409 and "self-approval is not allowed" in own.json()["detail"]
    early = site.client.post("/api/v1/models/ranker/1/promote", headers=site.auth("bob"), json={})
    assert early.status_code == 409 and "no approval" in early.json()["detail"]
    ok = site.client.post("/api/v1/models/ranker/1/approve", headers=site.auth("bob"), json={"reason": "AUC ok"})
    assert ok.status_code == 200, ok.text
    promoted = site.client.post("/api/v1/models/ranker/1/promote", headers=site.auth("bob"), json={"reason": "go"})
    assert promoted.status_code == 200, promoted.text
    version = site.client.get("/api/v1/models/ranker/1", headers=site.auth("vic")).json()
    assert version["aliases"] == ["champion"] and version["approved_by"] == ["bob"]
    actions = [e["action"] for e in site.client.get("/api/v1/audit", headers=site.auth("vic")).json()]
    assert actions[:3] == ["model.promote", "model.approve", "model.promote_refused"]
    assert "model.approve_refused" in actions
    back = site.client.post("/api/v1/models/ranker/rollback", headers=site.auth("bob"), json={})
    assert back.status_code == 409 and "nothing to roll back to" in back.json()["detail"]


def test_an_admin_adds_a_user_changes_their_role_and_disables_them_and_each_is_audited(site: Site) -> None:
    admin = site.auth("admin")
    added = site.client.post("/api/v1/users", headers=admin, json={"name": "carol", "role": "viewer"})
    assert added.status_code == 201, added.text
    token = added.json()["token"]
    assert added.json()["name"] == "carol" and token.startswith("cairn_")
    carol = {"Authorization": f"Bearer {token}"}
    assert site.client.get("/api/v1/me", headers=carol).json() == {"name": "carol", "role": "viewer"}
    taken = site.client.post("/api/v1/users", headers=admin, json={"name": "carol", "role": "viewer"})
    assert taken.status_code == 400 and "carol" in taken.json()["detail"]
    bad_role = site.client.post("/api/v1/users", headers=admin, json={"name": "dan", "role": "root"})
    assert bad_role.status_code == 400
    changed = site.client.post("/api/v1/users/carol/role", headers=admin, json={"role": "operator"})
    assert changed.status_code == 200 and changed.json()["role"] == "operator"
    assert site.client.get("/api/v1/me", headers=carol).json()["role"] == "operator"
    last_admin = site.client.post("/api/v1/users/admin/role", headers=admin, json={"role": "viewer"})
    assert last_admin.status_code == 400, last_admin.text
    assert site.client.post("/api/v1/users/carol/disable", headers=admin).status_code == 200
    assert site.client.get("/api/v1/me", headers=carol).status_code == 401
    users = {u["name"]: u for u in site.client.get("/api/v1/users", headers=admin).json()}
    assert users["carol"]["disabled_at"] is not None and token not in str(users)
    audit = site.client.get("/api/v1/audit", headers=admin, params={"subject": "carol"}).json()
    assert [(e["actor"], e["action"]) for e in audit] == [
        ("admin", "user.disable"),
        ("admin", "user.role"),
        ("admin", "user.add"),
    ]


def test_a_user_rotates_their_own_token_but_not_someone_elses(site: Site) -> None:
    old = site.auth("vic")
    other = site.client.post("/api/v1/users/bob/token", headers=old)
    assert other.status_code == 403 and "admin" in other.json()["detail"]
    rotated = site.client.post("/api/v1/users/vic/token", headers=old)
    assert rotated.status_code == 200, rotated.text
    assert site.client.get("/api/v1/me", headers=old).status_code == 401
    new = {"Authorization": f"Bearer {rotated.json()['token']}"}
    assert site.client.get("/api/v1/me", headers=new).json()["name"] == "vic"
    # the session cookie alone cannot change a token: a state change needs the bearer header
    client = site.login("bob")
    assert client.post("/api/v1/users/bob/token").status_code == 401


PARTITIONED = """
from cairn import AllPartitions, asset, static

PARTS = static("p1", "p2", "p3", "p4")

@asset(partitions=PARTS)
def counts(ctx) -> int:
    return len(ctx.partition)

@asset(ins={"counts": AllPartitions("counts")})
def total(counts: dict) -> int:
    return sum(counts.values())
"""


def test_an_operator_starts_a_backfill_that_runs_its_range_and_is_audited(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(PARTITIONED)
    settings = load_settings(root)
    with open_metadata(settings.database, settings.root) as meta:
        admin = add_user(meta, "admin", "admin", None)
        olga = add_user(meta, "olga", "operator", "admin")
        vic = add_user(meta, "vic", "viewer", "admin")
    with TestClient(create_app(root), follow_redirects=False) as client:
        headers = {"Authorization": f"Bearer {olga}"}
        viewer = client.post("/api/v1/backfills", headers={"Authorization": f"Bearer {vic}"}, json={})
        assert viewer.status_code == 403
        for body, why in (
            ({"selection": ["total"], "from": "p1", "to": "p2"}, "no selected asset is partitioned"),
            ({"selection": ["counts"], "from": "p1", "to": "p9"}, "p9"),
            ({"selection": ["nope"], "from": "p1", "to": "p2"}, "asset 'nope' is not defined"),
        ):
            refused = client.post("/api/v1/backfills", headers=headers, json=body)
            assert refused.status_code == 400 and why in refused.json()["detail"], (body, refused.text)
        assert client.get("/api/v1/backfills", headers=headers).json() == []  # nothing recorded
        started = client.post(
            "/api/v1/backfills", headers=headers, json={"selection": ["counts"], "from": "p2", "to": "p3"}
        )
        assert started.status_code == 202, started.text
        backfill_id, run_id = started.json()["backfill_id"], started.json()["run_id"]
        deadline = time.monotonic() + 60
        while True:
            found = client.get(f"/api/v1/backfills/{backfill_id}", headers=headers).json()
            if found["status"] not in ("pending", "running") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert found["status"] == "succeeded", found
        assert found["runs"] == [run_id] and (found["done"], found["total"]) == (2, 2)
        run = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        assert sorted((s["asset"], s["partition"]) for s in run["steps"]) == [("counts", "p2"), ("counts", "p3")]
        assert run["args"]["actor"] == "olga"
        audit = client.get("/api/v1/audit", headers=headers, params={"action": "backfill.start"}).json()
        assert [(e["actor"], e["subject"]) for e in audit] == [("olga", backfill_id)]
        assert admin  # the first user is the admin who added the others


BAD = ["..", "../etc", "..%2F..%2Fetc%2Fpasswd", "a%2F..%2Fb", "x'%20OR%20'1'='1", "a;drop", "%00", "a%20b", "~root"]


@pytest.mark.parametrize("bad", BAD)
def test_traversal_and_injection_in_paths_and_queries_are_refused_and_touch_nothing(site: Site, bad: str) -> None:
    headers = site.auth("admin")
    before = _counts(site), sorted(p.relative_to(site.root) for p in site.root.rglob("*") if ".cairn" not in p.parts)
    paths = [
        f"/api/v1/assets/{bad}",
        f"/api/v1/runs/{bad}",
        f"/api/v1/runs/{bad}/logs",
        f"/api/v1/snapshots/{bad}",
        f"/api/v1/models/{bad}",
        f"/api/v1/models/{bad}/1",
        f"/api/v1/runs?status={bad}",
        f"/api/v1/audit?actor={bad}",
        f"/api/v1/aliases?asset={bad}",
        f"/api/v1/assets/ranker?partition={bad}",
        f"/api/v1/runs/latest/logs?asset={bad}",
        f"/api/v1/assets/{bad}/metrics",
        f"/api/v1/assets/{bad}/durations",
        f"/api/v1/assets/{bad}/partitions",
        f"/api/v1/assets/{bad}/code",
        f"/api/v1/runs/{bad}/progress",
        f"/api/v1/runs/{bad}/timeline",
        f"/api/v1/runs/{bad}/diff/latest",
        f"/api/v1/backfills/{bad}",
        f"/api/v1/aliases/{bad}/history",
        f"/api/v1/aliases/champion/history?asset={bad}",
        f"/api/v1/incidents?open={bad}",
    ]
    for path in paths:
        answer = site.client.get(path, headers=headers)
        assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text)
    for path, body in (
        (f"/api/v1/models/{bad}/1/approve", {"reason": "x"}),
        (f"/api/v1/models/{bad}/1/promote", {}),
        (f"/api/v1/models/{bad}/rollback", {}),
        ("/api/v1/models/ranker/1/promote", {"alias": bad}),
        ("/api/v1/runs", {"selection": [bad]}),
        ("/api/v1/runs", {"selection": ["ranker"], "partition": bad}),
        ("/api/v1/backfills", {"selection": [bad], "from": "a", "to": "b"}),
        ("/api/v1/backfills", {"selection": ["ranker"], "from": bad, "to": "b"}),
        ("/api/v1/users", {"name": bad, "role": "viewer"}),
        (f"/api/v1/users/{bad}/role", {"role": "viewer"}),
        (f"/api/v1/users/{bad}/disable", {}),
        (f"/api/v1/users/{bad}/token", {}),
    ):
        answer = site.client.post(path, headers=headers, json=body)
        assert 400 <= answer.status_code < 500, (path, body, answer.status_code, answer.text)
    after = _counts(site), sorted(p.relative_to(site.root) for p in site.root.rglob("*") if ".cairn" not in p.parts)
    assert after[0]["runs"] == before[0]["runs"] and after[1] == before[1]
    assert after[0]["audit"] - before[0]["audit"] <= 1  # at most the refused promotion of an unknown alias name


def test_every_page_redirects_to_login_without_a_session(site: Site) -> None:
    from fastapi.routing import APIRoute

    from cairn.web.pages import router

    pages = [
        (method, re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], route.path))
        for route in router.routes
        if isinstance(route, APIRoute) and route.path != "/login"
        for method in route.methods
    ]
    assert len(pages) >= 11
    before = _counts(site)
    for method, path in pages:
        answer = site.client.request(method, path, data={"reason": "x", "selection": "ranker"})
        assert answer.status_code == 303 and answer.headers["location"] == "/login", (method, path)
    assert _counts(site) == before
    site.client.cookies.set("cairn_session", "cairn_" + "y" * 43)
    assert site.client.get("/assets").headers["location"] == "/login"


def test_pages_render_for_a_logged_in_user_and_never_show_a_token(site: Site) -> None:
    client = site.login("bob")
    cookie = client.cookies.get("cairn_session")
    assert cookie == site.tokens["bob"]
    run_id = client.get("/api/v1/runs").json()[0]["run_id"]  # the session cookie reads the API too
    pages: dict[str, Any] = {}
    for path in ("/assets", "/assets/ranker", "/assets/events", "/runs", f"/runs/{run_id}", "/models", "/graph"):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert "default-src 'self'" in answer.headers["content-security-policy"]
        pages[path] = answer.text
    assert "state-fresh" in pages["/assets"] and ">ranker</a>" in pages["/assets"]
    assert "never materialized" in pages[f"/runs/{run_id}"]
    assert "Approve" in pages["/models"] and "auc_floor" in pages["/models"]
    assert "<svg" in pages["/graph"] and "/assets/events" in pages["/graph"]
    for text in pages.values():
        for token in site.tokens.values():
            assert token not in text
    assert "/static/cairn.css" in pages["/assets"] and client.get("/static/cairn.css").status_code == 200


def test_page_forms_need_their_csrf_token_and_act_as_the_session_user(site: Site) -> None:
    client = site.login("bob")
    refused = client.post("/models/ranker/1/approve", data={"reason": "looks good"})
    assert refused.status_code == 403
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/models").text)
    assert csrf is not None
    done = client.post("/models/ranker/1/approve", data={"reason": "looks good", "csrf": csrf.group(1)})
    assert done.status_code == 303
    done = client.post("/models/ranker/1/promote", data={"alias": "champion", "csrf": csrf.group(1)})
    assert done.status_code == 303
    with site.meta() as meta:
        assert [(a.record.alias, a.record.asset) for a in _aliases(meta)] == [("champion", "ranker")]
    # a state change through the API needs the bearer header: the browser's cookie alone is not enough
    assert client.post("/api/v1/models/ranker/rollback", json={}).status_code == 401


def test_a_viewers_session_cannot_start_a_run_from_a_page(site: Site) -> None:
    client = site.login("vic")
    assert "Start run" not in client.get("/assets").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/assets").text)
    assert csrf is not None
    assert client.post("/runs", data={"selection": "ranker", "csrf": csrf.group(1)}).status_code == 403
    assert len(client.get("/api/v1/runs").json()) == 1


def test_an_admin_changes_a_role_and_disables_a_user_from_the_users_page_which_shows_no_token(site: Site) -> None:
    bob = site.login("bob")
    assert "/users" not in bob.get("/assets").text and bob.get("/users").status_code == 403
    bob.post("/logout", data={"csrf": _csrf(bob, "/assets")})
    client = site.login("admin")
    page = client.get("/users")
    assert page.status_code == 200 and 'data-user="vic"' in page.text
    assert not any(token in page.text for token in site.tokens.values())
    assert client.post("/users/vic/role", data={"role": "operator"}).status_code == 403  # no CSRF token
    csrf = _csrf(client, "/users")
    assert client.post("/users/vic/role", data={"role": "operator", "csrf": csrf}).status_code == 303
    assert client.post("/users/olga/disable", data={"csrf": csrf}).status_code == 303
    refused = client.post("/users/admin/disable", data={"csrf": csrf})  # the last enabled admin
    assert refused.status_code == 303 and refused.headers["location"] == "/users"
    with site.meta() as meta:
        users = {u.name: u for u in meta.users()}
    assert users["vic"].role == "operator" and not users["olga"].enabled and users["admin"].enabled
    assert site.client.get("/api/v1/me", headers=site.auth("olga")).status_code == 401


def test_an_operator_starts_a_backfill_from_the_backfills_page_and_a_viewer_cannot(site: Site) -> None:
    viewer = site.login("vic")
    assert 'id="backfill-form"' not in viewer.get("/backfills").text
    denied = viewer.post("/backfills", data={"from": "a", "to": "b", "csrf": _csrf(viewer, "/backfills")})
    assert denied.status_code == 403
    viewer.post("/logout", data={"csrf": _csrf(viewer, "/assets")})
    client = site.login("olga")
    assert 'id="backfill-form"' in client.get("/backfills").text
    refused = client.post(
        "/backfills", data={"selection": "ranker", "from": "a", "to": "b", "csrf": _csrf(client, "/backfills")}
    )
    assert refused.status_code == 303 and refused.headers["location"] == "/backfills"
    assert "no selected asset is partitioned" in client.get("/backfills").text  # the flash message
    with site.meta() as meta:
        assert meta.backfills() == []


def _csrf(client: TestClient, path: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found is not None, path
    return found.group(1)


def test_login_refuses_a_wrong_token_and_a_missing_csrf_token(site: Site) -> None:
    page = site.client.get("/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert nonce is not None
    wrong = site.client.post("/login", data={"token": "cairn_" + "z" * 43, "csrf": nonce.group(1)})
    assert wrong.status_code == 401 and "cairn_session" not in wrong.headers.get("set-cookie", "")
    assert site.client.post("/login", data={"token": site.tokens["vic"]}).status_code == 403


def test_cairn_ui_refuses_a_remote_host_without_allow_remote(tmp_path: Path) -> None:
    out = cli("ui", "-C", str(tmp_path), "--host", "0.0.0.0")
    assert out.returncode == 2 and "--allow-remote" in out.stderr


def _aliases(meta: MetadataStore) -> list[Any]:
    from cairn import registry

    return registry.aliases(meta)


def _counts(site: Site) -> dict[str, int]:
    with site.meta() as meta:
        return {"runs": len(meta.list_runs(1000)), "audit": len(meta.audit_entries(100000))}


def test_the_graph_layout_puts_each_asset_right_of_its_deepest_input_and_escapes_names() -> None:
    from cairn.web.graph import layered_svg, layers

    upstream = {"a": (), "b": ("a",), "c": ("a", "b"), "d": ()}
    assert layers(upstream) == {"a": 0, "b": 1, "c": 2, "d": 0}
    svg = layered_svg({"x<y>": (), "z": ("x<y>",)}, {"z": "stale"})
    assert "x<y>" not in svg and "x&lt;y&gt;" in svg and svg.count("<line") == 1 and "#f9a825" in svg
