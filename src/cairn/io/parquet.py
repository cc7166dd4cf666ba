"""Tables (pandas and polars DataFrames, pyarrow Tables) stored as Parquet with fixed writer options."""

from __future__ import annotations

import mmap
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from cairn.core.records import StoredValue
from cairn.errors import SerializationError
from cairn.io.ports import Store, write_object

FORMAT: Final = "parquet"

# Every option is pinned, so equal tables give equal bytes whatever a future pyarrow's defaults are (early
# cutoff depends on it). Compression stays pyarrow's default, snappy: measured on 2 cores for a 5M x 5
# float64 frame and a 2M-row mixed frame, zstd wrote 10-20 % slower and read random floats 2x slower
# for a 6 % (floats) to 43 % (mixed) smaller file; lz4 and no compression were within noise of snappy.
PARQUET_WRITE_OPTIONS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "version": "2.6",
        "compression": "snappy",
        "write_statistics": True,
        "row_group_size": 1024 * 1024,
        "data_page_size": 1024 * 1024,
        "data_page_version": "1.0",
        "store_schema": True,
        "write_page_index": False,
        "write_page_checksum": False,
        "use_byte_stream_split": False,
    }
)

# Dictionary encoding pays off for repeated values (strings, categories, small integers) and costs ~0.4 s per
# 200 MB for floats, which rarely repeat: it is used for every column that is not floating point.


def _dictionary_columns(table: Any) -> list[str]:
    import pyarrow.types as pat

    return [field.name for field in table.schema if not pat.is_floating(field.type)]


# pandas index handling: a RangeIndex is kept as metadata, any other index as columns; both come back on load.
PANDAS_PRESERVE_INDEX: Final = None

# (pytype, module, class): a value of one of these types can only exist once its module is imported, so
# detecting it through sys.modules imports nothing.
_TABLE_TYPES: Final = (
    ("pandas", "pandas", "DataFrame"),
    ("polars", "polars", "DataFrame"),
    ("arrow", "pyarrow", "Table"),
)


def table_kind(value: object) -> str | None:
    """``"pandas"``, ``"polars"`` or ``"arrow"`` when ``value`` is such a table, else None."""
    for pytype, module_name, class_name in _TABLE_TYPES:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(value, getattr(module, class_name)):
            return pytype
    return None


def dump_table(value: Any, pytype: str, store: Store) -> StoredValue:
    """Write a table of kind ``pytype`` (see `table_kind`) as one Parquet object, hashed while written.

    Raises:
        SerializationError: the table has columns Parquet cannot hold.
    """
    return dump_arrow(parquet_table(value, pytype), pytype, store)


def parquet_table(value: Any, pytype: str) -> Any:
    """The Arrow table that `dump_table` writes for a table of kind ``pytype``.

    Raises:
        SerializationError: the table has columns Parquet cannot hold.
    """
    import pyarrow as pa  # here, not on top: the start-up budget (DESIGN §5)

    try:
        return _to_arrow(value, pytype)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise SerializationError(
            f"cannot store the {pytype} DataFrame as Parquet: {exc}. Give each column one type (e.g. "
            'df[col].astype(str)), or pass io="pickle" to store it pickled.'
        ) from exc


def frame_columns(table: Any) -> Any:
    """`parquet_table`'s result without the fields that hold a pandas index: the frame's own columns, as
    ``pa.Table.from_pandas(frame, preserve_index=False)`` gives them (schema metadata aside), without a copy."""
    from cairn.io.frames import index_fields

    index = index_fields(table)
    return table.select([i for i in range(table.num_columns) if i not in index]) if index else table


def dump_arrow(table: Any, pytype: str, store: Store) -> StoredValue:
    """Write `parquet_table`'s result for a table of kind ``pytype``: the second half of `dump_table`, for a
    caller that already converted the table (the step job converts once for the contract and the write)."""
    import pyarrow.parquet as pq

    options = {**PARQUET_WRITE_OPTIONS, "use_dictionary": _dictionary_columns(table)}
    digest, size = write_object(store, lambda sink: pq.write_table(table, sink, **options))
    return StoredValue(digest, size, FORMAT, pytype)


def load_table(data: bytes, pytype: str) -> Any:
    """Read verified Parquet bytes back as the table type they were written from."""
    return table_as(read_parquet(data), pytype, owned=True)


def load_object(stored: StoredValue, store: Store) -> Any:
    """A stored Parquet object as the table type it was written from, verified (see `read_object`)."""
    return table_as(read_object(stored, store), stored.pytype, owned=True)


def read_object(stored: StoredValue, store: Store) -> Any:
    """A stored Parquet object as a pyarrow Table; its size and BLAKE3 are checked first, on the pages of the
    file itself when the store is local (`cairn.io.mapped`).

    Raises:
        MissingObject: the object is not in the store.
        CorruptObject: its bytes do not match the record.
    """
    from cairn.io.mapped import verified_buffer

    with verified_buffer(store, stored.data_version, stored.size) as data:
        return read_parquet(data)


def table_as(table: Any, pytype: str, owned: bool = False) -> Any:
    """An Arrow table as the table type ``pytype`` names (a new DataFrame each call).

    ``owned``: the caller gives the table up (it was parsed for this value alone), so a pandas frame may use
    its memory instead of a copy (`cairn.io.frames`); otherwise the table is left untouched.
    """
    if pytype == "pandas":
        if owned and table.nbytes >= SMALL_TABLE_BYTES:
            from cairn.io.frames import owned_pandas

            return owned_pandas(table)
        return table.to_pandas(use_threads=table.nbytes >= SMALL_TABLE_BYTES)
    if pytype == "polars":
        import polars as pl

        return pl.from_arrow(table)
    return table


# Below this size a table is read on the calling thread: for the small daily tables of partitioned pipelines
# (a few thousand rows) that is 2-3x faster than with threads, whose start costs ~1 ms a call; above it the
# columns are read in parallel. `ParquetFile.read` rather than `read_table`: it gives each column in one
# chunk, which pandas can take without copying (`cairn.io.frames`), where `read_table` gives one per row group.
SMALL_TABLE_BYTES: Final = 1 << 20


def read_parquet(data: bytes | memoryview | mmap.mmap) -> Any:
    """Parquet bytes (or a read-only buffer such as a memory map) as a pyarrow Table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Closed explicitly, not left to the garbage collector: what is read is copied out of ``data`` (decoded),
    # so a memory map given here can be unmapped once this returns.
    buffer = pa.py_buffer(data)
    with pa.BufferReader(buffer) as source:
        file = pq.ParquetFile(source)
        try:
            return file.read(use_threads=len(data) >= SMALL_TABLE_BYTES)
        finally:
            file.close()


def _to_arrow(value: Any, pytype: str) -> Any:
    import pyarrow as pa

    if pytype == "pandas":
        kinds = {type(name) for name in value.columns}
        if len(kinds) > 1:
            names = ", ".join(sorted(kind.__name__ for kind in kinds))
            raise SerializationError(
                f"cannot store the pandas DataFrame as Parquet: its column names mix types ({names}) and "
                "would come back as str. Rename them, e.g. df.columns = df.columns.astype(str)."
            )
        return pa.Table.from_pandas(value, preserve_index=PANDAS_PRESERVE_INDEX)
    if pytype == "polars":
        return value.to_arrow()
    return value
