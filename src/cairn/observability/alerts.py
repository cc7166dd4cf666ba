"""Alerts: where an incident's alerts go, what they say, and their delivery (a JSON POST to a webhook, or the log).

Routing: each owner of the incident (``owners=`` on its asset, or on its SLO rule) gets the alert at its
``[owners]`` webhook; an owner without one, or an incident without owners, goes to ``[alerts] webhook``, and
without that to the log (the ``cairn.alerts`` logger, which prints to stderr unless logging is configured).

Delivery takes the due alerts of the outbox one by one: claim (so that two deliverers never post the same try),
POST with a short timeout, then sent, or pending again after a backoff (``backoff_s`` doubling per try) until
``attempts`` tries failed. A failing webhook is logged, never raised: it must not fail a run or a tick.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cairn.config import Settings
from cairn.storage.observability import (
    GAVE_UP,
    LOG_DESTINATION,
    LOGGED,
    OPENED,
    PENDING,
    SENT,
)

if TYPE_CHECKING:
    from cairn.storage.observations import AlertRecord, IncidentRecord

log = logging.getLogger("cairn.alerts")

# post(url, body, timeout): deliver one JSON body, raising on any failure (connection, timeout, HTTP >= 400).
Post = Callable[[str, bytes, float], None]


class AlertStore(Protocol):
    """What delivery reads and writes in the metadata store."""

    def due_alerts(self, now: float, limit: int = 100) -> list[AlertRecord]: ...

    def claim_alert(self, alert_id: int, attempts: int, now: float, hold_s: float) -> bool: ...

    def finish_alert(
        self, alert_id: int, status: str, at: float, next_try_at: float | None = None, error: str | None = None
    ) -> None: ...

    def incidents(
        self, open_only: bool = False, limit: int = 100, ids: Sequence[int] | None = None, kind: str | None = None
    ) -> list[IncidentRecord]: ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one delivery pass did: alerts sent or logged, tried again later, given up."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0

    def __add__(self, other: Delivery) -> Delivery:
        return Delivery(self.sent + other.sent, self.retrying + other.retrying, self.failed + other.failed)


def destinations(owners: Sequence[str], settings: Settings) -> list[tuple[str | None, str]]:
    """``(owner, destination)`` for each owner (its webhook, else the default), or the default without owners."""
    default = settings.alerts.webhook or LOG_DESTINATION
    if not owners:
        return [(None, default)]
    return [(owner, settings.owners.get(owner) or default) for owner in dict.fromkeys(owners)]


def summary(incident: IncidentRecord, event: str) -> str:
    """One line for humans: what happened, to what, and how far it reached."""
    detail = incident.detail
    if incident.kind == "slo":
        what = f"SLO '{incident.subject}' breached: {detail.get('metric')} = {detail.get('value')}"
        what += f" over {detail.get('window')}" if detail.get("window") else ""
    else:
        noun = {"violation": "contract violation", "drift": "drift"}.get(incident.kind, "failure")
        what = f"{noun} of asset '{incident.subject}'"
        if detail.get("error_class"):
            what += f" ({detail['error_class']})"
        hit = [s for s in incident.steps if s.role != "skipped"]
        skipped = len(incident.steps) - len(hit)
        if hit:
            what += f": {len(hit)} partition{'s' if len(hit) != 1 else ''} affected"
        if skipped:
            what += f", {skipped} downstream step{'s' if skipped != 1 else ''} skipped"
    state = "resolved" if event != OPENED else "opened"
    return f"incident {incident.id} {state}: {what}"


def payload(incident: IncidentRecord, alert: AlertRecord, project: str) -> dict[str, Any]:
    """The JSON body of an alert: ``status`` firing or resolved, a stable ``dedup_key`` per incident (what
    PagerDuty and Alertmanager-style receivers group by), a one-line summary, and the incident itself."""
    return {
        "source": "cairn",
        "project": project,
        "event": alert.event,
        "status": "firing" if alert.event == OPENED else "resolved",
        "dedup_key": f"cairn:{project}:incident:{incident.id}",
        "alert_id": alert.id,
        "owner": alert.owner,
        "summary": summary(incident, alert.event),
        "incident": incident.to_dict(),
    }


def deliver_alerts(
    meta: AlertStore, settings: Settings, now: float, post: Post | None = None, limit: int = 100
) -> Delivery:
    """Try every due alert once (see the module docstring); never raises for a failing webhook.

    Args:
        meta: The metadata store.
        settings: ``[alerts]`` (timeout, attempts, backoff) and the project's name.
        now: The clock (epoch seconds): what is due, and when the next try is.
        post: How to POST (default: urllib with ``[alerts] timeout_s``); tests pass their own.
        limit: The most alerts tried in one pass.
    """
    due = meta.due_alerts(now, limit)
    if not due:
        return Delivery()
    send = post or http_post
    policy = settings.alerts
    incidents = {i.id: i for i in meta.incidents(limit=len(due), ids=sorted({a.incident_id for a in due}))}
    done = Delivery()
    for alert in due:
        incident = incidents.get(alert.incident_id)
        if incident is None or not meta.claim_alert(alert.id, alert.attempts, now, policy.timeout_s + 1.0):
            continue
        body = payload(incident, alert, settings.name)
        if alert.destination == LOG_DESTINATION:
            # One line for people; the whole payload rides along for structured handlers (`cairn incidents --json`).
            log.warning("alert: %s", body["summary"], extra={"cairn_alert": body})
            meta.finish_alert(alert.id, LOGGED, now)
            done += Delivery(sent=1)
            continue
        try:
            send(alert.destination, json.dumps(body, sort_keys=True, default=str).encode(), policy.timeout_s)
        except Exception as exc:  # any failure of the receiver is the receiver's: logged, retried, never raised
            error = f"{type(exc).__name__}: {exc}"
            tries = alert.attempts + 1
            if tries >= policy.attempts:
                log.error("alert %s to %s failed %d times, giving up: %s", alert.id, alert.destination, tries, error)
                meta.finish_alert(alert.id, GAVE_UP, now, error=error)
                done += Delivery(failed=1)
            else:
                retry_at = now + policy.backoff_s * 2 ** (tries - 1)
                meta.finish_alert(alert.id, PENDING, now, next_try_at=retry_at, error=error)
                done += Delivery(retrying=1)
            continue
        meta.finish_alert(alert.id, SENT, now)
        done += Delivery(sent=1)
    return done


def http_post(url: str, body: bytes, timeout: float) -> None:
    """POST a JSON body; raises on a connection failure, a timeout or an HTTP status of 400 or more."""
    import urllib.request

    from cairn.version import __version__

    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"cairn/{__version__}"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()
