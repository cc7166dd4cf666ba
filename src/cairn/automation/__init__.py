"""Schedules, sensors and freshness policies, run by `cairn daemon` (forever) and `cairn tick` (once).

    tick(now) ─▶ reconcile open ticks ─▶ schedules (cron, catchup) ─▶ sensors ─▶ freshness policies
                       │                         │ due: claim the tick row (exactly one daemon wins)
                       ▼                         ▼
               finish / take over       run it through the engine's API ─▶ record run id, latency, status
                                                  ─▶ every hook in `hooks` is called with the finished tick

Modules: `cron` (DST-correct due times over croniter), `partitions` (a schedule's ``partition=`` at a tick's
time), `schedules`, `sensors` and `freshness` (what is due), `runner` (claims and runs ticks, one tick of
evaluation: `run_tick`), `daemon` (the loop, graceful on SIGTERM), `control` (pause, resume, list), `clock`
(the injected clock: every decision takes "now" from it, so tests drive days of ticks without sleeping).

**Hooks.** Other packages observe ticks without this package knowing them: a callable appended to `hooks`
is called after every tick reaches its final status (a run's status, or ``skipped``, ``alerted``,
``error``, ``abandoned``) as ``hook(meta, tick, result)``: the open `MetadataStore`, the `TickRecord` as
recorded (with ``run_id``, ``latency_s`` = schedule-to-start seconds, ``status``, ``error``) and the
engine's `RunResult` (None when no run was started). The observability package sits below the engine and
never imports this one: ``cairn daemon`` and ``cairn tick`` (the CLI, above both) register its hook with
``cairn.observability.daemon.observing(hooks, ...)`` while they run. A hook that raises is logged and does
not stop the daemon.
"""

from __future__ import annotations

from cairn.automation.hooks import TickHook, hooks

__all__ = ["TickHook", "hooks"]
