"""Point-in-time joins: each example gets the feature values that were known at its prediction time."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cairn.ml.frames import columns_of, frame_kind, require, to_arrow

_ROW, _POS, _TIME = "__cairn_row", "__cairn_pos", "__cairn_time"


def point_in_time_join(
    examples: Any,
    features: Any,
    *,
    on: str | list[str],
    example_time: str,
    feature_time: str,
    suffix: str = "",
    max_age: dt.timedelta | None = None,
) -> Any:
    """Join to each example the latest feature row of the same key stamped at or before the example's time.

    A feature row stamped after the example's time is never used (no leakage from the future). Examples
    without such a row (or only one older than `max_age`) get nulls. Examples keep their order and, for
    pandas, their index. When several feature rows of a key share the latest time, the one that comes last
    in `features` wins. Rows with a null key or time match nothing.

    Args:
        examples: the rows to enrich (pandas, polars or pyarrow); the result is of the same kind.
        features: the feature rows, with the key columns and `feature_time`.
        on: the key column(s), present in both.
        example_time: the examples' prediction-time column.
        feature_time: the features' time column (kept in the result, so leakage can be checked afterwards).
        suffix: appended to the name of every joined feature column.
        max_age: the oldest a matched feature row may be, relative to the example's time.

    Raises:
        ValueError: a column is missing, or a joined column name would clash with an example column.
        TypeError: an input is not a frame.
    """
    keys = [on] if isinstance(on, str) else list(on)
    kind = frame_kind(examples)
    require(examples, [*keys, example_time], "examples")
    require(features, [*keys, feature_time], "features")
    joined = [c for c in columns_of(features) if c not in keys]
    clash = [c + suffix for c in joined if c + suffix in columns_of(examples)]
    if clash:
        raise ValueError(
            f"point_in_time_join: feature column(s) {', '.join(clash)} also exist in the examples; "
            f"pass suffix= (e.g. suffix='_feature') or rename them"
        )
    positions = _match_positions(examples, features, keys, example_time, feature_time, max_age)
    if kind == "pandas":
        return _join_pandas(examples, features, joined, suffix, positions)
    import pyarrow as pa

    table = to_arrow(examples)
    taken = to_arrow(features).select(joined).take(pa.array(positions, mask=positions < 0))
    for name in joined:
        table = table.append_column(name + suffix, taken.column(name))
    if kind == "polars":
        import polars as pl

        return pl.from_arrow(table)
    return table


def _match_positions(
    examples: Any, features: Any, keys: list[str], example_time: str, feature_time: str, max_age: Any
) -> Any:
    """For each example row, the position of its matching feature row, or -1 (computed with merge_asof)."""
    import numpy as np
    import pandas as pd

    left = _narrow(examples, keys, example_time)
    right = _narrow(features, keys, feature_time)
    left[_ROW] = np.arange(len(left))
    right[_POS] = np.arange(len(right))
    left = left.dropna(subset=[*keys, _TIME])
    right = right.dropna(subset=[*keys, _TIME])
    for name in [*keys, _TIME]:
        if left[name].dtype != right[name].dtype:
            try:
                right[name] = right[name].astype(left[name].dtype)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"point_in_time_join: column {name if name != _TIME else 'time'} has type {left[name].dtype} "
                    f"in the examples and {right[name].dtype} in the features: {exc}"
                ) from exc
    merged = pd.merge_asof(
        left.sort_values(_TIME, kind="stable"),
        right.sort_values(_TIME, kind="stable"),
        on=_TIME,
        by=keys,
        direction="backward",
        allow_exact_matches=True,
        tolerance=pd.Timedelta(max_age) if isinstance(max_age, dt.timedelta) else max_age,
    )
    positions = np.full(len(examples), -1, dtype=np.int64)
    positions[merged[_ROW].to_numpy()] = merged[_POS].fillna(-1).to_numpy().astype(np.int64)
    return positions


def _narrow(frame: Any, keys: list[str], time: str) -> Any:
    """The key and time columns of a frame as a new pandas DataFrame, the time column renamed."""
    if frame_kind(frame) == "pandas":
        narrow = frame[[*keys, time]].reset_index(drop=True)
    else:
        narrow = to_arrow(frame).select([*keys, time]).to_pandas()
    return narrow.rename(columns={time: _TIME})


def _join_pandas(examples: Any, features: Any, joined: list[str], suffix: str, positions: Any) -> Any:
    import pandas as pd

    frame = features if frame_kind(features) == "pandas" else to_arrow(features).to_pandas()
    # Reindexing a RangeIndex with -1 gives an all-null row: the examples without a match.
    taken = frame[joined].reset_index(drop=True).reindex(positions)
    taken.columns = [name + suffix for name in joined]
    result = pd.concat([examples.reset_index(drop=True), taken.reset_index(drop=True)], axis=1)
    return result.set_axis(examples.index, axis=0)
