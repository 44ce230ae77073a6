//! The in-memory twin: the same contract, nothing on disk. For tests and
//! for the engine benchmark's baseline.

mod service;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::{
    ArtifactFilter, ArtifactIndex, ArtifactRow, Batch, Direction, KeyRow, LineageEdge, MemoRow,
    Message, MessageBody, NodeRow, OutputFilter, ReadRow, RunFilter, RunOutput, RunRow, ScopeRow,
    StateStore, StoreError,
};

#[derive(Default)]
struct Inner {
    runs: BTreeMap<String, RunRow>,
    scopes: BTreeMap<(String, u32), ScopeRow>,
    nodes: BTreeMap<(String, u32), NodeRow>,
    inbox: Vec<(Message, bool)>,
    next_message: i64,
    artifacts: BTreeMap<String, ArtifactRow>,
    reads: BTreeMap<(String, u32, String), ReadRow>,
    memo: BTreeMap<(String, String, u32), MemoRow>,
    keys: BTreeMap<(String, u32, u32), KeyRow>,
    service: service::Tables,
}

/// A [`StateStore`] held in memory.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; go on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StateStore for MemoryStore {
    async fn create_run(&self, run: &RunRow) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.runs.contains_key(&run.id) {
            return Err(StoreError::RunExists(run.id.clone()));
        }
        g.runs.insert(run.id.clone(), run.clone());
        Ok(())
    }

    async fn commit(&self, batches: &[Batch]) -> Result<(), StoreError> {
        let mut g = self.lock();
        // Check everything first so that a failing batch changes nothing.
        for b in batches {
            if b.touches_run() && !g.runs.contains_key(&b.run) {
                return Err(StoreError::NoSuchRun(b.run.clone()));
            }
            if let Some(owner) = &b.owner {
                match g.runs.get(&b.run) {
                    None => return Err(StoreError::NoSuchRun(b.run.clone())),
                    Some(r) if r.owner.as_ref() != Some(owner) => {
                        return Err(StoreError::Held {
                            run: b.run.clone(),
                            owner: r.owner.clone().unwrap_or_else(|| "nobody".into()),
                        });
                    }
                    Some(_) => {}
                }
            }
            for s in &b.scopes {
                if g.scopes.contains_key(&(b.run.clone(), s.id)) {
                    return Err(StoreError::ScopeExists {
                        run: b.run.clone(),
                        scope: s.id,
                    });
                }
            }
        }
        for b in batches {
            if let Some(u) = &b.update
                && let Some(r) = g.runs.get_mut(&b.run)
            {
                r.status = u.status;
                r.data = u.data.clone();
                r.finished_ms = u.finished_ms;
            }
            for s in &b.scopes {
                g.scopes.insert((b.run.clone(), s.id), s.clone());
            }
            for n in &b.nodes {
                g.nodes.insert((b.run.clone(), n.id), n.clone());
            }
            for a in &b.artifacts {
                g.artifacts.entry(a.id.clone()).or_insert_with(|| a.clone());
            }
            for r in &b.reads {
                g.reads
                    .insert((r.run.clone(), r.node, r.artifact.clone()), r.clone());
            }
            for m in &b.memo {
                g.memo
                    .insert((m.key.clone(), m.run.clone(), m.node), m.clone());
            }
            for k in &b.keys {
                g.keys.insert((k.run.clone(), k.node, k.attempt), k.clone());
            }
            for (m, consumed) in &mut g.inbox {
                if b.consumed.contains(&m.id) {
                    *consumed = true;
                }
            }
        }
        Ok(())
    }

    async fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        Ok(self.lock().runs.get(id).cloned())
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        let g = self.lock();
        let started = filter.schedule.as_deref().map(|s| g.service.runs_of(s));
        let mut runs: Vec<RunRow> = g
            .runs
            .values()
            .filter(|r| filter.status.is_none_or(|s| r.status == s))
            .filter(|r| filter.children || r.parent.is_none())
            .filter(|r| filter.workflow.as_ref().is_none_or(|w| &r.workflow == w))
            .filter(|r| filter.since.is_none_or(|t| r.created_ms >= t))
            .filter(|r| filter.until.is_none_or(|t| r.created_ms < t))
            .filter(|r| started.as_ref().is_none_or(|s| s.contains(r.id.as_str())))
            .cloned()
            .collect();
        runs.sort_by(|a, b| (b.created_ms, &b.id).cmp(&(a.created_ms, &a.id)));
        if let Some(after) = &filter.after {
            let cursor = g.runs.get(after).map(|r| (r.created_ms, r.id.clone()));
            runs.retain(|r| {
                cursor
                    .as_ref()
                    .is_some_and(|c| (r.created_ms, r.id.clone()) < *c)
            });
        }
        if let Some(l) = filter.limit {
            runs.truncate(l as usize);
        }
        Ok(runs)
    }

    async fn children(&self, id: &str) -> Result<Vec<RunRow>, StoreError> {
        let g = self.lock();
        let mut runs: Vec<RunRow> = g
            .runs
            .values()
            .filter(|r| r.parent.as_ref().is_some_and(|p| p.0 == id))
            .cloned()
            .collect();
        runs.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(runs)
    }

    async fn scopes(&self, run: &str) -> Result<Vec<ScopeRow>, StoreError> {
        let g = self.lock();
        Ok(g.scopes
            .range((run.to_string(), 0)..=(run.to_string(), u32::MAX))
            .map(|(_, s)| s.clone())
            .collect())
    }

    async fn nodes(&self, run: &str) -> Result<Vec<NodeRow>, StoreError> {
        let g = self.lock();
        Ok(g.nodes
            .range((run.to_string(), 0)..=(run.to_string(), u32::MAX))
            .map(|(_, n)| n.clone())
            .collect())
    }

    async fn nodes_named(&self, run: &str, name: &str) -> Result<Vec<NodeRow>, StoreError> {
        Ok(self
            .nodes(run)
            .await?
            .into_iter()
            .filter(|n| n.name == name || n.key == name)
            .collect())
    }

    async fn claim(
        &self,
        run: &str,
        expected: Option<&str>,
        owner: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut g = self.lock();
        let Some(r) = g.runs.get_mut(run) else {
            return Err(StoreError::NoSuchRun(run.into()));
        };
        if r.owner.as_deref() != expected {
            return Err(StoreError::Held {
                run: run.into(),
                owner: r.owner.clone().unwrap_or_else(|| "nobody".into()),
            });
        }
        r.owner = owner.map(str::to_string);
        r.heartbeat_ms = Some(now_ms);
        Ok(())
    }

    async fn heartbeat(&self, run: &str, owner: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut g = self.lock();
        match g.runs.get_mut(run) {
            Some(r) if r.owner.as_deref() == Some(owner) => {
                r.heartbeat_ms = Some(now_ms);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn post(&self, run: &str, body: &MessageBody, now_ms: i64) -> Result<i64, StoreError> {
        let mut g = self.lock();
        if !g.runs.contains_key(run) {
            return Err(StoreError::NoSuchRun(run.into()));
        }
        g.next_message += 1;
        let id = g.next_message;
        g.inbox.push((
            Message {
                id,
                run: run.into(),
                body: body.clone(),
                created_ms: now_ms,
            },
            false,
        ));
        Ok(id)
    }

    async fn inbox(&self, run: &str) -> Result<Vec<Message>, StoreError> {
        Ok(self
            .lock()
            .inbox
            .iter()
            .filter(|(m, consumed)| !consumed && m.run == run)
            .map(|(m, _)| m.clone())
            .collect())
    }
}

fn newest<T>(mut v: Vec<T>, at: impl Fn(&T) -> i64, limit: Option<u32>) -> Vec<T> {
    v.sort_by_key(|x| std::cmp::Reverse(at(x)));
    if let Some(l) = limit {
        v.truncate(l as usize);
    }
    v
}

impl ArtifactIndex for MemoryStore {
    async fn artifact(&self, id: &str) -> Result<Option<ArtifactRow>, StoreError> {
        let g = self.lock();
        if let Some(a) = g.artifacts.get(id) {
            return Ok(Some(a.clone()));
        }
        let digest = if id.starts_with("blake3:") {
            id.to_string()
        } else {
            format!("blake3:{id}")
        };
        let hits: Vec<&ArtifactRow> = g
            .artifacts
            .values()
            .filter(|a| a.id.starts_with(id) || a.digest.starts_with(&digest))
            .collect();
        match hits.len() {
            0 => Ok(None),
            1 => Ok(Some(hits[0].clone())),
            _ => Err(StoreError::Ambiguous {
                prefix: id.to_string(),
                candidates: hits.iter().take(6).map(|a| a.id.clone()).collect(),
            }),
        }
    }

    async fn artifacts(&self, f: &ArtifactFilter) -> Result<Vec<ArtifactRow>, StoreError> {
        let g = self.lock();
        let v: Vec<ArtifactRow> = g
            .artifacts
            .values()
            .filter(|a| f.run.is_none() || a.run == f.run)
            .filter(|a| f.step.is_none() || a.step == f.step || a.step_key == f.step)
            .filter(|a| f.name.as_ref().is_none_or(|n| &a.name == n))
            .filter(|a| f.digest.as_ref().is_none_or(|d| &a.digest == d))
            .cloned()
            .collect();
        Ok(newest(v, |a| a.created_ms, f.limit))
    }

    async fn artifacts_of(&self, run: &str, node: u32) -> Result<Vec<ArtifactRow>, StoreError> {
        let g = self.lock();
        let mut v: Vec<ArtifactRow> = g
            .artifacts
            .values()
            .filter(|a| a.run.as_deref() == Some(run) && a.node == Some(node))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    async fn recent_outputs(&self, f: &OutputFilter) -> Result<Vec<RunOutput>, StoreError> {
        let g = self.lock();
        let mut runs: Vec<&RunRow> = g
            .runs
            .values()
            .filter(|r| r.workflow == f.workflow && r.parent.is_none())
            .collect();
        runs.sort_by(|a, b| (b.created_ms, &b.id).cmp(&(a.created_ms, &a.id)));
        runs.truncate(f.runs as usize);
        let mut out = Vec::new();
        for r in runs {
            let mut mine: Vec<&ArtifactRow> = g
                .artifacts
                .values()
                .filter(|a| a.run.as_deref() == Some(r.id.as_str()) && a.name == f.name)
                .filter(|a| f.step.is_none() || a.step == f.step || a.step_key == f.step)
                .collect();
            mine.sort_by(|a, b| (b.created_ms, &b.id).cmp(&(a.created_ms, &a.id)));
            out.extend(mine.into_iter().map(|a| RunOutput {
                run: r.id.clone(),
                run_created_ms: r.created_ms,
                artifact: a.clone(),
            }));
        }
        Ok(out)
    }

    async fn memo(&self, key: &str) -> Result<Vec<MemoRow>, StoreError> {
        let g = self.lock();
        let v: Vec<MemoRow> = g.memo.values().filter(|m| m.key == key).cloned().collect();
        Ok(newest(v, |m| m.created_ms, Some(8)))
    }

    async fn forget_memo(&self, key: &str, run: &str, node: u32) -> Result<(), StoreError> {
        self.lock()
            .memo
            .remove(&(key.to_string(), run.to_string(), node));
        Ok(())
    }

    async fn keys(&self, step: &str, limit: u32) -> Result<Vec<KeyRow>, StoreError> {
        let g = self.lock();
        let v: Vec<KeyRow> = g
            .keys
            .values()
            .filter(|k| k.step == step)
            .cloned()
            .collect();
        Ok(newest(v, |k| k.created_ms, Some(limit)))
    }

    async fn key_of(&self, run: &str, node: u32) -> Result<Option<KeyRow>, StoreError> {
        let g = self.lock();
        Ok(g.keys
            .range((run.to_string(), node, 0)..=(run.to_string(), node, u32::MAX))
            .next_back()
            .map(|(_, k)| k.clone()))
    }

    async fn lineage(
        &self,
        id: &str,
        direction: Direction,
        depth: u32,
    ) -> Result<Vec<LineageEdge>, StoreError> {
        let g = self.lock();
        let mut out: Vec<LineageEdge> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut frontier = vec![id.to_string()];
        for d in 1..=depth {
            let mut next = Vec::new();
            let mut level = Vec::new();
            for a in &frontier {
                match direction {
                    Direction::Upstream => {
                        let Some(art) = g.artifacts.get(a) else {
                            continue;
                        };
                        let (Some(run), Some(node)) = (&art.run, art.node) else {
                            continue;
                        };
                        for r in g.reads.values().filter(|r| &r.run == run && r.node == node) {
                            level.push(LineageEdge {
                                depth: d,
                                from: r.artifact.clone(),
                                run: run.clone(),
                                node,
                                to: a.clone(),
                            });
                        }
                    }
                    Direction::Downstream => {
                        for r in g.reads.values().filter(|r| &r.artifact == a) {
                            for w in g.artifacts.values().filter(|w| {
                                w.run.as_deref() == Some(r.run.as_str()) && w.node == Some(r.node)
                            }) {
                                level.push(LineageEdge {
                                    depth: d,
                                    from: a.clone(),
                                    run: r.run.clone(),
                                    node: r.node,
                                    to: w.id.clone(),
                                });
                            }
                        }
                    }
                }
            }
            level.sort_by(|x, y| (&x.to, &x.from).cmp(&(&y.to, &y.from)));
            for e in level {
                if seen.insert((e.from.clone(), e.to.clone())) {
                    next.push(match direction {
                        Direction::Upstream => e.from.clone(),
                        Direction::Downstream => e.to.clone(),
                    });
                    out.push(e);
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        Ok(out)
    }

    async fn digests(&self) -> Result<Vec<(String, String)>, StoreError> {
        let g = self.lock();
        let set: std::collections::BTreeSet<(String, String)> = g
            .artifacts
            .values()
            .map(|a| (a.digest.clone(), a.kind.clone()))
            .collect();
        Ok(set.into_iter().collect())
    }
}
