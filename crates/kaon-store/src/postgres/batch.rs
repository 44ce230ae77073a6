//! Writing a commit: every batch's rows, in the transaction the caller
//! opened.
//!
//! Each table's rows of all the batches go in as one statement whose
//! parameters are arrays, one per column (`SELECT * FROM UNNEST($1, $2, ..)`):
//! a commit costs one round trip per table it writes, however many runs and
//! rows it holds. Before any row is written, the runs the batches write for
//! are locked and checked (they exist; the fencing owner holds them), so a
//! commit that cannot apply fails before it writes, with the error of its
//! first batch that cannot apply, as the memory store's does.

use std::collections::HashSet;
use std::collections::hash_map::{Entry, HashMap};
use std::hash::Hash;

use sqlx::{Postgres, Transaction};

use super::PgStore;
use crate::{Batch, StoreError};

/// Who holds each run a commit writes for (`None`: nobody), as locked.
type Holders = HashMap<String, Option<String>>;

impl PgStore {
    /// Writes `batches` in `tx`: all of them, or (an error) none.
    pub(super) async fn write(
        tx: &mut Transaction<'_, Postgres>,
        batches: &[Batch],
    ) -> Result<(), StoreError> {
        let holders = Self::lock_runs(tx, batches).await?;
        let refused = batches
            .iter()
            .enumerate()
            .find_map(|(i, b)| refusal(b, &holders).map(|e| (i, e)));
        // Scopes of the batches before the first refused one still go in
        // first: a scope stored before, in an earlier batch, is the earlier
        // error. The transaction is rolled back either way.
        let upto = refused.as_ref().map_or(batches.len(), |(i, _)| *i);
        if let Some(e) = Self::insert_scopes(tx, &batches[..upto]).await? {
            return Err(e);
        }
        if let Some((_, e)) = refused {
            return Err(e);
        }
        Self::update_runs(tx, batches).await?;
        Self::upsert_nodes(tx, batches).await?;
        Self::insert_artifacts(tx, batches).await?;
        Self::upsert_reads(tx, batches).await?;
        Self::upsert_memo(tx, batches).await?;
        Self::upsert_keys(tx, batches).await?;
        Self::consume(tx, batches).await?;
        Ok(())
    }

    /// Locks the rows of the runs the batches write for, and says who
    /// holds each (runs not stored are missing from the answer).
    ///
    /// `FOR NO KEY UPDATE` is the lock an `UPDATE` of the run takes: a
    /// claim of one of these runs waits until this transaction ends, and
    /// this waits for a claim under way, then reads the owner it left. So
    /// the owners checked are the owners when the commit lands. It does not
    /// block rows that merely reference the run (a `kaon signal` posting to
    /// the inbox). Rows are locked in id order, so two commits that write
    /// for the same runs queue instead of deadlocking.
    async fn lock_runs(
        tx: &mut Transaction<'_, Postgres>,
        batches: &[Batch],
    ) -> Result<Holders, StoreError> {
        let mut runs: Vec<&str> = batches
            .iter()
            .filter(|b| b.owner.is_some() || b.touches_run())
            .map(|b| b.run.as_str())
            .collect();
        runs.sort_unstable();
        runs.dedup();
        if runs.is_empty() {
            return Ok(Holders::new());
        }
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT id, owner FROM runs WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
        )
        .bind(&runs)
        .fetch_all(&mut **tx)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Inserts the batches' scopes; the first batch's [`StoreError::ScopeExists`]
    /// when one of its scopes is stored already (or comes twice in the
    /// commit).
    ///
    /// `ON CONFLICT DO NOTHING RETURNING` tells which rows went in without
    /// failing the statement: a failed statement would abort the whole
    /// transaction, and PostgreSQL could then not be asked which scope it
    /// was.
    async fn insert_scopes(
        tx: &mut Transaction<'_, Postgres>,
        batches: &[Batch],
    ) -> Result<Option<StoreError>, StoreError> {
        let n: usize = batches.iter().map(|b| b.scopes.len()).sum();
        if n == 0 {
            return Ok(None);
        }
        let mut run = Vec::with_capacity(n);
        let mut id = Vec::with_capacity(n);
        let mut tmpl = Vec::with_capacity(n);
        let mut parent = Vec::with_capacity(n);
        let mut idx = Vec::with_capacity(n);
        let mut vars = Vec::with_capacity(n);
        for b in batches {
            for s in &b.scopes {
                run.push(b.run.as_str());
                id.push(i64::from(s.id));
                tmpl.push(i64::from(s.tmpl));
                parent.push(s.parent.map(i64::from));
                idx.push(i64::from(s.index));
                vars.push(s.vars.as_str());
            }
        }
        let inserted: Vec<(String, i64)> = sqlx::query_as(
            "INSERT INTO scopes (run_id, id, tmpl, parent, idx, vars) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], \
                                  $5::bigint[], $6::text[]) \
             ON CONFLICT (run_id, id) DO NOTHING RETURNING run_id, id",
        )
        .bind(&run)
        .bind(&id)
        .bind(&tmpl)
        .bind(&parent)
        .bind(&idx)
        .bind(&vars)
        .fetch_all(&mut **tx)
        .await?;
        if inserted.len() == n {
            return Ok(None);
        }
        // Each row inserted answers the first scope with its id; a scope
        // left without one was stored before or came twice.
        let mut fresh: HashSet<(&str, i64)> =
            inserted.iter().map(|(r, i)| (r.as_str(), *i)).collect();
        for b in batches {
            let taken = b
                .scopes
                .iter()
                .filter(|s| !fresh.remove(&(b.run.as_str(), i64::from(s.id))))
                .map(|s| s.id)
                .min();
            if let Some(scope) = taken {
                return Ok(Some(StoreError::ScopeExists {
                    run: b.run.clone(),
                    scope,
                }));
            }
        }
        Ok(None)
    }

    async fn update_runs(
        tx: &mut Transaction<'_, Postgres>,
        batches: &[Batch],
    ) -> Result<(), StoreError> {
        let updates = last_wins(
            batches
                .iter()
                .filter_map(|b| b.update.as_ref().map(|u| (b.run.as_str(), u))),
            |&(run, _)| run,
        );
        if updates.is_empty() {
            return Ok(());
        }
        let run: Vec<&str> = updates.iter().map(|(r, _)| *r).collect();
        let status: Vec<&str> = updates.iter().map(|(_, u)| u.status.as_str()).collect();
        let data: Vec<&str> = updates.iter().map(|(_, u)| u.data.as_str()).collect();
        let finished: Vec<Option<i64>> = updates.iter().map(|(_, u)| u.finished_ms).collect();
        sqlx::query(
            "UPDATE runs SET status = u.status, data = u.data, finished_ms = u.finished_ms \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) \
                  AS u (id, status, data, finished_ms) \
             WHERE runs.id = u.id",
        )
        .bind(&run)
        .bind(&status)
        .bind(&data)
        .bind(&finished)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Nodes replace stored rows with their id. As in SQLite, what a node
    /// is (scope, key, name, kind) is kept from its first row; what it
    /// became (state, attempt, times, data) is the new row's.
    async fn upsert_nodes(
        tx: &mut Transaction<'_, Postgres>,
        batches: &[Batch],
    ) -> Result<(), StoreError> {
        let nodes = last_wins(
            batches
                .iter()
                .flat_map(|b| b.nodes.iter().map(move |n| (b.run.as_str(), n))),
            |&(run, n)| (run, n.id),
        );
        if nodes.is_empty() {
            return Ok(());
        }
        let run: Vec<&str> = nodes.iter().map(|(r, _)| *r).collect();
        let id: Vec<i64> = nodes.iter().map(|(_, n)| i64::from(n.id)).collect();
        let scope: Vec<i64> = nodes.iter().map(|(_, n)| i64::from(n.scope)).collect();
        let key: Vec<&str> = nodes.iter().map(|(_, n)| n.key.as_str()).collect();
        let name: Vec<&str> = nodes.iter().map(|(_, n)| n.name.as_str()).collect();
        let kind: Vec<&str> = nodes.iter().map(|(_, n)| n.kind.as_str()).collect();
        let state: Vec<&str> = nodes.iter().map(|(_, n)| n.state.as_str()).collect();
        let attempt: Vec<i64> = nodes.iter().map(|(_, n)| i64::from(n.attempt)).collect();
        let started: Vec<Option<i64>> = nodes.iter().map(|(_, n)| n.started_ms).collect();
        let finished: Vec<Option<i64>> = nodes.iter().map(|(_, n)| n.finished_ms).collect();
        let data: Vec<&str> = nodes.iter().map(|(_, n)| n.data.as_str()).collect();
        sqlx::query(
            "INSERT INTO nodes (run_id, id, scope, key, name, kind, state, attempt, started_ms, \
                                finished_ms, data) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], \
                                  $6::text[], $7::text[], $8::bigint[], $9::bigint[], \
                                  $10::bigint[], $11::text[]) \
             ON CONFLICT (run_id, id) DO UPDATE SET state = excluded.state, \
               attempt = excluded.attempt, started_ms = excluded.started_ms, \
               finished_ms = excluded.finished_ms, data = excluded.data",
        )
        .bind(&run)
        .bind(&id)
        .bind(&scope)
        .bind(&key)
        .bind(&name)
        .bind(&kind)
        .bind(&state)
        .bind(&attempt)
        .bind(&started)
        .bind(&finished)
        .bind(&data)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Artifacts stored before are left as they are (a replayed commit is
    /// harmless); of two rows with one id in a commit, the first is kept.
    async fn insert_artifacts(
        tx: &mut Transaction<'_, Postgres>,
        batches: &[Batch],
    ) -> Result<(), StoreError> {
        let rows: Vec<_> = batches.iter().flat_map(|b| &b.artifacts).collect();
        if rows.is_empty() {
            return Ok(());
        }
        let id: Vec<&str> = rows.iter().map(|a| a.id.as_str()).collect();
        let digest: Vec<&str> = rows.iter().map(|a| a.digest.as_str()).collect();
        let kind: Vec<&str> = rows.iter().map(|a| a.kind.as_str()).collect();
        let size: Vec<i64> = rows.iter().map(|a| a.size).collect();
        let files: Vec<i64> = rows.iter().map(|a| a.files).collect();
        let media_type: Vec<&str> = rows.iter().map(|a| a.media_type.as_str()).collect();
        let name: Vec<&str> = rows.iter().map(|a| a.name.as_str()).collect();
        let run: Vec<Option<&str>> = rows.iter().map(|a| a.run.as_deref()).collect();
        let node: Vec<Option<i64>> = rows.iter().map(|a| a.node.map(i64::from)).collect();
        let step: Vec<Option<&str>> = rows.iter().map(|a| a.step.as_deref()).collect();
        let step_key: Vec<Option<&str>> = rows.iter().map(|a| a.step_key.as_deref()).collect();
        let attempt: Vec<Option<i64>> = rows.iter().map(|a| a.attempt.map(i64::from)).collect();
        let path: Vec<Option<&str>> = rows.iter().map(|a| a.path.as_deref()).collect();
        let created: Vec<i64> = rows.iter().map(|a| a.created_ms).collect();
        let tags: Vec<&str> = rows.iter().map(|a| a.tags.as_str()).collect();
        let memoized_from: Vec<Option<&str>> =
            rows.iter().map(|a| a.memoized_from.as_deref()).collect();
        sqlx::query(
            "INSERT INTO artifacts (id, digest, kind, size, files, media_type, name, run_id, node, \
                                    step, step_key, attempt, path, created_ms, tags, memoized_from) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], \
                                  $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[], \
                                  $11::text[], $12::bigint[], $13::text[], $14::bigint[], \
                                  $15::text[], $16::text[]) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(&digest)
        .bind(&kind)
        .bind(&size)
        .bind(&files)
        .bind(&media_type)
        .bind(&name)
        .bind(&run)
        .bind(&node)
        .bind(&step)
        .bind(&step_key)
        .bind(&attempt)
        .bind(&path)
        .bind(&created)
        .bind(&tags)
        .bind(&memoized_from)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn upsert_reads(
        tx: &mut Transaction<'_, Postgres>,
        batches: &[Batch],
    ) -> Result<(), StoreError> {
        let rows = last_wins(batches.iter().flat_map(|b| &b.reads), |&r| {
            (r.run.as_str(), r.node, r.artifact.as_str())
        });
        if rows.is_empty() {
            return Ok(());
        }
        let run: Vec<&str> = rows.iter().map(|r| r.run.as_str()).collect();
        let node: Vec<i64> = rows.iter().map(|r| i64::from(r.node)).collect();
        let attempt: Vec<i64> = rows.iter().map(|r| i64::from(r.attempt)).collect();
        let artifact: Vec<&str> = rows.iter().map(|r| r.artifact.as_str()).collect();
        sqlx::query(
            "INSERT INTO artifact_reads (run_id, node, attempt, artifact) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[]) \
             ON CONFLICT (run_id, node, artifact) DO UPDATE SET attempt = excluded.attempt",
        )
        .bind(&run)
        .bind(&node)
        .bind(&attempt)
        .bind(&artifact)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn upsert_memo(
        tx: &mut Transaction<'_, Postgres>,
        batches: &[Batch],
    ) -> Result<(), StoreError> {
        let rows = last_wins(batches.iter().flat_map(|b| &b.memo), |&m| {
            (m.key.as_str(), m.run.as_str(), m.node)
        });
        if rows.is_empty() {
            return Ok(());
        }
        let key: Vec<&str> = rows.iter().map(|m| m.key.as_str()).collect();
        let run: Vec<&str> = rows.iter().map(|m| m.run.as_str()).collect();
        let node: Vec<i64> = rows.iter().map(|m| i64::from(m.node)).collect();
        let attempt: Vec<i64> = rows.iter().map(|m| i64::from(m.attempt)).collect();
        let step: Vec<&str> = rows.iter().map(|m| m.step.as_str()).collect();
        let step_key: Vec<&str> = rows.iter().map(|m| m.step_key.as_str()).collect();
        let outputs: Vec<&str> = rows.iter().map(|m| m.outputs.as_str()).collect();
        let artifacts: Vec<&str> = rows.iter().map(|m| m.artifacts.as_str()).collect();
        let created: Vec<i64> = rows.iter().map(|m| m.created_ms).collect();
        sqlx::query(
            "INSERT INTO memo (key, run_id, node, attempt, step, step_key, outputs, artifacts, \
                               created_ms) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], \
                                  $6::text[], $7::text[], $8::text[], $9::bigint[]) \
             ON CONFLICT (key, run_id, node) DO UPDATE SET attempt = excluded.attempt, \
               outputs = excluded.outputs, artifacts = excluded.artifacts, \
               created_ms = excluded.created_ms",
        )
        .bind(&key)
        .bind(&run)
        .bind(&node)
        .bind(&attempt)
        .bind(&step)
        .bind(&step_key)
        .bind(&outputs)
        .bind(&artifacts)
        .bind(&created)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn upsert_keys(
        tx: &mut Transaction<'_, Postgres>,
        batches: &[Batch],
    ) -> Result<(), StoreError> {
        let rows = last_wins(batches.iter().flat_map(|b| &b.keys), |&k| {
            (k.run.as_str(), k.node, k.attempt)
        });
        if rows.is_empty() {
            return Ok(());
        }
        let run: Vec<&str> = rows.iter().map(|k| k.run.as_str()).collect();
        let node: Vec<i64> = rows.iter().map(|k| i64::from(k.node)).collect();
        let attempt: Vec<i64> = rows.iter().map(|k| i64::from(k.attempt)).collect();
        let step: Vec<&str> = rows.iter().map(|k| k.step.as_str()).collect();
        let step_key: Vec<&str> = rows.iter().map(|k| k.step_key.as_str()).collect();
        let key: Vec<&str> = rows.iter().map(|k| k.key.as_str()).collect();
        let parts: Vec<&str> = rows.iter().map(|k| k.parts.as_str()).collect();
        let outcome: Vec<&str> = rows.iter().map(|k| k.outcome.as_str()).collect();
        let created: Vec<i64> = rows.iter().map(|k| k.created_ms).collect();
        sqlx::query(
            "INSERT INTO memo_keys (run_id, node, attempt, step, step_key, key, parts, outcome, \
                                    created_ms) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], \
                                  $6::text[], $7::text[], $8::text[], $9::bigint[]) \
             ON CONFLICT (run_id, node, attempt) DO UPDATE SET key = excluded.key, \
               parts = excluded.parts, outcome = excluded.outcome",
        )
        .bind(&run)
        .bind(&node)
        .bind(&attempt)
        .bind(&step)
        .bind(&step_key)
        .bind(&key)
        .bind(&parts)
        .bind(&outcome)
        .bind(&created)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Marks inbox messages consumed (once: a message consumed before keeps
    /// its time).
    async fn consume(
        tx: &mut Transaction<'_, Postgres>,
        batches: &[Batch],
    ) -> Result<(), StoreError> {
        let ids: Vec<i64> = batches.iter().flat_map(|b| &b.consumed).copied().collect();
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE inbox SET consumed_ms = (extract(epoch FROM now()) * 1000)::bigint \
             WHERE id = ANY($1) AND consumed_ms IS NULL",
        )
        .bind(&ids)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Why `b` cannot apply, given who holds the runs: its run is missing (and
/// it writes to the run, or is fenced by an owner), or it is fenced by an
/// owner that does not hold the run.
fn refusal(b: &Batch, holders: &Holders) -> Option<StoreError> {
    if !(b.touches_run() || b.owner.is_some()) {
        return None;
    }
    let Some(holder) = holders.get(&b.run) else {
        return Some(StoreError::NoSuchRun(b.run.clone()));
    };
    match &b.owner {
        Some(owner) if holder.as_ref() != Some(owner) => Some(StoreError::Held {
            run: b.run.clone(),
            owner: holder.clone().unwrap_or_else(|| "nobody".into()),
        }),
        _ => None,
    }
}

/// Of the items with the same key, keeps the last, in the place of the
/// first. One statement cannot write a row twice (`ON CONFLICT DO UPDATE`
/// refuses to), and in SQLite's and the memory store's commits the later
/// row wins: so does it here.
fn last_wins<T, K: Eq + Hash>(items: impl Iterator<Item = T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut at: HashMap<K, usize> = HashMap::new();
    let mut out: Vec<T> = Vec::new();
    for item in items {
        match at.entry(key(&item)) {
            Entry::Occupied(e) => out[*e.get()] = item,
            Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(item);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::last_wins;

    #[test]
    fn last_wins_keeps_the_later_row_in_the_first_place() {
        let rows = [(1, "a"), (2, "b"), (1, "c"), (3, "d"), (2, "e")];
        let kept = last_wins(rows.into_iter(), |&(k, _)| k);
        assert_eq!(kept, [(1, "c"), (2, "e"), (3, "d")]);
    }
}
