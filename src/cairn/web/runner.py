"""Runs and backfills started from the web: validated in the request, executed in a background thread, audited.

The engine is built in the thread (a SQLite connection belongs to the thread that opened it), which hands the
run id back to the request as soon as the run's record exists; the run page then polls it.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable, Sequence

from cairn.core.events import RUN_STARTED, Event
from cairn.core.governance import User
from cairn.core.keys import validate_partition
from cairn.errors import UsageError, did_you_mean
from cairn.security import audit
from cairn.storage.metadata import MetadataStore
from cairn.web import views
from cairn.web.state import AppState

_TOKEN = re.compile(r"^(\*|\+?[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\+?|tag:[A-Za-z0-9_.-]{1,64}=[A-Za-z0-9_.:-]{0,128})\Z")
_log = logging.getLogger(__name__)
EventSink = Callable[[Event], None]


def check_selection(state: AppState, selection: Sequence[str]) -> tuple[str, ...]:
    """The selection tokens, each a name the project defines (with ``+`` marks), a tag or ``*``."""
    graph = views.project(state).graph
    for token in selection:
        if not isinstance(token, str) or not _TOKEN.match(token) or ".." in token:
            raise UsageError(f"selection token {token!r} is not allowed: use NAME, +NAME, NAME+, tag:KEY=VALUE or *")
        name = token.strip("+")
        if not token.startswith("tag:") and token != "*" and name not in graph.assets:
            raise UsageError(f"asset '{name}' is not defined.{did_you_mean(name, graph.assets)}")
    return tuple(selection)


def start_run(
    state: AppState,
    meta: MetadataStore,
    user: User,
    selection: Sequence[str],
    partition: str | None = None,
    force: bool = False,
    wait_s: float = 60.0,
) -> str:
    """Start a run of `selection` as `user` in a background thread; its run id once the run exists."""
    chosen = check_selection(state, selection)
    if partition is not None:
        validate_partition(partition)

    def run(on_event: EventSink) -> str:
        from cairn.engine.api import execute
        from cairn.engine.prepare import RunOptions

        # The run is the web user's, not whoever's token the server's environment holds.
        options = RunOptions(selection=chosen, force=force, partition=partition, actor=user.name)
        return execute(views.project(state), options, on_event).run_id

    run_id = _in_background(state, run, wait_s)
    audit(meta, user, "run.start", run_id, {"selection": list(chosen), "partition": partition, "force": force})
    return run_id


def start_backfill(
    state: AppState,
    meta: MetadataStore,
    user: User,
    selection: Sequence[str],
    first: str,
    last: str,
    wait_s: float = 60.0,
) -> tuple[str, str]:
    """Record a backfill of `selection` over the partitions `first` to `last` and run it as `user` in a
    background thread, as `cairn backfill SEL --from FIRST --to LAST` does; its id and its run's id once the
    run exists. A selection or range that the run would refuse is refused before anything is recorded."""
    from cairn.engine import backfill
    from cairn.engine.api import open_stores, preview
    from cairn.engine.prepare import RunOptions

    chosen = check_selection(state, selection)
    for key in (first, last):
        validate_partition(key)
    project = views.project(state)
    with open_stores(project.settings) as stores:  # raises what the run would: an unknown key, nothing partitioned
        preview(project, RunOptions(selection=chosen, partition_range=(first, last)), stores)
    record = backfill.start(project, chosen, (first, last))

    def run(on_event: EventSink) -> str:
        return backfill.execute(project, record, on_event, actor=user.name).run.run_id

    run_id = _in_background(state, run, wait_s)
    details = {"selection": list(chosen), "from": first, "to": last, "run_id": run_id}
    audit(meta, user, "backfill.start", record.backfill_id, details)
    return record.backfill_id, run_id


def _in_background(state: AppState, run: Callable[[EventSink], str], wait_s: float) -> str:
    """Call ``run(on_event)`` in a daemon thread (it builds its own engine and stores there); the run id as soon
    as the run's record exists, or what it raised before that."""
    started: queue.Queue[str | BaseException] = queue.Queue()

    def on_event(event: Event) -> None:
        if event.kind == RUN_STARTED:  # the run's record exists: its page can be read
            state.runs[event.run_id] = threading.current_thread()
            started.put(event.run_id)

    def work() -> None:
        try:
            started.put(run(on_event))  # in case it ended without a start event (the request takes the first)
        except BaseException as e:
            started.put(e)
            _log.exception("a run started from the web stopped with an error")

    thread = threading.Thread(target=work, name="cairn-web-run", daemon=True)
    thread.start()
    first = started.get(timeout=wait_s)
    if isinstance(first, BaseException):
        raise first
    return first
