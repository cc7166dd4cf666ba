"""Who is calling and whether they may: the bearer token (or the session cookie) checked per request against
the project's users with `cairn.security`, and the CSRF tokens of the pages' forms."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fastapi import HTTPException, Request

from cairn.core.governance import User
from cairn.errors import AccessDenied
from cairn.security import TOKEN_VARIABLE, Role, check_role, current_user
from cairn.storage.metadata import MetadataStore, open_metadata
from cairn.web.state import AppState

SESSION_COOKIE = "cairn_session"
ROLE_KEY = "x-cairn-role"  # the OpenAPI extension that names the role a route needs (the tests enumerate it)


@dataclass(frozen=True, slots=True)
class Caller:
    """The user of one request, their token (to act as them through `environ`) and the open metadata store."""

    user: User
    token: str
    meta: MetadataStore

    @property
    def environ(self) -> dict[str, str]:
        """The environment the registry's functions read the acting user from."""
        return {TOKEN_VARIABLE: self.token}


def request_token(request: Request, *, cookie: bool) -> str:
    """The ``Authorization: Bearer`` token, else (when `cookie`) the session cookie's; empty when neither."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE, "").strip() if cookie else ""


def authenticate(meta: MetadataStore, token: str) -> User:
    """The enabled user holding `token`; HTTP 401 when there is none (no token, unknown, disabled)."""
    if not token:
        raise HTTPException(401, "this route needs `Authorization: Bearer <token>`", {"WWW-Authenticate": "Bearer"})
    try:
        user = current_user(meta, {TOKEN_VARIABLE: token})
    except AccessDenied as e:
        message = str(e).replace(TOKEN_VARIABLE, "the bearer token")
        raise HTTPException(401, message, {"WWW-Authenticate": "Bearer"}) from None
    assert user is not None  # a non-empty token either names a user or raised
    return user


def need(role: Role, action: str, *, cookie: bool = False) -> Callable[[Request], Iterator[Caller]]:
    """A FastAPI dependency: the caller, provided their role allows `action` (401 / 403 otherwise).

    `cookie` lets the session cookie stand for the bearer token; only read-only routes allow it, so that a
    cross-site form can never make a state change with the browser's cookie.
    """

    def dependency(request: Request) -> Iterator[Caller]:
        state: AppState = request.app.state.cairn
        meta = open_metadata(state.settings.database, state.settings.root)
        try:
            token = request_token(request, cookie=cookie)
            user = authenticate(meta, token)
            try:
                check_role(user, role, action)
            except AccessDenied as e:
                raise HTTPException(403, str(e)) from None
            yield Caller(user, token, meta)
        finally:
            meta.close()

    return dependency


def csrf_token(secret: bytes, session: str) -> str:
    """The CSRF token of a session's forms: an HMAC of the session token under the server's secret."""
    return hmac.new(secret, b"cairn.csrf/1\0" + session.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: bytes, session: str, sent: str) -> bool:
    return bool(session) and hmac.compare_digest(csrf_token(secret, session), sent)
