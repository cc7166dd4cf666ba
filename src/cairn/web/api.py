"""The HTTP API under ``/api/v1``: every route names the least role it needs (`need`), which the OpenAPI schema
shows as ``x-cairn-role``."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from cairn import registry, security
from cairn.core.keys import validate_name
from cairn.security import Role
from cairn.web import asset_views, run_views, runner, views
from cairn.web.auth import ROLE_KEY, Caller, need
from cairn.web.state import AppState

router = APIRouter(prefix="/api/v1")
Limit = Annotated[int, Query(ge=1, le=1000)]
Text = Annotated[str | None, Query(max_length=256, pattern=r"^[A-Za-z0-9_.:|+*@-]*$")]
OpenOnly = Annotated[bool, Query(alias="open")]


def _role(role: Role) -> dict[str, Any]:
    return {ROLE_KEY: role.value}


Viewer = Annotated[Caller, Depends(need(Role.VIEWER, "reading", cookie=True))]
Member = Annotated[Caller, Depends(need(Role.VIEWER, "rotating a token"))]  # any user, with a bearer token
Operator = Annotated[Caller, Depends(need(Role.OPERATOR, "starting a run or a backfill"))]
Approver = Annotated[Caller, Depends(need(Role.APPROVER, "approving, promoting or rolling back a model"))]
Admin = Annotated[Caller, Depends(need(Role.ADMIN, "managing users"))]
VIEW = _role(Role.VIEWER)


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.cairn
    return state


class RunRequest(BaseModel):
    selection: list[str] = Field(default_factory=list, max_length=100)
    partition: str | None = Field(default=None, max_length=256)
    force: bool = False


class BackfillRequest(BaseModel):
    selection: list[str] = Field(default_factory=list, max_length=100)
    first: str = Field(alias="from", max_length=256)
    last: str = Field(alias="to", max_length=256)


class NewUser(BaseModel):
    name: str = Field(max_length=128)
    role: str = Field(max_length=16)


class RoleChange(BaseModel):
    role: str = Field(max_length=16)


class ApproveRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class AliasRequest(BaseModel):
    alias: str = Field(default=registry.DEFAULT_ALIAS, max_length=128)
    reason: str = Field(default="", max_length=2000)


@router.get("/me", openapi_extra=VIEW)
def me(caller: Viewer) -> dict[str, Any]:
    """Who the token is: name and role."""
    return {"name": caller.user.name, "role": caller.user.role}


@router.get("/assets", openapi_extra=VIEW)
def list_assets(request: Request, caller: Viewer) -> list[dict[str, Any]]:
    """Every asset partition with its state (fresh, stale, missing), reason and latest materialization."""
    return views.assets(_state(request), caller.meta)


@router.get("/assets/{name}", openapi_extra=VIEW)
def get_asset(request: Request, caller: Viewer, name: str, partition: Text = None, limit: Limit = 50) -> dict[str, Any]:
    """One asset: materializations with their checks, lineage upstream and downstream."""
    return views.asset(_state(request), caller.meta, name, partition, limit)


@router.get("/assets/{name}/metrics", openapi_extra=VIEW)
def asset_metrics(request: Request, caller: Viewer, name: str, limit: Limit = 200) -> dict[str, Any]:
    """The asset's numeric metrics over its newest materializations, oldest first (the asset page's trends)."""
    return asset_views.metrics(views.project(_state(request)), caller.meta, name, limit)


@router.get("/assets/{name}/durations", openapi_extra=VIEW)
def asset_durations(request: Request, caller: Viewer, name: str, limit: Limit = 200) -> dict[str, Any]:
    """How long the asset's step took each time it executed (the asset page's histogram)."""
    return asset_views.durations(views.project(_state(request)), caller.meta, name, limit)


@router.get("/assets/{name}/partitions", openapi_extra=VIEW)
def asset_partitions(request: Request, caller: Viewer, name: str) -> dict[str, Any]:
    """The state of each partition of the asset (the asset page's heat map)."""
    return asset_views.partitions(views.project(_state(request)), caller.meta, name)


@router.get("/assets/{name}/code", openapi_extra=VIEW)
def asset_code(request: Request, caller: Viewer, name: str) -> dict[str, Any]:
    """The asset's code versions over time: the run that first used each, its actor, git commit and changes."""
    return asset_views.code_history(views.project(_state(request)), caller.meta, name)


@router.get("/runs", openapi_extra=VIEW)
def list_runs(caller: Viewer, status: Text = None, limit: Limit = 50) -> list[dict[str, Any]]:
    """Run history, newest first; `status` keeps the runs with that status."""
    return views.runs(caller.meta, status, limit)


@router.post("/runs", openapi_extra=_role(Role.OPERATOR), status_code=202)
def trigger_run(request: Request, caller: Operator, body: RunRequest) -> dict[str, Any]:
    """Start a run in the background; returns its id at once (poll ``GET /runs/{run_id}``)."""
    run_id = runner.start_run(_state(request), caller.meta, caller.user, body.selection, body.partition, body.force)
    return {"run_id": run_id}


@router.get("/runs/{run_id}", openapi_extra=VIEW)
def get_run(caller: Viewer, run_id: str) -> dict[str, Any]:
    """One run with its steps and attempts."""
    return views.run(caller.meta, run_id)


@router.get("/runs/{run_id}/progress", openapi_extra=VIEW)
def run_progress(caller: Viewer, run_id: str) -> dict[str, Any]:
    """How far a run is: status, `done`, step counts and each step's status (the run page polls it)."""
    return run_views.progress(caller.meta, run_id, time.time())


@router.get("/runs/{run_id}/timeline", openapi_extra=VIEW)
def run_timeline(caller: Viewer, run_id: str) -> dict[str, Any]:
    """The run's attempts on a time axis from its start, one row per step (the run page's Gantt chart)."""
    return run_views.timeline(caller.meta, run_id, time.time())


@router.get("/runs/{run_id}/diff/{other}", openapi_extra=VIEW)
def run_diff(caller: Viewer, run_id: str, other: str) -> dict[str, Any]:
    """Two runs side by side: each step's status and duration in both, and what differs (`cairn diff`)."""
    return run_views.diff(caller.meta, run_id, other)


@router.get("/runs/{run_id}/logs", openapi_extra=VIEW)
def get_logs(caller: Viewer, run_id: str, asset: Text = None, partition: Text = None) -> list[dict[str, Any]]:
    """The captured log lines of a run (of one step with `asset` and `partition`)."""
    return views.logs(caller.meta, run_id, asset, partition)


@router.get("/snapshots", openapi_extra=VIEW)
def list_snapshots(caller: Viewer) -> list[dict[str, Any]]:
    return [s.to_dict() for s in caller.meta.snapshots()]


@router.get("/snapshots/{name}", openapi_extra=VIEW)
def get_snapshot(caller: Viewer, name: str) -> dict[str, Any]:
    return views.snapshot(caller.meta, name)


@router.get("/backfills", openapi_extra=VIEW)
def list_backfills(caller: Viewer, limit: Limit = 50) -> list[dict[str, Any]]:
    return views.backfills(caller.meta, limit)


@router.post("/backfills", openapi_extra=_role(Role.OPERATOR), status_code=202)
def start_backfill(request: Request, caller: Operator, body: BackfillRequest) -> dict[str, Any]:
    """Record a backfill of the selection over partitions ``from`` to ``to`` and start its run in the background
    (`cairn backfill SEL --from A --to B`); returns both ids at once. Audited as ``backfill.start``."""
    state = _state(request)
    backfill_id, run_id = runner.start_backfill(state, caller.meta, caller.user, body.selection, body.first, body.last)
    return {"backfill_id": backfill_id, "run_id": run_id}


@router.get("/backfills/{backfill_id}", openapi_extra=VIEW)
def get_backfill(caller: Viewer, backfill_id: str) -> dict[str, Any]:
    """One backfill (an id, a prefix or ``latest``): progress, runs, and the status of each step so far."""
    return views.backfill(caller.meta, backfill_id)


@router.get("/incidents", openapi_extra=VIEW)
def list_incidents(caller: Viewer, open_only: OpenOnly = False, limit: Limit = 50) -> list[dict[str, Any]]:
    """Incidents newest first (only the open ones with ``open=true``), with the steps they affected and alerts."""
    return views.incidents(caller.meta, open_only, limit)


@router.get("/models", openapi_extra=VIEW)
def list_models(caller: Viewer) -> list[dict[str, Any]]:
    """Every model version with its gates summary, approvals and aliases."""
    return [v.to_dict() for v in registry.models(caller.meta)]


@router.get("/models/{name}", openapi_extra=VIEW)
def get_model(caller: Viewer, name: str) -> list[dict[str, Any]]:
    """Every version of one model, in full."""
    validate_name(name, "model")
    versions = registry.models(caller.meta, name)
    if not versions:
        registry.version(caller.meta, name)  # raises the error that names the known models
    return [v.to_dict(details=True) for v in versions]


@router.get("/models/{name}/{version}", openapi_extra=VIEW)
def get_model_version(caller: Viewer, name: str, version: int) -> dict[str, Any]:
    validate_name(name, "model")
    return registry.version(caller.meta, name, version).to_dict(details=True)


@router.post("/models/{name}/{version}/approve", openapi_extra=_role(Role.APPROVER))
def approve(caller: Approver, name: str, version: int, body: ApproveRequest) -> dict[str, Any]:
    """Approve a version (never one's own: 409); audited as ``model.approve``."""
    validate_name(name, "model")
    return registry.approve(caller.meta, name, version, body.reason, caller.environ).to_dict()


@router.post("/models/{name}/{version}/promote", openapi_extra=_role(Role.APPROVER))
def promote(caller: Approver, name: str, version: int, body: AliasRequest) -> dict[str, Any]:
    """Point an alias at a version whose blocking gates passed and which another user approved (else 409)."""
    validate_name(name, "model")
    return registry.promote(caller.meta, name, version, body.alias, caller.environ, body.reason).to_dict()


@router.post("/models/{name}/rollback", openapi_extra=_role(Role.APPROVER))
def rollback(caller: Approver, name: str, body: AliasRequest) -> dict[str, Any]:
    """Move an alias back to the version it pointed at before."""
    validate_name(name, "model")
    return registry.rollback(caller.meta, name, body.alias, caller.environ, body.reason).to_dict()


@router.get("/aliases", openapi_extra=VIEW)
def list_aliases(caller: Viewer, asset: Text = None) -> list[dict[str, Any]]:
    """Every alias (of one asset) with what it points at and its moves, oldest first."""
    return views.aliases(caller.meta, asset)


@router.get("/aliases/{alias}/history", openapi_extra=VIEW)
def get_alias_history(caller: Viewer, alias: str, asset: Text = None) -> list[dict[str, Any]]:
    """Every move of one alias (of one asset): where it pointed after, who moved it, when and why."""
    return views.alias_history(caller.meta, alias, asset)


@router.get("/audit", openapi_extra=VIEW)
def list_audit(
    caller: Viewer, limit: Limit = 50, actor: Text = None, action: Text = None, subject: Text = None
) -> list[dict[str, Any]]:
    """The audit log, newest first, narrowed by actor, action (``model.*`` for a family) and subject."""
    return views.audit(caller.meta, limit, actor, action, subject)


@router.get("/audit/verify", openapi_extra=VIEW)
def verify_audit(caller: Viewer) -> dict[str, Any]:
    """`cairn audit verify`: whether the audit log's hash chain holds, and the first row where it does not."""
    return views.audit_verification(caller.meta)


@router.get("/users", openapi_extra=_role(Role.ADMIN))
def list_users(caller: Admin) -> list[dict[str, Any]]:
    """The project's users and roles (never a token or its hash)."""
    return [u.to_dict() for u in caller.meta.users()]


@router.post("/users", openapi_extra=_role(Role.ADMIN), status_code=201)
def add_user(caller: Admin, body: NewUser) -> dict[str, Any]:
    """Add a user (`cairn users add`); the answer holds their token, this once: only its hash is stored.
    Audited as ``user.add``."""
    token = security.add_user(caller.meta, body.name, body.role, caller.user)
    return {"name": body.name, "role": Role.parse(body.role).value, "token": token}


@router.post("/users/{user}/role", openapi_extra=_role(Role.ADMIN))
def change_role(caller: Admin, user: str, body: RoleChange) -> dict[str, Any]:
    """Give a user another role (`cairn users role`); the last enabled admin keeps theirs. Audited as ``user.role``."""
    return security.set_role(caller.meta, user, body.role, caller.user).to_dict()


@router.post("/users/{user}/disable", openapi_extra=_role(Role.ADMIN))
def disable_user(caller: Admin, user: str) -> dict[str, Any]:
    """Disable a user for good: their token stops working (`cairn users disable`). Audited as ``user.disable``."""
    return security.disable_user(caller.meta, user, caller.user).to_dict()


@router.post("/users/{user}/token", openapi_extra=VIEW)
def rotate_token(caller: Member, user: str) -> dict[str, Any]:
    """A new token for a user, shown this once; the old one stops working. Anyone may rotate their own token,
    an admin anyone's (403 otherwise). Audited as ``user.rotate``."""
    return {"name": user, "token": security.rotate_token(caller.meta, user, caller.user)}
