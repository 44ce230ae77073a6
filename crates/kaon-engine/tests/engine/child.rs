//! Sub-workflow steps run as child runs.

use std::path::Path;

use crate::support::*;

const CHILD: &str = r#"
[workflow]
name = "child"
flow = '''fit'''

[workflow.outputs]
score = "${fit.score}"

[params]
depth = { type = "int", default = 6 }
rate = { type = "float" }
label = { type = "string", default = "x" }
tags = { type = "list<string>", default = [] }

[steps.fit]
kind = "command"
command = ["fit", "${params.depth}"]
outputs = { score = "float" }
"#;

const PARENT: &str = r#"
[workflow]
name = "parent"
flow = '''prep -> train -> report'''

[steps.prep]
kind = "command"
command = ["prep"]
outputs = { n = "int" }

[steps.train]
kind = "subworkflow"
workflow = "child.toml"
params = { depth = 8, rate = "0.25", label = "r${prep.n}", tags = ["x", "y"] }

[steps.report]
kind = "command"
command = ["report", "${train.score}"]
"#;

fn parent_run(dir: &Path) -> H {
    std::fs::write(dir.join("child.toml"), CHILD).unwrap();
    let program = compile(&dir.join("parent.toml"), PARENT);
    H::build(program, Map::new(), RunOptions::default())
}

#[test]
fn a_subworkflow_step_starts_a_child_run_and_takes_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = parent_run(dir.path());
    h.start();
    let acts = h.exit("prep", 0, json!({"n": 3}));
    let id = h.id("train");
    assert!(launches_in(&acts).is_empty(), "a child run, not a process");
    let starts: Vec<&Action> = acts
        .iter()
        .filter(|a| matches!(a, Action::StartChildRun { .. }))
        .collect();
    assert_eq!(starts.len(), 1, "{acts:?}");
    let Action::StartChildRun {
        node,
        attempt,
        child,
        step,
        params,
    } = starts[0]
    else {
        unreachable!()
    };
    assert_eq!((*node, *attempt, step.as_str()), (id, 1, "train"));
    assert_eq!(
        Value::Object(params.clone()),
        json!({"depth": 8, "rate": 0.25, "label": "r3", "tags": ["x", "y"]}),
        "values coerced to the child's parameter types"
    );
    assert_eq!(
        h.state("train"),
        StepState::Running {
            attempt: 1,
            handle: Some(Value::String(child.clone()))
        }
    );

    // A late event for another attempt is ignored.
    let acts = h.feed(Event::ChildRunFinished {
        node: id,
        attempt: 2,
        status: RunStatus::Succeeded,
        outputs: Map::new(),
        message: None,
    });
    assert!(acts.is_empty());

    let acts = h.feed(Event::ChildRunFinished {
        node: id,
        attempt: 1,
        status: RunStatus::Succeeded,
        outputs: obj(json!({"score": 0.75})),
        message: None,
    });
    assert_eq!(h.state("train"), StepState::Succeeded);
    assert_eq!(h.info("train").outputs, Some(obj(json!({"score": 0.75}))));
    assert_eq!(launches_in(&acts), ["report"]);
    assert_eq!(argv(h.launches.last().unwrap()), ["report", "0.75"]);
    let acts = h.exit("report", 0, json!({}));
    assert_eq!(run_finished(&acts), Some(RunStatus::Succeeded));
}

#[test]
fn a_failed_child_run_fails_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = parent_run(dir.path());
    h.start();
    h.exit("prep", 0, json!({"n": 3}));
    let id = h.id("train");
    let acts = h.feed(Event::ChildRunFinished {
        node: id,
        attempt: 1,
        status: RunStatus::Failed,
        outputs: Map::new(),
        message: Some("fit exited with status 2".into()),
    });
    assert_failed(
        &h.state("train"),
        FailureClass::User,
        "the child run failed: fit exited with status 2",
    );
    assert!(matches!(
        h.state("report"),
        StepState::Skipped {
            reason: SkipReason::UpstreamFailed { .. }
        }
    ));
    assert_eq!(run_finished(&acts), Some(RunStatus::Failed));
    assert_eq!(h.launched(), ["prep"]);
}
