"""After each run: open incidents for what failed, broke a contract or drifted, and close what recovered.

    run result ─▶ failed steps ─────────▶ failure | violation incident per asset (+ skipped descendants)
              ├─▶ executed, drift warned ▶ drift incident per asset
              └─▶ steps of open incidents that succeeded now ─▶ recovered; nothing left: closed
                                                                 └─▶ alerts ("opened", "resolved")

An incident is one per kind and asset while it is open: the same asset failing again, in another partition or
another run, extends it (its steps, its end) and sends no second alert. It closes when every partition that
failed (or drifted) has succeeded in a later run, and a freshness incident (opened by the daemon) when the
asset is materialized again; downstream steps skipped because of it are listed but need not run again. A run
that failed nothing and had no open incident to recover costs one read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cairn.config import Settings
from cairn.core.graph import Graph
from cairn.core.keys import step_label
from cairn.errors import CairnError
from cairn.observability.alerts import AlertStore, Delivery, Post, deliver_alerts, destinations

if TYPE_CHECKING:
    from cairn.storage.observations import NewIncident

log = logging.getLogger("cairn.observability")

VIOLATIONS = ("ContractViolation", "CheckFailed")  # error classes that make a violation, not a failure
_UPSTREAM_FAILED = "upstream failed: "  # the reason of a step skipped for a failed upstream (engine/run.py)
_MAX_ERROR = 500  # characters of the error kept in an incident's detail


class StepOutcome(Protocol):
    """What is read of one step of a `RunResult`."""

    @property
    def asset(self) -> str: ...
    @property
    def partition(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def error_class(self) -> type[CairnError] | None: ...


class RunOutcome(Protocol):
    """What is read of a `RunResult`."""

    @property
    def run_id(self) -> str: ...
    @property
    def steps(self) -> Sequence[StepOutcome]: ...


class IncidentStore(AlertStore, Protocol):
    """What the observer reads and writes in the metadata store."""

    def unrecovered_steps(self) -> list[tuple[int, str, str, str]]: ...

    def run_check_results(self, run_id: str, assets: Sequence[str]) -> list[tuple[str, str, list[dict[str, Any]]]]: ...

    def open_incident(
        self, incident: NewIncident, at: float, destinations: Sequence[tuple[str | None, str]]
    ) -> tuple[int, bool]: ...

    def recover_steps(
        self, steps: Sequence[tuple[int, str, str]], at: float, by: str, send_resolved: bool = True
    ) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class Observation:
    """What observing a run did: incidents opened (new), extended (already open) and closed, and the alerts."""

    opened: tuple[int, ...] = ()
    extended: tuple[int, ...] = ()
    closed: tuple[int, ...] = ()
    delivery: Delivery = field(default_factory=Delivery)


def observe_run(
    meta: IncidentStore,
    settings: Settings,
    result: RunOutcome,
    now: float,
    graph: Graph | None = None,
    *,
    deliver: bool = True,
    post: Post | None = None,
) -> Observation:
    """Record what a finished run means for incidents, and send the alerts that follows (one try each).

    Never raises for what observability itself meets (a store error, a failing webhook): it is logged, and the
    run's result stands.

    Args:
        meta: The metadata store.
        settings: Owners, alert routes and their delivery policy.
        result: The run's result.
        now: The clock (epoch seconds) the incident times are on.
        graph: The project's assets: their owners, remediations and drift checks (without it: none).
        deliver: Try the alerts at once (one try each, ``[alerts] timeout_s``); the daemon retries the rest.
        post: How to POST a webhook (tests).
    """
    try:
        return _observe(meta, settings, result, now, graph, deliver, post)
    except CairnError as exc:
        log.warning("could not record the incidents of run %s: %s", result.run_id, exc)
        return Observation()


def _observe(
    meta: IncidentStore,
    settings: Settings,
    result: RunOutcome,
    now: float,
    graph: Graph | None,
    deliver: bool,
    post: Post | None,
) -> Observation:
    failed = [s for s in result.steps if s.status == "failed"]
    drifted, clean = _drift(meta, result, graph)
    waiting = meta.unrecovered_steps()
    if not failed and not drifted and not waiting:
        return Observation()
    opened: list[int] = []
    extended: list[int] = []
    for incident in _incidents(result, failed, drifted, graph):
        incident_id, new = meta.open_incident(incident, now, destinations(incident.owners, settings))
        (opened if new else extended).append(incident_id)
    outcome = {(s.asset, s.partition): s.status for s in result.steps}
    executed = {s.asset for s in result.steps if s.status == "executed"}
    recovered = []
    for incident_id, asset, partition, role in waiting:
        if role == "drifted":
            ok = (asset, partition) in clean  # executed again, and its drift checks passed
        elif role == "stale":
            ok = asset in executed  # a new materialization of the asset (a cached step makes none)
        else:
            ok = outcome.get((asset, partition)) in ("executed", "cached")
        if ok:
            recovered.append((incident_id, asset, partition))
    closed = meta.recover_steps(recovered, now, result.run_id, settings.alerts.send_resolved)
    delivery = Delivery()
    if deliver and (opened or closed):
        delivery = deliver_alerts(meta, settings, now, post)
    return Observation(tuple(opened), tuple(extended), tuple(closed), delivery)


def _incidents(
    result: RunOutcome,
    failed: list[StepOutcome],
    drifted: dict[str, list[tuple[str, list[str]]]],
    graph: Graph | None,
) -> list[NewIncident]:
    """One incident per kind and asset of this run's failures and drift, with the steps skipped because of them."""
    groups: dict[tuple[str, str], list[StepOutcome]] = {}
    cause: dict[str, tuple[str, str]] = {}  # failed step label -> its group
    for step in failed:
        error_class = step.error_class.__name__ if step.error_class is not None else ""
        kind = "violation" if error_class in VIOLATIONS else "failure"
        groups.setdefault((kind, step.asset), []).append(step)
        cause[step_label(step.asset, step.partition)] = (kind, step.asset)
    skipped: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for step in result.steps:
        if step.status == "skipped" and step.reason.startswith(_UPSTREAM_FAILED):
            group = cause.get(step.reason.removeprefix(_UPSTREAM_FAILED).strip())
            if group is not None:
                skipped.setdefault(group, []).append((step.asset, step.partition, "skipped"))
    out = []
    for (kind, asset), steps in groups.items():
        first = steps[0]
        detail: dict[str, Any] = {
            "error_class": first.error_class.__name__ if first.error_class is not None else None,
            "error": _first_lines(first.error),
            "partitions": len(steps),
        }
        out.append(
            _incident(
                kind,
                asset,
                result.run_id,
                detail,
                graph,
                (*((s.asset, s.partition, "failed") for s in steps), *skipped.get((kind, asset), [])),
            )
        )
    for asset, hits in drifted.items():
        detail = {"rules": sorted({rule for _, rules in hits for rule in rules}), "partitions": len(hits)}
        out.append(
            _incident("drift", asset, result.run_id, detail, graph, tuple((asset, p, "drifted") for p, _ in hits))
        )
    return out


def _incident(
    kind: str,
    asset: str,
    run_id: str,
    detail: dict[str, Any],
    graph: Graph | None,
    steps: tuple[tuple[str, str, str], ...],
) -> NewIncident:
    definition = graph.assets.get(asset) if graph is not None else None
    owners: tuple[str, ...] = definition.owners if definition is not None else ()
    remediation = None
    if definition is not None:
        remediation = definition.on_failure if kind == "failure" else definition.on_violation
    from cairn.storage.observations import NewIncident

    return NewIncident(kind, asset, run_id, detail, owners, remediation, steps)


def _drift(
    meta: IncidentStore, result: RunOutcome, graph: Graph | None
) -> tuple[dict[str, list[tuple[str, list[str]]]], set[tuple[str, str]]]:
    """The executed steps of assets with drift checks whose (non-blocking) drift rules failed, by asset with the
    rules, and those whose drift rules all passed. Read only when such an asset executed."""
    if graph is None:
        return {}, set()
    rules: dict[str, set[str]] = {}
    for step in result.steps:
        if step.status == "executed" and step.asset in graph.assets and step.asset not in rules:
            names = {c.name for c in graph.assets[step.asset].checks if c.drift is not None}
            if names:
                rules[step.asset] = names
    if not rules:
        return {}, set()
    drifted: dict[str, list[tuple[str, list[str]]]] = {}
    clean: set[tuple[str, str]] = set()
    for asset, partition, results in meta.run_check_results(result.run_id, sorted(rules)):
        failing = [r["rule"] for r in results if r.get("rule") in rules[asset] and not r.get("passed", True)]
        if failing:
            drifted.setdefault(asset, []).append((partition, failing))
        else:
            clean.add((asset, partition))
    return drifted, clean


def _first_lines(text: str | None) -> str | None:
    if not text:
        return None
    return text.strip()[:_MAX_ERROR]
