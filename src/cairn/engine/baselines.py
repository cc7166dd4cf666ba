"""Resolving what each drift check of a step compares with: which materializations, from the metadata store.

The step job only reads the objects named here; the engine resolves them when it submits the step, after
the reference partitions that are part of the same run have settled (see `reference_steps`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cairn.core.asset import AssetDef
from cairn.core.contracts import PREVIOUS, CheckDef, Snapshot, Trailing
from cairn.core.keys import StepId, step_label
from cairn.core.partitions import split_key, time_of
from cairn.core.records import Materialization, MaterializationRef
from cairn.engine.jobs import DriftBaseline
from cairn.errors import UsageError

Known = Materialization | MaterializationRef  # a full record (the store's, a snapshot's) or a run's reference
Latest = Callable[[StepId], Known | None]
Pinned = Callable[[str], dict[tuple[str, str], Materialization]]


def keys_before(asset: AssetDef, all_keys: Sequence[str], key: str, n: int) -> list[str] | None:
    """The (at most) `n` partition keys right before `key` along the time dimension, oldest first, with the
    same static key for a product; None for an asset without a time dimension."""
    if time_of(asset.partitions) is None or not key:
        return None
    suffix = split_key(key)[1]
    line = [k for k in all_keys if split_key(k)[1] == suffix]
    if key not in line:
        return []
    i = line.index(key)
    return line[max(0, i - n) : i]


def reference_steps(asset: AssetDef, all_keys: Sequence[str], step: StepId) -> list[StepId]:
    """The earlier partitions a step's drift checks compare with (to be settled before the step starts)."""
    wanted = 0
    for check in asset.checks:
        if check.drift is None or check.drift.reference == PREVIOUS or isinstance(check.drift.reference, Snapshot):
            continue
        reference = check.drift.reference
        wanted = max(wanted, reference.partitions if isinstance(reference, Trailing) else 1)
    if not wanted:
        return []
    return [StepId(step.asset, k) for k in keys_before(asset, all_keys, step.partition, wanted) or []]


def resolve(
    asset: AssetDef,
    step: StepId,
    all_keys: Sequence[str],
    latest: Latest,
    present: Callable[[Known], bool],
    pinned: Pinned,
) -> tuple[DriftBaseline, ...]:
    """The reference of each drift check of `asset` for `step`.

    Args:
        asset: the asset definition.
        step: the step being submitted.
        all_keys: every partition key of the asset now, in order.
        latest: the latest materialization of a step (this run's result first, then the store's).
        present: whether a materialization's object is stored (absent ones are left out).
        pinned: a snapshot's pinned materializations by name; raises `UsageError` for an unknown name.
    """
    return tuple(
        _resolve(check, asset, step, all_keys, latest, present, pinned) for check in asset.checks if check.drift
    )


def _resolve(
    check: CheckDef,
    asset: AssetDef,
    step: StepId,
    all_keys: Sequence[str],
    latest: Latest,
    present: Callable[[Known], bool],
    pinned: Pinned,
) -> DriftBaseline:
    assert check.drift is not None
    reference = check.drift.reference
    name = str(reference)
    if isinstance(reference, Snapshot):
        return _snapshot(check, step, reference.name, present, pinned)
    n = reference.partitions if isinstance(reference, Trailing) else 1
    before = None if reference == PREVIOUS else keys_before(asset, all_keys, step.partition, n)
    if before is None:  # "previous", or an asset without a time dimension: its own previous materialization
        mat = latest(step)
        label = name if reference == PREVIOUS else f"{name} (no time dimension: the previous materialization)"
        if mat is None or not present(mat):
            return DriftBaseline(check.name, label, missing="no previous materialization")
        return DriftBaseline(check.name, _label(label, [mat]), (mat.stored,))
    if not before:
        return DriftBaseline(check.name, name, missing=f"{step.partition} is the first partition")
    mats = [m for k in before if (m := latest(StepId(step.asset, k))) is not None and present(m)]
    if not mats:
        span = f"{step.asset}@{before[0]}" if len(before) == 1 else f"the {len(before)} partitions before"
        return DriftBaseline(check.name, name, missing=f"{span} {step.partition} not materialized")
    return DriftBaseline(check.name, _label(name, mats), tuple(m.stored for m in mats))


def _snapshot(
    check: CheckDef, step: StepId, snapshot: str, present: Callable[[Known], bool], pinned: Pinned
) -> DriftBaseline:
    """The snapshot's version of this partition, else every partition of the asset it pins, pooled."""
    name = f"snapshot:{snapshot}"
    try:
        entries = pinned(snapshot)
    except UsageError as exc:  # an unknown snapshot fails the check closed, with the store's message
        return DriftBaseline(check.name, name, error=str(exc))
    same = entries.get((step.asset, step.partition))
    mats = [same] if same is not None else [m for (a, _), m in sorted(entries.items()) if a == step.asset]
    if not mats:
        return DriftBaseline(check.name, name, error=f"snapshot '{snapshot}' pins no partition of '{step.asset}'")
    kept = [m for m in mats if present(m)]
    if len(kept) < len(mats):
        return DriftBaseline(check.name, name, error=f"snapshot '{snapshot}' has objects missing from the store")
    return DriftBaseline(check.name, _label(name, kept), tuple(m.stored for m in kept))


def _label(name: str, mats: Sequence[Known]) -> str:
    """``previous_partition: events@2026-06-01 (b3:0a1b2c3d4e5f)``, or a range with a count when several."""

    def one(mat: Known) -> str:
        return step_label(mat.asset, mat.partition)

    if len(mats) == 1:
        return f"{name}: {one(mats[0])} ({mats[0].data_version[:15]})"
    return f"{name}: {one(mats[0])} … {one(mats[-1])} ({len(mats)} materializations)"
