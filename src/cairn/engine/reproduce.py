"""Reproduce one recorded materialization: re-run its step from exactly its recorded inputs and compare.

    record ─▶ recorded inputs (objects by data version) ─▶ run_step(current code, recorded params and seed)
                                                            └▶ new data version == recorded? identical : differs

The step runs in this process, through the same step job as a run (`run_step`), with the recorded run id
and attempt in its context. Nothing is committed: no materialization, step or run is recorded. The new
object goes to the project's content-addressed store like any output; when it differs from the record it is
unreferenced, so `cairn gc` removes it. When the output differs, the result says what else differs from the
record: the code version (and which parts), and the environment of the recorded run versus this one.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from cairn.core.asset import AssetDef
from cairn.core.graph import Graph
from cairn.core.keys import StepId, step_label
from cairn.core.records import InputRef, Materialization, StoredValue
from cairn.core.steps import reads_dict
from cairn.engine.api import Stores
from cairn.engine.context import checkpoint_path
from cairn.engine.jobs import OK, InputSpec, StepJob
from cairn.engine.step import register_graph, run_step
from cairn.errors import MissingObject, UsageError
from cairn.lineage.diff import Change, EnvDiff, diff_environments
from cairn.lineage.graph import find_materialization, input_materialization, is_source
from cairn.project import Project
from cairn.tracking.environment import capture

IDENTICAL = "identical"
DIFFERS = "differs"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ReproduceResult:
    """The verdict on one materialization, and what differs from its record."""

    asset: str
    partition: str
    run_id: str
    recorded: str
    reproduced: str | None
    verdict: str
    duration_s: float
    code_recorded: str
    code_current: str
    code_parts: tuple[Change, ...] = ()
    environment: EnvDiff = field(default_factory=EnvDiff)
    error: str | None = None

    @property
    def identical(self) -> bool:
        return self.verdict == IDENTICAL

    @property
    def label(self) -> str:
        return step_label(self.asset, self.partition)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "asset": self.asset,
            "partition": self.partition or None,
            "run_id": self.run_id,
            "verdict": self.verdict,
            "recorded": self.recorded,
            "reproduced": self.reproduced,
            "duration_s": round(self.duration_s, 6),
            "code": {
                "recorded": self.code_recorded,
                "current": self.code_current,
                "changed_parts": {c.name: c.to_dict() for c in self.code_parts},
            },
            "environment": self.environment.to_dict(),
        }
        if self.error:
            out["error"] = self.error
        return out


def reproduce(project: Project, stores: Stores, step: StepId, run: str | None = None) -> ReproduceResult:
    """Re-execute the latest (or `run`'s) materialization of `step` from its recorded inputs.

    Args:
        project: The loaded project: its current code is what runs.
        stores: The project's stores.
        step: The asset partition.
        run: A run id (or unique prefix, or ``latest``) whose materialization to reproduce.

    Raises:
        UsageError: Nothing is recorded for the step, it is a source, the asset is no longer defined, or its
            current definition reads other inputs than the record.
        MissingObject: A recorded input's object is no longer in the artifact store.
    """
    mat = find_materialization(stores.meta, step, run)
    if is_source(mat):
        raise UsageError(
            f"'{step}' is a source: cairn observes it and does not compute it, so there is nothing to re-execute. "
            f"Reproduce an asset that reads it instead (`cairn impact {step.asset}` lists them)."
        )
    asset = project.graph.assets.get(mat.asset)
    if asset is None or asset.is_source:
        raise UsageError(
            f"asset '{mat.asset}' is no longer defined in the project, and reproduce runs an asset's current code. "
            "Restore its definition (e.g. check out the recorded git commit, see `cairn show "
            f"{mat.run_id} --json`) and try again."
        )
    specs = _input_specs(stores, asset, mat, project.graph)
    root = str(project.settings.root)
    register_graph(root, project.graph)
    job = StepJob(
        project_dir=root,
        artifacts_url=project.settings.artifacts,
        artifacts_options=dict(project.settings.artifacts_options),
        asset=mat.asset,
        partition=mat.partition,
        run_id=mat.run_id,
        attempt=mat.attempt,
        cache_key=f"reproduce-{secrets.token_hex(8)}",  # its own checkpoint folder, never a run's
        params=dict(mat.params),
        seed=mat.seed,
        inputs=specs,
        capture_output=True,
    )
    started = time.perf_counter()
    outcome = run_step(job)
    duration = time.perf_counter() - started
    checkpoint_path(root, job.cache_key).unlink(missing_ok=True)
    code_current, parts = project.code(asset)
    recorded_run = stores.meta.get_run(mat.run_id)
    environment = diff_environments(recorded_run.environment if recorded_run else {}, capture(root))
    reproduced = outcome.stored.data_version if outcome.status == OK and outcome.stored is not None else None
    verdict = FAILED if reproduced is None else (IDENTICAL if reproduced == mat.data_version else DIFFERS)
    return ReproduceResult(
        asset=mat.asset,
        partition=mat.partition,
        run_id=mat.run_id,
        recorded=mat.data_version,
        reproduced=reproduced,
        verdict=verdict,
        duration_s=duration,
        code_recorded=mat.code_version,
        code_current=code_current,
        code_parts=tuple(
            Change(name, mat.code_parts.get(name), parts.get(name))
            for name in sorted(set(mat.code_parts) | set(parts))
            if mat.code_parts.get(name) != parts.get(name)
        ),
        environment=environment,
        error=outcome.error if verdict == FAILED else None,
    )


def _input_specs(stores: Stores, asset: AssetDef, mat: Materialization, graph: Graph) -> tuple[InputSpec, ...]:
    """The step job's inputs: each recorded input object, given to the parameter that reads its asset now.

    A windowed or all-partitions input is a dict by partition key, as in a run; any other input is the
    recorded partition of its asset (the consumer's own partition when several are recorded).
    """
    by_asset: dict[str, list[InputRef]] = {}
    for ref in mat.inputs:
        by_asset.setdefault(ref.asset, []).append(ref)
    wanted = {inp.asset for inp in asset.inputs}
    single = {i.asset for i in asset.inputs if not reads_dict(i, graph.assets[i.asset], asset)}
    if set(by_asset) - wanted or single - set(by_asset):
        recorded = ", ".join(sorted(by_asset)) or "none"
        current = ", ".join(sorted(wanted)) or "none"
        raise UsageError(
            f"the current definition of '{mat.asset}' reads {current}, but the recorded materialization "
            f"(run {mat.run_id}) read {recorded}; reproduce needs the recorded inputs. Restore the definition "
            "(e.g. check out the recorded git commit) and try again."
        )
    specs = []
    for inp in asset.inputs:
        refs = by_asset.get(inp.asset, [])
        as_dict = reads_dict(inp, graph.assets[inp.asset], asset)
        if not as_dict:
            same = [r for r in refs if r.partition == mat.partition]
            refs = same[-1:] or refs[-1:]
        for ref in refs:
            specs.append(
                InputSpec(inp.param, ref, _stored(stores, ref, mat), inp.annotation, ref.partition if as_dict else None)
            )
    return tuple(specs)


def _stored(stores: Stores, ref: InputRef, consumer: Materialization) -> StoredValue:
    """How a recorded input is stored (format, type, size), checked to be present in the artifact store."""
    label = step_label(ref.asset, ref.partition)
    upstream = input_materialization(stores.meta, ref, consumer)
    if upstream is None:
        raise MissingObject(
            f"input {label} at {ref.data_version} of '{step_label(consumer.asset, consumer.partition)}' has no "
            "recorded materialization any more, so its format is unknown and it cannot be loaded."
        )
    if stores.artifacts.size(ref.data_version) != upstream.size:
        raise MissingObject(
            f"input {label} at {ref.data_version} is not in the artifact store {stores.artifacts.url} (removed by "
            "`cairn gc`, or quarantined by `cairn verify`), so this materialization cannot be reproduced from its "
            "exact inputs. Re-create it with `cairn run` (a re-run with equal bytes restores it) and try again."
        )
    return upstream.stored
