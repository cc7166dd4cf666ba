"""pandera schemas accepted in place of a `Contract`: validated lazily, each failed check one `RuleResult`."""

from __future__ import annotations

from typing import Any

from cairn.core.contracts import RuleResult
from cairn.quality.arrow import SAMPLE_ROWS, json_value, to_arrow


def evaluate_pandera(schema: Any, value: Any) -> list[RuleResult]:
    """Validate an output with a pandera schema, lazily (every check runs).

    A polars schema (``pandera.polars``) gets a polars DataFrame, any other schema a pandas DataFrame; the
    output is converted when it is another kind of table. Every pandera rule is blocking.

    Returns:
        One failed `RuleResult` per failed check, named ``pandera.<column>.<check>`` (``pandera.<check>`` for a
        check of the whole frame), with the number of failure cases observed and a sample of them; or a
        single passed result named ``pandera`` when every check passed.
    """
    from pandera.errors import SchemaErrors

    frame = _frame_for(schema, value)
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        records = cases.to_pandas() if hasattr(cases, "to_pandas") else cases
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in records.to_dict("records"):
            column, check = row.get("column"), row.get("check")
            name = f"pandera.{column}.{check}" if _present(column) else f"pandera.{check}"
            groups.setdefault(name, []).append(row)
        return [
            RuleResult(
                name,
                False,
                True,
                observed=len(rows),
                expected=str(rows[0].get("check")),
                sample=tuple(
                    {"index": json_value(_clean(r.get("index"))), "failure_case": json_value(_clean(r["failure_case"]))}
                    for r in rows[:SAMPLE_ROWS]
                ),
                metrics={"violations": float(len(rows))},
            )
            for name, rows in groups.items()
        ]
    title = getattr(schema, "name", None) or type(schema).__name__
    return [RuleResult("pandera", True, True, observed="all checks passed", expected=title)]


def _frame_for(schema: Any, value: Any) -> Any:
    """The output as the DataFrame kind the pandera schema validates (polars or pandas)."""
    polars_schema = ".polars." in type(schema).__module__
    wanted = "polars" if polars_schema else "pandas"
    if type(value).__module__.split(".")[0] == wanted:
        return value
    table = to_arrow(value)
    if polars_schema:
        import polars as pl

        return pl.from_arrow(table)
    return table.to_pandas()


def _present(value: Any) -> bool:
    return value is not None and value == value  # pandas gives NaN for a missing column name


def _clean(value: Any) -> Any:
    return None if value is not None and value != value else value
