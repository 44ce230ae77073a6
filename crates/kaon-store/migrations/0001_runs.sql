-- Runs, the scopes and nodes the engine builds in them, and the inbox that
-- carries signals and cancels from other processes to the run's driver.

CREATE TABLE runs (
    id           TEXT PRIMARY KEY NOT NULL,
    workflow     TEXT NOT NULL,
    path         TEXT NOT NULL,
    digest       TEXT NOT NULL,
    params       TEXT NOT NULL,
    options      TEXT NOT NULL,
    parent_run   TEXT REFERENCES runs (id),
    parent_node  INTEGER,
    status       TEXT NOT NULL,
    data         TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    finished_ms  INTEGER,
    owner        TEXT,
    heartbeat_ms INTEGER
);
CREATE INDEX runs_status ON runs (status, created_ms);
CREATE INDEX runs_parent ON runs (parent_run);

CREATE TABLE scopes (
    run_id TEXT NOT NULL REFERENCES runs (id),
    id     INTEGER NOT NULL,
    tmpl   INTEGER NOT NULL,
    parent INTEGER,
    idx    INTEGER NOT NULL,
    vars   TEXT NOT NULL,
    PRIMARY KEY (run_id, id)
) WITHOUT ROWID;

CREATE TABLE nodes (
    run_id      TEXT NOT NULL REFERENCES runs (id),
    id          INTEGER NOT NULL,
    scope       INTEGER NOT NULL,
    key         TEXT NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    started_ms  INTEGER,
    finished_ms INTEGER,
    data        TEXT NOT NULL,
    PRIMARY KEY (run_id, id)
) WITHOUT ROWID;
CREATE INDEX nodes_name ON nodes (run_id, name);

CREATE TABLE inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs (id),
    kind        TEXT NOT NULL,
    name        TEXT,
    value       TEXT,
    created_ms  INTEGER NOT NULL,
    consumed_ms INTEGER
);
CREATE INDEX inbox_pending ON inbox (run_id, consumed_ms);
