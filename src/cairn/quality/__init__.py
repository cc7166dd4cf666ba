"""Evaluation of data contracts, pandera schemas, drift and custom checks on an asset's output.

Everything here works on values (a table in, `RuleResult` values out); the engine decides what a failure means.
pyarrow, pandas, polars, numpy and pandera are imported inside the functions that use them (start-up budget).
"""

from __future__ import annotations

from cairn.quality.arrow import to_arrow
from cairn.quality.checks import run_check
from cairn.quality.contracts import evaluate, evaluate_any, evaluate_pandera
from cairn.quality.drift import evaluate_drift, psi

__all__ = ["evaluate", "evaluate_any", "evaluate_drift", "evaluate_pandera", "psi", "run_check", "to_arrow"]
