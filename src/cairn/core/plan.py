"""The planner: a pure function from definitions, specs and history to steps, each with its reason.

A step's cache key needs the data versions of its inputs, so a step whose upstream will run cannot be
decided in advance: the plan marks it "run" with reason "upstream runs", and the engine calls `decide`
again once the upstream results exist (early cutoff: byte-identical upstream output keeps it cached).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from cairn.core.fingerprint import part_label
from cairn.core.keys import StepId, cache_key, source_key
from cairn.core.records import InputRef, Materialization

RUN = "run"
CACHED_ACTION = "cached"
SOURCE_MISSING = "missing"  # the source_version of a source whose file does not exist (yet)


class ReasonCode(StrEnum):
    """Why a step runs or is cached."""

    CACHED = "cached"
    NEVER = "never materialized"
    CODE_CHANGED = "code changed"
    PARAM_CHANGED = "param changed"
    SEED_CHANGED = "seed changed"
    INPUT_CHANGED = "input changed"
    ENV_CHANGED = "env changed"
    KEY_CHANGED = "cache key changed"
    FORCED = "forced"
    CACHE_DISABLED = "cache disabled"
    PREVIOUS_FAILED = "previous attempt failed"
    OUTPUT_MISSING = "stored output missing"
    UPSTREAM_RUNS = "upstream runs"
    SOURCE_UNCHANGED = "source unchanged"
    SOURCE_CHANGED = "source changed"
    SOURCE_NOT_READY = "source not ready"


@dataclass(frozen=True, slots=True)
class Reason:
    """A reason code with the specifics (which function, which param, which input)."""

    code: ReasonCode
    detail: str = ""

    def __str__(self) -> str:
        return self.detail or self.code.value


@dataclass(frozen=True, slots=True)
class StepSpec:
    """Everything a step's cache key depends on except the data versions of its inputs."""

    step: StepId
    code_version: str
    code_parts: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    cache: bool = True
    source_version: str | None = None


class History(Protocol):
    """What the planner may ask of recorded history."""

    def cached(self, step: StepId, cache_key: str) -> Materialization | None:
        """A successful materialization of `step` with this key whose object is present."""
        ...

    def previous(self, step: StepId) -> Materialization | None:
        """The latest materialization of this asset partition, whatever its key."""
        ...

    def failed(self, cache_key: str) -> bool:
        """Whether an earlier attempt with this key failed."""
        ...


@dataclass(frozen=True, slots=True)
class Decision:
    """One planned step: run it or reuse a materialization, and why."""

    step: StepId
    action: str
    reason: Reason
    cache_key: str | None = None
    cached: Materialization | None = None
    inputs: tuple[InputRef, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """Steps in topological order."""

    steps: tuple[Decision, ...]

    @property
    def to_run(self) -> list[Decision]:
        return [d for d in self.steps if d.action == RUN]


def key_of(spec: StepSpec, inputs: Sequence[InputRef]) -> str:
    """The cache key of a step given its inputs' data versions."""
    if spec.source_version is not None:
        return source_key(spec.step, spec.source_version)
    refs = [(i.asset, i.partition, i.data_version) for i in inputs]
    return cache_key(spec.step, spec.code_version, spec.params, spec.seed, refs, spec.env)


def decide(spec: StepSpec, inputs: Sequence[InputRef], history: History, force: bool = False) -> Decision:
    """Decide one step whose inputs' data versions are known."""
    key = key_of(spec, inputs)
    ins = tuple(inputs)
    if force:
        return Decision(spec.step, RUN, Reason(ReasonCode.FORCED), key, None, ins)
    if not spec.cache:
        return Decision(spec.step, RUN, Reason(ReasonCode.CACHE_DISABLED), key, None, ins)
    hit = history.cached(spec.step, key)
    if hit is not None:
        code = ReasonCode.SOURCE_UNCHANGED if spec.source_version is not None else ReasonCode.CACHED
        return Decision(spec.step, CACHED_ACTION, Reason(code), key, hit, ins)
    return Decision(spec.step, RUN, explain(spec, key, ins, history), key, None, ins)


def explain(spec: StepSpec, key: str, inputs: Sequence[InputRef], history: History) -> Reason:
    """Why a step with this key has no usable materialization."""
    if spec.source_version == SOURCE_MISSING:
        return Reason(ReasonCode.SOURCE_NOT_READY, f"source not ready: no file for {spec.step} yet")
    previous = history.previous(spec.step)
    if history.failed(key):
        return Reason(ReasonCode.PREVIOUS_FAILED)
    if previous is None:
        return Reason(ReasonCode.NEVER)
    if previous.cache_key == key:
        return Reason(ReasonCode.OUTPUT_MISSING, f"stored output missing: {previous.data_version[:15]}…")
    if spec.source_version is not None:
        return Reason(ReasonCode.SOURCE_CHANGED, f"source changed: {spec.step}")
    return compare(spec, inputs, previous)


def compare(spec: StepSpec, inputs: Sequence[InputRef], previous: Materialization) -> Reason:
    """Name every difference between what a step would use now and what its last materialization used."""
    found: list[tuple[ReasonCode, str]] = []
    if spec.code_version != previous.code_version:
        found.append((ReasonCode.CODE_CHANGED, _code_detail(spec, previous)))
    for name in sorted(set(spec.params) | set(previous.params)):
        old, new = previous.params.get(name, "∅"), spec.params.get(name, "∅")
        if old != new:
            found.append((ReasonCode.PARAM_CHANGED, f"param changed: {name} {_short(old)}→{_short(new)}"))
    if spec.seed != previous.seed:
        found.append((ReasonCode.SEED_CHANGED, f"seed changed: {previous.seed}→{spec.seed}"))
    before = {(i.asset, i.partition): i.data_version for i in previous.inputs}
    for ref in inputs:
        if before.get((ref.asset, ref.partition)) != ref.data_version:
            label = f"{ref.asset}@{ref.partition}" if ref.partition else ref.asset
            found.append((ReasonCode.INPUT_CHANGED, f"input changed: {label}"))
    old_env = previous.metadata.get("cairn.env", {})
    for dist in sorted(set(spec.env) | set(old_env)):
        if old_env.get(dist) != spec.env.get(dist):
            found.append(
                (
                    ReasonCode.ENV_CHANGED,
                    f"env changed: {dist} {old_env.get(dist, '∅')}→{spec.env.get(dist, '∅')}",
                )
            )
    if not found:
        return Reason(ReasonCode.KEY_CHANGED)
    return Reason(found[0][0], "; ".join(detail for _, detail in found))


def _code_detail(spec: StepSpec, previous: Materialization) -> str:
    asset = spec.step.asset
    if not spec.code_parts or not previous.code_parts:
        return f"code changed: {asset} (code_version {previous.code_version[:12]}→{spec.code_version[:12]})"
    changed = sorted(
        part_label(p)
        for p in set(spec.code_parts) | set(previous.code_parts)
        if spec.code_parts.get(p) != previous.code_parts.get(p)
    )
    own = [c for c in changed if c == _own_label(spec)]
    helpers = [c for c in changed if c != _own_label(spec)]
    if helpers:
        return f"code changed: {asset} → {', '.join(helpers)}" + (" (and its own body)" if own else "")
    return f"code changed: {asset}"


def _own_label(spec: StepSpec) -> str:
    first = next(iter(spec.code_parts), "")
    return part_label(first)


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def plan(
    steps: Sequence[StepId],
    specs: Mapping[StepId, StepSpec],
    inputs_of: Mapping[StepId, Sequence[StepId]],
    history: History,
    force: frozenset[StepId] = frozenset(),
    pinned: Mapping[StepId, Decision] | None = None,
) -> Plan:
    """Decide every step in order; steps downstream of a step that runs are marked "upstream runs".

    Args:
        steps: the steps to consider, in topological order.
        specs: key material of each step.
        inputs_of: for each step, the steps whose outputs it reads.
        history: recorded materializations and failures.
        force: steps to run regardless of the cache.
        pinned: steps decided already (read from a snapshot): taken as they are.
    """
    decided: dict[StepId, Decision] = {}
    out: list[Decision] = []
    for step in steps:
        ups = inputs_of.get(step, ())
        if pinned and step in pinned:
            decided[step] = pinned[step]
            out.append(pinned[step])
            continue
        running = [str(u) for u in ups if decided[u].action == RUN]
        if running:
            detail = f"upstream runs: {', '.join(running[:3])}" + (" …" if len(running) > 3 else "")
            decision = Decision(step, RUN, Reason(ReasonCode.UPSTREAM_RUNS, detail))
        else:
            refs = [input_ref(u, decided[u]) for u in ups]
            decision = decide(specs[step], refs, history, step in force)
        decided[step] = decision
        out.append(decision)
    return Plan(tuple(out))


def input_ref(step: StepId, decision: Decision) -> InputRef:
    """The input reference that a cached upstream decision provides."""
    assert decision.cached is not None
    return InputRef(step.asset, step.partition, decision.cached.data_version)


def critical_path(
    steps: Sequence[StepId],
    downstream_of: Mapping[StepId, Sequence[StepId]],
    durations: Mapping[str, float],
    default: float = 1.0,
) -> dict[StepId, float]:
    """Longest remaining chain from each step to the end, weighted by past durations per asset."""
    length: dict[StepId, float] = {}
    for step in reversed(steps):
        tail = max((length[d] for d in downstream_of.get(step, ()) if d in length), default=0.0)
        length[step] = durations.get(step.asset, default) + tail
    return length
