//! The [`StateStore`] contract: runs, their scopes and nodes, claims and
//! heartbeats, the inbox.

use std::str::FromStr;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::{
    Batch, Message, MessageBody, NodeRow, RunFilter, RunRow, ScopeRow, StateStore, StoreError,
};

macro_rules! run_cols {
    () => {
        "id, workflow, path, digest, params, options, parent_run, parent_node, \
         status, data, created_ms, finished_ms, owner, heartbeat_ms"
    };
}
const RUN_COLS: &str = run_cols!();

/// The conditions of [`StateStore::list_runs`] after the one that picks
/// the index (`?1` status, `?2` children, `?3` limit, `?4` workflow, `?5`
/// after, `?6` since, `?7` until; `?8`, the schedule, picks the statement).
/// The time bounds are
/// always there (open ends as the extreme integers), so that an index on
/// `created_ms` serves them; `after` bounds the range too, and the row
/// comparison then leaves out the cursor's own millisecond up to its id (a
/// cursor not stored gives NULL there, and so nothing).
macro_rules! list_runs {
    () => {
        "(?1 IS NULL OR status = ?1) AND (?2 OR parent_run IS NULL) \
         AND (?4 IS NULL OR workflow = ?4) \
         AND created_ms >= coalesce(?6, -9223372036854775807) \
         AND created_ms < coalesce(?7, 9223372036854775807) \
         AND created_ms <= coalesce((SELECT created_ms FROM runs WHERE id = ?5), 9223372036854775807) \
         AND (?5 IS NULL OR (created_ms, id) < (SELECT created_ms, id FROM runs WHERE id = ?5)) \
         ORDER BY created_ms DESC, id DESC LIMIT ?3"
    };
}
const NODE_COLS: &str = "id, scope, key, name, kind, state, attempt, started_ms, finished_ms, data";

fn run_row(r: &SqliteRow) -> Result<RunRow, StoreError> {
    let id: String = r.try_get("id")?;
    let parent_run: Option<String> = r.try_get("parent_run")?;
    let parent_node: Option<i64> = r.try_get("parent_node")?;
    let status = typed(r, "status", || (id.clone(), "status".to_string()))?;
    Ok(RunRow {
        workflow: r.try_get("workflow")?,
        path: r.try_get("path")?,
        digest: r.try_get("digest")?,
        params: r.try_get("params")?,
        options: r.try_get("options")?,
        parent: parent_run.zip(parent_node.map(|n| n as u32)),
        status,
        data: r.try_get("data")?,
        created_ms: r.try_get("created_ms")?,
        finished_ms: r.try_get("finished_ms")?,
        owner: r.try_get("owner")?,
        heartbeat_ms: r.try_get("heartbeat_ms")?,
        id,
    })
}

fn node_row(run: &str, r: &SqliteRow) -> Result<NodeRow, StoreError> {
    let id = r.try_get::<i64, _>("id")? as u32;
    let key: String = r.try_get("key")?;
    let place = |col: &str| (run.to_string(), format!("{col} of node {id} ({key})"));
    Ok(NodeRow {
        id,
        scope: r.try_get::<i64, _>("scope")? as u32,
        name: r.try_get("name")?,
        kind: typed(r, "kind", || place("kind"))?,
        state: typed(r, "state", || place("state"))?,
        attempt: r.try_get::<i64, _>("attempt")? as u32,
        started_ms: r.try_get("started_ms")?,
        finished_ms: r.try_get("finished_ms")?,
        data: r.try_get("data")?,
        key,
    })
}

/// Reads a text column as one of the [`crate::row`] types. A text this
/// build does not know is [`StoreError::Damaged`], naming the run and the
/// value (`place` gives both, only when needed).
fn typed<T: FromStr>(
    r: &SqliteRow,
    col: &str,
    place: impl FnOnce() -> (String, String),
) -> Result<T, StoreError> {
    let text: String = r.try_get(col)?;
    text.parse().map_err(|_| {
        let (run, what) = place();
        StoreError::Damaged {
            run,
            what,
            value: text,
        }
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
        .bind(run.status.as_str())
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
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(run_row).transpose()
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        // One statement per index that can drive the list (see
        // `list_runs!`): SQLite plans a statement before its parameters
        // are known, so a condition such as `?4 IS NULL OR workflow = ?4`
        // could never use an index.
        let sql = if filter.schedule.is_some() {
            // A schedule's runs by its ticks (primary key), each run by
            // its id: as many lookups as the schedule has ticks.
            concat!(
                "SELECT ",
                run_cols!(),
                " FROM (SELECT run_id FROM ticks WHERE schedule = ?8) AS t \
                 JOIN runs ON runs.id = t.run_id WHERE ",
                list_runs!()
            )
        } else if filter.workflow.is_some() {
            concat!(
                "SELECT ",
                run_cols!(),
                " FROM runs WHERE workflow = ?4 AND ?8 IS NULL AND ",
                list_runs!()
            )
        } else {
            concat!(
                "SELECT ",
                run_cols!(),
                " FROM runs WHERE ?8 IS NULL AND ",
                list_runs!()
            )
        };
        let rows = sqlx::query(sql)
            .bind(filter.status.map(|s| s.as_str()))
            .bind(filter.children)
            .bind(filter.limit.map(i64::from).unwrap_or(-1))
            .bind(filter.workflow.as_deref())
            .bind(filter.after.as_deref())
            .bind(filter.since)
            .bind(filter.until)
            .bind(filter.schedule.as_deref())
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(run_row).collect()
    }

    async fn children(&self, id: &str) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLS} FROM runs WHERE parent_run = ? ORDER BY created_ms, id"
        ))
        .bind(id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(run_row).collect()
    }

    async fn scopes(&self, run: &str) -> Result<Vec<ScopeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tmpl, parent, idx, vars FROM scopes WHERE run_id = ? ORDER BY id",
        )
        .bind(run)
        .fetch_all(&self.read)
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
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| node_row(run, r)).collect()
    }

    async fn nodes_named(&self, run: &str, name: &str) -> Result<Vec<NodeRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {NODE_COLS} FROM nodes WHERE run_id = ?1 AND (name = ?2 OR key = ?2) ORDER BY id"
        ))
        .bind(run)
        .bind(name)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| node_row(run, r)).collect()
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
        .fetch_all(&self.read)
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
