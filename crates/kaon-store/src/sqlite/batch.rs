//! Writing a commit: each batch's rows, in the transaction the caller
//! opened.

use sqlx::{Sqlite, Transaction};

use super::SqliteStore;
use crate::{Batch, StoreError};

impl SqliteStore {
    /// Writes one batch in `tx`.
    pub(super) async fn write_batch(
        tx: &mut Transaction<'_, Sqlite>,
        b: &Batch,
    ) -> Result<(), StoreError> {
        if let Some(owner) = &b.owner {
            Self::fence(tx, &b.run, owner).await?;
        }
        if let Some(u) = &b.update {
            let r =
                sqlx::query("UPDATE runs SET status = ?, data = ?, finished_ms = ? WHERE id = ?")
                    .bind(u.status.as_str())
                    .bind(&u.data)
                    .bind(u.finished_ms)
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
            let inserted = sqlx::query(
                "INSERT INTO scopes (run_id, id, tmpl, parent, idx, vars) \
                 SELECT ?1, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4 \
                 FROM json_each(?2) AS j",
            )
            .bind(&b.run)
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut **tx)
            .await;
            if let Err(e) = inserted {
                return Err(Self::scope_error(tx, b, e).await);
            }
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
                        n.kind.as_str(),
                        n.state.as_str(),
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

    /// Fails unless `owner` holds `run` now. The check is a write (a
    /// no-op update), so it takes the database's write lock: nobody can
    /// claim the run between the check and the batch's rows, and the
    /// transaction never has to upgrade a read snapshot another writer
    /// made stale.
    async fn fence(
        tx: &mut Transaction<'_, Sqlite>,
        run: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        let held = sqlx::query("UPDATE runs SET owner = owner WHERE id = ?1 AND owner = ?2")
            .bind(run)
            .bind(owner)
            .execute(&mut **tx)
            .await?;
        if held.rows_affected() == 1 {
            return Ok(());
        }
        let holder: Option<Option<String>> =
            sqlx::query_scalar("SELECT owner FROM runs WHERE id = ?")
                .bind(run)
                .fetch_optional(&mut **tx)
                .await?;
        match holder {
            None => Err(StoreError::NoSuchRun(run.to_string())),
            Some(holder) => Err(StoreError::Held {
                run: run.to_string(),
                owner: holder.unwrap_or_else(|| "nobody".into()),
            }),
        }
    }

    /// What a failed insert of `b`'s scopes means: a scope stored before
    /// (or twice in the batch) is [`StoreError::ScopeExists`], as the
    /// contract says; anything else is the database's error.
    async fn scope_error(
        tx: &mut Transaction<'_, Sqlite>,
        b: &Batch,
        e: sqlx::Error,
    ) -> StoreError {
        if !e
            .as_database_error()
            .is_some_and(|d| d.is_unique_violation())
        {
            return e.into();
        }
        // The failed statement alone was undone: the transaction can still
        // be read to name the scope.
        let ids: Vec<u32> = b.scopes.iter().map(|s| s.id).collect();
        let stored: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
            "SELECT id FROM scopes WHERE run_id = ?1 \
             AND id IN (SELECT value FROM json_each(?2)) ORDER BY id LIMIT 1",
        )
        .bind(&b.run)
        .bind(serde_json::Value::from(ids.clone()).to_string())
        .fetch_optional(&mut **tx)
        .await;
        let mut seen = std::collections::HashSet::new();
        let scope = match stored {
            Ok(Some(id)) => u32::try_from(id).ok(),
            _ => ids.into_iter().find(|id| !seen.insert(*id)),
        };
        match scope {
            Some(scope) => StoreError::ScopeExists {
                run: b.run.clone(),
                scope,
            },
            None => e.into(),
        }
    }

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
