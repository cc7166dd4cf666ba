"""What `cairn daemon` and `cairn tick` do for observability after every tick (`TickObserver`, a tick hook).

    finished tick ─▶ freshness alert? ─▶ open a freshness incident (the next run that materializes it closes it)
                 ─▶ SLO rules at the tick's time ─▶ breaches open incidents, recoveries close them
                 ─▶ remediations asked for by on_failure= / on_violation= ─▶ run them, one daemon each
                 ─▶ due alerts: first tries and retries with backoff

Every decision takes the tick's time (the daemon's clock: the machine's, or an injected one), so tests drive
days of ticks without sleeping. Nothing here raises into the daemon: problems are logged.

A remediation names an asset (it is run, for the incident's partition when it affected exactly one, else for
all) or a schedule of the project, a "job" (its selection is run). The runs themselves go through the engine
like any other, so a failing remediation opens its own incident.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, MutableSequence
from contextlib import contextmanager
from typing import Any

from cairn.config import Settings
from cairn.core.automation import ALERTED, FRESHNESS, TickRecord
from cairn.errors import CairnError
from cairn.observability.alerts import Post, destinations
from cairn.observability.incidents import RunOutcome
from cairn.observability.slo import check_slos, deliver_due
from cairn.storage.observations import NewIncident

log = logging.getLogger("cairn.observability")

# The engine's `execute(project, options, on_event, executor)` and its `RunOptions`, handed in by the daemon
# (this package sits below the engine): how a remediation is run.
Execute = Callable[[Any, Any, Any, Any], RunOutcome]


class TickObserver:
    """The tick hook of one project: ``hook(meta, tick, result)`` (see `cairn.automation.hooks`).

    Args:
        settings: The project's settings (SLO rules, owners, alert routes).
        execute: The engine's `execute`, to run remediations; without it they stay pending (`cairn incidents`).
        options: The engine's `RunOptions` (built with ``selection=`` and ``partition=``).
        executor: The executor remediation runs use (default: the one cairn.toml names).
        post: How to POST a webhook (tests).
    """

    def __init__(
        self,
        settings: Settings,
        execute: Execute | None = None,
        options: Callable[..., Any] | None = None,
        executor: Any = None,
        post: Post | None = None,
    ) -> None:
        self.settings = settings
        self.execute = execute
        self.options = options
        self.executor = executor
        self.post = post
        self.ticks = 0  # ticks observed

    def __call__(self, meta: Any, tick: TickRecord, result: Any = None, /) -> None:
        self.ticks += 1
        now = tick.finished_at or tick.claimed_at or tick.due_at
        try:
            if tick.kind == FRESHNESS and tick.status == ALERTED:
                self._freshness_breach(meta, tick, now)
        except CairnError as exc:
            log.warning("observing tick %s: %s", tick.label, exc)
        self.sweep(meta, now)

    def sweep(self, meta: Any, now: float) -> None:
        """Run pending remediations, evaluate the SLO rules and try the due alerts, at `now`."""
        if self.execute is not None and self.options is not None:
            try:
                self._remediate(meta)
            except CairnError as exc:
                log.warning("running remediations: %s", exc)
        check_slos(meta, self.settings, now, deliver=False)
        deliver_due(meta, self.settings, now, self.post)

    # -- freshness ------------------------------------------------------------------------------

    def _freshness_breach(self, meta: Any, tick: TickRecord, now: float) -> None:
        """An asset older than its ``max_age`` whose policy says ``on_stale="alert"``: an incident until it
        materializes again."""
        asset = tick.name
        definition = self._definition(asset)
        owners: tuple[str, ...] = definition.owners if definition is not None else ()
        detail = {"reason": tick.reason, "due_at": tick.due_at}
        steps = ((asset, "", "stale"),)  # on_stale="alert" asks for no run: no remediation either
        incident = NewIncident(FRESHNESS, asset, f"tick:{tick.due_at:.0f}", detail, owners, None, steps)
        meta.open_incident(incident, now, destinations(incident.owners, self.settings))

    # -- remediation ----------------------------------------------------------------------------

    def _remediate(self, meta: Any) -> None:
        from cairn.project import load_project

        assert self.execute is not None and self.options is not None
        for incident in meta.pending_remediations():
            if not meta.set_remediation(incident.id, "started", claim=True):
                continue  # another daemon took it
            target = incident.remediation
            try:
                project = load_project(self.settings.root)
                selection = _selection(project, target)
                partitions = {s.partition for s in incident.steps if s.role != "skipped"}
                partition = next(iter(partitions)) if len(partitions) == 1 else None
                options = self.options(selection=selection, partition=partition or None)
                result = self.execute(project, options, None, self.executor)
            except Exception as exc:  # a remediation that cannot run is recorded, never the daemon's end
                log.warning("remediation %s of incident %s failed to start: %s", target, incident.id, exc)
                meta.set_remediation(incident.id, "failed")
                continue
            status = "done" if getattr(result, "status", "") in ("succeeded", "partial") else "failed"
            meta.set_remediation(incident.id, status, result.run_id)

    def _definition(self, name: str) -> Any:
        """The asset's definition as the project defines it now (None when it does not load or has none)."""
        from cairn.project import load_project

        try:
            return load_project(self.settings.root).graph.assets.get(name)
        except CairnError:
            return None


def _selection(project: Any, target: str | None) -> tuple[str, ...]:
    """What a remediation runs: the asset itself, or a schedule's selection."""
    from cairn.errors import UsageError, did_you_mean

    if target is not None and target in project.graph.assets:
        return (target,)
    for schedule in project.schedules:
        if schedule.name == target:
            return tuple(schedule.selection) or ("*",)
    names = [*project.graph.assets, *(s.name for s in project.schedules)]
    raise UsageError(f"remediation '{target}' names no asset or schedule.{did_you_mean(str(target), names)}")


@contextmanager
def observing(
    hooks: MutableSequence[Any],
    settings: Settings,
    execute: Execute | None = None,
    options: Callable[..., Any] | None = None,
    executor: Any = None,
) -> Iterator[TickObserver]:
    """Register a `TickObserver` in a tick hook list (``cairn.automation.hooks``) while the block runs, as in
    ``with observing(hooks, settings, execute, RunOptions): ...``.

    A project already observed by an enclosing block is not observed twice. When no tick finished meanwhile
    (`cairn tick` with nothing due), the observer makes one sweep at the end, at the machine's time, so that alert
    retries and SLO checks do not wait for a schedule.
    """
    for hook in hooks:
        if isinstance(hook, TickObserver) and hook.settings.root == settings.root:
            yield hook  # already observed (the daemon's command and the daemon both register): once is enough
            return
    observer = TickObserver(settings, execute, options, executor)
    hooks.append(observer)
    try:
        yield observer
    finally:
        if observer in hooks:
            hooks.remove(observer)
    if observer.ticks == 0:
        from cairn.storage.metadata import open_metadata

        try:
            with open_metadata(settings.database, settings.root) as meta:
                observer.sweep(meta, time.time())
        except CairnError as exc:
            log.warning("observing: %s", exc)
