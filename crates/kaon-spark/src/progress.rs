//! Spark progress from the listener's events or the driver's monitoring
//! REST API, folded into one snapshot per attempt.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::SparkError;

/// Where an application stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SparkProgress {
    /// The application id.
    pub app_id: Option<String>,
    /// The driver's UI.
    pub ui_url: Option<String>,
    /// Jobs running.
    pub jobs_active: u64,
    /// Stages finished.
    pub stages_done: u64,
    /// Stages known (of the jobs seen so far).
    pub stages_total: u64,
    /// Tasks finished.
    pub tasks_done: u64,
    /// Tasks of the stages submitted so far.
    pub tasks_total: u64,
    /// The last failed job's or stage's reason.
    pub last_error: Option<String>,
}

impl SparkProgress {
    /// Percent of known tasks done (it can fall as new stages appear).
    pub fn percent(&self) -> Option<f32> {
        (self.tasks_total > 0).then(|| {
            (self.tasks_done.min(self.tasks_total) as f32 * 100.0) / self.tasks_total as f32
        })
    }

    /// `stage 2/5 · tasks 120/400` for the terminal and `kaon runs show`.
    pub fn message(&self) -> String {
        let mut m = format!(
            "stage {}/{} · tasks {}/{}",
            self.stages_done.min(self.stages_total),
            self.stages_total,
            self.tasks_done.min(self.tasks_total),
            self.tasks_total
        );
        if let Some(app) = &self.app_id {
            m.push_str(" · ");
            m.push_str(app);
        }
        m
    }

    /// Takes what polling the driver's UI found (see [`Monitor::poll`]).
    /// The polled snapshot replaces this one; a job failure the listener
    /// reported is kept when the UI names none. Returns true when the
    /// counts moved.
    pub fn take_polled(&mut self, polled: SparkProgress) -> bool {
        let changed = self.stages_done != polled.stages_done
            || self.tasks_done != polled.tasks_done
            || self.stages_total != polled.stages_total;
        let last_error = self.last_error.take();
        *self = SparkProgress {
            last_error: polled.last_error.clone().or(last_error),
            ..polled
        };
        changed
    }

    /// Folds one listener event in. Returns true when the snapshot
    /// changed in a way worth showing.
    pub fn apply(&mut self, ev: &Value) -> bool {
        let n = |k: &str| ev[k].as_u64();
        let s = |k: &str| ev[k].as_str().map(str::to_string);
        match ev["type"].as_str().unwrap_or("") {
            "application_start" => {
                self.app_id = s("app_id").or(self.app_id.take());
                true
            }
            "progress" => {
                self.jobs_active = n("jobs_active").unwrap_or(self.jobs_active);
                self.stages_done = n("stages_done").unwrap_or(self.stages_done);
                self.stages_total = n("stages_total").unwrap_or(self.stages_total);
                self.tasks_done = n("tasks_done").unwrap_or(self.tasks_done);
                self.tasks_total = n("tasks_total").unwrap_or(self.tasks_total);
                if let Some(u) = s("ui_url") {
                    self.ui_url = Some(u);
                }
                if let Some(a) = s("app_id") {
                    self.app_id = Some(a);
                }
                true
            }
            // Between snapshots (none comes while no task has finished),
            // the boundaries move the counts; the next snapshot corrects them.
            "job_start" => {
                self.jobs_active += 1;
                self.stages_total += n("stages").unwrap_or(0);
                true
            }
            "stage_submitted" => {
                self.tasks_total += n("tasks").unwrap_or(0);
                true
            }
            "job_end" if ev["succeeded"] == Value::Bool(false) => {
                self.last_error = s("message").or(self.last_error.take());
                false
            }
            "stage_completed" if ev["failed"] == Value::Bool(true) => {
                if self.last_error.is_none() {
                    self.last_error = s("message");
                }
                false
            }
            _ => false,
        }
    }
}

/// Polls a driver's monitoring REST API (`<ui>/api/v1/applications/..`):
/// the fallback when no listener events arrive.
#[derive(Clone, Copy, Debug, Default)]
pub struct Monitor;

impl Monitor {
    async fn get(&self, url: &str) -> Result<Value, SparkError> {
        crate::rest::get_json(url).await
    }

    /// The progress of the (first) application behind the UI at `ui`.
    pub async fn poll(&self, ui: &str) -> Result<SparkProgress, SparkError> {
        let base = format!("{}/api/v1/applications", ui.trim_end_matches('/'));
        let apps = self.get(&base).await?;
        let Some(app) = apps[0]["id"].as_str() else {
            return Ok(SparkProgress::default());
        };
        let jobs = self.get(&format!("{base}/{app}/jobs")).await?;
        let stages = self.get(&format!("{base}/{app}/stages")).await?;
        let mut p = SparkProgress {
            app_id: Some(app.to_string()),
            ui_url: Some(ui.to_string()),
            ..SparkProgress::default()
        };
        for j in jobs.as_array().into_iter().flatten() {
            if j["status"] == "RUNNING" {
                p.jobs_active += 1;
            }
            if j["status"] == "FAILED" && p.last_error.is_none() {
                p.last_error = j["name"].as_str().map(|n| format!("job failed: {n}"));
            }
        }
        for s in stages.as_array().into_iter().flatten() {
            // Stages the scheduler skipped (their output was reused) never run.
            if s["status"] == "SKIPPED" {
                continue;
            }
            p.stages_total += 1;
            if s["status"] == "COMPLETE" {
                p.stages_done += 1;
            }
            // Note the spelling: jobs say numCompletedTasks, stages numCompleteTasks.
            p.tasks_done += s["numCompleteTasks"].as_u64().unwrap_or(0);
            p.tasks_total += s["numTasks"].as_u64().unwrap_or(0);
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_fold_into_a_snapshot() {
        let mut p = SparkProgress::default();
        assert!(p.apply(&json!({"type":"application_start","app_id":"app-1"})));
        assert!(p.apply(&json!({"type":"progress","jobs_active":1,"stages_done":1,"stages_total":3,"tasks_done":10,"tasks_total":40})));
        assert_eq!(p.message(), "stage 1/3 · tasks 10/40 · app-1");
        assert_eq!(p.percent(), Some(25.0));
        assert!(!p.apply(&json!({"type":"job_end","succeeded":false,"message":"boom"})));
        assert_eq!(p.last_error.as_deref(), Some("boom"));
        assert!(!p.apply(&json!({"type":"whatever"})));
        assert!(p.apply(&json!({"type":"job_start","stages":2})));
        assert!(p.apply(&json!({"type":"stage_submitted","tasks":8})));
        assert_eq!(p.message(), "stage 1/5 · tasks 10/48 · app-1");
    }
}
