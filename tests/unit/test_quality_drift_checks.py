"""Drift (PSI) against its reference (previous partition or materialization, snapshot, trailing window),
and `@check` functions run into `RuleResult`s."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from cairn.core.asset import AssetDef, asset
from cairn.core.contracts import CheckDef, CheckResult, Drift, Snapshot, Trailing, check, drift_check
from cairn.core.keys import StepId
from cairn.core.partitions import daily, product, static
from cairn.core.records import Materialization
from cairn.engine.baselines import keys_before, reference_steps, resolve
from cairn.errors import DefinitionError, UsageError
from cairn.quality import evaluate_drift, psi, run_check
from cairn.quality.drift import Reference

RNG = np.random.default_rng(7)
NORMAL = RNG.normal(0, 1, 5000)


class Context:
    """Stands in for cairn's Context: only the annotation's name matters to `run_check`."""

    partition = "2026-06-01"


# ---- psi ------------------------------------------------------------------------------------------------


def test_psi_of_a_sample_against_itself_is_zero() -> None:
    assert psi(NORMAL, NORMAL) == pytest.approx(0.0, abs=1e-12)


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift() -> None:
    same = RNG.normal(0, 1, 5000)
    shifted = RNG.normal(1, 1, 5000)
    assert psi(NORMAL, same) < 0.05
    assert psi(NORMAL, shifted) > 0.25


def test_psi_accepts_lists_arrays_and_series_alike() -> None:
    reference = psi(NORMAL, NORMAL + 0.5)
    for convert in (list, pa.array, pd.Series, pl.Series, lambda a: pa.chunked_array([a])):
        assert psi(convert(NORMAL), convert(NORMAL + 0.5)) == pytest.approx(reference)


def test_psi_drops_nulls_and_nan() -> None:
    with_gaps = [*NORMAL.tolist(), None, float("nan")]
    assert psi(pa.array(with_gaps), NORMAL) == pytest.approx(0.0, abs=1e-12)
    assert psi(pd.Series(with_gaps, dtype="float64"), NORMAL) == pytest.approx(0.0, abs=1e-12)


def test_psi_compares_categories_for_strings() -> None:
    before = ["us"] * 50 + ["eu"] * 50
    assert psi(before, ["eu"] * 50 + ["us"] * 50) == pytest.approx(0.0)
    moved = psi(before, ["us"] * 90 + ["eu"] * 10)
    expected = (0.9 - 0.5) * np.log(0.9 / 0.5) + (0.1 - 0.5) * np.log(0.1 / 0.5)
    assert moved == pytest.approx(expected)
    assert psi(before, ["fr"] * 100) > 5  # a new category: empty bins get epsilon, not infinity


def test_psi_of_a_constant_sample_uses_one_bin() -> None:
    assert psi([1.0] * 10, [1.0] * 5) == pytest.approx(0.0)
    assert psi([1.0] * 10, [2.0] * 10) > 1


def test_psi_refuses_empty_samples_and_zero_bins() -> None:
    with pytest.raises(ValueError, match="non-empty samples"):
        psi([], [1.0])
    with pytest.raises(ValueError, match="at least one bin"):
        psi([1.0], [1.0], bins=0)


# ---- evaluate_drift -------------------------------------------------------------------------------------


def test_drift_passes_without_a_previous_materialization() -> None:
    result = evaluate_drift(Drift("x"), pd.DataFrame({"x": NORMAL}), None)
    assert result.rule == "drift_x" and result.passed and result.observed == "no previous materialization"
    assert not result.blocking


def test_drift_compares_the_column_with_the_previous_output() -> None:
    previous = pa.table({"x": NORMAL})
    same = evaluate_drift(Drift("x", max_psi=0.1), pl.DataFrame({"x": NORMAL}), previous)
    moved = evaluate_drift(Drift("x", max_psi=0.1, blocking=True), pd.DataFrame({"x": NORMAL + 2}), previous)
    assert same.passed and same.observed == 0.0
    assert not moved.passed and moved.blocking and moved.expected == "psi <= 0.1"
    assert moved.observed == round(moved.metrics["psi"], 4) and moved.observed > 0.1


def test_drift_fails_when_the_column_is_missing_or_empty() -> None:
    missing = evaluate_drift(Drift("x"), pa.table({"y": [1.0]}), pa.table({"x": [1.0]}))
    assert not missing.passed and missing.observed == "column missing from the output table"
    empty = evaluate_drift(Drift("x"), pa.table({"x": pa.array([], pa.float64())}), pa.table({"x": [1.0]}))
    assert not empty.passed and "cannot compute PSI" in str(empty.observed)


# ---- run_check ------------------------------------------------------------------------------------------


def run(fn: Any, value: Any = 3, ctx: Any = None, blocking: bool = True) -> Any:
    return run_check(check("asset", blocking=blocking)(fn), value, ctx)


def test_a_bool_result_passes_or_fails_the_check_named_after_its_function() -> None:
    def positive(x: int) -> bool:
        return x > 0

    ok, bad = run(positive), run(positive, value=-1, blocking=False)
    assert (ok.rule, ok.passed, ok.blocking) == ("positive", True, True)
    assert (bad.passed, bad.blocking, bad.observed) == (False, False, "failed")


def test_a_numpy_bool_counts_as_a_bool() -> None:
    assert run(lambda x: np.int64(x) > 0).passed


def test_a_check_result_gives_its_metrics_and_message() -> None:
    def share(x: int) -> CheckResult:
        return CheckResult(False, {"share": 0.25, "rows": 4}, "a quarter of the rows are late")

    result = run(share)
    assert not result.passed
    assert result.metrics == {"share": 0.25, "rows": 4.0}
    assert result.observed == "a quarter of the rows are late"


def test_an_exception_in_the_check_is_a_failure_that_shows_it() -> None:
    def broken(x: int) -> bool:
        raise KeyError("price")

    result = run(broken)
    assert not result.passed and result.observed == "KeyError: 'price'"


def test_a_check_returning_something_else_fails_and_says_what_to_return() -> None:
    result = run(lambda x: "yes")
    assert not result.passed and "return a bool or a CheckResult" in result.observed


def test_the_context_goes_to_the_parameter_that_asks_for_it() -> None:
    ctx = Context()
    seen: list[tuple[Any, Any]] = []

    def ctx_first(ctx: Any, df: Any) -> bool:
        seen.append((ctx, df))
        return True

    def context_second(df: Any, context: Any) -> bool:
        seen.append((context, df))
        return True

    def annotated(c: Context, df: Any) -> bool:
        seen.append((c, df))
        return True

    def plain(df: Any, other: Any) -> bool:
        seen.append((other, df))
        return True

    for fn in (ctx_first, context_second, annotated, plain):
        assert run(fn, value="out", ctx=ctx).passed
    assert seen == [(ctx, "out")] * 4


def test_a_drift_check_compares_with_the_previous_value_under_the_checks_name() -> None:
    definition = drift_check("features", Drift("x", max_psi=0.1), name="x_stable")
    current, previous = pa.table({"x": NORMAL + 3}), pa.table({"x": NORMAL})
    result = run_check(definition, current, None, previous)
    assert (result.rule, result.passed, result.blocking) == ("x_stable", False, False)
    assert run_check(definition, current, None, None).passed


def test_a_blocking_flag_comes_from_the_check_definition() -> None:
    definition = CheckDef("always", "asset", lambda v: False, blocking=False)
    assert not run_check(definition, 1, None).blocking


# ---- drift references -----------------------------------------------------------------------------------


def test_a_drift_reference_is_given_as_a_value_or_a_string_and_defaults_to_the_previous_partition() -> None:
    assert Drift("x").reference == "previous_partition"
    assert Drift("x", reference="previous").reference == "previous"
    assert Drift("x", reference="snapshot:baseline").reference == Snapshot("baseline")
    assert Drift("x", reference="trailing:7").reference == Trailing(7)
    assert Drift("x", reference=Trailing(3)).reference == Trailing(3)
    for wrong in ("yesterday", "trailing:x", "snapshot:"):
        with pytest.raises(DefinitionError, match="is not a drift reference; use one of previous_partition"):
            Drift("x", reference=wrong)
    with pytest.raises(DefinitionError, match="at least 1"):
        Trailing(0)


def test_drift_pools_the_tables_of_its_reference_and_says_which_it_used() -> None:
    halves = Reference(
        "trailing:2: f@a … f@b (2 materializations)", (pa.table({"x": NORMAL[:2500]}), pa.table({"x": NORMAL[2500:]}))
    )
    same = evaluate_drift(Drift("x", max_psi=0.1), pa.table({"x": NORMAL}), halves)
    assert same.passed and same.observed == 0.0 and same.reference.startswith("trailing:2")
    moved = evaluate_drift(Drift("x", max_psi=0.1, blocking=True), pa.table({"x": NORMAL + 2}), halves)
    assert not moved.passed and "against trailing:2" in moved.describe()


def test_drift_without_a_reference_passes_and_says_why_and_an_unusable_one_fails() -> None:
    first = evaluate_drift(
        Drift("x"), pa.table({"x": NORMAL}), Reference("previous_partition", missing="d1 is the first partition")
    )
    assert first.passed and first.observed == "nothing to compare with: d1 is the first partition"
    broken = evaluate_drift(
        Drift("x", blocking=True), pa.table({"x": NORMAL}), Reference("snapshot:s", error="no snapshot")
    )
    assert not broken.passed and broken.blocking and broken.observed == "no snapshot"


DAYS = daily("2026-06-01")
KEYS = ["2026-06-01", "2026-06-02", "2026-06-03", "2026-06-04"]


def drifting(partitions: Any, *references: Any) -> AssetDef:
    def f() -> None:
        return None

    checks = tuple(drift_check("f", Drift("x", reference=r), name=f"drift_{i}") for i, r in enumerate(references))
    return dataclasses.replace(asset(partitions=partitions)(f), checks=checks)


def mat(partition: str, version: str) -> Materialization:
    return Materialization("f", partition, "k", version, 1, "parquet", "arrow", "r", 1, "c")


def test_the_previous_partition_is_the_one_before_along_time_with_the_same_static_key() -> None:
    assert keys_before(drifting(DAYS), KEYS, "2026-06-03", 1) == ["2026-06-02"]
    assert keys_before(drifting(DAYS), KEYS, "2026-06-03", 7) == ["2026-06-01", "2026-06-02"]
    assert keys_before(drifting(DAYS), KEYS, "2026-06-01", 1) == []
    both = product(DAYS, static("us", "eu"))
    keys = both.keys(datetime(2026, 6, 4, tzinfo=UTC))
    assert keys_before(drifting(both), keys, "2026-06-03|eu", 2) == ["2026-06-01|eu", "2026-06-02|eu"]
    assert keys_before(drifting(static("us", "eu")), ["us", "eu"], "eu", 1) is None
    assert keys_before(drifting(None), [""], "", 1) is None


def test_each_drift_check_gets_the_materializations_of_its_own_reference() -> None:
    stored = {StepId("f", k): mat(k, f"b3:{k}") for k in KEYS}
    definition = drifting(DAYS, "previous_partition", "previous", "trailing:2", "snapshot:base", "snapshot:none")
    snapshots = {"base": {("f", "2026-06-01"): stored[StepId("f", "2026-06-01")]}}

    def pinned(name: str) -> dict[tuple[str, str], Materialization]:
        if name not in snapshots:
            raise UsageError(f"snapshot '{name}' does not exist")
        return snapshots[name]

    step = StepId("f", "2026-06-03")
    found = resolve(definition, step, KEYS, stored.get, lambda m: True, pinned)
    assert [b.check for b in found] == [f"drift_{i}" for i in range(5)]
    assert [[s.data_version for s in b.stored] for b in found] == [
        ["b3:2026-06-02"],
        ["b3:2026-06-03"],
        ["b3:2026-06-01", "b3:2026-06-02"],
        ["b3:2026-06-01"],
        [],
    ]
    assert found[0].label == "previous_partition: f@2026-06-02 (b3:2026-06-02)"
    assert found[2].label == "trailing:2: f@2026-06-01 … f@2026-06-02 (2 materializations)"
    assert found[4].error == "snapshot 'none' does not exist"
    first = resolve(definition, StepId("f", "2026-06-01"), KEYS, stored.get, lambda m: True, pinned)
    assert first[0].missing == "2026-06-01 is the first partition" and not first[0].stored
    assert reference_steps(definition, KEYS, step) == [StepId("f", "2026-06-01"), StepId("f", "2026-06-02")]
