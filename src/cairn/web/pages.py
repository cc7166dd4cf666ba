"""The server-rendered pages of assets, runs and models: login, assets, one asset (with its plots and code
history), the asset graph, runs, one run (live progress and its timeline), and models. The pages of the other
records (backfills, snapshots, aliases, the audit log, incidents, run diffs) are in `cairn.web.record_pages`,
included in this router.

A page reads the session cookie (HttpOnly, SameSite=Strict) that the login form set from a pasted token; a
visitor without a valid one is sent to the login page. Every form carries a CSRF token derived from the
session, and every form post is checked against it before anything changes.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cairn import registry
from cairn.core.keys import validate_name
from cairn.errors import CairnError
from cairn.storage.metadata import open_metadata
from cairn.web import asset_views, record_pages, run_views, runner, views
from cairn.web.auth import SESSION_COOKIE, authenticate
from cairn.web.graph import layered_svg
from cairn.web.plots import duration_histogram, metric_plot, partition_heatmap
from cairn.web.session import Approver, Operator, Viewer, app_state, checked, form, form_action, render
from cairn.web.timeline import timeline_svg

router = APIRouter(include_in_schema=False)
router.include_router(record_pages.router)
LOGIN_CSRF = "cairn_login_csrf"


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    nonce = secrets.token_urlsafe(24)
    response = render(request, None, "login.html", login_csrf=nonce)
    response.set_cookie(LOGIN_CSRF, nonce, httponly=True, samesite="strict", path="/login")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    """Check a pasted token and keep it in an HttpOnly cookie; the page never shows it again."""
    fields = await form(request)
    nonce = request.cookies.get(LOGIN_CSRF, "")
    if not nonce or not secrets.compare_digest(nonce, fields.get("csrf", "")):
        raise HTTPException(403, "the login form's CSRF token is missing or stale: reload the page")
    state = app_state(request)
    token = fields.get("token", "").strip()
    with open_metadata(state.settings.database, state.settings.root) as meta:
        try:
            authenticate(meta, token)
        except HTTPException as e:
            return render(request, None, "login.html", 401, login_csrf=nonce, message=e.detail)
    response = RedirectResponse("/assets", 303)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    response.delete_cookie(LOGIN_CSRF, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, caller: Viewer) -> Response:
    checked(request, caller, await form(request))
    response = RedirectResponse("/login", 303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
def home(caller: Viewer) -> Response:
    return RedirectResponse("/assets", 303)


@router.get("/assets")
def assets_page(request: Request, caller: Viewer) -> HTMLResponse:
    rows = views.assets(app_state(request), caller.meta)
    return render(request, caller, "assets.html", rows=rows)


@router.get("/assets/{name}")
def asset_page(request: Request, caller: Viewer, name: str) -> HTMLResponse:
    state = app_state(request)
    view = views.asset(state, caller.meta, name, None, 50)
    loaded = views.project(state)
    series = asset_views.metrics(loaded, caller.meta, name)["metrics"]
    durations = asset_views.durations(loaded, caller.meta, name)
    cells = asset_views.partitions(loaded, caller.meta, name)
    return render(
        request,
        caller,
        "asset.html",
        view=view,
        metric_svgs=[metric_plot(metric, points) for metric, points in series.items()],
        durations=durations,
        duration_svg=duration_histogram([d["duration_s"] for d in durations["executions"]], f"{name} durations")
        if durations["executions"]
        else "",
        partitions=cells,
        heatmap_svg=partition_heatmap(cells["partitions"]) if cells["partitions"] else "",
        history=asset_views.code_history(loaded, caller.meta, name),
        incidents=[i.to_dict() for i in caller.meta.incidents(open_only=True, limit=100) if i.subject == name],
    )


@router.get("/graph")
def graph_page(request: Request, caller: Viewer) -> HTMLResponse:
    rows = views.assets(app_state(request), caller.meta)
    states: dict[str, str] = {}
    for row in rows:  # an asset is as good as its worst partition
        order = ("missing", "stale", "fresh")
        now = states.get(row["asset"], "fresh")
        states[row["asset"]] = min(now, row["state"], key=order.index) if row["state"] in order else now
    graph = views.project(app_state(request)).graph
    svg = layered_svg({name: tuple(graph.upstream[name]) for name in graph.order}, states)
    return render(request, caller, "graph.html", svg=svg)


@router.get("/runs")
def runs_page(request: Request, caller: Viewer, status: str | None = None) -> HTMLResponse:
    rows = views.runs(caller.meta, status or None, 100)
    return render(request, caller, "runs.html", rows=rows, status=status or "", statuses=views.RUN_STATUSES)


@router.post("/runs")
async def start_run_page(request: Request, caller: Operator) -> Response:
    """Start a run from a form (the assets, asset and graph pages); a refused selection comes back as a flash."""

    def act(fields: dict[str, str]) -> tuple[str, str]:
        selection, force = fields.get("selection", "").split(), fields.get("force") == "on"
        run_id = runner.start_run(app_state(request), caller.meta, caller.user, selection, force=force)
        return f"/runs/{quote(run_id)}", f"run {run_id} started"

    return await form_action(request, caller, "/assets", act)


@router.get("/runs/{run_id}")
def run_page(request: Request, caller: Viewer, run_id: str) -> HTMLResponse:
    view = views.run(caller.meta, run_id)
    if view["status"] == "running":  # what the attempts already say, before the step records catch up
        view["steps"] = [s.to_dict() for s in run_views.live_steps(caller.meta, view["run_id"])]
    line = run_views.timeline(caller.meta, view["run_id"], time.time())
    previous = [r["run_id"] for r in views.runs(caller.meta, None, 100) if r["created_at"] < view["created_at"]]
    counts: dict[str, int] = {}
    for s in view["steps"]:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    return render(
        request,
        caller,
        "run.html",
        run=view,
        counts=dict(sorted(counts.items())),
        timeline=line,
        timeline_svg=timeline_svg(line),
        previous=previous[0] if previous else None,
        savings=caller.meta.cache_savings(view["run_id"]),
        logs=views.logs(caller.meta, view["run_id"], None, None)[-LOG_LINES:],
    )


# The run page shows a run's last log lines; `cairn logs RUN` and /api/v1/runs/{id}/logs have them all.
LOG_LINES = 500


@router.get("/runs/{run_id}/timeline.svg")
def run_timeline_svg(caller: Viewer, run_id: str) -> Response:
    """The run's Gantt chart alone: the run page's script swaps it in while the run goes on."""
    line = run_views.timeline(caller.meta, run_id, time.time())
    return Response(timeline_svg(line), media_type="image/svg+xml")


@router.get("/models")
def models_page(request: Request, caller: Viewer) -> HTMLResponse:
    versions = [v.to_dict(details=True) for v in registry.models(caller.meta)]
    return render(request, caller, "models.html", versions=versions, me=caller.user.name)


@router.post("/models/{name}/{version}/approve")
async def approve_page(request: Request, caller: Approver, name: str, version: int) -> Response:
    def act(fields: dict[str, str]) -> tuple[str, str]:
        registry.approve(caller.meta, _model(name), version, fields.get("reason", ""), caller.environ)
        return "/models", f"approved {name} version {version}"

    return await form_action(request, caller, "/models", act)


@router.post("/models/{name}/{version}/promote")
async def promote_page(request: Request, caller: Approver, name: str, version: int) -> Response:
    def act(fields: dict[str, str]) -> tuple[str, str]:
        alias = fields.get("alias") or registry.DEFAULT_ALIAS
        registry.promote(caller.meta, _model(name), version, alias, caller.environ, fields.get("reason", ""))
        return "/models", f"{alias} of {name} now points at version {version}"

    return await form_action(request, caller, "/models", act)


@router.post("/models/{name}/rollback")
async def rollback_page(request: Request, caller: Approver, name: str) -> Response:
    def act(fields: dict[str, str]) -> tuple[str, str]:
        alias = fields.get("alias") or registry.DEFAULT_ALIAS
        registry.rollback(caller.meta, _model(name), alias, caller.environ, fields.get("reason", ""))
        return "/models", f"{alias} of {name} rolled back"

    return await form_action(request, caller, "/models", act)


def _model(name: str) -> str:
    try:
        return validate_name(name, "model")
    except CairnError as e:
        raise HTTPException(400, str(e)) from None
