"""Run comparison: exactly what differs between two runs' results and environments, nothing else.

Per asset partition present in either run (the materialization each step produced or reused): the code
version and which code parts changed (by ``module.qualname``), params, seed, input data versions, the
versions of the distributions the asset declares with ``env=`` (they enter its cache key), the output data
version and metrics. Per run: the environment entries (python, os, git commit, ...) and the installed
distributions that were added, removed or changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cairn.core.keys import step_label
from cairn.core.records import Materialization
from cairn.storage.metadata import MetadataStore

DISTRIBUTIONS = "distributions"
ENV_METADATA = "cairn.env"  # a materialization's ``env=`` distributions and their versions, as recorded
BOTH = "both"
ONLY_A = "only_a"
ONLY_B = "only_b"


@dataclass(frozen=True, slots=True)
class Change:
    """One value that differs: ``before`` (run A) and ``after`` (run B); None where it is absent."""

    name: str
    before: Any
    after: Any

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.before, "b": self.after}


def _changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[Change, ...]:
    """The keys whose values differ (a missing key counts as None), sorted by key."""
    return tuple(Change(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


def _as_dict(changes: tuple[Change, ...]) -> dict[str, Any]:
    return {c.name: c.to_dict() for c in changes}


@dataclass(frozen=True, slots=True)
class AssetDiff:
    """How one asset partition differs between two runs."""

    asset: str
    partition: str
    presence: str
    code_version: Change | None = None
    code_parts: tuple[Change, ...] = ()
    params: tuple[Change, ...] = ()
    seed: Change | None = None
    inputs: tuple[Change, ...] = ()
    env: tuple[Change, ...] = ()
    data_version: Change | None = None
    metrics: tuple[Change, ...] = ()

    @property
    def label(self) -> str:
        return step_label(self.asset, self.partition)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"asset": self.asset, "partition": self.partition or None, "presence": self.presence}
        for name in ("code_version", "seed", "data_version"):
            change = getattr(self, name)
            if change is not None:
                out[name] = change.to_dict()
        for name in ("code_parts", "params", "inputs", "env", "metrics"):
            changes = getattr(self, name)
            if changes:
                out[name] = _as_dict(changes)
        return out


@dataclass(frozen=True, slots=True)
class EnvDiff:
    """How two recorded environments differ: top-level entries, and distributions by name."""

    entries: tuple[Change, ...] = ()
    distributions: tuple[Change, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.entries and not self.distributions

    def to_dict(self) -> dict[str, Any]:
        out = _as_dict(self.entries)
        if self.distributions:
            out[DISTRIBUTIONS] = {
                "added": {c.name: c.after for c in self.distributions if c.before is None},
                "removed": {c.name: c.before for c in self.distributions if c.after is None},
                "changed": {
                    c.name: c.to_dict() for c in self.distributions if c.before is not None and c.after is not None
                },
            }
        return out


@dataclass(frozen=True, slots=True)
class RunDiff:
    """What differs between two runs."""

    run_a: str
    run_b: str
    assets: tuple[AssetDiff, ...]
    environment: EnvDiff

    @property
    def empty(self) -> bool:
        return not self.assets and self.environment.empty

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "assets": [a.to_dict() for a in self.assets],
            "environment": self.environment.to_dict(),
        }


def diff_materializations(a: Materialization | None, b: Materialization | None) -> AssetDiff | None:
    """The differences between two materializations of one asset partition; None when there are none."""
    if a is None and b is None:
        return None
    if a is None or b is None:
        present = a if a is not None else b
        assert present is not None
        return AssetDiff(
            present.asset,
            present.partition,
            ONLY_A if b is None else ONLY_B,
            data_version=Change("data_version", a.data_version if a else None, b.data_version if b else None),
        )
    if a.id == b.id:
        return None
    inputs_a = {step_label(i.asset, i.partition): i.data_version for i in a.inputs}
    inputs_b = {step_label(i.asset, i.partition): i.data_version for i in b.inputs}
    found = AssetDiff(
        a.asset,
        a.partition,
        BOTH,
        code_version=_change("code_version", a.code_version, b.code_version),
        code_parts=_changes(a.code_parts, b.code_parts),
        params=_changes(a.params, b.params),
        seed=_change("seed", a.seed, b.seed),
        inputs=_changes(inputs_a, inputs_b),
        env=_changes(_env(a), _env(b)),
        data_version=_change("data_version", a.data_version, b.data_version),
        metrics=_changes(a.metrics, b.metrics),
    )
    return found if found != AssetDiff(a.asset, a.partition, BOTH) else None


def _env(mat: Materialization) -> dict[str, Any]:
    recorded = mat.metadata.get(ENV_METADATA)
    return dict(recorded) if isinstance(recorded, Mapping) else {}


def _change(name: str, before: Any, after: Any) -> Change | None:
    return None if before == after else Change(name, before, after)


def diff_environments(a: Mapping[str, Any], b: Mapping[str, Any]) -> EnvDiff:
    """The entries of two recorded environments that differ; distributions are compared by name.

    An environment recorded before distributions were captured has no ``distributions`` entry; that
    difference is one entry, not every distribution "added".
    """
    plain_a = {k: v for k, v in a.items() if k != DISTRIBUTIONS}
    plain_b = {k: v for k, v in b.items() if k != DISTRIBUTIONS}
    entries = _changes(plain_a, plain_b)
    dists_a, dists_b = a.get(DISTRIBUTIONS), b.get(DISTRIBUTIONS)
    if isinstance(dists_a, dict) and isinstance(dists_b, dict):
        return EnvDiff(entries, _changes(dists_a, dists_b))
    if dists_a is None and dists_b is None:
        return EnvDiff(entries)
    summary = Change(DISTRIBUTIONS, _recorded(dists_a), _recorded(dists_b))
    return EnvDiff(tuple(sorted((*entries, summary), key=lambda c: c.name)))


def _recorded(value: Any) -> str:
    return f"{len(value)} recorded" if isinstance(value, dict) else "not recorded"


def diff_runs(meta: MetadataStore, run_a: str, run_b: str) -> RunDiff:
    """Compare two runs (ids, unique prefixes, or ``latest``).

    Raises:
        UsageError: A run id matches no run or several.
    """
    id_a, id_b = meta.resolve_run_id(run_a), meta.resolve_run_id(run_b)
    record_a, record_b = meta.get_run(id_a), meta.get_run(id_b)
    assert record_a is not None and record_b is not None
    mats_a, mats_b = meta.run_materializations(id_a), meta.run_materializations(id_b)
    assets = []
    for pair in sorted(set(mats_a) | set(mats_b)):
        found = diff_materializations(mats_a.get(pair), mats_b.get(pair))
        if found is not None:
            assets.append(found)
    return RunDiff(id_a, id_b, tuple(assets), diff_environments(record_a.environment, record_b.environment))
