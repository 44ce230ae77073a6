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
use kaon_runtime::{
    Capacity, Change, NewRun, Quiet, ResumedRun, RunId, Runner, RuntimeError, RuntimeOptions,
    Sealer,
};
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

/// The in-memory store and executor a runner is started on, and the
/// executor's channel of events.
fn twins() -> (
    Arc<MemoryStore>,
    Arc<MemoryExecutor>,
    tokio::sync::mpsc::UnboundedReceiver<kaon_exec::ExecEvent>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryExecutor::new(tx)),
        rx,
    )
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
    let (store, exec, rx) = twins();
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
    let (store, exec, rx) = twins();
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
    let (store, exec, rx) = twins();
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
        matches!(err, RuntimeError::TakenOver { ref run } if run == "taken"),
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

const CHAIN: &str = r#"
[workflow]
name = "chain"
flow = "a -> b -> c"

[steps.a]
kind = "command"
command = ["a"]

[steps.b]
kind = "command"
command = ["b"]

[steps.c]
kind = "command"
command = ["c"]
"#;

/// A stored run claimed for the test runtime, as a caller of `retry` has it.
async fn claimed(store: &MemoryStore, v: &Arc<Validated>, id: &str) -> ResumedRun {
    let row = store.run(id).await.unwrap().unwrap();
    store
        .claim(id, row.owner.as_deref(), Some("test-owner"), 1)
        .await
        .unwrap();
    let row = store.run(id).await.unwrap().unwrap();
    let params: Map<String, Value> = serde_json::from_str(&row.params).unwrap();
    ResumedRun {
        row,
        validated: v.clone(),
        params,
        cancel: None,
        observer: Box::new(Quiet),
    }
}

fn launches_of(exec: &MemoryExecutor, step: &str) -> Vec<u32> {
    exec.launched()
        .iter()
        .filter(|o| o.step == step)
        .map(|o| o.attempt)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_retried_carries_on_from_the_failed_step() {
    let dir = tempfile::tempdir().unwrap();
    let v = workflow(dir.path(), CHAIN);
    let (store, exec, rx) = twins();
    exec.script_attempt("b", 1, Script::exit(1));
    exec.script_attempt("b", 2, Script::succeed().after(Duration::from_millis(500)));
    let runner = Runner::start(store.clone(), exec.clone(), rx, None, options(2.0));
    let h = runner
        .submit(new_run(RunId::parse("chain-1").unwrap(), &v, json!({})))
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), h.finished())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, Some(RunStatus::Failed));
    let row = store.run("chain-1").await.unwrap().unwrap();
    assert_eq!(row.status, row::RunStatus::Failed);
    assert!(row.finished_ms.is_some());
    assert_eq!(row.owner, None, "let go of once it ended");

    // A step that did not fail, or one the run lacks: refused, and the
    // claim is let go of.
    let err = runner
        .retry(claimed(&store, &v, "chain-1").await, "a")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            RuntimeError::Retry(kaon_engine::RetryError::NotFailed { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("succeeded"), "{err}");
    let err = runner
        .retry(claimed(&store, &v, "chain-1").await, "zz")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, RuntimeError::Retry(e) if e.is_unknown_step()),
        "{err}"
    );
    let row = store.run("chain-1").await.unwrap().unwrap();
    assert_eq!((row.owner, row.status), (None, row::RunStatus::Failed));

    let h = runner
        .retry(claimed(&store, &v, "chain-1").await, "b")
        .await
        .unwrap();
    // The reset is committed when `retry` returns; b's second attempt
    // takes half a second.
    let row = store.run("chain-1").await.unwrap().unwrap();
    assert_eq!(row.status, row::RunStatus::Running);
    assert_eq!(row.finished_ms, None);
    // Driven here: a second retry of it is for `retry_step`.
    let err = runner
        .retry(claimed(&store, &v, "chain-1").await, "b")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, RuntimeError::Driving { .. }), "{err}");

    let status = tokio::time::timeout(Duration::from_secs(30), h.finished())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, Some(RunStatus::Succeeded));
    let nodes = store.nodes("chain-1").await.unwrap();
    let b = nodes.iter().find(|n| n.name == "b").unwrap();
    assert_eq!((b.state, b.attempt), (NodeState::Succeeded, 2));
    assert!(
        nodes.iter().all(|n| n.state == NodeState::Succeeded),
        "{nodes:?}"
    );
    assert_eq!(launches_of(&exec, "a"), [1], "a ran once");
    assert_eq!(launches_of(&exec, "b"), [1, 2]);
    assert_eq!(launches_of(&exec, "c"), [1]);
    let row = store.run("chain-1").await.unwrap().unwrap();
    assert_eq!(row.status, row::RunStatus::Succeeded);
    assert!(row.finished_ms.is_some());
    assert_eq!(row.owner, None);

    // A run that succeeded is refused.
    let err = runner
        .retry(claimed(&store, &v, "chain-1").await, "b")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            RuntimeError::Retry(kaon_engine::RetryError::RunEnded { .. })
        ),
        "{err}"
    );
    assert_eq!(store.run("chain-1").await.unwrap().unwrap().owner, None);
    runner.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_has_its_failed_step_retried_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[workflow]
name = "wide"
flow = "==> (b, slow) >== c"

[steps.b]
kind = "command"
command = ["b"]

[steps.slow]
kind = "command"
command = ["slow"]

[steps.c]
kind = "command"
command = ["c"]
"#;
    let v = workflow(dir.path(), text);
    let (store, exec, rx) = twins();
    exec.script_attempt("b", 1, Script::exit(1));
    exec.script("slow", Script::succeed().after(Duration::from_secs(2)));
    let runner = Runner::start(store.clone(), exec.clone(), rx, None, options(2.0));
    let id = RunId::parse("wide-1").unwrap();
    let err = runner.retry_step(&id, "b").await.unwrap_err();
    assert!(matches!(err, RuntimeError::NotDriven { .. }), "{err}");
    let h = runner
        .submit(new_run(id.clone(), &v, json!({})))
        .await
        .unwrap();
    // b fails while slow runs: the run goes on (on_failure = continue).
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let nodes = store.nodes("wide-1").await.unwrap();
            if nodes
                .iter()
                .any(|n| n.name == "b" && n.state == NodeState::Failed)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("b fails");
    let err = runner.retry_step(&id, "slow").await.unwrap_err();
    assert!(err.to_string().contains("running"), "{err}");
    runner.retry_step(&id, "b").await.unwrap();
    let nodes = store.nodes("wide-1").await.unwrap();
    let b = nodes.iter().find(|n| n.name == "b").unwrap();
    assert_ne!(b.state, NodeState::Failed, "committed on return: {b:?}");
    let status = tokio::time::timeout(Duration::from_secs(30), h.finished())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, Some(RunStatus::Succeeded));
    assert_eq!(launches_of(&exec, "b"), [1, 2]);
    assert_eq!(launches_of(&exec, "slow"), [1]);
    assert_eq!(launches_of(&exec, "c"), [1]);
    runner.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_subworkflow_step_retried_starts_a_new_child_run() {
    let dir = tempfile::tempdir().unwrap();
    let child = r#"
[workflow]
name = "child"
flow = "fit"

[steps.fit]
kind = "command"
command = ["fit"]
"#;
    std::fs::write(dir.path().join("child.toml"), child).unwrap();
    let text = r#"
[workflow]
name = "parent"
flow = "prep -> train -> report"

[steps.prep]
kind = "command"
command = ["prep"]

[steps.train]
kind = "subworkflow"
workflow = "child.toml"

[steps.report]
kind = "command"
command = ["report"]
"#;
    let v = workflow(dir.path(), text);
    let (store, exec, rx) = twins();
    exec.script("fit", Script::exit(1));
    let runner = Runner::start(store.clone(), exec.clone(), rx, None, options(2.0));
    let h = runner
        .submit(new_run(RunId::parse("parent-1").unwrap(), &v, json!({})))
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), h.finished())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, Some(RunStatus::Failed));
    let first = store.children("parent-1").await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].status, row::RunStatus::Failed);

    // The child run itself is not retried on its own.
    let row = store.run(&first[0].id).await.unwrap().unwrap();
    let err = runner
        .retry(
            ResumedRun {
                row,
                validated: Arc::new(v.children["train"].clone()),
                params: Map::new(),
                cancel: None,
                observer: Box::new(Quiet),
            },
            "fit",
        )
        .await
        .err()
        .unwrap();
    assert!(matches!(err, RuntimeError::ChildRun { .. }), "{err}");

    exec.script("fit", Script::succeed());
    let h = runner
        .retry(claimed(&store, &v, "parent-1").await, "train")
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), h.finished())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, Some(RunStatus::Succeeded));
    let children = store.children("parent-1").await.unwrap();
    assert_eq!(children.len(), 2, "a new child run: {children:?}");
    assert_eq!(
        children[0].status,
        row::RunStatus::Failed,
        "the old one stays"
    );
    assert_eq!(children[1].status, row::RunStatus::Succeeded);
    assert_ne!(children[0].id, children[1].id);
    let train = store.nodes("parent-1").await.unwrap();
    let train = train.iter().find(|n| n.name == "train").unwrap();
    assert_eq!((train.state, train.attempt), (NodeState::Succeeded, 2));
    assert_eq!(launches_of(&exec, "prep"), [1]);
    assert_eq!(launches_of(&exec, "report"), [1]);
    runner.shutdown().await.unwrap();
}
