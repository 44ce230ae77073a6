//! Each attempt that ends leaves a record in its node's history: its
//! exit, its failure, when it ran. Retries by hand keep the earlier ones;
//! the history keeps the latest 50.

use kaon_engine::{AttemptOutcome, AttemptRecord, NodeData};

use crate::support::*;

const FLAKY: &str = r#"
[workflow]
name = "flaky"
flow = '''flaky -> after'''

[steps.flaky]
kind = "command"
command = ["flaky"]
retries = 2
retry_backoff = "1s"

[steps.after]
kind = "command"
command = ["after"]
"#;

/// (attempt, exit code, failure class, outcome) of each record.
fn summary(h: &[AttemptRecord]) -> Vec<(u32, Option<i32>, Option<FailureClass>, AttemptOutcome)> {
    h.iter()
        .map(|r| {
            (
                r.attempt,
                r.exit_code,
                r.failure.as_ref().map(|f| f.class),
                r.state,
            )
        })
        .collect()
}

#[test]
fn a_step_failing_twice_then_succeeding_has_three_records() {
    let mut h = H::new(FLAKY);
    h.now = 10_000;
    h.start();
    let id = h.id("flaky");

    h.now = 12_000;
    h.exit("flaky", 3, json!({}));
    h.fire(id, 2, Timer::Retry);
    let second_start = h.now;
    h.now += 500;
    h.exit_how(
        "flaky",
        Exit::Lost {
            message: "the worker vanished".into(),
        },
        Value::Null,
    );
    h.fire(id, 3, Timer::Retry);
    h.now += 700;
    h.exit("flaky", 0, json!({}));
    assert_eq!(h.state("flaky"), StepState::Succeeded);

    let info = h.info("flaky");
    use AttemptOutcome::*;
    assert_eq!(
        summary(&info.history),
        [
            (1, Some(3), Some(FailureClass::User), Failed),
            (2, None, Some(FailureClass::Platform), Failed),
            (3, Some(0), None, Succeeded),
        ]
    );
    let first = &info.history[0];
    assert_eq!(
        (first.started, first.finished),
        (Some(10_000), Some(12_000))
    );
    assert_eq!(
        first.failure.as_ref().unwrap().message,
        "exited with status 3"
    );
    let second = &info.history[1];
    assert_eq!(second.started, Some(second_start));
    assert_eq!(second.finished, Some(second_start + 500));
    assert_eq!(
        second.failure.as_ref().unwrap().message,
        "the worker vanished"
    );
    // The last attempt's facts are as they were.
    assert_eq!((info.attempts, info.exit_code), (3, Some(0)));

    // Stored: the field names the UI reads, and read back by a restart.
    let saved = h.saved.nodes.get(&id).unwrap();
    let v = serde_json::to_value(&saved.data).unwrap();
    assert_eq!(
        v["history"][0],
        json!({
            "attempt": 1,
            "started": 10_000,
            "finished": 12_000,
            "exit_code": 3,
            "failure": {"class": "user", "message": "exited with status 3", "exit_code": 3},
            "state": "failed",
        })
    );
    assert_eq!(v["history"][2]["state"], "succeeded");
    assert_eq!(v["history"][2]["exit_code"], 0);
    assert!(v["history"][1].get("exit_code").is_none(), "{v}");
    let back: NodeData = serde_json::from_value(v).unwrap();
    assert_eq!(back.info.history, info.history);
    let restored = restore(&h, &h.saved);
    assert_eq!(restored.node(id).unwrap().info.history, info.history);
}

#[test]
fn stored_data_without_a_history_still_reads_and_none_is_not_written() {
    let old = json!({"state": "failed", "failure": {"class": "user", "message": "x"}, "attempts": 2, "exit_code": 1});
    let d: NodeData = serde_json::from_value(old).unwrap();
    assert!(d.info.history.is_empty());
    let again = serde_json::to_value(&d).unwrap();
    assert!(again.get("history").is_none(), "{again}");
}

const BRANCHES: &str = r#"
[workflow]
name = "branches"
flow = '''a -> b -> c'''

[steps]
a = { kind = "command", command = ["a"] }
b = { kind = "command", command = ["b"] }
c = { kind = "command", command = ["c"] }
"#;

#[test]
fn a_step_retried_by_hand_keeps_its_earlier_records() {
    let mut h = H::new(BRANCHES);
    h.start();
    h.drive(|o| (if o.step == "b" { 4 } else { 0 }, json!({})));
    assert_eq!(h.run.status, RunStatus::Failed);
    use AttemptOutcome::*;
    assert_eq!(
        summary(&h.info("b").history),
        [(1, Some(4), Some(FailureClass::User), Failed)]
    );
    assert!(h.info("c").history.is_empty(), "c never ran");

    h.now += 60_000;
    let acts = h.run.retry("b", h.now).unwrap();
    h.save();
    // The reset keeps the record, in memory and in what is stored.
    assert_eq!(h.info("b").history.len(), 1);
    let b = h.id("b");
    assert_eq!(h.saved.nodes.get(&b).unwrap().data.info.history.len(), 1);
    for a in acts {
        if let Action::Enqueue { node, .. } = a {
            h.feed(Event::StepAdmitted { node });
        }
    }
    h.drive(|_| (0, json!({})));
    assert_eq!(h.run.status, RunStatus::Succeeded);
    assert_eq!(
        summary(&h.info("b").history),
        [
            (1, Some(4), Some(FailureClass::User), Failed),
            (2, Some(0), None, Succeeded),
        ]
    );
    assert_eq!(h.info("b").history[1].started, Some(h.now));
    // A first attempt that succeeded is the node's own fields: no record.
    assert!(h.info("a").history.is_empty(), "{:?}", h.info("a").history);
    assert_eq!(h.info("a").exit_code, Some(0));
}

#[test]
fn the_history_keeps_the_latest_fifty_attempts() {
    let text = r#"
[workflow]
name = "many"
flow = '''many'''

[steps.many]
kind = "command"
command = ["false"]
retries = 59
retry_backoff = "1s"
"#;
    let mut h = H::new(text);
    h.start();
    h.drive(|_| (1, json!({})));
    assert_failed(&h.state("many"), FailureClass::User, "status 1");
    let info = h.info("many");
    assert_eq!(info.attempts, 60);
    assert_eq!(info.history.len(), kaon_engine::state::MAX_HISTORY);
    let numbers: Vec<u32> = info.history.iter().map(|r| r.attempt).collect();
    assert_eq!(numbers, (11..=60).collect::<Vec<u32>>());
}

#[test]
fn cancelled_timed_out_and_memoized_attempts() {
    let text = r#"
[workflow]
name = "ends"
flow = '''==> (slow, capped, cached) >=='''

[steps.slow]
kind = "command"
command = ["sleep", "9"]

[steps.capped]
kind = "command"
command = ["sleep", "9"]
timeout = "5s"

[steps.cached]
kind = "command"
command = ["make"]
"#;
    let mut h = H::new(text);
    h.auto_launch = false;
    h.start();
    let cached = h.take("cached");
    h.feed(Event::MemoHit {
        node: cached.node,
        attempt: 1,
        key: "blake3:k".into(),
        from: "old/cached".into(),
        outputs: Map::new(),
        artifacts: vec![],
    });
    assert!(matches!(h.state("cached"), StepState::Memoized { .. }));
    assert!(h.info("cached").history.is_empty(), "a reuse is no attempt");
    for k in ["slow", "capped"] {
        let o = h.take(k);
        h.feed(Event::MemoMiss {
            node: o.node,
            attempt: 1,
            key: None,
        });
        h.feed(Event::StepLaunched {
            node: o.node,
            attempt: 1,
            handle: handle(o.node),
            memo_key: None,
        });
    }
    let capped = h.id("capped");
    h.now += 5_000;
    h.fire(capped, 1, Timer::Timeout);
    h.exit_how("capped", Exit::Signal { signal: 15 }, Value::Null);
    h.feed(Event::CancelRequested {
        reason: "enough".into(),
    });
    h.exit("slow", 143, json!({}));
    assert_eq!(h.state("slow"), StepState::Cancelled);
    use AttemptOutcome::*;
    assert_eq!(
        summary(&h.info("slow").history),
        [(1, Some(143), None, Cancelled)]
    );
    assert_eq!(
        summary(&h.info("capped").history),
        [(1, None, Some(FailureClass::Timeout), Failed)]
    );
}

#[test]
fn wait_steps_record_their_attempts_and_blocks_none() {
    let text = r#"
[workflow]
name = "waits"
flow = '''approve -> **(x = ["a", "b"]) --< (each) >--'''

[steps.approve]
kind = "wait"
timeout = "10s"
retries = 1
retry_backoff = "1s"

[steps.each]
kind = "command"
command = ["echo", "${x}"]
"#;
    let mut h = H::new(text);
    h.start();
    let id = h.id("approve");
    h.now = 11_000;
    h.fire(id, 1, Timer::Timeout);
    h.fire(id, 2, Timer::Retry);
    h.feed(Event::SignalReceived {
        name: "approve".into(),
        value: json!("yes"),
    });
    use AttemptOutcome::*;
    assert_eq!(
        summary(&h.info("approve").history),
        [
            (1, None, Some(FailureClass::Timeout), Failed),
            (2, None, None, Succeeded),
        ]
    );
    h.drive(|_| (0, json!({})));
    assert_eq!(h.run.status, RunStatus::Succeeded);
    let block = h.block(|n| matches!(n, TNode::ForEach { .. }));
    assert!(h.run.node(block).unwrap().info.history.is_empty());
    assert!(
        h.info("each[x=a]").history.is_empty(),
        "first attempt succeeded"
    );
}
