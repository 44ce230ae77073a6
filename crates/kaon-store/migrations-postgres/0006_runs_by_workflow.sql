-- A server lists runs of one workflow, newest first, a page at a time
-- (`GET /api/v1/runs?workflow=...`): without this index a workflow with
-- 10,000 runs among 100,000 is a scan.
CREATE INDEX runs_workflow ON runs (workflow, created_ms, id);
