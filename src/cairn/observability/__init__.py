"""Observability: run and asset metrics, SLO rules, incidents and their alerts, ``/metrics``, structured logs.

Layer: above storage and config, below the engine (which calls `incidents.observe_run` after every run),
automation (whose daemon calls `daemon.after_tick`) and the interfaces. See docs/observability.md.

    measures.py    metrics over a window, computed from recorded runs, steps and ticks (`cairn slo`)
    slo.py         [[slo]] rules: evaluated, breaches opened and recoveries closed as incidents
    incidents.py   after each run: failures, violations and drift open incidents, later successes close them
    alerts.py      routing to owners' webhooks or the log, payloads, delivery with retries and backoff
    prometheus.py  /metrics in the Prometheus text format, and a small HTTP server for it
    logs.py        one JSON object per line per run and step event (`cairn run --log-format json`)
    daemon.py      what the daemon runs after each tick: SLO checks, due alerts, remediations

The package's modules are imported one by one where they are needed (this file imports none), so that a run
pays only for the incident check it makes.
"""
