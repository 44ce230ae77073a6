//! The Spark executor as a contract subject: client mode on `local[1]`,
//! a SQL step run by kaon's SQL runner, on a kaon-managed Spark 3.5.
//!
//! A Spark runtime is required: without one the cases fail and say how to
//! install it, unless `KAON_TEST_SKIP_SPARK=1` explicitly opts out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kaon_engine::LaunchOrder;
use kaon_engine::event::Invocation;
use kaon_exec::{ExecEvent, Handle, SparkExecutor};
use kaon_model::spec::RenderedSparkStep;
use kaon_spark::{Registry, SparkSettings};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::common::{order, output, run_id};
use crate::suite::{Job, Subject};

/// The Spark version the cases run on (what `.ci/run` installs).
const VERSION: &str = "3.5";

/// The explicit opt-out.
const SKIP: &str = "KAON_TEST_SKIP_SPARK";

/// One Spark case at a time: each starts a JVM, and the machine they run
/// on may have two cores for everything.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Spark {
    dir: tempfile::TempDir,
    run: String,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// Why Spark cases cannot run here, if they cannot.
fn missing() -> Option<String> {
    let java = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("java").is_file()));
    if !java {
        return Some("Java 17 (`java`) is not on PATH".into());
    }
    let reg = Registry::discover(&SparkSettings::default());
    match reg.resolve(Some(VERSION)) {
        Ok(_) => None,
        Err(e) => Some(format!(
            "no Spark {VERSION} runtime: {e} (looked in {} and $SPARK_HOME)",
            reg.install_dir.display()
        )),
    }
}

impl Spark {
    /// The subject, or `None` when Spark is missing and the run opted out.
    pub async fn new() -> Option<Spark> {
        if let Some(why) = missing() {
            if std::env::var(SKIP).is_ok_and(|v| v == "1") {
                eprintln!("Spark contract case skipped ({SKIP}=1): {why}");
                return None;
            }
            panic!(
                "the Spark executor's contract cases need a Spark runtime: {why}.\n\
                 Install one with `cargo run -- spark install {VERSION}` (`.ci/run` does; \
                 runtimes go to $KAON_SPARK_DIR, default ~/.local/share/kaon/spark), \
                 or set {SKIP}=1 to skip these cases knowingly."
            );
        }
        let turn = ONE_AT_A_TIME.lock().await;
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::create_dir(dir.path().join("work")).expect("a working folder");
        Some(Spark {
            dir,
            run: run_id("spark"),
            _turn: turn,
        })
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn make(&self, root: PathBuf, tx: UnboundedSender<ExecEvent>) -> SparkExecutor {
        SparkExecutor::new(
            root,
            tx,
            Duration::from_millis(200),
            Duration::from_secs(3),
            SparkSettings::default(),
            None,
            None,
        )
    }
}

fn sql_step(version: &str, sql: &str) -> RenderedSparkStep {
    let conf: BTreeMap<String, String> = [
        ("spark.ui.enabled", "false"),
        ("spark.ui.showConsoleProgress", "false"),
        ("spark.driver.memory", "512m"),
        ("spark.sql.shuffle.partitions", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    RenderedSparkStep {
        version: Some(version.into()),
        sql: Some(sql.into()),
        master: Some("local[1]".into()),
        conf,
        ..RenderedSparkStep::default()
    }
}

impl Subject for Spark {
    type Exec = SparkExecutor;
    const NAME: &'static str = "spark";

    fn executor(&self, tx: UnboundedSender<ExecEvent>) -> SparkExecutor {
        self.make(self.dir.path().join("attempts"), tx)
    }

    fn broken_executor(&self, tx: UnboundedSender<ExecEvent>) -> SparkExecutor {
        let file = self.dir.path().join("not-a-folder");
        std::fs::write(&file, "").expect("a file");
        self.make(file, tx)
    }

    fn order(&self, j: Job) -> LaunchOrder {
        let w = self.work();
        let (node, step, sql, version) = match j {
            Job::Succeed => (0, "succeed", "SELECT 42 AS answer", VERSION),
            Job::Fail => (
                1,
                "fail",
                "SELECT * FROM kaon_contract_no_such_table",
                VERSION,
            ),
            // Days of work for one core: it runs until killed.
            Job::Hang => (
                2,
                "hang",
                "SELECT sum(id % 7) FROM range(1000000000000000)",
                VERSION,
            ),
            // No such runtime.
            Job::Unlaunchable => (3, "unlaunchable", "SELECT 1", "1.0"),
        };
        let outputs = match j {
            Job::Succeed => vec![
                output("rows", "int", &w, None),
                output("table", "dir", &w, Some("table")),
            ],
            _ => Vec::new(),
        };
        let invocation = Invocation::Spark {
            step: Box::new(sql_step(version, sql)),
            constraints: None,
        };
        LaunchOrder {
            env: vec![("SPARK_LOCAL_IP".into(), "127.0.0.1".into())],
            ..order(&self.run, node, step, invocation, &w, outputs)
        }
    }

    fn outputs(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("rows".into(), json!(1));
        let table = self.work().join("table");
        m.insert("table".into(), json!(table.display().to_string()));
        m
    }

    fn launches(&self, _: &LaunchOrder) -> Option<usize> {
        // A SQL step leaves no trace of its own to count; the handles'
        // identity (the same spark-submit process) tells adoption instead.
        None
    }

    fn unknown_handle(&self) -> Handle {
        Handle::SparkClient {
            pid: 0,
            start: 0,
            ui: None,
        }
    }

    fn identity(&self, handle: &Handle) -> Handle {
        // The spark-submit process; its UI port is picked at each launch.
        match handle.process() {
            Some((pid, start)) => Handle::Process { pid, start },
            None => handle.clone(),
        }
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(180)
    }

    fn settle(&self) -> Duration {
        Duration::from_secs(1)
    }
}

crate::contract_tests!(Spark::new().await);
