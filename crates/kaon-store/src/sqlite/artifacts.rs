//! The artifact index: artifact rows, lineage, memo entries and keys.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::{
    ArtifactFilter, ArtifactIndex, ArtifactRow, Direction, KeyRow, LineageEdge, MemoRow,
    OutputFilter, RunOutput, StoreError,
};

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
            .fetch_optional(&self.read)
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
        .fetch_all(&self.read)
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
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(artifact_row).collect::<Result<_, _>>()?)
    }

    async fn artifacts_of(&self, run: &str, node: u32) -> Result<Vec<ArtifactRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ART_COLS} FROM artifacts WHERE run_id = ?1 AND node = ?2 ORDER BY name"
        ))
        .bind(run)
        .bind(i64::from(node))
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(artifact_row).collect::<Result<_, _>>()?)
    }

    async fn recent_outputs(&self, f: &OutputFilter) -> Result<Vec<RunOutput>, StoreError> {
        // The runs first (`runs_workflow`), then their artifacts
        // (`artifacts_producer`).
        let rows = sqlx::query(
            "SELECT r.created_ms AS run_created_ms, a.id, a.digest, a.kind, a.size, a.files, \
                    a.media_type, a.name, a.run_id, a.node, a.step, a.step_key, a.attempt, \
                    a.path, a.created_ms, a.tags, a.memoized_from \
             FROM (SELECT id, created_ms FROM runs WHERE workflow = ?1 AND parent_run IS NULL \
                   ORDER BY created_ms DESC, id DESC LIMIT ?2) AS r \
             JOIN artifacts AS a ON a.run_id = r.id \
             WHERE a.name = ?3 AND (?4 IS NULL OR a.step = ?4 OR a.step_key = ?4) \
             ORDER BY r.created_ms DESC, r.id DESC, a.created_ms DESC, a.id DESC",
        )
        .bind(&f.workflow)
        .bind(i64::from(f.runs))
        .bind(&f.name)
        .bind(&f.step)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let artifact = artifact_row(r)?;
                Ok(RunOutput {
                    run: artifact.run.clone().unwrap_or_default(),
                    run_created_ms: r.try_get("run_created_ms")?,
                    artifact,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn memo(&self, key: &str) -> Result<Vec<MemoRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, run_id, node, attempt, step, step_key, outputs, artifacts, created_ms \
             FROM memo WHERE key = ?1 ORDER BY created_ms DESC LIMIT 8",
        )
        .bind(key)
        .fetch_all(&self.read)
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
        .fetch_all(&self.read)
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
        .fetch_optional(&self.read)
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
            .fetch_all(&self.read)
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
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }
}
