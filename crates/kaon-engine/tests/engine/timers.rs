//! Timeouts: an attempt killed and failed as a timeout, during a run or
//! during its launch.

use crate::support::*;

const TIMEOUT: &str = r#"
[workflow]
name = "timeout"
flow = '''slow -> after'''

[steps.slow]
kind = "command"
command = ["sleep", "60"]
timeout = "5s"
retries = RETRIES

[steps.after]
kind = "command"
command = ["true"]
"#;

#[test]
fn a_timeout_kills_the_attempt_and_fails_it_as_a_timeout() {
    let mut h = H::new(&TIMEOUT.replace("RETRIES", "0"));
    h.now = 10_000;
    let acts = h.start();
    let id = h.id("slow");
    assert_eq!(launches_in(&acts), ["slow"]);
    assert_eq!(timers_in(&acts), [(id, 1, 15_000, Timer::Timeout)]);

    h.now = 15_000;
    let acts = h.fire(id, 1, Timer::Timeout);
    assert_eq!(
        acts,
        [Action::Kill {
            node: id,
            attempt: 1,
            handle: handle(id),
            reason: KillReason::Timeout
        }]
    );
    assert!(is_running(&h.state("slow")), "running until it exits");
    assert_eq!(h.info("slow").kill, Some(KillReason::Timeout));

    // The kill's SIGTERM comes back as the exit.
    h.now = 15_200;
    let acts = h.exit_how("slow", Exit::Signal { signal: 15 }, Value::Null);
    assert_failed(&h.state("slow"), FailureClass::Timeout, "timed out after 5");
    assert!(timers_in(&acts).is_empty());
    assert_eq!(h.info("slow").kill, None);
    assert_eq!(
        h.state("after"),
        StepState::Skipped {
            reason: SkipReason::UpstreamFailed {
                upstream: "slow".into()
            }
        }
    );
    assert_eq!(run_finished(&acts), Some(RunStatus::Failed));
}

#[test]
fn a_timeout_is_paid_from_the_steps_retries() {
    let mut h = H::new(&TIMEOUT.replace("RETRIES", "1"));
    h.now = 10_000;
    h.start();
    let id = h.id("slow");
    h.now = 15_000;
    h.fire(id, 1, Timer::Timeout);
    let acts = h.exit_how("slow", Exit::Signal { signal: 15 }, Value::Null);
    match h.state("slow") {
        StepState::Retrying {
            attempt: 2, last, ..
        } => {
            assert_eq!(last.class, FailureClass::Timeout)
        }
        other => panic!("expected retrying, got {other:?}"),
    }
    assert_eq!(h.info("slow").user_failures, 1);
    let (_, _, at, _) = timers_in(&acts)[0];

    // Attempt 2 gets its own timeout, counted from its own start.
    let acts = h.fire(id, 2, Timer::Retry);
    assert_eq!(h.now, at);
    assert_eq!(timers_in(&acts), [(id, 2, at + 5_000, Timer::Timeout)]);
    // Attempt 1's timeout, fired late, does not touch attempt 2.
    let acts = h.feed(Event::TimerFired {
        node: id,
        attempt: 1,
        timer: Timer::Timeout,
    });
    assert!(acts.is_empty(), "{acts:?}");
    assert_eq!(h.info("slow").kill, None);

    h.exit("slow", 0, json!({}));
    assert_eq!(h.state("slow"), StepState::Succeeded);
    h.exit("after", 0, json!({}));
    assert_eq!(h.run.status, RunStatus::Succeeded);
}

#[test]
fn a_timeout_during_the_launch_kills_when_the_handle_arrives() {
    let mut h = H::new(&TIMEOUT.replace("RETRIES", "0"));
    h.auto_launch = false;
    h.now = 10_000;
    h.start();
    let id = h.id("slow");
    assert_eq!(h.state("slow"), StepState::Starting { attempt: 1 });
    h.now = 15_000;
    let acts = h.fire(id, 1, Timer::Timeout);
    assert!(acts.is_empty(), "no handle to kill yet: {acts:?}");
    let acts = h.feed(Event::StepLaunched {
        memo_key: None,
        node: id,
        attempt: 1,
        handle: json!({"pid": 7}),
    });
    assert_eq!(
        kills_in(&acts),
        [(id, 1, json!({"pid": 7}), KillReason::Timeout)]
    );
    h.exit_how("slow", Exit::Signal { signal: 15 }, Value::Null);
    assert_failed(&h.state("slow"), FailureClass::Timeout, "timed out");
}
