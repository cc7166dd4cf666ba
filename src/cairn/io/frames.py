"""pandas DataFrames from Arrow tables that only their caller holds: numeric columns handed over, not copied.

``table.to_pandas()`` copies every column into 2-D blocks of one dtype (0.1-0.2 s and a second copy of the
data in memory for a 200 MB table). Its zero-copy mode (``split_blocks=True``) shares the Arrow memory but
gives read-only arrays, so ``df.loc[0, "x"] = 1`` in a step would fail. A table freshly parsed for one
consumer (not kept in the worker's input cache, not given to anyone else) owns memory that nothing else
sees, so its null-free integer and float columns are given to pandas as writable arrays over that memory;
the other columns (strings, timestamps, nullable, categorical, the index) go through ``to_pandas()`` as
before. The result equals ``table.to_pandas()``: same labels, dtypes, index and ``attrs``.
"""

from __future__ import annotations

import json
from typing import Any


def owned_pandas(table: Any) -> Any:
    """``table.to_pandas()``, with the null-free numeric columns sharing the table's memory, writable.

    The caller must hold the only reference to ``table``'s data: a change to the frame changes the table.
    """
    shared = _shareable_columns(table)
    if not shared:
        return table.to_pandas(use_threads=True)
    import pandas as pd

    skeleton = table.slice(0, 0).to_pandas()  # labels and dtypes, without data
    index = index_fields(table)
    data_fields = [i for i in range(table.num_columns) if i not in index]
    if skeleton.shape[1] != len(data_fields):
        return table.to_pandas(use_threads=True)
    views = {}
    for position, field_index in enumerate(data_fields):
        view = shared.get(field_index)
        if view is not None and view.dtype == skeleton.dtypes.iloc[position]:
            views[position] = view
    if not views:
        return table.to_pandas(use_threads=True)
    taken = {data_fields[p] for p in views}
    rest = table.select([i for i in range(table.num_columns) if i not in taken]).to_pandas(use_threads=True)
    columns: dict[int, Any] = {}
    next_rest = 0
    for position in range(len(data_fields)):
        if position in views:
            columns[position] = views[position]
        else:
            columns[position] = rest.iloc[:, next_rest]
            next_rest += 1
    frame = pd.DataFrame(columns, index=rest.index, copy=False)
    frame.columns = skeleton.columns
    frame.attrs = rest.attrs
    return frame


def _shareable_columns(table: Any) -> dict[int, Any]:
    """Writable numpy views of the columns pandas can use as they are: integer and float (not half) columns
    in one chunk without nulls, whose buffer Arrow allocated as mutable (a parsed table's own memory)."""
    import numpy as np
    import pyarrow.types as pat

    if len(set(table.column_names)) != table.num_columns:
        return {}  # duplicate names: keep to_pandas' own handling
    views = {}
    for i, column in enumerate(table.columns):
        kind = column.type
        if not (pat.is_integer(kind) or (pat.is_floating(kind) and not pat.is_float16(kind))):
            continue
        if column.num_chunks != 1 or column.null_count != 0:
            continue
        chunk = column.chunk(0)
        data = chunk.buffers()[1]
        if data is None or not data.is_mutable:
            continue
        dtype = np.dtype(kind.to_pandas_dtype())
        views[i] = np.frombuffer(data, dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize)
    return views


def index_fields(table: Any) -> set[int]:
    """The fields that hold a stored pandas index (a RangeIndex is kept as metadata, not as a field)."""
    metadata = (table.schema.metadata or {}).get(b"pandas")
    if metadata is None:
        return set()
    stored = [name for name in json.loads(metadata).get("index_columns", []) if isinstance(name, str)]
    return {i for i, name in enumerate(table.column_names) if name in stored}
