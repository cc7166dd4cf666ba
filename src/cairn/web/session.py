"""What every page shares: the session's user (from the HttpOnly cookie the login form set), rendering a template
with the common context, the CSRF check of a form post, and one-shot flash messages.

A flash message is what a form's action says after it redirects (post, redirect, get): it rides in a short-lived
HttpOnly cookie that the next page shows once (as ``#flash-error`` or ``#flash-ok``) and deletes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, unquote

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from cairn.errors import AccessDenied, CairnError
from cairn.security import Role, check_role
from cairn.storage.metadata import open_metadata
from cairn.web.auth import SESSION_COOKIE, Caller, authenticate, csrf_ok, csrf_token
from cairn.web.state import AppState

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
FLASH_COOKIE = "cairn_flash"
FLASH_KINDS = ("error", "ok")
_MAX_FORM = 64 * 1024
_MAX_FLASH = 800
_LOCAL_PATH = re.compile(r"^/[A-Za-z0-9_.@|:+/-]{0,300}\Z")


class LoginNeeded(Exception):
    """No session, or one whose token no longer works: the page redirects to the login form."""


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.cairn
    return state


def page_user(role: Role, action: str) -> Any:
    """A dependency: the session's caller, provided their role allows `action`."""

    def dependency(request: Request) -> Iterator[Caller]:
        state = app_state(request)
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
Operator = Annotated[Caller, page_user(Role.OPERATOR, "starting a run or a backfill")]
Approver = Annotated[Caller, page_user(Role.APPROVER, "approving, promoting or rolling back a model")]
Admin = Annotated[Caller, page_user(Role.ADMIN, "managing users")]


def render(request: Request, caller: Caller | None, name: str, code: int = 200, **context: Any) -> HTMLResponse:
    """A template with the page's common context: the user, their CSRF token, the project's name, and the
    flash message a redirect left (shown once)."""
    state = app_state(request)
    flash = _read_flash(request)
    shown = {
        "user": caller.user if caller else None,
        "csrf": csrf_token(state.secret, caller.token) if caller else "",
        "project": state.settings.name,
        "can": (lambda role: Role(caller.user.role).allows(Role(role))) if caller else (lambda role: False),
        "flash": flash,
        **context,
    }
    response = templates.TemplateResponse(request, name, shown, status_code=code)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def error_page(request: Request, status: int, message: str) -> Response:
    if status == 401:
        return RedirectResponse("/login", 303)
    return render(request, None, "error.html", status, status_code=status, message=message)


async def form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the pages post nothing else), one value per field."""
    body = await request.body()
    if len(body) > _MAX_FORM:
        raise HTTPException(413, "form too large")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), max_num_fields=20).items()}


def checked(request: Request, caller: Caller, fields: dict[str, str]) -> None:
    """Refuse (403) a form post whose CSRF token is not the session's, before anything changes."""
    if not csrf_ok(app_state(request).secret, caller.token, fields.get("csrf", "")):
        raise HTTPException(403, "the form's CSRF token is missing or stale: reload the page and try again")


async def form_action(
    request: Request, caller: Caller, back: str, act: Callable[[dict[str, str]], tuple[str, str]]
) -> RedirectResponse:
    """A page's form post: refuse it without the session's CSRF token, else ``act(fields)``, which returns the
    page to go to and what to say there; a refusal (any `CairnError`) goes back to the form's ``next`` field
    or `back`, with its message."""
    fields = await form(request)
    checked(request, caller, fields)
    try:
        target, message = act(fields)
    except CairnError as e:
        return redirect(fields.get("next") or back, "error", str(e))
    return redirect(target, "ok", message)


def redirect(url: str, kind: str | None = None, message: str = "") -> RedirectResponse:
    """A 303 to `url` (a local path; anything else goes to ``/assets``), leaving a flash message when given."""
    target = url if _LOCAL_PATH.match(url) and "//" not in url and ".." not in url else "/assets"
    response = RedirectResponse(target, 303)
    if kind is not None:
        assert kind in FLASH_KINDS
        value = quote(f"{kind}:{message[:_MAX_FLASH]}", safe="")
        response.set_cookie(FLASH_COOKIE, value, max_age=60, httponly=True, samesite="strict", path="/")
    return response


def _read_flash(request: Request) -> dict[str, str] | None:
    kind, _, message = unquote(request.cookies.get(FLASH_COOKIE, "")).partition(":")
    return {"kind": kind, "message": message[:_MAX_FLASH]} if kind in FLASH_KINDS and message else None
