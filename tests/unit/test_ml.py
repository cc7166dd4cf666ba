"""cairn.ml: point-in-time joins against a brute-force reference, temporal splits and leakage checks."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.ml import (
    Split,
    features_before_prediction,
    labels_after_prediction,
    point_in_time_join,
    temporal_split,
    windows_ordered_and_disjoint,
)

KINDS = ["pandas", "polars", "arrow"]
T0 = dt.datetime(2026, 6, 1)


def frame(kind: str, table: pa.Table) -> Any:
    if kind == "pandas":
        return table.to_pandas()
    if kind == "polars":
        return pl.from_arrow(table)
    return table


def rows(value: Any) -> list[dict[str, Any]]:
    """Rows as dicts, nulls as None whatever the frame kind (pandas NaN/NaT included)."""
    if isinstance(value, pd.DataFrame):
        records = value.astype(object).where(value.notna(), None).to_dict("records")
        return [{k: (v.to_pydatetime() if isinstance(v, pd.Timestamp) else v) for k, v in r.items()} for r in records]
    if isinstance(value, pl.DataFrame):
        return value.to_dicts()
    return list(value.to_pylist())


# ---- point_in_time_join ---------------------------------------------------------------------------------


def reference_join(
    examples: list[tuple[int, int]], features: list[tuple[int, int]], max_age: int | None
) -> list[tuple[int | None, int | None]]:
    """Brute force: per example, the last-listed feature row among those of its key with the latest time ≤ t."""
    out: list[tuple[int | None, int | None]] = []
    for key, t in examples:
        best: tuple[int, int] | None = None
        for position, (f_key, f_t) in enumerate(features):
            if f_key != key or f_t > t or (max_age is not None and t - f_t > max_age):
                continue
            if best is None or f_t >= best[0]:
                best = (f_t, position)
        out.append((None, None) if best is None else best)
    return out


pairs = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 12)), max_size=25)


@given(
    examples=pairs,
    features=pairs,
    max_age=st.none() | st.integers(0, 5),
    kind=st.sampled_from(KINDS),
    feature_kind=st.sampled_from(KINDS),
)
@settings(max_examples=200, deadline=None)
def test_point_in_time_join_matches_a_brute_force_reference(
    examples: list[tuple[int, int]],
    features: list[tuple[int, int]],
    max_age: int | None,
    kind: str,
    feature_kind: str,
) -> None:
    """Random keys and times with ties and exact matches; never a future row; example order kept."""
    hour = dt.timedelta(hours=1)
    ex = pa.table(
        {
            "user": pa.array([k for k, _ in examples], pa.int64()),
            "ts": pa.array([T0 + t * hour for _, t in examples], pa.timestamp("us")),
            "row": pa.array(range(len(examples)), pa.int64()),
        }
    )
    ft = pa.table(
        {
            "user": pa.array([k for k, _ in features], pa.int64()),
            "feature_ts": pa.array([T0 + t * hour for _, t in features], pa.timestamp("us")),
            "position": pa.array(range(len(features)), pa.int64()),
        }
    )
    joined = point_in_time_join(
        frame(kind, ex),
        frame(feature_kind, ft),
        on="user",
        example_time="ts",
        feature_time="feature_ts",
        max_age=None if max_age is None else max_age * hour,
    )
    assert type(joined) is type(frame(kind, ex))
    got = rows(joined)
    assert [r["row"] for r in got] == list(range(len(examples)))
    expected = reference_join(examples, features, max_age)
    assert [r["position"] for r in got] == [position for _, position in expected]
    for r in got:
        assert r["feature_ts"] is None or r["feature_ts"] <= r["ts"]
    assert features_before_prediction(joined, "feature_ts", "ts").passed


def test_point_in_time_join_keeps_the_pandas_index_and_joins_on_several_keys() -> None:
    examples = pd.DataFrame(
        {"user": [1, 1, 2], "shop": ["a", "b", "a"], "ts": pd.to_datetime(["2026-06-03"] * 3)}, index=[30, 10, 20]
    )
    features = pd.DataFrame(
        {
            "user": [1, 1, 2],
            "shop": ["a", "b", "b"],
            "ts": pd.to_datetime(["2026-06-01", "2026-06-04", "2026-06-01"]),
            "spend": [5.0, 7.0, 9.0],
        }
    )
    joined = point_in_time_join(
        examples, features, on=["user", "shop"], example_time="ts", feature_time="ts", suffix="_f"
    )
    assert list(joined.index) == [30, 10, 20]
    assert list(joined.columns) == ["user", "shop", "ts", "ts_f", "spend_f"]
    assert joined["spend_f"].tolist()[0] == 5.0 and joined["spend_f"].isna().tolist()[1:] == [True, True]


def test_point_in_time_join_keeps_arrow_types_for_unmatched_rows() -> None:
    examples = pa.table({"k": [1, 2], "t": pa.array([T0, T0], pa.timestamp("us"))})
    features = pa.table({"k": [1], "ft": pa.array([T0], pa.timestamp("ms")), "n": pa.array([4], pa.int32())})
    joined = point_in_time_join(examples, features, on="k", example_time="t", feature_time="ft")
    assert joined.schema.field("n").type == pa.int32()
    assert joined.column("n").to_pylist() == [4, None]


def test_point_in_time_join_ignores_null_keys_and_times() -> None:
    examples = pa.table({"k": [1, None, 1], "t": pa.array([T0, T0, None], pa.timestamp("us"))})
    features = pa.table({"k": [1, None], "ft": pa.array([T0, T0], pa.timestamp("us")), "v": [1, 2]})
    joined = point_in_time_join(examples, features, on="k", example_time="t", feature_time="ft")
    assert joined.column("v").to_pylist() == [1, None, None]


def test_point_in_time_join_refuses_clashing_and_missing_columns() -> None:
    examples = pa.table({"k": [1], "t": pa.array([T0], pa.timestamp("us")), "v": [0]})
    features = pa.table({"k": [1], "t": pa.array([T0], pa.timestamp("us")), "v": [1]})
    with pytest.raises(ValueError, match=r"feature column\(s\) t, v also exist in the examples; pass suffix="):
        point_in_time_join(examples, features, on="k", example_time="t", feature_time="t")
    with pytest.raises(ValueError, match=r"features has no column\(s\) when"):
        point_in_time_join(examples, features, on="k", example_time="t", feature_time="when", suffix="_f")
    with pytest.raises(TypeError, match="expected a pandas or polars DataFrame or a pyarrow Table"):
        point_in_time_join([1], features, on="k", example_time="t", feature_time="t", suffix="_f")


# ---- temporal_split -------------------------------------------------------------------------------------


def days_table(n: int = 10) -> pa.Table:
    return pa.table(
        {
            "day": pa.array([T0 + dt.timedelta(days=i) for i in range(n)], pa.timestamp("us")),
            "y": pa.array(range(n), pa.int64()),
        }
    )


@pytest.mark.parametrize("kind", KINDS)
def test_temporal_split_cuts_rows_at_the_boundaries(kind: str) -> None:
    split = temporal_split(frame(kind, days_table()), "day", train_end="2026-06-05", valid_end=dt.date(2026, 6, 8))
    assert isinstance(split, Split)
    assert [r["y"] for r in rows(split.train)] == [0, 1, 2, 3]
    assert [r["y"] for r in rows(split.valid)] == [4, 5, 6]
    assert [r["y"] for r in rows(split.test)] == [7, 8, 9]
    assert type(split.train) is type(frame(kind, days_table()))
    assert dict(split.boundaries) == {"train_end": "2026-06-05T00:00:00", "valid_end": "2026-06-08T00:00:00"}


def test_temporal_split_bounds_the_test_window_when_asked_and_drops_null_times() -> None:
    table = pa.concat_tables([days_table(), pa.table({"day": pa.array([None], pa.timestamp("us")), "y": [99]})])
    split = temporal_split(
        table, "day", train_end=T0 + dt.timedelta(days=2), valid_end="2026-06-04", test_end="2026-06-06"
    )
    assert split.test.column("y").to_pylist() == [3, 4]
    assert 99 not in split.train.column("y").to_pylist() + split.valid.column("y").to_pylist()
    assert split.boundaries["test_end"] == "2026-06-06T00:00:00"


def test_temporal_split_takes_naive_boundaries_of_a_zoned_column_as_utc() -> None:
    zoned = pa.table(
        {"t": pa.array([dt.datetime(2026, 6, 1, h, tzinfo=dt.UTC) for h in range(4)], pa.timestamp("us", tz="UTC"))}
    )
    split = temporal_split(zoned, "t", train_end="2026-06-01T01:00", valid_end="2026-06-01T03:00+00:00")
    assert (split.train.num_rows, split.valid.num_rows, split.test.num_rows) == (1, 2, 1)


@pytest.mark.parametrize(
    ("train_end", "valid_end", "test_end"),
    [
        ("2026-06-05", "2026-06-05", None),
        ("2026-06-06", "2026-06-05", None),
        ("2026-06-01", "2026-06-05", "2026-06-02"),
    ],
)
def test_temporal_split_refuses_boundaries_that_do_not_increase(
    train_end: str, valid_end: str, test_end: str | None
) -> None:
    with pytest.raises(ValueError, match="boundaries must be strictly increasing"):
        temporal_split(days_table(), "day", train_end=train_end, valid_end=valid_end, test_end=test_end)


def test_temporal_split_names_a_missing_time_column() -> None:
    with pytest.raises(ValueError, match=r"has no column\(s\) when"):
        temporal_split(days_table(), "when", train_end="2026-06-02", valid_end="2026-06-03")


# ---- leakage checks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_features_from_after_the_prediction_are_detected(kind: str) -> None:
    table = pa.table(
        {
            "ts": pa.array([T0] * 4, pa.timestamp("us")),
            "f1_ts": pa.array([T0, T0 - dt.timedelta(hours=1), T0 + dt.timedelta(hours=1), None], pa.timestamp("us")),
            "f2_ts": pa.array([T0 + dt.timedelta(seconds=1), T0, T0, T0], pa.timestamp("ms")),
        }
    )
    one = features_before_prediction(frame(kind, table), "f1_ts", "ts")
    both = features_before_prediction(frame(kind, table), ["f1_ts", "f2_ts"], "ts")
    assert not one.passed and one.metrics == {"violations": 1.0, "rows": 4.0}
    assert "first at row 2" in one.message
    assert not both.passed and both.metrics["violations"] == 2
    assert features_before_prediction(frame(kind, table.slice(0, 2)), "f1_ts", "ts").passed


@pytest.mark.parametrize("kind", KINDS)
def test_labels_known_at_prediction_time_are_detected(kind: str) -> None:
    table = pa.table(
        {
            "ts": pa.array([T0] * 3, pa.timestamp("us")),
            "label_ts": pa.array([T0 + dt.timedelta(days=1), T0, None], pa.timestamp("us")),
        }
    )
    result = labels_after_prediction(frame(kind, table), "label_ts", "ts")
    assert not result.passed and result.metrics["violations"] == 1 and "label_ts at or before ts" in result.message
    assert labels_after_prediction(frame(kind, table.slice(0, 1)), "label_ts", "ts").passed


@pytest.mark.parametrize("kind", KINDS)
def test_a_temporal_split_has_ordered_and_disjoint_windows(kind: str) -> None:
    split = temporal_split(frame(kind, days_table()), "day", train_end="2026-06-05", valid_end="2026-06-08")
    result = windows_ordered_and_disjoint(split)
    assert result.passed and result.metrics == {"violations": 0.0}


@pytest.mark.parametrize("kind", KINDS)
def test_overlapping_frames_are_reported_with_the_overlapping_rows(kind: str) -> None:
    table = days_table()
    windows = {"test": table.slice(8), "train": table.slice(0, 6), "valid": table.slice(4, 4)}
    result = windows_ordered_and_disjoint({k: frame(kind, v) for k, v in windows.items()}, time_column="day")
    assert not result.passed and result.metrics == {"violations": 2.0}  # valid's days 4 and 5 are in train
    assert "2 valid row(s)" in result.message
    with pytest.raises(ValueError, match="pass time_column="):
        windows_ordered_and_disjoint(windows)


def test_windows_given_as_start_end_pairs_are_checked_for_order_and_overlap() -> None:
    ok = {"train": ("2026-01-01", "2026-02-01"), "valid": ("2026-02-01", "2026-03-01")}
    bad = {
        "train": ("2026-01-01", "2026-02-01"),
        "valid": ("2026-01-15", "2026-03-01"),
        "test": ("2026-04-01", "2026-03-01"),
    }
    assert windows_ordered_and_disjoint(ok).passed
    result = windows_ordered_and_disjoint(bad)
    assert not result.passed and result.metrics["violations"] == 2  # valid overlaps train; test ends before it starts
