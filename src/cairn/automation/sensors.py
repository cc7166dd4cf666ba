"""Sensor evaluation: from a sensor's cursor (what it has seen) to its run requests and its next cursor.

    source sensor   cursor = {partition: data version} of the source's files; a file that appeared or changed
                    requests one run of the selection (everything stale in it executes, nothing else)
    asset sensor    cursor = the id of the asset's newest materialization; a newer one requests a run
    custom sensor   the function's own cursor and requests (`cairn.RunRequest`, `cairn.SensorResult`)

The first evaluation of a source or asset sensor only takes its cursor: what existed before the sensor was
first seen is not "new". The runner commits the cursor together with the requests' ticks, guarded by the
state's generation (see `cairn.storage.automation`).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cairn.core.automation import AutomationState, Sensor, SensorContext, iso, sensor_requests
from cairn.core.keys import step_label
from cairn.core.records import Materialization
from cairn.engine.sources import SourceObserver
from cairn.hashing import hash_struct
from cairn.project import Project

_SHOWN = 3  # partitions named in a reason


class SensorReads(Protocol):
    """What sensors read of the metadata store."""

    def newest_materializations(self, assets: list[str]) -> dict[str, tuple[int, float]]: ...

    def materializations_by_id(self, ids: list[int]) -> list[Materialization]: ...


@dataclass(frozen=True, slots=True)
class Request:
    """One run a sensor evaluation asks for: its request key (a run key), partition and reason."""

    key: str
    partition: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one evaluation found: its requests and the cursor to commit with them."""

    requests: tuple[Request, ...]
    cursor: str | None


def evaluate(sensor: Sensor, state: AutomationState, project: Project, meta: SensorReads, now: datetime) -> Evaluation:
    """Evaluate a sensor at `now` from its recorded state; a custom function's exception propagates."""
    if sensor.on_source is not None:
        return _source(sensor.on_source, state, project, now)
    if sensor.on_asset is not None:
        return _asset(sensor.on_asset, state, meta)
    assert sensor.fn is not None
    ctx = SensorContext(sensor.name, now, state.cursor, str(project.settings.root))
    result = sensor_requests(sensor.fn(ctx), f"sensor '{sensor.name}'")
    requests: dict[str, Request] = {}
    for n, r in enumerate(result.requests):
        key = r.run_key or f"@{iso(now.timestamp())}#{n}"
        what = f"a run of partition {r.partition}" if r.partition else "a run"
        named = f" (run key {r.run_key})" if r.run_key else ""
        requests.setdefault(key, Request(key, r.partition, f"the sensor asked for {what}{named}"))
    return Evaluation(tuple(requests.values()), result.cursor if result.cursor is not None else state.cursor)


def _source(name: str, state: AutomationState, project: Project, now: datetime) -> Evaluation:
    asset = project.graph.assets[name]
    assert asset.path is not None
    keys = asset.partitions.keys(now) if asset.partitions is not None else [""]
    observer = SourceObserver(project.settings.state_dir)
    current: dict[str, str] = {}
    for key in keys:
        version = observer.observe(project.settings.root / asset.path.replace("{partition}", key))
        if version is not None:
            current[key] = version
    with contextlib.suppress(OSError):  # the stat cache only saves hashing; an engine may be writing it
        observer.save()
    cursor = json.dumps(current, sort_keys=True, separators=(",", ":"))
    if state.cursor is None:
        return Evaluation((), cursor)
    seen = _json_dict(state.cursor)
    changed = [k for k in sorted(current) if seen.get(k) != current[k]]
    if not changed:
        return Evaluation((), cursor)
    key = "data:" + hash_struct(["cairn.sensor.source/1", name, [[k, current[k]] for k in changed]])[3:19]
    shown = ", ".join(step_label(name, k) for k in changed[:_SHOWN])
    more = f" and {len(changed) - _SHOWN} more" if len(changed) > _SHOWN else ""
    return Evaluation((Request(key, None, f"new data: {shown}{more}"),), cursor)


def _asset(name: str, state: AutomationState, meta: SensorReads) -> Evaluation:
    newest = meta.newest_materializations([name]).get(name)
    newest_id = newest[0] if newest is not None else 0
    if state.cursor is None or not state.cursor.isdigit():
        return Evaluation((), str(newest_id))
    if newest_id <= int(state.cursor):
        return Evaluation((), state.cursor)
    mats = meta.materializations_by_id([newest_id])
    what = step_label(name, mats[0].partition) if mats else name
    return Evaluation((Request(f"mat:{newest_id}", None, f"new materialization of {what}"),), str(newest_id))


def _json_dict(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
