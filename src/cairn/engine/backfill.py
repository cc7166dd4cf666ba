"""Backfills: recorded, resumable runs of a selection over a partition range (DESIGN §4), and their progress.

A backfill is a database record (selection, range, params, profile, worker bound) that outlives the runs made
for it. Each execution is an ordinary run, linked to the record when it starts; a resumed backfill runs its
recorded options again, so every step already committed is a cache hit and only the rest executes::

    start ──▶ record (pending) ──▶ execute ──▶ run #1 linked, record running ──▶ record: run #1's status
    resume ID ───────────────────▶ execute ──▶ run #2 linked, record running ──▶ record: run #2's status
                                       (interrupted while running: the record says interrupted)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cairn.config import parse_overrides
from cairn.core.events import RUN_STARTED, Event
from cairn.core.governance import BackfillRecord
from cairn.engine import api
from cairn.engine.run import EventSink, RunOptions, RunResult, new_run_id
from cairn.errors import UsageError
from cairn.executors.base import Executor
from cairn.project import Project
from cairn.storage.metadata import MetadataStore

# Backfill statuses besides the run statuses it takes over from its last run.
PENDING = "pending"  # recorded, no run started yet
INTERRUPTED = "interrupted"  # its last run was stopped (Ctrl-C) or raised before it finished

_DONE = ("executed", "cached")


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """How far a backfill got: steps done across all its runs, failed in its last run, and in its range."""

    done: int
    failed: int
    total: int

    def to_dict(self) -> dict[str, int]:
        return {"done": self.done, "failed": self.failed, "total": self.total}


@dataclass(frozen=True, slots=True)
class BackfillStatus:
    """A backfill's record with its progress (one row of `cairn backfill status`)."""

    record: BackfillRecord
    progress: BackfillProgress

    def to_dict(self) -> dict[str, Any]:
        return {**self.record.to_dict(), **self.progress.to_dict()}


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What `cairn.backfill` returns: the backfill's record as its run left it, its progress, and that run."""

    record: BackfillRecord
    progress: BackfillProgress
    run: RunResult

    @property
    def backfill_id(self) -> str:
        return self.record.backfill_id

    @property
    def status(self) -> str:
        return self.run.status

    @property
    def ok(self) -> bool:
        return self.run.ok

    def to_dict(self) -> dict[str, Any]:
        """``{"backfill_id", "run_id", "status", "steps"}``: the JSON of `cairn backfill` (a run's, plus the id)."""
        return {"backfill_id": self.backfill_id, **self.run.to_dict()}


def backfill(
    selection: str | Iterable[str] = (),
    *,
    partition_range: tuple[str, str] | None = None,
    resume: str | None = None,
    project: api.ProjectArg = ".",
    params: Mapping[str, Mapping[str, Any]] | None = None,
    profile: str | None = None,
    workers: int | None = None,
    on_event: EventSink | None = None,
    executor_instance: Executor | None = None,
) -> BackfillResult:
    """Run a selection over a partition range as a recorded, resumable backfill, or resume a recorded one.

    Old materializations are never overwritten, and a resumed backfill re-executes only what its earlier
    runs did not commit (the partitions that failed, were interrupted or had no data yet).

    Args:
        selection: asset names or selection tokens (``"+model"``, ``"tag:tier=gold"``); empty means all.
        partition_range: ``(first, last)`` partition keys, both included; starts a new backfill.
        resume: a backfill id (a unique prefix of one, or ``"latest"``) to run again with its recorded
            options, instead of starting a new one; give no selection, range, params, profile or workers.
        project: the project folder (or loaded settings/project).
        params: per-asset param overrides, ``{"asset": {"param": value}}`` (recorded, so JSON values).
        profile: apply the params overlay of ``[profiles.NAME]``.
        workers: at most this many steps at once (recorded with the backfill).
        on_event: called with every progress `Event` of the run.
        executor_instance: an executor object to use instead of building one.

    Raises:
        UsageError: neither or both of `partition_range` and `resume` are given, options are given with
            `resume`, or no backfill matches `resume`.
    """
    chosen = (selection,) if isinstance(selection, str) else tuple(selection)
    if resume is None:
        if partition_range is None:
            raise UsageError(
                "a backfill needs a range: cairn.backfill(SEL, partition_range=(FIRST, LAST)), or resume=ID"
            )
        loaded = api.loaded_project(project)
        record = start(loaded, chosen, partition_range, params=params, profile=profile, workers=workers)
    else:
        given = [
            name
            for name, value in (
                ("selection", chosen),
                ("partition_range", partition_range),
                ("params", params),
                ("profile", profile),
                ("workers", workers),
            )
            if value is not None and value != ()
        ]
        if given:
            raise UsageError(
                f"resume={resume!r} runs the backfill with its recorded options; drop {', '.join(given)} "
                "(or start a new backfill with them)"
            )
        record = find(project, resume)
        loaded = api.loaded_project(project)
    return execute(loaded, record, on_event, executor_instance)


def start(
    project: Project,
    selection: Sequence[str],
    partition_range: tuple[str, str],
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    profile: str | None = None,
    workers: int | None = None,
) -> BackfillRecord:
    """Record a new backfill (status ``pending``) of `selection` over `partition_range`; runs nothing yet."""
    overrides = {asset: dict(values) for asset, values in (params or {}).items()}
    try:
        json.dumps(overrides)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"the params of a backfill are recorded as JSON: {exc}; use str, numbers, lists, dicts"
        ) from exc
    first, last = partition_range
    record = BackfillRecord(
        backfill_id="bf-" + new_run_id(),
        selection=" ".join(selection) or "*",
        first_key=first,
        last_key=last,
        status=PENDING,
        created_at=0.0,  # the database sets it, on its clock
        options={"selection": list(selection), "params": overrides, "profile": profile, "workers": workers},
    )
    with api.open_stores(project.settings) as stores:
        stores.meta.create_backfill(record)
        return stores.meta.backfill(record.backfill_id)


def find(project: api.ProjectArg, backfill_id: str) -> BackfillRecord:
    """The backfill with this id, unique prefix of one, or ``latest``; a UsageError names the fix otherwise."""
    with api.open_stores(api.project_settings(project)) as stores:
        return stores.meta.backfill(backfill_id)


def execute(
    project: Project,
    record: BackfillRecord,
    on_event: EventSink | None = None,
    executor: Executor | None = None,
    actor: str | None = None,
) -> BackfillResult:
    """Run a recorded backfill (again) with its recorded options; the record takes the run's final status.

    `actor` is who the run is by when that is not the user of ``CAIRN_TOKEN`` (a backfill started from the web).
    """
    options = replace(run_options(record), actor=actor)
    with api.open_stores(project.settings) as stores:

        def link(event: Event) -> None:
            if on_event is not None:
                on_event(event)
            if event.kind == RUN_STARTED:
                stores.meta.add_backfill_run(record.backfill_id, event.run_id, event.total)

        try:
            result = api.execute(project, options, link, executor)
        except BaseException:
            stores.meta.finish_backfill(record.backfill_id, INTERRUPTED)
            raise
        stores.meta.finish_backfill(record.backfill_id, result.status)
        finished = stores.meta.backfill(record.backfill_id)
        return BackfillResult(finished, progress(stores.meta, finished), result)


def status(project: api.ProjectArg = ".", backfill_id: str | None = None) -> list[BackfillStatus]:
    """One backfill (by id, unique prefix or ``latest``), or the newest ones first, each with its progress."""
    with api.open_stores(api.project_settings(project)) as stores:
        records = [stores.meta.backfill(backfill_id)] if backfill_id else stores.meta.backfills()
        return [BackfillStatus(r, progress(stores.meta, r)) for r in records]


def progress(meta: MetadataStore, record: BackfillRecord) -> BackfillProgress:
    """Steps done across the backfill's runs, and failed in its last run."""
    done: set[tuple[str, str]] = set()
    failed = 0
    for i, run_id in enumerate(record.run_ids):
        steps = meta.run_steps(run_id)
        done |= {(s.asset, s.partition) for s in steps if s.status in _DONE}
        if i == len(record.run_ids) - 1:
            failed = sum(1 for s in steps if s.status == "failed")
    return BackfillProgress(len(done), failed, record.steps_total)


def run_options(record: BackfillRecord) -> RunOptions:
    """The options of the run that executes a backfill, from what its record holds."""
    opts = record.options
    return RunOptions(
        selection=tuple(opts.get("selection") or ()),
        workers=opts.get("workers"),
        profile=opts.get("profile"),
        # A record written before backfills kept params parsed has `cairn run --set` strings.
        overrides=opts["params"] if "params" in opts else parse_overrides(opts.get("set") or []),
        partition_range=(record.first_key, record.last_key),
    )
