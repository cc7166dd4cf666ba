"""Distribution drift of one column against a reference (the previous partition, the previous materialization,
a snapshot's version or a trailing window of partitions): the population stability index."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from cairn.core.contracts import Drift, RuleResult
from cairn.quality.arrow import to_arrow

# Share given to an empty bin, so that the logarithm stays finite (the usual choice in credit-scoring PSI).
EPSILON: Final = 1e-4


def psi(expected: Any, actual: Any, bins: int = 10) -> float:
    """Population stability index of `actual` against `expected`: ``Σ (a - e) · ln(a / e)`` over bins.

    Numeric samples are binned on the quantiles of `expected` (at most `bins` bins, fewer when quantiles
    coincide); strings, booleans and categories are compared category by category. Nulls and NaN are
    dropped. Empty bins get a share of `EPSILON`. Rule of thumb: < 0.1 stable, 0.1 to 0.25 a shift, > 0.25 drift.

    Args:
        expected: the reference sample (a list, numpy array, pandas or polars Series, or pyarrow array).
        actual: the sample to compare.
        bins: the number of quantile bins for numeric samples.

    Raises:
        ValueError: a sample is empty, or ``bins < 1``.
    """
    import numpy as np

    if bins < 1:
        raise ValueError(f"psi(bins={bins}): needs at least one bin")
    e, a = _values(expected), _values(actual)
    if not len(e) or not len(a):
        raise ValueError(f"psi needs two non-empty samples, got {len(e)} expected and {len(a)} actual values")
    if e.dtype.kind in "fiu" and a.dtype.kind in "fiu":
        inner = np.unique(np.quantile(e.astype(np.float64), np.linspace(0, 1, bins + 1)[1:-1]))
        e_counts = np.bincount(np.searchsorted(inner, e, side="left"), minlength=len(inner) + 1)
        a_counts = np.bincount(np.searchsorted(inner, a, side="left"), minlength=len(inner) + 1)
    else:
        categories, codes = np.unique(np.concatenate([e.astype(str), a.astype(str)]), return_inverse=True)
        e_counts = np.bincount(codes[: len(e)], minlength=len(categories))
        a_counts = np.bincount(codes[len(e) :], minlength=len(categories))
    e_share = np.maximum(e_counts / len(e), EPSILON)
    a_share = np.maximum(a_counts / len(a), EPSILON)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


@dataclass(frozen=True, slots=True)
class Reference:
    """The resolved reference of a drift check: what it is, and its tables (several are pooled).

    No tables and no `error` means there is nothing to compare with (`missing` says why), which passes; an
    `error` (a snapshot that does not exist or pins nothing of the asset) fails the check.
    """

    label: str
    tables: tuple[Any, ...] = ()
    missing: str = ""
    error: str = ""


def evaluate_drift(drift: Drift, value: Any, previous: Any) -> RuleResult:
    """Compare `drift.column` of an output table with the same column of a reference.

    Args:
        drift: the rule.
        value: the output.
        previous: a `Reference` (the tables of which are pooled), one reference table, or None.

    Returns:
        A `RuleResult` named ``drift_<column>``: passed when there is nothing to compare with or when the
        PSI is at most `drift.max_psi`; observed is the PSI rounded to 4 digits, reference which reference
        was used.
    """
    rule = f"drift_{drift.column}"
    expected = f"psi <= {drift.max_psi}"
    reference = previous if isinstance(previous, Reference) else None
    label = reference.label if reference is not None else ""
    if reference is not None and reference.error:
        return RuleResult(rule, False, drift.blocking, reference.error, expected, reference=label)
    tables = reference.tables if reference is not None else (() if previous is None else (previous,))
    if not tables:
        why = f"nothing to compare with: {reference.missing}" if reference and reference.missing else ""
        return RuleResult(rule, True, drift.blocking, why or "no previous materialization", expected, reference=label)
    pooled = []
    for table in tables:
        arrow = to_arrow(table)
        if drift.column not in arrow.column_names:
            observed = "column missing from the reference table"
            return RuleResult(rule, False, drift.blocking, observed, expected, reference=label)
        pooled.append(_values(arrow.column(drift.column)))
    output = to_arrow(value)
    if drift.column not in output.column_names:
        observed = "column missing from the output table"
        return RuleResult(rule, False, drift.blocking, observed, expected, reference=label)
    try:
        index = psi(_pool(pooled), output.column(drift.column), drift.bins)
    except ValueError as exc:
        return RuleResult(rule, False, drift.blocking, f"cannot compute PSI: {exc}", expected, reference=label)
    passed = index <= drift.max_psi
    return RuleResult(rule, passed, drift.blocking, round(index, 4), expected, metrics={"psi": index}, reference=label)


def _pool(samples: list[Any]) -> Any:
    """Several reference samples as one (numeric and string samples mixed compare as strings)."""
    import numpy as np

    if len(samples) == 1:
        return samples[0]
    if all(s.dtype.kind in "fiu" for s in samples):
        return np.concatenate([s.astype(np.float64) for s in samples])
    return np.concatenate([s.astype(str) for s in samples])


def _values(sample: Any) -> Any:
    """A sample as a numpy array without nulls or NaN (categorical values decoded)."""
    import numpy as np

    module = type(sample).__module__.split(".")[0]
    if module == "pyarrow":
        import pyarrow.compute as pc
        import pyarrow.types as pat

        if pat.is_dictionary(sample.type):
            sample = sample.cast(sample.type.value_type)
        array = pc.drop_null(sample).to_numpy(zero_copy_only=False)
    elif module in ("pandas", "polars"):
        array = np.asarray(sample.drop_nulls().to_numpy() if module == "polars" else sample.dropna().to_numpy())
    else:
        array = np.asarray(list(sample) if not hasattr(sample, "__array__") else sample)
    if array.dtype.kind == "f":
        return array[~np.isnan(array)]
    if array.dtype.kind == "O":
        kept = [v for v in array if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return np.asarray(kept) if kept else np.asarray([], dtype=np.float64)
    return array
