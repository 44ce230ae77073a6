//! The [`ServiceStore`] contract in memory.

use std::collections::{BTreeMap, BTreeSet};

use super::MemoryStore;
use crate::{ScheduleRow, ServiceStore, StoreError, TickRow, TokenRow, WorkflowRow};

/// The server's tables, held with the rest of the store under its lock.
#[derive(Default)]
pub(super) struct Tables {
    /// By (name, digest).
    workflows: BTreeMap<(String, String), WorkflowRow>,
    /// By id.
    schedules: BTreeMap<String, ScheduleRow>,
    /// By (schedule, tick).
    ticks: BTreeMap<(String, String), TickRow>,
    /// By id.
    tokens: BTreeMap<String, TokenRow>,
}

impl Tables {
    /// The runs the ticks of a schedule started.
    pub(super) fn runs_of(&self, schedule: &str) -> BTreeSet<&str> {
        self.ticks
            .range((schedule.to_string(), String::new())..)
            .take_while(|((s, _), _)| s == schedule)
            .filter_map(|(_, t)| t.run.as_deref())
            .collect()
    }
}

/// Which of two versions of a workflow is the later: deployed later, or at
/// the same time with the greater digest.
fn later(w: &WorkflowRow) -> (i64, &str) {
    (w.deployed_ms, w.digest.as_str())
}

impl ServiceStore for MemoryStore {
    async fn deploy(
        &self,
        workflow: &WorkflowRow,
        schedules: &[ScheduleRow],
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let t = &mut g.service;
        let key = (workflow.name.clone(), workflow.digest.clone());
        let latest = t
            .workflows
            .values()
            .filter(|w| w.name == workflow.name)
            .max_by(|a, b| later(a).cmp(&later(b)))
            .map(|w| w.digest.clone());
        let new = match t.workflows.get_mut(&key) {
            // The latest version again: nothing to change.
            Some(_) if latest.as_ref() == Some(&workflow.digest) => return Ok(false),
            // An older version again: a rollback, it becomes the latest.
            Some(stored) => {
                stored.deployed_ms = workflow.deployed_ms;
                stored.path.clone_from(&workflow.path);
                false
            }
            None => {
                t.workflows.insert(key, workflow.clone());
                true
            }
        };
        let kept: BTreeSet<&str> = schedules.iter().map(|s| s.id.as_str()).collect();
        t.schedules
            .retain(|id, s| s.workflow != workflow.name || kept.contains(id.as_str()));
        for s in schedules {
            let mut row = s.clone();
            if let Some(old) = t.schedules.get(&s.id) {
                row.paused = old.paused;
                row.created_ms = old.created_ms;
            }
            t.schedules.insert(s.id.clone(), row);
        }
        Ok(new)
    }

    async fn workflows(&self) -> Result<Vec<WorkflowRow>, StoreError> {
        let g = self.lock();
        let mut latest: BTreeMap<&str, &WorkflowRow> = BTreeMap::new();
        for w in g.service.workflows.values() {
            let e = latest.entry(w.name.as_str()).or_insert(w);
            if later(w) > later(e) {
                *e = w;
            }
        }
        Ok(latest.into_values().cloned().collect())
    }

    async fn workflow(
        &self,
        name: &str,
        digest: Option<&str>,
    ) -> Result<Option<WorkflowRow>, StoreError> {
        let g = self.lock();
        let w = &g.service.workflows;
        Ok(match digest {
            Some(d) => w.get(&(name.to_string(), d.to_string())).cloned(),
            None => w
                .values()
                .filter(|w| w.name == name)
                .max_by(|a, b| later(a).cmp(&later(b)))
                .cloned(),
        })
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        Ok(self.lock().service.schedules.values().cloned().collect())
    }

    async fn set_paused(&self, id: &str, paused: bool) -> Result<bool, StoreError> {
        let mut g = self.lock();
        match g.service.schedules.get_mut(id) {
            Some(s) => {
                s.paused = paused;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn record_tick(&self, tick: &TickRow) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let key = (tick.schedule.clone(), tick.tick.clone());
        if g.service.ticks.contains_key(&key) {
            return Ok(false);
        }
        g.service.ticks.insert(key, tick.clone());
        Ok(true)
    }

    async fn set_tick(
        &self,
        schedule: &str,
        tick: &str,
        outcome: &str,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        match g
            .service
            .ticks
            .get_mut(&(schedule.to_string(), tick.to_string()))
        {
            Some(t) => {
                t.outcome = outcome.to_string();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn ticks(&self, schedule: &str, limit: u32) -> Result<Vec<TickRow>, StoreError> {
        let g = self.lock();
        let mut v: Vec<TickRow> = g
            .service
            .ticks
            .values()
            .filter(|t| t.schedule == schedule)
            .cloned()
            .collect();
        v.sort_by(|a, b| (b.due_ms, &b.tick).cmp(&(a.due_ms, &a.tick)));
        v.truncate(limit as usize);
        Ok(v)
    }

    async fn latest_tick(
        &self,
        schedule: &str,
        outcome: &str,
    ) -> Result<Option<TickRow>, StoreError> {
        let g = self.lock();
        Ok(g.service
            .ticks
            .values()
            .filter(|t| t.schedule == schedule && t.outcome == outcome)
            .max_by(|a, b| (a.due_ms, &a.tick).cmp(&(b.due_ms, &b.tick)))
            .cloned())
    }

    async fn ticks_with(&self, outcome: &str) -> Result<Vec<TickRow>, StoreError> {
        let g = self.lock();
        let mut v: Vec<TickRow> = g
            .service
            .ticks
            .values()
            .filter(|t| t.outcome == outcome)
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.due_ms, &a.schedule, &a.tick).cmp(&(b.due_ms, &b.schedule, &b.tick)));
        Ok(v)
    }

    async fn create_token(&self, token: &TokenRow) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.service.tokens.contains_key(&token.id) {
            return Err(StoreError::TokenExists(token.id.clone()));
        }
        g.service.tokens.insert(token.id.clone(), token.clone());
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        Ok(self.lock().service.tokens.get(id).cloned())
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let g = self.lock();
        let mut v: Vec<TokenRow> = g
            .service
            .tokens
            .values()
            .filter(|t| !t.role.starts_with("run:"))
            .cloned()
            .collect();
        v.sort_by(|a, b| (b.created_ms, &b.id).cmp(&(a.created_ms, &a.id)));
        Ok(v)
    }

    async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut g = self.lock();
        match g.service.tokens.get_mut(id) {
            Some(t) if t.revoked_ms.is_none() => {
                t.revoked_ms = Some(now_ms);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
