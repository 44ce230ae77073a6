//! What every engine test uses: workflows compiled from text, a run
//! wrapped in a fake driver, and readers of the actions it answers with.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kaon_engine::eval::bind_params;
pub use kaon_engine::event::Invocation as Cmd;
pub use kaon_engine::program::TNode;
pub use kaon_engine::{
    Action, Event, Exit, FailureClass, FailurePolicy, KillReason, LaunchOrder, Millis, NodeId,
    NodeInfo, NodeRecord, Program, RunData, RunOptions, RunState, RunStatus, ScopeRecord,
    SkipReason, StepState, Timer,
};
pub use serde_json::{Map, Value, json};

/// Where in-memory workflows claim to live; nothing is read from there.
pub const WF: &str = "/tmp/wf/wf.toml";

/// Loads and compiles a workflow, showing the diagnostics when it is not
/// valid.
pub fn compile(path: &Path, text: &str) -> Arc<Program> {
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
pub fn handle(node: NodeId) -> Value {
    json!({ "pid": 1000 + node.0 })
}

/// A JSON object as an output map (`null` for none).
pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => panic!("outputs must be an object, not {other}"),
    }
}

pub fn argv(o: &LaunchOrder) -> &[String] {
    match &o.invocation {
        Cmd::Argv { argv } => argv,
        other => panic!("{} does not run an argv: {other:?}", o.key),
    }
}

pub fn env<'a>(o: &'a LaunchOrder, name: &str) -> Option<&'a str> {
    o.env
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What the store would hold after every delta was written.
#[derive(Clone, Default)]
pub struct Saved {
    pub run: Option<(RunStatus, RunData)>,
    pub scopes: Vec<ScopeRecord>,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
}

/// A run with a fake driver around it: enqueued steps are admitted at once,
/// launches are answered with a handle, timers are noted (fired only when
/// the test says), and exits happen when the test says.
pub struct H {
    pub run: RunState,
    pub now: Millis,
    /// Every action, in order.
    pub log: Vec<Action>,
    /// Every launch order, in order.
    pub launches: Vec<LaunchOrder>,
    /// Attempts launched (or reattached) whose exit was not fed yet.
    pub running: VecDeque<LaunchOrder>,
    /// Timers set and not fired yet: (node, attempt, at, which).
    pub timers: Vec<(NodeId, u32, Millis, Timer)>,
    /// Answer `Launch` with `StepLaunched` at once.
    pub auto_launch: bool,
    pub saved: Saved,
}

impl H {
    pub fn new(text: &str) -> H {
        H::with(text, Map::new(), RunOptions::default())
    }

    pub fn with(text: &str, given: Map<String, Value>, options: RunOptions) -> H {
        H::build(compile(Path::new(WF), text), given, options)
    }

    pub fn build(program: Arc<Program>, given: Map<String, Value>, options: RunOptions) -> H {
        let params = bind_params(&program.workflow.workflow.params, &given).unwrap();
        H::wrap(RunState::new("r1", program, params, options))
    }

    pub fn wrap(run: RunState) -> H {
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

    pub fn start(&mut self) -> Vec<Action> {
        self.feed(Event::RunStarted)
    }

    /// Applies an event and whatever the fake driver answers to the actions
    /// it causes; returns every action, in order.
    pub fn feed(&mut self, event: Event) -> Vec<Action> {
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
                    // The fake driver finds no earlier result: the step runs
                    // under a key made from its instance key. Without
                    // auto_launch the test answers (MemoHit or MemoMiss).
                    Action::LookupMemo(order) => {
                        if self.auto_launch {
                            queue.push_back(Event::MemoMiss {
                                node: order.node,
                                attempt: order.attempt,
                                key: Some(format!("key:{}", order.key)),
                            });
                        } else {
                            self.launches.push((**order).clone());
                            self.running.push_back((**order).clone());
                        }
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
    pub fn save(&mut self) {
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
    pub fn take(&mut self, key: &str) -> LaunchOrder {
        let Some(i) = self.running.iter().position(|o| o.key == key) else {
            let keys: Vec<&str> = self.running.iter().map(|o| o.key.as_str()).collect();
            panic!("`{key}` is not running; running: {keys:?}");
        };
        self.running.remove(i).unwrap()
    }

    pub fn exit(&mut self, key: &str, code: i32, outputs: Value) -> Vec<Action> {
        self.exit_how(key, Exit::Code { code }, outputs)
    }

    pub fn exit_how(&mut self, key: &str, exit: Exit, outputs: Value) -> Vec<Action> {
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
    pub fn fire(&mut self, node: NodeId, attempt: u32, timer: Timer) -> Vec<Action> {
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
    pub fn drive(&mut self, mut decide: impl FnMut(&LaunchOrder) -> (i32, Value)) -> Vec<Action> {
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

    pub fn keys(&self) -> Vec<String> {
        self.run.nodes().map(|(id, _)| self.run.key(id)).collect()
    }

    pub fn find(&self, key: &str) -> Option<NodeId> {
        self.run
            .nodes()
            .map(|(id, _)| id)
            .find(|id| self.run.key(*id) == key)
    }

    pub fn id(&self, key: &str) -> NodeId {
        self.find(key)
            .unwrap_or_else(|| panic!("no node `{key}`; nodes: {:?}", self.keys()))
    }

    pub fn state(&self, key: &str) -> StepState {
        self.run.node(self.id(key)).unwrap().state.clone()
    }

    pub fn info(&self, key: &str) -> NodeInfo {
        self.run.node(self.id(key)).unwrap().info.clone()
    }

    /// The one block node that `is` picks.
    pub fn block(&self, is: fn(&TNode) -> bool) -> NodeId {
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
    pub fn launched(&self) -> Vec<String> {
        self.launches.iter().map(|o| o.key.clone()).collect()
    }

    /// Keys of the steps the actions enqueue.
    pub fn enqueued(&self, actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Enqueue { node, .. } => Some(self.run.key(*node)),
                _ => None,
            })
            .collect()
    }

    pub fn finishes(&self) -> Vec<RunStatus> {
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
pub fn launches_in(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Launch(o) if o.memo.is_none() => Some(o.key.clone()),
            Action::LookupMemo(o) => Some(o.key.clone()),
            _ => None,
        })
        .collect()
}

/// The timers among the actions: (node, attempt, at, which).
pub fn timers_in(actions: &[Action]) -> Vec<(NodeId, u32, Millis, Timer)> {
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

pub fn kills_in(actions: &[Action]) -> Vec<(NodeId, u32, Value, KillReason)> {
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

pub fn run_finished(actions: &[Action]) -> Option<RunStatus> {
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

pub fn assert_failed(s: &StepState, class: FailureClass, needle: &str) {
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

pub fn is_running(s: &StepState) -> bool {
    matches!(s, StepState::Running { .. })
}

/// The run as a restarted driver rebuilds it from what `saved` holds.
pub fn restore(h: &H, saved: &Saved) -> RunState {
    let (status, data) = saved.run.clone().unwrap();
    let nodes: Vec<(NodeId, kaon_engine::NodeData)> = saved
        .nodes
        .values()
        .map(|r| (r.id, r.data.clone()))
        .collect();
    let fresh = RunState::new(
        h.run.id.clone(),
        h.run.program.clone(),
        h.run.params.clone(),
        h.run.options.clone(),
    );
    RunState::restore(fresh, status, data, saved.scopes.clone(), nodes).unwrap()
}
