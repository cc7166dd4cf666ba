"""The Python API of backfills: `cairn.backfill` starts or resumes one; `cairn.engine.backfill.status` reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

import cairn
from cairn.config import load_settings
from cairn.core.governance import BackfillRecord
from cairn.engine import backfill as backfills
from cairn.engine.api import open_stores
from cairn.errors import UsageError
from tests.conftest import ProjectFactory

# `scaled` fails on every partition named in the file `broken` (a data problem fixed outside the code).
PIPELINE = """
from pathlib import Path
from cairn import Context, asset, daily

DAYS = daily("2026-06-01", end="2026-06-05")
BROKEN = Path(__file__).with_name("broken")

@asset(partitions=DAYS, params={"factor": 1})
def scaled(ctx: Context) -> int:
    if BROKEN.exists() and ctx.partition in BROKEN.read_text().split():
        raise ValueError(f"bad data on {ctx.partition}")
    return int(ctx.partition[-2:]) * ctx.params["factor"]
"""

RANGE = ("2026-06-01", "2026-06-03")


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_project(PIPELINE)


def test_a_backfill_runs_the_range_and_records_itself_with_its_progress(project: Path) -> None:
    result = cairn.backfill("scaled", partition_range=RANGE, project=project)
    assert result.ok and result.status == "succeeded"
    assert sorted(s.partition for s in result.run.steps) == ["2026-06-01", "2026-06-02", "2026-06-03"]
    record = result.record
    assert record.backfill_id.startswith("bf-") and record.backfill_id == result.backfill_id
    assert (record.selection, record.first_key, record.last_key, record.status) == ("scaled", *RANGE, "succeeded")
    assert record.run_ids == (result.run.run_id,) and record.created_at > 0 and record.finished_at is not None
    assert result.progress.to_dict() == {"done": 3, "failed": 0, "total": 3}
    assert cairn.load("scaled", "2026-06-03", project=project) == 3
    assert result.to_dict() == {"backfill_id": record.backfill_id, **result.run.to_dict()}

    [shown] = backfills.status(project)
    assert shown.record == record and shown.progress == result.progress
    assert shown.to_dict() == {
        "backfill_id": record.backfill_id,
        "selection": "scaled",
        "from": "2026-06-01",
        "to": "2026-06-03",
        "status": "succeeded",
        "runs": [result.run.run_id],
        "done": 3,
        "failed": 0,
        "total": 3,
    }
    assert backfills.status(project, record.backfill_id[:10]) == [shown]
    assert backfills.find(project, "latest") == record


def test_resuming_a_partially_failed_backfill_executes_only_what_failed_with_the_recorded_params(
    project: Path,
) -> None:
    (project / "broken").write_text("2026-06-02")
    first = cairn.backfill("scaled", partition_range=RANGE, project=project, params={"scaled": {"factor": 10}})
    assert not first.ok and first.status == "failed"
    assert first.record.status == "failed" and first.progress.to_dict() == {"done": 2, "failed": 1, "total": 3}

    (project / "broken").unlink()
    resumed = cairn.backfill(resume=first.backfill_id[:12], project=project)
    assert resumed.ok and resumed.backfill_id == first.backfill_id
    executed = {s.partition for s in resumed.run.steps if s.status == "executed"}
    cached = {s.partition for s in resumed.run.steps if s.status == "cached"}
    assert (executed, cached) == ({"2026-06-02"}, {"2026-06-01", "2026-06-03"})
    assert resumed.record.run_ids == (first.run.run_id, resumed.run.run_id)
    assert resumed.record.status == "succeeded"
    assert resumed.progress.to_dict() == {"done": 3, "failed": 0, "total": 3}
    assert cairn.load("scaled", "2026-06-02", project=project) == 20  # the recorded factor, not the default


def test_a_record_written_with_raw_set_strings_resumes_with_those_params(project: Path) -> None:
    """Backfills recorded before params were kept parsed stored the `--set` strings; resuming reads them."""
    record = BackfillRecord(
        backfill_id="bf-legacy",
        selection="scaled",
        first_key="2026-06-01",
        last_key="2026-06-01",
        status="interrupted",
        created_at=0.0,
        options={"selection": ["scaled"], "set": ["scaled.factor=7"], "profile": None, "workers": None},
    )
    with open_stores(load_settings(project)) as stores:
        stores.meta.create_backfill(record)
    result = cairn.backfill(resume="bf-legacy", project=project)
    assert result.ok and cairn.load("scaled", "2026-06-01", project=project) == 7


def test_a_backfill_needs_either_a_range_or_a_backfill_to_resume(project: Path) -> None:
    with pytest.raises(UsageError, match="a backfill needs a range"):
        cairn.backfill("scaled", project=project)
    with pytest.raises(UsageError, match="runs the backfill with its recorded options; drop selection, profile"):
        cairn.backfill("scaled", resume="latest", profile="other", project=project)
    with pytest.raises(UsageError, match="no backfill matches 'bf-nope'"):
        cairn.backfill(resume="bf-nope", project=project)
    with pytest.raises(UsageError, match="recorded as JSON"):
        cairn.backfill("scaled", partition_range=RANGE, project=project, params={"scaled": {"factor": object()}})
    assert backfills.status(project) == []
