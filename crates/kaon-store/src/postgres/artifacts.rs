//! The artifact index: artifact rows, lineage, memo entries and keys.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use crate::{
    ArtifactFilter, ArtifactIndex, ArtifactRow, Direction, KeyRow, LineageEdge, MemoRow,
    OutputFilter, RunOutput, StoreError,
};

// A macro rather than a const so that statements are `concat!`ed at
// compile time (see `state.rs`).
macro_rules! art_cols {
    () => {
        "id, digest, kind, size, files, media_type, name, run_id, node, step, \
         step_key, attempt, path, created_ms, tags, memoized_from"
    };
}

fn artifact_row(r: &PgRow) -> Result<ArtifactRow, sqlx::Error> {
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

fn memo_row(r: &PgRow) -> Result<MemoRow, sqlx::Error> {
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

fn key_row(r: &PgRow) -> Result<KeyRow, sqlx::Error> {
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

/// The least string greater than every string that starts with `prefix`
/// (in byte order, which is code point order): `prefix` with its last
/// character raised by one. `None` when there is none (an empty prefix, or
/// one of U+10FFFF alone): every string from `prefix` on starts with it.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // The surrogates are no characters: after U+D7FF comes U+E000.
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

impl ArtifactIndex for PgStore {
    async fn artifact(&self, id: &str) -> Result<Option<ArtifactRow>, StoreError> {
        if let Some(r) = sqlx::query(concat!(
            "SELECT ",
            art_cols!(),
            " FROM artifacts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        {
            return Ok(Some(artifact_row(&r)?));
        }
        // A prefix of an id or of a digest (with or without `blake3:`),
        // used only when it names one artifact. Each prefix is a range of
        // its index (the columns compare bytes, `COLLATE "C"`). Not a
        // prepared statement: planned with the bounds it is given, a plan
        // uses them as index ranges, which one plan for all bounds (one an
        // open end) could not.
        let digest = if id.starts_with("blake3:") {
            id.to_string()
        } else {
            format!("blake3:{id}")
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            art_cols!(),
            " FROM artifacts \
             WHERE (id >= $1 AND ($2::text IS NULL OR id < $2)) \
                OR (digest >= $3 AND ($4::text IS NULL OR digest < $4)) \
             ORDER BY created_ms DESC LIMIT 6"
        ))
        .bind(id)
        .bind(prefix_end(id))
        .bind(&digest)
        .bind(prefix_end(&digest))
        .persistent(false)
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
        // `LIMIT NULL` is no limit.
        let rows = sqlx::query(concat!(
            "SELECT ",
            art_cols!(),
            " FROM artifacts \
             WHERE ($1::text IS NULL OR run_id = $1) \
               AND ($2::text IS NULL OR step = $2 OR step_key = $2) \
               AND ($3::text IS NULL OR name = $3) AND ($4::text IS NULL OR digest = $4) \
             ORDER BY created_ms DESC, id LIMIT $5"
        ))
        .bind(&f.run)
        .bind(&f.step)
        .bind(&f.name)
        .bind(&f.digest)
        .bind(f.limit.map(i64::from))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(artifact_row).collect::<Result<_, _>>()?)
    }

    async fn artifacts_of(&self, run: &str, node: u32) -> Result<Vec<ArtifactRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            art_cols!(),
            " FROM artifacts WHERE run_id = $1 AND node = $2 ORDER BY name"
        ))
        .bind(run)
        .bind(i64::from(node))
        .fetch_all(&self.pool)
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
             FROM (SELECT id, created_ms FROM runs WHERE workflow = $1 AND parent_run IS NULL \
                   ORDER BY created_ms DESC, id DESC LIMIT $2) AS r \
             JOIN artifacts AS a ON a.run_id = r.id \
             WHERE a.name = $3 AND ($4::text IS NULL OR a.step = $4 OR a.step_key = $4) \
             ORDER BY r.created_ms DESC, r.id DESC, a.created_ms DESC, a.id DESC",
        )
        .bind(&f.workflow)
        .bind(i64::from(f.runs))
        .bind(&f.name)
        .bind(&f.step)
        .fetch_all(&self.pool)
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
             FROM memo WHERE key = $1 ORDER BY created_ms DESC LIMIT 8",
        )
        .bind(key)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(memo_row).collect::<Result<_, _>>()?)
    }

    async fn forget_memo(&self, key: &str, run: &str, node: u32) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM memo WHERE key = $1 AND run_id = $2 AND node = $3")
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
             FROM memo_keys WHERE step = $1 ORDER BY created_ms DESC LIMIT $2",
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
             FROM memo_keys WHERE run_id = $1 AND node = $2 ORDER BY attempt DESC LIMIT 1",
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
        // keeps diamonds from multiplying; an edge met again at a greater
        // depth is dropped below, keeping its nearest.
        let sql = match direction {
            Direction::Upstream => {
                "WITH RECURSIVE up (depth, from_id, run_id, node, to_id) AS ( \
                   SELECT 1::bigint, r.artifact, a.run_id, a.node, a.id \
                   FROM artifacts a JOIN artifact_reads r ON r.run_id = a.run_id AND r.node = a.node \
                   WHERE a.id = $1 \
                   UNION \
                   SELECT up.depth + 1, r.artifact, a.run_id, a.node, a.id \
                   FROM up JOIN artifacts a ON a.id = up.from_id \
                   JOIN artifact_reads r ON r.run_id = a.run_id AND r.node = a.node \
                   WHERE up.depth < $2 \
                 ) SELECT depth, from_id, run_id, node, to_id FROM up ORDER BY depth, to_id, from_id"
            }
            Direction::Downstream => {
                "WITH RECURSIVE down (depth, from_id, run_id, node, to_id) AS ( \
                   SELECT 1::bigint, r.artifact, a.run_id, a.node, a.id \
                   FROM artifact_reads r JOIN artifacts a ON a.run_id = r.run_id AND a.node = r.node \
                   WHERE r.artifact = $1 \
                   UNION \
                   SELECT down.depth + 1, r.artifact, a.run_id, a.node, a.id \
                   FROM down JOIN artifact_reads r ON r.artifact = down.to_id \
                   JOIN artifacts a ON a.run_id = r.run_id AND a.node = r.node \
                   WHERE down.depth < $2 \
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
        // Ordered as the memory store's are, so that every backend lists
        // the same.
        let rows = sqlx::query("SELECT DISTINCT digest, kind FROM artifacts ORDER BY digest, kind")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_string_after_every_extension() {
        assert_eq!(prefix_end("a1f").as_deref(), Some("a1g"));
        assert_eq!(prefix_end("blake3:").as_deref(), Some("blake3;"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("\u{10FFFF}"), None);
    }
}
