//! Prometheus metrics (`GET /metrics`, text exposition format 0.0.4).
//!
//! Counters are atomics bumped where things happen (a submission, a tick)
//! or read off the runtime's stream of committed changes (steps started
//! and finished, runs finished); gauges are read when scraped.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use kaon_runtime::Change;
use kaon_store::row::{NodeKind, NodeState};

/// Upper bounds (seconds) of the scheduling latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// What the server counts.
#[derive(Default)]
pub(crate) struct Metrics {
    submitted: AtomicU64,
    ticks_fired: AtomicU64,
    ticks_skipped: AtomicU64,
    steps_started: AtomicU64,
    steps_finished: Mutex<HashMap<&'static str, u64>>,
    runs_finished: Mutex<HashMap<&'static str, u64>>,
    latency: [AtomicU64; 9],
    latency_count: AtomicU64,
    latency_sum_ms: AtomicU64,
    /// Last seen state and attempt of each executed node of runs not yet
    /// finished, to tell a start from a repeat of the same state.
    seen: Mutex<HashMap<(String, u32), (NodeState, u32)>>,
}

impl Metrics {
    /// A run was submitted through the API.
    pub fn submitted(&self) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
    }

    /// A schedule fired a tick `late_ms` after it was due.
    pub fn fired(&self, late_ms: i64) {
        self.ticks_fired.fetch_add(1, Ordering::Relaxed);
        let secs = late_ms.max(0) as f64 / 1000.0;
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.latency[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ms
            .fetch_add(late_ms.max(0) as u64, Ordering::Relaxed);
    }

    /// A schedule skipped a tick.
    pub fn skipped(&self) {
        self.ticks_skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts what a committed change says.
    pub fn observe(&self, change: &Change) {
        match change {
            Change::Nodes { run, nodes, .. } => {
                let Ok(mut seen) = self.seen.lock() else {
                    return;
                };
                for n in nodes.iter() {
                    let row = kaon_runtime::rows::node_row(n);
                    if !NodeKind::is_executed(row.kind) {
                        continue;
                    }
                    let key = (run.clone(), row.id);
                    let before = seen.insert(key, (row.state, row.attempt));
                    let started = row.state.is_active()
                        && before.is_none_or(|(s, a)| !s.is_active() || a != row.attempt);
                    if started {
                        self.steps_started.fetch_add(1, Ordering::Relaxed);
                    }
                    if row.state.is_terminal() && before.is_none_or(|(s, _)| !s.is_terminal()) {
                        bump(&self.steps_finished, row.state.as_str());
                    }
                }
            }
            Change::RunFinished { run, status, .. } => {
                if let Ok(mut seen) = self.seen.lock() {
                    seen.retain(|(r, _), _| r != run);
                }
                bump(
                    &self.runs_finished,
                    kaon_runtime::rows::store_status(*status).as_str(),
                );
            }
            // A run let go of (to another server, or at shutdown) is
            // not seen again here: nothing of it is kept.
            Change::Released { run } => {
                if let Ok(mut seen) = self.seen.lock() {
                    seen.retain(|(r, _), _| r != run);
                }
            }
            Change::RunCreated { .. } => {}
        }
    }

    /// The exposition: these counters, `running` (runs in the running
    /// state, all servers) and the store's commit times.
    pub fn render(
        &self,
        running: usize,
        commits: &kaon_store::CommitTimes,
        backend: &str,
    ) -> String {
        let mut o = String::new();
        let c = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        c(
            &mut o,
            "kaon_runs_submitted_total",
            "Runs submitted through the API.",
            self.submitted.load(Ordering::Relaxed),
        );
        c(
            &mut o,
            "kaon_schedule_ticks_fired_total",
            "Schedule and trigger ticks whose run this server started.",
            self.ticks_fired.load(Ordering::Relaxed),
        );
        c(
            &mut o,
            "kaon_schedule_ticks_skipped_total",
            "Schedule ticks skipped (missed, or a run of the schedule was running).",
            self.ticks_skipped.load(Ordering::Relaxed),
        );
        c(
            &mut o,
            "kaon_steps_started_total",
            "Step attempts started by this server.",
            self.steps_started.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            o,
            "# HELP kaon_steps_finished_total Steps that reached an end state, by state.\n# TYPE kaon_steps_finished_total counter"
        );
        for (state, n) in sorted(&self.steps_finished) {
            let _ = writeln!(o, "kaon_steps_finished_total{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP kaon_runs_finished_total Runs that ended on this server, by status.\n# TYPE kaon_runs_finished_total counter"
        );
        for (status, n) in sorted(&self.runs_finished) {
            let _ = writeln!(o, "kaon_runs_finished_total{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP kaon_runs Runs by state in the store (running: every server's).\n# TYPE kaon_runs gauge\nkaon_runs{{state=\"running\"}} {running}"
        );
        let _ = writeln!(
            o,
            "# HELP kaon_schedule_latency_seconds Time from a tick's due time to its run's start.\n# TYPE kaon_schedule_latency_seconds histogram"
        );
        let mut acc = 0;
        for (b, n) in LATENCY_BUCKETS.iter().zip(&self.latency) {
            acc += n.load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "kaon_schedule_latency_seconds_bucket{{le=\"{b}\"}} {acc}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "kaon_schedule_latency_seconds_bucket{{le=\"+Inf\"}} {count}\nkaon_schedule_latency_seconds_sum {}\nkaon_schedule_latency_seconds_count {count}",
            self.latency_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        let (buckets, count, sum) = commits.snapshot();
        let _ = writeln!(
            o,
            "# HELP kaon_store_commit_seconds Time of one state store transaction (one scheduling turn of every run).\n# TYPE kaon_store_commit_seconds histogram"
        );
        for (b, n) in buckets {
            let _ = writeln!(
                o,
                "kaon_store_commit_seconds_bucket{{backend=\"{backend}\",le=\"{b}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "kaon_store_commit_seconds_bucket{{backend=\"{backend}\",le=\"+Inf\"}} {count}\nkaon_store_commit_seconds_sum{{backend=\"{backend}\"}} {sum}\nkaon_store_commit_seconds_count{{backend=\"{backend}\"}} {count}"
        );
        o
    }
}

fn bump(m: &Mutex<HashMap<&'static str, u64>>, key: &'static str) {
    if let Ok(mut m) = m.lock() {
        *m.entry(key).or_default() += 1;
    }
}

fn sorted(m: &Mutex<HashMap<&'static str, u64>>) -> Vec<(&'static str, u64)> {
    let mut v: Vec<_> = m
        .lock()
        .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
        .unwrap_or_default();
    v.sort();
    v
}
