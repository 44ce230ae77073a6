//! A Spark step's launch order: the workflow's step with its templates
//! rendered and its local paths made absolute, and its constraints as
//! canonical text. Nothing of Spark itself is decided here.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

use std::path::Path;
use std::sync::Arc;

use kaon_engine::eval::bind_params;
use kaon_engine::{Action, Event, Invocation, LaunchOrder, Program, RunOptions, RunState};
use kaon_model::spec::{DeployMode, RenderedSparkStep};
use serde_json::{Map, json};

const WF: &str = "/tmp/wf/wf.toml";

/// The first launch order of a workflow whose flow starts with the step.
fn first_order(text: &str, given: Map<String, serde_json::Value>) -> LaunchOrder {
    let loaded = kaon_model::load_str(Path::new(WF), text);
    assert!(
        loaded.result.is_some(),
        "the test workflow does not load:\n{}",
        loaded.diagnostics.render(&loaded.sources, false)
    );
    let program = Arc::new(Program::new(
        Arc::new(loaded.result.unwrap()),
        "/tmp/wf".into(),
    ));
    let params = bind_params(&program.workflow.workflow.params, &given).unwrap();
    let mut run = RunState::new("r1", program, params, RunOptions::default());
    let mut events = vec![Event::RunStarted];
    while let Some(ev) = events.pop() {
        for a in run.apply(ev, 1_000).unwrap() {
            match a {
                Action::Enqueue { node, .. } => events.push(Event::StepAdmitted { node }),
                Action::Launch(order) | Action::LookupMemo(order) => return *order,
                _ => {}
            }
        }
    }
    panic!("no launch order");
}

#[test]
fn a_spark_step_is_rendered_for_its_attempt() {
    let text = r#"
[workflow]
name = "spark"
flow = "train"

[params]
day = { type = "string", default = "2024-06-01" }

[steps.train]
kind = "spark"
master = "spark://10.0.0.5:7077"
deploy_mode = "cluster"
app = "./jobs/train.py"
args = ["--day", "${params.day}"]
conf = { "spark.app.tag" = "day-${params.day}" }
jars = ["lib/dep.jar", "hdfs://nn/dep2.jar"]
py_files = ["s3a://bucket/helpers.zip"]
driver_memory = "1g"
constraints = "zone:us-east-1a,us-east-1b;tier:batch"
"#;
    let order = first_order(text, Map::new());
    let Invocation::Spark { step, constraints } = &order.invocation else {
        panic!("not a Spark invocation: {:?}", order.invocation);
    };
    let want = RenderedSparkStep {
        master: Some("spark://10.0.0.5:7077".into()),
        deploy_mode: Some(DeployMode::Cluster),
        app: Some("/tmp/wf/jobs/train.py".into()),
        args: vec!["--day".into(), "2024-06-01".into()],
        conf: [("spark.app.tag".to_string(), "day-2024-06-01".to_string())].into(),
        jars: vec!["/tmp/wf/lib/dep.jar".into(), "hdfs://nn/dep2.jar".into()],
        py_files: vec!["s3a://bucket/helpers.zip".into()],
        driver_memory: Some(1 << 30),
        ..RenderedSparkStep::default()
    };
    assert_eq!(**step, want);
    assert_eq!(
        constraints.as_deref(),
        Some("zone:us-east-1a,us-east-1b;tier:batch")
    );
    // The order is plain data: it reads back as it was written, and keeps
    // the deploy mode as the workflow spells it.
    let v = serde_json::to_value(&order.invocation).unwrap();
    assert_eq!(v["program"], "spark");
    assert_eq!(v["step"]["deploy_mode"], json!("cluster"));
    let back: Invocation = serde_json::from_value(v).unwrap();
    assert_eq!(back, order.invocation);
}
