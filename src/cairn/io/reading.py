"""Reading stored values back: a step's inputs and `cairn.load`'s value, checksum-verified, sources parsed by
their file type, tables converted to the DataFrame type a parameter asks for, parsed Parquet kept per worker.

Heavy libraries (pyarrow, pandas, polars, numpy) are imported only when a value that needs them is read.
"""

from __future__ import annotations

import io as stdio
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final, Protocol

from cairn.core.records import StoredValue
from cairn.errors import CorruptObject, MissingObject
from cairn.io.ports import Store

# The format of a source's file copied as it is; its pytype is the file's suffix, which says how to parse it.
SOURCE_FORMAT: Final = "source"


class InputToLoad(Protocol):
    """One input of a step: the parameter it fills, the object it reads, and the parameter's annotation;
    `key` is the partition key when the parameter takes a dict of partitions (a window, all partitions)."""

    @property
    def param(self) -> str: ...

    @property
    def stored(self) -> StoredValue: ...

    @property
    def annotation(self) -> str: ...

    @property
    def key(self) -> str | None: ...


class BadInput(Exception):
    """An input object is missing or damaged: the engine quarantines it and recomputes its producer."""

    def __init__(self, version: str, digest: str, error: CorruptObject | MissingObject) -> None:
        super().__init__(str(error))
        self.version, self.digest, self.error = version, digest, error


class _TableCache:
    """Arrow tables this worker has read, by data version, least recently used dropped first.

    A windowed input reads mostly the same partitions step after step (a 28-day window moves by one day), so
    a worker keeps the verified, parsed tables instead of reading and parsing them again. Arrow tables are
    immutable and every step gets its own DataFrame converted from one, so no step sees another's changes.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._tables: OrderedDict[str, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, version: str) -> Any:
        with self._lock:
            table = self._tables.get(version)
            if table is not None:
                self._tables.move_to_end(version)
            return table

    def put(self, version: str, table: Any) -> None:
        size = table.nbytes
        if size > self.max_bytes // 4:
            return  # a large table would push out many small ones that are read more often
        with self._lock:
            if version in self._tables:
                return
            self._tables[version] = table
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, dropped = self._tables.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()
            self._bytes = 0


TABLE_CACHE_BYTES = 128 << 20  # per worker process
_tables = _TableCache(TABLE_CACHE_BYTES)


def forget_inputs() -> None:
    """Drop the cached input tables of this process (at the end of a run that executed steps in it)."""
    _tables.clear()


def load_inputs(specs: Iterable[InputToLoad], store: Store) -> dict[str, Any]:
    """Each parameter's value; a windowed or all-partitions input is a dict by partition key.

    Raises:
        BadInput: an input's object is missing from the store or does not match its record.
    """
    kwargs: dict[str, Any] = {}
    for spec in specs:
        try:
            loaded = _load_input(spec.stored, store)
        except (CorruptObject, MissingObject) as exc:
            raise BadInput(spec.stored.data_version, exc.digest or spec.stored.data_version, exc) from exc
        value = convert_table(loaded, _element(spec.annotation) if spec.key else spec.annotation)
        if spec.key is None:
            kwargs[spec.param] = value
        else:
            kwargs.setdefault(spec.param, {})[spec.key] = value
    return kwargs


def _load_input(stored: StoredValue, store: Store) -> Any:
    """`load_stored`, through the worker's table cache for Parquet objects."""
    from cairn.io.parquet import FORMAT as PARQUET

    if stored.format != PARQUET:
        return load_stored(stored, store)
    from cairn.io.parquet import read_parquet, table_as

    table = _tables.get(stored.data_version)
    if table is None:
        table = read_parquet(store.read_bytes(stored.data_version, stored.size))
        _tables.put(stored.data_version, table)
    return table_as(table, stored.pytype)


def _element(annotation: str) -> str:
    """``dict[str, pl.DataFrame]`` → ``pl.DataFrame``: the annotation of one value of a dict input."""
    inner = annotation.replace(" ", "")
    if inner.startswith(("dict[", "Dict[", "Mapping[")) and "," in inner:
        return inner[inner.index(",") + 1 : -1]
    return ""


def load_stored(stored: StoredValue, store: Store) -> Any:
    """Read a stored value back (its checksum is verified first), sources parsed by their file type."""
    if stored.format == SOURCE_FORMAT:
        return _parse_source(store.read_bytes(stored.data_version, stored.size), stored.pytype)
    from cairn.io import load

    return load(stored, store)


def _parse_source(data: bytes, suffix: str) -> Any:
    if suffix == ".parquet":
        from cairn.io.parquet import read_parquet

        return read_parquet(data)
    if suffix == ".csv":
        import pyarrow as pa
        import pyarrow.csv as pacsv

        return pacsv.read_csv(pa.BufferReader(data))
    if suffix == ".json":
        return json.loads(data)
    if suffix == ".npy":
        import numpy as np

        return np.load(stdio.BytesIO(data), allow_pickle=False)
    if suffix in (".txt", ".md", ".sql"):
        return data.decode("utf-8")
    return data


def convert_table(value: Any, annotation: str) -> Any:
    """Convert a table to the DataFrame type the consuming parameter is annotated with."""
    module = type(value).__module__.split(".")[0]
    if module not in ("pyarrow", "pandas", "polars") or not annotation:
        return value
    wanted = _wanted_table(annotation)
    if wanted is None or wanted == module:
        return value
    import pyarrow as pa

    table = value
    if module == "pandas":
        table = pa.Table.from_pandas(value, preserve_index=False)
    elif module == "polars":
        table = value.to_arrow()
    if wanted == "pandas":
        return table.to_pandas()
    if wanted == "polars":
        import polars as pl

        return pl.from_arrow(table)
    return table


def _wanted_table(annotation: str) -> str | None:
    text = annotation.replace(" ", "")
    if text.startswith(("pd.", "pandas.")):
        return "pandas"
    if text.startswith(("pl.", "polars.")):
        return "polars"
    if text.startswith(("pa.", "pyarrow.")):
        return "pyarrow"
    return None
