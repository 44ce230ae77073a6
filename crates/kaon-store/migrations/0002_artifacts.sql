-- Artifact metadata, lineage (reads; writes are the producing columns of
-- artifacts), memo entries and memo key parts. Blobs live in the artifact
-- store; these rows say what they are and where they came from.

CREATE TABLE artifacts (
    id            TEXT PRIMARY KEY NOT NULL,
    digest        TEXT NOT NULL,
    kind          TEXT NOT NULL,
    size          INTEGER NOT NULL,
    files         INTEGER NOT NULL,
    media_type    TEXT NOT NULL,
    name          TEXT NOT NULL,
    run_id        TEXT,
    node          INTEGER,
    step          TEXT,
    step_key      TEXT,
    attempt       INTEGER,
    path          TEXT,
    created_ms    INTEGER NOT NULL,
    tags          TEXT NOT NULL,
    memoized_from TEXT
);
CREATE INDEX artifacts_digest ON artifacts (digest);
CREATE INDEX artifacts_producer ON artifacts (run_id, node);
CREATE INDEX artifacts_name ON artifacts (name, created_ms);
CREATE INDEX artifacts_step ON artifacts (step, created_ms);
CREATE INDEX artifacts_created ON artifacts (created_ms);

CREATE TABLE artifact_reads (
    run_id   TEXT NOT NULL,
    node     INTEGER NOT NULL,
    attempt  INTEGER NOT NULL,
    artifact TEXT NOT NULL,
    PRIMARY KEY (run_id, node, artifact)
) WITHOUT ROWID;
CREATE INDEX artifact_reads_artifact ON artifact_reads (artifact);

CREATE TABLE memo (
    key        TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    node       INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    step       TEXT NOT NULL,
    step_key   TEXT NOT NULL,
    outputs    TEXT NOT NULL,
    artifacts  TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (key, run_id, node)
) WITHOUT ROWID;

CREATE TABLE memo_keys (
    run_id     TEXT NOT NULL,
    node       INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    step       TEXT NOT NULL,
    step_key   TEXT NOT NULL,
    key        TEXT NOT NULL,
    parts      TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, node, attempt)
) WITHOUT ROWID;
CREATE INDEX memo_keys_step ON memo_keys (step, created_ms);
