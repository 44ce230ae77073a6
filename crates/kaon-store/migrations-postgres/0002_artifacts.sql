-- Artifact metadata, lineage (reads; writes are the producing columns of
-- artifacts), memo entries and memo key parts. Blobs live in the artifact
-- store; these rows say what they are and where they came from.
-- The PostgreSQL twin of ../migrations/0002_artifacts.sql, with the types
-- and collations of 0001_runs.sql (and why) there.

CREATE TABLE artifacts (
    id            TEXT COLLATE "C" PRIMARY KEY,
    digest        TEXT COLLATE "C" NOT NULL,
    kind          TEXT NOT NULL,
    size          BIGINT NOT NULL,
    files         BIGINT NOT NULL,
    media_type    TEXT NOT NULL,
    name          TEXT COLLATE "C" NOT NULL,
    run_id        TEXT COLLATE "C",
    node          BIGINT,
    step          TEXT COLLATE "C",
    step_key      TEXT COLLATE "C",
    attempt       BIGINT,
    path          TEXT,
    created_ms    BIGINT NOT NULL,
    tags          TEXT NOT NULL,
    memoized_from TEXT COLLATE "C"
);
CREATE INDEX artifacts_digest ON artifacts (digest);
CREATE INDEX artifacts_producer ON artifacts (run_id, node);
CREATE INDEX artifacts_name ON artifacts (name, created_ms);
CREATE INDEX artifacts_step ON artifacts (step, created_ms);
CREATE INDEX artifacts_created ON artifacts (created_ms);

CREATE TABLE artifact_reads (
    run_id   TEXT COLLATE "C" NOT NULL,
    node     BIGINT NOT NULL,
    attempt  BIGINT NOT NULL,
    artifact TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (run_id, node, artifact)
);
CREATE INDEX artifact_reads_artifact ON artifact_reads (artifact);

CREATE TABLE memo (
    key        TEXT COLLATE "C" NOT NULL,
    run_id     TEXT COLLATE "C" NOT NULL,
    node       BIGINT NOT NULL,
    attempt    BIGINT NOT NULL,
    step       TEXT NOT NULL,
    step_key   TEXT NOT NULL,
    outputs    TEXT NOT NULL,
    artifacts  TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (key, run_id, node)
);

CREATE TABLE memo_keys (
    run_id     TEXT COLLATE "C" NOT NULL,
    node       BIGINT NOT NULL,
    attempt    BIGINT NOT NULL,
    step       TEXT COLLATE "C" NOT NULL,
    step_key   TEXT NOT NULL,
    key        TEXT NOT NULL,
    parts      TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, node, attempt)
);
CREATE INDEX memo_keys_step ON memo_keys (step, created_ms);
