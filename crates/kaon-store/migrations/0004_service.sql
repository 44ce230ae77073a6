-- What a kaon server keeps besides runs: the workflow versions deployed to
-- it, the schedules and triggers of their current versions, the ticks those
-- fired (one row per schedule and tick key: the record that makes a tick
-- start its run exactly once, across restarts and between servers), and
-- API tokens (their digest only, never the token).

CREATE TABLE workflows (
    name        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    path        TEXT NOT NULL,
    sources     TEXT NOT NULL,
    spec        TEXT NOT NULL,
    deployed_ms INTEGER NOT NULL,
    PRIMARY KEY (name, digest)
) WITHOUT ROWID;
CREATE INDEX workflows_latest ON workflows (name, deployed_ms);

CREATE TABLE schedules (
    id         TEXT PRIMARY KEY NOT NULL,
    workflow   TEXT NOT NULL,
    digest     TEXT NOT NULL,
    spec       TEXT NOT NULL,
    paused     INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX schedules_workflow ON schedules (workflow);

-- No reference to schedules: the ticks of a schedule a deployment removed
-- stay, as the history of the runs they started.
CREATE TABLE ticks (
    schedule   TEXT NOT NULL,
    tick       TEXT NOT NULL,
    due_ms     INTEGER NOT NULL,
    run_id     TEXT,
    outcome    TEXT NOT NULL,
    params     TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (schedule, tick)
) WITHOUT ROWID;
CREATE INDEX ticks_outcome ON ticks (outcome, due_ms);
CREATE INDEX ticks_due ON ticks (schedule, due_ms);

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
) WITHOUT ROWID;
