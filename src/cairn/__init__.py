"""cairn: a dependency-aware orchestrator for ML feature-engineering and training pipelines.

Importing cairn loads only the standard library and blake3; the engine and its stores are imported
when `materialize` or `load` is first called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cairn.core.asset import AssetDef, Resources, asset, source
from cairn.core.retry import Retry
from cairn.engine.context import Context
from cairn.errors import (
    CairnError,
    CheckFailed,
    CircuitOpen,
    ConfigError,
    ContractViolation,
    DefinitionError,
    Fatal,
    NonRetryable,
    StepCrashed,
    StepFailed,
    StepTimeout,
    UsageError,
)
from cairn.io.files import Files

if TYPE_CHECKING:
    from cairn.engine.run import RunResult

from cairn.version import __version__


def materialize(selection: Any = (), **options: Any) -> RunResult:
    """Run a selection of a project; see `cairn.engine.api.materialize` for the options."""
    from cairn.engine.api import materialize as run

    return run(selection, **options)


def load(name: str, partition: str | None = None, project: Any = ".") -> Any:
    """The stored value of an asset's latest materialization, checksum-verified."""
    from cairn.engine.api import load as load_value

    return load_value(name, partition, project)


__all__ = [
    "AssetDef",
    "CairnError",
    "CheckFailed",
    "CircuitOpen",
    "ConfigError",
    "Context",
    "ContractViolation",
    "DefinitionError",
    "Fatal",
    "Files",
    "NonRetryable",
    "Resources",
    "Retry",
    "StepCrashed",
    "StepFailed",
    "StepTimeout",
    "UsageError",
    "__version__",
    "asset",
    "load",
    "materialize",
    "source",
]
