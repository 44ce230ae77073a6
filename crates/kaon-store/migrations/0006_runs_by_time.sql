-- Runs newest first across every workflow, a page at a time, and runs of a
-- time window (`GET /api/v1/runs?since=...&until=...`): without this index
-- each page sorts every run.
CREATE INDEX runs_created ON runs (created_ms, id);
