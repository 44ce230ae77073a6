//! A failed step retried by hand: it and what did not run because of it
//! run again; what succeeded does not.

use kaon_engine::RetryError;

use crate::support::*;

const BRANCHES: &str = r#"
[workflow]
name = "branches"
flow = '''a ==> (b -> d, c) >== e'''

[steps]
a = { kind = "command", command = ["a"] }
b = { kind = "command", command = ["b"] }
c = { kind = "command", command = ["c"] }
d = { kind = "command", command = ["d"] }
e = { kind = "command", command = ["e"] }
"#;

/// BRANCHES run to its end with `b` failing once: a failed run.
fn failed_branches() -> H {
    let mut h = H::new(BRANCHES);
    h.start();
    h.drive(|o| (i32::from(o.step == "b"), json!({})));
    assert_eq!(h.run.status, RunStatus::Failed);
    assert_failed(&h.state("b"), FailureClass::User, "status 1");
    for k in ["d", "e"] {
        assert!(
            matches!(h.state(k), StepState::Skipped { .. }),
            "{k}: {:?}",
            h.state(k)
        );
    }
    assert_eq!(h.launched(), ["a", "b", "c"]);
    h
}

fn retry(h: &mut H, step: &str) -> Vec<Action> {
    let now = h.now;
    let acts = h.run.retry(step, now).unwrap();
    h.save();
    // What the actions ask for, answered as the fake driver answers.
    let mut out = Vec::new();
    for a in acts {
        match a {
            Action::Enqueue { node, .. } => out.extend(h.feed(Event::StepAdmitted { node })),
            other => {
                h.log.push(other.clone());
                out.push(other);
            }
        }
    }
    out
}

#[test]
fn a_failed_step_retried_runs_again_and_the_run_succeeds() {
    let mut h = failed_branches();
    let b_attempts = h.info("b").attempts;
    h.now += 60_000;

    let acts = retry(&mut h, "b");
    assert_eq!(launches_in(&acts), ["b"], "only b starts: {acts:?}");
    assert_eq!(h.launches.last().unwrap().attempt, b_attempts + 1);
    assert_eq!(
        env(h.launches.last().unwrap(), "KAON_ATTEMPT"),
        Some("2"),
        "attempt numbers go on"
    );
    let info = h.info("b");
    assert_eq!((info.user_failures, info.finished), (0, None));
    assert_eq!(h.state("d"), StepState::Pending);
    assert_eq!(h.state("e"), StepState::Waiting, "c is done, d is not");
    assert_eq!(h.state("a"), StepState::Succeeded);
    assert_eq!(h.state("c"), StepState::Succeeded);
    assert_eq!(h.run.status, RunStatus::Running);
    assert_eq!(h.run.data.message, None);
    // The reset is in the delta, run status included.
    let (status, _) = h.saved.run.clone().unwrap();
    assert_eq!(status, RunStatus::Running);
    assert!(is_running(&h.saved.nodes[&h.id("b")].data.state));

    h.drive(|_| (0, json!({})));
    assert_eq!(h.run.status, RunStatus::Succeeded);
    assert_eq!(h.finishes(), [RunStatus::Failed, RunStatus::Succeeded]);
    assert_eq!(
        h.launched(),
        ["a", "b", "c", "b", "d", "e"],
        "a and c did not run again; d and e ran once b had"
    );
    assert!(h.run.nodes().all(|(_, n)| n.state == StepState::Succeeded));
}

#[test]
fn a_run_restored_from_the_store_is_retried_the_same() {
    let h = failed_branches();
    let mut g = H::wrap(restore(&h, &h.saved));
    g.now = h.now + 1_000;
    let acts = retry(&mut g, "b");
    assert_eq!(launches_in(&acts), ["b"]);
    assert_eq!(g.launches[0].attempt, 2);
    g.drive(|_| (0, json!({})));
    assert_eq!(g.launched(), ["b", "d", "e"]);
    assert_eq!(g.run.status, RunStatus::Succeeded);
}

#[test]
fn a_failed_step_that_fails_again_fails_the_run_again() {
    let mut h = failed_branches();
    retry(&mut h, "b");
    let acts = h.exit("b", 3, json!({}));
    assert_eq!(run_finished(&acts), Some(RunStatus::Failed));
    assert_failed(&h.state("b"), FailureClass::User, "status 3");
    assert!(matches!(h.state("d"), StepState::Skipped { .. }));
    assert_eq!(h.info("b").attempts, 2);
    assert_eq!(
        h.run.data.message.as_deref(),
        Some("b failed: exited with status 3")
    );
}

#[test]
fn what_did_not_fail_is_refused_naming_its_state() {
    let mut h = failed_branches();
    let err = h.run.retry("c", h.now).unwrap_err();
    assert!(
        matches!(&err, RetryError::NotFailed { states, .. } if states == &[("c".to_string(), "succeeded".to_string())]),
        "{err:?}"
    );
    assert!(err.to_string().contains("it is succeeded"), "{err}");
    let err = h.run.retry("nope", h.now).unwrap_err();
    assert!(err.is_unknown_step(), "{err:?}");
    // Refusals change nothing.
    assert_eq!(h.run.status, RunStatus::Failed);
    assert!(h.run.take_delta().is_empty());
}

#[test]
fn a_run_that_succeeded_or_was_cancelled_is_refused() {
    let mut h = H::new(BRANCHES);
    h.start();
    h.drive(|_| (0, json!({})));
    assert_eq!(h.run.status, RunStatus::Succeeded);
    let err = h.run.retry("b", h.now).unwrap_err();
    assert_eq!(
        err,
        RetryError::RunEnded {
            run: "r1".into(),
            status: RunStatus::Succeeded
        }
    );
    assert!(err.to_string().contains("succeeded"), "{err}");

    let mut h = H::new(BRANCHES);
    h.start();
    h.exit("a", 0, json!({}));
    h.exit("b", 1, json!({}));
    h.feed(Event::CancelRequested {
        reason: "enough".into(),
    });
    let err = h.run.retry("b", h.now).unwrap_err();
    assert!(
        matches!(err, RetryError::Cancelling { .. }),
        "still stopping: {err:?}"
    );
    h.drive(|_| (143, json!({})));
    assert_eq!(h.run.status, RunStatus::Cancelled);
    let err = h.run.retry("b", h.now).unwrap_err();
    assert!(
        matches!(
            err,
            RetryError::RunEnded {
                status: RunStatus::Cancelled,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_running_run_retries_in_place() {
    let mut h = H::new(BRANCHES);
    h.start();
    h.exit("a", 0, json!({}));
    h.exit("b", 1, json!({}));
    assert!(is_running(&h.state("c")));
    assert_eq!(h.run.status, RunStatus::Running);
    let acts = retry(&mut h, "b");
    assert_eq!(launches_in(&acts), ["b"]);
    assert_eq!(h.state("d"), StepState::Pending);
    assert_eq!(h.state("e"), StepState::Pending);
    assert!(is_running(&h.state("c")), "c goes on as it was");
    h.drive(|_| (0, json!({})));
    assert_eq!(h.finishes(), [RunStatus::Succeeded], "the run ended once");
    assert_eq!(h.launched(), ["a", "b", "c", "b", "d", "e"]);
}

const FOR_EACH: &str = r#"
[workflow]
name = "items"
flow = '''a -> **(x = [1, 2, 3]) --< (f -> g) >-- -> z'''

[steps]
a = { kind = "command", command = ["a"] }
f = { kind = "command", command = ["f", "${x}"] }
g = { kind = "command", command = ["g", "${x}"] }
z = { kind = "command", command = ["z"] }
"#;

fn failed_items() -> H {
    let mut h = H::new(FOR_EACH);
    h.start();
    h.drive(|o| (i32::from(o.key == "f[x=2]"), json!({})));
    assert_eq!(h.run.status, RunStatus::Failed);
    let fe = h.block(|t| matches!(t, TNode::ForEach { .. }));
    assert!(matches!(
        h.run.node(fe).unwrap().state,
        StepState::Failed { .. }
    ));
    assert_eq!(
        h.state("g[x=2]"),
        StepState::Skipped {
            reason: SkipReason::UpstreamFailed {
                upstream: "f[x=2]".into()
            }
        }
    );
    h
}

#[test]
fn a_for_each_with_one_failed_item_reruns_only_that_item() {
    for step in ["f", "f[x=2]"] {
        let mut h = failed_items();
        let before = h.launches.len();
        let acts = retry(&mut h, step);
        assert_eq!(launches_in(&acts), ["f[x=2]"], "retry of `{step}`");
        let fe = h.block(|t| matches!(t, TNode::ForEach { .. }));
        assert!(is_running(&h.run.node(fe).unwrap().state));
        assert_eq!(h.state("z"), StepState::Pending);
        h.drive(|_| (0, json!({})));
        assert_eq!(h.launched()[before..], ["f[x=2]", "g[x=2]", "z"]);
        assert_eq!(h.run.node(fe).unwrap().state, StepState::Succeeded);
        assert_eq!(h.run.status, RunStatus::Succeeded);
    }
}

#[test]
fn a_failed_block_named_stands_for_the_failed_steps_inside() {
    let mut h = failed_items();
    let fe = h.block(|t| matches!(t, TNode::ForEach { .. }));
    let label = h.run.key(fe);
    let acts = retry(&mut h, &label);
    assert_eq!(launches_in(&acts), ["f[x=2]"]);
}

const POLICY: &str = r#"
[workflow]
name = "policy"
flow = '''==> (a -> b, c -> d, r) >=='''

[steps]
a = { kind = "command", command = ["a"] }
b = { kind = "command", command = ["b"] }
c = { kind = "command", command = ["c"] }
d = { kind = "command", command = ["d"] }
r = { kind = "command", command = ["r"], retries = 3 }
"#;

#[test]
fn after_a_stop_what_the_stop_left_undone_comes_back() {
    let options = RunOptions {
        on_failure: FailurePolicy::Stop,
        ..RunOptions::default()
    };
    let mut h = H::with(POLICY, Map::new(), options);
    h.start();
    h.exit("r", 1, json!({}));
    h.exit("a", 1, json!({}));
    h.exit("c", 0, json!({}));
    assert_eq!(h.run.status, RunStatus::Failed);
    assert_eq!(
        h.state("d"),
        StepState::Skipped {
            reason: SkipReason::RunStopped
        }
    );
    assert_failed(&h.state("r"), FailureClass::User, "status 1");
    let before = h.launches.len();

    let acts = retry(&mut h, "a");
    let mut started = launches_in(&acts);
    started.sort();
    assert_eq!(
        started,
        ["a", "d", "r"],
        "r was owed a retry, d was stopped"
    );
    assert!(!h.run.data.stopping);
    h.drive(|_| (0, json!({})));
    let mut after: Vec<String> = h.launched()[before..].to_vec();
    after.sort();
    assert_eq!(after, ["a", "b", "d", "r"], "c did not run again");
    assert_eq!(h.run.status, RunStatus::Succeeded);
}

const JOIN: &str = r#"
[workflow]
name = "join"
flow = '''==> (a, b) >== c'''

[steps]
a = { kind = "command", command = ["a"] }
b = { kind = "command", command = ["b"] }
c = { kind = "command", command = ["c"] }
"#;

#[test]
fn a_node_with_another_failed_predecessor_stays_skipped() {
    let mut h = H::new(JOIN);
    h.start();
    h.drive(|_| (1, json!({})));
    assert_eq!(h.run.status, RunStatus::Failed);
    let acts = retry(&mut h, "a");
    assert_eq!(launches_in(&acts), ["a"]);
    let c = h.state("c");
    let StepState::Skipped {
        reason: SkipReason::UpstreamFailed { upstream },
    } = c
    else {
        panic!("c: {c:?}");
    };
    assert_eq!(upstream, "b", "skipped now because of b");
    let acts = h.exit("a", 0, json!({}));
    assert_eq!(run_finished(&acts), Some(RunStatus::Failed));
    assert_eq!(
        h.run.data.message.as_deref(),
        Some("b failed: exited with status 1")
    );

    // Retrying b as well lets c run.
    let acts = retry(&mut h, "b");
    assert_eq!(launches_in(&acts), ["b"]);
    h.drive(|_| (0, json!({})));
    assert_eq!(h.run.status, RunStatus::Succeeded);
    assert_eq!(h.launched(), ["a", "b", "a", "b", "c"]);
}

const REPEAT: &str = r#"
[workflow]
name = "repeat"
flow = '''^^(until = ${evaluate.stable}, max = 5) --< (evaluate) >-- -> done'''

[steps]
evaluate = { kind = "command", command = ["eval"], outputs = { stable = "bool" } }
done = { kind = "command", command = ["true"] }
"#;

#[test]
fn a_failed_pass_of_a_repeat_is_retried_and_the_loop_goes_on() {
    let mut h = H::new(REPEAT);
    h.start();
    h.exit("evaluate[pass=1]", 0, json!({"stable": false}));
    h.exit("evaluate[pass=2]", 1, json!({}));
    assert_eq!(h.run.status, RunStatus::Failed);
    let acts = retry(&mut h, "evaluate");
    assert_eq!(launches_in(&acts), ["evaluate[pass=2]"]);
    h.exit("evaluate[pass=2]", 0, json!({"stable": false}));
    h.exit("evaluate[pass=3]", 0, json!({"stable": true}));
    h.exit("done", 0, json!({}));
    assert_eq!(h.run.status, RunStatus::Succeeded);
    assert_eq!(
        h.launched(),
        [
            "evaluate[pass=1]",
            "evaluate[pass=2]",
            "evaluate[pass=2]",
            "evaluate[pass=3]",
            "done"
        ]
    );
}

const CHILD: &str = r#"
[workflow]
name = "child"
flow = '''fit'''

[steps.fit]
kind = "command"
command = ["fit"]
"#;

const PARENT: &str = r#"
[workflow]
name = "parent"
flow = '''prep -> train -> report'''

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

fn child_starts(acts: &[Action]) -> Vec<(u32, String)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::StartChildRun { attempt, child, .. } => Some((*attempt, child.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_failed_subworkflow_step_starts_a_new_child_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("child.toml"), CHILD).unwrap();
    let program = compile(&dir.path().join("parent.toml"), PARENT);
    let mut h = H::build(program, Map::new(), RunOptions::default());
    h.start();
    let acts = h.exit("prep", 0, json!({}));
    let first = child_starts(&acts);
    assert_eq!(first.len(), 1);
    let train = h.id("train");
    let acts = h.feed(Event::ChildRunFinished {
        node: train,
        attempt: 1,
        status: RunStatus::Failed,
        outputs: Map::new(),
        message: Some("fit failed".into()),
    });
    assert_eq!(run_finished(&acts), Some(RunStatus::Failed));

    let acts = retry(&mut h, "train");
    let second = child_starts(&acts);
    assert_eq!(second.len(), 1, "{acts:?}");
    assert_eq!(second[0].0, 2);
    assert_ne!(second[0].1, first[0].1, "a new child run, not the old one");
    h.feed(Event::ChildRunFinished {
        node: train,
        attempt: 2,
        status: RunStatus::Succeeded,
        outputs: Map::new(),
        message: None,
    });
    h.exit("report", 0, json!({}));
    assert_eq!(h.run.status, RunStatus::Succeeded);
}

const STOPPED_LOOP: &str = r#"
[workflow]
name = "stopped-loop"
flow = '''==> (a, ^^(until = ${evaluate.stable}, max = 5) --< (evaluate) >--) >=='''

[steps]
a = { kind = "command", command = ["a"] }
evaluate = { kind = "command", command = ["eval"], outputs = { stable = "bool" } }
"#;

#[test]
fn a_repeat_the_stop_ended_between_passes_goes_on() {
    let options = RunOptions {
        on_failure: FailurePolicy::Stop,
        ..RunOptions::default()
    };
    let mut h = H::with(STOPPED_LOOP, Map::new(), options);
    h.start();
    h.exit("a", 1, json!({}));
    h.exit("evaluate[pass=1]", 0, json!({"stable": false}));
    assert_eq!(h.run.status, RunStatus::Failed);
    let rep = h.block(|t| matches!(t, TNode::Repeat { .. }));
    assert_eq!(
        h.run.node(rep).unwrap().state,
        StepState::Skipped {
            reason: SkipReason::RunStopped
        }
    );

    let acts = retry(&mut h, "a");
    let mut started = launches_in(&acts);
    started.sort();
    assert_eq!(started, ["a", "evaluate[pass=2]"], "the next pass is owed");
    assert!(is_running(&h.run.node(rep).unwrap().state));
    h.exit("a", 0, json!({}));
    h.exit("evaluate[pass=2]", 0, json!({"stable": true}));
    assert_eq!(h.run.node(rep).unwrap().state, StepState::Succeeded);
    assert_eq!(h.run.status, RunStatus::Succeeded);
}
