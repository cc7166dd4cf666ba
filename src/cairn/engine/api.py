"""The Python entry points: `materialize`, `load`, and the read-only views behind plan, status and why."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cairn.config import Settings, load_settings
from cairn.core.keys import StepId, validate_name, validate_partition
from cairn.core.plan import CACHED_ACTION, Decision, Plan
from cairn.core.records import Materialization
from cairn.engine.history import StoreHistory
from cairn.engine.prepare import RunOptions, StepTable, prepare
from cairn.errors import UsageError, did_you_mean
from cairn.executors.base import Executor
from cairn.project import Project, load_project
from cairn.storage.base import ArtifactStore
from cairn.storage.factory import open_artifacts
from cairn.storage.metadata import MetadataStore, open_metadata

if TYPE_CHECKING:  # the engine is imported by the runs: `plan`, `status` and `why` do not need it
    from cairn.engine.run import EventSink, RunResult

ProjectArg = str | os.PathLike[str] | Settings | Project


@dataclass(frozen=True, slots=True)
class Stores:
    """The two stores of a project."""

    meta: MetadataStore
    artifacts: ArtifactStore


@contextmanager
def open_stores(settings: Settings) -> Iterator[Stores]:
    """Open the metadata database and the artifact store of a project; close the database after."""
    meta = open_metadata(settings.database, settings.root)
    try:
        yield Stores(meta, open_artifacts(settings.artifacts, settings.root, settings.artifacts_options))
    finally:
        meta.close()


def loaded_project(project: ProjectArg) -> Project:
    """The project a `project=` argument names: loaded from its folder unless it is loaded already."""
    return project if isinstance(project, Project) else load_project(project)


def project_settings(project: ProjectArg) -> Settings:
    """The settings of the project a `project=` argument names, without importing its modules."""
    if isinstance(project, Project):
        return project.settings
    return project if isinstance(project, Settings) else load_settings(project)


def materialize(
    selection: str | Iterable[str] = (),
    *,
    project: ProjectArg = ".",
    force: bool = False,
    fail_fast: bool = False,
    executor: str | None = None,
    workers: int | None = None,
    profile: str | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    partition: str | None = None,
    partition_range: tuple[str, str] | None = None,
    snapshot: str | None = None,
    on_event: EventSink | None = None,
    executor_instance: Executor | None = None,
) -> RunResult:
    """Run a selection of a project and return its `RunResult`.

    Args:
        selection: asset names or selection tokens (``"+model"``, ``"tag:tier=gold"``); empty means all.
        project: the project folder (or loaded settings/project).
        force: run the selected assets even when cached.
        fail_fast: stop starting new steps after the first failure.
        executor: override ``[executor] kind`` ("inline", "thread", "process", "dask", "ray").
        workers: override ``[executor] workers``.
        profile: apply the params overlay of ``[profiles.NAME]``.
        params: per-asset param overrides, ``{"asset": {"param": value}}``.
        partition: materialize only this partition key of the partitioned selected assets.
        partition_range: ``(first, last)`` keys, both included.
        snapshot: read upstream assets outside the selection from this snapshot instead of recomputing them.
        on_event: called with every progress `Event`.
        executor_instance: an executor object to use instead of building one.
    """
    loaded = loaded_project(project)
    options = RunOptions(
        selection=(selection,) if isinstance(selection, str) else tuple(selection),
        force=force,
        fail_fast=fail_fast,
        executor=executor,
        workers=workers,
        profile=profile,
        overrides=params or {},
        partition=partition,
        partition_range=partition_range,
        snapshot=snapshot,
    )
    return execute(loaded, options, on_event, executor_instance)


def execute(
    project: Project, options: RunOptions, on_event: EventSink | None = None, executor: Executor | None = None
) -> RunResult:
    """Run a loaded project with explicit `RunOptions` (what `materialize` and `cairn run` call).

    After the run, its failures open incidents and its successes close the incidents they recover (and their
    alerts get a first try): see `cairn.observability.incidents`. That never changes the result.
    """
    with open_stores(project.settings) as stores:
        from cairn.engine.run import Engine

        result = Engine(project, stores.meta, stores.artifacts, options, on_event, executor).run()
        from cairn.observability.incidents import observe_run

        observe_run(stores.meta, project.settings, result, time.time(), project.graph)
        return result


def load(
    name: str,
    partition: str | None = None,
    project: ProjectArg = ".",
    snapshot: str | None = None,
    alias: str | None = None,
) -> Any:
    """The stored value of the latest materialization of an asset (partition), the one a snapshot pinned, or the
    one an alias (``production``, ``champion``) points at.

    The object's checksum is verified before it is deserialized.
    """
    from cairn.io.reading import convert_table, load_stored

    settings = project_settings(project)
    step = StepId(validate_name(name), validate_partition(partition or ""))
    if snapshot is not None:
        validate_name(snapshot, "snapshot")  # as `cairn snapshot create` does: a bad name is no lookup
    if alias is not None and snapshot is not None:
        raise UsageError("load by alias or by snapshot, not both (an alias may itself name a snapshot)")
    with open_stores(settings) as stores:
        if alias is not None:
            from cairn.registry.loading import load_alias

            return load_alias(stores.meta, stores.artifacts, alias, step.asset, partition)
        if snapshot is not None:
            pinned = stores.meta.snapshot(snapshot).get((step.asset, step.partition))
            if pinned is None:
                raise UsageError(
                    f"snapshot '{snapshot}' does not pin '{step}'; `cairn snapshot show {snapshot}` lists it"
                )
            return convert_table(load_stored(pinned.stored, stores.artifacts), "")
        mat = stores.meta.latest_materialization(step.asset, step.partition)
        if mat is None:
            known = sorted({a for a, _ in stores.meta.latest_materializations()})
            raise UsageError(
                f"'{step}' has no materialization yet.{did_you_mean(name, known)} Run `cairn run {name}` first."
            )
        return convert_table(load_stored(mat.stored, stores.artifacts), "")


def preview(project: Project, options: RunOptions, stores: Stores) -> tuple[StepTable, Plan]:
    """What a run would do, step by step, each with its reason; runs nothing and records nothing."""
    history = StoreHistory(stores.meta, stores.artifacts)
    table = prepare(project, options, stores.meta, history, datetime.now(UTC))
    return table, table.plan(history)


@dataclass(frozen=True, slots=True)
class AssetStatus:
    """Freshness of one asset partition, derived now from code, params and recorded history."""

    step: StepId
    state: str
    reason: str
    latest: Materialization | None


def status(project: Project, stores: Stores, options: RunOptions | None = None) -> list[AssetStatus]:
    """Every selected asset partition: fresh, stale or missing, with the reason and latest result."""
    history = StoreHistory(stores.meta, stores.artifacts, records=True)  # every step's record is shown
    table = prepare(project, options or RunOptions(), stores.meta, history, datetime.now(UTC))
    out = []
    for decision in table.plan(history).steps:
        mat = history.previous(decision.step)
        out.append(AssetStatus(decision.step, _state(decision, mat), str(decision.reason), mat))
    return out


def _state(decision: Decision, latest: Materialization | None) -> str:
    if decision.action == CACHED_ACTION:
        return "fresh"
    return "missing" if latest is None else "stale"
