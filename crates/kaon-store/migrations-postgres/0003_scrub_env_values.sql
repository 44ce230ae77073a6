-- Nothing to do. SQLite's 0003 scrubbed environment values from memo key
-- records written before format 2; a PostgreSQL database never held such
-- records (it is newer than format 2). The number is taken so that the
-- migrations of both backends keep the same numbers up to here.
SELECT 1;
