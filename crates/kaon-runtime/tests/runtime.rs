//! The runtime driving many runs in one process: the in-memory executor
//! twin and the memory store (no processes, no database), plus a local
//! artifact folder where memoization is under test.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kaon_engine::{RunOptions, RunStatus};
use kaon_exec::memory::{MemoryExecutor, Script};
use kaon_model::Validated;
use kaon_runtime::{Capacity, Change, NewRun, Quiet, RunId, Runner, RuntimeOptions, Sealer};
use kaon_store::row::{self, NodeKind, NodeState};
use kaon_store::{MemoryStore, RunFilter, StateStore};
use serde_json::{Map, Value, json};

const SMALL: &str = r#"
[workflow]
name = "small"
flow = "a -> **(i = items) --< (b) >-- -> c"

[workflow.outputs]
summary = "n=${params.n} x=${a.x} total=${c.total}"

[params]
n = { type = "int" }
items = { type = "list<int>" }

[steps.a]
kind = "command"
command = ["prep", "${params.n}"]
outputs = { x = "int" }

[steps.b]
kind = "command"
command = ["work", "${i}", "${a.x}"]
outputs = { y = "string" }

[steps.c]
kind = "command"
command = ["sum", "${params.n}"]
outputs = { total = "int" }
"#;

fn workflow(dir: &Path, text: &str) -> Arc<Validated> {
    let path = dir.join("wf.toml");
    std::fs::write(&path, text).unwrap();
    let loaded = kaon_model::load_str(&path, text);
    let problems: Vec<String> = loaded
        .diagnostics
        .iter()
        .map(|d| format!("{d:?}"))
        .collect();
    Arc::new(loaded.result.unwrap_or_else(|| panic!("{problems:?}")))
}

fn options(capacity: f64) -> RuntimeOptions {
    RuntimeOptions {
        capacity: Capacity {
            cpus: capacity,
            memory: 64 << 30,
        },
        inbox_every: Duration::from_millis(50),
        sealer: Sealer::with_key([7; 32]),
        owner: "test-owner".into(),
    }
}

/// A new run of `v` with `given` parameters (defaults filled in), watched
/// by nobody.
fn new_run(id: RunId, v: &Arc<Validated>, given: Value) -> NewRun {
    NewRun {
        id,
        validated: v.clone(),
        params: params(v, given),
        options: RunOptions::default(),
        observer: Box::new(Quiet),
    }
}

fn params(v: &Validated, given: Value) -> Map<String, Value> {
    let Value::Object(given) = given else {
        unreachable!()
    };
    kaon_engine::eval::bind_params(&v.workflow.params, &given).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_runs_at_once_all_succeed_with_their_own_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let v = workflow(dir.path(), SMALL);
    let store = Arc::new(MemoryStore::new());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exec = MemoryExecutor::new(tx).with_delay(Duration::from_millis(5));
    exec.script("a", Script::succeed().output("x", 41));
    exec.script("c", Script::succeed().output("total", 5));
    let exec = Arc::new(exec);
    let runner = Runner::start(store.clone(), exec.clone(), rx, None, options(8.0));
    let mut changes = runner.subscribe();

    let mut handles = Vec::new();
    for k in 0..50 {
        let items: Vec<i64> = (0..(k % 7 + 1)).collect();
        let handle = runner
            .submit(new_run(
                RunId::new_root(),
                &v,
                json!({ "n": k, "items": items }),
            ))
            .await
            .unwrap();
        handles.push((k, handle));
    }
    let mut ids = Vec::new();
    for (k, h) in handles {
        let id = h.id.clone();
        let status = tokio::time::timeout(Duration::from_secs(60), h.finished())
            .await
            .expect("every run ends within a minute")
            .unwrap();
        assert_eq!(status, Some(RunStatus::Succeeded), "run {id}");
        ids.push((k, id));
    }
    for (k, id) in &ids {
        let row = store.run(id.as_str()).await.unwrap().unwrap();
        assert_eq!(row.status, row::RunStatus::Succeeded, "{id}");
        let data: Value = serde_json::from_str(&row.data).unwrap();
        assert_eq!(
            data["outputs"]["summary"],
            json!(format!("n={k} x=41 total=5")),
            "run {id}: {data}"
        );
        let nodes = store.nodes(id.as_str()).await.unwrap();
        let b_done = nodes
            .iter()
            .filter(|n| n.name == "b" && n.state == NodeState::Succeeded)
            .count();
        assert_eq!(b_done as i64, k % 7 + 1, "run {id}: one b per item");
        // The owner let go of every run it finished.
        assert_eq!(row.owner, None, "{id}");
    }
    // 50 runs: a and c once each, b once per item; nothing twice.
    let expected: i64 = (0..50).map(|k| 2 + (k % 7 + 1)).sum();
    assert_eq!(exec.launched().len() as i64, expected);
    // Subscribers saw every run end.
    let mut ended = 0;
    while let Ok(c) = changes.try_recv() {
        if let Change::RunFinished { run, root, status } = c
            && run == root
        {
            assert_eq!(status, RunStatus::Succeeded);
            ended += 1;
        }
    }
    assert_eq!(ended, 50);
    runner.shutdown().await.unwrap();
    let listed = store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_is_shared_by_all_runs() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[workflow]
name = "wide"
flow = "**(i = items) --< (t) >--"

[params]
items = { type = "list<int>", default = [1, 2, 3, 4, 5, 6] }

[steps.t]
kind = "command"
command = ["t", "${i}"]
cpus = 1
"#;
    let v = workflow(dir.path(), text);
    let store = Arc::new(MemoryStore::new());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exec = Arc::new(MemoryExecutor::new(tx));
    exec.script("t", Script::hang());
    let runner = Runner::start(store.clone(), exec.clone(), rx, None, options(3.0));
    let mut hs = Vec::new();
    for k in 0..4 {
        hs.push(
            runner
                .submit(new_run(
                    RunId::parse(&format!("wide-{k}")).unwrap(),
                    &v,
                    json!({}),
                ))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Three cores for 24 ready steps of four runs: three run, not twelve.
    assert_eq!(exec.running().len(), 3);
    for h in &hs {
        runner.cancel(&h.id, "test over").await.unwrap();
    }
    for h in hs {
        let status = tokio::time::timeout(Duration::from_secs(30), h.finished())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status, Some(RunStatus::Cancelled));
    }
    assert!(exec.running().is_empty(), "cancel killed every attempt");
    runner.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_from_callers_reach_a_waiting_step() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[workflow]
name = "gate"
flow = "a -> approve -> b"

[steps.a]
kind = "command"
command = ["a"]

[steps.approve]
kind = "wait"
signal = "go"

[steps.b]
kind = "command"
command = ["b"]
"#;
    let v = workflow(dir.path(), text);
    let store = Arc::new(MemoryStore::new());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exec = Arc::new(MemoryExecutor::new(tx));
    let runner = Runner::start(store.clone(), exec.clone(), rx, None, options(2.0));
    let h = runner
        .submit(new_run(RunId::parse("gate-1").unwrap(), &v, json!({})))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let nodes = store.nodes("gate-1").await.unwrap();
    let approve = nodes.iter().find(|n| n.name == "approve").unwrap();
    assert_eq!(approve.state, NodeState::Running, "{nodes:?}");
    assert!(
        approve.data.contains("waiting for signal `go`"),
        "{nodes:?}"
    );
    runner.signal(&h.id, "go", &json!(true)).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), h.finished())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, Some(RunStatus::Succeeded));
    assert!(store.inbox("gate-1").await.unwrap().is_empty(), "consumed");
    runner.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_is_memoized_through_the_engines_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[workflow]
name = "memo"
flow = "a -> b"

[params]
n = { type = "int", default = 3 }

[steps.a]
kind = "command"
command = ["prep", "${params.n}"]
outputs = { x = "int" }

[steps.b]
kind = "command"
command = ["use", "${a.x}"]
"#;
    let v = workflow(dir.path(), text);
    let store = Arc::new(MemoryStore::new());
    let blobs = kaon_artifacts::ArtifactStore::open(
        &dir.path().join("artifacts").display().to_string(),
        dir.path(),
    )
    .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exec = Arc::new(MemoryExecutor::new(tx));
    exec.script("a", Script::succeed().output("x", 9));
    let runner = Runner::start(store.clone(), exec.clone(), rx, Some(blobs), options(2.0));
    for (id, expected_launches) in [("m-1", 2), ("m-2", 2), ("m-3", 3)] {
        let n = if id == "m-3" { 4 } else { 3 };
        let h = runner
            .submit(new_run(RunId::parse(id).unwrap(), &v, json!({ "n": n })))
            .await
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), h.finished())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status, Some(RunStatus::Succeeded), "{id}");
        // m-2 has the same keys as m-1: nothing runs. m-3 changes `n`:
        // `a` runs again, and `b`, whose input did not change, does not.
        assert_eq!(exec.launched().len(), expected_launches, "after {id}");
    }
    let states: Vec<(String, NodeState)> = store
        .nodes("m-2")
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.kind == NodeKind::Command)
        .map(|n| (n.name, n.state))
        .collect();
    assert_eq!(
        states,
        [
            ("a".into(), NodeState::Memoized),
            ("b".into(), NodeState::Memoized)
        ]
    );
    runner.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_taken_over_is_let_go_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[workflow]
name = "slow"
flow = "a -> b"

[steps.a]
kind = "command"
command = ["a"]

[steps.b]
kind = "command"
command = ["b"]
"#;
    let v = workflow(dir.path(), text);
    let store = Arc::new(MemoryStore::new());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exec = Arc::new(MemoryExecutor::new(tx));
    exec.script("a", Script::hang());
    let runner = Runner::start(store.clone(), exec.clone(), rx, None, options(4.0));
    let mut hs = Vec::new();
    for id in ["taken", "kept"] {
        hs.push(
            runner
                .submit(new_run(RunId::parse(id).unwrap(), &v, json!({})))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = store.nodes("taken").await.unwrap();
    // Another process takes `taken` over (its lease looked expired).
    store
        .claim("taken", Some("test-owner"), Some("someone-else"), 1)
        .await
        .unwrap();
    // The next commit for it is refused; the runtime lets it go.
    runner.cancel(&hs[0].id, "stop").await.unwrap();
    let kept = hs.pop().unwrap();
    let taken = hs.pop().unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), taken.finished())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, kaon_runtime::RuntimeError::TakenOver { ref run } if run == "taken"),
        "{err}"
    );
    // Nothing of it was done after the takeover: its step was not killed
    // (the kill came from state that was never committed; the new owner
    // decides), the nodes are as they were, and the cancel is still in its
    // inbox for the new owner.
    assert!(
        exec.running().iter().any(|o| o.run == "taken"),
        "the taken run's step still runs"
    );
    assert_eq!(store.nodes("taken").await.unwrap(), before);
    assert_eq!(store.inbox("taken").await.unwrap().len(), 1);
    let row = store.run("taken").await.unwrap().unwrap();
    assert_eq!(row.owner.as_deref(), Some("someone-else"));
    // The other run is still driven.
    runner.cancel(&kept.id, "test over").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), kept.finished())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, Some(RunStatus::Cancelled));
    runner.shutdown().await.unwrap();
}
