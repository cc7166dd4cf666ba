"""Reading stored values back: a step's inputs and `cairn.load`'s value, checksum-verified, sources parsed by
their file type, tables converted to the DataFrame type a parameter asks for, parsed Parquet kept per worker.

Heavy libraries (pyarrow, pandas, polars, numpy) are imported only when a value that needs them is read.
"""

from __future__ import annotations

import io as stdio
import json
import mmap
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

    def put(self, version: str, table: Any) -> bool:
        """Keep ``table``; False when it is too large to keep (then the caller holds the only reference)."""
        size = table.nbytes
        if size > self.max_bytes // 4:
            return False  # a large table would push out many small ones that are read more often
        with self._lock:
            if version in self._tables:
                return True
            self._tables[version] = table
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, dropped = self._tables.popitem(last=False)
                self._bytes -= dropped.nbytes
        return True

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
            value = _load_input(spec.stored, store, _element(spec.annotation) if spec.key else spec.annotation)
        except (CorruptObject, MissingObject) as exc:
            raise BadInput(spec.stored.data_version, exc.digest or spec.stored.data_version, exc) from exc
        if spec.key is None:
            kwargs[spec.param] = value
        else:
            kwargs.setdefault(spec.param, {})[spec.key] = value
    return kwargs


def _load_input(stored: StoredValue, store: Store, annotation: str = "") -> Any:
    """`load_stored` as the table type ``annotation`` names, through the worker's table cache for Parquet.

    A table too large for the cache, or parsed from a source, is this step's alone, so a pandas frame takes
    its memory as it is (`cairn.io.frames`); a cached one is shared with later steps and converted into a
    new frame each time.
    """
    from cairn.io.parquet import FORMAT as PARQUET

    if stored.format != PARQUET:
        return convert_table(load_stored(stored, store), annotation, owned=True)
    from cairn.io.parquet import read_object, table_as

    table = _tables.get(stored.data_version)
    owned = False
    if table is None:
        table = read_object(stored, store)
        owned = not _tables.put(stored.data_version, table)
    return convert_table(table_as(table, stored.pytype, owned=owned), annotation, owned=owned)


def _element(annotation: str) -> str:
    """``dict[str, pl.DataFrame]`` → ``pl.DataFrame``: the annotation of one value of a dict input."""
    inner = annotation.replace(" ", "")
    if inner.startswith(("dict[", "Dict[", "Mapping[")) and "," in inner:
        return inner[inner.index(",") + 1 : -1]
    return ""


def load_stored(stored: StoredValue, store: Store) -> Any:
    """Read a stored value back (its checksum is verified first), sources parsed by their file type."""
    if stored.format == SOURCE_FORMAT:
        if stored.pytype in _MAPPED_SOURCES:
            from cairn.io.mapped import verified_buffer

            with verified_buffer(store, stored.data_version, stored.size) as data:
                return _parse_table(data, stored.pytype)
        return _parse_source(store.read_bytes(stored.data_version, stored.size), stored.pytype)
    from cairn.io import load

    return load(stored, store)


# The source files parsed by pyarrow, which reads from any buffer (a memory-mapped object too).
_MAPPED_SOURCES: Final = (".parquet", ".csv")


def _parse_table(data: bytes | mmap.mmap, suffix: str) -> Any:
    """A source file of one of `_MAPPED_SOURCES` as a pyarrow Table."""
    if suffix == ".parquet":
        from cairn.io.parquet import read_parquet

        return read_parquet(data)
    import pyarrow as pa
    import pyarrow.csv as pacsv

    return pacsv.read_csv(pa.BufferReader(data))


def _parse_source(data: bytes, suffix: str) -> Any:
    if suffix in _MAPPED_SOURCES:
        return _parse_table(data, suffix)
    if suffix == ".json":
        return json.loads(data)
    if suffix == ".npy":
        import numpy as np

        return np.load(stdio.BytesIO(data), allow_pickle=False)
    if suffix in (".txt", ".md", ".sql"):
        return data.decode("utf-8")
    return data


def convert_table(value: Any, annotation: str, owned: bool = False) -> Any:
    """Convert a table to the DataFrame type the consuming parameter is annotated with.

    ``owned``: nothing else holds ``value``, so a pyarrow Table becomes a pandas frame without a copy.
    """
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
        from cairn.io.parquet import table_as

        return table_as(table, "pandas", owned=owned and module == "pyarrow")
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
