//! Exits judged and failed attempts retried with backoff, each kind of
//! failure paid from its own budget.

use crate::support::*;

const RETRY: &str = r#"
[workflow]
name = "retry"
flow = '''flaky'''

[steps.flaky]
kind = "command"
command = ["false"]
retries = 2
retry_backoff = "10s"
"#;

#[test]
fn user_failures_retry_with_doubling_backoff_then_fail() {
    let mut h = H::new(RETRY);
    h.now = 100_000;
    h.start();
    let id = h.id("flaky");
    assert_eq!(h.launches[0].attempt, 1);

    // First failure: retry 1 waits between half and all of 10s.
    h.now = 103_000;
    let t1 = h.now;
    let acts = h.exit("flaky", 1, json!({}));
    assert!(launches_in(&acts).is_empty());
    let timers = timers_in(&acts);
    assert_eq!(timers.len(), 1, "{acts:?}");
    let (node, attempt, at, timer) = timers[0];
    assert_eq!((node, attempt, timer), (id, 2, Timer::Retry));
    assert!(
        (t1 + 5_000..=t1 + 10_000).contains(&at),
        "first retry at +{}",
        at - t1
    );
    match h.state("flaky") {
        StepState::Retrying {
            attempt: 2,
            at: a,
            last,
        } => {
            assert_eq!(a, at);
            assert_eq!(last.class, FailureClass::User);
            assert_eq!(last.exit_code, Some(1));
        }
        other => panic!("expected retrying, got {other:?}"),
    }

    // Timers of an attempt that is not the next one change nothing.
    let before = h.run.node(id).unwrap().state.clone();
    for (attempt, timer) in [(1, Timer::Retry), (3, Timer::Retry), (2, Timer::Timeout)] {
        let acts = h.feed(Event::TimerFired {
            node: id,
            attempt,
            timer,
        });
        assert!(acts.is_empty(), "{timer:?} for attempt {attempt}: {acts:?}");
        assert_eq!(h.run.node(id).unwrap().state, before);
    }

    // The backoff ends: attempt 2 is enqueued and launched.
    let acts = h.fire(id, 2, Timer::Retry);
    assert_eq!(h.now, at);
    assert_eq!(h.enqueued(&acts), ["flaky"]);
    assert_eq!(launches_in(&acts), ["flaky"]);
    let order = h.launches.last().unwrap();
    assert_eq!(order.attempt, 2);
    assert_eq!(env(order, "KAON_ATTEMPT"), Some("2"));
    assert_eq!(h.info("flaky").attempts, 2);

    // A late exit of attempt 1 changes nothing.
    let acts = h.feed(Event::StepExited {
        artifacts: vec![],
        reads: vec![],
        node: id,
        attempt: 1,
        exit: Exit::Code { code: 0 },
        outputs: Map::new(),
        problems: vec![],
    });
    assert!(acts.is_empty());
    assert!(is_running(&h.state("flaky")));

    // Second failure: the window doubles.
    h.now += 4_000;
    let t2 = h.now;
    let acts = h.exit("flaky", 1, json!({}));
    let timers = timers_in(&acts);
    assert_eq!(timers.len(), 1, "{acts:?}");
    let (_, attempt, at2, timer) = timers[0];
    assert_eq!((attempt, timer), (3, Timer::Retry));
    assert!(
        (t2 + 10_000..=t2 + 20_000).contains(&at2),
        "second retry at +{}",
        at2 - t2
    );

    // The old attempt's retry timer, fired again, is stale now.
    let acts = h.feed(Event::TimerFired {
        node: id,
        attempt: 2,
        timer: Timer::Retry,
    });
    assert!(acts.is_empty(), "{acts:?}");
    assert!(matches!(
        h.state("flaky"),
        StepState::Retrying { attempt: 3, .. }
    ));

    let acts = h.fire(id, 3, Timer::Retry);
    assert_eq!(launches_in(&acts), ["flaky"]);
    assert_eq!(h.launches.last().unwrap().attempt, 3);

    // Third failure: the budget (2 retries) is spent.
    let acts = h.exit("flaky", 1, json!({}));
    assert!(timers_in(&acts).is_empty(), "{acts:?}");
    assert_failed(&h.state("flaky"), FailureClass::User, "status 1");
    let info = h.info("flaky");
    assert_eq!(info.attempts, 3);
    assert_eq!(info.user_failures, 3);
    assert_eq!(info.platform_failures, 0);
    assert_eq!(info.exit_code, Some(1));
    assert_eq!(run_finished(&acts), Some(RunStatus::Failed));
    assert_eq!(h.run.status, RunStatus::Failed);
    let msg = h.run.data.message.clone().unwrap_or_default();
    assert!(msg.contains("flaky") && msg.contains("status 1"), "{msg}");
    assert_eq!(h.launches.len(), 3);
}

const TWO: &str = r#"
[workflow]
name = "two"
flow = '''==> (flaky, broken) >=='''

[steps]
flaky = { kind = "command", command = ["true"] }
broken = { kind = "command", command = ["true"] }
"#;

#[test]
fn platform_failures_use_the_platform_budget_user_failures_the_steps() {
    let options = RunOptions {
        platform_retries: 2,
        retry_backoff_ms: 1_000,
        ..RunOptions::default()
    };
    let mut h = H::with(TWO, Map::new(), options);
    h.start();
    let flaky = h.id("flaky");
    let mut both = h.launched();
    both.sort();
    assert_eq!(both, ["broken", "flaky"]);

    // A lost process is the platform's fault: retried though retries = 0.
    let t = h.now;
    let acts = h.exit_how(
        "flaky",
        Exit::Lost {
            message: "the worker vanished".into(),
        },
        Value::Null,
    );
    let timers = timers_in(&acts);
    assert_eq!(timers.len(), 1, "{acts:?}");
    assert_eq!((timers[0].0, timers[0].1), (flaky, 2));
    assert!((t + 500..=t + 1_000).contains(&timers[0].2));
    match h.state("flaky") {
        StepState::Retrying {
            attempt: 2, last, ..
        } => {
            assert_eq!(last.class, FailureClass::Platform);
            assert_eq!(last.message, "the worker vanished");
        }
        other => panic!("expected retrying, got {other:?}"),
    }
    let info = h.info("flaky");
    assert_eq!((info.platform_failures, info.user_failures), (1, 0));

    // A non-zero exit is the step's fault: retries = 0 fails it at once.
    let acts = h.exit("broken", 1, json!({}));
    assert!(timers_in(&acts).is_empty(), "{acts:?}");
    assert_failed(&h.state("broken"), FailureClass::User, "status 1");
    assert_eq!(h.info("broken").user_failures, 1);
    assert_eq!(h.info("broken").attempts, 1);
    assert_eq!(run_finished(&acts), None, "flaky is still owed a retry");

    // A SIGKILL kaon did not send (the OOM killer) is the platform's too.
    h.fire(flaky, 2, Timer::Retry);
    let acts = h.exit_how("flaky", Exit::Signal { signal: 9 }, Value::Null);
    assert_eq!(timers_in(&acts).len(), 1, "{acts:?}");
    assert!(matches!(
        h.state("flaky"),
        StepState::Retrying { attempt: 3, .. }
    ));
    assert_eq!(h.info("flaky").platform_failures, 2);

    // The third loss is past the platform budget of 2.
    h.fire(flaky, 3, Timer::Retry);
    let acts = h.exit_how(
        "flaky",
        Exit::Lost {
            message: "gone again".into(),
        },
        Value::Null,
    );
    assert!(timers_in(&acts).is_empty(), "{acts:?}");
    assert_failed(&h.state("flaky"), FailureClass::Platform, "gone again");
    let info = h.info("flaky");
    assert_eq!(
        (info.attempts, info.platform_failures, info.user_failures),
        (3, 3, 0)
    );
    assert_eq!(run_finished(&acts), Some(RunStatus::Failed));
}

#[test]
fn launch_failures_are_paid_by_whoever_is_to_blame() {
    let mut h = H::new(TWO);
    h.auto_launch = false;
    h.start();
    let (flaky, broken) = (h.id("flaky"), h.id("broken"));
    assert_eq!(h.state("flaky"), StepState::Starting { attempt: 1 });
    let acts = h.feed(Event::LaunchFailed {
        node: flaky,
        attempt: 1,
        message: "no such worker".into(),
        platform: true,
    });
    assert_eq!(timers_in(&acts).len(), 1, "{acts:?}");
    assert_eq!(h.info("flaky").platform_failures, 1);
    let acts = h.feed(Event::LaunchFailed {
        node: broken,
        attempt: 1,
        message: "no such program".into(),
        platform: false,
    });
    assert!(timers_in(&acts).is_empty(), "{acts:?}");
    assert_failed(&h.state("broken"), FailureClass::User, "no such program");
}
