"""cairn: a dependency-aware orchestrator for ML feature-engineering and training pipelines.

Names are resolved on first use (PEP 562), so ``import cairn`` costs almost nothing and loads only the
standard library and blake3; the engine and its stores are imported when a run or a load needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cairn.version import __version__

if TYPE_CHECKING:
    from cairn import models as models
    from cairn.core.asset import AssetDef, Resources, asset, source
    from cairn.core.automation import RunRequest, SensorContext, SensorResult, schedule, sensor
    from cairn.core.contracts import (
        CheckResult,
        Contract,
        Drift,
        Freshness,
        Snapshot,
        Trailing,
        check,
        col,
        drift_check,
    )
    from cairn.core.gates import (
        GateContext,
        GateResult,
        gate,
        latency_budget,
        metric_threshold,
        no_regression,
        segment_regression,
        size_budget,
    )
    from cairn.core.partitions import (
        AllPartitions,
        Latest,
        TimeWindow,
        Window,
        daily,
        hourly,
        monthly,
        product,
        static,
        weekly,
    )
    from cairn.core.retry import Retry
    from cairn.engine.backfill import BackfillResult
    from cairn.engine.context import Context
    from cairn.engine.results import RunResult
    from cairn.engine.sweep import SweepResult
    from cairn.errors import (
        AccessDenied,
        CairnError,
        CheckFailed,
        CircuitOpen,
        ConfigError,
        ContractViolation,
        DefinitionError,
        Fatal,
        NonRetryable,
        SourceMissing,
        StepCrashed,
        StepFailed,
        StepTimeout,
        UsageError,
    )
    from cairn.io.files import Files

_LAZY = {
    "AssetDef": "cairn.core.asset",
    "Resources": "cairn.core.asset",
    "asset": "cairn.core.asset",
    "source": "cairn.core.asset",
    "Retry": "cairn.core.retry",
    **{name: "cairn.core.automation" for name in ("RunRequest", "SensorContext", "SensorResult", "schedule", "sensor")},
    **{
        name: "cairn.core.gates"
        for name in (
            "GateContext",
            "GateResult",
            "gate",
            "latency_budget",
            "metric_threshold",
            "no_regression",
            "segment_regression",
            "size_budget",
        )
    },
    **{
        name: "cairn.core.contracts"
        for name in (
            "CheckResult",
            "Contract",
            "Drift",
            "Freshness",
            "Snapshot",
            "Trailing",
            "check",
            "col",
            "drift_check",
        )
    },
    **{
        name: "cairn.core.partitions"
        for name in (
            "AllPartitions",
            "Latest",
            "TimeWindow",
            "Window",
            "daily",
            "hourly",
            "monthly",
            "product",
            "static",
            "weekly",
        )
    },
    "Context": "cairn.engine.context",
    "Files": "cairn.io.files",
    **{
        name: "cairn.errors"
        for name in (
            "AccessDenied",
            "CairnError",
            "CheckFailed",
            "CircuitOpen",
            "ConfigError",
            "ContractViolation",
            "DefinitionError",
            "Fatal",
            "NonRetryable",
            "SourceMissing",
            "StepCrashed",
            "StepFailed",
            "StepTimeout",
            "UsageError",
        )
    },
}


def __getattr__(name: str) -> Any:
    if name == "models":  # a submodule: cairn.models.load(...) without importing the registry up front
        return importlib.import_module("cairn.models")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cairn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def materialize(selection: Any = (), **options: Any) -> RunResult:
    """Run a selection of a project; see `cairn.engine.api.materialize` for the options."""
    from cairn.engine.api import materialize as run

    return run(selection, **options)


def backfill(selection: Any = (), **options: Any) -> BackfillResult:
    """Run a selection over a partition range as a recorded, resumable backfill (or resume one with
    ``resume=ID``); see `cairn.engine.backfill.backfill` for the options."""
    from cairn.engine.backfill import backfill as run

    return run(selection, **options)


def sweep(selection: Any = (), **options: Any) -> SweepResult:
    """Run a param grid as tracked trials (one run each) and rank them by a metric (``grid=``, ``metric=``,
    ``report=``); see `cairn.engine.sweep.sweep` for the options."""
    from cairn.engine.sweep import sweep as run

    return run(selection, **options)


def load(
    name: str, partition: str | None = None, project: Any = ".", snapshot: str | None = None, alias: str | None = None
) -> Any:
    """The stored value of an asset's latest materialization (or the one `snapshot` pinned, or `alias` points at),
    checksum-verified."""
    from cairn.engine.api import load as load_value

    return load_value(name, partition, project, snapshot, alias)


__all__ = [
    "AccessDenied",
    "AllPartitions",
    "AssetDef",
    "CairnError",
    "CheckFailed",
    "CheckResult",
    "CircuitOpen",
    "ConfigError",
    "Context",
    "Contract",
    "ContractViolation",
    "DefinitionError",
    "Drift",
    "Fatal",
    "Files",
    "Freshness",
    "GateContext",
    "GateResult",
    "Latest",
    "NonRetryable",
    "Resources",
    "Retry",
    "RunRequest",
    "SensorContext",
    "SensorResult",
    "Snapshot",
    "SourceMissing",
    "StepCrashed",
    "StepFailed",
    "StepTimeout",
    "TimeWindow",
    "Trailing",
    "UsageError",
    "Window",
    "__version__",
    "asset",
    "backfill",
    "check",
    "col",
    "daily",
    "drift_check",
    "gate",
    "hourly",
    "latency_budget",
    "load",
    "materialize",
    "metric_threshold",
    "models",
    "monthly",
    "no_regression",
    "product",
    "schedule",
    "segment_regression",
    "sensor",
    "size_budget",
    "source",
    "static",
    "sweep",
    "weekly",
]
