"""Contract evaluation: every rule of a `Contract` (or a pandera schema) checked on one output, as `RuleResult`s.

Rules are computed with `pyarrow.compute` on the output as an Arrow table (numpy where it is several times
faster on the same buffers: float extremes, uniqueness of one numeric column). Independent rules of a large
table run on a few threads, since Arrow and numpy release the GIL. Order of the results, for a readable report:

    columns → per column (type, nullable, min, max, allowed, max_null_rate) → unique → rows
            → duplicate_rate → freshness
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from cairn.core.contracts import Column, Contract, RuleResult
from cairn.quality.arrow import SAMPLE_ROWS, json_value, sample_rows, to_arrow, type_matches
from cairn.quality.pandera_schema import evaluate_pandera

# Below this many rows the rules run one after the other: a thread pool costs more than it saves.
PARALLEL_ROWS: Final = 1_000_000
THREADS: Final = 4
# A numeric id column whose value range is at most this many times its length is checked with a bitmap
# (one pass, no sort); a wider range is sorted.
BITMAP_SPAN: Final = 8

Task = Callable[[], list[RuleResult]]

__all__ = ["evaluate", "evaluate_any", "evaluate_pandera"]


def evaluate(contract: Contract, value: Any, window: tuple[dt.datetime, dt.datetime] | None = None) -> list[RuleResult]:
    """Evaluate every rule of `contract` that applies on an output table.

    Args:
        contract: the declared guarantees.
        value: a pandas or polars DataFrame or a pyarrow Table.
        window: the partition's ``(start, end)``, for the ``freshness`` rule; None for unpartitioned assets.

    Returns:
        One `RuleResult` per rule, passed or not, in the order of the module docstring; a failure of a rule
        whose rows can be identified carries a sample of up to five of them.

    Raises:
        TypeError: the value is not a table.
    """
    table = to_arrow(value)
    present = set(table.column_names)
    results: list[RuleResult] = []
    if contract.columns:
        missing = [name for name in contract.columns if name not in present]
        results.append(
            _result(
                contract,
                "columns",
                not missing,
                f"missing: {', '.join(missing)}" if missing else "all present",
                list(contract.columns),
            )
        )
    tasks: list[Task] = [
        _column_task(contract, table, name, rule) for name, rule in contract.columns.items() if name in present
    ]
    if contract.unique:
        tasks.append(lambda: [_unique(contract, table)])
    results.extend(_run(tasks, table.num_rows))
    if contract.rows != (None, None):
        low, high = contract.rows
        n = table.num_rows
        passed = (low is None or n >= low) and (high is None or n <= high)
        results.append(_result(contract, "rows", passed, n, [low, high]))
    if contract.max_duplicate_rate is not None:
        unique_held = any(r.rule == "unique" and r.passed and r.observed == 0 for r in results)
        results.append(_duplicate_rate(contract, table, contract.max_duplicate_rate, unique_held))
    if contract.freshness is not None:
        results.append(_freshness(contract, table, window))
    return results


def evaluate_any(
    contract_or_schema: Any, value: Any, window: tuple[dt.datetime, dt.datetime] | None = None
) -> list[RuleResult]:
    """`evaluate` for a `Contract`, `evaluate_pandera` for a pandera schema (told apart without importing pandera).

    Raises:
        TypeError: neither a `Contract` nor a pandera schema, or the value is not a table.
    """
    if isinstance(contract_or_schema, Contract):
        return evaluate(contract_or_schema, value, window)
    if type(contract_or_schema).__module__.split(".")[0] == "pandera":
        return evaluate_pandera(contract_or_schema, value)
    raise TypeError(
        f"contract= takes a cairn Contract or a pandera DataFrameSchema, got {type(contract_or_schema).__name__}"
    )


# ---- column rules ---------------------------------------------------------------------------------------


def _column_task(contract: Contract, table: Any, name: str, rule: Column) -> Task:
    return lambda: _column_rules(contract, table, name, rule)


def _column_rules(contract: Contract, table: Any, name: str, rule: Column) -> list[RuleResult]:
    import pyarrow.compute as pc

    column = table.column(name)
    out: list[RuleResult] = []
    if rule.type is not None:
        out.append(_result(contract, f"{name}.type", type_matches(rule.type, column.type), str(column.type), rule.type))
    nulls = column.null_count
    if not rule.nullable:
        sample = sample_rows(table, pc.is_null(column)) if nulls else ()
        out.append(_result(contract, f"{name}.nullable", nulls == 0, nulls, "no nulls", sample, nulls))
    if rule.min is not None or rule.max is not None:
        out.extend(_bounds(contract, table, name, rule))
    if rule.allowed is not None:
        out.append(_allowed(contract, table, name, rule.allowed))
    if rule.max_null_rate is not None:
        rate = nulls / table.num_rows if table.num_rows else 0.0
        out.append(
            _result(
                contract,
                f"{name}.max_null_rate",
                rate <= rule.max_null_rate,
                round(rate, 4),
                f"<= {rule.max_null_rate}",
            )
        )
    return out


def _bounds(contract: Contract, table: Any, name: str, rule: Column) -> list[RuleResult]:
    import pyarrow.compute as pc
    import pyarrow.types as pat

    column = table.column(name)
    kind = column.type
    numeric = pat.is_integer(kind) or pat.is_floating(kind) or pat.is_decimal(kind)
    temporal = pat.is_timestamp(kind) or pat.is_date(kind)
    out: list[RuleResult] = []
    low, high = _extremes(column) if numeric or temporal else (None, None)
    for which, bound, compare, observed in (("min", rule.min, pc.less, low), ("max", rule.max, pc.greater, high)):
        if bound is None:
            continue
        rule_name, expected = f"{name}.{which}", f"{'>=' if which == 'min' else '<='} {json_value(bound)}"
        if not (numeric or temporal):
            out.append(_result(contract, rule_name, False, f"not a numeric or temporal column ({kind})", expected))
            continue
        try:
            limit = _bound_scalar(bound, kind, temporal)
        except (TypeError, ValueError) as exc:
            out.append(_result(contract, rule_name, False, f"cannot compare with {bound!r}: {exc}", expected))
            continue
        if observed is None or not compare(observed, limit).as_py():
            out.append(
                _result(
                    contract, rule_name, True, json_value(observed.as_py() if observed is not None else None), expected
                )
            )
            continue
        mask = compare(column, limit)
        count = pc.sum(mask).as_py() or 0
        out.append(
            _result(contract, rule_name, False, json_value(observed.as_py()), expected, sample_rows(table, mask), count)
        )
    return out


def _extremes(column: Any) -> tuple[Any, Any]:
    """(min, max) of a column as Arrow scalars, nulls and NaN ignored; (None, None) when it has no values."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pat

    if pat.is_floating(column.type) and column.null_count == 0 and len(column):
        import numpy as np

        # numpy's min/max on the Arrow buffers is ~8x faster than pc.min_max for floats; NaN (which
        # numpy propagates and Arrow skips) falls back to Arrow.
        arrays = [chunk.to_numpy(zero_copy_only=True) for chunk in column.chunks if len(chunk)]
        low = min(float(np.min(a)) for a in arrays)
        high = max(float(np.max(a)) for a in arrays)
        if low == low and high == high:
            return pa.scalar(low, column.type), pa.scalar(high, column.type)
    extremes = pc.min_max(column)
    low, high = extremes["min"], extremes["max"]
    return (low, high) if low.is_valid else (None, None)


def _bound_scalar(bound: Any, kind: Any, temporal: bool) -> Any:
    """A bound as an Arrow scalar comparable with a column of type `kind`."""
    import decimal

    import pyarrow as pa
    import pyarrow.types as pat

    if temporal:
        if isinstance(bound, str):
            bound = dt.datetime.fromisoformat(bound)
        if not isinstance(bound, dt.date):
            raise TypeError("a time column's bound must be a datetime, a date or an ISO string")
        if pat.is_date(kind) and isinstance(bound, dt.datetime):
            bound = bound.date()
        elif pat.is_timestamp(kind) and not isinstance(bound, dt.datetime):
            bound = dt.datetime.combine(bound, dt.time())
        if pat.is_timestamp(kind) and kind.tz is not None and bound.tzinfo is None:
            bound = bound.replace(tzinfo=dt.UTC)  # naive bounds of a zoned column are UTC
        return pa.scalar(bound, type=kind)
    if isinstance(bound, bool) or not isinstance(bound, int | float | decimal.Decimal):
        raise TypeError("a numeric column's bound must be a number")
    if pat.is_decimal(kind):
        return pa.scalar(decimal.Decimal(str(bound)))
    return pa.scalar(bound)


def _allowed(contract: Contract, table: Any, name: str, allowed: tuple[Any, ...]) -> RuleResult:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pat

    column = table.column(name)
    if pat.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    values = pc.unique(column).drop_null()
    try:
        value_set = pa.array(list(allowed)).cast(values.type)
        bad = values.filter(pc.invert(pc.is_in(values, value_set=value_set)))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        accepted = set(allowed)  # mixed or foreign types: compare as Python values (the distinct set is short)
        bad = pa.array([v for v in values.to_pylist() if v not in accepted], type=values.type)
    expected = json_value(list(allowed))
    if not len(bad):
        return _result(contract, f"{name}.allowed", True, [], expected)
    mask = pc.is_in(column, value_set=bad)
    observed = json_value(bad[:SAMPLE_ROWS].to_pylist())
    count = pc.sum(mask).as_py() or 0
    return _result(contract, f"{name}.allowed", False, observed, expected, sample_rows(table, mask), count)


# ---- table rules ----------------------------------------------------------------------------------------


def _unique(contract: Contract, table: Any) -> RuleResult:
    import pyarrow.compute as pc

    keys = list(contract.unique)
    expected = f"unique ({', '.join(keys)})"
    missing = [k for k in keys if k not in table.column_names]
    if missing:
        return _result(contract, "unique", False, f"missing column(s): {', '.join(missing)}", expected)
    duplicates = _fast_duplicates(table.column(keys[0])) if len(keys) == 1 else None
    if duplicates is None:
        groups = table.select(keys).group_by(keys).aggregate([])
        duplicates = table.num_rows - groups.num_rows
    if duplicates == 0:
        return _result(contract, "unique", True, 0, expected)
    counted = table.select(keys).group_by(keys).aggregate([([], "count_all")])
    repeated = counted.filter(pc.greater(counted["count_all"], 1)).slice(0, SAMPLE_ROWS)
    if len(keys) == 1:
        sample = sample_rows(table, pc.is_in(table.column(keys[0]), value_set=repeated.column(keys[0])))
    else:
        sample = _joined_sample(table, repeated.select(keys), keys)
    return _result(contract, "unique", False, duplicates, expected, sample, duplicates)


def _fast_duplicates(column: Any) -> int | None:
    """Rows of a null-free integer or float column that repeat an earlier value; None when not applicable."""
    import pyarrow.types as pat

    if column.null_count or not (pat.is_integer(column.type) or pat.is_floating(column.type)):
        return None
    if len(column) < 2:
        return 0
    import numpy as np

    # Chunk by chunk, on the Arrow buffers: a polars output comes in several chunks, and joining them would
    # copy the whole column.
    chunks = [c.to_numpy(zero_copy_only=False) for c in column.chunks if len(c)]
    n = sum(len(c) for c in chunks)
    if _strictly_monotonic(chunks):
        return 0  # generated ids are usually sorted
    if pat.is_integer(column.type):
        low, high = min(int(c.min()) for c in chunks), max(int(c.max()) for c in chunks)
        if high - low + 1 <= BITMAP_SPAN * n:
            # Indexing by the values themselves when they start near 0 spares a subtraction pass and its copy.
            offset = 0 if low >= 0 and high < BITMAP_SPAN * n else low
            seen = np.zeros(high - offset + 1, dtype=np.bool_)
            for values in chunks:
                if offset:
                    wide = values if values.dtype.itemsize == 8 else values.astype(np.int64)  # no int8 wrap-around
                    seen[wide - wide.dtype.type(offset)] = True
                else:
                    seen[values] = True
            return n - int(np.count_nonzero(seen))
    values = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    ordered = np.sort(values)
    return int(np.count_nonzero(ordered[1:] == ordered[:-1]))


def _strictly_monotonic(chunks: list[Any]) -> bool:
    """Whether the concatenated chunks strictly increase, or strictly decrease (a look at the head first)."""
    import numpy as np

    for sign in (1, -1):
        head = chunks[0][:1024]
        if not np.all((head[1:] > head[:-1]) if sign > 0 else (head[1:] < head[:-1])):
            continue
        edges = all((a[-1] < b[0]) if sign > 0 else (a[-1] > b[0]) for a, b in itertools.pairwise(chunks))
        if edges and all(np.all((c[1:] > c[:-1]) if sign > 0 else (c[1:] < c[:-1])) for c in chunks):
            return True
    return False


def _joined_sample(table: Any, keys_table: Any, keys: list[str]) -> tuple[dict[str, Any], ...]:
    import pyarrow as pa

    try:
        rows = table.join(keys_table, keys, join_type="inner").select(table.column_names).slice(0, SAMPLE_ROWS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        rows = keys_table  # key types a hash join cannot take: the repeated keys alone
    return tuple({k: json_value(v) for k, v in row.items()} for row in rows.to_pylist())


def _duplicate_rate(contract: Contract, table: Any, limit: float, unique_held: bool) -> RuleResult:
    import pyarrow as pa
    import pyarrow.compute as pc

    expected = f"<= {limit}"
    if unique_held or table.num_rows < 2:
        return _result(contract, "duplicate_rate", True, 0.0, expected)  # unique keys: no row repeats
    try:
        counted = table.group_by(table.column_names).aggregate([([], "count_all")])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        return _result(contract, "duplicate_rate", False, f"rows cannot be compared: {exc}", expected)
    duplicated = table.num_rows - counted.num_rows
    rate = duplicated / table.num_rows
    if rate <= limit:
        return _result(contract, "duplicate_rate", True, round(rate, 4), expected)
    repeated = counted.filter(pc.greater(counted["count_all"], 1)).slice(0, SAMPLE_ROWS)
    sample = tuple({k: json_value(v) for k, v in row.items()} for row in repeated.to_pylist())
    return _result(contract, "duplicate_rate", False, round(rate, 4), expected, sample, duplicated)


def _freshness(contract: Contract, table: Any, window: tuple[dt.datetime, dt.datetime] | None) -> RuleResult:
    import pyarrow.compute as pc
    import pyarrow.types as pat

    rule = contract.freshness
    assert rule is not None
    if window is None:
        return _result(contract, "freshness", True, "no partition window", f"max lag {rule.max_lag_hours} h")
    threshold = _utc(window[1]) - dt.timedelta(hours=rule.max_lag_hours)
    expected = f">= {threshold.isoformat()}"
    if rule.column not in table.column_names:
        return _result(contract, "freshness", False, f"missing column: {rule.column}", expected)
    column = table.column(rule.column)
    if not (pat.is_timestamp(column.type) or pat.is_date(column.type)):
        return _result(contract, "freshness", False, f"not a time column ({column.type})", expected)
    newest = pc.max(column).as_py()
    if newest is None:
        return _result(contract, "freshness", False, "no values", expected)
    if not isinstance(newest, dt.datetime):
        newest = dt.datetime.combine(newest, dt.time())
    newest = _utc(newest)
    return _result(contract, "freshness", newest >= threshold, newest.isoformat(), expected)


# ---- helpers --------------------------------------------------------------------------------------------


def _run(tasks: list[Task], rows: int) -> list[RuleResult]:
    if rows < PARALLEL_ROWS or len(tasks) < 2:
        return [r for task in tasks for r in task()]
    with ThreadPoolExecutor(min(THREADS, len(tasks)), thread_name_prefix="cairn-contract") as pool:
        return [r for results in pool.map(lambda task: task(), tasks) for r in results]


def _result(
    contract: Contract,
    rule: str,
    passed: bool,
    observed: Any,
    expected: Any,
    sample: tuple[dict[str, Any], ...] = (),
    violations: int | None = None,
) -> RuleResult:
    metrics = {"violations": float(violations)} if violations is not None else {}
    return RuleResult(rule, passed, contract.blocking(rule), observed, expected, sample, metrics)


def _utc(moment: dt.datetime) -> dt.datetime:
    """An aware datetime in UTC; naive ones are taken to be UTC already."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
