"""`create_app(project_dir)`: the FastAPI application of one project, its error mapping and static files."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from cairn.config import load_settings
from cairn.errors import AccessDenied, CairnError, DefinitionError, Refused, UsageError
from cairn.version import __version__
from cairn.web import api, pages, session
from cairn.web.state import AppState

HERE = Path(__file__).parent

# cairn's errors, in the order they are matched: a refusal (self-approval, a failed gate) is a conflict with
# the record, a name or value that is not allowed a bad request.
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (AccessDenied, 403),
    (Refused, 409),
    (LookupError, 404),
    (DefinitionError, 400),
    (UsageError, 400),
    (CairnError, 400),
)


def create_app(project_dir: str | os.PathLike[str] = ".") -> FastAPI:
    """The web UI and HTTP API of the project in `project_dir` (its cairn.toml is read now)."""
    app = FastAPI(
        title="cairn",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # the interactive docs page loads scripts from a CDN: the schema is enough
        redoc_url=None,
    )
    app.state.cairn = AppState(load_settings(project_dir))
    for error, code in _STATUS:
        app.add_exception_handler(error, _handler(code))
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(session.LoginNeeded, _login)
    app.middleware("http")(_headers)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


def _handler(code: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=code)
        return session.error_page(request, code, str(exc))

    return handle


async def _http_error(request: Request, exc: Exception) -> Response:
    """The API's errors as JSON (with their headers: ``WWW-Authenticate``), a page's as a page."""
    assert isinstance(exc, StarletteHTTPException)
    if request.url.path.startswith("/api/") or not isinstance(exc.detail, str):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    return session.error_page(request, exc.status_code, exc.detail)


async def _login(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/login", 303)


async def _headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Headers that keep pages from running anything but their own static files, or being framed."""
    response = await call_next(request)
    response.headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'; form-action 'self'"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response
