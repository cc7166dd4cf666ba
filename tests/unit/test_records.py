"""The JSON forms of records (`to_dict`), as the `--json` output of the command line prints them."""

from __future__ import annotations

import json

from cairn.core.governance import BackfillRecord, SnapshotRecord
from cairn.core.records import AttemptRecord, InputRef, LogRecord, Materialization, RunRecord, StepRecord

MAT = Materialization(
    asset="clean",
    partition="",
    cache_key="b3:key",
    data_version="b3:data",
    size=12,
    format="json",
    pytype="int",
    run_id="r1",
    attempt=1,
    code_version="b3:code",
    inputs=(InputRef("raw", "2026-06-01", "b3:raw"),),
    created_at=5.0,
)


def test_an_unpartitioned_record_has_a_null_partition_in_json() -> None:
    assert MAT.to_dict()["partition"] is None
    assert StepRecord("r1", "clean", "", "executed", "never materialized").to_dict()["partition"] is None
    assert AttemptRecord("r1", "clean", "", 1, "failed", 1.0).to_dict()["partition"] is None
    assert LogRecord("r1", "clean", "2026-06-01", 1, 2.0, "INFO", "hi").to_dict()["partition"] == "2026-06-01"


def test_a_materialization_gives_the_fields_asked_for_in_that_order() -> None:
    picked = MAT.to_dict("run_id", "partition", "data_version")
    assert list(picked) == ["run_id", "partition", "data_version"]
    assert picked == {"run_id": "r1", "partition": None, "data_version": "b3:data"}
    assert MAT.to_dict()["inputs"] == [{"asset": "raw", "partition": "2026-06-01", "data_version": "b3:raw"}]
    json.dumps(MAT.to_dict())  # the full form is JSON as it is


def test_a_run_record_has_a_short_form_and_one_with_details() -> None:
    run = RunRecord("r1", "succeeded", "*", 10.0, finished_at=12.5, args={"force": False}, environment={"os": "x"})
    assert list(run.to_dict()) == ["run_id", "status", "selection", "profile", "created_at", "finished_at"]
    assert run.to_dict(details=True) == {**run.to_dict(), "args": {"force": False}, "environment": {"os": "x"}}
    assert run.duration_s == 2.5 and RunRecord("r2", "running", "*", 10.0).duration_s is None


def test_attempts_leave_the_lease_token_out_and_logs_name_their_time_at() -> None:
    attempt = AttemptRecord("r1", "clean", "", 2, "failed", 1.0, 2.0, lease_token=9, error="boom")
    assert "lease_token" not in attempt.to_dict() and attempt.to_dict()["error"] == "boom"
    assert LogRecord("r1", "clean", "", 1, 2.0, "INFO", "hi").to_dict()["at"] == 2.0


def test_snapshot_and_backfill_records_use_the_command_line_names() -> None:
    assert SnapshotRecord("v1", 3.0, "clean", 6).to_dict() == {
        "name": "v1",
        "created_at": 3.0,
        "selection": "clean",
        "entries": 6,
    }
    record = BackfillRecord("bf-1", "clean", "2026-06-01", "2026-06-03", "running", 1.0, run_ids=("r1", "r2"))
    assert record.to_dict() == {
        "backfill_id": "bf-1",
        "selection": "clean",
        "from": "2026-06-01",
        "to": "2026-06-03",
        "status": "running",
        "runs": ["r1", "r2"],
    }
