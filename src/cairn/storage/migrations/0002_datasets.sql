-- Snapshots (named, pinned sets of materializations) and backfills (recorded, resumable partition ranges).

CREATE TABLE snapshots (
    name TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    selection TEXT NOT NULL
);

CREATE TABLE snapshot_entries (
    name TEXT NOT NULL REFERENCES snapshots (name) ON DELETE CASCADE,
    asset TEXT NOT NULL,
    partition TEXT NOT NULL,
    mat_id BIGINT NOT NULL,
    PRIMARY KEY (name, asset, partition)
);

CREATE TABLE backfills (
    backfill_id TEXT PRIMARY KEY,
    selection TEXT NOT NULL,
    first_key TEXT NOT NULL,
    last_key TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    options TEXT NOT NULL,
    steps_total INTEGER NOT NULL
);

CREATE TABLE backfill_runs (
    backfill_id TEXT NOT NULL REFERENCES backfills (backfill_id) ON DELETE CASCADE,
    run_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (backfill_id, run_id)
)
