"""The step table: a selection of a project resolved into steps (asset x partition) with their key material.

    selection ─▶ target keys ─▶ expand (inputs per step) ─▶ spec per step (code, params, seed, env, source)
                                                          └▶ children, prechecks

Built once per run, or once for `cairn plan`, `status` and `why` without an engine; immutable after. Source
files are observed (hashed, with a stat cache) while it is built; nothing else is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from cairn.core.asset import AssetDef
from cairn.core.bulk import collector_paused
from cairn.core.keys import StepId, derive_seed
from cairn.core.partitions import check_key, key_range
from cairn.core.plan import SOURCE_MISSING, Decision, History, Plan, StepSpec, critical_path, plan_rows, precheck
from cairn.core.records import Materialization
from cairn.core.selection import select
from cairn.core.steps import StepInput, expand
from cairn.engine.sources import SourceObserver
from cairn.errors import DefinitionError, UsageError
from cairn.project import Project, installed_versions


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What to run and how (the options of `cairn run`)."""

    selection: tuple[str, ...] = ()
    force: bool = False
    fail_fast: bool = False
    executor: str | None = None
    workers: int | None = None
    profile: str | None = None
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    partition: str | None = None
    partition_range: tuple[str, str] | None = None
    snapshot: str | None = None
    labels: Mapping[str, Any] = field(default_factory=dict)  # more facts for the run's record (a sweep's trial)
    actor: str | None = None  # who runs it, when not the user of CAIRN_TOKEN (a web user)


class PrepareReads(Protocol):
    """What building a step table reads of the metadata store."""

    def snapshot(self, name: str) -> dict[tuple[str, str], Materialization]: ...


class Presence(Protocol):
    def present(self, mat: Materialization) -> bool: ...


class PreparedStep(NamedTuple):
    """One step of the table: what it reads, its key material, and what is known before history is asked."""

    step: StepId
    asset: AssetDef
    spec: StepSpec
    inputs: tuple[StepInput, ...]
    upstream: tuple[StepId, ...]  # the steps its inputs read, each once, in order
    children: tuple[StepId, ...]  # the steps that read it
    forced: bool = False
    source_path: str | None = None
    precheck: Decision | None = None  # decided without history: missing source, no input yet, pinned


@dataclass(frozen=True, slots=True)
class StepTable:
    """Every step of a selection in topological order."""

    order: tuple[StepId, ...]
    steps: Mapping[StepId, PreparedStep]
    keys: Mapping[str, Sequence[str]]  # every partition key of each asset the selection touches
    now: datetime

    def __getitem__(self, step: StepId) -> PreparedStep:
        return self.steps[step]

    def __len__(self) -> int:
        return len(self.order)

    def keys_of(self, asset: AssetDef) -> Sequence[str]:
        """Every partition key of an asset with a drift check (what its reference is chosen from)."""
        return self.keys[asset.name]

    def priority(self, durations: Mapping[str, float]) -> dict[StepId, float]:
        """The longest remaining chain from each step, weighted by past durations per asset (a run asks it
        once something executes; a plan never needs it)."""
        return critical_path(self.order, {s: self.steps[s].children for s in self.order}, durations)

    def inputs_of(self) -> dict[StepId, list[StepId]]:
        """For each step, the steps it reads, without repeats."""
        return {s: list(self.steps[s].upstream) for s in self.order}

    def plan(self, history: History) -> Plan:
        """What a run would do now, step by step, each with its reason (as the run itself decides)."""
        with collector_paused():
            return plan_rows(map(self.steps.__getitem__, self.order), history)


def prepare(project: Project, options: RunOptions, meta: PrepareReads, objects: Presence, now: datetime) -> StepTable:
    """Resolve the selection of `options` into the step table; observe source files (cached by stat)."""
    with collector_paused():
        return _Builder(project, options, now).build(meta, objects)


class _Builder:
    def __init__(self, project: Project, options: RunOptions, now: datetime) -> None:
        self.project = project
        self.settings = project.settings
        self.options = options
        self.now = now
        self.observer = SourceObserver(self.settings.state_dir)
        self.all_keys: dict[str, list[str]] = {}
        self.observed: dict[str, str | None] = {}  # source path -> data version (None: no file)
        # Code versions by what determines them (one function often defines thousands of assets)
        self.code: dict[tuple[Any, ...], tuple[str, dict[str, str], dict[str, str]]] = {}
        self.code_of: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {}  # the same, by asset

    def build(self, meta: PrepareReads, objects: Presence) -> StepTable:
        graph = self.project.graph
        targets = select(graph, self.options.selection)
        pinned = meta.snapshot(self.options.snapshot) if self.options.snapshot is not None else {}
        target_keys = [(name, self.target_keys(graph.assets[name])) for name in sorted(targets)]
        self.check_partition_option(targets)
        order, inputs = expand(graph, target_keys, self.keys, lambda a, key: self.observe(a, key) is not None)
        params = self.project.params(self.options.profile, self.options.overrides)
        forced = {StepId(n, k) for n, keys in target_keys for k in keys} if self.options.force else set()
        children: dict[StepId, list[StepId]] = {step: [] for step in order}
        upstream: dict[StepId, tuple[StepId, ...]] = {}
        for step in order:
            ins = inputs[step]
            # one input reads each of its steps once; several may read the same step
            ups = ins[0].steps if len(ins) == 1 else tuple(dict.fromkeys([up for inp in ins for up in inp.steps]))
            upstream[step] = ups
            for up in ups:
                children[up].append(step)
        steps = {}
        pools, snapshot = self.settings.pools, self.options.snapshot
        for step in order:
            asset = graph.assets[step.asset]
            if asset.pool:
                _check_pool(asset, pools)
            source_path = self.source_path(asset, step.partition) if asset.is_source else None
            spec = self.spec(asset, step, params[step.asset], source_path)
            mat = pinned.get((step.asset, step.partition)) if pinned else None
            if mat is not None and (step.asset in targets or not objects.present(mat)):
                mat = None
            ins = inputs[step]
            empty = None
            for u in ins:
                if not u.steps and not u.as_dict:
                    empty = u.param
                    break
            steps[step] = PreparedStep(
                step,
                asset,
                spec,
                tuple(ins),
                upstream[step],
                tuple(children[step]),
                step in forced,
                source_path,
                precheck(spec, source_path, empty, mat, snapshot),
            )
        for name in {step.asset for step in order}:
            if any(check.drift is not None for check in graph.assets[name].checks):
                self.keys(graph.assets[name])
        self.observer.save()
        self.project.save_code_cache()
        return StepTable(tuple(order), steps, dict(self.all_keys), self.now)

    def keys(self, asset: AssetDef) -> list[str]:
        """Every partition key of an asset that exists now (computed once)."""
        keys = self.all_keys.get(asset.name)
        if keys is None:
            keys = asset.partitions.keys(self.now) if asset.partitions is not None else [""]
            self.all_keys[asset.name] = keys
        return keys

    def target_keys(self, asset: AssetDef) -> list[str]:
        if asset.partitions is None:
            return [""]
        if self.options.partition is not None:
            return [check_key(asset.partitions, self.options.partition, self.now)]
        if self.options.partition_range is not None:
            first, last = self.options.partition_range
            return key_range(asset.partitions, first, last, self.now)
        return self.keys(asset)

    def check_partition_option(self, targets: set[str]) -> None:
        asked = self.options.partition or self.options.partition_range
        if asked and not any(self.project.graph.assets[t].partitions is not None for t in targets):
            raise UsageError(
                f"--partition/--from/--to were given but no selected asset is partitioned "
                f"(selected: {', '.join(sorted(targets))})"
            )

    def observe(self, asset: AssetDef, partition: str) -> str | None:
        """A source partition's data version now, or None when its file is not there (observed once)."""
        path = self.source_path(asset, partition)
        if path not in self.observed:
            self.observed[path] = self.observer.observe(Path(path))
        return self.observed[path]

    def source_path(self, asset: AssetDef, partition: str) -> str:
        assert asset.path is not None
        return str(self.settings.root / asset.path.replace("{partition}", partition))

    def spec(self, asset: AssetDef, step: StepId, params: dict[str, Any], source_path: str | None) -> StepSpec:
        if source_path is not None:
            version = self.observe(asset, step.partition)
            return StepSpec(step, code_version="", source_version=version or SOURCE_MISSING)
        code = self.code_of.get(asset.name)
        if code is None:
            # The graph holds every asset while the table is built, so these ids stay theirs.
            same_code = (
                id(asset.fn),
                asset.code_version,
                id(asset.contract),
                tuple(map(id, asset.checks)),
                tuple(map(id, asset.gates)),
                asset.env,
            )
            code = self.code.get(same_code)
            if code is None:
                code = self.code[same_code] = (*self.project.code(asset), installed_versions(asset.env))
            self.code_of[asset.name] = code
        code_version, parts, env = code
        return StepSpec(
            step,
            code_version=code_version,
            code_parts=parts,
            params=params,
            seed=derive_seed(self.settings.seed, step),
            env=env,
            cache=asset.cache,
        )


def _check_pool(asset: AssetDef, pools: Mapping[str, int]) -> None:
    if asset.pool and asset.pool not in pools:
        raise DefinitionError(
            f"asset '{asset.name}' uses pool '{asset.pool}', which is not declared: add "
            f"`{asset.pool} = <slots>` under [pools] in cairn.toml"
        )
