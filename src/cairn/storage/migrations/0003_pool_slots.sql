-- Pool slots counted across every engine on the database: one row per slot of a pool, leased like a cache
-- key (holder run, fencing token, expiry on the database clock; expires_at = 0 when free). owner is the
-- holding engine (host:process), step the step that uses the slot.

CREATE TABLE pool_slots (
    pool TEXT NOT NULL,
    slot INTEGER NOT NULL,
    token BIGINT NOT NULL,
    run_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    step TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (pool, slot)
);

CREATE INDEX pool_slots_run_id ON pool_slots (run_id)
