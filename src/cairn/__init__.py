"""cairn: a dependency-aware orchestrator for ML feature-engineering and training pipelines.

Names are resolved on first use (PEP 562), so ``import cairn`` costs almost nothing and loads only the
standard library and blake3; the engine and its stores are imported when a run or a load needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cairn.version import __version__

if TYPE_CHECKING:
    from cairn.core.asset import AssetDef, Resources, asset, source
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
    from cairn.engine.run import RunResult
    from cairn.errors import (
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


def load(name: str, partition: str | None = None, project: Any = ".", snapshot: str | None = None) -> Any:
    """The stored value of an asset's latest materialization (or the one `snapshot` pinned), checksum-verified."""
    from cairn.engine.api import load as load_value

    return load_value(name, partition, project, snapshot)


__all__ = [
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
    "Latest",
    "NonRetryable",
    "Resources",
    "Retry",
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
    "hourly",
    "load",
    "materialize",
    "monthly",
    "product",
    "source",
    "static",
    "weekly",
]
