-- Runs, the scopes and nodes the engine builds in them, and the inbox that
-- carries signals and cancels from other processes to the run's driver.
-- The PostgreSQL twin of ../migrations/0001_runs.sql; the differences:
--
-- * JSON stays TEXT, not jsonb: jsonb reorders keys and drops whitespace,
--   and rows must read back byte for byte as the engine wrote them.
-- * Times (ms since the epoch) are BIGINT. Node, scope, template and attempt
--   numbers are BIGINT too: kaon's are u32, which INTEGER (at most 2^31 - 1)
--   cannot hold, while SQLite's INTEGER is 64-bit.
-- * Ids, keys and names are COLLATE "C": they compare and sort by bytes, as
--   in SQLite, whatever the database's locale, so listings come out in the
--   same order and an id prefix is one range of an index.

CREATE TABLE runs (
    id           TEXT COLLATE "C" PRIMARY KEY,
    workflow     TEXT NOT NULL,
    path         TEXT NOT NULL,
    digest       TEXT NOT NULL,
    params       TEXT NOT NULL,
    options      TEXT NOT NULL,
    parent_run   TEXT COLLATE "C" REFERENCES runs (id),
    parent_node  BIGINT,
    status       TEXT NOT NULL,
    data         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    finished_ms  BIGINT,
    owner        TEXT,
    heartbeat_ms BIGINT
);
CREATE INDEX runs_status ON runs (status, created_ms);
CREATE INDEX runs_parent ON runs (parent_run);

CREATE TABLE scopes (
    run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (id),
    id     BIGINT NOT NULL,
    tmpl   BIGINT NOT NULL,
    parent BIGINT,
    idx    BIGINT NOT NULL,
    vars   TEXT NOT NULL,
    PRIMARY KEY (run_id, id)
);

CREATE TABLE nodes (
    run_id      TEXT COLLATE "C" NOT NULL REFERENCES runs (id),
    id          BIGINT NOT NULL,
    scope       BIGINT NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    started_ms  BIGINT,
    finished_ms BIGINT,
    data        TEXT NOT NULL,
    PRIMARY KEY (run_id, id)
);
CREATE INDEX nodes_name ON nodes (run_id, name);

-- Ids only grow (BIGSERIAL), as SQLite's AUTOINCREMENT: messages are read
-- oldest first by id.
CREATE TABLE inbox (
    id          BIGSERIAL PRIMARY KEY,
    run_id      TEXT COLLATE "C" NOT NULL REFERENCES runs (id),
    kind        TEXT NOT NULL,
    name        TEXT,
    value       TEXT,
    created_ms  BIGINT NOT NULL,
    consumed_ms BIGINT
);
-- Only what a driver reads: its run's messages not yet consumed.
CREATE INDEX inbox_pending ON inbox (run_id, id) WHERE consumed_ms IS NULL;
