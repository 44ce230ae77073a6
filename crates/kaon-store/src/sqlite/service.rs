//! The [`ServiceStore`] contract: deployed workflows, schedules, ticks and
//! tokens (migration 0004).

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::{ScheduleRow, ServiceStore, StoreError, TickRow, TokenRow, WorkflowRow};

const WORKFLOW_COLS: &str = "name, digest, path, sources, spec, deployed_ms";
const SCHEDULE_COLS: &str = "id, workflow, digest, spec, paused, created_ms";
const TICK_COLS: &str = "schedule, tick, due_ms, run_id, outcome, params, created_ms";
const TOKEN_COLS: &str = "id, name, role, hash, created_ms, revoked_ms";

fn workflow_row(r: &SqliteRow) -> Result<WorkflowRow, sqlx::Error> {
    Ok(WorkflowRow {
        name: r.try_get("name")?,
        digest: r.try_get("digest")?,
        path: r.try_get("path")?,
        sources: r.try_get("sources")?,
        spec: r.try_get("spec")?,
        deployed_ms: r.try_get("deployed_ms")?,
    })
}

fn schedule_row(r: &SqliteRow) -> Result<ScheduleRow, sqlx::Error> {
    Ok(ScheduleRow {
        id: r.try_get("id")?,
        workflow: r.try_get("workflow")?,
        digest: r.try_get("digest")?,
        spec: r.try_get("spec")?,
        paused: r.try_get("paused")?,
        created_ms: r.try_get("created_ms")?,
    })
}

fn tick_row(r: &SqliteRow) -> Result<TickRow, sqlx::Error> {
    Ok(TickRow {
        schedule: r.try_get("schedule")?,
        tick: r.try_get("tick")?,
        due_ms: r.try_get("due_ms")?,
        run: r.try_get("run_id")?,
        outcome: r.try_get("outcome")?,
        params: r.try_get("params")?,
        created_ms: r.try_get("created_ms")?,
    })
}

fn token_row(r: &SqliteRow) -> Result<TokenRow, sqlx::Error> {
    Ok(TokenRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: r.try_get("role")?,
        hash: r.try_get("hash")?,
        created_ms: r.try_get("created_ms")?,
        revoked_ms: r.try_get("revoked_ms")?,
    })
}

/// Reads every row with `read`.
fn all<T>(
    rows: &[SqliteRow],
    read: fn(&SqliteRow) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(read)
        .collect::<Result<_, _>>()
        .map_err(StoreError::from)
}

impl ServiceStore for SqliteStore {
    async fn deploy(
        &self,
        workflow: &WorkflowRow,
        schedules: &[ScheduleRow],
    ) -> Result<bool, StoreError> {
        // The insert is the transaction's first statement: it takes the
        // write lock before anything is read (also when it inserts
        // nothing), so two servers deploying at once take turns (busy
        // timeout) instead of one failing.
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "INSERT INTO workflows (name, digest, path, sources, spec, deployed_ms) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, digest) DO NOTHING",
        )
        .bind(&workflow.name)
        .bind(&workflow.digest)
        .bind(&workflow.path)
        .bind(&workflow.sources)
        .bind(&workflow.spec)
        .bind(workflow.deployed_ms)
        .execute(&mut *tx)
        .await?;
        let new = r.rows_affected() == 1;
        if !new {
            // Stored before. Unless it is the latest (as `workflows`
            // orders them), this is a rollback: it becomes the latest.
            let r = sqlx::query(
                "UPDATE workflows SET deployed_ms = ?1, path = ?2 \
                 WHERE name = ?3 AND digest = ?4 AND EXISTS ( \
                   SELECT 1 FROM workflows o WHERE o.name = workflows.name \
                   AND (o.deployed_ms > workflows.deployed_ms \
                        OR (o.deployed_ms = workflows.deployed_ms \
                            AND o.digest > workflows.digest)))",
            )
            .bind(workflow.deployed_ms)
            .bind(&workflow.path)
            .bind(&workflow.name)
            .bind(&workflow.digest)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 0 {
                // The latest again: nothing to change (dropping `tx`
                // rolls back).
                return Ok(false);
            }
        }
        let ids: Vec<&str> = schedules.iter().map(|s| s.id.as_str()).collect();
        sqlx::query(
            "DELETE FROM schedules WHERE workflow = ?1 \
             AND id NOT IN (SELECT value FROM json_each(?2))",
        )
        .bind(&workflow.name)
        .bind(serde_json::Value::from(ids).to_string())
        .execute(&mut *tx)
        .await?;
        for s in schedules {
            sqlx::query(
                "INSERT INTO schedules (id, workflow, digest, spec, paused, created_ms) \
                 VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET workflow = excluded.workflow, \
                   digest = excluded.digest, spec = excluded.spec",
            )
            .bind(&s.id)
            .bind(&s.workflow)
            .bind(&s.digest)
            .bind(&s.spec)
            .bind(s.paused)
            .bind(s.created_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    async fn workflows(&self) -> Result<Vec<WorkflowRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {WORKFLOW_COLS} FROM workflows w WHERE NOT EXISTS ( \
               SELECT 1 FROM workflows o WHERE o.name = w.name \
               AND (o.deployed_ms > w.deployed_ms \
                    OR (o.deployed_ms = w.deployed_ms AND o.digest > w.digest))) \
             ORDER BY name"
        ))
        .fetch_all(&self.read)
        .await?;
        all(&rows, workflow_row)
    }

    async fn workflow(
        &self,
        name: &str,
        digest: Option<&str>,
    ) -> Result<Option<WorkflowRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {WORKFLOW_COLS} FROM workflows WHERE name = ?1 AND (?2 IS NULL OR digest = ?2) \
             ORDER BY deployed_ms DESC, digest DESC LIMIT 1"
        ))
        .bind(name)
        .bind(digest)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(workflow_row).transpose()?)
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLS} FROM schedules ORDER BY id"
        ))
        .fetch_all(&self.read)
        .await?;
        all(&rows, schedule_row)
    }

    async fn set_paused(&self, id: &str, paused: bool) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE schedules SET paused = ? WHERE id = ?")
            .bind(paused)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn record_tick(&self, tick: &TickRow) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO ticks (schedule, tick, due_ms, run_id, outcome, params, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (schedule, tick) DO NOTHING",
        )
        .bind(&tick.schedule)
        .bind(&tick.tick)
        .bind(tick.due_ms)
        .bind(&tick.run)
        .bind(&tick.outcome)
        .bind(&tick.params)
        .bind(tick.created_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_tick(
        &self,
        schedule: &str,
        tick: &str,
        outcome: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE ticks SET outcome = ? WHERE schedule = ? AND tick = ?")
            .bind(outcome)
            .bind(schedule)
            .bind(tick)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn ticks(&self, schedule: &str, limit: u32) -> Result<Vec<TickRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TICK_COLS} FROM ticks WHERE schedule = ? \
             ORDER BY due_ms DESC, tick DESC LIMIT ?"
        ))
        .bind(schedule)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        all(&rows, tick_row)
    }

    async fn latest_tick(
        &self,
        schedule: &str,
        outcome: &str,
    ) -> Result<Option<TickRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TICK_COLS} FROM ticks WHERE schedule = ? AND outcome = ? \
             ORDER BY due_ms DESC, tick DESC LIMIT 1"
        ))
        .bind(schedule)
        .bind(outcome)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(tick_row).transpose()?)
    }

    async fn ticks_with(&self, outcome: &str) -> Result<Vec<TickRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TICK_COLS} FROM ticks WHERE outcome = ? ORDER BY due_ms, schedule, tick"
        ))
        .bind(outcome)
        .fetch_all(&self.read)
        .await?;
        all(&rows, tick_row)
    }

    async fn create_token(&self, token: &TokenRow) -> Result<(), StoreError> {
        let r = sqlx::query(
            "INSERT INTO tokens (id, name, role, hash, created_ms, revoked_ms) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.role)
        .bind(&token.hash)
        .bind(token.created_ms)
        .bind(token.revoked_ms)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::TokenExists(token.id.clone()));
        }
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(token_row).transpose()?)
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        // `substr`, not LIKE: LIKE ignores case in SQLite and would hide
        // a role `RUN:x`, which is no run's token.
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM tokens WHERE substr(role, 1, 4) <> 'run:' \
             ORDER BY created_ms DESC, id DESC"
        ))
        .fetch_all(&self.read)
        .await?;
        all(&rows, token_row)
    }

    async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE tokens SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL")
            .bind(now_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}
