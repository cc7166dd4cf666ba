"""SLO rules, metrics over windows, alert routing, /metrics text and JSON log lines, on values (no disk)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cairn.cli.observability import spoken
from cairn.config import Settings, SloRule, parse_duration, parse_settings
from cairn.core.events import Event
from cairn.core.keys import StepId
from cairn.errors import ConfigError
from cairn.observability.alerts import destinations, payload, summary
from cairn.observability.logs import JsonEvents, event_record
from cairn.observability.measures import build_report, statistic, summarize
from cairn.observability.prometheus import render_metrics
from cairn.observability.slo import evaluate, holds
from cairn.storage.observations import AlertRecord, IncidentRecord, IncidentStep, RunFact, StepFact

ROOT = Path("/project")
DAY = 86400.0


def settings(**data: Any) -> Settings:
    return parse_settings(data, ROOT)


# -- configuration -----------------------------------------------------------------------------------


def test_slo_rules_owners_and_costs_are_parsed_with_their_defaults() -> None:
    s = settings(
        slo=[
            {"metric": "schedule_to_start_s", "max": 60},
            {"metric": "success_ratio", "min": 0.99, "window": "3d", "owners": ["team-x"]},
            {"name": "train-p95", "metric": "duration_s", "asset": "train", "max": 600, "stat": "p95"},
        ],
        owners={"team-x": {"webhook": "http://127.0.0.1:9/x"}, "team-y": {}},
        costs={"cpu_hour": 0.05, "currency": "USD"},
        alerts={"attempts": 3},
    )
    latency, ratio, train = s.slos
    assert latency == SloRule("schedule_to_start_s <= 60", "schedule_to_start_s", max=60.0, window_s=DAY, stat="max")
    assert (ratio.name, ratio.min, ratio.window_s, ratio.owners) == (
        "success_ratio >= 0.99",
        0.99,
        3 * DAY,
        ("team-x",),
    )
    assert (train.name, train.asset, train.stat) == ("train-p95", "train", "p95")
    assert s.owners == {"team-x": "http://127.0.0.1:9/x", "team-y": None}
    assert (s.cpu_hour, s.currency, s.alerts.attempts, s.alerts.timeout_s) == (0.05, "USD", 3, 2.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"slo": [{"metric": "sucess_ratio", "min": 0.9}]}, r"metric = one of .*Did you mean 'success_ratio'"),
        ({"slo": [{"metric": "duration_s"}]}, r"needs min = \.\.\. or max = \.\.\."),
        ({"slo": [{"metric": "duration_s", "max": 1, "window": "3 days"}]}, r"window: '3 days' is not a duration"),
        ({"slo": [{"metric": "duration_s", "max": 1, "stat": "p42"}]}, r"stat = 'p42' is not one of"),
        ({"slo": [{"metric": "success_ratio", "min": 1, "stat": "max"}]}, r"one ratio over its window; remove stat"),
        ({"slo": [{"metric": "schedule_to_start_s", "max": 1, "asset": "a"}]}, r"measured per run; remove asset"),
        ({"slo": [{"metric": "cpu_s", "max": 1, "treshold": 2}]}, r"unknown key 'treshold'"),
        ({"slo": [{"metric": "cpu_s", "max": 1}, {"metric": "cpu_s", "max": 1}]}, r"two \[\[slo\]\] rules are named"),
        ({"slo": {"metric": "cpu_s"}}, r"slo must be an array of tables"),
        ({"owners": {"team-x": {"webhook": "ftp://x"}}}, r"\[owners\] team-x.webhook must be an http:// or https://"),
        ({"owners": {"team-x": {"url": "http://x"}}}, r"must be a table with a webhook"),
        ({"costs": {"cpu_hour": -1}}, r"\[costs\] cpu_hour must be a number >= 0"),
        ({"alerts": {"retries": 3}}, r"unknown key 'retries' in \[alerts\]"),
    ],
)
def test_malformed_observability_settings_are_config_errors_that_name_the_fix(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(data, ROOT)


def test_durations_take_units_or_seconds() -> None:
    assert [parse_duration(t) for t in ("3d", "12h", "30m", "90s", "1w", "1.5h", 45)] == [
        3 * DAY,
        43200.0,
        1800.0,
        90.0,
        7 * DAY,
        5400.0,
        45.0,
    ]
    with pytest.raises(ValueError, match="not a positive duration"):
        parse_duration("0s")


# -- metrics over a window ---------------------------------------------------------------------------


def test_statistics_use_the_nearest_rank_and_time_order() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert [statistic(values, s) for s in ("max", "mean", "p50", "p95", "last", "sum")] == [5, 3, 3, 5, 4, 15]
    assert statistic([], "max") is None
    assert summarize(values).to_dict() == {"count": 5, "total": 15, "mean": 3, "p50": 3, "p95": 5, "max": 5}


def _history() -> tuple[list[RunFact], list[StepFact]]:
    runs = [
        RunFact("r1", "succeeded", 1000.0, 1010.0),
        RunFact("r2", "failed", 2000.0, 2030.0),
        RunFact("r3", "partial", 3000.0, 3005.0),
        RunFact("r4", "cancelled", 3500.0, 3501.0),
        RunFact("r5", "running", 4000.0, None),
    ]
    steps = [
        StepFact("r1", "clean", "", "executed", 8.0, cpu_s=7200.0),
        StepFact("r1", "train", "", "executed", 2.0, cpu_s=1800.0),
        StepFact("r2", "clean", "", "cached", None, saved_s=8.0),
        StepFact("r2", "train", "", "failed", 1.0),
        StepFact("r3", "clean", "", "cached", None, saved_s=8.0),
        StepFact("r3", "train", "", "skipped", None),
    ]
    return runs, steps


def test_a_report_sums_up_runs_and_assets_of_its_window() -> None:
    runs, steps = _history()
    report = build_report(runs, steps, {"r1": 12.0, "r2": 90.0}, 0.0, 5000.0, cpu_hour=0.5)
    by_run = {r.run_id: r for r in report.runs}
    assert by_run["r1"].cpu_s == 9000.0 and by_run["r1"].cost == 1.25  # 2.5 CPU-hours at 0.5
    assert (by_run["r2"].cached, by_run["r2"].cache_saved_s, by_run["r2"].failed) == (1, 8.0, 1)
    # partial counts as a success; cancelled and running runs are left out.
    assert report.success_ratio == pytest.approx(2 / 3)
    data = report.to_dict()["runs"]
    assert (data["count"], data["finished"], data["succeeded"], data["failed"]) == (5, 3, 2, 1)
    assert data["duration_s"]["max"] == 30 and data["schedule_to_start_s"]["max"] == 90
    assert (data["cached_steps"], data["cache_saved_s"]) == (2, 16)
    clean, train = report.assets()
    assert (clean.executed, clean.cached, clean.success_ratio, clean.cache_saved_s) == (1, 2, 1.0, 16.0)
    assert (train.failed, train.skipped, train.success_ratio) == (1, 1, 0.5)  # skipped is not the asset's outcome


def test_each_rule_is_measured_over_its_own_window() -> None:
    runs, steps = _history()
    report = build_report(runs, steps, {"r1": 12.0, "r2": 90.0}, 0.0, 5000.0)
    rules = [
        SloRule("latency", "schedule_to_start_s", max=60.0, window_s=5000.0),
        SloRule("latency-recent", "schedule_to_start_s", max=60.0, window_s=2500.0),
        SloRule("ratio", "success_ratio", min=0.99, window_s=5000.0),
        SloRule("ratio-recent", "success_ratio", min=0.99, window_s=2500.0),  # r3 only: partial succeeded
        SloRule("train", "success_ratio", min=0.9, window_s=5000.0, asset="train"),
        SloRule("train-time", "duration_s", max=1.5, stat="last", window_s=5000.0, asset="train"),
        SloRule("quiet", "duration_s", max=1.0, window_s=100.0),  # no run in the last 100 s
    ]
    got = {s.rule.name: (s.value, s.ok) for s in evaluate(report, rules)}
    assert got == {
        "latency": (90.0, False),
        "latency-recent": (None, None),  # r2 (the late one) started before the window
        "ratio": (pytest.approx(2 / 3), False),
        "ratio-recent": (1.0, True),
        "train": (0.5, False),
        "train-time": (2.0, False),
        "quiet": (None, None),
    }


def test_bounds_hold_inclusively_and_unknown_values_decide_nothing() -> None:
    band = SloRule("band", "duration_s", min=1.0, max=2.0)
    assert [holds(band, v) for v in (0.5, 1.0, 2.0, 2.5, None)] == [False, True, True, False, None]


# -- alerts ------------------------------------------------------------------------------------------


def test_alerts_go_to_each_owners_webhook_else_the_default_else_the_log() -> None:
    s = settings(owners={"team-x": {"webhook": "http://x/hook"}, "team-y": {}})
    assert destinations(["team-x", "team-y", "team-x"], s) == [("team-x", "http://x/hook"), ("team-y", "log")]
    assert destinations([], s) == [(None, "log")]
    with_default = settings(alerts={"webhook": "http://default/hook"})
    assert destinations(["team-z"], with_default) == [("team-z", "http://default/hook")]


def test_an_alert_payload_names_its_incident_once_for_every_event() -> None:
    incident = IncidentRecord(
        7,
        "failure:clean",
        "failure",
        "clean",
        100.0,
        None,
        "r1",
        None,
        {"error_class": "StepFailed"},
        ("team-x",),
        steps=(
            IncidentStep("clean", "2026-06-01", "failed", "r1", "r1", 100.0, 100.0),
            IncidentStep("train", "", "skipped", "r1", "r1", 100.0, 100.0),
        ),
    )
    opened = AlertRecord(1, "incident:7:opened:http://x", 7, "opened", "http://x", "team-x", "pending", 0, 100.0, 100.0)
    resolved = AlertRecord(2, "incident:7:resolved:http://x", 7, "resolved", "http://x", "team-x", "pending", 0, 1, 1)
    first, last = payload(incident, opened, "recsys"), payload(incident, resolved, "recsys")
    assert (first["status"], last["status"]) == ("firing", "resolved")
    assert first["dedup_key"] == last["dedup_key"] == "cairn:recsys:incident:7"
    assert first["summary"] == (
        "incident 7 opened: failure of asset 'clean' (StepFailed): 1 partition affected, 1 downstream step skipped"
    )
    assert json.loads(json.dumps(first))["incident"]["steps"][0]["partition"] == "2026-06-01"
    slo = IncidentRecord(
        8, "slo:r", "slo", "ratio", 1, None, "slo", None, {"metric": "success_ratio", "value": 0.5}, ()
    )
    assert summary(slo, "opened") == "incident 8 opened: SLO 'ratio' breached: success_ratio = 0.5"


# -- /metrics ----------------------------------------------------------------------------------------


class History:
    """A metadata store's reads for /metrics, over a fixed history."""

    def __init__(self, runs: list[RunFact], steps: list[StepFact]) -> None:
        self.runs, self.steps = runs, steps

    def run_facts(self, since: float | None = None, until: float | None = None) -> list[RunFact]:
        return [
            r for r in self.runs if (since is None or r.created_at >= since) and (until is None or r.created_at < until)
        ]

    def step_facts(
        self, since: float | None = None, until: float | None = None, run_ids: Sequence[str] | None = None
    ) -> list[StepFact]:
        keep = set(run_ids) if run_ids is not None else {r.run_id for r in self.run_facts(since, until)}
        return [s for s in self.steps if s.run_id in keep]

    def schedule_latencies(self, since: float | None = None, until: float | None = None) -> dict[str, float]:
        return {"r1": 12.0, "r2": 90.0}

    def incident_counts(self) -> dict[tuple[str, str], int]:
        return {("failure", "open"): 1, ("slo", "closed"): 2}

    def alert_counts(self) -> dict[str, int]:
        return {"sent": 3}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_text_parses_and_carries_the_counts_of_the_history() -> None:
    runs, steps = _history()
    s = settings(slo=[{"name": "ratio", "metric": "success_ratio", "min": 0.99, "window": 5000}], costs={"cpu_hour": 1})
    got = samples(render_metrics(History(runs, steps), 5000.0, s))
    assert got[("cairn_runs_total", (("status", "succeeded"),))] == 1
    assert got[("cairn_runs_total", (("status", "running"),))] == 1
    assert got[("cairn_steps_total", (("asset", "train"), ("status", "failed")))] == 1
    assert got[("cairn_steps_total", (("asset", "clean"), ("status", "cached")))] == 2
    assert got[("cairn_cpu_seconds_total", (("asset", "clean"),))] == 7200
    assert got[("cairn_cost_total", (("asset", "clean"),))] == 2  # two CPU-hours at 1
    assert got[("cairn_cache_saved_seconds_total", (("asset", "clean"),))] == 16
    assert got[("cairn_run_duration_seconds_count", ())] == 4  # every finished run, cancelled too
    assert got[("cairn_run_duration_seconds_bucket", (("le", "10.0"),))] == 3  # 10, 5 and 1 s
    assert got[("cairn_schedule_to_start_seconds_bucket", (("le", "60.0"),))] == 1
    assert got[("cairn_incidents_open", (("kind", "failure"),))] == 1
    assert got[("cairn_incidents_total", (("kind", "slo"),))] == 2
    assert got[("cairn_slo_value", (("metric", "success_ratio"), ("slo", "ratio")))] == pytest.approx(2 / 3)
    assert got[("cairn_slo_breached", (("slo", "ratio"),))] == 1


def test_label_values_are_escaped() -> None:
    runs = [RunFact("r1", "succeeded", 1.0, 2.0)]
    steps = [StepFact("r1", 'we"ird\\name', "", "executed", 1.0)]
    text = render_metrics(History(runs, steps), 10.0)
    assert samples(text)[("cairn_steps_total", (("asset", 'we"ird\\name'), ("status", "executed")))] == 1


# -- logs and durations ------------------------------------------------------------------------------


def test_step_events_become_one_json_object_per_line() -> None:
    stream = io.StringIO()
    sink = JsonEvents(stream, clock=lambda: 0.25)
    sink(Event("run_started", "r1", total=2))
    sink(Event("step_finished", "r1", StepId("clean", "2026-06-01"), "failed", "StepFailed: boom"))
    sink(Event("step_retrying", "r1", StepId("train"), "retrying", "attempt 1 failed"))
    first, failed, retry = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first == {
        "ts": "1970-01-01T00:00:00.250Z",
        "level": "info",
        "event": "run_started",
        "run_id": "r1",
        "total": 2,
    }
    assert failed["level"] == "error" and failed["partition"] == "2026-06-01" and failed["detail"] == "StepFailed: boom"
    assert (retry["level"], retry["partition"]) == ("warning", None)
    assert event_record(Event("run_finished", "r1", status="succeeded", total=2), 0)["level"] == "info"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.012, "12 ms"), (3.44, "3.4 s"), (34.2, "34 s"), (754, "12 m 34 s"), (7500, "2 h 05 m"), (270000, "3 d 3 h")],
)
def test_durations_are_spoken_as_people_say_them(seconds: float, text: str) -> None:
    assert spoken(seconds) == text
