"""Partition definitions: keys, DST-safe time windows, validation, and input mappings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cairn.core.asset import asset
from cairn.core.graph import build_graph
from cairn.core.keys import StepId
from cairn.core.partitions import (
    AllPartitions,
    Latest,
    Window,
    check_key,
    daily,
    hourly,
    key_range,
    monthly,
    product,
    static,
    weekly,
)
from cairn.core.steps import expand
from cairn.errors import DefinitionError, UsageError

LATER = datetime(2027, 1, 1, tzinfo=UTC)


def test_daily_keys_stop_at_the_last_complete_day() -> None:
    days = daily("2026-06-01")
    assert days.keys(datetime(2026, 6, 4, 0, 30, tzinfo=UTC)) == ["2026-06-01", "2026-06-02", "2026-06-03"]
    assert days.keys(datetime(2026, 6, 1, 12, tzinfo=UTC)) == []


def test_spring_forward_day_has_23_hourly_keys_and_fall_back_day_25_distinct_keys() -> None:
    spring = hourly("2026-03-29", end="2026-03-30", timezone="Europe/Berlin").keys(LATER)
    assert len(spring) == 23
    assert spring[1:3] == ["2026-03-29T01+01:00", "2026-03-29T03+02:00"]
    autumn = hourly("2026-10-25", end="2026-10-26", timezone="Europe/Berlin").keys(LATER)
    assert len(autumn) == len(set(autumn)) == 25
    assert autumn[2:4] == ["2026-10-25T02+02:00", "2026-10-25T02+01:00"]


def test_utc_hourly_keys_have_no_offset() -> None:
    assert hourly("2026-06-01T22", end="2026-06-02T01").keys(LATER) == [
        "2026-06-01T22",
        "2026-06-01T23",
        "2026-06-02T00",
    ]


def test_windows_follow_local_days_across_dst() -> None:
    days = daily("2026-03-28", timezone="Europe/Berlin")
    start, end = days.window("2026-03-29")
    assert (end - start).total_seconds() == 23 * 3600
    assert start.isoformat() == "2026-03-29T00:00:00+01:00"


def test_weekly_and_monthly_keys() -> None:
    assert weekly("2026-06-01").keys(datetime(2026, 6, 22, tzinfo=UTC)) == ["2026-06-01", "2026-06-08", "2026-06-15"]
    assert monthly("2025-11").keys(datetime(2026, 2, 3, tzinfo=UTC)) == ["2025-11", "2025-12", "2026-01"]
    with pytest.raises(DefinitionError, match="must start on a Monday"):
        weekly("2026-06-02")


def test_static_and_product_keys() -> None:
    regions = static("us", "eu")
    assert product(daily("2026-06-01", end="2026-06-03"), regions).keys(LATER) == [
        "2026-06-01|us",
        "2026-06-01|eu",
        "2026-06-02|us",
        "2026-06-02|eu",
    ]
    with pytest.raises(DefinitionError, match="repeat"):
        static("us", "us")
    with pytest.raises(DefinitionError, match="is not allowed"):
        static("../x")


def test_invalid_keys_list_the_valid_range() -> None:
    days = daily("2026-06-01", end="2026-06-11")
    with pytest.raises(UsageError, match=r"valid keys are 2026-06-01 … 2026-06-10 \(10 keys\)"):
        check_key(days, "2026-05-31", LATER)
    with pytest.raises(UsageError, match="is not allowed"):
        check_key(days, "2026/06/01", LATER)
    assert key_range(days, "2026-06-03", "2026-06-05", LATER) == ["2026-06-03", "2026-06-04", "2026-06-05"]
    with pytest.raises(UsageError, match="comes after"):
        key_range(days, "2026-06-05", "2026-06-03", LATER)


def test_bad_definitions_are_refused() -> None:
    with pytest.raises(DefinitionError, match="unknown time zone"):
        daily("2026-06-01", timezone="Mars/Olympus")
    with pytest.raises(DefinitionError, match="must look like"):
        daily("June 1st")
    with pytest.raises(DefinitionError, match="n must be an integer >= 1"):
        Window("x", 0)


def _steps(*defs: object) -> dict[StepId, list[list[StepId]]]:
    graph = build_graph(defs)  # type: ignore[arg-type]
    targets = [(name, a.partitions.keys(LATER) if a.partitions else [""]) for name, a in graph.assets.items()]
    order, inputs = expand(graph, targets, lambda a: a.partitions.keys(LATER) if a.partitions else [""])
    return {s: [list(i.steps) for i in inputs[s]] for s in order}


def test_mappings_expand_to_the_right_upstream_steps() -> None:
    days = daily("2026-06-01", end="2026-06-05")
    raw = asset(name="raw", partitions=days)(lambda: 1)
    roll = asset(name="roll", partitions=days, ins={"x": Window("raw", 3)})(lambda x: 1)
    total = asset(name="total", ins={"x": AllPartitions("raw")})(lambda x: 1)
    last = asset(name="last", ins={"x": Latest("raw")})(lambda x: 1)
    steps = _steps(raw, roll, total, last)
    assert steps[StepId("roll", "2026-06-03")] == [
        [StepId("raw", d) for d in ("2026-06-01", "2026-06-02", "2026-06-03")]
    ]
    assert steps[StepId("roll", "2026-06-01")] == [[StepId("raw", "2026-06-01")]]
    assert len(steps[StepId("total", "")][0]) == 4
    assert steps[StepId("last", "")] == [[StepId("raw", "2026-06-04")]]
