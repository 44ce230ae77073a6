//! The in-memory twin as a contract subject: its scripts stand for what
//! the local subject's shell scripts do.

use std::time::Duration;

use kaon_engine::LaunchOrder;
use kaon_engine::event::Invocation;
use kaon_exec::memory::{MemoryExecutor, Script};
use kaon_exec::{ExecEvent, Handle};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::common::{order, output, run_id};
use crate::suite::{Job, Subject};

pub struct Twin {
    /// The machine: every executor is made from it.
    first: MemoryExecutor,
    run: String,
    work: tempfile::TempDir,
}

impl Twin {
    pub fn new() -> Option<Twin> {
        // The twin's own channel is never read: the suite's instances
        // come from `restarted`.
        let (tx, _) = tokio::sync::mpsc::unbounded_channel();
        let first = MemoryExecutor::new(tx).with_delay(Duration::from_millis(20));
        first.script(
            "succeed",
            Script::succeed()
                .output("answer", 42)
                .file("report", "hi\n")
                .progress(Some(50.0), Some("half way")),
        );
        first.script("fail", Script::exit(3));
        first.script("hang", Script::hang());
        Some(Twin {
            first,
            run: run_id("twin"),
            work: tempfile::tempdir().expect("a temporary folder"),
        })
    }
}

impl Subject for Twin {
    type Exec = MemoryExecutor;
    const NAME: &'static str = "in-memory";

    fn executor(&self, tx: UnboundedSender<ExecEvent>) -> MemoryExecutor {
        self.first.restarted(tx)
    }

    fn broken_executor(&self, tx: UnboundedSender<ExecEvent>) -> MemoryExecutor {
        let (first, _) = tokio::sync::mpsc::unbounded_channel();
        let broken = MemoryExecutor::new(first).restarted(tx);
        broken.script(
            "succeed",
            Script::platform_failure("no space left on device"),
        );
        broken
    }

    fn order(&self, job: Job) -> LaunchOrder {
        let w = self.work.path();
        let (node, step) = match job {
            Job::Succeed => (0, "succeed"),
            Job::Fail => (1, "fail"),
            Job::Hang => (2, "hang"),
            Job::Unlaunchable => (3, "unlaunchable"),
        };
        let outputs = match job {
            Job::Succeed => vec![
                output("answer", "int", w, None),
                output("report", "file", w, Some("report.txt")),
            ],
            _ => Vec::new(),
        };
        let invocation = match job {
            // Refused as the local executor refuses it.
            Job::Unlaunchable => Invocation::Unsupported {
                kind: "teleport".into(),
            },
            _ => Invocation::Argv {
                argv: vec![step.to_string()],
            },
        };
        order(&self.run, node, step, invocation, w, outputs)
    }

    fn outputs(&self) -> Map<String, Value> {
        let report = self.work.path().join("report.txt");
        let mut m = Map::new();
        m.insert("answer".into(), json!(42));
        m.insert("report".into(), json!(report.display().to_string()));
        m
    }

    fn launches(&self, order: &LaunchOrder) -> Option<usize> {
        let same = |o: &LaunchOrder| {
            (&o.run, o.node, o.attempt) == (&order.run, order.node, order.attempt)
        };
        Some(self.first.launched().iter().filter(|o| same(o)).count())
    }

    fn unknown_handle(&self) -> Handle {
        Handle::Memory { id: u64::MAX }
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn settle(&self) -> Duration {
        Duration::from_millis(100)
    }
}

crate::contract_tests!(Twin::new());
