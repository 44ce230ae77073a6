//! Joins, and what a failure does to the rest of the run under each
//! failure policy.

use crate::support::*;

const SEQ_PAR: &str = r#"
[workflow]
name = "seq-par"
flow = '''a -> b ==> (c, d) >== e'''

[steps]
a = { kind = "command", command = ["true"] }
b = { kind = "command", command = ["true"] }
c = { kind = "command", command = ["true"] }
d = { kind = "command", command = ["true"] }
e = { kind = "command", command = ["true"] }
"#;

#[test]
fn sequence_and_parallel_join_before_what_follows() {
    let mut h = H::new(SEQ_PAR);
    let acts = h.start();
    assert_eq!(h.enqueued(&acts), ["a"]);
    assert_eq!(launches_in(&acts), ["a"]);
    assert_eq!(
        h.state("a"),
        StepState::Running {
            attempt: 1,
            handle: Some(handle(h.id("a")))
        }
    );
    for k in ["b", "c", "d", "e"] {
        assert_eq!(h.state(k), StepState::Pending, "{k}");
    }

    let acts = h.exit("a", 0, json!({}));
    assert_eq!(h.enqueued(&acts), ["b"]);
    assert_eq!(h.state("a"), StepState::Succeeded);
    assert_eq!(h.state("c"), StepState::Pending);

    let acts = h.exit("b", 0, json!({}));
    let mut both = h.enqueued(&acts);
    both.sort();
    assert_eq!(both, ["c", "d"], "c and d start together after b");
    let mut both = launches_in(&acts);
    both.sort();
    assert_eq!(both, ["c", "d"]);
    assert_eq!(h.state("e"), StepState::Pending);

    let acts = h.exit("c", 0, json!({}));
    assert!(h.enqueued(&acts).is_empty(), "{acts:?}");
    assert!(launches_in(&acts).is_empty(), "{acts:?}");
    assert_eq!(h.state("c"), StepState::Succeeded);
    assert!(is_running(&h.state("d")));
    assert_eq!(
        h.state("e"),
        StepState::Waiting,
        "one branch done, one running"
    );
    assert_eq!(h.run.status, RunStatus::Running);

    let acts = h.exit("d", 0, json!({}));
    assert_eq!(h.enqueued(&acts), ["e"]);
    assert_eq!(run_finished(&acts), None);

    let acts = h.exit("e", 0, json!({}));
    assert_eq!(
        acts.last(),
        Some(&Action::RunFinished {
            status: RunStatus::Succeeded
        })
    );
    assert_eq!(h.run.status, RunStatus::Succeeded);
    assert_eq!(h.finishes(), [RunStatus::Succeeded]);
    assert!(h.run.nodes().all(|(_, n)| n.state == StepState::Succeeded));
    let order = h.launched();
    assert_eq!(order.len(), 5);
    assert_eq!(&order[..2], ["a", "b"]);
    assert_eq!(order[4], "e");
    // The final run status reached the store too.
    assert_eq!(h.saved.run.as_ref().unwrap().0, RunStatus::Succeeded);
}

const POLICY: &str = r#"
[workflow]
name = "policy"
flow = '''==> (a -> b, c -> d, r) >=='''

[steps]
a = { kind = "command", command = ["false"] }
b = { kind = "command", command = ["true"] }
c = { kind = "command", command = ["true"] }
d = { kind = "command", command = ["true"] }
r = { kind = "command", command = ["true"], retries = 3 }
"#;

fn policy(on_failure: FailurePolicy) -> H {
    let options = RunOptions {
        on_failure,
        ..RunOptions::default()
    };
    let mut h = H::with(POLICY, Map::new(), options);
    h.start();
    let mut all = h.launched();
    all.sort();
    assert_eq!(all, ["a", "c", "r"]);
    // r is between attempts when a fails.
    h.exit("r", 1, json!({}));
    assert!(matches!(h.state("r"), StepState::Retrying { .. }));
    h
}

#[test]
fn on_failure_continue_runs_independent_branches_then_fails() {
    let mut h = policy(FailurePolicy::Continue);
    let acts = h.exit("a", 1, json!({}));
    assert_eq!(
        h.state("b"),
        StepState::Skipped {
            reason: SkipReason::UpstreamFailed {
                upstream: "a".into()
            }
        }
    );
    assert_eq!(run_finished(&acts), None);
    assert!(matches!(h.state("r"), StepState::Retrying { .. }));

    let acts = h.exit("c", 0, json!({}));
    assert_eq!(launches_in(&acts), ["d"], "the other branch goes on");
    h.drive(|_| (0, json!({})));
    assert_eq!(h.state("d"), StepState::Succeeded);
    assert_eq!(h.state("r"), StepState::Succeeded, "r's retry still ran");
    assert_eq!(h.run.status, RunStatus::Failed);
    assert_eq!(h.finishes(), [RunStatus::Failed]);
    assert!(!h.launched().contains(&"b".to_string()));
}

#[test]
fn on_failure_stop_launches_nothing_new() {
    let mut h = policy(FailurePolicy::Stop);
    let launched = h.launches.len();
    let acts = h.exit("a", 1, json!({}));
    assert!(launches_in(&acts).is_empty() && h.enqueued(&acts).is_empty());
    assert!(h.run.data.stopping);
    assert!(matches!(h.state("b"), StepState::Skipped { .. }));
    assert_eq!(
        h.state("d"),
        StepState::Skipped {
            reason: SkipReason::RunStopped
        }
    );
    // The retry that was owed is not made: r fails with its last failure.
    assert_failed(&h.state("r"), FailureClass::User, "status 1");
    assert!(is_running(&h.state("c")), "what runs is left to finish");
    assert_eq!(run_finished(&acts), None);

    // A stale retry timer for r launches nothing either.
    let r = h.id("r");
    let acts = h.fire(r, 2, Timer::Retry);
    assert!(launches_in(&acts).is_empty(), "{acts:?}");

    let acts = h.exit("c", 0, json!({}));
    assert_eq!(h.state("c"), StepState::Succeeded);
    assert!(launches_in(&acts).is_empty(), "d must not start: {acts:?}");
    assert_eq!(run_finished(&acts), Some(RunStatus::Failed));
    assert_eq!(h.launches.len(), launched);
}
