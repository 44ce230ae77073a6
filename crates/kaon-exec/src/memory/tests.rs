//! The twin's own tests: scripts, delays, adoption and kill.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

use super::*;
use kaon_engine::NodeId;
use kaon_engine::event::OutputSpec;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

fn order(
    dir: &Path,
    step: &str,
    attempt: u32,
    outputs: &[(&str, &str, Option<&str>)],
) -> LaunchOrder {
    LaunchOrder {
        run: "r".into(),
        node: NodeId(7),
        attempt,
        step: step.into(),
        key: format!("{step}[x=1]"),
        invocation: Invocation::Argv {
            argv: vec!["go".into()],
        },
        env: Vec::new(),
        workdir: dir.to_path_buf(),
        outputs: outputs
            .iter()
            .map(|(name, ty, path)| OutputSpec {
                name: name.to_string(),
                ty: ty.parse().unwrap(),
                path: path.map(|p| dir.join(p)),
            })
            .collect(),
        cpus: 1.0,
        memory: 0,
        adopt: false,
        inputs: Vec::new(),
        memo: None,
    }
}

async fn events_until_exit(rx: &mut UnboundedReceiver<ExecEvent>) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(ev) = rx.recv().await {
        let end = matches!(ev.event, Event::StepExited { .. });
        out.push(ev.event);
        if end {
            return out;
        }
    }
    out
}

fn exit_of(ev: &Event) -> (&Exit, &Map<String, Value>, &Vec<String>) {
    match ev {
        Event::StepExited {
            exit,
            outputs,
            problems,
            ..
        } => (exit, outputs, problems),
        other => panic!("not an exit: {other:?}"),
    }
}

#[tokio::test]
async fn unscripted_attempts_succeed_with_a_default_for_every_declared_output() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = unbounded_channel();
    let exec = MemoryExecutor::new(tx);
    let o = order(
        dir.path(),
        "s",
        1,
        &[
            ("n", "int", None),
            ("who", "string", None),
            ("ok", "bool", None),
            ("regions", "list<string>", None),
            ("report", "file", Some("out/report.txt")),
            ("table", "dir", Some("table")),
        ],
    );
    exec.start(&o).unwrap();
    let evs = events_until_exit(&mut rx).await;
    let (exit, outputs, problems) = exit_of(&evs[0]);
    assert_eq!(exit, &Exit::Code { code: 0 });
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(outputs["n"], 1);
    assert_eq!(outputs["who"], "s[x=1].who");
    assert_eq!(outputs["ok"], true);
    assert_eq!(outputs["regions"], serde_json::json!(["s[x=1].regions"]));
    let report = dir.path().join("out/report.txt");
    assert_eq!(outputs["report"], report.display().to_string());
    assert_eq!(std::fs::read_to_string(report).unwrap(), "s[x=1].report\n");
    assert!(dir.path().join("table").is_dir());
    assert_eq!(exec.launched().len(), 1);
    assert!(exec.running().is_empty());
}

#[tokio::test]
async fn scripts_pick_the_attempt_and_set_outputs_files_and_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = unbounded_channel();
    let exec = MemoryExecutor::new(tx);
    exec.script_attempt("s", 1, Script::exit(2));
    exec.script(
        "s",
        Script::succeed()
            .output("n", 5)
            .output("extra", "x")
            .file("report", "data")
            .file("table", "part")
            .file("notes/log.txt", "hello")
            .omit("skipped")
            .progress(Some(10.0), Some("start"))
            .progress(Some(90.0), None),
    );
    let outputs = [
        ("n", "int", None),
        ("report", "file", Some("report.txt")),
        ("table", "dir", Some("table")),
        ("skipped", "file", Some("skipped.txt")),
    ];
    exec.start(&order(dir.path(), "s", 1, &outputs)).unwrap();
    let evs = events_until_exit(&mut rx).await;
    let (exit, outputs1, _) = exit_of(&evs[0]);
    assert_eq!(exit, &Exit::Code { code: 2 });
    assert!(outputs1.is_empty());

    exec.start(&order(dir.path(), "s", 2, &outputs)).unwrap();
    let evs = events_until_exit(&mut rx).await;
    assert_eq!(
        evs[..2],
        [
            Event::StepProgressed {
                node: NodeId(7),
                attempt: 2,
                percent: Some(10.0),
                message: Some("start".into()),
            },
            Event::StepProgressed {
                node: NodeId(7),
                attempt: 2,
                percent: Some(90.0),
                message: None,
            },
        ]
    );
    let (exit, outputs, problems) = exit_of(&evs[2]);
    assert_eq!(exit, &Exit::Code { code: 0 });
    assert_eq!(outputs["n"], 5);
    assert_eq!(outputs["extra"], "x");
    assert!(!outputs.contains_key("skipped"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("`skipped` was not written"),
        "{problems:?}"
    );
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
    assert_eq!(read("report.txt"), "data");
    assert_eq!(read("table/table"), "part");
    assert_eq!(read("notes/log.txt"), "hello");
}

#[tokio::test]
async fn an_instance_key_script_wins_over_the_step_name() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = unbounded_channel();
    let exec = MemoryExecutor::new(tx);
    exec.script("s", Script::exit(1));
    exec.script("s[x=1]", Script::exit(4));
    exec.start(&order(dir.path(), "s", 1, &[])).unwrap();
    let evs = events_until_exit(&mut rx).await;
    assert_eq!(exit_of(&evs[0]).0, &Exit::Code { code: 4 });
}

#[tokio::test]
async fn launch_errors_launch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, _rx) = unbounded_channel();
    let exec = MemoryExecutor::new(tx);
    exec.script("a", Script::launch_error("no such program"));
    exec.script("b", Script::platform_failure("disk full"));
    let e = exec.start(&order(dir.path(), "a", 1, &[])).unwrap_err();
    assert!(!e.platform);
    let e = exec.start(&order(dir.path(), "b", 1, &[])).unwrap_err();
    assert!(e.platform);
    assert_eq!(e.message, "disk full");
    assert!(exec.launched().is_empty());
}

#[tokio::test]
async fn the_delay_keeps_attempts_running() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = unbounded_channel();
    let exec = MemoryExecutor::new(tx).with_delay(Duration::from_millis(200));
    exec.script("fast", Script::succeed().after(Duration::ZERO));
    exec.start(&order(dir.path(), "slow", 1, &[])).unwrap();
    assert_eq!(exec.running().len(), 1);
    let fast = LaunchOrder {
        node: NodeId(8),
        ..order(dir.path(), "fast", 1, &[])
    };
    exec.start(&fast).unwrap();
    let first = rx.recv().await.unwrap();
    assert_eq!(
        first.event_node(),
        Some(NodeId(8)),
        "the fast one ends first"
    );
    let second = rx.recv().await.unwrap();
    assert_eq!(second.event_node(), Some(NodeId(7)));
    assert!(exec.running().is_empty());
}

trait NodeOf {
    fn event_node(&self) -> Option<NodeId>;
}

impl NodeOf for ExecEvent {
    fn event_node(&self) -> Option<NodeId> {
        match &self.event {
            Event::StepExited { node, .. } => Some(*node),
            _ => None,
        }
    }
}
