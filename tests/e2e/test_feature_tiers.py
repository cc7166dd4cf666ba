"""The tiered feature pipeline of examples/feature_tiers, end to end through the command line at a small scale.

The story follows the landing zone's clock (generate.py --until): a first run while one payments day and
the newest CRM snapshot have not landed, the late files landing, a corrected CRM snapshot, param changes,
and broken payments files that must fail closed at the tier whose contract they break.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import cairn
from tests.conftest import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "feature_tiers"
SCALE = ("--accounts", "40", "--per-day", "80")
DAYS = [f"2026-06-{day:02d}" for day in range(1, 15)]
PARTITIONED = ("raw_transactions", "raw_accounts", "clean_transactions", "clean_accounts")
DERIVED = ("enriched_transactions", "account_features")
EVERY_STEP = {f"{asset}@{day}" for asset in PARTITIONED + DERIVED for day in DAYS} | {"feature_table"}

LATE_PAYMENTS = "2026-06-05"  # replayed after an outage, lands at 2026-06-15 11:00
NEWEST = "2026-06-14"  # its CRM snapshot lands the next morning, 08:00
CORRECTED = "2026-06-03"  # the CRM re-delivers it at 2026-06-15 14:00


def days(first: str, last: str) -> list[str]:
    return [day for day in DAYS if first <= day <= last]


def features(first: str, last: str) -> set[str]:
    return {f"account_features@{day}" for day in days(first, last)}


# What the first run (2026-06-15 06:00) cannot do yet: the late payments day with everything reading it
# (its enriched day and the 7-day windows covering it), and the newest day, whose enriched rows need that
# day's CRM snapshot.
NOT_READY_PAYMENTS = {
    f"raw_transactions@{LATE_PAYMENTS}",
    f"clean_transactions@{LATE_PAYMENTS}",
    f"enriched_transactions@{LATE_PAYMENTS}",
    *features(LATE_PAYMENTS, "2026-06-11"),
}
NOT_READY_CRM = {
    f"raw_accounts@{NEWEST}",
    f"clean_accounts@{NEWEST}",
    f"enriched_transactions@{NEWEST}",
    f"account_features@{NEWEST}",
}


def land(root: Path, *args: str) -> str:
    """Run the example's generator in the project folder (the landing zone at a time, or a broken file)."""
    done = subprocess.run(
        [sys.executable, "generate.py", *SCALE, *args], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def run(root: Path, *args: str, expect: int = 0) -> dict[str, Any]:
    done = cli("-C", str(root), "run", "--json", *args)
    assert done.returncode == expect, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def with_status(result: dict[str, Any], status: str) -> set[str]:
    return {_name(step) for step in result["steps"] if step["status"] == status}


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {_name(step): step for step in result["steps"]}


def _name(step: dict[str, Any]) -> str:
    return f"{step['asset']}@{step['partition']}" if step["partition"] else step["asset"]


def status(root: Path) -> dict[str, dict[str, Any]]:
    done = cli("-C", str(root), "status", "--json")
    assert done.returncode == 0, done.stderr
    return {_name(row): row for row in json.loads(done.stdout)}


def copy_project(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The example copied to a temporary folder, its data landed as of 2026-06-15 06:00, and run once."""
    root = tmp_path_factory.mktemp("first") / "feature_tiers"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("data", ".cairn", "__pycache__"))
    land(root)
    return root, run(root, expect=3)


@pytest.fixture(scope="module")
def caught_up(
    first: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """A copy of the first run's project after the late CRM snapshot (09:00) and payments day (12:00) landed."""
    root = copy_project(first[0], tmp_path_factory.mktemp("caught_up") / "feature_tiers")
    land(root, "--until", "2026-06-15T09:00")
    crm = run(root, expect=3)  # payments of the late day have not landed yet
    land(root, "--until", "2026-06-15T12:00")
    payments = run(root)
    return root, crm, payments


def test_first_run_executes_every_ready_step_and_skips_what_has_not_landed(
    first: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, result = first
    not_ready = NOT_READY_PAYMENTS | NOT_READY_CRM | {"feature_table"}
    assert result["status"] == "partial"
    assert {_name(step) for step in result["steps"] if step.get("not_ready")} == not_ready
    assert with_status(result, "executed") == EVERY_STEP - not_ready
    assert with_status(result, "skipped") == not_ready
    steps = by_name(result)
    assert steps[f"raw_transactions@{LATE_PAYMENTS}"]["reason"].startswith("source not ready:")
    assert steps[f"raw_accounts@{NEWEST}"]["reason"].startswith("source not ready:")
    assert steps["account_features@2026-06-11"]["reason"] == f"upstream not ready: raw_transactions@{LATE_PAYMENTS}"
    assert steps[f"enriched_transactions@{NEWEST}"]["reason"] == f"upstream not ready: raw_accounts@{NEWEST}"
    rows = status(root)
    assert rows[f"raw_transactions@{LATE_PAYMENTS}"]["state"] == "missing"
    assert rows[f"raw_transactions@{LATE_PAYMENTS}"]["reason"].startswith("source not ready:")

    again = run(copy_project(root, tmp_path / "again"), expect=3)
    assert again["status"] == "partial"
    assert with_status(again, "executed") == set()
    assert with_status(again, "cached") == EVERY_STEP - not_ready
    assert with_status(again, "skipped") == not_ready


def test_late_files_execute_exactly_their_partitions_and_the_windows_covering_them(
    caught_up: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, crm, payments = caught_up
    assert crm["status"] == "partial"
    assert with_status(crm, "executed") == NOT_READY_CRM
    assert with_status(crm, "skipped") == NOT_READY_PAYMENTS | {"feature_table"}
    assert by_name(crm)[f"raw_accounts@{NEWEST}"]["reason"] == "never materialized"

    assert payments["status"] == "succeeded"
    assert with_status(payments, "executed") == NOT_READY_PAYMENTS | {"feature_table"}
    assert with_status(payments, "skipped") == set()
    assert with_status(payments, "cached") == EVERY_STEP - NOT_READY_PAYMENTS - {"feature_table"}


def test_a_corrected_snapshot_makes_exactly_the_partitions_that_read_it_stale(
    caught_up: tuple[Path, dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    root = copy_project(caught_up[0], tmp_path / "corrected")
    before = status(root)
    assert {name for name, row in before.items() if row["state"] != "fresh"} == set()
    warned = {c["rule"] for c in before[f"enriched_transactions@{CORRECTED}"]["checks"] if not c["passed"]}
    assert warned == {"few_payments_above_the_credit_limit"}  # the first delivery had limits in thousands

    assert f"landing/crm/accounts_{CORRECTED}.csv" in land(root, "--until", "2026-06-15T15:00")
    # The snapshot of 06-03 serves payments from 06-03 18:00 to 06-04 18:00: two enriched days, and the
    # 7-day windows that hold either of them.
    affected = {
        f"raw_accounts@{CORRECTED}",
        f"clean_accounts@{CORRECTED}",
        "enriched_transactions@2026-06-03",
        "enriched_transactions@2026-06-04",
        *features("2026-06-03", "2026-06-10"),
        "feature_table",
    }
    stale = status(root)
    assert {name for name, row in stale.items() if row["state"] == "stale"} == affected
    assert {name for name, row in stale.items() if row["state"] != "fresh"} == affected

    why = cli("-C", str(root), "why", "account_features@2026-06-08", "--json")
    assert why.returncode == 0, why.stderr
    explained = json.loads(why.stdout)
    assert explained["fresh"] is False
    assert explained["upstream"] == [
        {"step": f"raw_accounts@{CORRECTED}", "reason": f"source changed: raw_accounts@{CORRECTED}"}
    ]

    result = run(root)
    assert with_status(result, "executed") == affected
    after = status(root)
    assert all(row["state"] == "fresh" for row in after.values())
    assert all(c["passed"] for c in after[f"enriched_transactions@{CORRECTED}"]["checks"])


def test_param_changes_rerun_exactly_the_steps_they_change(
    caught_up: tuple[Path, dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    root = copy_project(caught_up[0], tmp_path / "params")
    narrower = run(root, "--set", "account_features.window_days=3")
    assert with_status(narrower, "executed") == features(DAYS[0], DAYS[-1]) | {"feature_table"}
    assert by_name(narrower)["account_features@2026-06-09"]["reason"] == "param changed: window_days 7→3"

    # No payment waits more than 24 h for a snapshot, so a 30-hour limit changes no enriched row: the
    # enriched days re-execute and, their bytes unchanged, everything downstream stays cached.
    tighter = run(root, "--set", "enriched_transactions.snapshot_max_age_hours=30")
    assert with_status(tighter, "executed") == {f"enriched_transactions@{day}" for day in DAYS}
    assert with_status(tighter, "cached") == EVERY_STEP - with_status(tighter, "executed")

    back = run(root)
    assert with_status(back, "executed") == set()


def test_broken_payments_files_fail_closed_at_their_tier_and_keep_the_previous_results(
    caught_up: tuple[Path, dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    root = copy_project(caught_up[0], tmp_path / "broken")
    day = "2026-06-09"
    downstream = {f"enriched_transactions@{day}", *features(day, DAYS[-1]), "feature_table"}
    published = status(root)
    previous = cairn.load("account_features", "2026-06-10", project=root)

    land(root, "--corrupt", "schema", day)  # amounts formatted as money: the raw schema breaks
    result = run(root, expect=1)
    assert result["status"] == "failed"
    assert with_status(result, "failed") == {f"raw_transactions@{day}"}
    assert with_status(result, "skipped") == {f"clean_transactions@{day}"} | downstream
    error = by_name(result)[f"raw_transactions@{day}"]["error"]
    assert error.startswith(f"ContractViolation: asset 'raw_transactions@{day}' broke its contract")
    assert "amount.type: expected float64, observed string" in error

    land(root, "--corrupt", "values", day)  # chargebacks as negative amounts: parses, but cleansing refuses
    result = run(root, expect=1)
    assert with_status(result, "executed") == {f"raw_transactions@{day}"}
    assert with_status(result, "failed") == {f"clean_transactions@{day}"}
    assert with_status(result, "skipped") == downstream
    assert "amount.min: expected >= 0" in by_name(result)[f"clean_transactions@{day}"]["error"]

    after = status(root)
    for name in (f"clean_transactions@{day}", *downstream):
        assert after[name]["data_version"] == published[name]["data_version"], name
    assert cairn.load("account_features", "2026-06-10", project=root).equals(previous)

    land(root, "--until", "2026-06-15T12:00")  # the payments system re-delivers the good file
    restored = run(root)
    assert with_status(restored, "executed") == set()
    assert with_status(restored, "cached") == EVERY_STEP
