"""`dump` and `load`: store a value by its type (or the ``io=`` a step asks for) and read it back verified.

| value                                  | format  | pytype   |
|----------------------------------------|---------|----------|
| pandas / polars DataFrame, arrow Table | parquet | pandas, polars, arrow |
| numpy ndarray                          | npy     | numpy    |
| dict (str keys), list, tuple, str, int, float, bool, None | json | json |
| bytes                                  | bytes   | bytes    |
| `cairn.io.Files`                       | files   | files (a directory), file (one file) |
| scikit-learn estimator or pipeline    | skops   | the value's qualified type |
| anything, with io="pickle"/"joblib"/"skops" | pickle, joblib, skops | the value's qualified type |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from cairn.core.records import StoredValue
from cairn.errors import SerializationError
from cairn.io.estimators import dump_skops, is_sklearn_model, load_skops
from cairn.io.files import FORMAT as FILES_FORMAT
from cairn.io.files import Files, dump_files, load_files
from cairn.io.jsonvalue import decode_json, encode_json, json_problem, type_name
from cairn.io.npy import dump_array, is_ndarray, load_array
from cairn.io.parquet import FORMAT as PARQUET_FORMAT
from cairn.io.parquet import dump_table, load_object, load_table, table_kind
from cairn.io.pickles import FORMATS as OPT_IN_FORMATS
from cairn.io.pickles import dump_pickled, load_pickled
from cairn.io.ports import Store, write_object

# The names `io=` accepts: the formats chosen by type can be forced, the pickling ones must be.
IO_NAMES: Final = ("json", "parquet", "npy", "bytes", *OPT_IN_FORMATS)

_BYTES_LIKE: Final = (bytes, bytearray, memoryview)


def dump(value: object, store: Store, io: str | None = None) -> StoredValue:
    """Serialize ``value`` into ``store``, hashing the bytes as they are written.

    Args:
        value: what an asset returned.
        store: the artifact store (any `cairn.storage.base.ArtifactStore`).
        io: None to choose the format by type, or one of `IO_NAMES` to force one.

    Returns:
        The object's data version (content hash), size, format and Python type.

    Raises:
        SerializationError: no format fits the value; the message names the type and the ``io=`` to use.
    """
    if io is None:
        return _dump_by_type(value, store)
    if io not in IO_NAMES:
        raise SerializationError(f"unknown serializer io={io!r}; use one of {', '.join(map(repr, IO_NAMES))}.")
    if io == "skops":
        return dump_skops(value, store, explicit=True)
    if io in OPT_IN_FORMATS:
        return dump_pickled(value, store, io)
    if io == "json":
        return _dump_json(value, store)
    if io == "bytes":
        if not isinstance(value, _BYTES_LIKE):
            raise _wrong_type(io, value, "bytes, bytearray or memoryview")
        return _dump_bytes(value, store)
    if io == "npy":
        if not is_ndarray(value):
            raise _wrong_type(io, value, "numpy arrays")
        return dump_array(value, store)
    pytype = table_kind(value)
    if pytype is None:
        raise _wrong_type(io, value, "pandas or polars DataFrames and pyarrow Tables")
    return dump_table(value, pytype, store)


def load(stored: StoredValue, store: Store) -> object:
    """Read a stored value back as the type it was written from.

    Every object is verified against its recorded size and checksum by ``store.read_bytes`` before it is
    parsed, so a pickle is never loaded from bytes that do not match the metadata record.

    Raises:
        MissingObject: the object is not in the store.
        CorruptObject: its bytes do not match the record.
        SerializationError: the format is unknown to this version of cairn.
    """
    if stored.format == FILES_FORMAT:
        return load_files(stored, store)
    if stored.format == PARQUET_FORMAT:
        return load_object(stored, store)
    reader = _READERS.get(stored.format)
    if reader is None:
        raise SerializationError(
            f"cannot load {stored.data_version}: its format {stored.format!r} is not one this cairn knows "
            f"({', '.join(sorted([*_READERS, FILES_FORMAT]))}). Upgrade cairn to the version that wrote it."
        )
    return reader(store.read_bytes(stored.data_version, stored.size), stored)


def _dump_by_type(value: object, store: Store) -> StoredValue:
    if type(value) is bytes:
        return _dump_bytes(value, store)
    if isinstance(value, Files):
        return dump_files(value, store)
    pytype = table_kind(value)
    if pytype is not None:
        return dump_table(value, pytype, store)
    if is_ndarray(value):
        return dump_array(value, store)
    if is_sklearn_model(value):
        return dump_skops(value, store)
    problem = json_problem(value)
    if problem is None or problem.kind == "number":
        return _dump_json(value, store)
    where = "" if problem.path == "value" else f" ({problem.path} is a {type_name(problem.found)})"
    raise SerializationError(
        f"cannot store a value of type {type_name(value)}{where}: cairn stores DataFrames, pyarrow Tables, "
        "numpy arrays, JSON-able values (dicts with str keys, lists, str, int, float, bool, None), bytes and "
        'cairn.Files. Convert it to one of these, or opt in to pickling with io="pickle" (or io="joblib", '
        'io="skops") on @asset.'
    )


def _dump_json(value: object, store: Store) -> StoredValue:
    data = encode_json(value)
    digest, size = write_object(store, lambda sink: sink.write(data))
    return StoredValue(digest, size, "json", "json")


def _dump_bytes(value: bytes | bytearray | memoryview, store: Store) -> StoredValue:
    digest, size = write_object(store, lambda sink: sink.write(value))
    return StoredValue(digest, size, "bytes", "bytes")


def _wrong_type(io: str, value: object, accepted: str) -> SerializationError:
    return SerializationError(
        f"io={io!r} cannot store a value of type {type_name(value)}: it stores {accepted}. Remove io= to "
        'choose the format by type, or pass io="pickle".'
    )


_READERS: Final[dict[str, Callable[[bytes, StoredValue], Any]]] = {
    "parquet": lambda data, stored: load_table(data, stored.pytype),
    "npy": lambda data, stored: load_array(data),
    "json": lambda data, stored: decode_json(data),
    "bytes": lambda data, stored: data,
    **{fmt: lambda data, stored: load_pickled(data, stored.format) for fmt in OPT_IN_FORMATS},
    "skops": lambda data, stored: load_skops(data),
}
