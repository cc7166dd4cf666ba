"""The frames `cairn.ml` accepts (pandas, polars, pyarrow), their columns as Arrow, and times as Arrow scalars."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any, Final

# (kind, module, class): a value of one of these types can only exist once its module is imported.
_KINDS: Final = (("arrow", "pyarrow", "Table"), ("pandas", "pandas", "DataFrame"), ("polars", "polars", "DataFrame"))


def frame_kind(frame: Any) -> str:
    """``"pandas"``, ``"polars"`` or ``"arrow"``.

    Raises:
        TypeError: not a DataFrame or a pyarrow Table.
    """
    for kind, module_name, class_name in _KINDS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(frame, getattr(module, class_name)):
            return kind
    raise TypeError(f"expected a pandas or polars DataFrame or a pyarrow Table, got {type(frame).__name__}")


def columns_of(frame: Any) -> list[str]:
    kind = frame_kind(frame)
    return list(frame.column_names) if kind == "arrow" else [str(c) for c in frame.columns]


def require(frame: Any, names: list[str], role: str) -> None:
    """Raise a ValueError naming the columns of `names` that `frame` lacks."""
    present = columns_of(frame)
    missing = [n for n in names if n not in present]
    if missing:
        raise ValueError(f"{role} has no column(s) {', '.join(missing)}; its columns are: {', '.join(present)}")


def to_arrow(frame: Any) -> Any:
    """The frame as a pyarrow Table (pandas without its index, polars zero-copy where it can)."""
    kind = frame_kind(frame)
    if kind == "arrow":
        return frame
    if kind == "polars":
        return frame.to_arrow()
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


def column(frame: Any, name: str) -> Any:
    """One column as an Arrow array or chunked array, dates widened to timestamps so that they compare."""
    import pyarrow as pa
    import pyarrow.types as pat

    kind = frame_kind(frame)
    if kind == "arrow":
        values = frame.column(name)
    elif kind == "polars":
        values = frame.get_column(name).to_arrow()
    else:
        values = pa.array(frame[name], from_pandas=True)
    if pat.is_date(values.type):
        values = values.cast(pa.timestamp("us"))
    return values


def filter_rows(frame: Any, mask: Any) -> Any:
    """The rows of `frame` where the numpy boolean `mask` is true, as the same kind of frame."""
    kind = frame_kind(frame)
    if kind == "pandas":
        return frame[mask]
    if kind == "polars":
        import polars as pl

        return frame.filter(pl.Series(mask))
    import pyarrow as pa

    return frame.filter(pa.array(mask))


def as_datetime(moment: Any) -> Any:
    """A boundary given as a datetime, a date or an ISO string, as a datetime; numbers pass through."""
    if isinstance(moment, str):
        return dt.datetime.fromisoformat(moment)
    if isinstance(moment, dt.date) and not isinstance(moment, dt.datetime):
        return dt.datetime.combine(moment, dt.time())
    if hasattr(moment, "to_pydatetime"):  # pandas Timestamp
        return moment.to_pydatetime()
    return moment


def utc(moment: Any) -> Any:
    """An aware datetime in UTC (naive datetimes are taken to be UTC); numbers pass through."""
    if not isinstance(moment, dt.datetime):
        return moment
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def scalar_for(moment: Any, arrow_type: Any) -> Any:
    """A boundary as an Arrow scalar comparable with a column of `arrow_type` (naive means UTC)."""
    import pyarrow as pa
    import pyarrow.types as pat

    if pat.is_timestamp(arrow_type):
        moment = utc(as_datetime(moment))
        if arrow_type.tz is None:
            moment = moment.replace(tzinfo=None)
        return pa.scalar(moment, type=arrow_type)
    return pa.scalar(moment)


def to_numpy_mask(mask: Any) -> Any:
    """An Arrow boolean (chunked) array as a numpy bool array, nulls as False."""
    import pyarrow.compute as pc

    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
