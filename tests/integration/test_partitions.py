"""Partitioned pipelines: daily sources, windows, late data, ranges and partition-aware context."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cairn
from cairn.errors import DefinitionError, UsageError
from tests.conftest import ProjectFactory

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
    assert result.ok
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
