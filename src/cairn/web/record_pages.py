"""The pages of the project's other records: backfills (with their progress, and a form that starts one),
snapshots, aliases (with their history), the audit log (with the verification of its chain), incidents and
their alerts, two runs side by side, and the users (for admins: change a role, disable). Each shows what its
API route returns (`cairn.web.views`, `cairn.web.run_views`).

No page ever shows a token: users are added and tokens rotated with `cairn users` or the API, which show
the new token once."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from cairn import security
from cairn.security import Role
from cairn.web import run_views, runner, views
from cairn.web.plots import partition_heatmap
from cairn.web.session import Admin, Operator, Viewer, app_state, form_action, render

router = APIRouter(include_in_schema=False)


@router.get("/backfills")
def backfills_page(request: Request, caller: Viewer) -> HTMLResponse:
    return render(request, caller, "backfills.html", rows=views.backfills(caller.meta, 100))


@router.post("/backfills")
async def start_backfill_page(request: Request, caller: Operator) -> Response:
    """Start a backfill from the backfills page's form; a refused selection or range comes back as a flash."""

    def act(fields: dict[str, str]) -> tuple[str, str]:
        selection, first, last = fields.get("selection", "").split(), fields.get("from", ""), fields.get("to", "")
        backfill_id, _ = runner.start_backfill(app_state(request), caller.meta, caller.user, selection, first, last)
        return f"/backfills/{quote(backfill_id)}", f"backfill {backfill_id} started"

    return await form_action(request, caller, "/backfills", act)


@router.get("/backfills/{backfill_id}")
def backfill_page(request: Request, caller: Viewer, backfill_id: str) -> HTMLResponse:
    view = views.backfill(caller.meta, backfill_id)
    cells = [{"row": s["asset"], "partition": s["partition"] or "", "state": s["status"]} for s in view["steps"]]
    return render(request, caller, "backfill.html", b=view, heatmap_svg=partition_heatmap(cells) if cells else "")


@router.get("/snapshots")
def snapshots_page(request: Request, caller: Viewer) -> HTMLResponse:
    return render(request, caller, "snapshots.html", rows=[s.to_dict() for s in caller.meta.snapshots()])


@router.get("/snapshots/{name}")
def snapshot_page(request: Request, caller: Viewer, name: str) -> HTMLResponse:
    return render(request, caller, "snapshot.html", snap=views.snapshot(caller.meta, name))


@router.get("/aliases")
def aliases_page(request: Request, caller: Viewer) -> HTMLResponse:
    return render(request, caller, "aliases.html", rows=views.aliases(caller.meta, None))


@router.get("/audit")
def audit_page(
    request: Request,
    caller: Viewer,
    actor: str | None = None,
    action: str | None = None,
    subject: str | None = None,
) -> HTMLResponse:
    """The audit log, newest first, narrowed like ``GET /api/v1/audit``, and whether its hash chain holds."""
    filters = {"actor": actor or None, "action": action or None, "subject": subject or None}
    entries = views.audit(caller.meta, 200, filters["actor"], filters["action"], filters["subject"])
    verified = views.audit_verification(caller.meta)
    return render(request, caller, "audit.html", entries=entries, verified=verified, filters=filters)


@router.get("/incidents")
def incidents_page(
    request: Request, caller: Viewer, shown: Annotated[str | None, Query(alias="open", max_length=8)] = None
) -> HTMLResponse:
    only_open = shown in ("1", "true", "on")
    rows = views.incidents(caller.meta, only_open, 100)
    return render(request, caller, "incidents.html", rows=rows, only_open=only_open)


@router.get("/diff")
def diff_page(request: Request, caller: Viewer, a: str | None = None, b: str | None = None) -> HTMLResponse:
    """Two runs side by side; without both runs, the form to choose them."""
    runs = views.runs(caller.meta, None, 100)
    view = run_views.diff(caller.meta, a, b) if a and b else None
    return render(request, caller, "diff.html", view=view, runs=runs, a=a or "", b=b or "")


@router.get("/users")
def users_page(request: Request, caller: Admin) -> HTMLResponse:
    rows = [u.to_dict() for u in caller.meta.users()]
    return render(request, caller, "users.html", rows=rows, roles=[r.value for r in Role])


@router.post("/users/{user}/role")
async def user_role_page(request: Request, caller: Admin, user: str) -> Response:
    def act(fields: dict[str, str]) -> tuple[str, str]:
        changed = security.set_role(caller.meta, user, fields.get("role", ""), caller.user)
        return "/users", f"{changed.name} is now {changed.role}"

    return await form_action(request, caller, "/users", act)


@router.post("/users/{user}/disable")
async def user_disable_page(request: Request, caller: Admin, user: str) -> Response:
    def act(fields: dict[str, str]) -> tuple[str, str]:
        security.disable_user(caller.meta, user, caller.user)
        return "/users", f"{user} is disabled: their token no longer works"

    return await form_action(request, caller, "/users", act)
