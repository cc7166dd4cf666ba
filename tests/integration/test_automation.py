"""Schedules, sensors and freshness policies on real projects (SQLite, real files), driven by an injected clock;
`cairn tick`, `cairn daemon` and `cairn schedules` through the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import cairn
from cairn.automation import hooks
from cairn.automation.clock import ManualClock
from cairn.automation.daemon import Daemon
from cairn.automation.partitions import resolve
from cairn.automation.runner import Runner, TickReport
from cairn.automation.schedules import due_ticks
from cairn.core.automation import AutomationState, TickRecord
from cairn.core.selection import select
from cairn.project import load_project
from cairn.storage.metadata import MetadataStore, open_metadata
from tests.conftest import ProjectFactory, cli

BERLIN = ZoneInfo("Europe/Berlin")

NIGHTLY = """
from cairn import asset, daily, schedule

@asset(partitions=daily("2026-01-01"))
def sales(ctx) -> dict:
    return {"day": ctx.partition}

nightly = schedule("nightly", "0 2 * * *", select="sales", tz="Europe/Berlin", partition="yesterday")
"""


def tick_at(root: Path, now: datetime) -> TickReport:
    """One tick of the project at `now`, as `cairn tick --now` makes it (every sensor evaluated)."""
    project = load_project(root)
    with open_metadata(project.settings.database, root) as meta:
        return Runner(meta, ManualClock(now), pace_sensors=False).tick(project)


class Until(ManualClock):
    """An injected clock that stops the daemon sleeping on it once it reaches `end`."""

    def __init__(self, start: datetime, end: datetime) -> None:
        super().__init__(start)
        self.end = end

    def sleep(self, seconds: float, wake: threading.Event) -> None:
        super().sleep(seconds, wake)
        if self.now() >= self.end:
            wake.set()


def store(root: Path) -> MetadataStore:
    return open_metadata("sqlite:///.cairn/cairn.db", root)


def statuses(run_id: str, root: Path) -> dict[str, str]:
    with store(root) as meta:
        return {f"{s.asset}@{s.partition}" if s.partition else s.asset: s.status for s in meta.run_steps(run_id)}


@pytest.fixture
def seen_ticks() -> Iterator[list[tuple[TickRecord, object]]]:
    """Ticks that reached the hooks, with the run result the hooks were given."""
    seen: list[tuple[TickRecord, object]] = []

    def hook(meta: MetadataStore, tick: TickRecord, result: object) -> None:
        seen.append((tick, result))

    hooks.append(hook)
    yield seen
    hooks.remove(hook)


# -- schedules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("start", [datetime(2026, 3, 26, 12, tzinfo=BERLIN), datetime(2026, 10, 22, 12, tzinfo=BERLIN)],
                         ids=["spring", "autumn"])  # fmt: skip
def test_a_nightly_schedule_over_a_dst_change_fires_once_per_day(make_project: ProjectFactory, start: datetime) -> None:
    root = make_project(NIGHTLY)
    daemon = Daemon(root, clock=Until(start, start + timedelta(days=6)), interval_s=900)
    daemon.run()
    with store(root) as meta:
        ticks = sorted(meta.ticks(kind="schedule", limit=100), key=lambda t: t.due_at)
        runs = {r.run_id for r in meta.list_runs()}
    local = [datetime.fromtimestamp(t.due_at, BERLIN) for t in ticks]
    assert [d.date() for d in local] == [(start + timedelta(days=n)).date() for n in range(1, 7)]
    assert all(t.status == "succeeded" and t.run_id in runs for t in ticks) and len(runs) == 6
    assert [t.partition for t in ticks] == [(d.date() - timedelta(days=1)).isoformat() for d in local]
    # The daemon sleeps until the next due time, so every run started when it was due (on the injected clock).
    assert {t.latency_s for t in ticks} == {0.0}
    spring_night = [d.strftime("%H:%M") for d in local if d.date().isoformat() == "2026-03-29"]
    assert spring_night in ([], ["03:00"])  # 02:00 does not exist that night: the tick fires at 03:00


def test_cairn_tick_now_runs_what_is_due_and_records_the_run_on_the_tick(make_project: ProjectFactory) -> None:
    root = make_project(NIGHTLY)
    first = cli("-C", str(root), "tick", "--now", "2026-03-29T01:00:00+01:00")
    assert first.returncode == 0, first.stderr
    assert "nothing due at 2026-03-29T01:00:00+01:00; next due 2026-03-29T01:00:00+00:00" in first.stdout
    done = cli("-C", str(root), "tick", "--now", "2026-03-29T03:00:30+02:00", "--json")
    assert done.returncode == 0, done.stderr
    [tick] = json.loads(done.stdout)["ticks"]
    assert (tick["kind"], tick["name"], tick["status"], tick["partition"], tick["latency_s"]) == (
        "schedule", "nightly", "succeeded", "2026-03-28", 30.0
    )  # fmt: skip
    assert tick["due_at"] == "2026-03-29T01:00:00Z"
    assert statuses(tick["run_id"], root) == {"sales@2026-03-28": "executed"}
    again = cli("-C", str(root), "tick", "--now", "2026-03-29T03:05:00+02:00", "--json")
    assert json.loads(again.stdout)["ticks"] == []
    listed = cli("-C", str(root), "schedules", "ticks", "--json")
    assert [(t["name"], t["run_id"]) for t in json.loads(listed.stdout)] == [("nightly", tick["run_id"])]


def test_missed_ticks_are_caught_up_per_the_catchup_setting(make_project: ProjectFactory) -> None:
    pipeline = """
        from cairn import asset, schedule

        @asset
        def report() -> int:
            return 1

        latest = schedule("latest", "0 * * * *", select="report")
        every = schedule("every", "0 * * * *", select="report", catchup="all")
        never = schedule("never", "0 * * * *", select="report", catchup="none")
        """
    root = make_project(pipeline)
    start = datetime(2026, 6, 1, 0, 30, tzinfo=UTC)
    tick_at(root, start)
    report = tick_at(root, start + timedelta(hours=5))  # the daemon was down from 00:30 to 05:30
    by_name: dict[str, list[str]] = {}
    for t in report.ticks:
        by_name.setdefault(t.name, []).append(t.status)
    assert by_name == {
        "latest": ["skipped"] * 4 + ["succeeded"],
        "every": ["succeeded"] * 5,
        "never": ["skipped"] * 5,
    }


def test_a_failed_run_fails_its_tick_and_cairn_tick_exits_1(make_project: ProjectFactory) -> None:
    pipeline = """
        from cairn import asset, schedule

        @asset
        def broken() -> int:
            raise ValueError("no data today")

        hourly = schedule("hourly", "0 * * * *", select="broken")
        """
    root = make_project(pipeline)
    assert cli("-C", str(root), "tick", "--now", "2026-06-01T00:30:00Z").returncode == 0
    failed = cli("-C", str(root), "tick", "--now", "2026-06-01T01:00:00Z")
    assert failed.returncode == 1
    assert "schedule hourly due 2026-06-01T01:00:00Z: failed" in failed.stdout


# -- sensors -----------------------------------------------------------------------------------------

LANDING = """
from cairn import asset, daily, sensor, source

DAYS = daily("2026-06-01", end="2026-06-04")
raw = source("raw", path="data/raw_{partition}.txt", partitions=DAYS)

@asset(partitions=DAYS)
def clean(raw: str) -> str:
    return raw.strip().upper()

landed = sensor("landed", on_source="raw")
"""


def land(root: Path, day: str, text: str) -> None:
    path = root / "data" / f"raw_{day}.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_a_sensor_fires_only_when_a_new_partition_lands(make_project: ProjectFactory) -> None:
    root = make_project(LANDING)
    land(root, "2026-06-01", "a")
    land(root, "2026-06-02", "b")
    assert cairn.materialize(project=root).status == "partial"  # 06-03 has not landed
    now = datetime(2026, 6, 5, tzinfo=UTC)
    assert tick_at(root, now).ticks == ()  # the first look takes what is there as seen
    assert tick_at(root, now + timedelta(minutes=1)).ticks == ()
    land(root, "2026-06-03", "c")
    [fired] = tick_at(root, now + timedelta(minutes=2)).ticks
    assert (fired.kind, fired.name, fired.status, fired.reason) == (
        "sensor",
        "landed",
        "succeeded",
        "new data: raw@2026-06-03",
    )
    assert {k: v for k, v in statuses(str(fired.run_id), root).items() if v == "executed"} == {
        "raw@2026-06-03": "executed",
        "clean@2026-06-03": "executed",
    }
    assert tick_at(root, now + timedelta(minutes=3)).ticks == ()
    land(root, "2026-06-02", "b, corrected")  # a corrected file is new data too
    [again] = tick_at(root, now + timedelta(minutes=4)).ticks
    assert again.reason == "new data: raw@2026-06-02"
    assert cairn.load("clean", "2026-06-02", project=root) == "B, CORRECTED"


def test_an_asset_sensor_fires_when_the_asset_is_materialized(make_project: ProjectFactory) -> None:
    pipeline = """
        from cairn import asset, sensor

        @asset(params={"n": 1})
        def features(ctx) -> int:
            return ctx.params["n"]

        @asset
        def model(features: int) -> int:
            return features * 10

        retrain = sensor("retrain", on_asset="features")
        """
    root = make_project(pipeline)
    cairn.materialize(["features"], project=root)
    now = datetime(2026, 6, 5, tzinfo=UTC)
    assert tick_at(root, now).ticks == ()
    with open(root / "cairn.toml", "a", encoding="utf-8") as toml:
        toml.write("\n[params]\nfeatures = { n = 2 }\n")
    cairn.materialize(["features"], project=root)
    [fired] = tick_at(root, now + timedelta(minutes=1)).ticks
    assert fired.reason == "new materialization of features" and fired.status == "succeeded"
    assert cairn.load("model", project=root) == 20
    assert tick_at(root, now + timedelta(minutes=2)).ticks == ()


def test_a_custom_sensor_keeps_its_cursor_and_runs_each_run_key_once(make_project: ProjectFactory) -> None:
    pipeline = """
        from pathlib import Path
        from cairn import RunRequest, SensorResult, asset, sensor

        @asset
        def report() -> int:
            return 1

        @sensor(select="report")
        def inbox(ctx):
            lines = Path(ctx.root, "inbox.txt").read_text().split()
            seen = int(ctx.cursor or 0)
            requests = [RunRequest(run_key=line) for line in lines[seen:]] + [RunRequest(run_key="always")]
            return SensorResult(tuple(requests), cursor=str(len(lines)))
        """
    root = make_project(pipeline)
    (root / "inbox.txt").write_text("a b", encoding="utf-8")
    now = datetime(2026, 6, 5, tzinfo=UTC)
    assert [t.request for t in tick_at(root, now).ticks] == ["a", "b", "always"]
    (root / "inbox.txt").write_text("a b c", encoding="utf-8")
    assert [t.request for t in tick_at(root, now + timedelta(minutes=1)).ticks] == ["c"]  # "always" ran already
    assert tick_at(root, now + timedelta(minutes=2)).ticks == ()


def test_a_sensor_that_raises_is_recorded_on_its_state_and_the_tick_goes_on(make_project: ProjectFactory) -> None:
    pipeline = """
        from cairn import asset, schedule, sensor

        @asset
        def report() -> int:
            return 1

        @sensor
        def flaky(ctx):
            raise ConnectionError("inbox unreachable")

        hourly = schedule("hourly", "0 * * * *", select="report")
        """
    root = make_project(pipeline)
    tick_at(root, datetime(2026, 6, 1, 0, 30, tzinfo=UTC))
    report = tick_at(root, datetime(2026, 6, 1, 1, 0, tzinfo=UTC))
    assert [(t.name, t.status) for t in report.ticks] == [("hourly", "succeeded")]
    listed = json.loads(cli("-C", str(root), "schedules", "list", "--json").stdout)
    assert {e["name"]: e["error"] for e in listed} == {"hourly": None, "flaky": "ConnectionError: inbox unreachable"}


# -- freshness policies ------------------------------------------------------------------------------

FRESH = """
from pathlib import Path
from cairn import asset

@asset(max_age="26h", cache=True)
def prices(ctx) -> str:
    return Path(__file__).with_name("prices.txt").read_text()

@asset(max_age="2h", on_stale="alert")
def watched() -> int:
    return 1
"""


def test_a_freshness_breach_materializes_the_asset_and_an_alert_policy_only_alerts(
    make_project: ProjectFactory, seen_ticks: list[tuple[TickRecord, object]]
) -> None:
    root = make_project(FRESH)
    (root / "prices.txt").write_text("v1", encoding="utf-8")
    cairn.materialize(project=root)
    with store(root) as meta:
        created = meta.latest_materialization("prices").created_at  # type: ignore[union-attr]
    made = datetime.fromtimestamp(created, UTC)
    assert tick_at(root, made + timedelta(hours=1)).ticks == ()
    (root / "prices.txt").write_text("v2", encoding="utf-8")  # data cairn does not see: only its age says so
    breach = tick_at(root, made + timedelta(hours=27))
    by_name = {t.name: t for t in breach.ticks}
    assert by_name["prices"].status == "succeeded" and "over max_age 26h" in by_name["prices"].reason
    assert by_name["prices"].due_at == created + 26 * 3600
    assert statuses(str(by_name["prices"].run_id), root) == {"prices": "executed"}  # forced: its key had not changed
    assert cairn.load("prices", project=root) == "v2"
    assert (by_name["watched"].status, by_name["watched"].run_id) == ("alerted", None)
    assert [(t.name, t.status, r) for t, r in seen_ticks if t.name == "watched"] == [("watched", "alerted", None)]
    assert [r.ok for t, r in seen_ticks if t.name == "prices"] == [True]  # type: ignore[attr-defined]
    # The new materialization is fresh, and the alert is not repeated within its max_age.
    with store(root) as meta:
        fresh_at = datetime.fromtimestamp(meta.latest_materialization("prices").created_at, UTC)  # type: ignore[union-attr]
    assert tick_at(root, fresh_at + timedelta(hours=1)).ticks == ()
    later = tick_at(root, made + timedelta(hours=27, minutes=30))
    assert "watched" not in {t.name for t in later.ticks}


def test_an_asset_never_materialized_is_stale_past_its_policy_at_once(make_project: ProjectFactory) -> None:
    root = make_project(FRESH)
    (root / "prices.txt").write_text("v1", encoding="utf-8")
    report = tick_at(root, datetime.now(UTC))
    assert {t.name: t.status for t in report.ticks} == {"prices": "succeeded", "watched": "alerted"}
    assert "never materialized" in report.ticks[0].reason


# -- the command line ---------------------------------------------------------------------------------

TOML_SCHEDULE = """
[[schedules]]
name = "hourly"
cron = "0 * * * *"
select = "report"
"""

REPORT = """
from cairn import asset

@asset
def report() -> int:
    return 1
"""


def test_pausing_needs_the_operator_role_once_users_exist_and_is_audited(make_project: ProjectFactory) -> None:
    root = make_project(REPORT, extra=TOML_SCHEDULE)
    paused = cli("-C", str(root), "schedules", "pause", "hourly")
    assert paused.returncode == 0, paused.stderr
    listed = json.loads(cli("-C", str(root), "schedules", "list", "--json").stdout)
    assert [(e["name"], e["kind"], e["paused"], e["next_due"]) for e in listed] == [("hourly", "schedule", True, None)]
    soon = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    assert json.loads(cli("-C", str(root), "tick", "--now", soon, "--json").stdout)["ticks"] == []
    assert cli("-C", str(root), "schedules", "resume", "hourly").returncode == 0
    unknown = cli("-C", str(root), "schedules", "pause", "hourli")
    assert unknown.returncode == 2 and "Did you mean 'hourly'?" in unknown.stderr

    admin = json.loads(cli("-C", str(root), "users", "add", "ada", "--role", "admin", "--json").stdout)
    env = {**os.environ, "CAIRN_TOKEN": admin["token"]}
    viewer = json.loads(_cli_env(env, "-C", str(root), "users", "add", "vic", "--role", "viewer", "--json").stdout)
    operator = json.loads(_cli_env(env, "-C", str(root), "users", "add", "oli", "--role", "operator", "--json").stdout)
    no_token = cli("-C", str(root), "schedules", "pause", "hourly")
    assert no_token.returncode == 2 and "pause schedule hourly needs the operator role" in no_token.stderr
    as_viewer = _cli_env(
        {**os.environ, "CAIRN_TOKEN": viewer["token"]}, "-C", str(root), "schedules", "pause", "hourly"
    )
    assert (
        as_viewer.returncode == 2
        and "user vic has role viewer; pause schedule hourly needs operator" in as_viewer.stderr
    )
    as_operator = _cli_env(
        {**os.environ, "CAIRN_TOKEN": operator["token"]}, "-C", str(root), "schedules", "pause", "hourly"
    )
    assert as_operator.returncode == 0, as_operator.stderr
    audit = json.loads(_cli_env(env, "-C", str(root), "audit", "--json").stdout)
    newest = next(e for e in audit if e["action"].startswith("schedule."))
    assert (newest["actor"], newest["action"], newest["subject"]) == ("oli", "schedule.pause", "hourly")


def _cli_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[schedules]]\nname = "h"\ncron = "0 24 * * *"\n',
         r"\[\[schedules\]\] #1 \(h\): schedule 'h': cron '0 24 \* \* \*': hour 24 is outside 0-23"),
        ('[[schedules]]\nname = "h"\n', r"\[\[schedules\]\] #1 \(h\) needs cron = "),
        ('[schedules]\nname = "h"\n', r"schedules are an array of tables"),
        ('[[schedules]]\nname = "h"\ncron = "@daily"\nselect = "reprot"\n',
         r"schedule 'h': selection 'reprot'.*Did you mean 'report'"),
    ],
)  # fmt: skip
def test_a_malformed_schedule_in_cairn_toml_is_exit_2_naming_the_fix(
    make_project: ProjectFactory, toml: str, message: str
) -> None:
    import re

    root = make_project(REPORT, extra=toml)
    done = cli("-C", str(root), "tick")
    assert done.returncode == 2 and re.search(message, done.stderr), done.stderr


def test_tick_now_without_an_offset_is_a_usage_error(make_project: ProjectFactory) -> None:
    root = make_project(REPORT, extra=TOML_SCHEDULE)
    done = cli("-C", str(root), "tick", "--now", "2026-03-29T02:30:00")
    assert done.returncode == 2 and "has no UTC offset" in done.stderr


SLOW = """
import os, time
from pathlib import Path
from cairn import asset

def _mark(name):
    Path(__file__).with_name(f"started-{name}").write_text(str(os.getpid()))

@asset(max_age="1d")
def first() -> int:
    _mark("first")
    time.sleep(3)
    return 1

@asset(max_age="1d")
def second() -> int:
    _mark("second")
    return 2
"""


def test_sigterm_lets_the_current_run_finish_and_starts_no_other(make_project: ProjectFactory) -> None:
    root = make_project(SLOW)
    env = {**os.environ, "COLUMNS": "200"}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "cairn.cli.main", "-C", str(root), "daemon", "--interval", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not (root / "started-first").exists() and daemon.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (root / "started-first").exists(), daemon.stderr.read() if daemon.stderr else ""
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 0, err
    assert "freshness first due" in out and ": succeeded" in out and "stopped after 1 ticks" in out
    assert not (root / "started-second").exists()
    with store(root) as meta:
        assert [(t.name, t.status) for t in meta.ticks()] == [("first", "succeeded")]
        assert [r.status for r in meta.list_runs()] == ["succeeded"]


# -- the examples --------------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def copy_example(name: str, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(EXAMPLES / name, to / name, ignore=shutil.ignore_patterns(".cairn", "data")))


def test_the_recsys_nightly_training_takes_the_newest_day_whose_labels_are_mature(tmp_path: Path) -> None:
    project = load_project(copy_example("recsys", tmp_path))
    [nightly] = project.schedules
    labels = project.graph.assets["labels"].partitions
    assert labels is not None and "labels" in select(project.graph, nightly.selection)
    seen = datetime(2026, 6, 9, 12, tzinfo=UTC)
    state = AutomationState("schedule", nightly.name, since=seen.timestamp())
    [tick] = due_ticks(nightly, state, seen + timedelta(days=1), "me").run
    at = datetime.fromtimestamp(tick.due_at, UTC)
    assert at == datetime(2026, 6, 10, 3, tzinfo=UTC)
    assert resolve(project.graph, nightly.selection, nightly.partition, at, nightly.timezone).partition == "2026-06-09"
    # labels@2026-06-09 labels the impressions of 06-02, whose 7-day purchase window closed during 06-09: by
    # 03:00 on 06-10 that day is over, while the running day's labels are still maturing and are not taken.
    assert labels.window("2026-06-09")[1] <= at < labels.window("2026-06-10")[1]
    after_the_calendar = datetime(2026, 12, 4, 3, tzinfo=UTC)
    assert resolve(project.graph, nightly.selection, "latest", after_the_calendar, "UTC").partition == "2026-06-14"


def test_the_feature_tiers_sensors_run_what_a_landed_file_feeds_and_the_schedule_catches_up(tmp_path: Path) -> None:
    root = copy_example("feature_tiers", tmp_path)
    scale = ("--accounts", "40", "--per-day", "80")

    def generate(until: str) -> None:
        done = subprocess.run([sys.executable, "generate.py", *scale, "--until", until], cwd=root, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr

    def tick(now: str) -> list[dict[str, object]]:
        done = cli("-C", str(root), "tick", "--now", now, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        ticks: list[dict[str, object]] = json.loads(done.stdout)["ticks"]
        return ticks

    def executed(run_id: object) -> set[str]:
        return {step for step, status in statuses(str(run_id), root).items() if status == "executed"}

    generate("2026-06-15T06:00")
    assert cli("-C", str(root), "run").returncode == 3  # partial: two files have not landed
    assert tick("2026-06-15T06:00:00Z") == []  # the sensors take what has landed as seen
    generate("2026-06-15T08:30")  # the CRM snapshot of 06-14 lands at 08:00
    [crm] = tick("2026-06-15T08:30:00Z")
    assert (crm["name"], crm["reason"]) == ("crm_landed", "new data: raw_accounts@2026-06-14")
    assert executed(crm["run_id"]) == {
        f"{asset}@2026-06-14"
        for asset in ("raw_accounts", "clean_accounts", "enriched_transactions", "account_features")
    }
    [daily] = tick("2026-06-15T09:00:00Z")  # the safety net: nothing is left for it
    assert (daily["name"], daily["status"], executed(daily["run_id"])) == ("daily_features", "partial", set())
    generate("2026-06-15T12:00")  # the payments of 06-05 are replayed at 11:00
    [payments] = tick("2026-06-15T12:00:00Z")
    assert payments["name"] == "payments_landed" and payments["status"] == "succeeded"
    assert len(executed(payments["run_id"])) == 11  # the day's tiers, the 7 windows holding it, feature_table
