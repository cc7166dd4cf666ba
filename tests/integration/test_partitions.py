"""Partitioned pipelines: daily sources, windows, late data, ranges and partition-aware context."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

import cairn
from cairn.errors import DefinitionError, UsageError
from tests.conftest import ProjectFactory, cli

CHAIN = """
from cairn import Context, Window, AllPartitions, asset, daily, source

DAYS = daily("2026-06-01", end="2026-06-15")

raw = source("raw", path="data/raw_{partition}.json", partitions=DAYS)

@asset(partitions=DAYS)
def clean(ctx: Context, raw: dict) -> dict:
    start, end = ctx.partition_window
    return {"day": ctx.partition, "hours": (end - start).total_seconds() / 3600, "n": len(raw["values"])}

@asset(partitions=DAYS, ins={"days": Window("clean", 7)})
def rolling(ctx: Context, days: dict) -> dict:
    return {"days": sorted(days), "n": sum(d["n"] for d in days.values())}

@asset(ins={"every": AllPartitions("rolling")})
def summary(every: dict) -> int:
    return sum(v["n"] for v in every.values())
"""


def write_raw(root: Path, day: str, values: list[int]) -> None:
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / f"raw_{day}.json").write_text(json.dumps({"values": values}))


def executed(result: cairn.materialize.__class__) -> set[str]:  # type: ignore[name-defined]
    return {f"{s.asset}@{s.partition}" if s.partition else s.asset for s in result.steps if s.status == "executed"}


@pytest.fixture
def chain(make_project: ProjectFactory) -> Path:
    root = make_project(CHAIN)
    for i in range(1, 15):
        write_raw(root, f"2026-06-{i:02d}", list(range(i)))
    return root


def test_window_and_all_partitions_inputs(chain: Path) -> None:
    result = cairn.materialize(project=chain)
    assert result.ok and result.count("executed") == 14 * 3 + 1
    rolling = cairn.load("rolling", "2026-06-10", project=chain)
    assert rolling["days"] == [f"2026-06-{d:02d}" for d in range(4, 11)]
    assert cairn.load("rolling", "2026-06-02", project=chain)["days"] == ["2026-06-01", "2026-06-02"]
    assert cairn.load("clean", "2026-06-03", project=chain)["hours"] == 24.0
    assert cairn.load("summary", project=chain) == sum(
        sum(i for i in range(max(1, d - 6), d + 1)) for d in range(1, 15)
    )


def test_correcting_one_raw_day_reruns_exactly_the_covering_windows(chain: Path) -> None:
    cairn.materialize(project=chain)
    write_raw(chain, "2026-06-05", [1, 2, 3, 4, 5, 6, 7, 8, 9])
    result = cairn.materialize(project=chain)
    assert executed(result) == {
        "raw@2026-06-05",
        "clean@2026-06-05",
        *(f"rolling@2026-06-{d:02d}" for d in range(5, 12)),
        "summary",
    }
    assert result["rolling@2026-06-08"].reason == "input changed: clean@2026-06-05"


def test_a_missing_raw_day_is_not_ready_and_skips_only_what_depends_on_it(make_project: ProjectFactory) -> None:
    root = make_project(CHAIN)
    for i in (1, 2, 4):
        write_raw(root, f"2026-06-{i:02d}", [i])
    result = cairn.materialize("clean", project=root, partition_range=("2026-06-01", "2026-06-04"))
    assert result.status == "partial" and not result.ok
    assert [f"{s.asset}@{s.partition}" for s in result.not_ready] == ["raw@2026-06-03", "clean@2026-06-03"]
    assert result["clean@2026-06-03"].not_ready == "raw@2026-06-03"
    assert result["raw@2026-06-03"].status == "skipped"
    assert result["raw@2026-06-03"].reason.startswith("source not ready:")
    assert result["clean@2026-06-03"].reason == "upstream not ready: raw@2026-06-03"
    assert executed(result) == {f"{a}@2026-06-0{i}" for a in ("raw", "clean") for i in (1, 2, 4)}


def test_single_partition_and_ranges(chain: Path) -> None:
    one = cairn.materialize("rolling", project=chain, partition="2026-06-09")
    assert {s.partition for s in one.steps if s.asset == "rolling"} == {"2026-06-09"}
    assert {s.partition for s in one.steps if s.asset == "clean"} == {f"2026-06-{d:02d}" for d in range(3, 10)}
    with pytest.raises(UsageError, match="partition '2026-07-01' is outside daily from 2026-06-01 to 2026-06-15"):
        cairn.materialize("rolling", project=chain, partition="2026-07-01")
    with pytest.raises(UsageError, match="is not allowed|outside"):
        cairn.materialize("rolling", project=chain, partition="../../etc")
    with pytest.raises(UsageError, match="no selected asset is partitioned"):
        cairn.materialize("summary", project=chain, partition="2026-06-01")


def test_old_materializations_stay_readable_after_a_rerun(chain: Path) -> None:
    first = cairn.materialize(project=chain)
    old = first["clean@2026-06-05"].data_version
    write_raw(chain, "2026-06-05", [9, 9])
    cairn.materialize(project=chain)
    digest = (old or "").removeprefix("b3:")
    assert (chain / ".cairn" / "artifacts" / "objects" / digest[:2] / digest[2:]).exists()


def test_partition_mappings_that_do_not_fit_are_definition_errors(make_project: ProjectFactory) -> None:
    text = """
        from cairn import asset, daily, static

        @asset(partitions=daily("2026-06-01"))
        def a() -> int:
            return 1

        @asset(partitions=static("us", "eu"))
        def b(a: int) -> int:
            return a
        """
    root = make_project(text)
    with pytest.raises(DefinitionError, match="partitions do not fit: 'a' is daily from 2026-06-01, 'b' is static"):
        cairn.materialize(project=root)


def test_unpartitioned_consumer_must_map_a_partitioned_input(make_project: ProjectFactory) -> None:
    text = """
        from cairn import asset, daily

        @asset(partitions=daily("2026-06-01"))
        def a() -> int:
            return 1

        @asset
        def b(a: int) -> int:
            return a
        """
    with pytest.raises(DefinitionError, match=r"map it with ins=\{'a': AllPartitions\('a'\)\} or Latest\('a'\)"):
        cairn.materialize(project=make_project(text))


LATEST = """
from cairn import Latest, asset, daily, source

DAYS = daily("2026-06-01", end="2026-06-04")

raw = source("raw", path="data/raw_{partition}.json", partitions=DAYS)

@asset(partitions=DAYS)
def clean(raw: dict) -> list:
    return raw["values"]

@asset(ins={"newest": Latest("raw")})
def newest_raw(newest: dict) -> list:
    return newest["values"]

@asset(ins={"newest": Latest("clean")})
def newest_clean(newest: list) -> list:
    return newest
"""


def test_latest_reads_the_newest_partition_that_exists_and_moves_when_late_data_lands(
    make_project: ProjectFactory,
) -> None:
    root = make_project(LATEST)
    write_raw(root, "2026-06-01", [1])
    write_raw(root, "2026-06-02", [2])
    first = cairn.materialize(["newest_raw", "newest_clean"], project=root)
    assert first.status == "succeeded"
    assert first["newest_raw"].status == "executed" and first["newest_clean"].status == "executed"
    assert cairn.load("newest_raw", project=root) == [2] and cairn.load("newest_clean", project=root) == [2]
    assert "raw@2026-06-03" not in {f"{s.asset}@{s.partition}" for s in first.steps}
    fresh = json.loads(cli("status", "newest_raw", "newest_clean", "-C", str(root), "--json").stdout)
    assert {r["asset"]: r["state"] for r in fresh if r["partition"] is None} == {
        "newest_raw": "fresh",
        "newest_clean": "fresh",
    }

    write_raw(root, "2026-06-03", [3])
    stale = json.loads(cli("status", "newest_raw", "newest_clean", "-C", str(root), "--json").stdout)
    assert {r["asset"]: r["state"] for r in stale if r["partition"] is None} == {
        "newest_raw": "stale",
        "newest_clean": "stale",
    }
    planned = json.loads(cli("plan", "newest_raw", "-C", str(root), "--json").stdout)["steps"]
    assert [(s["asset"], s["partition"], s["action"]) for s in planned] == [
        ("raw", "2026-06-03", "run"),
        ("newest_raw", None, "run"),
    ]
    why = json.loads(cli("why", "newest_raw", "-C", str(root), "--json").stdout)
    assert not why["fresh"] and "raw@2026-06-03" in json.dumps(why["upstream"])
    second = cairn.materialize(["newest_raw", "newest_clean"], project=root)
    assert second["newest_raw"].status == "executed"
    assert cairn.load("newest_raw", project=root) == [3] and cairn.load("newest_clean", project=root) == [3]


PARTIAL = CHAIN.replace('end="2026-06-15"', 'end="2026-06-04"')


def test_a_run_with_not_ready_partitions_is_partial_and_exits_3(make_project: ProjectFactory) -> None:
    root = make_project(PARTIAL)
    for day in ("2026-06-01", "2026-06-02"):
        write_raw(root, day, [1])
    run = cli("run", "clean", "-C", str(root))
    assert run.returncode == 3, run.stdout + run.stderr
    assert "partial" in run.stdout
    assert "2 skipped because data is not ready: raw@2026-06-03, clean@2026-06-03 (needs raw@2026-06-03)" in run.stdout
    assert "not ready yet" in run.stderr
    as_json = cli("run", "clean", "-C", str(root), "--json")
    assert as_json.returncode == 3
    body = json.loads(as_json.stdout)
    assert body["status"] == "partial"
    assert {s["partition"]: s.get("not_ready") for s in body["steps"] if s["asset"] == "clean"}["2026-06-03"] == (
        "raw@2026-06-03"
    )
    runs = cli("runs", "-C", str(root), "--json")
    assert runs.returncode == 0 and [r["status"] for r in json.loads(runs.stdout)][:2] == ["partial", "partial"]

    write_raw(root, "2026-06-03", [1])
    done = cli("run", "clean", "-C", str(root))
    assert done.returncode == 0 and "succeeded" in done.stdout


def test_a_failure_still_exits_1_when_other_partitions_are_not_ready(make_project: ProjectFactory) -> None:
    root = make_project(PARTIAL.replace('"n": len(raw["values"])', '"n": 1 / (ctx.partition != "2026-06-01")'))
    write_raw(root, "2026-06-01", [1])
    run = cli("run", "clean", "-C", str(root))
    assert run.returncode == 1 and "failed" in run.stdout


def test_a_partial_backfill_exits_3_and_resuming_it_picks_up_the_late_data(make_project: ProjectFactory) -> None:
    root = make_project(PARTIAL)
    write_raw(root, "2026-06-01", [1])
    write_raw(root, "2026-06-02", [1])
    first = cli("backfill", "clean", "--from", "2026-06-01", "--to", "2026-06-03", "-C", str(root), "--json")
    assert first.returncode == 3, first.stdout + first.stderr
    backfill_id = json.loads(first.stdout)["backfill_id"]
    status = cli("backfill", "status", "-C", str(root), "--json")
    assert [b["status"] for b in json.loads(status.stdout)] == ["partial"]
    write_raw(root, "2026-06-03", [1])
    again = cli("backfill", "resume", backfill_id, "-C", str(root), "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    executed_now = {s["partition"] for s in json.loads(again.stdout)["steps"] if s["status"] == "executed"}
    assert executed_now == {"2026-06-03"}
    assert [b["status"] for b in json.loads(cli("backfill", "status", "-C", str(root), "--json").stdout)] == [
        "succeeded"
    ]


HOURS = """
from cairn import Context, TimeWindow, asset, daily, hourly, source

HOURS = hourly("2026-03-29", end="2026-03-30", timezone="Europe/Berlin")
hours = source("hours", path="data/h_{partition}.json", partitions=HOURS)

@asset(partitions=daily("2026-03-29", end="2026-03-30", timezone="Europe/Berlin"), ins={"x": TimeWindow("hours")})
def day(ctx: Context, x: dict) -> dict:
    return {"hours": len(x), "first": min(x), "total": sum(v["n"] for v in x.values())}

@asset(partitions=HOURS, ins={"d": TimeWindow("day")})
def share(ctx: Context, d: dict, hours: dict) -> float:
    return hours["n"] / d["total"]
"""


def test_time_window_daily_over_hourly_reads_its_23_hours_on_a_dst_day(make_project: ProjectFactory) -> None:
    from cairn.core.partitions import hourly

    root = make_project(HOURS)
    (root / "data").mkdir()
    keys = hourly("2026-03-29", end="2026-03-30", timezone="Europe/Berlin").keys(datetime(2027, 1, 1, tzinfo=UTC))
    for key in keys:
        (root / "data" / f"h_{key}.json").write_text(json.dumps({"n": 1}))
    result = cairn.materialize(project=root)
    assert result.status == "succeeded"
    assert cairn.load("day", "2026-03-29", project=root) == {"hours": 23, "first": "2026-03-29T00+01:00", "total": 23}
    assert cairn.load("share", keys[5], project=root) == 1 / 23
