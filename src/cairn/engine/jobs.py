"""The step job's messages: what the engine sends a worker and what comes back (small, picklable values)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cairn.core.records import InputRef, StoredValue
from cairn.errors import CairnError

# Kept importable from here; the format belongs to the reading of stored values.
from cairn.io.reading import SOURCE_FORMAT as SOURCE_FORMAT
from cairn.storage.artifacts import PendingObject

OK = "ok"
FAILED = "failed"
TIMEOUT = "timeout"
BAD_INPUT = "bad_input"


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One input to load: the parameter it fills, the materialization it reads, and how it is stored."""

    param: str
    ref: InputRef
    stored: StoredValue
    annotation: str = ""
    key: str | None = None


@dataclass(frozen=True, slots=True)
class DriftBaseline:
    """The reference of one drift check, resolved by the engine: the objects to compare with (pooled when
    several), a label saying which materializations they are, or why there is nothing (`missing`, which
    passes) or the reference cannot be had (`error`, which fails)."""

    check: str
    label: str
    stored: tuple[StoredValue, ...] = ()
    missing: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class ChampionRef:
    """The current champion of a model asset (where its ``champion`` alias points), resolved by the engine for
    the model's gates: its object, loaded in the worker only when a gate asks for it, and its metrics."""

    stored: StoredValue
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepJob:
    """Everything a worker needs to run one attempt; picklable, small."""

    project_dir: str
    artifacts_url: str
    asset: str
    partition: str
    run_id: str
    attempt: int
    cache_key: str
    params: dict[str, Any]
    seed: int
    inputs: tuple[InputSpec, ...] = ()
    source_path: str | None = None
    capture_output: bool = False
    timeout: float | None = None
    drift: tuple[DriftBaseline, ...] = ()  # one per drift check of the asset
    champion: ChampionRef | None = None  # for a model asset with gates: what `no_regression` compares with
    # Leave the output in the store's tmp/ for the engine to publish with the others that finish together
    # (`cairn.storage.artifacts.deferred_publishing`); only where the engine shares the worker's file system.
    defer_publish: bool = False
    # The artifact store's fsspec storage options (endpoint, credentials): left out of repr, they may hold secrets.
    artifacts_options: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What an attempt produced, or how it failed."""

    status: str
    stored: StoredValue | None = None
    duration_s: float = 0.0
    logs: tuple[tuple[float, str, str], ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    # The class of the error (`StepFailed` when user code raised, `Fatal`, `StepTimeout`, `ContractViolation`,
    # `CheckFailed`, `CorruptObject`, ...); a class pickles by reference, so it crosses process boundaries.
    error_class: type[CairnError] | None = None
    retryable: bool = True
    bad_input: tuple[str, str] | None = None  # (data version of the input, digest of the damaged object)
    checks: tuple[dict[str, Any], ...] = ()
    # Where a successful attempt's time went: inputs_s (loading), function_s (the asset function),
    # checks_s (contract and checks), output_s (serializing and storing).
    timings: dict[str, float] = field(default_factory=dict)
    # With `StepJob.defer_publish`: the objects written, still to be made durable and published by the engine.
    objects: tuple[PendingObject, ...] = ()
