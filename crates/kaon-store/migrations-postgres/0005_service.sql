-- What a kaon server keeps besides runs: the workflow versions deployed to
-- it, the schedules and triggers of their current versions, the ticks those
-- fired (one row per schedule and tick key: the record that makes a tick
-- start its run exactly once, across restarts and between servers), and
-- API tokens (their digest only, never the token). The same tables as
-- SQLite's 0004_service.sql. Keys are compared byte by byte (COLLATE "C"),
-- as SQLite and the in-memory store do, so that every backend lists in the
-- same order whatever the database's locale.

CREATE TABLE workflows (
    name        TEXT COLLATE "C" NOT NULL,
    digest      TEXT COLLATE "C" NOT NULL,
    path        TEXT NOT NULL,
    sources     TEXT NOT NULL,
    spec        TEXT NOT NULL,
    deployed_ms BIGINT NOT NULL,
    PRIMARY KEY (name, digest)
);
CREATE INDEX workflows_latest ON workflows (name, deployed_ms);

CREATE TABLE schedules (
    id         TEXT COLLATE "C" PRIMARY KEY,
    workflow   TEXT COLLATE "C" NOT NULL,
    digest     TEXT NOT NULL,
    spec       TEXT NOT NULL,
    paused     BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms BIGINT NOT NULL
);
CREATE INDEX schedules_workflow ON schedules (workflow);

-- No reference to schedules: the ticks of a schedule a deployment removed
-- stay, as the history of the runs they started.
CREATE TABLE ticks (
    schedule   TEXT COLLATE "C" NOT NULL,
    tick       TEXT COLLATE "C" NOT NULL,
    due_ms     BIGINT NOT NULL,
    run_id     TEXT,
    outcome    TEXT NOT NULL,
    params     TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (schedule, tick)
);
CREATE INDEX ticks_outcome ON ticks (outcome, due_ms);
CREATE INDEX ticks_due ON ticks (schedule, due_ms);

CREATE TABLE tokens (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
