"""Temporal train/validation/test splits: rows cut by a time column at increasing boundaries."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cairn.ml.frames import as_datetime, column, filter_rows, require, scalar_for, to_numpy_mask, utc


@dataclass(frozen=True, slots=True)
class Split:
    """Three frames of the same kind as the input, and the boundaries that cut them as ISO strings.

    ``ctx.add_metadata(**split.boundaries)`` records the boundaries with the materialization.
    """

    train: Any
    valid: Any
    test: Any
    boundaries: Mapping[str, str]
    time_column: str


def temporal_split(df: Any, time_column: str, *, train_end: Any, valid_end: Any, test_end: Any | None = None) -> Split:
    """Split rows by time: train ``t < train_end``, valid ``train_end ≤ t < valid_end``, test ``valid_end ≤ t``
    (and ``t < test_end`` when given).

    Boundaries are datetimes, dates or ISO strings (numbers for a numeric time column); a naive boundary of
    a zoned column is taken as UTC. Rows whose time is null are in no split.

    Args:
        df: a pandas or polars DataFrame or a pyarrow Table.
        time_column: the column holding each row's time (e.g. the prediction time).
        train_end: the first instant after the training window.
        valid_end: the first instant after the validation window.
        test_end: the first instant after the test window, or None for no upper bound.

    Raises:
        ValueError: the boundaries are not strictly increasing, or the column is missing.
        TypeError: the value is not a frame.
    """
    import pyarrow.compute as pc

    require(df, [time_column], "the frame to split")
    named = {"train_end": train_end, "valid_end": valid_end}
    if test_end is not None:
        named["test_end"] = test_end
    moments = {name: as_datetime(value) for name, value in named.items()}
    ordered = [utc(m) for m in moments.values()]
    if any(not a < b for a, b in itertools.pairwise(ordered)):
        shown = ", ".join(f"{k}={_iso(v)}" for k, v in moments.items())
        raise ValueError(f"temporal_split boundaries must be strictly increasing, got {shown}")
    times = column(df, time_column)
    cuts = [scalar_for(m, times.type) for m in moments.values()]
    before_train_end = pc.less(times, cuts[0])
    before_valid_end = pc.less(times, cuts[1])
    test_mask = pc.invert(before_valid_end)
    if len(cuts) == 3:
        test_mask = pc.and_(test_mask, pc.less(times, cuts[2]))
    return Split(
        train=filter_rows(df, to_numpy_mask(before_train_end)),
        valid=filter_rows(df, to_numpy_mask(pc.and_(pc.invert(before_train_end), before_valid_end))),
        test=filter_rows(df, to_numpy_mask(test_mask)),
        boundaries={name: _iso(m) for name, m in moments.items()},
        time_column=time_column,
    )


def _iso(moment: Any) -> str:
    return moment.isoformat() if isinstance(moment, dt.date) else str(moment)
