"""Store integrity over the records: what the metadata store references decides what `verify` checks and `gc` keeps.

The work on the store itself (hashing, quarantine, removing objects and leftovers) is
`cairn.storage.maintenance`; this module adds what only the engine knows: which objects the materializations
reference, by whom, and whether a run is in progress.
"""

from __future__ import annotations

import time

from cairn.core.keys import step_label
from cairn.core.records import RUNNING
from cairn.errors import UsageError
from cairn.storage.base import ArtifactStore
from cairn.storage.maintenance import (
    GcReport,
    KeepSet,
    VerifyReport,
    collect_garbage,
    expand_manifests,
    verify_objects,
)
from cairn.storage.metadata import MetadataStore

FILES_FORMAT = "files"


def referenced(meta: MetadataStore) -> KeepSet:
    """Every object a materialization references directly (its data version), without manifest members."""
    keep = KeepSet()
    for ref in meta.referenced_objects():
        keep.add(ref.digest, ref.size, step_label(ref.asset, ref.partition))
        if ref.format == FILES_FORMAT:
            keep.manifests[ref.digest] = ref.size
    return keep


def keep_set(meta: MetadataStore, artifacts: ArtifactStore) -> KeepSet:
    """Every object that must be kept: what any materialization references, and the members of `Files`.

    This is the one place that decides what `gc` keeps: snapshots and registered model versions pin
    materializations, so they keep their objects through these rows; anything that comes to reference
    objects by itself joins here.
    """
    keep = referenced(meta)
    expand_manifests(keep, artifacts)
    return keep


def verify(
    meta: MetadataStore, artifacts: ArtifactStore, quarantine: bool = True, workers: int | None = None
) -> VerifyReport:
    """Re-hash every referenced object and every stored object; list missing and corrupt ones.

    Args:
        meta: The metadata store (what is referenced, with which sizes).
        artifacts: The artifact store.
        quarantine: Move corrupt objects out of the store (to ``<root>/quarantine/<hex>`` when the store has
            a root), so that the next run recomputes them instead of reading them.
        workers: Threads that hash side by side (default: the number of cores).
    """
    started = time.perf_counter()
    return verify_objects(artifacts, referenced(meta), quarantine=quarantine, workers=workers, started=started)


def gc(
    meta: MetadataStore,
    artifacts: ArtifactStore,
    apply: bool = False,
    stale_after_s: float = 120.0,
    now: float | None = None,
) -> GcReport:
    """Find (and with `apply`, remove) objects no materialization keeps, stale temp files and stale caches.

    Args:
        meta: The metadata store.
        artifacts: The artifact store.
        apply: Remove what was found; without it nothing changes (a dry run).
        stale_after_s: A running run whose heartbeat is older than this is dead and does not block `apply`.
        now: The current time in epoch seconds (for temp file ages; default: the clock).

    Raises:
        UsageError: `apply` while a run is in progress: its objects are written before their rows, so they
            would look unreferenced.
    """
    if apply:
        live = _live_runs(meta, stale_after_s)
        if live:
            raise UsageError(
                f"run {live[0]} is in progress, and the objects it is writing have no record yet, so gc would "
                "remove them; run `cairn gc --apply` again when no run is running (a dry run is always safe)"
            )
    return collect_garbage(artifacts, keep_set(meta, artifacts), apply=apply, now=now)


def _live_runs(meta: MetadataStore, stale_after_s: float) -> list[str]:
    now = meta.now()
    return [
        run.run_id
        for run in meta.runs_with_status(RUNNING)
        if (run.heartbeat_at or run.created_at) >= now - stale_after_s
    ]
