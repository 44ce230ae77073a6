//! One loop for every run, or one loop per run? `cargo bench -p
//! kaon-runtime --bench runtime` drives the same runs both ways, with the
//! in-memory executor twin (so only kaon's own cost is measured), on the
//! memory store and on SQLite on disk, and prints a table.
//!
//! `KAON_BENCH_RUNS=200` sets the number of runs (default 200, each a
//! chain of 2 steps around a for-each of 8: 10 steps).
#![allow(clippy::unwrap_used, missing_docs)] // a benchmark that cannot proceed should stop

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaon_engine::{RunOptions, RunStatus};
use kaon_exec::memory::MemoryExecutor;
use kaon_model::Validated;
use kaon_runtime::{Capacity, NewRun, Quiet, RunId, Runner, RuntimeOptions, Sealer};
use kaon_store::{ArtifactIndex, Durability, MemoryStore, SqliteStore, StateStore};
use serde_json::Map;

const WF: &str = r#"
[workflow]
name = "bench"
flow = "a -> **(i = items) --< (b) >-- -> c"

[params]
items = { type = "list<int>", default = [1, 2, 3, 4, 5, 6, 7, 8] }

[steps.a]
kind = "command"
command = ["a"]
cpus = 0.01

[steps.b]
kind = "command"
command = ["b", "${i}"]
cpus = 0.01

[steps.c]
kind = "command"
command = ["c"]
cpus = 0.01
"#;

fn options(owner: &str) -> RuntimeOptions {
    RuntimeOptions {
        capacity: Capacity {
            cpus: 10_000.0,
            memory: 1 << 40,
        },
        inbox_every: Duration::from_millis(200),
        sealer: Sealer::with_key([1; 32]),
        owner: owner.into(),
    }
}

fn run(k: usize, tag: &str, v: &Arc<Validated>) -> NewRun {
    let params = kaon_engine::eval::bind_params(&v.workflow.params, &Map::new()).unwrap();
    NewRun {
        id: RunId::parse(&format!("{tag}-{k}")).unwrap(),
        validated: v.clone(),
        params,
        options: RunOptions::default(),
        observer: Box::new(Quiet),
    }
}

/// All runs through one runner: returns seconds.
async fn one_loop<S: StateStore + ArtifactIndex + 'static>(
    store: Arc<S>,
    v: &Arc<Validated>,
    n: usize,
    tag: &str,
) -> f64 {
    let start = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exec = Arc::new(MemoryExecutor::new(tx));
    let runner = Runner::start(store, exec, rx, None, options("bench"));
    let mut hs = Vec::new();
    for k in 0..n {
        hs.push(runner.submit(run(k, tag, v)).await.unwrap());
    }
    for h in hs {
        assert_eq!(h.finished().await.unwrap(), Some(RunStatus::Succeeded));
    }
    runner.shutdown().await.unwrap();
    start.elapsed().as_secs_f64()
}

/// One runner (one loop) per run, all at once: returns seconds.
async fn loop_per_run<S: StateStore + ArtifactIndex + 'static>(
    store: Arc<S>,
    v: &Arc<Validated>,
    n: usize,
    tag: &str,
) -> f64 {
    let start = Instant::now();
    let mut runners = Vec::new();
    for k in 0..n {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let exec = Arc::new(MemoryExecutor::new(tx));
        let runner = Runner::start(store.clone(), exec, rx, None, options("bench"));
        let h = runner.submit(run(k, tag, v)).await.unwrap();
        runners.push((runner, h));
    }
    for (runner, h) in runners {
        assert_eq!(h.finished().await.unwrap(), Some(RunStatus::Succeeded));
        runner.shutdown().await.unwrap();
    }
    start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` and nextest's
    // listing run it without, and must stay quick and quiet.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("KAON_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wf.toml");
    std::fs::write(&path, WF).unwrap();
    let v = Arc::new(kaon_model::load_str(Path::new(&path), WF).result.unwrap());
    let steps = n * 10;
    println!("| store | how | runs | steps | wall | steps/s |");
    println!("|---|---|---:|---:|---:|---:|");
    let row = |store: &str, how: &str, secs: f64| {
        println!(
            "| {store} | {how} | {n} | {steps} | {secs:.2}s | {:.0} |",
            steps as f64 / secs
        );
    };
    rt.block_on(async {
        let s = one_loop(Arc::new(MemoryStore::new()), &v, n, "m1").await;
        row("memory", "one loop for all runs", s);
        let s = loop_per_run(Arc::new(MemoryStore::new()), &v, n, "mp").await;
        row("memory", "one loop per run", s);
        let db = dir.path().join("one.db");
        let store = Arc::new(SqliteStore::open(&db, Durability::Full).await.unwrap());
        let s = one_loop(store, &v, n, "s1").await;
        row("sqlite (full)", "one loop for all runs", s);
        let db = dir.path().join("per.db");
        let store = Arc::new(SqliteStore::open(&db, Durability::Full).await.unwrap());
        let s = loop_per_run(store, &v, n, "sp").await;
        row("sqlite (full)", "one loop per run", s);
    });
}
