"""Metrics, SLOs, incidents, alerts to a local webhook, /metrics and JSON logs, on real projects and databases.

Time is injected: SLO checks, alert retries and windows take `now` as an argument, so nothing here sleeps.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import cairn
from cairn.automation import hooks
from cairn.automation.clock import ManualClock
from cairn.automation.daemon import Daemon
from cairn.config import Settings, load_settings
from cairn.core.automation import TickRecord
from cairn.observability.alerts import deliver_alerts
from cairn.observability.daemon import observing
from cairn.observability.incidents import observe_run
from cairn.observability.prometheus import MetricsServer, render_metrics
from cairn.observability.slo import check_slos
from cairn.storage.metadata import MetadataStore, open_metadata
from tests.conftest import ProjectFactory, cli, set_pipeline

PIPELINE = """
from cairn import asset

FAIL = ()

@asset(owners=OWNERS)
def numbers() -> list[int]:
    return [sum(range(20000)) % 7, 1, 2]

@asset
def total(numbers: list[int]) -> int:
    if "total" in FAIL:
        raise RuntimeError("total is broken")
    return sum(numbers)

@asset
def report(total: int) -> dict:
    return {"total": total}
"""


class Webhook:
    """A local webhook receiver (stdlib http.server on 127.0.0.1): records every JSON body POSTed to it; the
    first `failures` requests are answered 500."""

    def __init__(self, failures: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.failures = failures
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    failing = hook.failures > 0
                    hook.failures -= 1
                    if not failing:
                        hook.bodies.append(body)
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[tuple[str, str]]:
        return [(b["status"], b["incident"]["subject"]) for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def project(make_project: ProjectFactory, extra: str = "", owners: str = "[]", **kwargs: Any) -> Path:
    return make_project(PIPELINE.replace("OWNERS", owners), extra=extra, **kwargs)


def failing(root: Path, owners: str = "[]") -> None:
    set_pipeline(root, PIPELINE.replace("OWNERS", owners).replace("FAIL = ()", 'FAIL = ("total",)'))


def fixed(root: Path, owners: str = "[]") -> None:
    set_pipeline(root, PIPELINE.replace("OWNERS", owners))


def store(settings: Settings) -> MetadataStore:
    return open_metadata(settings.database, settings.root)


def test_cache_savings_equal_the_recorded_durations_of_the_cached_steps(make_project: ProjectFactory) -> None:
    root = project(make_project)
    first = cairn.materialize(project=root)
    again = cairn.materialize(project=root)
    assert again.count("cached") == 3
    with store(load_settings(root)) as meta:
        recorded = meta.run_materializations(first.run_id)
        assert meta.cache_savings(again.run_id) == (3, pytest.approx(sum(m.duration_s for m in recorded.values())))
        assert meta.cache_savings(first.run_id) == (0, 0.0)
        # CPU seconds are recorded with each materialization, next to (not inside) the timings of the step.
        assert all(m.metadata["cairn.cpu_s"] >= 0 for m in recorded.values())
        assert "cpu_s" not in recorded[("numbers", "")].metadata["cairn.timings"]
    out = cli("-C", str(root), "run")
    assert out.returncode == 0, out.stderr
    assert "3 cached, " in out.stdout and " saved in " in out.stdout


def test_a_failure_opens_one_incident_alerts_its_owner_once_and_a_later_success_closes_it(
    make_project: ProjectFactory, webhook: Webhook
) -> None:
    owners = '["team-x"]'
    extra = f'[owners]\nteam-x = {{ webhook = "{webhook.url}" }}\n'
    root = project(make_project, extra, owners)
    assert cairn.materialize(project=root).ok
    failing(root, owners)
    broken = cairn.materialize(project=root)
    assert broken.status == "failed"
    again = cairn.materialize(project=root)  # the same failure again: the open incident grows, nobody is paged
    assert again.status == "failed"
    with store(load_settings(root)) as meta:
        (incident,) = meta.incidents()
        assert (incident.kind, incident.subject, incident.status) == ("failure", "total", "open")
        assert incident.detail["error_class"] == "StepFailed"
        assert {(s.asset, s.role, s.first_run, s.last_run) for s in incident.steps} == {
            ("total", "failed", broken.run_id, again.run_id),
            ("report", "skipped", broken.run_id, again.run_id),
        }
    assert webhook.events() == []  # the asset `total` has no owners: its alert went to the log
    fixed(root, owners)
    healed = cairn.materialize(project=root)
    assert healed.ok
    with store(load_settings(root)) as meta:
        (incident,) = meta.incidents()
        assert incident.closed_at is not None and incident.closed_by == healed.run_id
        assert [a.status for a in meta.alerts([incident.id])] == ["logged", "logged"]  # opened, resolved


def test_an_owned_assets_failure_is_routed_to_its_owners_webhook(
    make_project: ProjectFactory, webhook: Webhook
) -> None:
    owners = '["team-x"]'
    root = project(make_project, f'[owners]\nteam-x = {{ webhook = "{webhook.url}" }}\n', owners)
    set_pipeline(
        root, PIPELINE.replace("OWNERS", owners).replace("return [sum", "raise ValueError('x')\n    return [sum")
    )
    assert cairn.materialize(project=root).status == "failed"
    assert cairn.materialize(project=root).status == "failed"
    assert webhook.events() == [("firing", "numbers")]  # exactly one alert for two failing runs
    (body,) = webhook.bodies
    assert body["owner"] == "team-x" and body["incident"]["owners"] == ["team-x"]
    assert {s["asset"] for s in body["incident"]["steps"]} == {"numbers", "total", "report"}
    set_pipeline(root, PIPELINE.replace("OWNERS", owners))
    assert cairn.materialize(project=root).ok
    assert webhook.events() == [("firing", "numbers"), ("resolved", "numbers")]
    assert webhook.bodies[0]["dedup_key"] == webhook.bodies[1]["dedup_key"]


def test_an_slo_breach_sends_exactly_one_alert_and_the_recovery_closes_the_incident(
    make_project: ProjectFactory, webhook: Webhook
) -> None:
    extra = f"""
        [[slo]]
        name = "daily-success"
        metric = "success_ratio"
        min = 0.99
        window = "1h"
        owners = ["team-x"]

        [owners]
        team-x = {{ webhook = "{webhook.url}" }}
        """
    root = project(make_project, extra)
    failing(root)
    bad = cairn.materialize(project=root)
    settings = load_settings(root)
    with store(settings) as meta:
        started = meta.get_run(bad.run_id).created_at  # type: ignore[union-attr]
        for minutes in (1, 2, 30):  # three daemon ticks while it stays breached
            (status,) = check_slos(meta, settings, started + 60 * minutes)
            assert status.ok is False and status.value == 0.0
        assert webhook.events() == [("firing", "daily-success")]
        assert webhook.bodies[0]["summary"].startswith("incident 2 opened: SLO 'daily-success' breached")
    fixed(root)
    good = cairn.materialize(project=root)
    with store(settings) as meta:
        later = meta.get_run(good.run_id).created_at  # type: ignore[union-attr]
        (status,) = check_slos(meta, settings, later + 60)
        assert status.ok is False and status.value == 0.5  # both runs are still in the window
        # An hour after the failure it has left the window: the rule holds again, and the incident closes.
        recovered = (started + later) / 2 + 3600
        (status,) = check_slos(meta, settings, recovered)
        assert status.ok is True and status.value == 1.0
        slo = [i for i in meta.incidents() if i.kind == "slo"]
        assert [(i.subject, i.closed_at) for i in slo] == [("daily-success", recovered)]
        (status,) = check_slos(meta, settings, recovered + 3600)  # no run in the window: nothing is decided
        assert status.ok is None and len([i for i in meta.incidents() if i.kind == "slo"]) == 1
    assert webhook.events() == [("firing", "daily-success"), ("resolved", "daily-success")]


def test_a_failing_webhook_is_retried_with_backoff_and_never_fails_the_run(make_project: ProjectFactory) -> None:
    hook = Webhook(failures=2)
    try:
        root = project(make_project, f'[alerts]\nwebhook = "{hook.url}"\nbackoff_s = 10\n')
        failing(root)
        result = cairn.materialize(project=root)  # the first try is made at once, and answered 500
        assert result.status == "failed" and hook.events() == []
        settings = load_settings(root)
        with store(settings) as meta:
            (alert,) = meta.alerts()
            assert (alert.status, alert.attempts) == ("pending", 1) and "500" in (alert.last_error or "")
            first_try = alert.created_at
            assert deliver_alerts(meta, settings, first_try + 5).sent == 0  # not due before the backoff
            assert deliver_alerts(meta, settings, first_try + 10).retrying == 1  # second try: 500 again
            assert deliver_alerts(meta, settings, first_try + 25).sent == 0  # backoff doubled: due at +30
            assert deliver_alerts(meta, settings, first_try + 30).sent == 1
            assert [(a.status, a.attempts) for a in meta.alerts()] == [("sent", 3)]
            assert deliver_alerts(meta, settings, first_try + 3600).sent == 0  # sent once, never again
        assert hook.events() == [("firing", "total")]
    finally:
        hook.close()


def test_an_unreachable_webhook_gives_up_after_its_attempts(make_project: ProjectFactory) -> None:
    closed = Webhook()
    url = closed.url
    closed.close()  # nothing listens there any more
    root = project(make_project, f'[alerts]\nwebhook = "{url}"\nattempts = 2\ntimeout_s = 0.5\n')
    failing(root)
    assert cairn.materialize(project=root).status == "failed"
    settings = load_settings(root)
    with store(settings) as meta:
        (alert,) = meta.alerts()
        assert deliver_alerts(meta, settings, alert.created_at + 1).failed == 1
        assert [a.status for a in meta.alerts()] == ["failed"]


CONTRACTS = """
import os
from cairn import Contract, Drift, asset, col, drift_check

@asset(owners=["data-team"], on_violation="reload", on_failure="reload",
       contract=Contract(columns={"price": col("float64", min=0)}))
def prices() -> list:
    import pyarrow as pa
    return pa.table({"price": [float(i % 10) + SHIFT for i in range(500)]})

@asset
def reload() -> int:
    return 1

checks = [drift_check("prices", Drift("price", max_psi=0.1, blocking=False))]
"""


def test_violations_and_drift_open_their_own_incidents_with_the_remediation_asked_for(
    make_project: ProjectFactory,
) -> None:
    root = make_project(CONTRACTS.replace("SHIFT", "0.0"))
    assert cairn.materialize(project=root).ok
    set_pipeline(root, CONTRACTS.replace("SHIFT", "40.0"))  # drifted, but the drift check does not block
    drifted = cairn.materialize(project=root)
    assert drifted.ok
    set_pipeline(root, CONTRACTS.replace("SHIFT", "-100.0"))  # negative prices break the contract
    assert cairn.materialize(project=root).status == "failed"
    with store(load_settings(root)) as meta:
        violation, drift = meta.incidents()
        assert (drift.kind, drift.subject, drift.detail["rules"], drift.opened_by) == (
            "drift",
            "prices",
            ["drift_price"],
            drifted.run_id,
        )
        assert (violation.kind, violation.detail["error_class"]) == ("violation", "ContractViolation")
        assert (violation.remediation, violation.remediation_status) == ("reload", "pending")
        assert violation.owners == ("data-team",) and drift.status == "open"
    set_pipeline(root, CONTRACTS.replace("SHIFT", "40.0"))  # the same as the drifted version: cached
    assert cairn.materialize(project=root)["prices"].status == "cached"
    with store(load_settings(root)) as meta:
        violation, drift = meta.incidents()
        assert violation.status == "closed" and drift.status == "open"  # reusing drifted data is not a recovery


def test_the_metrics_endpoint_parses_and_carries_the_counts_of_a_known_history(
    make_project: ProjectFactory,
) -> None:
    root = project(make_project, '[costs]\ncpu_hour = 3600\n\n[[slo]]\nmetric = "schedule_to_start_s"\nmax = 60\n')
    first = cairn.materialize(project=root)  # 3 executed
    cairn.materialize(project=root)  # 3 cached
    failing(root)
    cairn.materialize(project=root)  # numbers cached, total failed, report skipped
    settings = load_settings(root)
    with store(settings) as meta:
        # The first run was started by a schedule tick 90 s late (as `cairn daemon` records it).
        due = meta.get_run(first.run_id).created_at - 90  # type: ignore[union-attr]
        tick = TickRecord("schedule", "nightly", due, owner="test", claimed_at=due)
        assert meta.claim_tick(tick)
        meta.tick_started(tick, first.run_id, due + 90)
        cpu = sum(m.metadata["cairn.cpu_s"] for m in meta.run_materializations(first.run_id).values())
        saved = sum(m.duration_s for m in meta.run_materializations(first.run_id).values())
    with MetricsServer(settings, port=0) as server:
        text = urllib.request.urlopen(server.url, timeout=10).read().decode()
        missing = urllib.request.Request(server.url.replace("/metrics", "/nope"))
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(missing, timeout=10)
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert got[("cairn_runs_total", (("status", "succeeded"),))] == 2
    assert got[("cairn_runs_total", (("status", "failed"),))] == 1
    assert got[("cairn_steps_total", (("asset", "numbers"), ("status", "executed")))] == 1
    assert got[("cairn_steps_total", (("asset", "numbers"), ("status", "cached")))] == 2
    assert got[("cairn_steps_total", (("asset", "total"), ("status", "failed")))] == 1
    assert got[("cairn_steps_total", (("asset", "report"), ("status", "skipped")))] == 1
    assert sum(v for (name, _), v in got.items() if name == "cairn_cpu_seconds_total") == pytest.approx(cpu)
    assert sum(v for (name, _), v in got.items() if name == "cairn_cost_total") == pytest.approx(cpu)  # 1 per s
    # Cached: numbers, total, report once (run 2), numbers again (run 3).
    expected = saved + meta_duration(settings, first.run_id, "numbers")
    assert sum(v for (n, _), v in got.items() if n == "cairn_cache_saved_seconds_total") == pytest.approx(expected)
    assert got[("cairn_run_duration_seconds_count", ())] == 3
    assert got[("cairn_schedule_to_start_seconds_count", ())] == 1
    assert got[("cairn_schedule_to_start_seconds_sum", ())] == pytest.approx(90)
    assert got[("cairn_incidents_open", (("kind", "failure"),))] == 1
    assert got[("cairn_slo_value", (("metric", "schedule_to_start_s"), ("slo", "schedule_to_start_s <= 60")))] == 90
    assert got[("cairn_slo_breached", (("slo", "schedule_to_start_s <= 60"),))] == 1


def meta_duration(settings: Settings, run_id: str, asset: str) -> float:
    with store(settings) as meta:
        return meta.run_materializations(run_id)[(asset, "")].duration_s


def test_metrics_need_a_users_token_once_the_project_has_users(make_project: ProjectFactory) -> None:
    root = project(make_project)
    assert cli("-C", str(root), "users", "add", "alice", "--role", "admin").returncode == 0
    with store(load_settings(root)) as meta:
        assert meta.has_users()
    with MetricsServer(load_settings(root), port=0) as server:
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(server.url, timeout=10)
        wrong = urllib.request.Request(server.url, headers={"Authorization": "Bearer cairn_nope"})
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(wrong, timeout=10)


def test_observing_a_no_change_rerun_reads_once_and_writes_nothing(make_project: ProjectFactory) -> None:
    root = project(make_project)
    cairn.materialize(project=root)
    rerun = cairn.materialize(project=root)
    settings = load_settings(root)
    calls: list[str] = []

    class Counting:
        def __init__(self, meta: MetadataStore) -> None:
            self.meta = meta

        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(self.meta, name)

    with store(settings) as meta:
        observed = observe_run(Counting(meta), settings, rerun, time.time())  # type: ignore[arg-type]
    assert calls == ["unrecovered_steps"] and observed.opened == observed.closed == ()


def test_a_store_error_while_observing_is_logged_and_the_result_stands(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    root = project(make_project)
    failing(root)
    result = cairn.materialize(project=root)
    settings = load_settings(root)
    meta = store(settings)
    meta.close()
    assert observe_run(meta, settings, result, time.time()).opened == ()
    assert "could not record the incidents of run" in caplog.text


def test_run_log_format_json_writes_one_json_object_per_step_event(make_project: ProjectFactory) -> None:
    root = project(make_project)
    out = cli("-C", str(root), "run", "--log-format", "json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    assert [(e["event"], e.get("asset")) for e in lines] == [
        ("run_started", None),
        *[(kind, a) for a in ("numbers", "total", "report") for kind in ("step_started", "step_finished")],
        ("run_finished", None),
    ]
    assert {e["run_id"] for e in lines} == {lines[0]["run_id"]} and lines[-1]["status"] == "succeeded"
    assert "3 executed" in out.stdout
    bad = cli("-C", str(root), "run", "--log-format", "xml")
    assert bad.returncode == 2 and "use text or json" in bad.stderr


def test_slo_and_incidents_commands_report_in_text_and_json(make_project: ProjectFactory) -> None:
    root = project(make_project, '[[slo]]\nmetric = "success_ratio"\nmin = 0.99\n\n[costs]\ncpu_hour = 0.05\n')
    assert cairn.materialize(project=root).ok
    ok = cli("-C", str(root), "slo", "--json", "--window", "1d")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["runs"]["count"] == 1 and data["runs"]["success_ratio"] == 1.0 and data["window_s"] == 86400
    assert [a["asset"] for a in data["assets"]] == ["numbers", "report", "total"]
    assert [(s["name"], s["ok"]) for s in data["slos"]] == [("success_ratio >= 0.99", True)]
    failing(root)
    cairn.materialize(project=root)
    breached = cli("-C", str(root), "slo")
    assert breached.returncode == 1
    assert "success_ratio >= 0.99" in breached.stdout and "breached" in breached.stdout
    listed = json.loads(cli("-C", str(root), "incidents", "--json", "--open").stdout)
    assert [(i["kind"], i["subject"], i["status"]) for i in listed] == [("failure", "total", "open")]
    assert [a["event"] for a in listed[0]["alerts"]] == ["opened"]
    text = cli("-C", str(root), "incidents")
    assert "failure" in text.stdout and "1 failed, 1 skipped" in text.stdout
    assert cli("-C", str(root), "slo", "--window", "soon").returncode == 2


def test_incidents_and_alerts_are_recorded_alike_on_sqlite_and_postgresql(
    make_project: ProjectFactory, database_url: str, webhook: Webhook
) -> None:
    extra = f'[storage]\ndatabase = "{database_url}"\n\n[alerts]\nwebhook = "{webhook.url}"\n'
    root = project(make_project, extra)
    first = cairn.materialize(project=root)
    assert first.ok
    cairn.materialize(project=root)
    failing(root)
    assert cairn.materialize(project=root).status == "failed"
    assert cairn.materialize(project=root).status == "failed"
    fixed(root)
    healed = cairn.materialize(project=root)
    settings = load_settings(root)
    with store(settings) as meta:
        (incident,) = meta.incidents()
        assert incident.closed_by == healed.run_id
        # The healed code is the first run's again: all three steps reuse what the first run computed.
        durations = sum(m.duration_s for m in meta.run_materializations(first.run_id).values())
        assert meta.cache_savings(healed.run_id) == (3, pytest.approx(durations))
        rendered = render_metrics(meta, time.time(), settings)
    assert 'cairn_runs_total{status="failed"} 2' in rendered
    assert webhook.events() == [("firing", "total"), ("resolved", "total")]


def test_a_later_rerun_recovers_only_the_partitions_that_failed(make_project: ProjectFactory) -> None:
    text = """
from cairn import asset, static

BAD = ("b", "c")

@asset(partitions=static("a", "b", "c"))
def part(ctx) -> str:
    if ctx.partition in BAD:
        raise RuntimeError(ctx.partition)
    return ctx.partition
"""
    root = make_project(text)
    assert cairn.materialize(project=root).status == "failed"
    set_pipeline(root, text.replace('BAD = ("b", "c")', 'BAD = ("c",)'))
    assert cairn.materialize(project=root).status == "failed"
    settings = load_settings(root)
    with store(settings) as meta:
        (incident,) = meta.incidents()
        recovered = {s.partition: s.recovered_at is not None for s in incident.steps}
        assert recovered == {"b": True, "c": False} and incident.status == "open"
        assert incident.detail["partitions"] == 2
    set_pipeline(root, text.replace('BAD = ("b", "c")', "BAD = ()"))
    assert cairn.materialize(project=root).ok
    with store(settings) as meta:
        assert [i.status for i in meta.incidents()] == ["closed"]


# -- under the daemon ---------------------------------------------------------------------------------

EVERY_FIVE = """
from cairn import asset, schedule

@asset(on_failure="repair")
def report() -> int:
    if BROKEN:
        raise RuntimeError("the warehouse is down")
    return 1

@asset
def repair() -> str:
    return "repaired"

every_five = schedule("every_five", "*/5 * * * *", select="report")
"""


def five_minutes_past(moment: datetime) -> datetime:
    """The last whole five minutes at or before `moment` (when ``*/5 * * * *`` was last due)."""
    return moment.replace(minute=moment.minute - moment.minute % 5, second=0, microsecond=0)


def tick_daemon(root: Path, clock: ManualClock, at: datetime) -> list[TickRecord]:
    """Move the clock to `at` and let a daemon make one tick there; the ticks it finished."""
    seen: list[TickRecord] = []

    def hook(meta: MetadataStore, tick: TickRecord, result: object) -> None:
        seen.append(tick)

    clock.set(at)
    hooks.append(hook)
    try:
        Daemon(root, clock=clock, interval_s=30).run(max_ticks=1)
    finally:
        hooks.remove(hook)
    return seen


def test_the_daemon_alerts_once_on_a_late_start_and_resolves_when_starts_are_on_time(
    make_project: ProjectFactory, webhook: Webhook
) -> None:
    extra = f"""
        [[slo]]
        name = "start-on-time"
        metric = "schedule_to_start_s"
        max = 60
        stat = "last"
        window = "1h"

        [alerts]
        webhook = "{webhook.url}"
        """
    root = make_project(EVERY_FIVE.replace("BROKEN", "False"), extra=extra)
    start = five_minutes_past(datetime.now(UTC)) + timedelta(minutes=1)
    clock = ManualClock(start)
    assert tick_daemon(root, clock, start) == []  # the daemon sees the schedule for the first time
    due = start + timedelta(minutes=4)
    (late,) = tick_daemon(root, clock, due + timedelta(seconds=150))
    assert late.status == "succeeded" and late.latency_s == pytest.approx(150)
    assert webhook.events() == [("firing", "start-on-time")]
    assert webhook.bodies[0]["incident"]["detail"]["value"] == pytest.approx(150)
    (again,) = tick_daemon(root, clock, due + timedelta(minutes=5, seconds=90))  # late again: no second alert
    assert again.latency_s == pytest.approx(90) and webhook.events() == [("firing", "start-on-time")]
    (on_time,) = tick_daemon(root, clock, due + timedelta(minutes=10, seconds=2))
    assert on_time.latency_s == pytest.approx(2)
    assert webhook.events() == [("firing", "start-on-time"), ("resolved", "start-on-time")]
    with store(load_settings(root)) as meta:
        (incident,) = meta.incidents()
        assert incident.closed_at == pytest.approx((due + timedelta(minutes=10, seconds=2)).timestamp(), abs=5)
        assert meta.schedule_latencies() == {
            late.run_id: pytest.approx(150),
            again.run_id: pytest.approx(90),
            on_time.run_id: pytest.approx(2),
        }


def test_the_daemon_runs_the_remediation_a_failing_asset_names(make_project: ProjectFactory) -> None:
    root = make_project(EVERY_FIVE.replace("BROKEN", "True"))
    start = five_minutes_past(datetime.now(UTC)) + timedelta(minutes=1)
    clock = ManualClock(start)
    assert tick_daemon(root, clock, start) == []
    (failed,) = tick_daemon(root, clock, start + timedelta(minutes=4, seconds=1))
    assert failed.status == "failed"
    with store(load_settings(root)) as meta:
        (incident,) = meta.incidents()
        assert (incident.subject, incident.remediation, incident.remediation_status) == ("report", "repair", "done")
        run = meta.get_run(str(incident.remediation_run))
        assert run is not None and run.selection == "repair" and run.status == "succeeded"
    assert cairn.load("repair", project=root) == "repaired"
    tick_daemon(root, clock, start + timedelta(minutes=9, seconds=1))  # fails again: the remedy is not rerun
    with store(load_settings(root)) as meta:
        assert [(i.remediation_status, i.remediation_run) for i in meta.incidents()] == [("done", run.run_id)]


FRESHNESS = """
from cairn import asset

@asset(max_age="1h", on_stale="alert", owners=["team-x"])
def prices() -> int:
    return 1
"""


def test_a_freshness_alert_opens_an_incident_that_the_next_materialization_closes(
    make_project: ProjectFactory, webhook: Webhook
) -> None:
    root = make_project(FRESHNESS, extra=f'[owners]\nteam-x = {{ webhook = "{webhook.url}" }}\n')
    assert cairn.materialize(project=root).ok
    with store(load_settings(root)) as meta:
        made = meta.latest_materialization("prices").created_at  # type: ignore[union-attr]
    clock = ManualClock(datetime.fromtimestamp(made, UTC))
    (alerted,) = tick_daemon(root, clock, datetime.fromtimestamp(made + 2 * 3600, UTC))
    assert alerted.status == "alerted"
    assert webhook.events() == [("firing", "prices")] and webhook.bodies[0]["owner"] == "team-x"
    assert cairn.materialize(project=root, force=True).ok
    assert webhook.events() == [("firing", "prices"), ("resolved", "prices")]
    with store(load_settings(root)) as meta:
        (incident,) = meta.incidents()
        assert (incident.kind, incident.status) == ("freshness", "closed")


def test_cairn_tick_with_nothing_due_still_retries_the_due_alerts(make_project: ProjectFactory) -> None:
    hook = Webhook(failures=1)
    try:
        root = project(make_project, f'[alerts]\nwebhook = "{hook.url}"\nbackoff_s = 0.01\n')
        failing(root)
        assert cairn.materialize(project=root).status == "failed"  # the first try is answered 500
        assert hook.events() == []
        out = cli("-C", str(root), "tick")
        assert out.returncode == 0, out.stderr
        assert "nothing due" in out.stdout and hook.events() == [("firing", "total")]
    finally:
        hook.close()


def test_a_project_is_observed_once_however_often_it_is_registered(make_project: ProjectFactory) -> None:
    settings = load_settings(project(make_project))
    registered: list[object] = []
    with observing(registered, settings) as outer, observing(registered, settings) as inner:
        assert inner is outer and registered == [outer]
    assert registered == []
