//! Cancelling a run.

use crate::support::*;

const CANCEL: &str = r#"
[workflow]
name = "cancel"
flow = '''==> (a -> c, b -> d) >== e'''

[steps]
a = { kind = "command", command = ["sleep", "9"] }
b = { kind = "command", command = ["sleep", "9"] }
c = { kind = "command", command = ["true"] }
d = { kind = "command", command = ["true"] }
e = { kind = "command", command = ["true"] }
"#;

#[test]
fn cancel_kills_what_runs_and_cancels_what_waits() {
    let mut h = H::new(CANCEL);
    h.start();
    let (a, b) = (h.id("a"), h.id("b"));
    assert!(is_running(&h.state("a")) && is_running(&h.state("b")));

    let acts = h.feed(Event::CancelRequested {
        reason: "user asked".into(),
    });
    let mut kills = kills_in(&acts);
    kills.sort_by_key(|k| k.0);
    assert_eq!(
        kills,
        [
            (a, 1, handle(a), KillReason::Cancel),
            (b, 1, handle(b), KillReason::Cancel)
        ]
    );
    assert!(launches_in(&acts).is_empty());
    assert!(h.enqueued(&acts).is_empty());
    for k in ["c", "d", "e"] {
        assert_eq!(h.state(k), StepState::Cancelled, "{k}");
    }
    assert!(is_running(&h.state("a")), "running until it exits");
    assert_eq!(h.info("a").kill, Some(KillReason::Cancel));
    assert_eq!(run_finished(&acts), None);
    assert_eq!(h.run.status, RunStatus::Running);
    assert_eq!(h.run.data.cancel.as_deref(), Some("user asked"));

    // A second cancel changes nothing.
    let acts = h.feed(Event::CancelRequested {
        reason: "again".into(),
    });
    assert!(acts.is_empty(), "{acts:?}");

    let acts = h.exit_how("a", Exit::Signal { signal: 15 }, Value::Null);
    assert_eq!(h.state("a"), StepState::Cancelled);
    assert_eq!(run_finished(&acts), None, "b still runs");
    let acts = h.exit("b", 143, json!({}));
    assert_eq!(h.state("b"), StepState::Cancelled);
    assert_eq!(run_finished(&acts), Some(RunStatus::Cancelled));
    assert_eq!(h.run.status, RunStatus::Cancelled);
    let mut launched = h.launched();
    launched.sort();
    assert_eq!(launched, ["a", "b"], "nothing launched after the cancel");
}
