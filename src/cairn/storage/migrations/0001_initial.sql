-- cairn metadata schema, version 1.
--
-- Portable between SQLite and PostgreSQL. Statements are separated by ';' and contain no ';' themselves.
-- @AUTO_ID@ becomes the dialect's auto-increment primary key column type.
-- Epoch seconds are DOUBLE PRECISION (REAL affinity in SQLite; PostgreSQL's REAL is only 4 bytes) and
-- byte sizes are BIGINT (INTEGER affinity in SQLite). JSON is stored as TEXT. An unpartitioned asset has
-- the partition ''.

CREATE TABLE environments (
    env_hash TEXT PRIMARY KEY,
    environment TEXT NOT NULL
);

CREATE TABLE runs (
    id @AUTO_ID@,
    run_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    selection TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    heartbeat_at DOUBLE PRECISION,
    args TEXT NOT NULL,
    env_hash TEXT REFERENCES environments (env_hash),
    profile TEXT
);

CREATE INDEX runs_status ON runs (status);

CREATE TABLE steps (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    asset TEXT NOT NULL,
    partition TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    cache_key TEXT,
    data_version TEXT,
    attempts INTEGER NOT NULL,
    duration_s DOUBLE PRECISION,
    error TEXT,
    PRIMARY KEY (run_id, asset, partition)
);

CREATE TABLE attempts (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    asset TEXT NOT NULL,
    partition TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    lease_token BIGINT,
    error TEXT,
    PRIMARY KEY (run_id, asset, partition, attempt)
);

-- A released lease keeps its row (expires_at = 0) so that tokens of one cache key only ever grow.
CREATE TABLE leases (
    cache_key TEXT PRIMARY KEY,
    token BIGINT NOT NULL,
    run_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX leases_run_id ON leases (run_id);

CREATE TABLE materializations (
    id @AUTO_ID@,
    asset TEXT NOT NULL,
    partition TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    data_version TEXT NOT NULL,
    size BIGINT NOT NULL,
    format TEXT NOT NULL,
    pytype TEXT NOT NULL,
    run_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    code_version TEXT NOT NULL,
    code_parts TEXT NOT NULL,
    params TEXT NOT NULL,
    seed BIGINT NOT NULL,
    duration_s DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    metadata TEXT NOT NULL,
    metrics TEXT NOT NULL
);

CREATE INDEX materializations_cache_key ON materializations (cache_key, id);

CREATE INDEX materializations_asset_partition ON materializations (asset, partition, id);

CREATE INDEX materializations_asset ON materializations (asset, id);

CREATE INDEX materializations_data_version ON materializations (data_version);

CREATE TABLE materialization_inputs (
    mat_id BIGINT NOT NULL REFERENCES materializations (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    asset TEXT NOT NULL,
    partition TEXT NOT NULL,
    data_version TEXT NOT NULL,
    PRIMARY KEY (mat_id, position)
);

CREATE TABLE logs (
    id @AUTO_ID@,
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    asset TEXT NOT NULL,
    partition TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);

CREATE INDEX logs_run ON logs (run_id, asset, partition, id)
