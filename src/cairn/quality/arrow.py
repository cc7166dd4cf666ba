"""The bridge from a user's table (pandas, polars, pyarrow) to Arrow, and from Arrow values back to JSON."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import sys
from collections.abc import Mapping
from typing import Any, Final

SAMPLE_ROWS: Final = 5

# (module, class): a value of one of these types can only exist once its module is imported, so detecting it
# through sys.modules imports nothing.
_TABLE_TYPES: Final = (("pyarrow", "Table"), ("pandas", "DataFrame"), ("polars", "DataFrame"))


def to_arrow(value: Any) -> Any:
    """The output as a `pyarrow.Table`, without copying where the library allows it.

    pandas DataFrames are converted without their index (``preserve_index=False``), polars DataFrames with
    ``DataFrame.to_arrow()`` (zero-copy for most types), pyarrow Tables are returned as they are.

    Raises:
        TypeError: the value is not a table.
    """
    for module_name, class_name in _TABLE_TYPES:
        module = sys.modules.get(module_name)
        if module is None or not isinstance(value, getattr(module, class_name)):
            continue
        if module_name == "pyarrow":
            return value
        if module_name == "polars":
            return value.to_arrow()
        import pyarrow as pa

        return pa.Table.from_pandas(value, preserve_index=False)
    raise TypeError(
        f"a contract needs a table (a pandas or polars DataFrame or a pyarrow Table), got {type(value).__name__}; "
        "return a table from the asset, or test other values with a @check"
    )


def json_value(value: Any) -> Any:
    """A JSON-able form of a Python value read from Arrow: timestamps and dates as ISO strings, decimals and
    non-finite floats as strings, bytes as hex, containers converted item by item."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if hasattr(value, "item"):  # a numpy scalar
        return json_value(value.item())
    return str(value)


def sample_rows(table: Any, mask: Any, limit: int = SAMPLE_ROWS) -> tuple[dict[str, Any], ...]:
    """Up to `limit` rows of `table` where the boolean `mask` is true (nulls in the mask count as false)."""
    import pyarrow.compute as pc

    indices = pc.indices_nonzero(pc.fill_null(_combined(mask), False))[:limit]
    rows = table.take(indices).to_pylist()
    return tuple({name: json_value(v) for name, v in row.items()} for row in rows)


def _combined(array: Any) -> Any:
    """A chunked array as one array (indices_nonzero takes arrays only); a no-op for one chunk."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        return array.chunk(0) if array.num_chunks == 1 else array.combine_chunks()
    return array


def type_matches(name: str, arrow_type: Any) -> bool:
    """Whether an Arrow type is one of a `col()` type name: integer and float names are exact, ``string``
    includes large and view strings, ``timestamp`` any unit and time zone, ``decimal`` any precision."""
    import pyarrow as pa
    import pyarrow.types as pat

    checks = {
        "bool": pat.is_boolean,
        "string": lambda t: pat.is_string(t) or pat.is_large_string(t) or pat.is_string_view(t),
        "binary": lambda t: (
            pat.is_binary(t) or pat.is_large_binary(t) or pat.is_binary_view(t) or pat.is_fixed_size_binary(t)
        ),
        "date": pat.is_date,
        "timestamp": pat.is_timestamp,
        "decimal": pat.is_decimal,
        "list": lambda t: pat.is_list(t) or pat.is_large_list(t) or pat.is_fixed_size_list(t) or pat.is_list_view(t),
        "struct": pat.is_struct,
        "dictionary": pat.is_dictionary,
        "null": pat.is_null,
    }
    if name in checks:
        return bool(checks[name](arrow_type))
    return bool(arrow_type == getattr(pa, name)())  # int8 ... uint64, float32, float64: exact
