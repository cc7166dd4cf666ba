"""The server-rendered pages: login, assets, one asset, runs, one run, models, and the asset graph.

A page reads the session cookie (HttpOnly, SameSite=Strict) that the login form set from a pasted token; a
visitor without a valid one is sent to the login page. Every form carries a CSRF token derived from the
session, and every form post is checked against it before anything changes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from cairn import registry
from cairn.errors import AccessDenied, CairnError
from cairn.security import Role, check_role
from cairn.storage.metadata import open_metadata
from cairn.web import runner, views
from cairn.web.auth import SESSION_COOKIE, Caller, authenticate, csrf_ok, csrf_token
from cairn.web.graph import layered_svg
from cairn.web.state import AppState

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(include_in_schema=False)
LOGIN_CSRF = "cairn_login_csrf"
_MAX_FORM = 64 * 1024


class LoginNeeded(Exception):
    """No session, or one whose token no longer works: the page redirects to the login form."""


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.cairn
    return state


def page_user(role: Role, action: str) -> Any:
    """A dependency: the session's caller, provided their role allows `action`."""

    def dependency(request: Request) -> Iterator[Caller]:
        state = _state(request)
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            raise LoginNeeded()
        meta = open_metadata(state.settings.database, state.settings.root)
        try:
            try:
                user = authenticate(meta, token)
            except HTTPException:
                raise LoginNeeded() from None
            try:
                check_role(user, role, action)
            except AccessDenied as e:
                raise HTTPException(403, str(e)) from None
            yield Caller(user, token, meta)
        finally:
            meta.close()

    return Depends(dependency)


Viewer = Annotated[Caller, page_user(Role.VIEWER, "reading")]
Operator = Annotated[Caller, page_user(Role.OPERATOR, "starting a run")]
Approver = Annotated[Caller, page_user(Role.APPROVER, "approving or promoting a model")]


def render(request: Request, caller: Caller | None, name: str, code: int = 200, **context: Any) -> HTMLResponse:
    """A template with the page's common context: the user, their CSRF token and the project's name."""
    state = _state(request)
    shown = {
        "user": caller.user if caller else None,
        "csrf": csrf_token(state.secret, caller.token) if caller else "",
        "project": state.settings.name,
        "can": (lambda role: Role(caller.user.role).allows(Role(role))) if caller else (lambda role: False),
        **context,
    }
    return templates.TemplateResponse(request, name, shown, status_code=code)


def error_page(request: Request, status: int, message: str) -> Response:
    if status == 401:
        return RedirectResponse("/login", 303)
    return render(request, None, "error.html", status, status_code=status, message=message)


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the pages post nothing else), one value per field."""
    body = await request.body()
    if len(body) > _MAX_FORM:
        raise HTTPException(413, "form too large")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), max_num_fields=20).items()}


def _checked(request: Request, caller: Caller, form: dict[str, str]) -> None:
    if not csrf_ok(_state(request).secret, caller.token, form.get("csrf", "")):
        raise HTTPException(403, "the form's CSRF token is missing or stale: reload the page and try again")


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    nonce = secrets.token_urlsafe(24)
    response = render(request, None, "login.html", login_csrf=nonce)
    response.set_cookie(LOGIN_CSRF, nonce, httponly=True, samesite="strict", path="/login")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    """Check a pasted token and keep it in an HttpOnly cookie; the page never shows it again."""
    form = await _form(request)
    nonce = request.cookies.get(LOGIN_CSRF, "")
    if not nonce or not secrets.compare_digest(nonce, form.get("csrf", "")):
        raise HTTPException(403, "the login form's CSRF token is missing or stale: reload the page")
    state = _state(request)
    token = form.get("token", "").strip()
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
    _checked(request, caller, await _form(request))
    response = RedirectResponse("/login", 303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
def home(caller: Viewer) -> Response:
    return RedirectResponse("/assets", 303)


@router.get("/assets")
def assets_page(request: Request, caller: Viewer) -> HTMLResponse:
    rows = views.assets(_state(request), caller.meta)
    return render(request, caller, "assets.html", rows=rows)


@router.get("/assets/{name}")
def asset_page(request: Request, caller: Viewer, name: str) -> HTMLResponse:
    view = views.asset(_state(request), caller.meta, name, None, 50)
    return render(request, caller, "asset.html", view=view)


@router.get("/runs")
def runs_page(request: Request, caller: Viewer, status: str | None = None) -> HTMLResponse:
    rows = views.runs(caller.meta, status or None, 100)
    return render(request, caller, "runs.html", rows=rows, status=status or "", statuses=views.RUN_STATUSES)


@router.post("/runs")
async def start_run_page(request: Request, caller: Operator) -> Response:
    form = await _form(request)
    _checked(request, caller, form)
    selection = form.get("selection", "").split()
    run_id = runner.start_run(_state(request), caller.meta, caller.user, selection, force=form.get("force") == "on")
    return RedirectResponse(f"/runs/{quote(run_id)}", 303)


@router.get("/runs/{run_id}")
def run_page(request: Request, caller: Viewer, run_id: str) -> HTMLResponse:
    view = views.run(caller.meta, run_id)
    return render(request, caller, "run.html", run=view)


@router.get("/models")
def models_page(request: Request, caller: Viewer) -> HTMLResponse:
    versions = [v.to_dict(details=True) for v in registry.models(caller.meta)]
    return render(request, caller, "models.html", versions=versions, me=caller.user.name)


@router.post("/models/{name}/{version}/approve")
async def approve_page(request: Request, caller: Approver, name: str, version: int) -> Response:
    form = await _form(request)
    _checked(request, caller, form)
    registry.approve(caller.meta, _model(name), version, form.get("reason", ""), caller.environ)
    return RedirectResponse("/models", 303)


@router.post("/models/{name}/{version}/promote")
async def promote_page(request: Request, caller: Approver, name: str, version: int) -> Response:
    form = await _form(request)
    _checked(request, caller, form)
    alias = form.get("alias") or registry.DEFAULT_ALIAS
    registry.promote(caller.meta, _model(name), version, alias, caller.environ, form.get("reason", ""))
    return RedirectResponse("/models", 303)


@router.get("/graph")
def graph_page(request: Request, caller: Viewer) -> HTMLResponse:
    rows = views.assets(_state(request), caller.meta)
    states: dict[str, str] = {}
    for row in rows:  # an asset is as good as its worst partition
        order = ("missing", "stale", "fresh")
        now = states.get(row["asset"], "fresh")
        states[row["asset"]] = min(now, row["state"], key=order.index) if row["state"] in order else now
    graph = views.project(_state(request)).graph
    svg = layered_svg({name: tuple(graph.upstream[name]) for name in graph.order}, states)
    return render(request, caller, "graph.html", svg=svg)


def _model(name: str) -> str:
    from cairn.core.keys import validate_name

    try:
        return validate_name(name, "model")
    except CairnError as e:
        raise HTTPException(400, str(e)) from None
