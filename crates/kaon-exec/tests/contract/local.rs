//! The local process executor as a contract subject, and what only it
//! promises: SIGKILL for what outlives SIGTERM.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kaon_engine::event::Invocation;
use kaon_engine::{Exit, LaunchOrder};
use kaon_exec::{ExecEvent, Executor, Handle, LocalExecutor};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::common::{order, output, run_id};
use crate::suite::{Inbox, Job, Subject};

/// Between SIGTERM and SIGKILL: long enough to tell from no wait at all.
const GRACE: Duration = Duration::from_millis(700);

pub struct Local {
    dir: tempfile::TempDir,
    run: String,
}

impl Local {
    pub fn new() -> Option<Local> {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::create_dir(dir.path().join("work")).expect("a working folder");
        Some(Local {
            dir,
            run: run_id("local"),
        })
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn script(&self, node: u32, step: &str, script: &str) -> LaunchOrder {
        let invocation = Invocation::Script {
            script: format!("echo launched >> launches-{step}.log\n{script}"),
        };
        order(&self.run, node, step, invocation, &self.work(), Vec::new())
    }
}

impl Subject for Local {
    type Exec = LocalExecutor;
    const NAME: &'static str = "local";

    fn executor(&self, tx: UnboundedSender<ExecEvent>) -> LocalExecutor {
        LocalExecutor::new(
            self.dir.path().join("attempts"),
            tx,
            Duration::from_millis(50),
            GRACE,
        )
    }

    fn broken_executor(&self, tx: UnboundedSender<ExecEvent>) -> LocalExecutor {
        // Its attempts' folder would have to be made inside a file.
        let file = self.dir.path().join("not-a-folder");
        std::fs::write(&file, "").expect("a file");
        LocalExecutor::new(file, tx, Duration::from_millis(50), GRACE)
    }

    fn order(&self, job: Job) -> LaunchOrder {
        let w = self.work();
        match job {
            Job::Succeed => LaunchOrder {
                outputs: vec![
                    output("answer", "int", &w, None),
                    output("report", "file", &w, Some("report.txt")),
                ],
                ..self.script(
                    0,
                    "succeed",
                    "echo '::kaon::progress 50 half way'\necho '::kaon::output answer=42'\necho hi > report.txt",
                )
            },
            Job::Fail => self.script(1, "fail", "echo failing >&2; exit 3"),
            Job::Hang => self.script(2, "hang", "sleep 60"),
            Job::Unlaunchable => order(
                &self.run,
                3,
                "unlaunchable",
                Invocation::Argv {
                    argv: vec!["kaon-contract-no-such-program".into()],
                },
                &w,
                Vec::new(),
            ),
        }
    }

    fn outputs(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("answer".into(), json!(42));
        let report = self.work().join("report.txt");
        m.insert("report".into(), json!(report.display().to_string()));
        m
    }

    fn launches(&self, order: &LaunchOrder) -> Option<usize> {
        let log = self.work().join(format!("launches-{}.log", order.step));
        Some(
            std::fs::read_to_string(log)
                .map(|t| t.lines().count())
                .unwrap_or(0),
        )
    }

    fn unknown_handle(&self) -> Handle {
        // The process of an attempt that never wrote an exit status.
        Handle::Process { pid: 0, start: 0 }
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(20)
    }

    fn settle(&self) -> Duration {
        Duration::from_millis(500)
    }
}

/// A step that ignores SIGTERM is ended with SIGKILL after the grace
/// period, and its exit is reported only once it is gone.
pub async fn kill_escalates_to_sigkill() {
    let s = Local::new().expect("local");
    let (tx, mut inbox) = Inbox::new();
    let exec = s.executor(tx);
    let order = s.script(
        4,
        "stubborn",
        "trap '' TERM\necho $$ > stubborn.pid\nwhile :; do sleep 0.05; done",
    );
    let handle = exec.start(&order).expect("launched");
    let pid_file = s.work().join("stubborn.pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the step never wrote its pid");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let start = kaon_exec::process_start(pid).expect("the step runs");
    let killed = Instant::now();
    exec.kill(&handle);
    let e = inbox.exit(&order, s.patience()).await;
    assert!(matches!(e.exit, Exit::Signal { .. }), "{e:?}");
    assert!(
        killed.elapsed() >= GRACE,
        "SIGTERM was ignored, so the end waits for the grace period: {:?}",
        killed.elapsed()
    );
    assert!(
        !kaon_exec::process_alive(pid, start),
        "the process that ignored SIGTERM is gone when its exit is reported"
    );
    inbox.no_more_exits(&order, s.settle()).await;
}

crate::contract_tests!(Local::new());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_escalates_to_sigkill_after_the_grace_period() {
    kill_escalates_to_sigkill().await;
}
