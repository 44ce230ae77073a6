//! The scheduler state machine driven by hand: workflows built from TOML
//! text, events fed one by one, and the actions and node states it answers
//! with checked. No executor, no store, no clock: time is a number the test
//! moves, and every process exits the way the test says.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kaon_engine::eval::bind_params;
use kaon_engine::event::Invocation as Cmd;
use kaon_engine::program::TNode;
use kaon_engine::{
    Action, Event, Exit, FailureClass, FailurePolicy, KillReason, LaunchOrder, Millis, NodeId,
    NodeInfo, NodeRecord, Program, RunData, RunOptions, RunState, RunStatus, ScopeRecord,
    SkipReason, StepState, Timer,
};
use serde_json::{Map, Value, json};

/// Where in-memory workflows claim to live; nothing is read from there.
const WF: &str = "/tmp/wf/wf.toml";

/// Loads and compiles a workflow, showing the diagnostics when it is not
/// valid.
fn compile(path: &Path, text: &str) -> Arc<Program> {
    let loaded = kaon_model::load_str(path, text);
    assert!(
        loaded.result.is_some(),
        "the test workflow does not load:\n{}",
        loaded.diagnostics.render(&loaded.sources, false)
    );
    let validated = loaded.result.unwrap();
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Arc::new(Program::new(Arc::new(validated), base))
}

/// The handle the fake executor reports for a node: distinct per node, so
/// that a reattach can be checked to carry the right one.
fn handle(node: NodeId) -> Value {
    json!({ "pid": 1000 + node.0 })
}

/// A JSON object as an output map (`null` for none).
fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => panic!("outputs must be an object, not {other}"),
    }
}

fn argv(o: &LaunchOrder) -> &[String] {
    match &o.invocation {
        Cmd::Argv { argv } => argv,
        other => panic!("{} does not run an argv: {other:?}", o.key),
    }
}

fn env<'a>(o: &'a LaunchOrder, name: &str) -> Option<&'a str> {
    o.env
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What the store would hold after every delta was written.
#[derive(Default)]
struct Saved {
    run: Option<(RunStatus, RunData)>,
    scopes: Vec<ScopeRecord>,
    nodes: BTreeMap<NodeId, NodeRecord>,
}

/// A run with a fake driver around it: enqueued steps are admitted at once,
/// launches are answered with a handle, timers are noted (fired only when
/// the test says), and exits happen when the test says.
struct H {
    run: RunState,
    now: Millis,
    /// Every action, in order.
    log: Vec<Action>,
    /// Every launch order, in order.
    launches: Vec<LaunchOrder>,
    /// Attempts launched (or reattached) whose exit was not fed yet.
    running: VecDeque<LaunchOrder>,
    /// Timers set and not fired yet: (node, attempt, at, which).
    timers: Vec<(NodeId, u32, Millis, Timer)>,
    /// Answer `Launch` with `StepLaunched` at once.
    auto_launch: bool,
    saved: Saved,
}

impl H {
    fn new(text: &str) -> H {
        H::with(text, Map::new(), RunOptions::default())
    }

    fn with(text: &str, given: Map<String, Value>, options: RunOptions) -> H {
        H::build(compile(Path::new(WF), text), given, options)
    }

    fn build(program: Arc<Program>, given: Map<String, Value>, options: RunOptions) -> H {
        let params = bind_params(&program.workflow.workflow.params, &given).unwrap();
        H::wrap(RunState::new("r1", program, params, options))
    }

    fn wrap(run: RunState) -> H {
        H {
            run,
            now: 1_000,
            log: Vec::new(),
            launches: Vec::new(),
            running: VecDeque::new(),
            timers: Vec::new(),
            auto_launch: true,
            saved: Saved::default(),
        }
    }

    fn start(&mut self) -> Vec<Action> {
        self.feed(Event::RunStarted)
    }

    /// Applies an event and whatever the fake driver answers to the actions
    /// it causes; returns every action, in order.
    fn feed(&mut self, event: Event) -> Vec<Action> {
        let mut queue = VecDeque::from([event]);
        let mut out = Vec::new();
        while let Some(ev) = queue.pop_front() {
            let actions = self.run.apply(ev, self.now).unwrap();
            self.save();
            for a in &actions {
                match a {
                    Action::Enqueue { node, .. } => {
                        queue.push_back(Event::StepAdmitted { node: *node });
                    }
                    Action::Launch(order) => {
                        if self.auto_launch {
                            queue.push_back(Event::StepLaunched {
                                memo_key: None,
                                node: order.node,
                                attempt: order.attempt,
                                handle: handle(order.node),
                            });
                        }
                        self.launches.push((**order).clone());
                        self.running.push_back((**order).clone());
                    }
                    Action::Reattach { order, .. } => self.running.push_back((**order).clone()),
                    Action::SetTimer {
                        node,
                        attempt,
                        at,
                        timer,
                    } => self.timers.push((*node, *attempt, *at, *timer)),
                    _ => {}
                }
            }
            self.log.extend(actions.iter().cloned());
            out.extend(actions);
        }
        out
    }

    /// Writes the delta as a store would: the latest record per node.
    fn save(&mut self) {
        let d = self.run.take_delta();
        if let Some(r) = d.run {
            self.saved.run = Some(r);
        }
        self.saved.scopes.extend(d.scopes);
        for n in d.nodes {
            self.saved.nodes.insert(n.id, n);
        }
    }

    /// Removes the running attempt of `key` from the fake executor.
    fn take(&mut self, key: &str) -> LaunchOrder {
        let Some(i) = self.running.iter().position(|o| o.key == key) else {
            let keys: Vec<&str> = self.running.iter().map(|o| o.key.as_str()).collect();
            panic!("`{key}` is not running; running: {keys:?}");
        };
        self.running.remove(i).unwrap()
    }

    fn exit(&mut self, key: &str, code: i32, outputs: Value) -> Vec<Action> {
        self.exit_how(key, Exit::Code { code }, outputs)
    }

    fn exit_how(&mut self, key: &str, exit: Exit, outputs: Value) -> Vec<Action> {
        let o = self.take(key);
        self.feed(Event::StepExited {
            artifacts: vec![],
            reads: vec![],
            node: o.node,
            attempt: o.attempt,
            exit,
            outputs: obj(outputs),
            problems: vec![],
        })
    }

    /// Fires a timer (at its time, when that is later than now).
    fn fire(&mut self, node: NodeId, attempt: u32, timer: Timer) -> Vec<Action> {
        if let Some(i) = self
            .timers
            .iter()
            .position(|t| (t.0, t.1, t.3) == (node, attempt, timer))
        {
            let (.., at, _) = self.timers.remove(i);
            self.now = self.now.max(at);
        }
        self.feed(Event::TimerFired {
            node,
            attempt,
            timer,
        })
    }

    /// Lets every running attempt exit as `decide` says, firing retry timers
    /// as they come due, until nothing runs and no retry is owed.
    fn drive(&mut self, mut decide: impl FnMut(&LaunchOrder) -> (i32, Value)) -> Vec<Action> {
        let mut out = Vec::new();
        loop {
            if let Some(o) = self.running.pop_front() {
                let (code, outputs) = decide(&o);
                out.extend(self.feed(Event::StepExited {
                    artifacts: vec![],
                    reads: vec![],
                    node: o.node,
                    attempt: o.attempt,
                    exit: Exit::Code { code },
                    outputs: obj(outputs),
                    problems: vec![],
                }));
            } else if let Some(t) = self
                .timers
                .iter()
                .filter(|t| t.3 == Timer::Retry)
                .min_by_key(|t| t.2)
                .copied()
            {
                out.extend(self.fire(t.0, t.1, t.3));
            } else {
                return out;
            }
        }
    }

    // ----- reading -----

    fn keys(&self) -> Vec<String> {
        self.run.nodes().map(|(id, _)| self.run.key(id)).collect()
    }

    fn find(&self, key: &str) -> Option<NodeId> {
        self.run
            .nodes()
            .map(|(id, _)| id)
            .find(|id| self.run.key(*id) == key)
    }

    fn id(&self, key: &str) -> NodeId {
        self.find(key)
            .unwrap_or_else(|| panic!("no node `{key}`; nodes: {:?}", self.keys()))
    }

    fn state(&self, key: &str) -> StepState {
        self.run.node(self.id(key)).unwrap().state.clone()
    }

    fn info(&self, key: &str) -> NodeInfo {
        self.run.node(self.id(key)).unwrap().info.clone()
    }

    /// The one block node that `is` picks.
    fn block(&self, is: fn(&TNode) -> bool) -> NodeId {
        let ids: Vec<NodeId> = self
            .run
            .nodes()
            .map(|(id, _)| id)
            .filter(|id| is(self.run.tnode(*id)))
            .collect();
        assert_eq!(ids.len(), 1, "expected one such block, found {ids:?}");
        ids[0]
    }

    /// Keys of every step launched so far, in order.
    fn launched(&self) -> Vec<String> {
        self.launches.iter().map(|o| o.key.clone()).collect()
    }

    /// Keys of the steps the actions enqueue.
    fn enqueued(&self, actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Enqueue { node, .. } => Some(self.run.key(*node)),
                _ => None,
            })
            .collect()
    }

    fn finishes(&self) -> Vec<RunStatus> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::RunFinished { status } => Some(*status),
                _ => None,
            })
            .collect()
    }
}

/// Keys of the launch orders among the actions.
fn launches_in(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Launch(o) => Some(o.key.clone()),
            _ => None,
        })
        .collect()
}

/// The timers among the actions: (node, attempt, at, which).
fn timers_in(actions: &[Action]) -> Vec<(NodeId, u32, Millis, Timer)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SetTimer {
                node,
                attempt,
                at,
                timer,
            } => Some((*node, *attempt, *at, *timer)),
            _ => None,
        })
        .collect()
}

fn kills_in(actions: &[Action]) -> Vec<(NodeId, u32, Value, KillReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Kill {
                node,
                attempt,
                handle,
                reason,
            } => Some((*node, *attempt, handle.clone(), *reason)),
            _ => None,
        })
        .collect()
}

fn run_finished(actions: &[Action]) -> Option<RunStatus> {
    let f: Vec<RunStatus> = actions
        .iter()
        .filter_map(|a| match a {
            Action::RunFinished { status } => Some(*status),
            _ => None,
        })
        .collect();
    assert!(f.len() <= 1, "the run finished twice: {f:?}");
    f.first().copied()
}

fn assert_failed(s: &StepState, class: FailureClass, needle: &str) {
    match s {
        StepState::Failed { failure } => {
            assert_eq!(failure.class, class, "{failure:?}");
            assert!(
                failure.message.contains(needle),
                "`{}` does not mention `{needle}`",
                failure.message
            );
        }
        other => panic!("expected failed ({class:?}), got {other:?}"),
    }
}

fn is_running(s: &StepState) -> bool {
    matches!(s, StepState::Running { .. })
}

// ---------------------------------------------------------------------------

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

const REPEAT: &str = r#"
[workflow]
name = "repeat"
flow = '''^^(until = ${evaluate.stable}, max = MAX) --< (evaluate) >-- -> done'''

[steps]
evaluate = { kind = "command", command = ["eval"], outputs = { stable = "bool" } }
done = { kind = "command", command = ["true"] }
"#;

fn is_repeat(t: &TNode) -> bool {
    matches!(t, TNode::Repeat { .. })
}

#[test]
fn repeat_runs_passes_until_the_condition_holds() {
    let mut h = H::new(&REPEAT.replace("MAX", "5"));
    h.start();
    let rep = h.block(is_repeat);
    assert_eq!(h.launched(), ["evaluate[pass=1]"]);

    let acts = h.exit("evaluate[pass=1]", 0, json!({"stable": false}));
    assert_eq!(launches_in(&acts), ["evaluate[pass=2]"]);
    assert!(is_running(&h.run.node(rep).unwrap().state));
    assert_eq!(h.run.node(rep).unwrap().info.items, Some(2));
    let acts = h.exit("evaluate[pass=2]", 0, json!({"stable": false}));
    assert_eq!(launches_in(&acts), ["evaluate[pass=3]"]);
    assert_eq!(h.state("done"), StepState::Pending);

    let acts = h.exit("evaluate[pass=3]", 0, json!({"stable": true}));
    assert_eq!(launches_in(&acts), ["done"]);
    let block = h.run.node(rep).unwrap();
    assert_eq!(block.state, StepState::Succeeded);
    assert_eq!(block.info.items, Some(3));
    assert!(
        block
            .info
            .note
            .clone()
            .unwrap_or_default()
            .contains("pass 3")
    );
    assert_eq!(h.run.children(rep).len(), 3, "three passes, three scopes");
    let keys: BTreeSet<String> = h.keys().into_iter().collect();
    for p in 1..=3 {
        assert!(keys.contains(&format!("evaluate[pass={p}]")));
    }
    assert!(!keys.contains("evaluate[pass=4]"));

    h.exit("done", 0, json!({}));
    assert_eq!(h.run.status, RunStatus::Succeeded);
    assert_eq!(
        h.launched(),
        [
            "evaluate[pass=1]",
            "evaluate[pass=2]",
            "evaluate[pass=3]",
            "done"
        ]
    );
}

#[test]
fn repeat_fails_when_max_passes_do_not_satisfy_the_condition() {
    let mut h = H::new(&REPEAT.replace("MAX", "2"));
    h.start();
    h.drive(|o| {
        assert_eq!(o.step, "evaluate", "nothing else may run");
        (0, json!({"stable": false}))
    });
    assert_eq!(h.launched(), ["evaluate[pass=1]", "evaluate[pass=2]"]);
    let rep = h.block(is_repeat);
    assert_failed(
        &h.run.node(rep).unwrap().state,
        FailureClass::User,
        "after 2 passes",
    );
    assert!(matches!(
        h.state("done"),
        StepState::Skipped {
            reason: SkipReason::UpstreamFailed { .. }
        }
    ));
    assert_eq!(h.run.status, RunStatus::Failed);
    assert_eq!(h.finishes(), [RunStatus::Failed]);
}

const NESTED: &str = r#"
[workflow]
name = "nested"
flow = '''prep -> **(reg = ${prep.regions}) --< ( **(m = ["a", "b"]) --< (fit) >-- ) >-- -> collect'''

[steps.prep]
kind = "command"
command = ["prep"]
outputs = { regions = "list<string>" }

[steps.fit]
kind = "command"
command = ["fit", "${reg}", "${m}"]
outputs = { score = "float" }

[steps.collect]
kind = "command"
command = ["echo", "${fit.score}"]
"#;

#[test]
fn nested_for_each_over_an_upstream_list_collects_outputs_in_item_order() {
    let mut h = H::new(NESTED);
    h.start();
    assert!(
        !h.keys().iter().any(|k| k.starts_with("fit")),
        "the list is not known yet: {:?}",
        h.keys()
    );

    let acts = h.exit("prep", 0, json!({"regions": ["US", "CA", "MX"]}));
    let fits = launches_in(&acts);
    assert_eq!(fits.len(), 6, "{fits:?}");
    let distinct: BTreeSet<&String> = fits.iter().collect();
    assert_eq!(distinct.len(), 6, "keys must differ: {fits:?}");
    let regs = ["US", "CA", "MX"];
    let ms = ["a", "b"];
    let mut want = BTreeSet::new();
    for r in regs {
        for m in ms {
            want.insert(format!("fit[reg={r}, m={m}]"));
        }
    }
    assert_eq!(distinct, want.iter().collect());
    for o in &h.launches[1..] {
        let a = argv(o);
        assert_eq!(o.key, format!("fit[reg={}, m={}]", a[1], a[2]), "{a:?}");
        assert_eq!(env(o, "KAON_VAR_REG"), Some(a[1].as_str()));
        assert_eq!(env(o, "KAON_VAR_M"), Some(a[2].as_str()));
    }
    let outer =
        h.block(|t| matches!(t, TNode::ForEach { bindings, .. } if bindings[0].var.name == "reg"));
    assert_eq!(h.run.node(outer).unwrap().info.items, Some(3));

    // Finish the fits in reverse order: the collected list still follows
    // the items.
    let score = |r: &str, m: &str| {
        let ri = regs.iter().position(|x| *x == r).unwrap() as f64;
        let mi = ms.iter().position(|x| *x == m).unwrap() as f64;
        ri * 10.0 + mi * 0.25 + 0.25
    };
    let mut order: Vec<String> = fits.clone();
    order.reverse();
    for (i, k) in order.iter().enumerate() {
        let o = h.running.iter().find(|o| &o.key == k).unwrap().clone();
        let a = argv(&o);
        let acts = h.exit(k, 0, json!({ "score": score(&a[1], &a[2]) }));
        if i < 5 {
            assert!(launches_in(&acts).is_empty(), "collect waits for all fits");
            assert_eq!(h.state("collect"), StepState::Pending);
        } else {
            assert_eq!(launches_in(&acts), ["collect"]);
        }
    }
    assert_eq!(h.run.node(outer).unwrap().state, StepState::Succeeded);

    let collect = h.launches.last().unwrap();
    let got: Value = serde_json::from_str(&argv(collect)[1]).unwrap();
    assert_eq!(
        got,
        json!([[0.25, 0.5], [10.25, 10.5], [20.25, 20.5]]),
        "argv: {:?}",
        argv(collect)
    );
    let acts = h.exit("collect", 0, json!({}));
    assert_eq!(run_finished(&acts), Some(RunStatus::Succeeded));
}

const WHEN: &str = r#"
[workflow]
name = "when"
flow = '''a -> ??(${a.go}) --< (BRANCHES) >-- -> after'''

[steps]
a = { kind = "command", command = ["true"], outputs = { go = "bool" } }
yes = { kind = "command", command = ["true"] }
no = { kind = "command", command = ["true"] }
after = { kind = "command", command = ["true"] }
"#;

fn is_when(t: &TNode) -> bool {
    matches!(t, TNode::When { .. })
}

#[test]
fn when_takes_exactly_one_branch() {
    for (go, taken, other) in [(true, "yes", "no"), (false, "no", "yes")] {
        let mut h = H::new(&WHEN.replace("BRANCHES", "yes | no"));
        h.start();
        let acts = h.exit("a", 0, json!({ "go": go }));
        assert_eq!(launches_in(&acts), [taken], "go = {go}");
        assert_eq!(h.enqueued(&acts), [taken], "go = {go}");
        assert!(h.find(other).is_none(), "the branch not taken has no nodes");
        let acts = h.exit(taken, 0, json!({}));
        assert_eq!(launches_in(&acts), ["after"]);
        let w = h.block(is_when);
        assert_eq!(h.run.node(w).unwrap().state, StepState::Succeeded);
        h.drive(|_| (0, json!({})));
        assert_eq!(h.launched(), ["a", taken, "after"]);
        assert!(!h.log.iter().any(|a| match a {
            Action::Enqueue { node, .. } => h.run.key(*node) == other,
            _ => false,
        }));
        assert_eq!(h.run.status, RunStatus::Succeeded);
    }
}

#[test]
fn when_without_otherwise_skips_and_what_follows_still_runs() {
    let text = WHEN
        .replace("BRANCHES", "yes")
        .replace("no = { kind = \"command\", command = [\"true\"] }\n", "");
    let mut h = H::new(&text);
    h.start();
    let acts = h.exit("a", 0, json!({ "go": false }));
    let w = h.block(is_when);
    assert_eq!(
        h.run.node(w).unwrap().state,
        StepState::Skipped {
            reason: SkipReason::ConditionFalse
        }
    );
    assert_eq!(launches_in(&acts), ["after"]);
    assert!(h.find("yes").is_none());
    let acts = h.exit("after", 0, json!({}));
    assert_eq!(run_finished(&acts), Some(RunStatus::Succeeded));
    assert_eq!(h.launched(), ["a", "after"]);
}

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

const RESTORE: &str = r#"
[workflow]
name = "restore"
flow = '''a ==> (b, r, **(x = [1, 2]) --< (f) >--) >== z'''

[steps]
a = { kind = "command", command = ["true"] }
b = { kind = "command", command = ["sleep", "9"], timeout = "1h" }
r = { kind = "command", command = ["true"], retries = 2, retry_backoff = "1m" }
f = { kind = "command", command = ["f", "${x}"] }
z = { kind = "command", command = ["true"] }
"#;

#[test]
fn a_run_restored_from_its_deltas_picks_up_where_it_was() {
    let mut h = H::new(RESTORE);
    h.start();
    h.now += 1_000;
    h.exit("a", 0, json!({}));
    let mut started = h.launched();
    started.sort();
    assert_eq!(started, ["a", "b", "f[x=1]", "f[x=2]", "r"]);
    h.now += 1_000;
    h.exit("r", 1, json!({}));
    h.exit("f[x=1]", 0, json!({}));
    let r_at = match h.state("r") {
        StepState::Retrying { attempt: 2, at, .. } => at,
        other => panic!("expected retrying, got {other:?}"),
    };

    // Rebuild from what the store would hold.
    let (status, data) = h.saved.run.clone().unwrap();
    assert_eq!(status, RunStatus::Running);
    let scopes = h.saved.scopes.clone();
    assert_eq!(scopes.len(), 3, "the flow and two for-each items");
    let nodes: Vec<(NodeId, kaon_engine::NodeData)> = h
        .saved
        .nodes
        .values()
        .map(|r| (r.id, r.data.clone()))
        .collect();
    let fresh = RunState::new(
        "r1",
        h.run.program.clone(),
        h.run.params.clone(),
        h.run.options.clone(),
    );
    let restored = RunState::restore(fresh, status, data, scopes, nodes).unwrap();
    assert_eq!(restored.len(), h.run.len());
    for (id, n) in h.run.nodes() {
        let m = restored.node(id).unwrap();
        assert_eq!(restored.key(id), h.run.key(id));
        assert_eq!(m.state, n.state, "{}", h.run.key(id));
        assert_eq!(m.info, n.info, "{}", h.run.key(id));
    }

    let mut g = H::wrap(restored);
    g.now = h.now + 5_000;
    let acts = g.feed(Event::Recovered);
    let (b, f2, r) = (g.id("b"), g.id("f[x=2]"), g.id("r"));
    let mut reattached: Vec<(NodeId, u32, Value)> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Reattach {
                node,
                attempt,
                handle,
                order,
            } => {
                assert_eq!(order.node, *node);
                assert!(order.adopt);
                Some((*node, *attempt, handle.clone()))
            }
            _ => None,
        })
        .collect();
    reattached.sort_by_key(|x| x.0);
    let mut want = vec![(b, 1, handle(b)), (f2, 1, handle(f2))];
    want.sort_by_key(|x| x.0);
    assert_eq!(reattached, want);
    let b_started = h.info("b").attempt_started.unwrap();
    let mut timers = timers_in(&acts);
    timers.sort_by_key(|t| t.0);
    let mut want = vec![
        (r, 2, r_at, Timer::Retry),
        (b, 1, b_started + 3_600_000, Timer::Timeout),
    ];
    want.sort_by_key(|t| t.0);
    assert_eq!(timers, want, "the retry as it was, b's timeout as it was");
    assert_eq!(acts.len(), 4, "nothing for what already ended: {acts:?}");
    assert!(launches_in(&acts).is_empty());
    assert!(g.enqueued(&acts).is_empty());

    // Finish from the restored state.
    g.drive(|_| (0, json!({})));
    assert_eq!(g.launched(), ["r", "z"]);
    assert_eq!(g.launches[0].attempt, 2);
    assert_eq!(g.state("r"), StepState::Succeeded);
    assert_eq!(g.state("b"), StepState::Succeeded);
    let fe = g.block(|t| matches!(t, TNode::ForEach { .. }));
    assert_eq!(g.run.node(fe).unwrap().state, StepState::Succeeded);
    assert_eq!(g.run.status, RunStatus::Succeeded);
    assert_eq!(g.finishes(), [RunStatus::Succeeded]);
}

#[test]
fn twenty_thousand_items_run_to_the_end() {
    const N: usize = 20_000;
    let items: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    let text = format!(
        r#"
[workflow]
name = "wide"
flow = '''**(i = [{}]) --< (work) >-- -> done'''

[steps]
work = {{ kind = "command", command = ["work", "${{i}}"], outputs = {{ n = "int" }} }}
done = {{ kind = "command", command = ["done"] }}
"#,
        items.join(", ")
    );
    let started = std::time::Instant::now();
    let mut h = H::new(&text);
    let acts = h.start();
    assert_eq!(launches_in(&acts).len(), N);
    h.drive(|o| match o.step.as_str() {
        "work" => (0, json!({ "n": argv(o)[1].parse::<i64>().unwrap() })),
        _ => (0, json!({})),
    });
    let work: Vec<&LaunchOrder> = h.launches.iter().filter(|o| o.step == "work").collect();
    assert_eq!(work.len(), N);
    let keys: BTreeSet<&str> = work.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys.len(), N);
    assert_eq!(h.launches.iter().filter(|o| o.step == "done").count(), 1);
    assert_eq!(h.launches.last().unwrap().step, "done");
    assert_eq!(h.run.status, RunStatus::Succeeded);
    assert_eq!(h.finishes(), [RunStatus::Succeeded]);
    let fe = h.block(|t| matches!(t, TNode::ForEach { .. }));
    assert_eq!(h.run.node(fe).unwrap().info.items, Some(N as u32));
    assert_eq!(h.run.children(fe).len(), N);
    eprintln!("{N} items in {:?}", started.elapsed());
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

/// Reads of artifact outputs become a launch's inputs; a memoized step
/// counts as done for what follows; `cache = false` and `--no-cache` show
/// in the launch order.
#[test]
fn artifact_inputs_and_memoized_steps() {
    let text = r#"
[workflow]
name = "memo"
flow = "a -> b -> c"

[steps.a]
kind = "command"
command = ["make-data"]
outputs = { data = { type = "file", path = "data.csv" }, n = "int" }

[steps.b]
kind = "command"
command = ["train", "${a.data}", "${a.n}"]
cache_version = "v${a.n}"
outputs = { model = { type = "file", path = "model.bin" } }

[steps.c]
kind = "command"
cache = false
command = ["publish", "${b.model}"]
"#;
    let mut h = H::with(text, Map::new(), RunOptions::default());
    h.auto_launch = false;
    h.start();
    let a = h.take("a");
    let spec = a.memo.clone().unwrap();
    assert!(spec.reuse);
    assert_eq!(spec.kind, "command");
    assert!(a.inputs.is_empty());
    h.feed(Event::StepLaunched {
        node: a.node,
        attempt: 1,
        handle: handle(a.node),
        memo_key: Some("blake3:ka".into()),
    });
    let art = kaon_engine::OutputArtifact {
        name: "data".into(),
        id: "adata".into(),
        digest: "blake3:dd".into(),
        kind: "file".into(),
        size: 3,
        files: 1,
        media_type: "text/csv".into(),
        path: Some("/tmp/wf/data.csv".into()),
        memoized_from: None,
    };
    h.feed(Event::StepExited {
        node: a.node,
        attempt: 1,
        exit: Exit::Code { code: 0 },
        outputs: obj(json!({"data": "/tmp/wf/data.csv", "n": 3})),
        problems: vec![],
        artifacts: vec![art.clone()],
        reads: vec![],
    });
    assert_eq!(h.state("a"), StepState::Succeeded);
    let b = h.take("b");
    // Only the artifact output is an input; the int is in the command line.
    assert_eq!(
        b.inputs,
        [kaon_engine::InputRef {
            source: "a.data".into(),
            artifact: "adata".into(),
            digest: "blake3:dd".into(),
        }]
    );
    assert_eq!(b.memo.as_ref().unwrap().cache_version, "v3");
    h.feed(Event::StepMemoized {
        node: b.node,
        attempt: 1,
        key: "blake3:kb".into(),
        from: "old-run/b".into(),
        outputs: obj(json!({"model": "/tmp/wf/model.bin"})),
        artifacts: vec![],
    });
    assert_eq!(
        h.state("b"),
        StepState::Memoized {
            from: "old-run/b".into()
        }
    );
    let c = h.take("c");
    assert!(c.memo.is_none(), "cache = false: no memo key at all");
    assert_eq!(argv(&c)[1], "/tmp/wf/model.bin");
    let saved = h.saved.nodes.values().find(|n| n.key == "b").unwrap();
    assert_eq!(saved.data.info.memo_key.as_deref(), Some("blake3:kb"));
    assert_eq!(saved.data.info.inputs.len(), 1);

    // --no-cache: keys are still computed, never used to skip.
    let mut h = H::with(
        text,
        Map::new(),
        RunOptions {
            no_cache: true,
            ..RunOptions::default()
        },
    );
    h.auto_launch = false;
    h.start();
    assert!(!h.take("a").memo.unwrap().reuse);
}
