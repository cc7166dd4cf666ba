"""SLO rules (``[[slo]]`` in cairn.toml) evaluated over their windows; a breach is an incident until it holds again.

    rules ─▶ one report over the widest window ─▶ each rule: value over its own window ─▶ ok | breached | no data
                                                     breached ─▶ open (or keep) the rule's incident: one alert
                                                     ok       ─▶ close its open incident: "resolved"

Without data in its window (no runs, no ticks) a rule is neither breached nor recovered: its incident, if
open, stays open. An incident of a rule that was removed from cairn.toml is closed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cairn.config import Settings, SloRule
from cairn.errors import CairnError
from cairn.observability.alerts import AlertStore, Delivery, Post, deliver_alerts, destinations
from cairn.observability.measures import MetricsReads, Report, collect
from cairn.storage.observations import NewIncident

log = logging.getLogger("cairn.observability")

SLO_KIND = "slo"


class SloStore(MetricsReads, AlertStore, Protocol):
    """What SLO checks read and write."""

    def open_incident(
        self, incident: NewIncident, at: float, destinations: Sequence[tuple[str | None, str]]
    ) -> tuple[int, bool]: ...

    def close_incident(self, key: str, at: float, by: str, send_resolved: bool = True) -> int | None: ...

    def open_incident_keys(self, kind: str) -> set[str]: ...


@dataclass(frozen=True, slots=True)
class SloStatus:
    """One rule at one moment: its value over its window, and whether it holds (None: no data)."""

    rule: SloRule
    value: float | None
    ok: bool | None
    incident: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.rule.name,
            "metric": self.rule.metric,
            "asset": self.rule.asset,
            "stat": None if self.rule.metric == "success_ratio" else self.rule.stat,
            "window_s": self.rule.window_s,
            "min": self.rule.min,
            "max": self.rule.max,
            "value": None if self.value is None else round(self.value, 6),
            "ok": self.ok,
            "incident": self.incident,
        }


def holds(rule: SloRule, value: float | None) -> bool | None:
    """Whether a value keeps a rule's bounds; None when there is no value."""
    if value is None:
        return None
    return (rule.min is None or value >= rule.min) and (rule.max is None or value <= rule.max)


def evaluate(report: Report, rules: Sequence[SloRule]) -> list[SloStatus]:
    """Each rule over its own window, ending at the report's end (the report must reach back far enough)."""
    out = []
    for rule in rules:
        value = report.since_time(report.until - rule.window_s).value(rule)
        out.append(SloStatus(rule, value, holds(rule, value)))
    return out


def slo_report(meta: MetricsReads, settings: Settings, now: float) -> tuple[Report | None, list[SloStatus]]:
    """The report over the widest rule window ending `now`, and every rule's status; no reads without rules."""
    if not settings.slos:
        return None, []
    widest = max(rule.window_s for rule in settings.slos)
    report = collect(meta, settings, now - widest, now)
    return report, evaluate(report, settings.slos)


def check_slos(
    meta: SloStore, settings: Settings, now: float, *, deliver: bool = True, post: Post | None = None
) -> list[SloStatus]:
    """Evaluate the rules at `now`: open an incident (and alert its owners once) for each breached rule, close the
    incidents of rules that hold again, then try the due alerts (when `deliver`). Never raises for a store
    error or a failing webhook: it is logged."""
    try:
        return _check(meta, settings, now, deliver, post)
    except CairnError as exc:
        log.warning("could not check the SLOs: %s", exc)
        return []


def _check(meta: SloStore, settings: Settings, now: float, deliver: bool, post: Post | None) -> list[SloStatus]:
    _, statuses = slo_report(meta, settings, now)
    open_keys = meta.open_incident_keys(SLO_KIND)
    changed = False
    out = []
    for status in statuses:
        rule = status.rule
        key = f"{SLO_KIND}:{rule.name}"
        incident: int | None = None
        if status.ok is False:
            detail = {
                "metric": rule.metric,
                "asset": rule.asset,
                "stat": status.to_dict()["stat"],
                "value": round(status.value, 6) if status.value is not None else None,
                "min": rule.min,
                "max": rule.max,
                "window": window_text(rule.window_s),
            }
            new = NewIncident(SLO_KIND, rule.name, SLO_KIND, detail, rule.owners)
            incident, opened = meta.open_incident(new, now, destinations(rule.owners, settings))
            changed = changed or opened
        elif status.ok and key in open_keys:
            meta.close_incident(key, now, SLO_KIND, settings.alerts.send_resolved)
            changed = True
        out.append(SloStatus(rule, status.value, status.ok, incident))
    for key in open_keys - {f"{SLO_KIND}:{rule.name}" for rule in settings.slos}:
        meta.close_incident(key, now, "config", settings.alerts.send_resolved)  # its rule was removed
        changed = True
    if deliver and changed:
        deliver_alerts(meta, settings, now, post)
    return out


def deliver_due(meta: AlertStore, settings: Settings, now: float, post: Post | None = None) -> Delivery:
    """Try the alerts that are due (first tries and retries); what the daemon calls after each tick."""
    try:
        return deliver_alerts(meta, settings, now, post)
    except CairnError as exc:
        log.warning("could not deliver alerts: %s", exc)
        return Delivery()


def window_text(seconds: float) -> str:
    """A window as cairn.toml spells it: ``3d``, ``12h``, ``90s``."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
