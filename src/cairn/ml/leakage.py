"""Leakage checks for training data: features known before the prediction, labels after it, and train,
validation and test windows in order. Each returns a `CheckResult`, so it can serve as a ``@check``."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from cairn.core.contracts import CheckResult
from cairn.ml.frames import as_datetime, column, frame_kind, require, utc
from cairn.ml.splits import Split

_ORDER = ("train", "valid", "test")


def features_before_prediction(df: Any, feature_time: str | Sequence[str], prediction_time: str) -> CheckResult:
    """Every feature timestamp is at or before its row's prediction time (null timestamps are ignored).

    Args:
        df: the training rows (pandas, polars or pyarrow).
        feature_time: the column (or columns) with the time each feature value was known.
        prediction_time: the column with the time of the prediction.

    Returns:
        A `CheckResult` with metrics ``violations`` (rows with a feature from the future) and ``rows``.
    """
    import pyarrow.compute as pc

    names = [feature_time] if isinstance(feature_time, str) else list(feature_time)
    require(df, [*names, prediction_time], "the training frame")
    predicted = column(df, prediction_time)
    masks = [pc.greater(_aligned(column(df, name), predicted, name, prediction_time), predicted) for name in names]
    mask = masks[0]
    for other in masks[1:]:
        mask = pc.or_kleene(mask, other)
    return _outcome(df, mask, f"a {' or '.join(names)} after {prediction_time}", [*names, prediction_time])


def labels_after_prediction(df: Any, label_time: str, prediction_time: str) -> CheckResult:
    """Every label is observed strictly after its row's prediction time (null label times are ignored).

    Returns:
        A `CheckResult` with metrics ``violations`` (labels known at prediction time) and ``rows``.
    """
    import pyarrow.compute as pc

    require(df, [label_time, prediction_time], "the training frame")
    predicted = column(df, prediction_time)
    mask = pc.less_equal(_aligned(column(df, label_time), predicted, label_time, prediction_time), predicted)
    return _outcome(df, mask, f"{label_time} at or before {prediction_time}", [label_time, prediction_time])


def windows_ordered_and_disjoint(
    split_or_windows: Split | Mapping[str, Any], time_column: str | None = None
) -> CheckResult:
    """Train, validation and test windows follow each other in time without overlapping.

    Args:
        split_or_windows: a `Split`; or a mapping of window name to frame (with `time_column`), in time
            order (``train``, ``valid``, ``test`` are put in that order); or a mapping of window name to a
            half-open ``(start, end)`` pair.
        time_column: the time column of the frames; a `Split` knows its own.

    Returns:
        A `CheckResult`: for frames, ``violations`` counts the rows at or before the latest time of an
        earlier window; for ``(start, end)`` pairs, the pairs that are empty, out of order or overlapping.
    """
    if isinstance(split_or_windows, Split):
        windows: Mapping[str, Any] = {
            "train": split_or_windows.train,
            "valid": split_or_windows.valid,
            "test": split_or_windows.test,
        }
        time_column = split_or_windows.time_column
    else:
        windows = split_or_windows
    names = sorted(windows, key=lambda n: _ORDER.index(n) if n in _ORDER else len(_ORDER))
    if all(isinstance(windows[n], tuple) and len(windows[n]) == 2 for n in names):
        return _bounds_disjoint([(n, windows[n]) for n in names])
    if time_column is None:
        raise ValueError("windows_ordered_and_disjoint: pass time_column= with a mapping of frames")
    return _frames_disjoint([(n, windows[n]) for n in names], time_column)


def _frames_disjoint(frames: list[tuple[str, Any]], time_column: str) -> CheckResult:
    import pyarrow.compute as pc

    violations, latest, notes, extents = 0, None, [], {}
    for name, frame in frames:
        frame_kind(frame)
        require(frame, [time_column], f"the {name} frame")
        times = column(frame, time_column)
        if latest is not None and len(times):
            overlapping = pc.sum(pc.less_equal(times, latest)).as_py() or 0
            if overlapping:
                notes.append(f"{overlapping} {name} row(s) at or before {latest.as_py()}")
            violations += overlapping
        extremes = pc.min_max(times)
        if extremes["max"].is_valid:
            extents[name] = f"{extremes['min'].as_py()} .. {extremes['max'].as_py()}"
            if latest is None or pc.greater(extremes["max"], latest).as_py():
                latest = extremes["max"]
    shown = "; ".join(f"{n}: {e}" for n, e in extents.items())
    message = f"windows overlap: {', '.join(notes)} ({shown})" if notes else f"ordered and disjoint ({shown})"
    return CheckResult(violations == 0, {"violations": float(violations)}, message)


def _bounds_disjoint(windows: list[tuple[str, tuple[Any, Any]]]) -> CheckResult:

    spans = [(name, utc(as_datetime(start)), utc(as_datetime(end))) for name, (start, end) in windows]
    problems = [f"{name} is empty ({start} >= {end})" for name, start, end in spans if not start < end]
    for (a, _, a_end), (b, b_start, _) in itertools.pairwise(spans):
        if b_start < a_end:
            problems.append(f"{b} starts at {b_start}, before {a} ends at {a_end}")
    message = "; ".join(problems) if problems else "ordered and disjoint"
    return CheckResult(not problems, {"violations": float(len(problems))}, message)


def _aligned(values: Any, reference: Any, name: str, reference_name: str) -> Any:
    """`values` cast to the type of `reference` when they differ (e.g. two timestamp units)."""
    import pyarrow as pa

    if values.type == reference.type:
        return values
    try:
        return values.cast(reference.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ValueError(
            f"cannot compare {name} ({values.type}) with {reference_name} ({reference.type}): {exc}"
        ) from exc


def _outcome(df: Any, mask: Any, what: str, shown: list[str]) -> CheckResult:
    import pyarrow.compute as pc

    rows = len(mask)
    violations = pc.sum(mask).as_py() or 0
    metrics = {"violations": float(violations), "rows": float(rows)}
    if not violations:
        return CheckResult(True, metrics, f"no row has {what} ({rows} rows)")
    first = pc.index(mask, True).as_py()
    example = ", ".join(f"{n}={column(df, n)[first].as_py()}" for n in shown)
    return CheckResult(False, metrics, f"{violations} of {rows} rows have {what}; first at row {first}: {example}")
