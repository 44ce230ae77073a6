//! The in-memory twin: the same contract, nothing on disk. For tests and
//! for the engine benchmark's baseline.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::{
    Batch, Message, MessageBody, NodeRow, RunFilter, RunRow, ScopeRow, StateStore, StoreError,
};

#[derive(Default)]
struct Inner {
    runs: BTreeMap<String, RunRow>,
    scopes: BTreeMap<(String, u32), ScopeRow>,
    nodes: BTreeMap<(String, u32), NodeRow>,
    inbox: Vec<(Message, bool)>,
    next_message: i64,
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
            if !g.runs.contains_key(&b.run) {
                return Err(StoreError::NoSuchRun(b.run.clone()));
            }
            for s in &b.scopes {
                if g.scopes.contains_key(&(b.run.clone(), s.id)) {
                    return Err(StoreError::Conflict(format!(
                        "scope {} of run {} exists already",
                        s.id, b.run
                    )));
                }
            }
        }
        for b in batches {
            if let Some((status, data, finished)) = &b.status
                && let Some(r) = g.runs.get_mut(&b.run)
            {
                r.status = status.clone();
                r.data = data.clone();
                r.finished_ms = *finished;
            }
            for s in &b.scopes {
                g.scopes.insert((b.run.clone(), s.id), s.clone());
            }
            for n in &b.nodes {
                g.nodes.insert((b.run.clone(), n.id), n.clone());
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
        let mut runs: Vec<RunRow> = g
            .runs
            .values()
            .filter(|r| filter.status.as_ref().is_none_or(|s| &r.status == s))
            .filter(|r| filter.children || r.parent.is_none())
            .cloned()
            .collect();
        runs.sort_by(|a, b| (b.created_ms, &b.id).cmp(&(a.created_ms, &a.id)));
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
