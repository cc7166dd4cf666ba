"""Contract evaluation: every rule passes and fails on pandas, polars and pyarrow outputs, with samples."""

from __future__ import annotations

import datetime as dt
import decimal
import importlib.util
import json
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.core.contracts import Column, Contract, Freshness, RuleResult, col
from cairn.quality import contracts as quality_contracts
from cairn.quality import evaluate, evaluate_any, evaluate_pandera, to_arrow

KINDS = ["pandas", "polars", "arrow"]
T0 = dt.datetime(2026, 6, 1)


def frame(kind: str, table: pa.Table) -> Any:
    """The same rows as the output kind under test."""
    if kind == "pandas":
        return table.to_pandas()
    if kind == "polars":
        return pl.from_arrow(table)
    return table


def base_table(n: int = 10) -> pa.Table:
    """A clean table: unique ids, non-negative prices, two countries, hourly timestamps."""
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "price": pa.array([float(i) for i in range(n)], pa.float64()),
            "country": pa.array(["us" if i % 2 else "eu" for i in range(n)], pa.string()),
            "ts": pa.array([T0 + dt.timedelta(hours=i) for i in range(n)], pa.timestamp("us")),
        }
    )


def by_rule(results: list[RuleResult]) -> dict[str, RuleResult]:
    names = [r.rule for r in results]
    assert len(names) == len(set(names)), names
    return {r.rule: r for r in results}


FULL = Contract(
    columns={
        "id": col("int64", nullable=False, min=0),
        "price": col("float64", min=0, max=100, max_null_rate=0.0),
        "country": col("string", allowed=["us", "eu"], nullable=False),
        "ts": col("timestamp"),
    },
    unique=["id"],
    rows=(1, 1000),
    max_duplicate_rate=0.0,
    freshness=Freshness("ts", max_lag_hours=24),
)


@pytest.mark.parametrize("kind", KINDS)
def test_a_clean_output_passes_every_rule_with_one_result_each(kind: str) -> None:
    window = (T0, T0 + dt.timedelta(days=1))
    results = by_rule(evaluate(FULL, frame(kind, base_table()), window))
    assert list(results) == [
        "columns",
        "id.type",
        "id.nullable",
        "id.min",
        "price.type",
        "price.min",
        "price.max",
        "price.max_null_rate",
        "country.type",
        "country.nullable",
        "country.allowed",
        "ts.type",
        "unique",
        "rows",
        "duplicate_rate",
        "freshness",
    ]
    assert all(r.passed and r.blocking and not r.sample for r in results.values())
    json.dumps([[r.observed, r.expected] for r in results.values()])


def test_to_arrow_accepts_the_three_table_kinds_and_refuses_other_values() -> None:
    table = base_table()
    assert to_arrow(table) is table
    assert to_arrow(table.to_pandas()).to_pylist() == table.to_pylist()
    assert to_arrow(pl.from_arrow(table)).column_names == table.column_names
    indexed = table.to_pandas().set_index("id")
    assert "id" not in to_arrow(indexed).column_names  # the index is not a column
    with pytest.raises(TypeError, match="a contract needs a table"):
        to_arrow([1, 2, 3])


@pytest.mark.parametrize("kind", KINDS)
def test_missing_columns_fail_the_columns_rule_and_skip_their_column_rules(kind: str) -> None:
    contract = Contract({"id": col("int64"), "label": col("int64", nullable=False), "score": col()})
    results = by_rule(evaluate(contract, frame(kind, base_table())))
    assert not results["columns"].passed
    assert results["columns"].observed == "missing: label, score"
    assert "label.type" not in results and "label.nullable" not in results
    assert results["id.type"].passed


@pytest.mark.parametrize("kind", KINDS)
def test_a_wrong_type_fails_with_the_observed_arrow_type(kind: str) -> None:
    results = by_rule(evaluate(Contract({"price": col("int64"), "id": col("float64")}), frame(kind, base_table())))
    assert not results["price.type"].passed and results["price.type"].observed == "double"
    assert not results["id.type"].passed and results["id.type"].expected == "float64"


@pytest.mark.parametrize(
    ("name", "arrow_type", "value"),
    [
        ("string", pa.large_string(), "a"),
        ("string", pa.string(), "a"),
        ("timestamp", pa.timestamp("ns", tz="Europe/Paris"), T0),
        ("timestamp", pa.timestamp("s"), T0),
        ("decimal", pa.decimal128(12, 3), decimal.Decimal("1.5")),
        ("decimal", pa.decimal128(5, 0), decimal.Decimal("1")),
        ("date", pa.date32(), dt.date(2026, 1, 1)),
        ("binary", pa.large_binary(), b"x"),
        ("list", pa.large_list(pa.int64()), [1]),
        ("int32", pa.int32(), 1),
        ("float32", pa.float32(), 1.0),
        ("bool", pa.bool_(), True),
    ],
)
def test_type_names_cover_the_arrow_variants_of_a_type(name: str, arrow_type: pa.DataType, value: Any) -> None:
    table = pa.table({"x": pa.array([value], arrow_type)})
    result = by_rule(evaluate(Contract({"x": col(name)}), table))["x.type"]
    assert result.passed, result


def test_integer_widths_are_exact() -> None:
    result = by_rule(evaluate(Contract({"x": col("int64")}), pa.table({"x": pa.array([1], pa.int32())})))["x.type"]
    assert not result.passed and result.observed == "int32"


@pytest.mark.parametrize("kind", KINDS)
def test_nulls_in_a_non_nullable_column_fail_with_a_sample_of_those_rows(kind: str) -> None:
    table = base_table().set_column(2, "country", pa.array([None, "us", None, "eu", *["us"] * 6]))
    results = by_rule(evaluate(Contract({"country": col(nullable=False)}), frame(kind, table)))
    rule = results["country.nullable"]
    assert not rule.passed and rule.observed == 2 and rule.metrics["violations"] == 2
    assert [row["id"] for row in rule.sample] == [0, 2]
    assert rule.sample[0]["ts"] == "2026-06-01T00:00:00"  # timestamps as ISO strings: JSON-able
    json.dumps(rule.sample)


@pytest.mark.parametrize("kind", KINDS)
def test_values_out_of_range_fail_min_and_max_with_the_offending_rows(kind: str) -> None:
    prices = pa.array([5.0, -1.0, 3.0, 250.0, -7.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    table = base_table().set_column(1, "price", prices)
    results = by_rule(evaluate(Contract({"price": col(min=0, max=100)}), frame(kind, table)))
    low, high = results["price.min"], results["price.max"]
    assert not low.passed and low.observed == -7.0 and low.expected == ">= 0"
    assert [row["id"] for row in low.sample] == [1, 4] and low.metrics["violations"] == 2
    assert not high.passed and high.observed == 250.0 and [row["price"] for row in high.sample] == [250.0]


@pytest.mark.parametrize("kind", KINDS)
def test_bounds_are_inclusive(kind: str) -> None:
    results = by_rule(evaluate(Contract({"id": col(min=0, max=9)}), frame(kind, base_table())))
    assert results["id.min"].passed and results["id.max"].passed
    assert (results["id.min"].observed, results["id.max"].observed) == (0, 9)


def test_nan_and_nulls_are_ignored_by_the_bounds() -> None:
    table = pa.table({"x": pa.array([1.0, None, 2.0]), "y": np.array([1.0, np.nan, 2.0])})
    results = by_rule(evaluate(Contract({"x": col(min=0, max=2), "y": col(min=0, max=2)}), table))
    assert all(r.passed for r in results.values()), results
    assert results["y.max"].observed == 2.0


@pytest.mark.parametrize("kind", KINDS)
def test_a_time_column_takes_datetime_bounds(kind: str) -> None:
    contract = Contract({"ts": col("timestamp", min=T0 + dt.timedelta(hours=2), max="2026-06-01T05:00")})  # type: ignore[arg-type]
    results = by_rule(evaluate(contract, frame(kind, base_table())))
    assert not results["ts.min"].passed and results["ts.min"].observed == "2026-06-01T00:00:00"
    assert len(results["ts.min"].sample) == 2
    assert not results["ts.max"].passed and results["ts.max"].metrics["violations"] == 4


def test_a_bound_on_a_string_column_fails_with_an_explanation() -> None:
    result = by_rule(evaluate(Contract({"country": col(min=0)}), base_table()))["country.min"]
    assert not result.passed and "not a numeric or temporal column" in str(result.observed)


@pytest.mark.parametrize("kind", KINDS)
def test_values_not_allowed_fail_with_those_values_and_rows(kind: str) -> None:
    countries = pa.array(["us", "eu", "fr", "us", None, "de", "fr", "eu", "us", "eu"])
    table = base_table().set_column(2, "country", countries)
    results = by_rule(evaluate(Contract({"country": col(allowed=["us", "eu"])}), frame(kind, table)))
    rule = results["country.allowed"]
    assert not rule.passed and sorted(rule.observed) == ["de", "fr"]  # nulls are the nullable rule's business
    assert [row["id"] for row in rule.sample] == [2, 5, 6] and rule.metrics["violations"] == 3
    assert rule.expected == ["us", "eu"]


def test_allowed_values_work_on_categorical_and_integer_columns() -> None:
    categories = pd.DataFrame({"c": pd.Categorical(["a", "b", "a"]), "n": [1, 2, 3]})
    results = by_rule(evaluate(Contract({"c": col(allowed=["a", "b"]), "n": col(allowed=[1, 2])}), categories))
    assert results["c.allowed"].passed
    assert not results["n.allowed"].passed and results["n.allowed"].observed == [3]


def test_allowed_values_of_another_type_are_compared_as_python_values() -> None:
    result = by_rule(evaluate(Contract({"n": col(allowed=["1", 2])}), pa.table({"n": [1, 2]})))["n.allowed"]
    assert not result.passed and result.observed == [1]


@pytest.mark.parametrize("kind", KINDS)
def test_the_null_rate_is_compared_with_its_maximum(kind: str) -> None:
    table = base_table().set_column(1, "price", pa.array([None, None, None, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]))
    ok = by_rule(evaluate(Contract({"price": col(max_null_rate=0.3)}), frame(kind, table)))["price.max_null_rate"]
    bad = by_rule(evaluate(Contract({"price": col(max_null_rate=0.2)}), frame(kind, table)))["price.max_null_rate"]
    assert ok.passed and ok.observed == 0.3
    assert not bad.passed and bad.expected == "<= 0.2"


@pytest.mark.parametrize("kind", KINDS)
def test_duplicate_keys_fail_unique_with_the_duplicated_rows(kind: str) -> None:
    table = base_table().set_column(0, "id", pa.array([0, 1, 2, 1, 4, 5, 1, 7, 2, 9]))
    results = by_rule(evaluate(Contract(unique=["id"]), frame(kind, table)))
    rule = results["unique"]
    assert not rule.passed and rule.observed == 3  # rows repeating an earlier key
    assert sorted(row["id"] for row in rule.sample) == [1, 1, 1, 2, 2]


@pytest.mark.parametrize("kind", KINDS)
def test_unique_applies_to_the_combination_of_columns(kind: str) -> None:
    table = pa.table({"user": [1, 1, 2, 2], "day": ["a", "b", "a", "a"], "v": [1, 2, 3, 4]})
    rule = by_rule(evaluate(Contract(unique=["user", "day"]), frame(kind, table)))["unique"]
    assert not rule.passed and rule.observed == 1
    assert sorted(row["v"] for row in rule.sample) == [3, 4]
    assert by_rule(evaluate(Contract(unique=["user", "v"]), frame(kind, table)))["unique"].passed


def test_unique_on_a_missing_column_fails_and_names_it() -> None:
    rule = by_rule(evaluate(Contract(unique=["nope"]), base_table()))["unique"]
    assert not rule.passed and rule.observed == "missing column(s): nope"


@given(values=st.lists(st.integers(-(2**40), 2**40) | st.integers(0, 30), max_size=60))
@settings(max_examples=80, deadline=None)
def test_the_fast_uniqueness_paths_agree_with_a_hash_group_by(values: list[int]) -> None:
    """Sorted, bitmap and sort paths count the same duplicates as Python does."""
    for column in (pa.chunked_array([values], pa.int64()), pa.chunked_array([values[:3], values[3:]], pa.int64())):
        assert quality_contracts._fast_duplicates(column) == len(values) - len(set(values))
    floats = pa.chunked_array([[float(v) for v in values]], pa.float64())
    assert quality_contracts._fast_duplicates(floats) == len(values) - len(set(values))


@pytest.mark.parametrize(
    ("values", "arrow_type"),
    [
        ([-128, 127, 0, 127], pa.int8()),
        ([2**64 - 1, 2**64 - 2, 2**64 - 1], pa.uint64()),
        ([2**62, 2**62 + 1, 2**62 + 1], pa.int64()),
        ([5, 4, 3, 3], pa.int16()),
    ],
)
def test_the_bitmap_path_copes_with_narrow_and_extreme_integers(values: list[int], arrow_type: pa.DataType) -> None:
    assert quality_contracts._fast_duplicates(pa.chunked_array([values], arrow_type)) == 1


@pytest.mark.parametrize(
    ("chunks", "duplicates"),
    [
        ([list(range(0, 2000)), list(range(2000, 2100))], 0),
        ([list(range(5000, 3000, -1)), [10, 3]], 0),
        ([list(range(0, 2000)), [1999, 2500]], 1),  # each chunk sorted, not across them
        ([[0, 2**50], [3, 2**50]], 1),  # a range too wide for the bitmap: sorted
    ],
)
def test_uniqueness_across_chunks(chunks: list[list[int]], duplicates: int) -> None:
    assert quality_contracts._fast_duplicates(pa.chunked_array(chunks, pa.int64())) == duplicates


def test_unique_with_nulls_or_strings_uses_the_group_by() -> None:
    table = pa.table({"id": [1, None, None, 2], "s": ["a", "b", "a", "c"]})
    assert by_rule(evaluate(Contract(unique=["id"]), table))["unique"].observed == 1  # nulls count as one key
    assert by_rule(evaluate(Contract(unique=["s"]), table))["unique"].observed == 1


@pytest.mark.parametrize("kind", KINDS)
def test_the_row_count_must_be_within_its_bounds(kind: str) -> None:
    table = frame(kind, base_table())
    assert by_rule(evaluate(Contract(rows=(10, 10)), table))["rows"].passed
    low = by_rule(evaluate(Contract(rows=(11, None)), table))["rows"]
    high = by_rule(evaluate(Contract(rows=(None, 9)), table))["rows"]
    assert not low.passed and low.observed == 10 and low.expected == [11, None]
    assert not high.passed


@pytest.mark.parametrize("kind", KINDS)
def test_the_share_of_fully_duplicated_rows_is_bounded(kind: str) -> None:
    table = pa.table({"a": [1, 1, 1, 2, 3], "b": ["x", "x", "x", "y", "y"]})
    ok = by_rule(evaluate(Contract(max_duplicate_rate=0.4), frame(kind, table)))["duplicate_rate"]
    bad = by_rule(evaluate(Contract(max_duplicate_rate=0.1), frame(kind, table)))["duplicate_rate"]
    assert ok.passed and ok.observed == 0.4
    assert not bad.passed and bad.sample == ({"a": 1, "b": "x", "count_all": 3},)


def test_a_unique_key_that_holds_proves_there_are_no_duplicated_rows() -> None:
    result = by_rule(evaluate(Contract(unique=["id"], max_duplicate_rate=0.0), base_table()))["duplicate_rate"]
    assert result.passed and result.observed == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_freshness_compares_the_newest_time_with_the_end_of_the_partition(kind: str) -> None:
    table = frame(kind, base_table())  # newest ts: 2026-06-01T09:00
    end = T0 + dt.timedelta(days=1)
    fresh = by_rule(evaluate(Contract(freshness=Freshness("ts", 15)), table, (T0, end)))["freshness"]
    stale = by_rule(evaluate(Contract(freshness=Freshness("ts", 14)), table, (T0, end)))["freshness"]
    assert fresh.passed and fresh.observed == "2026-06-01T09:00:00+00:00"
    assert not stale.passed and stale.expected == ">= 2026-06-01T10:00:00+00:00"


def test_freshness_is_skipped_without_a_partition_window() -> None:
    (result,) = evaluate(Contract(freshness=Freshness("ts", 1)), base_table())
    assert result.passed and result.observed == "no partition window"


def test_freshness_compares_zoned_times_as_instants() -> None:
    noon = dt.datetime(2026, 6, 1, 12, tzinfo=ZoneInfo("Europe/Paris"))
    paris = pa.table({"ts": pa.array([noon], pa.timestamp("us", tz="Europe/Paris"))})
    window_end = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)  # 12:00 in Paris is 10:00 UTC
    assert not evaluate(Contract(freshness=Freshness("ts", 1.5)), paris, (T0, window_end))[0].passed
    assert evaluate(Contract(freshness=Freshness("ts", 2)), paris, (T0, window_end))[0].passed


def test_freshness_fails_on_a_missing_empty_or_non_time_column() -> None:
    window = (T0, T0 + dt.timedelta(days=1))
    empty = base_table().slice(0, 0)
    assert (
        evaluate(Contract(freshness=Freshness("nope", 1)), base_table(), window)[0].observed == "missing column: nope"
    )
    assert evaluate(Contract(freshness=Freshness("ts", 1)), empty, window)[0].observed == "no values"
    assert "not a time column" in evaluate(Contract(freshness=Freshness("id", 1)), base_table(), window)[0].observed


@pytest.mark.parametrize("kind", KINDS)
def test_rules_listed_in_warn_are_not_blocking(kind: str) -> None:
    contract = Contract({"price": col(min=100)}, rows=(100, None), warn=["rows", "price.min"])
    results = by_rule(evaluate(contract, frame(kind, base_table())))
    assert not results["rows"].passed and not results["rows"].blocking
    assert not results["price.min"].passed and not results["price.min"].blocking


def test_samples_hold_at_most_five_json_able_rows() -> None:
    table = pa.table(
        {
            "x": pa.array([-1] * 20),
            "when": pa.array([dt.date(2026, 1, 1)] * 20),
            "amount": pa.array([decimal.Decimal("1.25")] * 20, pa.decimal128(5, 2)),
            "raw": pa.array([b"\x00\x01"] * 20),
        }
    )
    result = by_rule(evaluate(Contract({"x": col(min=0)}), table))["x.min"]
    assert len(result.sample) == 5 and result.metrics["violations"] == 20
    assert result.sample[0] == {"x": -1, "when": "2026-01-01", "amount": "1.25", "raw": "0001"}
    json.dumps(result.sample)
    assert "sample of offending rows" in result.describe()


def test_large_tables_give_the_same_results_on_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    table = base_table(50).set_column(1, "price", pa.array([-1.0] * 50))
    sequential = evaluate(FULL, table)
    monkeypatch.setattr(quality_contracts, "PARALLEL_ROWS", 10)
    assert evaluate(FULL, table) == sequential


def test_evaluate_any_dispatches_on_the_kind_of_contract() -> None:
    assert evaluate_any(Contract(rows=(1, None)), base_table())[0].rule == "rows"
    with pytest.raises(TypeError, match="takes a cairn Contract or a pandera DataFrameSchema"):
        evaluate_any({"id": "int64"}, base_table())


def test_column_rules_are_values() -> None:
    assert col("int64", allowed=[1, 2]) == Column("int64", allowed=(1, 2))


# ---- pandera --------------------------------------------------------------------------------------------

needs_pandera = pytest.mark.skipif(importlib.util.find_spec("pandera") is None, reason="pandera is not installed")


@needs_pandera
@pytest.mark.parametrize("kind", KINDS)
def test_a_pandera_schema_that_holds_gives_one_passed_result(kind: str) -> None:
    import pandera.pandas as pda

    schema = pda.DataFrameSchema({"id": pda.Column(int, pda.Check.ge(0)), "country": pda.Column(str)})
    results = evaluate_any(schema, frame(kind, base_table()))
    assert [(r.rule, r.passed, r.blocking) for r in results] == [("pandera", True, True)]


@needs_pandera
@pytest.mark.parametrize("kind", KINDS)
def test_each_failed_pandera_check_is_a_blocking_result_with_failure_cases(kind: str) -> None:
    import pandera.pandas as pda

    schema = pda.DataFrameSchema(
        {
            "id": pda.Column(int, pda.Check.le(5)),
            "country": pda.Column(str, pda.Check.isin(["us"])),
            "missing": pda.Column(float),
        }
    )
    results = by_rule(evaluate_pandera(schema, frame(kind, base_table())))
    assert set(results) == {
        "pandera.id.less_than_or_equal_to(5)",
        "pandera.country.isin(['us'])",
        "pandera.column_in_dataframe",
    }
    too_big = results["pandera.id.less_than_or_equal_to(5)"]
    assert not too_big.passed and too_big.blocking and too_big.observed == 4
    assert [case["failure_case"] for case in too_big.sample] == [6, 7, 8, 9]
    assert results["pandera.column_in_dataframe"].sample == ({"index": None, "failure_case": "missing"},)
    json.dumps([r.sample for r in results.values()])


@needs_pandera
def test_a_polars_pandera_schema_gets_a_polars_frame() -> None:
    import pandera.polars as ppl

    schema = ppl.DataFrameSchema({"id": ppl.Column(pl.Int64, ppl.Check.lt(3))})
    results = evaluate_any(schema, base_table())
    assert [r.rule for r in results] == ["pandera.id.less_than(3)"] and results[0].observed == 7
