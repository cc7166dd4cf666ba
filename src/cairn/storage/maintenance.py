"""Store maintenance: `verify_objects` re-hashes objects against their names and records, `collect_garbage`
removes what nothing keeps; both written once over the `ArtifactStore` and `StoreMaintenance` ports.

    verify: manifests first (they name more objects) ─▶ every referenced object ─▶ every other stored object
            missing = referenced but absent; corrupt = bytes that do not hash to the name (or the recorded size
            differs) ─▶ moved to <root>/quarantine/<hex>, so the next run sees a cache miss and recomputes it

    gc:     keep set ─▶ remove stored objects not in it, unfinished uploads (temp files, S3 multipart uploads,
            staging keys) older than an hour, and rebuilt `Files` folders of manifests not kept; a dry run only
            lists them

What is referenced comes from the caller (the engine reads it from the metadata store) as a `KeepSet`. Objects
are listed, sized, read and deleted through `ArtifactStore` (`digests`, `size`, `read_bytes`, `delete`); a
store with files (`local_path`) is hashed memory-mapped and multi-threaded instead. Quarantine and leftovers go
through `StoreMaintenance`; a store without it deletes what it quarantines and has no leftovers.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Container, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cairn.errors import CorruptObject, MissingObject, StoreError
from cairn.storage.artifacts import DIGEST_PATTERN
from cairn.storage.base import ArtifactStore, StoreMaintenance

QUARANTINE_DIR = "quarantine"
TEMP_MAX_AGE_S = 3600.0
_BIG_OBJECT_BYTES = 8 * 1024 * 1024  # hashed with all cores; smaller ones run side by side, one per thread

MISSING = "missing"
CORRUPT = "corrupt"
INCOMPLETE = "incomplete"  # a Files manifest whose member is missing or corrupt


# ---- what is referenced ------------------------------------------------------------------------


@dataclass(slots=True)
class KeepSet:
    """The objects `gc` must keep, with their expected sizes and who references them."""

    sizes: dict[str, int] = field(default_factory=dict)
    users: dict[str, set[str]] = field(default_factory=dict)
    manifests: dict[str, int] = field(default_factory=dict)
    parents: dict[str, set[str]] = field(default_factory=dict)
    unreadable_manifests: dict[str, str] = field(default_factory=dict)

    def add(self, digest: str, size: int, user: str) -> None:
        self.sizes.setdefault(digest, size)
        self.users.setdefault(digest, set()).add(user)

    def __contains__(self, digest: object) -> bool:
        return digest in self.sizes


def expand_manifests(keep: KeepSet, artifacts: ArtifactStore) -> None:
    """Add the member objects of every `Files` manifest in `keep`; record the manifests that cannot be read."""
    for digest, size in keep.manifests.items():
        owner = ", ".join(sorted(keep.users[digest]))
        try:
            manifest = json.loads(artifacts.read_bytes(digest, size))
            members = [(str(path), str(entry["digest"]), int(entry["size"])) for path, entry in manifest.items()]
        except (MissingObject, CorruptObject) as exc:
            keep.unreadable_manifests[digest] = str(exc).split(". ")[0]
            continue
        except (ValueError, TypeError, KeyError, AttributeError):
            keep.unreadable_manifests[digest] = f"object {digest} is not a cairn.Files manifest"
            continue
        for path, member, member_size in members:
            if DIGEST_PATTERN.fullmatch(member):
                keep.add(member, member_size, f"{owner}:{path}")
                keep.parents.setdefault(member, set()).add(digest)


# ---- the maintenance port, or what stands in for it -------------------------------------------


def maintenance(artifacts: ArtifactStore) -> StoreMaintenance:
    """The store's own maintenance, or, for a store without it, deletion as quarantine and no leftovers."""
    if isinstance(artifacts, StoreMaintenance):
        return artifacts
    return _Unmaintained(artifacts)


class _Unmaintained:
    """`StoreMaintenance` for a store that offers none: it has nowhere to move objects to and leaves nothing."""

    def __init__(self, artifacts: ArtifactStore) -> None:
        self._artifacts = artifacts

    def quarantine(self, digest: str, folder: str) -> str:
        self._artifacts.delete(digest)
        return "deleted"

    def stale_uploads(self, before: float) -> list[tuple[str, int]]:
        return []

    def remove_upload(self, name: str) -> None:
        raise StoreError(f"{name!r} is not an unfinished upload of {self._artifacts.url}: it lists none.")

    def stale_caches(self, keep: Container[str], before: float) -> list[tuple[str, int]]:
        return []

    def remove_cache(self, name: str) -> None:
        raise StoreError(f"{name!r} is not a cache of {self._artifacts.url}: it lists none.")

    def tidy(self) -> None:
        pass


def quarantine_object(artifacts: ArtifactStore, digest: str) -> str:
    """Take an object out of the store so that nothing reads it again; return where it went.

    A local store moves it to ``<root>/quarantine/<hex>``, a fsspec store to the same key under its root;
    other stores (memory) delete it.
    """
    return maintenance(artifacts).quarantine(digest, QUARANTINE_DIR)


# ---- verify ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectProblem:
    """A referenced object that is missing, or a stored object whose bytes are not what its name says."""

    digest: str
    problem: str
    detail: str
    used_by: tuple[str, ...] = ()
    moved_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "problem": self.problem,
            "detail": self.detail,
            "used_by": list(self.used_by),
            "moved_to": self.moved_to,
        }


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What `verify` checked, how fast, and what it found."""

    objects: int
    bytes: int
    seconds: float
    problems: tuple[ObjectProblem, ...]
    unreferenced: int

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def missing(self) -> list[ObjectProblem]:
        return [p for p in self.problems if p.problem == MISSING]

    @property
    def corrupt(self) -> list[ObjectProblem]:
        return [p for p in self.problems if p.problem == CORRUPT]

    @property
    def incomplete(self) -> list[ObjectProblem]:
        return [p for p in self.problems if p.problem == INCOMPLETE]

    @property
    def throughput(self) -> float:
        """Bytes hashed per second."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "objects": self.objects,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 6),
            "bytes_per_second": round(self.throughput),
            "unreferenced": self.unreferenced,
            "missing": [p.to_dict() for p in self.missing],
            "corrupt": [p.to_dict() for p in self.corrupt],
            "incomplete": [p.to_dict() for p in self.incomplete],
        }


def verify_objects(
    artifacts: ArtifactStore,
    keep: KeepSet,
    quarantine: bool = True,
    workers: int | None = None,
    started: float | None = None,
) -> VerifyReport:
    """Re-hash every referenced object and every stored object; list missing and corrupt ones.

    Args:
        artifacts: The artifact store.
        keep: What the records reference directly, with the expected sizes; `Files` manifests not yet
            expanded (their members are added here, once the manifests themselves are checked).
        quarantine: Move corrupt objects out of the store (to ``<root>/quarantine/<hex>`` when the store has
            a root), so that the next run recomputes them instead of reading them.
        workers: Threads that hash side by side (default: the number of cores).
        started: When the verification began (`time.perf_counter`), if the caller did part of it before;
            default: now.
    """
    started = time.perf_counter() if started is None else started
    stored = set(artifacts.digests())
    problems: list[ObjectProblem] = []
    checked: set[str] = set()
    hashed = 0
    # Manifests first: reading one verifies it, and names member objects to check next.
    manifests = [d for d in keep.manifests if d in stored]
    for digest, (size, detail) in _hash_all(artifacts, manifests, keep.sizes, workers).items():
        hashed += size
        checked.add(digest)
        if detail is not None:
            problems.append(_corrupt(artifacts, digest, detail, keep, quarantine))
    expand_manifests(keep, artifacts)
    for digest in sorted(set(keep.sizes) - stored):
        problems.append(ObjectProblem(digest, MISSING, "not in the artifact store", tuple(sorted(keep.users[digest]))))
    rest = sorted(stored - checked)
    for digest, (size, detail) in _hash_all(artifacts, rest, keep.sizes, workers).items():
        hashed += size
        if detail is not None:
            problems.append(_corrupt(artifacts, digest, detail, keep, quarantine))
    problems += _incomplete_manifests(artifacts, problems, keep, quarantine)
    return VerifyReport(
        objects=len(stored),
        bytes=hashed,
        seconds=time.perf_counter() - started,
        problems=tuple(sorted(problems, key=lambda p: (p.problem, p.digest))),
        unreferenced=len(stored - set(keep.sizes)),
    )


def _hash_all(
    artifacts: ArtifactStore, digests: Iterable[str], sizes: dict[str, int], workers: int | None
) -> dict[str, tuple[int, str | None]]:
    """For each digest: the bytes hashed and what is wrong with the object (None when it is intact)."""
    todo = list(digests)
    if not todo:
        return {}
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = pool.map(lambda d: _check_one(artifacts, d, sizes.get(d)), todo)
        return dict(zip(todo, results, strict=True))


def _check_one(artifacts: ArtifactStore, digest: str, size: int | None) -> tuple[int, str | None]:
    path = artifacts.local_path(digest)
    if path is not None:
        return _check_file(digest, path, size)
    try:
        data = artifacts.read_bytes(digest, size)
    except CorruptObject as exc:
        return artifacts.size(digest) or 0, str(exc).split(". Run")[0]
    except MissingObject:
        return 0, None  # removed meanwhile (a concurrent gc): nothing left to check
    return len(data), None


def _check_file(digest: str, path: str, size: int | None) -> tuple[int, str | None]:
    from blake3 import blake3  # a core dependency; the hasher is built here for its threading options

    try:
        actual = os.stat(path).st_size
        hasher = blake3(max_threads=blake3.AUTO if actual >= _BIG_OBJECT_BYTES else 1)
        hasher.update_mmap(path)
    except FileNotFoundError:
        return 0, None
    found = "b3:" + str(hasher.hexdigest())
    if found != digest:
        return actual, f"its {actual} bytes hash to {found}"
    if size is not None and actual != size:
        return actual, f"it has {actual} bytes but its record says {size}"
    return actual, None


def _corrupt(artifacts: ArtifactStore, digest: str, detail: str, keep: KeepSet, quarantine: bool) -> ObjectProblem:
    moved = quarantine_object(artifacts, digest) if quarantine else None
    return ObjectProblem(digest, CORRUPT, detail, tuple(sorted(keep.users.get(digest, ()))), moved)


def _incomplete_manifests(
    artifacts: ArtifactStore, problems: list[ObjectProblem], keep: KeepSet, quarantine: bool
) -> list[ObjectProblem]:
    """Intact manifests with a damaged member. The engine checks only a manifest's presence for a cache hit,
    so a quarantined manifest is what makes the next run rebuild all of its files."""
    damaged: dict[str, list[str]] = {}
    for problem in problems:
        for manifest in keep.parents.get(problem.digest, ()):
            damaged.setdefault(manifest, []).append(f"{problem.digest} is {problem.problem}")
    done = {p.digest for p in problems}
    found = []
    for manifest, why in sorted(damaged.items()):
        if manifest in done or not artifacts.exists(manifest):
            continue
        moved = quarantine_object(artifacts, manifest) if quarantine else None
        users = tuple(sorted(keep.users.get(manifest, ())))
        found.append(ObjectProblem(manifest, INCOMPLETE, "member " + "; member ".join(why), users, moved))
    return found


# ---- gc ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GcReport:
    """What `gc` removes (or, in a dry run, would remove)."""

    objects: tuple[tuple[str, int], ...]
    temp_files: tuple[tuple[str, int], ...]
    file_caches: tuple[tuple[str, int], ...]
    kept: int
    applied: bool
    unreadable_manifests: tuple[tuple[str, str], ...] = ()

    @property
    def bytes(self) -> int:
        return sum(size for _, size in (*self.objects, *self.temp_files, *self.file_caches))

    @property
    def empty(self) -> bool:
        return not (self.objects or self.temp_files or self.file_caches)

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "kept": self.kept,
            "bytes": self.bytes,
            "objects": [{"digest": d, "size": s} for d, s in self.objects],
            "temp_files": [{"path": p, "size": s} for p, s in self.temp_files],
            "file_caches": [{"path": p, "size": s} for p, s in self.file_caches],
            "unreadable_manifests": [{"digest": d, "detail": why} for d, why in self.unreadable_manifests],
        }


def collect_garbage(artifacts: ArtifactStore, keep: KeepSet, apply: bool = False, now: float | None = None) -> GcReport:
    """Find (and with `apply`, remove) objects not in `keep`, stale unfinished uploads and stale caches.

    Args:
        artifacts: The artifact store.
        keep: Every object that must be kept, `Files` members included (see `expand_manifests`).
        apply: Remove what was found; without it nothing changes (a dry run). The caller makes sure that no
            run is writing objects whose records do not exist yet.
        now: The current time in epoch seconds (for the ages of leftovers; default: the clock).
    """
    upkeep = maintenance(artifacts)
    clock = time.time() if now is None else now
    objects = []
    for digest in artifacts.digests():
        if digest not in keep:
            objects.append((digest, artifacts.size(digest) or 0))
    temp_files = upkeep.stale_uploads(before=clock - TEMP_MAX_AGE_S)
    file_caches = upkeep.stale_caches(keep, before=clock - TEMP_MAX_AGE_S)
    if apply:
        for digest, _ in objects:
            artifacts.delete(digest)
        for name, _ in temp_files:
            upkeep.remove_upload(name)
        for name, _ in file_caches:
            upkeep.remove_cache(name)
        upkeep.tidy()
    return GcReport(
        tuple(objects),
        tuple(temp_files),
        tuple(file_caches),
        kept=len(keep.sizes),
        applied=apply,
        unreadable_manifests=tuple(sorted(keep.unreadable_manifests.items())),
    )
