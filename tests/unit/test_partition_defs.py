"""Partition definitions: keys, DST-safe time windows, validation, and input mappings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cairn.core.asset import asset, source
from cairn.core.graph import build_graph
from cairn.core.keys import StepId
from cairn.core.partitions import (
    AllPartitions,
    Latest,
    TimeWindow,
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


def _reads(steps: dict[StepId, list[list[StepId]]], step: str) -> list[str]:
    asset_name, _, key = step.partition("@")
    return [str(s) for s in steps[StepId(asset_name, key)][0]]


def test_window_over_a_product_moves_along_time_and_keeps_the_static_key() -> None:
    regions = product(daily("2026-06-01", end="2026-06-04"), static("us", "eu"))
    dr = asset(name="dr", partitions=regions)(lambda: 1)
    drw = asset(name="drw", partitions=regions, ins={"x": Window("dr", 2)})(lambda x: 1)
    steps = _steps(dr, drw)
    assert _reads(steps, "drw@2026-06-02|eu") == ["dr@2026-06-01|eu", "dr@2026-06-02|eu"]
    assert _reads(steps, "drw@2026-06-03|us") == ["dr@2026-06-02|us", "dr@2026-06-03|us"]
    assert _reads(steps, "drw@2026-06-01|us") == ["dr@2026-06-01|us"]


def test_window_from_a_product_consumer_over_a_time_producer_reads_its_days() -> None:
    days = daily("2026-06-01", end="2026-06-04")
    d = asset(name="d", partitions=days)(lambda: 1)
    drw = asset(name="drw", partitions=product(days, static("us", "eu")), ins={"x": Window("d", 2)})(lambda x: 1)
    assert _reads(_steps(d, drw), "drw@2026-06-03|eu") == ["d@2026-06-02", "d@2026-06-03"]


def test_window_from_a_time_consumer_over_a_product_producer_is_a_definition_error() -> None:
    days = daily("2026-06-01", end="2026-06-04")
    dr = asset(name="dr", partitions=product(days, static("us", "eu")))(lambda: 1)
    dw = asset(name="dw", partitions=days, ins={"x": Window("dr", 2)})(lambda x: 1)
    with pytest.raises(DefinitionError, match=r"would read every static key; partition 'dw' like 'dr'"):
        build_graph([dr, dw])
    weeks = asset(name="wk", partitions=weekly("2026-06-01"), ins={"x": Window("dr", 2)})(lambda x: 1)
    with pytest.raises(DefinitionError, match="Window needs the time partitions of both assets to be the same"):
        build_graph([dr, weeks])


def test_time_window_daily_over_hourly_reads_the_hours_of_its_local_day_across_dst() -> None:
    zone = "Europe/Berlin"
    hours = asset(name="hours", partitions=hourly("2026-03-28", end="2026-03-31", timezone=zone))(lambda: 1)
    day = asset(
        name="day", partitions=daily("2026-03-28", end="2026-03-31", timezone=zone), ins={"x": TimeWindow("hours")}
    )
    steps = _steps(hours, day(lambda x: 1))
    assert len(_reads(steps, "day@2026-03-28")) == 24
    spring = _reads(steps, "day@2026-03-29")
    assert len(spring) == 23 and spring[0] == "hours@2026-03-29T00+01:00" and spring[-1] == "hours@2026-03-29T23+02:00"
    autumn_hours = asset(name="hours", partitions=hourly("2026-10-25", end="2026-10-26", timezone=zone))(lambda: 1)
    autumn_day = asset(
        name="day", partitions=daily("2026-10-25", end="2026-10-26", timezone=zone), ins={"x": TimeWindow("hours")}
    )
    assert len(_reads(_steps(autumn_hours, autumn_day(lambda x: 1)), "day@2026-10-25")) == 25


def test_time_window_weekly_and_monthly_consumers_read_their_days_as_a_dict() -> None:
    days = asset(name="days", partitions=daily("2026-06-01", end="2026-08-01"))(lambda: 1)
    week = asset(name="week", partitions=weekly("2026-06-01", end="2026-06-15"), ins={"x": TimeWindow("days")})
    month = asset(name="month", partitions=monthly("2026-06", end="2026-08"), ins={"x": TimeWindow("days")})
    graph = build_graph([days, week(lambda x: 1), month(lambda x: 1)])
    targets = [(n, a.partitions.keys(LATER)) for n, a in graph.assets.items() if a.partitions]
    _, inputs = expand(graph, targets, lambda a: a.partitions.keys(LATER) if a.partitions else [""])
    week_in = inputs[StepId("week", "2026-06-08")][0]
    assert week_in.as_dict and [s.partition for s in week_in.steps] == [f"2026-06-{d:02d}" for d in range(8, 15)]
    july = inputs[StepId("month", "2026-07")][0]
    assert july.as_dict and len(july.steps) == 31 and july.steps[-1] == StepId("days", "2026-07-31")


def test_time_window_finer_consumer_reads_the_containing_period_as_one_value() -> None:
    months = asset(name="months", partitions=monthly("2026-06", end="2026-07"))(lambda: 1)
    day = asset(name="day", partitions=daily("2026-06-29", end="2026-07-02"), ins={"x": TimeWindow("months")})
    graph = build_graph([months, day(lambda x: 1)])
    _, inputs = expand(
        graph,
        [("day", daily("2026-06-29", end="2026-07-02").keys(LATER))],
        lambda a: a.partitions.keys(LATER) if a.partitions else [""],
    )
    june = inputs[StepId("day", "2026-06-30")][0]
    assert not june.as_dict and june.steps == (StepId("months", "2026-06"),)
    assert inputs[StepId("day", "2026-07-01")][0].steps == ()  # July is not a complete producer period


def test_time_window_reads_only_complete_producer_periods() -> None:
    now = datetime(2026, 6, 10, 15, 30, tzinfo=UTC)
    weeks = asset(name="weeks", partitions=weekly("2026-06-01"))(lambda: 1)
    day = asset(name="day", partitions=daily("2026-06-01"), ins={"x": TimeWindow("weeks")})
    hours = asset(name="hours", partitions=hourly("2026-06-09"))(lambda: 1)
    daily_sum = asset(name="daily_sum", partitions=daily("2026-06-09"), ins={"x": TimeWindow("hours")})
    graph = build_graph([weeks, day(lambda x: 1), hours, daily_sum(lambda x: 1)])
    keys = lambda a: a.partitions.keys(now) if a.partitions else [""]  # noqa: E731
    order, inputs = expand(graph, [("day", keys(graph.assets["day"])), ("daily_sum", ["2026-06-09"])], keys)
    assert inputs[StepId("day", "2026-06-05")][0].steps == (StepId("weeks", "2026-06-01"),)
    assert inputs[StepId("day", "2026-06-09")][0].steps == ()  # the week of 06-08 is not over on 06-10
    assert len(inputs[StepId("daily_sum", "2026-06-09")][0].steps) == 24
    assert StepId("hours", "2026-06-10T15") not in order


def test_time_window_mappings_that_do_not_fit_are_definition_errors() -> None:
    days = asset(name="days", partitions=daily("2026-06-01"))(lambda: 1)
    weeks = asset(name="weeks", partitions=weekly("2026-06-01"), ins={"x": TimeWindow("days")})(lambda x: 1)
    months = asset(name="months", partitions=monthly("2026-06"), ins={"x": TimeWindow("weeks")})(lambda x: 1)
    with pytest.raises(DefinitionError, match="weekly and monthly periods do not nest"):
        build_graph([days, weeks, months])
    berlin = asset(name="b", partitions=hourly("2026-06-01", timezone="Europe/Berlin"))(lambda: 1)
    utc = asset(name="u", partitions=daily("2026-06-01"), ins={"x": TimeWindow("b")})(lambda x: 1)
    with pytest.raises(DefinitionError, match="time zones differ"):
        build_graph([berlin, utc])
    same = asset(name="same", partitions=daily("2026-06-01"), ins={"x": TimeWindow("days")})(lambda x: 1)
    with pytest.raises(DefinitionError, match="both are daily"):
        build_graph([days, same])
    plain = asset(name="plain", partitions=weekly("2026-06-01"))(lambda days: 1)
    with pytest.raises(DefinitionError, match=r"map it with ins=\{'days': TimeWindow\('days'\)\}"):
        build_graph([days, plain])


def test_latest_resolves_to_the_newest_available_partition() -> None:
    days = daily("2026-06-01", end="2026-06-05")
    raw = source("raw", path="raw_{partition}.json", partitions=days)
    clean = asset(name="clean", partitions=days)(lambda raw: 1)
    from_source = asset(name="from_source", ins={"x": Latest("raw")})(lambda x: 1)
    from_asset = asset(name="from_asset", ins={"x": Latest("clean")})(lambda x: 1)
    graph = build_graph([raw, clean, from_source, from_asset])
    keys = lambda a: a.partitions.keys(LATER) if a.partitions else [""]  # noqa: E731
    present = {"2026-06-01", "2026-06-02"}
    order, inputs = expand(graph, [("from_source", [""]), ("from_asset", [""])], keys, lambda a, key: key in present)
    assert inputs[StepId("from_source", "")][0].steps == (StepId("raw", "2026-06-02"),)
    assert inputs[StepId("from_asset", "")][0].steps == (StepId("clean", "2026-06-02"),)
    assert StepId("raw", "2026-06-04") not in order
    none_ready = expand(graph, [("from_source", [""])], keys, lambda a, key: False)[1]
    assert none_ready[StepId("from_source", "")][0].steps == ()
