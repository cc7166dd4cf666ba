"""``/metrics`` in the Prometheus text format (0.0.4): counts and totals of the whole recorded history, SLO
gauges, open incidents; and a small HTTP server for it (`cairn daemon --metrics-port`).

Counters (``*_total``, histograms) cover every recorded run, by asset where that means something; they only
grow, as Prometheus expects, until records are deleted. A `MetricsCollector` keeps what it summed of finished
runs (a finished run's steps do not change), so a scrape reads the runs table and the steps of the runs that
are new or still running, not the whole history again.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Protocol

from cairn.config import Settings
from cairn.observability.measures import MetricsReads, cost
from cairn.observability.slo import slo_report
from cairn.storage.observations import RunFact, StepFact

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)
LATENCY_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_RUNNING = "running"


class MetricsStore(MetricsReads, Protocol):
    """What a scrape reads."""

    def incident_counts(self) -> dict[tuple[str, str], int]: ...

    def alert_counts(self) -> dict[str, int]: ...


@dataclass(slots=True)
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def copy(self) -> _Histogram:
        return _Histogram(self.buckets, list(self.counts), self.total, self.count)


@dataclass(slots=True)
class _Totals:
    """Sums over runs: what finished runs contribute is kept, running ones are added per scrape."""

    runs: Counter[str] = field(default_factory=Counter)
    steps: Counter[tuple[str, str]] = field(default_factory=Counter)
    step_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    cpu_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    saved_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    durations: _Histogram = field(default_factory=lambda: _Histogram(DURATION_BUCKETS))
    last_success: float | None = None

    def add(self, run: RunFact, steps: Iterable[StepFact]) -> None:
        self.runs[run.status] += 1
        if run.finished_at is not None and run.status != _RUNNING:
            self.durations.observe(max(0.0, run.finished_at - run.created_at))
            if run.status in ("succeeded", "partial"):
                self.last_success = max(self.last_success or 0.0, run.finished_at)
        for step in steps:
            self.steps[(step.asset, step.status)] += 1
            if step.status == "executed":
                self.step_seconds[step.asset] += step.duration_s or 0.0
                self.cpu_seconds[step.asset] += step.cpu_s or 0.0
            elif step.status == "cached":
                self.saved_seconds[step.asset] += step.saved_s or 0.0

    def copy(self) -> _Totals:
        return _Totals(
            Counter(self.runs),
            Counter(self.steps),
            defaultdict(float, self.step_seconds),
            defaultdict(float, self.cpu_seconds),
            defaultdict(float, self.saved_seconds),
            self.durations.copy(),
            self.last_success,
        )


class MetricsCollector:
    """Renders ``/metrics``, keeping the sums of finished runs between scrapes (one per server, one thread)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._folded: set[str] = set()
        self._totals = _Totals()

    def render(self, meta: MetricsStore, now: float) -> str:
        """The exposition text at `now` (the clock of the SLO windows)."""
        runs = meta.run_facts()
        fresh = [r for r in runs if r.run_id not in self._folded]
        steps: dict[str, list[StepFact]] = defaultdict(list)
        if fresh:
            for step in meta.step_facts(run_ids=[r.run_id for r in fresh]):
                steps[step.run_id].append(step)
        live = []
        for run in fresh:
            if run.status == _RUNNING:
                live.append(run)
            else:
                self._totals.add(run, steps.get(run.run_id, ()))
                self._folded.add(run.run_id)
        totals = self._totals.copy() if live else self._totals
        for run in live:
            totals.add(run, steps.get(run.run_id, ()))
        return _render(meta, self.settings, now, totals, runs)


def render_metrics(meta: MetricsStore, now: float, settings: Settings | None = None) -> str:
    """``/metrics`` of a project's metadata store at `now`, in the Prometheus text format.

    Args:
        meta: The metadata store.
        now: The clock (epoch seconds) that SLO windows end at.
        settings: The project's settings: the SLO rules and the price of a CPU-hour (without: neither).
    """
    return MetricsCollector(settings or _NO_SETTINGS).render(meta, now)


def _render(meta: MetricsStore, settings: Settings, now: float, totals: _Totals, runs: Sequence[RunFact]) -> str:
    out = _Exposition()
    out.family(
        "cairn_runs_total",
        "counter",
        "Runs recorded, by status.",
        [({"status": s}, n) for s, n in sorted(totals.runs.items())],
    )
    out.histogram("cairn_run_duration_seconds", "Duration of finished runs, from start to finish.", totals.durations)
    latency = _Histogram(LATENCY_BUCKETS)
    for value in meta.schedule_latencies().values():
        latency.observe(value)
    out.histogram("cairn_schedule_to_start_seconds", "Seconds from a tick's due time to its run's start.", latency)
    out.family(
        "cairn_steps_total",
        "counter",
        "Steps of runs, by asset and final status (executed, cached, failed, skipped).",
        [({"asset": a, "status": s}, n) for (a, s), n in sorted(totals.steps.items())],
    )
    out.family(
        "cairn_step_seconds_total",
        "counter",
        "Seconds spent in executed steps, by asset.",
        _by_asset(totals.step_seconds),
    )
    out.family(
        "cairn_cpu_seconds_total", "counter", "CPU seconds of executed steps, by asset.", _by_asset(totals.cpu_seconds)
    )
    price = {a: cost(v, settings.cpu_hour) for a, v in totals.cpu_seconds.items()}
    unit = f" ({settings.currency})" if settings.currency else ""
    out.family(
        "cairn_cost_total", "counter", f"Cost of executed steps at [costs] cpu_hour{unit}, by asset.", _by_asset(price)
    )
    out.family(
        "cairn_cache_saved_seconds_total",
        "counter",
        "Seconds cached steps saved: the recorded durations of the materializations they reused, by asset.",
        _by_asset(totals.saved_seconds),
    )
    last = max((r.created_at for r in runs), default=None)
    out.family(
        "cairn_last_run_timestamp_seconds", "gauge", "When the newest run started.", [({}, last)] if last else []
    )
    out.family(
        "cairn_last_success_timestamp_seconds",
        "gauge",
        "When the newest successful run finished.",
        [({}, totals.last_success)] if totals.last_success else [],
    )
    incidents = meta.incident_counts()
    kinds = sorted({kind for kind, _ in incidents})
    out.family(
        "cairn_incidents_open",
        "gauge",
        "Open incidents, by kind (failure, violation, drift, slo).",
        (({"kind": k}, incidents.get((k, "open"), 0)) for k in kinds),
    )
    out.family(
        "cairn_incidents_total",
        "counter",
        "Incidents opened, by kind.",
        (({"kind": k}, incidents.get((k, "open"), 0) + incidents.get((k, "closed"), 0)) for k in kinds),
    )
    out.family(
        "cairn_alerts_total",
        "counter",
        "Alerts, by delivery status (pending, sent, logged, failed).",
        (({"status": s}, n) for s, n in sorted(meta.alert_counts().items())),
    )
    _, statuses = slo_report(meta, settings, now)
    out.family(
        "cairn_slo_value",
        "gauge",
        "Each [[slo]] rule's metric over its window.",
        (({"slo": s.rule.name, "metric": s.rule.metric}, s.value) for s in statuses if s.value is not None),
    )
    out.family(
        "cairn_slo_objective",
        "gauge",
        "Each [[slo]] rule's bounds.",
        (
            ({"slo": s.rule.name, "bound": bound}, value)
            for s in statuses
            for bound, value in (("min", s.rule.min), ("max", s.rule.max))
            if value is not None
        ),
    )
    out.family(
        "cairn_slo_breached",
        "gauge",
        "1 when an [[slo]] rule is breached now, 0 when it holds (absent without data).",
        (({"slo": s.rule.name}, 0 if s.ok else 1) for s in statuses if s.ok is not None),
    )
    return out.text()


def _by_asset(values: Mapping[str, float]) -> Iterable[tuple[dict[str, str], float]]:
    return (({"asset": a}, v) for a, v in sorted(values.items()))


class _Exposition:
    """Builds the text format: ``# HELP``, ``# TYPE`` and one line per sample."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float | int | None]]
    ) -> None:
        self.lines += [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            if value is not None:
                self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histogram(self, name: str, help_text: str, hist: _Histogram) -> None:
        self.lines += [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} histogram"]
        for bound, count in zip(hist.buckets, hist.counts, strict=True):
            self.lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {count}')
        self.lines.append(f'{name}_bucket{{le="+Inf"}} {hist.count}')
        self.lines.append(f"{name}_sum {_number(hist.total)}")
        self.lines.append(f"{name}_count {hist.count}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


# -- serving ---------------------------------------------------------------------------------------------


class MetricsServer:
    """Serves ``GET /metrics`` on `host`:`port` from a background thread (`start`), until `close`.

    Each scrape opens the metadata database for itself (the store is used from one thread) and closes it after.
    It binds to 127.0.0.1 by default. Once the project has users (`cairn users add`), a scrape must carry one's
    token (``Authorization: Bearer cairn_...``, Prometheus' ``authorization`` setting); before, it needs none.
    """

    def __init__(
        self, settings: Settings, host: str = "127.0.0.1", port: int = 9464, clock: Callable[[], float] = time.time
    ) -> None:
        self._httpd = _Server((host, port), _Handler)
        self._httpd.collector = MetricsCollector(settings)
        self._httpd.settings = settings
        self._httpd.clock = clock
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (a port of 0 asks for a free one)."""
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/metrics"

    def start(self) -> MetricsServer:
        """Serve in a daemon thread; returns itself."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="cairn-metrics", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and free the port."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_metrics(settings: Settings, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Start serving ``/metrics`` of a project in the background (what ``cairn daemon --metrics-port`` calls)."""
    return MetricsServer(settings, host, port).start()


class _Server(HTTPServer):
    collector: MetricsCollector
    settings: Settings
    clock: Callable[[], float]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._reply(404, "not found: the metrics are at /metrics\n")
            return
        from cairn.storage.metadata import open_metadata

        settings = self.server.settings
        try:
            with open_metadata(settings.database, settings.root) as meta:
                denied = _denied(meta, self.headers.get("Authorization", ""))
                if denied:
                    self._reply(401, denied, {"WWW-Authenticate": 'Bearer realm="cairn"'})
                    return
                body = self.server.collector.render(meta, self.server.clock())
        except Exception as exc:  # a scrape error is the scrape's: answered, never the daemon's death
            self._reply(500, f"cannot read the metrics: {exc}\n")
            return
        self._reply(200, body, {"Content-Type": CONTENT_TYPE})

    def _reply(self, code: int, body: str, headers: Mapping[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(code)
        for name, value in {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (one every few seconds)."""


def _denied(meta: Any, authorization: str) -> str | None:
    """Why a scrape may not read the metrics (no or an unknown token, once users exist), or None."""
    if not meta.has_users():
        return None
    from cairn.security.tokens import hash_token

    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "a token is required: send Authorization: Bearer <a cairn user's token>\n"
    user = meta.user_by_token_hash(hash_token(token.strip()))
    if user is None or not user.enabled:
        return "the token belongs to no enabled user of this project\n"
    return None


_NO_SETTINGS = Settings(root=Path("."), name="", modules=())
