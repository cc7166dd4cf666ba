"""Schedules, sensors and freshness policies as values: cron shape, DST-correct due times, catchup, partition
resolution, definition checks, and the tick records on an in-memory store. No disk, no sleeping."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cairn import RunRequest, SensorResult, asset, daily, hourly, monthly, product, schedule, sensor, source, static
from cairn import weekly as weekly_parts
from cairn.automation import hooks
from cairn.automation.clock import ManualClock, parse_instant
from cairn.automation.cron import due_times, next_due
from cairn.automation.hooks import notify
from cairn.automation.partitions import PartitionChoice, latest_partition, resolve
from cairn.automation.schedules import due_ticks
from cairn.core.automation import (
    SKIPPED,
    AutomationState,
    TickRecord,
    check_automation,
    format_duration,
    parse_duration,
    sensor_requests,
)
from cairn.core.graph import build_graph
from cairn.errors import DefinitionError, UsageError
from cairn.storage.metadata import MetadataStore, open_metadata

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


# -- definitions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 2 * *", r"has 4 fields; a cron expression has five fields"),
        ("0 25 * * *", r"hour 25 is outside 0-23"),
        ("61 * * * *", r"minute 61 is outside 0-59"),
        ("0 2 * foo *", r"'foo' is not a month 1-12 \(or jan"),
        ("*/0 * * * *", r"step '/0' never fires"),
        ("0 2 32 * *", r"day of month 32 is outside 1-31"),
        ("@nightly", r"has 1 fields"),
    ],
)
def test_a_malformed_cron_expression_names_the_field_and_the_form(cron: str, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        schedule("s", cron)


@pytest.mark.parametrize(
    "cron", ["0 2 * * *", "*/15 9-17 * * 1-5", "0 0 1 jan,jul *", "@daily", "0 3 * * sun", "0 0 L * *"]
)
def test_well_formed_cron_expressions_are_accepted(cron: str) -> None:
    assert schedule("s", cron).cron == cron


def test_schedule_options_are_checked_with_the_fix() -> None:
    with pytest.raises(DefinitionError, match=r"unknown time zone 'Berlin'.*IANA name like 'Europe/Berlin'"):
        schedule("s", "0 2 * * *", tz="Berlin")
    with pytest.raises(DefinitionError, match=r"catchup='every' is not one of latest, all, none"):
        schedule("s", "0 2 * * *", catchup="every")
    with pytest.raises(DefinitionError, match=r"partition key 'a/b' is not allowed"):
        schedule("s", "0 2 * * *", partition="a/b")
    s = schedule("s", "0 2 * * *", select="+model tag:tier=gold", partition="today-8")
    assert s.selection == ("+model", "tag:tier=gold") and s.partition == "today-8"


def test_durations_parse_and_print_as_people_write_them() -> None:
    assert parse_duration("26h", "x") == 26 * 3600
    assert parse_duration("1d12h", "x") == 36 * 3600
    assert parse_duration("90m", "x") == 5400
    assert parse_duration(timedelta(minutes=5), "x") == 300
    assert parse_duration(45, "x") == 45
    for bad in ("soon", "26", "-1h", 0, "1h soon"):
        with pytest.raises(DefinitionError, match="positive duration like '26h'"):
            parse_duration(bad, "max_age=")
    assert [format_duration(s) for s in (93600, 172800, 5400, 90)] == ["26h", "2d", "1h30m", "1m30s"]


def test_max_age_and_on_stale_are_asset_options() -> None:
    @asset(max_age="26h", on_stale="alert")
    def features() -> int:
        return 1

    assert (features.max_age, features.on_stale) == (93600.0, "alert")
    with pytest.raises(DefinitionError, match=r"on_stale='page' is not one of materialize, alert"):
        asset(name="x", on_stale="page")(lambda: 1)


def _graph() -> object:
    raw = source("raw", path="raw_{partition}.csv", partitions=daily("2026-06-01"))

    @asset(partitions=daily("2026-06-01"))
    def clean(raw: bytes) -> int:
        return 1

    @asset
    def total() -> int:
        return 1

    return build_graph([raw, clean, total])


def test_project_checks_name_the_schedule_or_sensor_and_the_fix() -> None:
    graph = _graph()
    ok = schedule("nightly", "0 2 * * *", select="+clean", partition="yesterday")
    with pytest.raises(
        DefinitionError, match=r"'nightly' is defined twice, as a schedule in cairn.toml and as a sensor"
    ):
        check_automation(graph, [ok], [sensor("nightly", on_source="raw")])  # type: ignore[arg-type]
    with pytest.raises(
        DefinitionError, match=r"schedule 'n': selection 'claen': asset 'claen' is not defined\. Did you mean 'clean'"
    ):
        check_automation(graph, [schedule("n", "0 2 * * *", select="claen")], [])  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match=r"partition='yesterday' but none of its assets is partitioned"):
        check_automation(graph, [schedule("n", "0 2 * * *", select="total", partition="yesterday")], [])  # type: ignore[arg-type]
    with pytest.raises(
        DefinitionError, match=r"sensor 'l' watches source 'rwa', which is not defined\. Did you mean 'raw'"
    ):
        check_automation(graph, [], [sensor("l", on_source="rwa")])  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match=r"watches 'total', which nothing reads: give it select="):
        check_automation(graph, [], [sensor("l", on_asset="total")])  # type: ignore[arg-type]
    _, sensors = check_automation(graph, [ok], [sensor("l", on_source="raw"), sensor("m", on_asset="raw")])  # type: ignore[arg-type]
    assert [s.selection for s in sensors] == [("raw+",), ("clean+",)]  # by default: what is downstream


def test_custom_sensors_return_requests_in_several_shapes() -> None:
    @sensor(select="clean", interval_s=5)
    def every_time(ctx: object) -> bool:
        return True

    assert (every_time.name, every_time.kind, every_time.interval_s) == ("every_time", "custom", 5.0)
    assert sensor_requests(True, "s").requests == (RunRequest(),)
    assert sensor_requests(None, "s").requests == ()
    assert sensor_requests([RunRequest("2026-06-01", "k")], "s").requests == (RunRequest("2026-06-01", "k"),)
    assert sensor_requests(SensorResult((), "c"), "s").cursor == "c"
    with pytest.raises(UsageError, match=r"sensor 's' returned 'yes'; return True \(run once\), a cairn.RunRequest"):
        sensor_requests("yes", "sensor 's'")


# -- when a schedule is due ---------------------------------------------------------------------------


def _fire_over(s: object, start: datetime, days: int, step: timedelta) -> list[datetime]:
    """Drive `due_ticks` with an injected clock, claiming each tick as a daemon would."""
    clock = ManualClock(start)
    state = AutomationState("schedule", "s", since=start.timestamp())
    fired = []
    while clock.now() < start + timedelta(days=days):
        clock.advance(step)
        due = due_ticks(s, state, clock.now(), "me")  # type: ignore[arg-type]
        for tick in (*due.run, *due.skipped):
            state = replace(state, last_due=max(state.last_due or 0.0, tick.due_at))
        fired += [datetime.fromtimestamp(t.due_at, UTC) for t in due.run]
    return fired


@pytest.mark.parametrize("start", [berlin(2026, 3, 25, 12), berlin(2026, 10, 21, 12)], ids=["spring", "autumn"])
def test_a_nightly_schedule_over_a_dst_change_fires_once_per_day(start: datetime) -> None:
    nightly = schedule("nightly", "0 2 * * *", tz="Europe/Berlin")
    fired = _fire_over(nightly, start, 8, timedelta(minutes=10))
    local = [t.astimezone(BERLIN) for t in fired]
    assert len(fired) == 8
    assert Counter(t.date() for t in local) == Counter({(start + timedelta(days=d)).date(): 1 for d in range(1, 9)})
    # The skipped 02:00 of the spring change fires at 03:00 (the end of the gap); the repeated one of autumn, once.
    assert {t.strftime("%H:%M") for t in local} <= {"02:00", "03:00"}
    assert [t for t in local if t.strftime("%H:%M") == "03:00"] == (
        [berlin(2026, 3, 29, 3)] if start.month == 3 else []
    )


def test_an_hourly_schedule_fires_every_real_hour_across_dst_changes() -> None:
    hourly_s = schedule("h", "0 * * * *", tz="Europe/Berlin")
    spring = due_times(
        hourly_s, berlin(2026, 3, 29, 0) - timedelta(seconds=1), berlin(2026, 3, 30, 0) - timedelta(seconds=1)
    )
    autumn = due_times(
        hourly_s, berlin(2026, 10, 25, 0) - timedelta(seconds=1), berlin(2026, 10, 26, 0) - timedelta(seconds=1)
    )
    assert (len(spring), len(autumn)) == (23, 25)  # the day's real hours
    assert len(set(autumn)) == 25


def test_next_due_skips_the_repeated_hour_of_a_fixed_time() -> None:
    nightly = schedule("nightly", "30 2 * * *", tz="Europe/Berlin")
    first = next_due(nightly, berlin(2026, 10, 24, 12))
    assert first is not None and first.astimezone(BERLIN).isoformat() == "2026-10-25T02:30:00+02:00"
    second = next_due(nightly, first)
    assert second is not None and second.astimezone(BERLIN).isoformat() == "2026-10-26T02:30:00+01:00"


@pytest.mark.parametrize(
    ("catchup", "runs", "skipped"),
    [("latest", ["2026-06-05"], ["2026-06-02", "2026-06-03", "2026-06-04"]),
     ("all", ["2026-06-02", "2026-06-03", "2026-06-04", "2026-06-05"], []),
     ("none", [], ["2026-06-02", "2026-06-03", "2026-06-04", "2026-06-05"])],
)  # fmt: skip
def test_ticks_missed_during_downtime_are_caught_up_per_the_catchup_setting(
    catchup: str, runs: list[str], skipped: list[str]
) -> None:
    s = schedule("daily", "0 6 * * *", catchup=catchup)
    state = AutomationState("schedule", "daily", since=datetime(2026, 6, 1, 7, tzinfo=UTC).timestamp())
    due = due_ticks(s, state, datetime(2026, 6, 5, 7, tzinfo=UTC), "me")  # the daemon was down for four days

    def days(ticks: tuple[TickRecord, ...]) -> list[str]:
        return [datetime.fromtimestamp(t.due_at, UTC).date().isoformat() for t in ticks]

    assert (days(due.run), days(due.skipped)) == (runs, skipped)
    assert all(t.status == SKIPPED and "missed" in t.reason for t in due.skipped)
    on_time = due_ticks(s, state, datetime(2026, 6, 2, 6, 4, tzinfo=UTC), "me")
    assert days(on_time.run) == ["2026-06-02"]  # under "none" too: 4 minutes late is on time


def test_a_paused_schedule_is_never_due_and_a_first_seen_one_starts_now() -> None:
    s = schedule("daily", "0 6 * * *")
    seen = datetime(2026, 6, 1, 6, tzinfo=UTC)
    assert due_ticks(s, AutomationState("schedule", "daily", since=seen.timestamp()), seen, "me").run  # due right then
    later = AutomationState("schedule", "daily", since=(seen + timedelta(minutes=1)).timestamp())
    assert not due_ticks(s, later, seen + timedelta(hours=23), "me").run
    paused = replace(later, paused=True)
    assert due_ticks(s, paused, seen + timedelta(days=3), "me").run == ()


# -- which partition a run gets ------------------------------------------------------------------------


def _partitioned(partitions: object) -> object:
    return build_graph([asset(name="p", partitions=partitions)(lambda: 1)])  # type: ignore[arg-type]


def test_yesterday_today_and_latest_resolve_in_the_schedules_time_zone() -> None:
    graph = _partitioned(daily("2026-06-01"))
    at = datetime(2026, 6, 10, 22, 30, tzinfo=UTC)  # 00:30 on the 11th in Berlin
    assert resolve(graph, ("p",), "yesterday", at, "UTC").partition == "2026-06-09"  # type: ignore[arg-type]
    assert resolve(graph, ("p",), "yesterday", at, "Europe/Berlin").partition == "2026-06-10"  # type: ignore[arg-type]
    assert resolve(graph, ("p",), "today-8", at, "UTC").partition == "2026-06-02"  # type: ignore[arg-type]
    assert resolve(graph, ("p",), "latest", at, "UTC").partition == "2026-06-09"  # type: ignore[arg-type]
    assert resolve(graph, ("p",), "latest-2", at, "UTC").partition == "2026-06-07"  # type: ignore[arg-type]
    assert resolve(graph, ("p",), "2026-06-03", at, "UTC").partition == "2026-06-03"  # type: ignore[arg-type]
    assert resolve(graph, ("p",), None, at, "UTC") == PartitionChoice()  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"partition 'latest-20'.*has 9 complete partition"):
        resolve(graph, ("p",), "latest-20", at, "UTC")  # type: ignore[arg-type]


def test_a_day_maps_to_its_week_or_month_and_a_product_to_the_range_of_its_static_keys() -> None:
    at = datetime(2026, 6, 11, 3, tzinfo=UTC)  # a Thursday
    assert resolve(_partitioned(weekly_parts("2026-06-01")), ("p",), "today", at, "UTC").partition == "2026-06-08"  # type: ignore[arg-type]
    assert resolve(_partitioned(monthly("2026-01")), ("p",), "yesterday", at, "UTC").partition == "2026-06"  # type: ignore[arg-type]
    regional = _partitioned(product(daily("2026-06-01"), static("eu", "us")))
    choice = resolve(regional, ("p",), "yesterday", at, "UTC")  # type: ignore[arg-type]
    assert (
        choice.partition_range == ("2026-06-10|eu", "2026-06-10|us") and choice.label == "2026-06-10|eu..2026-06-10|us"
    )
    assert PartitionChoice.from_label(choice.label) == choice
    assert latest_partition(hourly("2026-06-11"), at).partition == "2026-06-11T02"


# -- the clock ----------------------------------------------------------------------------------------


def test_now_needs_an_offset() -> None:
    assert parse_instant("2026-03-29T02:30:00+02:00") == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    assert parse_instant("2026-03-29T00:30:00Z") == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    with pytest.raises(UsageError, match=r"has no UTC offset.*2026-03-29T02:30\+02:00"):
        parse_instant("2026-03-29T02:30")
    with pytest.raises(UsageError, match="is not an ISO 8601 time"):
        parse_instant("tomorrow")


# -- tick records on an in-memory store ----------------------------------------------------------------


@pytest.fixture
def meta() -> MetadataStore:
    store = open_metadata("sqlite:///:memory:", ".")
    yield store  # type: ignore[misc]
    store.close()


def test_a_tick_is_claimed_once_and_started_once(meta: MetadataStore) -> None:
    tick = TickRecord("schedule", "nightly", 1000.0, owner="a", claimed_at=999.0)
    meta.ensure_automation_states([("schedule", "nightly")], 10.0)
    assert [meta.claim_tick(tick), meta.claim_tick(replace(tick, owner="b"))] == [True, False]
    assert [meta.start_tick(tick, "b"), meta.start_tick(tick, "a"), meta.start_tick(tick, "a")] == [False, True, False]
    meta.tick_started(tick, "run-1", 1002.5)
    meta.finish_tick(tick, "succeeded", 1010.0)
    [stored] = meta.ticks()
    assert (stored.status, stored.run_id, stored.latency_s, stored.owner) == ("succeeded", "run-1", 2.5, "a")
    assert meta.automation_states()[("schedule", "nightly")].last_due == 1000.0


def test_a_sensor_commit_moves_the_cursor_only_from_the_generation_it_read(meta: MetadataStore) -> None:
    state = meta.ensure_automation_states([("sensor", "landed")], 10.0)[("sensor", "landed")]
    tick = TickRecord("sensor", "landed", 20.0, "data:1", owner="a", claimed_at=20.0)
    assert meta.commit_sensor("landed", state.generation, "c1", 20.0, [tick]) == [tick]
    assert meta.commit_sensor("landed", state.generation, "c2", 21.0, [replace(tick, due_at=21.0)]) is None
    again = meta.automation_states()[("sensor", "landed")]
    assert (again.cursor, again.generation) == ("c1", 1)
    # A request whose run key the sensor already had is left out.
    assert meta.commit_sensor("landed", again.generation, "c3", 22.0, [replace(tick, due_at=22.0)]) == []
    assert len(meta.ticks(kind="sensor")) == 1


def test_a_hook_that_raises_is_logged_and_the_others_still_run(meta: MetadataStore) -> None:
    seen: list[str] = []
    lines: list[str] = []

    def broken(store: MetadataStore, tick: TickRecord, result: object) -> None:
        raise RuntimeError("observer down")

    def recorder(store: MetadataStore, tick: TickRecord, result: object) -> None:
        seen.append(tick.name)

    hooks.extend([broken, recorder])
    try:
        notify(meta, TickRecord("schedule", "nightly", 1.0), None, lines.append)
    finally:
        hooks.remove(broken)
        hooks.remove(recorder)
    assert seen == ["nightly"]
    assert len(lines) == 1 and "RuntimeError: observer down" in lines[0]


def test_remembered_next_due_times_agree_with_croniter_at_every_moment() -> None:
    from cairn.automation.schedules import Upcoming

    upcoming = Upcoming()
    schedules = [schedule("a", "*/7 * * * *", tz="Europe/Berlin"), schedule("b", "30 2 * * *", tz="Europe/Berlin")]
    moment = berlin(2026, 10, 24, 23, 50).timestamp()
    for _ in range(400):  # 20 h in steps of 3 minutes, across the autumn change
        moment += 180
        for s in schedules:
            assert upcoming.after(s, moment) == next_due(s, datetime.fromtimestamp(moment, UTC))
