-- Identity, audit, model registry and aliases.
--
-- users: who may act, with a role (viewer, operator, approver, admin); only a hash of a user's token is kept.
-- audit: append-only, hash-chained: hash = BLAKE3 over (seq, at, actor, action, subject, detail, prev_hash);
--   audit_head is the one row every append updates first, so appends from several engines serialize on it
--   and the chain never forks.
-- model_versions: one per distinct data version of a kind="model" asset, numbered 1, 2, ... per model.
-- approvals: a user's approval of a model version, with the reason.
-- aliases: a name (production, champion) pointing at one materialization of an asset, or at a snapshot;
--   alias_moves keeps every move, which is what a rollback walks back.

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at DOUBLE PRECISION NOT NULL,
    created_by TEXT NOT NULL,
    disabled_at DOUBLE PRECISION
);

CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);

INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');

CREATE TABLE model_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    mat_id BIGINT NOT NULL,
    data_version TEXT NOT NULL,
    run_id TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (name, version),
    UNIQUE (name, data_version)
);

CREATE TABLE approvals (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    approver TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (name, version, approver)
);

CREATE TABLE aliases (
    alias TEXT NOT NULL,
    asset TEXT NOT NULL,
    mat_id BIGINT,
    snapshot TEXT,
    moved_at DOUBLE PRECISION NOT NULL,
    moved_by TEXT NOT NULL,
    PRIMARY KEY (alias, asset)
);

CREATE TABLE alias_moves (
    id @AUTO_ID@,
    alias TEXT NOT NULL,
    asset TEXT NOT NULL,
    mat_id BIGINT,
    snapshot TEXT,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);

CREATE INDEX alias_moves_alias_asset ON alias_moves (alias, asset, id)
