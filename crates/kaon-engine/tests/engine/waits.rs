//! Wait steps and signals: early, late, not fitting, timed out.

use crate::support::*;

const SIGNAL: &str = r#"
[workflow]
name = "signal"
flow = '''a -> approve -> b'''

[steps.a]
kind = "command"
command = ["true"]

[steps.approve]
kind = "wait"
signal = "approve"
outputs = { ok = "bool" }

[steps.b]
kind = "command"
command = ["publish", "${approve.ok}"]
"#;

#[test]
fn a_wait_step_runs_until_its_signal_arrives() {
    let mut h = H::new(SIGNAL);
    h.start();
    let acts = h.exit("a", 0, json!({}));
    assert!(
        launches_in(&acts).is_empty() && h.enqueued(&acts).is_empty(),
        "a wait step is not executed: {acts:?}"
    );
    assert_eq!(
        h.state("approve"),
        StepState::Running {
            attempt: 1,
            handle: None
        }
    );
    assert!(
        h.info("approve")
            .note
            .unwrap_or_default()
            .contains("approve")
    );

    // Another signal does not wake it.
    let acts = h.feed(Event::SignalReceived {
        name: "other".into(),
        value: json!({"ok": false}),
    });
    assert!(acts.is_empty(), "{acts:?}");
    assert!(is_running(&h.state("approve")));
    assert_eq!(h.state("b"), StepState::Pending);

    let acts = h.feed(Event::SignalReceived {
        name: "approve".into(),
        value: json!({"ok": true}),
    });
    assert_eq!(h.state("approve"), StepState::Succeeded);
    assert_eq!(
        h.info("approve").outputs,
        Some(obj(json!({"ok": true, "value": {"ok": true}}))),
        "an object's fields are outputs, and `value` is the whole value"
    );
    assert_eq!(launches_in(&acts), ["b"]);
    assert_eq!(argv(h.launches.last().unwrap()), ["publish", "true"]);
    let acts = h.exit("b", 0, json!({}));
    assert_eq!(run_finished(&acts), Some(RunStatus::Succeeded));
}

#[test]
fn a_signal_sent_early_is_kept_until_the_wait_step_is_reached() {
    let mut h = H::new(SIGNAL);
    h.start();
    let acts = h.feed(Event::SignalReceived {
        name: "approve".into(),
        value: json!({"ok": false}),
    });
    assert!(acts.is_empty(), "{acts:?}");
    assert_eq!(h.state("approve"), StepState::Pending);
    assert_eq!(
        h.run.data.signals.get("approve"),
        Some(&json!({"ok": false}))
    );
    // The latched signal reached the store with the run's data.
    assert!(
        h.saved
            .run
            .as_ref()
            .unwrap()
            .1
            .signals
            .contains_key("approve")
    );

    let acts = h.exit("a", 0, json!({}));
    assert_eq!(h.state("approve"), StepState::Succeeded);
    assert_eq!(launches_in(&acts), ["b"], "approve passed straight through");
    assert_eq!(argv(h.launches.last().unwrap()), ["publish", "false"]);
}

#[test]
fn a_signal_whose_value_does_not_fit_fails_the_wait_step() {
    let mut h = H::new(SIGNAL);
    h.start();
    h.exit("a", 0, json!({}));
    let acts = h.feed(Event::SignalReceived {
        name: "approve".into(),
        value: json!({"ok": "yes"}),
    });
    assert_failed(&h.state("approve"), FailureClass::User, "ok");
    assert!(launches_in(&acts).is_empty());
    assert_eq!(run_finished(&acts), Some(RunStatus::Failed));
}

const WAIT_TIMEOUT: &str = r#"
[workflow]
name = "wait-timeout"
flow = '''approve -> after'''

[steps.approve]
kind = "wait"
timeout = "10s"
retries = 1
retry_backoff = "1s"

[steps.after]
kind = "command"
command = ["after", "${approve.value}"]
"#;

#[test]
fn a_wait_step_that_times_out_waits_again_as_its_next_attempt() {
    let mut h = H::new(WAIT_TIMEOUT);
    let acts = h.start();
    let id = h.id("approve");
    assert_eq!(timers_in(&acts), [(id, 1, 11_000, Timer::Timeout)]);

    h.now = 11_000;
    let acts = h.fire(id, 1, Timer::Timeout);
    match h.state("approve") {
        StepState::Retrying {
            attempt: 2, last, ..
        } => {
            assert_eq!(last.class, FailureClass::Timeout);
        }
        other => panic!("expected retrying, got {other:?}"),
    }
    let (_, _, at, _) = timers_in(&acts)[0];

    // The second wait is attempt 2, with its own timeout.
    let acts = h.fire(id, 2, Timer::Retry);
    assert_eq!(
        h.state("approve"),
        StepState::Running {
            attempt: 2,
            handle: None
        }
    );
    assert_eq!(h.info("approve").attempts, 2);
    assert_eq!(timers_in(&acts), [(id, 2, at + 10_000, Timer::Timeout)]);
    // Attempt 1's timeout, delivered again, is stale.
    let acts = h.feed(Event::TimerFired {
        node: id,
        attempt: 1,
        timer: Timer::Timeout,
    });
    assert!(acts.is_empty(), "{acts:?}");

    let acts = h.feed(Event::SignalReceived {
        name: "approve".into(),
        value: json!("yes"),
    });
    assert_eq!(h.state("approve"), StepState::Succeeded);
    assert_eq!(
        h.info("approve").outputs,
        Some(obj(json!({"value": "yes"})))
    );
    assert_eq!(launches_in(&acts), ["after"]);
    assert_eq!(argv(h.launches.last().unwrap()), ["after", "yes"]);
}
