"""Contracts and checks in the engine: fail closed before publishing, warn without blocking, check early."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cairn
from cairn.errors import DefinitionError
from tests.conftest import ProjectFactory, cli, set_pipeline

PIPELINE = """
import pandas as pd
import polars as pl
import pyarrow as pa
from cairn import CheckResult, Contract, Drift, Retry, asset, check, col, drift_check

PRICES = [1.0, 2.0, 3.0]
KIND = "pandas"

def frame():
    data = {"event_id": [1, 2, 3], "price": PRICES}
    if KIND == "polars":
        return pl.DataFrame(data)
    if KIND == "arrow":
        return pa.table(data)
    return pd.DataFrame(data)

@asset(
    retry=Retry(max_attempts=3, backoff=0.01),
    contract=Contract(
        columns={"event_id": col("int64", nullable=False), "price": col("float64", min=0)},
        unique=["event_id"],
        rows=(1, None),
    ),
)
def events():
    return frame()

@asset
def total(events: pd.DataFrame) -> float:
    return float(events["price"].sum())
"""


def statuses(result: cairn.materialize.__class__) -> dict[str, str]:  # type: ignore[name-defined]
    return {s.asset: s.status for s in result.steps}


@pytest.mark.parametrize("kind", ["pandas", "polars", "arrow"])
def test_a_blocking_violation_fails_closed_and_keeps_the_previous_version(
    make_project: ProjectFactory, kind: str
) -> None:
    root = make_project(PIPELINE.replace('KIND = "pandas"', f'KIND = "{kind}"'))
    assert cairn.materialize(project=root).ok
    set_pipeline(
        root, PIPELINE.replace('KIND = "pandas"', f'KIND = "{kind}"').replace("[1.0, 2.0, 3.0]", "[1.0, -2.5, 3.0]")
    )
    result = cairn.materialize(project=root)
    assert statuses(result) == {"events": "failed", "total": "skipped"}
    error = result["events"].error or ""
    assert "ContractViolation: asset 'events' broke its contract; nothing was published" in error
    assert "price.min" in error and "-2.5" in error
    assert result["events"].attempts == 1  # not retried
    assert cairn.load("total", project=root) == 6.0  # the previous materialization stays current


def test_warnings_are_recorded_and_do_not_block(make_project: ProjectFactory) -> None:
    text = PIPELINE.replace("rows=(1, None),", 'rows=(10, None), warn=["rows"],')
    root = make_project(text)
    result = cairn.materialize(project=root)
    assert result.ok and statuses(result) == {"events": "executed", "total": "executed"}
    out = subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", "-C", str(root), "status", "--json"], capture_output=True, text=True
    )
    checks = {row["asset"]: row["checks"] for row in json.loads(out.stdout)}
    rows_rule = [r for r in checks["events"] if r["rule"] == "rows"]
    assert rows_rule and rows_rule[0]["passed"] is False and rows_rule[0]["blocking"] is False
    text_status = subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", "-C", str(root), "status"], capture_output=True, text=True
    ).stdout
    assert "1 warning" in text_status


def test_custom_checks_block_or_warn(make_project: ProjectFactory) -> None:
    text = (
        PIPELINE
        + """
@check("events", blocking=True)
def enough_revenue(df) -> CheckResult:
    return CheckResult(df["price"].sum() > 100, {"revenue": float(df["price"].sum())}, "revenue too low")

@check("events", blocking=False)
def has_three(df) -> bool:
    return len(df) == 3
"""
    )
    root = make_project(text)
    result = cairn.materialize(project=root)
    assert statuses(result) == {"events": "failed", "total": "skipped"}
    assert "CheckFailed: asset 'events' failed a blocking check" in (result["events"].error or "")
    set_pipeline(root, text.replace("> 100", "> 1"))
    assert cairn.materialize(project=root).ok


def test_drift_compares_with_the_previous_materialization(make_project: ProjectFactory) -> None:
    text = PIPELINE + '\nchecks = [drift_check("events", Drift("price", max_psi=0.1, blocking=True))]\n'
    root = make_project(
        text.replace("PRICES = [1.0, 2.0, 3.0]", "PRICES = [float(i % 10) for i in range(1000)]").replace(
            '"event_id": [1, 2, 3]', '"event_id": list(range(1000))'
        )
    )
    assert cairn.materialize(project=root).ok  # nothing to compare with yet
    shifted = text.replace("PRICES = [1.0, 2.0, 3.0]", "PRICES = [float(i % 10) + 50 for i in range(1000)]")
    set_pipeline(root, shifted.replace('"event_id": [1, 2, 3]', '"event_id": list(range(1000))'))
    result = cairn.materialize(project=root)
    assert result["events"].status == "failed" and "drift_price" in (result["events"].error or "")


DAILY = """
import pandas as pd
from cairn import Drift, Snapshot, asset, daily, drift_check

SHIFTED = ["2026-06-02"]

@asset(partitions=daily("2026-06-01", "2026-06-03"))
def prices(ctx):
    shift = 50.0 if ctx.partition in SHIFTED else 0.0
    return pd.DataFrame({"price": [float(i % 10) + shift for i in range(1000)]})

checks = [drift_check("prices", Drift("price", max_psi=0.1, blocking=True, reference=REFERENCE))]
"""


def test_drift_against_the_previous_partition_fails_the_day_whose_distribution_shifted(
    make_project: ProjectFactory,
) -> None:
    """Both days in one run: day 2 waits for day 1 and is compared with it, not with its own (absent) past."""
    root = make_project(DAILY.replace("REFERENCE", '"previous_partition"'), executor="thread")
    result = cairn.materialize(project=root)
    assert result["prices@2026-06-01"].status == "executed"
    assert result["prices@2026-06-02"].status == "failed" and result["prices@2026-06-02"].attempts == 1
    error = result["prices@2026-06-02"].error or ""
    assert "ContractViolation: asset 'prices@2026-06-02' broke its contract; nothing was published" in error
    assert "against previous_partition: prices@2026-06-01" in error
    with pytest.raises(Exception, match="2026-06-02"):
        cairn.load("prices", partition="2026-06-02", project=root)
    out = cli("-C", str(root), "status", "--json")
    checks = [c for row in json.loads(out.stdout) for c in row.get("checks") or [] if c["rule"] == "drift_price"]
    assert checks and checks[0]["observed"] == "nothing to compare with: 2026-06-01 is the first partition"


def test_drift_against_a_snapshot_compares_with_the_pinned_version(make_project: ProjectFactory) -> None:
    root = make_project(
        DAILY.replace("REFERENCE", 'Snapshot("baseline")').replace('SHIFTED = ["2026-06-02"]', "SHIFTED = []")
    )
    assert cairn.materialize(project=root, partition="2026-06-01").ok is False  # no such snapshot yet: fails closed
    set_pipeline(root, DAILY.replace("REFERENCE", '"previous"').replace('SHIFTED = ["2026-06-02"]', "SHIFTED = []"))
    assert cairn.materialize(project=root, partition="2026-06-01").ok
    assert cli("-C", str(root), "snapshot", "create", "baseline", "prices").returncode == 0
    set_pipeline(root, DAILY.replace("REFERENCE", '"snapshot:baseline"'))
    result = cairn.materialize(project=root, partition="2026-06-02")
    error = result["prices@2026-06-02"].error or ""
    assert result["prices@2026-06-02"].status == "failed" and "ContractViolation" in error
    assert "against snapshot:baseline: prices@2026-06-01" in error
    with pytest.raises(Exception, match="2026-06-02"):
        cairn.load("prices", partition="2026-06-02", project=root)


def test_static_requirements_are_checked_before_anything_runs(make_project: ProjectFactory) -> None:
    text = PIPELINE.replace("@asset\ndef total(", '@asset(requires={"events": {"price": "int64"}})\ndef total(')
    root = make_project(text)
    with pytest.raises(
        DefinitionError, match="asset 'total' requires price: int64 from 'events', but 'events' declares price: float64"
    ):
        cairn.materialize(project=root)
    assert not (root / ".cairn" / "artifacts").exists()
    nullable = PIPELINE.replace('col("float64", min=0)', 'col("float64")').replace(
        "@asset\ndef total(", '@asset(requires={"events": {"price": col("float64", nullable=False)}})\ndef total('
    )
    set_pipeline(root, nullable)
    with pytest.raises(DefinitionError, match="which may hold nulls"):
        cairn.materialize(project=root)
    missing = PIPELINE.replace("@asset\ndef total(", '@asset(requires={"events": {"amount": "float64"}})\ndef total(')
    set_pipeline(root, missing)
    with pytest.raises(DefinitionError, match="has no column 'amount'"):
        cairn.materialize(project=root)


def test_a_source_that_breaks_its_contract_is_not_ready(make_project: ProjectFactory) -> None:
    text = """
import pyarrow as pa
from cairn import Contract, asset, col, source

raw = source("raw", path="data/raw.csv", contract=Contract(columns={"price": col("float64", min=0)}))

@asset
def n(raw: pa.Table) -> int:
    return raw.num_rows
"""
    root = make_project(text)
    (root / "data").mkdir()
    (root / "data" / "raw.csv").write_text("price\n1.5\n-2.0\n")
    result = cairn.materialize(project=root)
    assert statuses(result) == {"raw": "failed", "n": "skipped"}
    assert "ContractViolation" in (result["raw"].error or "")
    (root / "data" / "raw.csv").write_text("price\n1.5\n2.0\n")
    assert cairn.materialize(project=root).ok and cairn.load("n", project=root) == 2


def test_a_check_for_an_unknown_asset_is_a_definition_error(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project(PIPELINE + '\n@check("evnts")\ndef c(df) -> bool:\n    return True\n')
    with pytest.raises(
        DefinitionError, match="check 'c' is defined for asset 'evnts', which does not exist. Did you mean 'events'"
    ):
        cairn.materialize(project=root)


@pytest.mark.parametrize("kind", ["pandas", "polars", "arrow"])
def test_an_output_under_contract_is_stored_as_without_one_and_checks_see_its_own_type(
    make_project: ProjectFactory, kind: str
) -> None:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

    from cairn.io import dump
    from cairn.storage.memory import MemoryArtifactStore

    made = {"pandas": pd.DataFrame, "polars": pl.DataFrame, "arrow": pa.table}[kind]
    module = made.__module__.split(".")[0]
    text = PIPELINE.replace('KIND = "pandas"', f'KIND = "{kind}"') + (
        f"\n@check('events', blocking=True)\ndef own_type(df) -> bool:\n"
        f"    return type(df).__module__.startswith('{module}')\n"
    )
    root = make_project(text)
    result = cairn.materialize(project=root)
    assert result.ok, result["events"].error
    plain = dump(made({"event_id": [1, 2, 3], "price": [1.0, 2.0, 3.0]}), MemoryArtifactStore())
    assert result["events"].data_version == plain.data_version


INDEXED = """
import pandas as pd
from cairn import Contract, asset, col

@asset(contract=Contract(columns={"v": col("float64", min=0)}, rows=(3, 3)))
def keyed() -> pd.DataFrame:
    return pd.DataFrame({"v": [0.5, 1.5, 2.5]}, index=pd.Index(["a", "b", "c"], name="key"))

@asset(contract=Contract(columns={"key": col("string")}))
def index_is_no_column() -> pd.DataFrame:
    return pd.DataFrame({"v": [0.5]}, index=pd.Index(["a"], name="key"))
"""


def test_a_pandas_output_with_an_index_is_converted_once_and_its_contract_sees_only_its_columns(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    import cairn.quality.contracts as contracts

    evaluated: list[str] = []
    to_arrow = contracts.to_arrow

    def already_arrow(value: object) -> object:
        evaluated.append(type(value).__module__.split(".")[0])
        return to_arrow(value)

    monkeypatch.setattr(contracts, "to_arrow", already_arrow)
    root = make_project(INDEXED)  # inline: the step jobs run in this process
    result = cairn.materialize(project=root)
    assert evaluated == ["pyarrow", "pyarrow"]  # the Arrow table written, not a second conversion
    assert result["keyed"].status == "executed"
    expected = pd.DataFrame({"v": [0.5, 1.5, 2.5]}, index=pd.Index(["a", "b", "c"], name="key"))
    pd.testing.assert_frame_equal(cairn.load("keyed", project=root), expected)
    assert result["index_is_no_column"].status == "failed"
    assert "ContractViolation" in (result["index_is_no_column"].error or "")
    assert "key" in (result["index_is_no_column"].error or "")
