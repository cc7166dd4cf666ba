-- Incidents and the alerts they send (cairn.observability).
--
-- incidents: something went wrong and stays wrong until it recovers. kind is failure, violation (a contract or
--   blocking check), drift (a non-blocking drift check failed) or slo (a rule of [[slo]] is breached); subject
--   the asset or the rule's name. incident_key (kind:subject) is unique among the open incidents, so a repeated
--   failure extends the open incident instead of opening another. Times are the observer's clock (epoch
--   seconds). detail and owners are JSON. remediation is the asset or job that on_failure= / on_violation=
--   names, remediation_status pending | started | done | failed, remediation_run the run that remedied it.
-- incident_steps: the asset partitions an incident affected. role failed or drifted (what must recover for the
--   incident to close) or skipped (downstream of a failure); recovered_at when a later run succeeded it.
-- alerts: the outbox of notifications, one row per incident, event (opened | resolved) and destination (a
--   webhook URL or "log"): dedup_key is unique, so an incident alerts each destination once per event. A
--   webhook is retried with backoff (next_try_at) until attempts run out.

CREATE TABLE incidents (
    id @AUTO_ID@,
    incident_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    opened_at DOUBLE PRECISION NOT NULL,
    closed_at DOUBLE PRECISION,
    opened_by TEXT NOT NULL,
    closed_by TEXT,
    detail TEXT NOT NULL,
    owners TEXT NOT NULL,
    remediation TEXT,
    remediation_status TEXT,
    remediation_run TEXT
);

CREATE UNIQUE INDEX incidents_open_key ON incidents (incident_key) WHERE closed_at IS NULL;

CREATE INDEX incidents_remediation ON incidents (remediation_status) WHERE remediation_status IS NOT NULL;

CREATE TABLE incident_steps (
    incident_id BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    asset TEXT NOT NULL,
    partition TEXT NOT NULL,
    role TEXT NOT NULL,
    first_run TEXT NOT NULL,
    last_run TEXT NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    recovered_at DOUBLE PRECISION,
    recovered_by TEXT,
    PRIMARY KEY (incident_id, asset, partition)
);

-- What the check after every run reads: the affected steps still waiting to recover (usually none).
CREATE INDEX incident_steps_unrecovered ON incident_steps (asset, partition) WHERE recovered_at IS NULL;

CREATE TABLE alerts (
    id @AUTO_ID@,
    dedup_key TEXT NOT NULL UNIQUE,
    incident_id BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    destination TEXT NOT NULL,
    owner TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    next_try_at DOUBLE PRECISION NOT NULL,
    sent_at DOUBLE PRECISION,
    last_error TEXT
);

CREATE INDEX alerts_due ON alerts (next_try_at) WHERE status = 'pending';

CREATE INDEX alerts_incident ON alerts (incident_id, id)
