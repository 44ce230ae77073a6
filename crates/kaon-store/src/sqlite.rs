//! The SQLite backend: the embedded default.
//!
//! One file, WAL journal (readers never block the driver's writes), and one
//! transaction per [`StateStore::commit`]: the driver commits every change
//! of a scheduling tick together, so a tick that finished 500 steps costs
//! one fsync. Rows of a tick go in as one JSON array per table
//! (`INSERT .. SELECT FROM json_each(?)`): one statement, however many rows.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::{
    ArtifactFilter, ArtifactIndex, ArtifactRow, Batch, Direction, KeyRow, LineageEdge, MemoRow,
    Message, MessageBody, NodeRow, RunFilter, RunRow, ScopeRow, StateStore, StoreError,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How hard a commit works to survive a crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: survives power loss (the default).
    #[default]
    Full,
    /// fsync at checkpoints only: survives a crash of kaon, and may lose the
    /// last commits (never consistency) on power loss.
    Process,
}

/// The SQLite state store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The database file and its (device, inode) when opened, to notice it
    /// being deleted or replaced.
    file: Option<(std::path::PathBuf, u64, u64)>,
}

/// Makes the database files of a data directory made by an older kaon
/// (0644) private, as new ones are: only what this user owns, errors
/// ignored. The folder itself is left as it is: `--data-dir` may name a
/// folder kaon did not create, whose mode is not kaon's to change.
fn tighten(db: &Path, me: u32) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let set = |p: &Path, mode: u32| {
        if let Ok(m) = std::fs::metadata(p)
            && m.uid() == me
            && m.mode() & 0o777 != mode
        {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
        }
    };
    set(db, 0o600);
    for suffix in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        set(Path::new(&p), 0o600);
    }
}

/// A write refused because the folder or file system is read-only (or not
/// ours to write) becomes [`StoreError::ReadOnly`]; other errors come back.
fn read_only(dir: &Path, source: std::io::Error) -> Result<StoreError, std::io::Error> {
    use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem};
    if matches!(source.kind(), ReadOnlyFilesystem | PermissionDenied) {
        Ok(StoreError::ReadOnly {
            dir: dir.to_path_buf(),
            source,
        })
    } else {
        Err(source)
    }
}

const RUN_COLS: &str = "id, workflow, path, digest, params, options, parent_run, parent_node, \
     status, data, created_ms, finished_ms, owner, heartbeat_ms";
const NODE_COLS: &str = "id, scope, key, name, kind, state, attempt, started_ms, finished_ms, data";

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and brings its
    /// schema up to date.
    pub async fn open(path: &Path, durability: Durability) -> Result<SqliteStore, StoreError> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        // Private to its owner: the database holds parameters and the logs
        // beside it hold what steps print.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| read_only(&dir, source).unwrap_or_else(open_err))?;
        // One process at a time creates and migrates the database: SQLite
        // has no lock for sqlx's migrator, and two fresh `kaon run`s would
        // both create the tables. The lock file is the first write, so a
        // read-only folder is reported as such here.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "kaon.db".into());
        let lock_path = dir.join(format!(".{name}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| read_only(&dir, source).unwrap_or_else(open_err))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| open_err(std::io::Error::other(e)))?
            .map_err(open_err)?;
        // Created 0600 before SQLite opens it (SQLite gives its -wal and
        // -shm files the database file's mode).
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| read_only(&dir, source).unwrap_or_else(open_err))?;
        let meta = std::fs::metadata(path).map_err(open_err)?;
        // The lock file was made by this process: its owner is this user.
        if let Ok(l) = std::fs::metadata(&lock_path) {
            tighten(path, l.uid());
        }
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Process => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let mut store = Self::connect(opts).await?;
        drop(lock);
        store.file = Some((path.to_path_buf(), meta.dev(), meta.ino()));
        Ok(store)
    }

    /// A private in-memory database (tests).
    pub async fn in_memory() -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        Self::connect(opts).await
    }

    async fn connect(opts: SqliteConnectOptions) -> Result<SqliteStore, StoreError> {
        // One connection: the driver is the only heavy writer, and a single
        // connection keeps `:memory:` databases whole.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool, file: None })
    }

    async fn write_batch(tx: &mut Transaction<'_, Sqlite>, b: &Batch) -> Result<(), StoreError> {
        if let Some((status, data, finished)) = &b.status {
            let r =
                sqlx::query("UPDATE runs SET status = ?, data = ?, finished_ms = ? WHERE id = ?")
                    .bind(status)
                    .bind(data)
                    .bind(finished)
                    .bind(&b.run)
                    .execute(&mut **tx)
                    .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::NoSuchRun(b.run.clone()));
            }
        }
        if !b.scopes.is_empty() {
            let rows: Vec<serde_json::Value> = b
                .scopes
                .iter()
                .map(|s| serde_json::json!([s.id, s.tmpl, s.parent, s.index, s.vars]))
                .collect();
            sqlx::query(
                "INSERT INTO scopes (run_id, id, tmpl, parent, idx, vars) \
                 SELECT ?1, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4 \
                 FROM json_each(?2) AS j",
            )
            .bind(&b.run)
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut **tx)
            .await?;
        }
        if !b.nodes.is_empty() {
            let rows: Vec<serde_json::Value> = b
                .nodes
                .iter()
                .map(|n| {
                    serde_json::json!([
                        n.id,
                        n.scope,
                        n.key,
                        n.name,
                        n.kind,
                        n.state,
                        n.attempt,
                        n.started_ms,
                        n.finished_ms,
                        n.data
                    ])
                })
                .collect();
            // `WHERE true` keeps SQLite from reading ON CONFLICT as a join.
            sqlx::query(
                "INSERT INTO nodes (run_id, id, scope, key, name, kind, state, attempt, started_ms, finished_ms, data) \
                 SELECT ?1, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, \
                        j.value ->> 5, j.value ->> 6, j.value ->> 7, j.value ->> 8, j.value ->> 9 \
                 FROM json_each(?2) AS j WHERE true \
                 ON CONFLICT (run_id, id) DO UPDATE SET state = excluded.state, attempt = excluded.attempt, \
                   started_ms = excluded.started_ms, finished_ms = excluded.finished_ms, data = excluded.data",
            )
            .bind(&b.run)
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut **tx)
            .await?;
        }
        Self::write_artifacts(tx, b).await?;
        if !b.consumed.is_empty() {
            let ids = serde_json::to_string(&b.consumed).unwrap_or_else(|_| "[]".into());
            sqlx::query(
                "UPDATE inbox SET consumed_ms = CAST(unixepoch('subsec') * 1000 AS INTEGER) \
                 WHERE id IN (SELECT value FROM json_each(?1)) AND consumed_ms IS NULL",
            )
            .bind(ids)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

impl SqliteStore {
    async fn write_artifacts(
        tx: &mut Transaction<'_, Sqlite>,
        b: &Batch,
    ) -> Result<(), StoreError> {
        if !b.artifacts.is_empty() {
            let rows: Vec<serde_json::Value> = b
                .artifacts
                .iter()
                .map(|a| {
                    serde_json::json!([
                        a.id,
                        a.digest,
                        a.kind,
                        a.size,
                        a.files,
                        a.media_type,
                        a.name,
                        a.run,
                        a.node,
                        a.step,
                        a.step_key,
                        a.attempt,
                        a.path,
                        a.created_ms,
                        a.tags,
                        a.memoized_from
                    ])
                })
                .collect();
            sqlx::query(
                "INSERT INTO artifacts (id, digest, kind, size, files, media_type, name, run_id, node, \
                 step, step_key, attempt, path, created_ms, tags, memoized_from) \
                 SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, \
                        j.value ->> 5, j.value ->> 6, j.value ->> 7, j.value ->> 8, j.value ->> 9, \
                        j.value ->> 10, j.value ->> 11, j.value ->> 12, j.value ->> 13, j.value ->> 14, \
                        j.value ->> 15 \
                 FROM json_each(?1) AS j WHERE true ON CONFLICT (id) DO NOTHING",
            )
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut **tx)
            .await?;
        }
        if !b.reads.is_empty() {
            let rows: Vec<serde_json::Value> = b
                .reads
                .iter()
                .map(|r| serde_json::json!([r.run, r.node, r.attempt, r.artifact]))
                .collect();
            sqlx::query(
                "INSERT INTO artifact_reads (run_id, node, attempt, artifact) \
                 SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3 \
                 FROM json_each(?1) AS j WHERE true \
                 ON CONFLICT (run_id, node, artifact) DO UPDATE SET attempt = excluded.attempt",
            )
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut **tx)
            .await?;
        }
        if !b.memo.is_empty() {
            let rows: Vec<serde_json::Value> = b
                .memo
                .iter()
                .map(|m| {
                    serde_json::json!([
                        m.key,
                        m.run,
                        m.node,
                        m.attempt,
                        m.step,
                        m.step_key,
                        m.outputs,
                        m.artifacts,
                        m.created_ms
                    ])
                })
                .collect();
            sqlx::query(
                "INSERT INTO memo (key, run_id, node, attempt, step, step_key, outputs, artifacts, created_ms) \
                 SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, \
                        j.value ->> 5, j.value ->> 6, j.value ->> 7, j.value ->> 8 \
                 FROM json_each(?1) AS j WHERE true ON CONFLICT (key, run_id, node) DO UPDATE SET \
                   attempt = excluded.attempt, outputs = excluded.outputs, \
                   artifacts = excluded.artifacts, created_ms = excluded.created_ms",
            )
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut **tx)
            .await?;
        }
        if !b.keys.is_empty() {
            let rows: Vec<serde_json::Value> = b
                .keys
                .iter()
                .map(|k| {
                    serde_json::json!([
                        k.run,
                        k.node,
                        k.attempt,
                        k.step,
                        k.step_key,
                        k.key,
                        k.parts,
                        k.outcome,
                        k.created_ms
                    ])
                })
                .collect();
            sqlx::query(
                "INSERT INTO memo_keys (run_id, node, attempt, step, step_key, key, parts, outcome, created_ms) \
                 SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, \
                        j.value ->> 5, j.value ->> 6, j.value ->> 7, j.value ->> 8 \
                 FROM json_each(?1) AS j WHERE true ON CONFLICT (run_id, node, attempt) DO UPDATE SET \
                   key = excluded.key, parts = excluded.parts, outcome = excluded.outcome",
            )
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

const ART_COLS: &str = "id, digest, kind, size, files, media_type, name, run_id, node, step, \
     step_key, attempt, path, created_ms, tags, memoized_from";

fn artifact_row(r: &SqliteRow) -> Result<ArtifactRow, sqlx::Error> {
    Ok(ArtifactRow {
        id: r.try_get("id")?,
        digest: r.try_get("digest")?,
        kind: r.try_get("kind")?,
        size: r.try_get("size")?,
        files: r.try_get("files")?,
        media_type: r.try_get("media_type")?,
        name: r.try_get("name")?,
        run: r.try_get("run_id")?,
        node: r.try_get::<Option<i64>, _>("node")?.map(|n| n as u32),
        step: r.try_get("step")?,
        step_key: r.try_get("step_key")?,
        attempt: r.try_get::<Option<i64>, _>("attempt")?.map(|n| n as u32),
        path: r.try_get("path")?,
        created_ms: r.try_get("created_ms")?,
        tags: r.try_get("tags")?,
        memoized_from: r.try_get("memoized_from")?,
    })
}

fn memo_row(r: &SqliteRow) -> Result<MemoRow, sqlx::Error> {
    Ok(MemoRow {
        key: r.try_get("key")?,
        run: r.try_get("run_id")?,
        node: r.try_get::<i64, _>("node")? as u32,
        attempt: r.try_get::<i64, _>("attempt")? as u32,
        step: r.try_get("step")?,
        step_key: r.try_get("step_key")?,
        outputs: r.try_get("outputs")?,
        artifacts: r.try_get("artifacts")?,
        created_ms: r.try_get("created_ms")?,
    })
}

fn key_row(r: &SqliteRow) -> Result<KeyRow, sqlx::Error> {
    Ok(KeyRow {
        run: r.try_get("run_id")?,
        node: r.try_get::<i64, _>("node")? as u32,
        attempt: r.try_get::<i64, _>("attempt")? as u32,
        step: r.try_get("step")?,
        step_key: r.try_get("step_key")?,
        key: r.try_get("key")?,
        parts: r.try_get("parts")?,
        outcome: r.try_get("outcome")?,
        created_ms: r.try_get("created_ms")?,
    })
}

impl ArtifactIndex for SqliteStore {
    async fn artifact(&self, id: &str) -> Result<Option<ArtifactRow>, StoreError> {
        if let Some(r) = sqlx::query(&format!("SELECT {ART_COLS} FROM artifacts WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        {
            return Ok(Some(artifact_row(&r)?));
        }
        // A prefix of an id or of a digest (with or without `blake3:`),
        // used only when it names one artifact.
        let digest = if id.starts_with("blake3:") {
            id.to_string()
        } else {
            format!("blake3:{id}")
        };
        let rows = sqlx::query(&format!(
            "SELECT {ART_COLS} FROM artifacts \
             WHERE (id >= ?1 AND id < ?1 || x'ff') OR (digest >= ?2 AND digest < ?2 || x'ff') \
             ORDER BY created_ms DESC LIMIT 6"
        ))
        .bind(id)
        .bind(&digest)
        .fetch_all(&self.pool)
        .await?;
        if rows.len() == 1 {
            return Ok(Some(artifact_row(&rows[0])?));
        }
        if rows.len() > 1 {
            let candidates = rows
                .iter()
                .map(|r| artifact_row(r).map(|a| a.id))
                .collect::<Result<_, _>>()?;
            return Err(StoreError::Ambiguous {
                prefix: id.to_string(),
                candidates,
            });
        }
        Ok(None)
    }

    async fn artifacts(&self, f: &ArtifactFilter) -> Result<Vec<ArtifactRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ART_COLS} FROM artifacts \
             WHERE (?1 IS NULL OR run_id = ?1) AND (?2 IS NULL OR step = ?2 OR step_key = ?2) \
               AND (?3 IS NULL OR name = ?3) AND (?4 IS NULL OR digest = ?4) \
             ORDER BY created_ms DESC, id LIMIT ?5"
        ))
        .bind(&f.run)
        .bind(&f.step)
        .bind(&f.name)
        .bind(&f.digest)
        .bind(f.limit.map(i64::from).unwrap_or(-1))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(artifact_row).collect::<Result<_, _>>()?)
    }

    async fn artifacts_of(&self, run: &str, node: u32) -> Result<Vec<ArtifactRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ART_COLS} FROM artifacts WHERE run_id = ?1 AND node = ?2 ORDER BY name"
        ))
        .bind(run)
        .bind(i64::from(node))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(artifact_row).collect::<Result<_, _>>()?)
    }

    async fn memo(&self, key: &str) -> Result<Vec<MemoRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, run_id, node, attempt, step, step_key, outputs, artifacts, created_ms \
             FROM memo WHERE key = ?1 ORDER BY created_ms DESC LIMIT 8",
        )
        .bind(key)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(memo_row).collect::<Result<_, _>>()?)
    }

    async fn forget_memo(&self, key: &str, run: &str, node: u32) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM memo WHERE key = ?1 AND run_id = ?2 AND node = ?3")
            .bind(key)
            .bind(run)
            .bind(i64::from(node))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn keys(&self, step: &str, limit: u32) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT run_id, node, attempt, step, step_key, key, parts, outcome, created_ms \
             FROM memo_keys WHERE step = ?1 ORDER BY created_ms DESC LIMIT ?2",
        )
        .bind(step)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(key_row).collect::<Result<_, _>>()?)
    }

    async fn key_of(&self, run: &str, node: u32) -> Result<Option<KeyRow>, StoreError> {
        let row = sqlx::query(
            "SELECT run_id, node, attempt, step, step_key, key, parts, outcome, created_ms \
             FROM memo_keys WHERE run_id = ?1 AND node = ?2 ORDER BY attempt DESC LIMIT 1",
        )
        .bind(run)
        .bind(i64::from(node))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(key_row).transpose()?)
    }

    async fn lineage(
        &self,
        id: &str,
        direction: Direction,
        depth: u32,
    ) -> Result<Vec<LineageEdge>, StoreError> {
        // One recursive query: each level joins through the step run that
        // read one artifact and wrote the other. UNION (not UNION ALL)
        // keeps diamonds from multiplying.
        let sql = match direction {
            Direction::Upstream => {
                "WITH RECURSIVE up(depth, from_id, run_id, node, to_id) AS ( \
                   SELECT 1, r.artifact, a.run_id, a.node, a.id \
                   FROM artifacts a JOIN artifact_reads r ON r.run_id = a.run_id AND r.node = a.node \
                   WHERE a.id = ?1 \
                   UNION \
                   SELECT up.depth + 1, r.artifact, a.run_id, a.node, a.id \
                   FROM up JOIN artifacts a ON a.id = up.from_id \
                   JOIN artifact_reads r ON r.run_id = a.run_id AND r.node = a.node \
                   WHERE up.depth < ?2 \
                 ) SELECT depth, from_id, run_id, node, to_id FROM up ORDER BY depth, to_id, from_id"
            }
            Direction::Downstream => {
                "WITH RECURSIVE down(depth, from_id, run_id, node, to_id) AS ( \
                   SELECT 1, r.artifact, a.run_id, a.node, a.id \
                   FROM artifact_reads r JOIN artifacts a ON a.run_id = r.run_id AND a.node = r.node \
                   WHERE r.artifact = ?1 \
                   UNION \
                   SELECT down.depth + 1, r.artifact, a.run_id, a.node, a.id \
                   FROM down JOIN artifact_reads r ON r.artifact = down.to_id \
                   JOIN artifacts a ON a.run_id = r.run_id AND a.node = r.node \
                   WHERE down.depth < ?2 \
                 ) SELECT depth, from_id, run_id, node, to_id FROM down ORDER BY depth, from_id, to_id"
            }
        };
        let rows = sqlx::query(sql)
            .bind(id)
            .bind(i64::from(depth))
            .fetch_all(&self.pool)
            .await?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for r in rows {
            let e = LineageEdge {
                depth: r.try_get::<i64, _>(0)? as u32,
                from: r.try_get(1)?,
                run: r.try_get(2)?,
                node: r.try_get::<i64, _>(3)? as u32,
                to: r.try_get(4)?,
            };
            if seen.insert((e.from.clone(), e.to.clone())) {
                out.push(e);
            }
        }
        Ok(out)
    }

    async fn digests(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT digest, kind FROM artifacts")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }
}

fn run_row(r: &SqliteRow) -> Result<RunRow, sqlx::Error> {
    let parent_run: Option<String> = r.try_get("parent_run")?;
    let parent_node: Option<i64> = r.try_get("parent_node")?;
    Ok(RunRow {
        id: r.try_get("id")?,
        workflow: r.try_get("workflow")?,
        path: r.try_get("path")?,
        digest: r.try_get("digest")?,
        params: r.try_get("params")?,
        options: r.try_get("options")?,
        parent: parent_run.zip(parent_node.map(|n| n as u32)),
        status: r.try_get("status")?,
        data: r.try_get("data")?,
        created_ms: r.try_get("created_ms")?,
        finished_ms: r.try_get("finished_ms")?,
        owner: r.try_get("owner")?,
        heartbeat_ms: r.try_get("heartbeat_ms")?,
    })
}

fn node_row(r: &SqliteRow) -> Result<NodeRow, sqlx::Error> {
    Ok(NodeRow {
        id: r.try_get::<i64, _>("id")? as u32,
        scope: r.try_get::<i64, _>("scope")? as u32,
        key: r.try_get("key")?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        state: r.try_get("state")?,
        attempt: r.try_get::<i64, _>("attempt")? as u32,
        started_ms: r.try_get("started_ms")?,
        finished_ms: r.try_get("finished_ms")?,
        data: r.try_get("data")?,
    })
}

impl StateStore for SqliteStore {
    async fn create_run(&self, run: &RunRow) -> Result<(), StoreError> {
        let r = sqlx::query(
            "INSERT INTO runs (id, workflow, path, digest, params, options, parent_run, parent_node, \
             status, data, created_ms, finished_ms, owner, heartbeat_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&run.id)
        .bind(&run.workflow)
        .bind(&run.path)
        .bind(&run.digest)
        .bind(&run.params)
        .bind(&run.options)
        .bind(run.parent.as_ref().map(|p| &p.0))
        .bind(run.parent.as_ref().map(|p| i64::from(p.1)))
        .bind(&run.status)
        .bind(&run.data)
        .bind(run.created_ms)
        .bind(run.finished_ms)
        .bind(&run.owner)
        .bind(run.heartbeat_ms)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::RunExists(run.id.clone()));
        }
        Ok(())
    }

    async fn commit(&self, batches: &[Batch]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for b in batches {
            Self::write_batch(&mut tx, b).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {RUN_COLS} FROM runs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(run_row).transpose()?)
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLS} FROM runs \
             WHERE (?1 IS NULL OR status = ?1) AND (?2 OR parent_run IS NULL) \
             ORDER BY created_ms DESC, id DESC LIMIT ?3"
        ))
        .bind(&filter.status)
        .bind(filter.children)
        .bind(filter.limit.map(i64::from).unwrap_or(-1))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(run_row).collect::<Result<_, _>>()?)
    }

    async fn children(&self, id: &str) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLS} FROM runs WHERE parent_run = ? ORDER BY created_ms, id"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(run_row).collect::<Result<_, _>>()?)
    }

    async fn scopes(&self, run: &str) -> Result<Vec<ScopeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tmpl, parent, idx, vars FROM scopes WHERE run_id = ? ORDER BY id",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ScopeRow {
                    id: r.try_get::<i64, _>("id")? as u32,
                    tmpl: r.try_get::<i64, _>("tmpl")? as u32,
                    parent: r.try_get::<Option<i64>, _>("parent")?.map(|p| p as u32),
                    index: r.try_get::<i64, _>("idx")? as u32,
                    vars: r.try_get("vars")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn nodes(&self, run: &str) -> Result<Vec<NodeRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {NODE_COLS} FROM nodes WHERE run_id = ? ORDER BY id"
        ))
        .bind(run)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(node_row).collect::<Result<_, _>>()?)
    }

    async fn nodes_named(&self, run: &str, name: &str) -> Result<Vec<NodeRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {NODE_COLS} FROM nodes WHERE run_id = ?1 AND (name = ?2 OR key = ?2) ORDER BY id"
        ))
        .bind(run)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(node_row).collect::<Result<_, _>>()?)
    }

    async fn claim(
        &self,
        run: &str,
        expected: Option<&str>,
        owner: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE runs SET owner = ?1, heartbeat_ms = ?2 WHERE id = ?3 AND owner IS ?4",
        )
        .bind(owner)
        .bind(now_ms)
        .bind(run)
        .bind(expected)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 1 {
            return Ok(());
        }
        match self.run(run).await? {
            None => Err(StoreError::NoSuchRun(run.into())),
            Some(r) => Err(StoreError::Held {
                run: run.into(),
                owner: r.owner.unwrap_or_else(|| "nobody".into()),
            }),
        }
    }

    fn check_present(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::MetadataExt;
        let Some((path, dev, ino)) = &self.file else {
            return Ok(());
        };
        match std::fs::metadata(path) {
            Ok(m) if m.dev() == *dev && m.ino() == *ino => Ok(()),
            _ => Err(StoreError::Gone { path: path.clone() }),
        }
    }

    async fn heartbeat(&self, run: &str, owner: &str, now_ms: i64) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE runs SET heartbeat_ms = ? WHERE id = ? AND owner = ?")
            .bind(now_ms)
            .bind(run)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn post(&self, run: &str, body: &MessageBody, now_ms: i64) -> Result<i64, StoreError> {
        let (kind, name, value) = match body {
            MessageBody::Signal { name, value } => ("signal", Some(name.as_str()), value.as_str()),
            MessageBody::Cancel { reason } => ("cancel", None, reason.as_str()),
            MessageBody::Kill { step, reason } => ("kill", Some(step.as_str()), reason.as_str()),
        };
        let r = sqlx::query(
            "INSERT INTO inbox (run_id, kind, name, value, created_ms) \
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM runs WHERE id = ?1)",
        )
        .bind(run)
        .bind(kind)
        .bind(name)
        .bind(value)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NoSuchRun(run.into()));
        }
        Ok(r.last_insert_rowid())
    }

    async fn inbox(&self, run: &str) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, run_id, kind, name, value, created_ms FROM inbox \
             WHERE run_id = ? AND consumed_ms IS NULL ORDER BY id",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let kind: String = r.try_get("kind")?;
            let value: Option<String> = r.try_get("value")?;
            let body = match kind.as_str() {
                "signal" => MessageBody::Signal {
                    name: r.try_get::<Option<String>, _>("name")?.unwrap_or_default(),
                    value: value.unwrap_or_else(|| "null".into()),
                },
                "kill" => MessageBody::Kill {
                    step: r.try_get::<Option<String>, _>("name")?.unwrap_or_default(),
                    reason: value.unwrap_or_default(),
                },
                _ => MessageBody::Cancel {
                    reason: value.unwrap_or_default(),
                },
            };
            out.push(Message {
                id: r.try_get("id")?,
                run: r.try_get("run_id")?,
                body,
                created_ms: r.try_get("created_ms")?,
            });
        }
        Ok(out)
    }
}
