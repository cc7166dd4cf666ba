-- Automation: what `cairn daemon` and `cairn tick` keep for schedules, sensors and freshness policies.
--
-- automation_state: one row per schedule, sensor or freshness policy (kind, name). paused is 1 while
--   `cairn schedules pause` holds it. since: when a daemon first saw it (or it was resumed); no earlier tick
--   is due. last_due: the newest tick claimed. A sensor's cursor (what it has seen) is committed with its
--   requests under a compare-and-set of generation, so that of two daemons that evaluated the same state only
--   one acts on it. evaluated_at: the last evaluation (daemons pace sensors by it); error: its error, if any.
-- ticks: one row per tick, claimed exactly once by its primary key: a schedule's due time, a freshness breach,
--   or one request of a sensor evaluation (request = the run key; '' for schedules and freshness). status:
--   claimed -> starting -> running -> the run's status, or skipped / alerted / error / abandoned. owner is the
--   daemon (host:pid) that claimed it ('' once released for another daemon to start); claimed_db_at is on the
--   database clock, so that a claim left by a daemon on another machine can be taken over. due_at, claimed_at,
--   started_at and finished_at are on the daemon's clock; latency_s = started_at - due_at (schedule-to-start).

CREATE TABLE automation_state (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    paused INTEGER NOT NULL,
    since DOUBLE PRECISION NOT NULL,
    last_due DOUBLE PRECISION,
    sensor_cursor TEXT,
    generation BIGINT NOT NULL,
    evaluated_at DOUBLE PRECISION,
    error TEXT,
    changed_by TEXT NOT NULL,
    changed_at DOUBLE PRECISION,
    PRIMARY KEY (kind, name)
);

CREATE TABLE ticks (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    due_at DOUBLE PRECISION NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT NOT NULL,
    partition TEXT,
    run_id TEXT,
    reason TEXT NOT NULL,
    claimed_at DOUBLE PRECISION NOT NULL,
    claimed_db_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    latency_s DOUBLE PRECISION,
    error TEXT,
    PRIMARY KEY (kind, name, due_at, request)
);

CREATE INDEX ticks_status ON ticks (status);

CREATE INDEX ticks_request ON ticks (kind, name, request);

CREATE INDEX ticks_run_id ON ticks (run_id)
