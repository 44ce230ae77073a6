//! The state of one run and the transitions that move it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use kaon_model::expr::{Ref, RefTarget};
use kaon_model::flow::ListSource;
use kaon_model::spec::{CommandRun, Step, StepKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::EngineError;
use crate::eval::{self, Resolve};
use crate::event::{
    Action, Event, Exit, InputRef, Invocation, LaunchOrder, MemoSpec, NodeId, OutputSpec, SparkJob,
    Timer,
};
use crate::program::{Program, TKind, TNode, TmplId};
use crate::retry::backoff;
use crate::state::{
    Failure, FailureClass, FailurePolicy, KillReason, Millis, NodeData, NodeInfo, Progress,
    RunData, RunOptions, RunStatus, SkipReason, StepState,
};

/// An instance of a template: the top-level flow, one item of a for-each,
/// one pass of a repeat, or the branch a `when` took.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The template it instantiates.
    pub tmpl: TmplId,
    /// The block node it belongs to (`None` for the top level).
    pub parent: Option<NodeId>,
    /// Item index (for-each) or pass number from 0 (repeat).
    pub index: u32,
    /// Loop variables bound by this scope.
    pub vars: Vec<(String, Value)>,
    /// Its first node; node `i` of the template is `base + i`.
    pub base: u32,
    left: u32,
    failed: u32,
    cancelled: u32,
}

/// One node of a run: a step instance or a block.
#[derive(Clone, Debug)]
pub struct Node {
    /// The scope it belongs to.
    pub scope: u32,
    /// Its index in the scope's template.
    pub idx: u32,
    /// Its state.
    pub state: StepState,
    /// Its facts.
    pub info: NodeInfo,
    preds_left: u32,
    children: Vec<u32>,
    children_left: u32,
    children_failed: u32,
    children_cancelled: u32,
}

/// A scope as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScopeRecord {
    /// Its id (position in the arena).
    pub id: u32,
    /// Its template.
    pub tmpl: u32,
    /// Its block node.
    pub parent: Option<u32>,
    /// Item index or pass.
    pub index: u32,
    /// Loop variables it binds.
    pub vars: Vec<(String, Value)>,
}

/// A node as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRecord {
    /// Its id.
    pub id: NodeId,
    /// Its scope.
    pub scope: u32,
    /// Its instance key, e.g. `train[reg=US]`.
    pub key: String,
    /// The step name or block label.
    pub name: String,
    /// Its kind (`command`, `for-each`, ...).
    pub kind: &'static str,
    /// State and facts.
    pub data: NodeData,
}

/// What changed since the last [`RunState::take_delta`]: exactly what the
/// store must write.
#[derive(Clone, Debug, Default)]
pub struct Delta {
    /// The run's status and data, when they changed.
    pub run: Option<(RunStatus, RunData)>,
    /// Scopes created.
    pub scopes: Vec<ScopeRecord>,
    /// Nodes whose state or facts changed (latest value only).
    pub nodes: Vec<NodeRecord>,
}

impl Delta {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.run.is_none() && self.scopes.is_empty() && self.nodes.is_empty()
    }
}

#[derive(Debug)]
enum Work {
    Finished(u32),
    Ready(u32),
}

/// The state of one run, held in memory by the driver.
#[derive(Debug)]
pub struct RunState {
    /// The run's id.
    pub id: String,
    /// What it runs.
    pub program: Arc<Program>,
    /// Parameter values (defaults filled in).
    pub params: Map<String, Value>,
    /// Run-wide settings.
    pub options: RunOptions,
    /// Running or how it ended.
    pub status: RunStatus,
    /// Run-level facts.
    pub data: RunData,
    scopes: Vec<Scope>,
    nodes: Vec<Node>,
    dirty: Vec<u32>,
    is_dirty: Vec<bool>,
    scopes_saved: usize,
    run_dirty: bool,
    work: VecDeque<Work>,
    out: Vec<Action>,
    now: Millis,
    param_env: Arc<Vec<(String, String)>>,
}

/// The longest parameter value passed in the environment. Linux refuses an
/// environment string over 128 KiB, and copying a big list into every
/// launch would cost time per step; such values reach steps through
/// `${params.NAME}` instead.
pub const MAX_ENV_VALUE: usize = 32 * 1024;

/// `KAON_PARAMS` (all parameters as one JSON object) and `KAON_PARAM_<NAME>`
/// per parameter, leaving out values longer than [`MAX_ENV_VALUE`].
fn param_env(params: &Map<String, Value>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let all = Value::Object(params.clone()).to_string();
    if all.len() <= MAX_ENV_VALUE {
        env.push(("KAON_PARAMS".to_string(), all));
    }
    for (k, v) in params {
        let text = eval::to_text(v);
        if text.len() <= MAX_ENV_VALUE {
            env.push((format!("KAON_PARAM_{}", env_name(k)), text));
        }
    }
    env
}

impl RunState {
    /// A new run, not yet started (feed [`Event::RunStarted`]).
    pub fn new(
        id: impl Into<String>,
        program: Arc<Program>,
        params: Map<String, Value>,
        options: RunOptions,
    ) -> RunState {
        let env = Arc::new(param_env(&params));
        RunState {
            id: id.into(),
            program,
            params,
            options,
            status: RunStatus::Running,
            data: RunData::default(),
            scopes: Vec::new(),
            nodes: Vec::new(),
            dirty: Vec::new(),
            is_dirty: Vec::new(),
            scopes_saved: 0,
            run_dirty: true,
            work: VecDeque::new(),
            out: Vec::new(),
            now: 0,
            param_env: env,
        }
    }

    /// Rebuilds a run from what the store holds. Scopes must come in id
    /// order; nodes not listed are pending. Feed [`Event::Recovered`] next.
    pub fn restore(
        mut run: RunState,
        status: RunStatus,
        data: RunData,
        scopes: Vec<ScopeRecord>,
        nodes: Vec<(NodeId, NodeData)>,
    ) -> Result<RunState, EngineError> {
        run.status = status;
        run.data = data;
        for s in scopes {
            if s.id as usize != run.scopes.len() {
                return Err(EngineError::Restore {
                    run: run.id.clone(),
                    reason: format!("scope {} stored out of order", s.id),
                });
            }
            if s.tmpl as usize >= run.program.tmpls.len() {
                return Err(EngineError::Restore {
                    run: run.id.clone(),
                    reason: format!(
                        "scope {} names template {} the workflow lacks",
                        s.id, s.tmpl
                    ),
                });
            }
            if let Some(p) = s.parent.filter(|p| *p as usize >= run.nodes.len()) {
                return Err(EngineError::Restore {
                    run: run.id.clone(),
                    reason: format!("scope {} belongs to unknown node {p}", s.id),
                });
            }
            run.alloc_scope(s.tmpl, s.parent.map(NodeId), s.index, s.vars);
        }
        for (id, d) in nodes {
            let Some(n) = run.nodes.get_mut(id.0 as usize) else {
                return Err(EngineError::Restore {
                    run: run.id.clone(),
                    reason: format!("node {id} is not part of any stored scope"),
                });
            };
            n.state = d.state;
            n.info = d.info;
        }
        run.recount();
        run.dirty.clear();
        run.is_dirty.iter_mut().for_each(|d| *d = false);
        run.scopes_saved = run.scopes.len();
        run.run_dirty = false;
        Ok(run)
    }

    /// Recomputes every counter from the node states.
    fn recount(&mut self) {
        for s in &mut self.scopes {
            s.left = 0;
            s.failed = 0;
            s.cancelled = 0;
        }
        for i in 0..self.nodes.len() {
            let (scope, idx) = (self.nodes[i].scope, self.nodes[i].idx);
            let tmpl = self.scopes[scope as usize].tmpl;
            let base = self.scopes[scope as usize].base;
            let preds_left = self.program.tmpls[tmpl as usize].preds[idx as usize]
                .iter()
                .filter(|p| {
                    !self.nodes[(base + **p) as usize]
                        .state
                        .lets_successors_run()
                })
                .count() as u32;
            let state = &self.nodes[i].state;
            let s = &mut self.scopes[scope as usize];
            match state {
                StepState::Cancelled => s.cancelled += 1,
                StepState::Failed { .. }
                | StepState::Skipped {
                    reason: SkipReason::UpstreamFailed { .. } | SkipReason::RunStopped,
                } => s.failed += 1,
                st if !st.is_terminal() => s.left += 1,
                _ => {}
            }
            let n = &mut self.nodes[i];
            n.preds_left = preds_left;
            n.children.clear();
            n.children_left = 0;
            n.children_failed = 0;
            n.children_cancelled = 0;
        }
        for si in 0..self.scopes.len() {
            let s = &self.scopes[si];
            let Some(b) = s.parent else { continue };
            let (done, failed, cancelled) = (s.left == 0, s.failed > 0, s.cancelled > 0);
            let n = &mut self.nodes[b.0 as usize];
            n.children.push(si as u32);
            if !done {
                n.children_left += 1;
            } else if failed {
                n.children_failed += 1;
            } else if cancelled {
                n.children_cancelled += 1;
            }
        }
    }

    // ----- reading -----

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True before the run started.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A node.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.0 as usize)
    }

    /// Every node with its id.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (NodeId(i as u32), n))
    }

    /// A scope.
    pub fn scope(&self, id: u32) -> &Scope {
        &self.scopes[id as usize]
    }

    /// The template node a run node instantiates.
    pub fn tnode(&self, id: NodeId) -> &TNode {
        let n = &self.nodes[id.0 as usize];
        self.program.node(self.scopes[n.scope as usize].tmpl, n.idx)
    }

    /// The child scopes of a block node, in order.
    pub fn children(&self, id: NodeId) -> &[u32] {
        &self.nodes[id.0 as usize].children
    }

    /// For a block: (finished children, failed children, total children).
    pub fn child_counts(&self, id: NodeId) -> (u32, u32, u32) {
        let n = &self.nodes[id.0 as usize];
        let total = n.children.len() as u32;
        (total - n.children_left, n.children_failed, total)
    }

    /// Nodes of a scope.
    pub fn scope_nodes(&self, scope: u32) -> std::ops::Range<u32> {
        let s = &self.scopes[scope as usize];
        let n = self.program.tmpls[s.tmpl as usize].nodes.len() as u32;
        s.base..s.base + n
    }

    /// The instance key of a node: its name, and the loop values and passes
    /// of the blocks around it, e.g. `train[pass=2, reg=US]`.
    pub fn key(&self, id: NodeId) -> String {
        let name = self.tnode(id).name().to_string();
        let mut groups: Vec<Vec<String>> = Vec::new();
        let mut s = self.nodes[id.0 as usize].scope;
        while let Some(b) = self.scopes[s as usize].parent {
            let sc = &self.scopes[s as usize];
            match self.tnode(b) {
                TNode::ForEach { .. } => groups.push(
                    sc.vars
                        .iter()
                        .map(|(k, v)| format!("{k}={}", eval::to_text(v)))
                        .collect(),
                ),
                TNode::Repeat { .. } => groups.push(vec![format!("pass={}", sc.index + 1)]),
                _ => {}
            }
            s = self.nodes[b.0 as usize].scope;
        }
        if groups.is_empty() {
            return name;
        }
        groups.reverse();
        let frames: Vec<String> = groups.into_iter().flatten().collect();
        format!("{name}[{}]", frames.join(", "))
    }

    /// The step declaration behind a node (`None` for blocks and markers).
    pub fn step_of(&self, id: NodeId) -> Option<&Step> {
        match self.tnode(id) {
            TNode::Step { name, .. } => self.program.step(name),
            _ => None,
        }
    }

    /// The stored form of a node.
    pub fn record(&self, id: NodeId) -> NodeRecord {
        let n = &self.nodes[id.0 as usize];
        let t = self.tnode(id);
        NodeRecord {
            id,
            scope: n.scope,
            key: self.key(id),
            name: t.name().to_string(),
            kind: t.kind_name(),
            data: NodeData {
                state: n.state.clone(),
                info: n.info.clone(),
            },
        }
    }

    /// Takes what changed since the last call.
    pub fn take_delta(&mut self) -> Delta {
        let mut d = Delta::default();
        if self.run_dirty {
            d.run = Some((self.status, self.data.clone()));
            self.run_dirty = false;
        }
        for (i, s) in self.scopes.iter().enumerate().skip(self.scopes_saved) {
            d.scopes.push(ScopeRecord {
                id: i as u32,
                tmpl: s.tmpl,
                parent: s.parent.map(|p| p.0),
                index: s.index,
                vars: s.vars.clone(),
            });
        }
        self.scopes_saved = self.scopes.len();
        let dirty = std::mem::take(&mut self.dirty);
        d.nodes.reserve(dirty.len());
        for i in dirty {
            self.is_dirty[i as usize] = false;
            d.nodes.push(self.record(NodeId(i)));
        }
        d
    }

    // ----- the transition function -----

    /// Applies one event at time `now` and returns what must be done.
    ///
    /// Events about an attempt that is no longer current (a late exit of a
    /// killed attempt, a timer of an attempt that already ended) change
    /// nothing and return no actions.
    pub fn apply(&mut self, event: Event, now: Millis) -> Result<Vec<Action>, EngineError> {
        self.now = now;
        match event {
            Event::RunStarted => {
                if self.scopes.is_empty() {
                    self.new_scope(0, None, 0, Vec::new());
                }
            }
            Event::Recovered => self.recovered(),
            Event::StepAdmitted { node } => {
                let n = self.check(node)?;
                if matches!(self.nodes[n].state, StepState::Ready) {
                    self.admit(n as u32);
                }
            }
            Event::StepLaunched {
                node,
                attempt,
                handle,
                memo_key,
            } => {
                let n = self.check(node)?;
                if self.nodes[n].state == (StepState::Starting { attempt }) {
                    self.nodes[n].info.memo_key = memo_key;
                    self.set_state(
                        n as u32,
                        StepState::Running {
                            attempt,
                            handle: Some(handle.clone()),
                        },
                    );
                    if let Some(reason) = self.nodes[n].info.kill {
                        self.out.push(Action::Kill {
                            node,
                            attempt,
                            handle,
                            reason,
                        });
                    }
                }
            }
            Event::LaunchFailed {
                node,
                attempt,
                message,
                platform,
            } => {
                let n = self.check(node)?;
                if self.nodes[n].state.attempt() == Some(attempt) {
                    let f = if platform {
                        Failure::platform(message)
                    } else {
                        Failure::user(message)
                    };
                    self.attempt_failed(n as u32, f);
                }
            }
            Event::StepProgressed {
                node,
                attempt,
                percent,
                message,
            } => {
                let n = self.check(node)?;
                if self.nodes[n].state.attempt() == Some(attempt) {
                    let p = self.nodes[n]
                        .info
                        .progress
                        .get_or_insert_with(Progress::default);
                    if percent.is_some() {
                        p.percent = percent;
                    }
                    if message.is_some() {
                        p.message = message;
                    }
                    self.mark(n as u32);
                }
            }
            Event::StepExited {
                node,
                attempt,
                exit,
                outputs,
                problems,
                artifacts,
                reads,
            } => {
                let n = self.check(node)?;
                if self.nodes[n].state.attempt() == Some(attempt) {
                    let info = &mut self.nodes[n].info;
                    for r in reads {
                        if !info.inputs.contains(&r) {
                            info.inputs.push(r);
                        }
                    }
                    info.artifacts = artifacts;
                    self.exited(n as u32, exit, outputs, problems);
                }
            }
            Event::StepMemoized {
                node,
                attempt,
                key,
                from,
                outputs,
                artifacts,
            } => {
                let n = self.check(node)?;
                if self.nodes[n].state == (StepState::Starting { attempt }) {
                    let info = &mut self.nodes[n].info;
                    info.memo_key = Some(key);
                    info.artifacts = artifacts;
                    info.outputs = (!outputs.is_empty()).then_some(outputs);
                    info.progress = Some(Progress {
                        percent: Some(100.0),
                        message: None,
                    });
                    self.finish(n as u32, StepState::Memoized { from });
                }
            }
            Event::TimerFired {
                node,
                attempt,
                timer,
            } => {
                let n = self.check(node)?;
                self.timer(n as u32, attempt, timer);
            }
            Event::SignalReceived { name, value } => self.signal(name, value),
            Event::ChildRunFinished {
                node,
                attempt,
                status,
                outputs,
                message,
            } => {
                let n = self.check(node)?;
                if self.nodes[n].state.attempt() == Some(attempt) {
                    self.child_finished(n as u32, status, outputs, message);
                }
            }
            Event::CancelRequested { reason } => self.cancel(reason),
            Event::KillRequested { step, reason: _ } => self.kill_step(&step),
        }
        self.drain();
        Ok(std::mem::take(&mut self.out))
    }

    fn check(&self, node: NodeId) -> Result<usize, EngineError> {
        if (node.0 as usize) < self.nodes.len() {
            Ok(node.0 as usize)
        } else {
            Err(EngineError::UnknownNode {
                run: self.id.clone(),
                node,
            })
        }
    }

    fn mark(&mut self, n: u32) {
        if !self.is_dirty[n as usize] {
            self.is_dirty[n as usize] = true;
            self.dirty.push(n);
        }
    }

    fn set_state(&mut self, n: u32, s: StepState) {
        self.nodes[n as usize].state = s;
        self.mark(n);
    }

    fn alloc_scope(
        &mut self,
        tmpl: TmplId,
        parent: Option<NodeId>,
        index: u32,
        vars: Vec<(String, Value)>,
    ) -> u32 {
        let id = self.scopes.len() as u32;
        let t = &self.program.tmpls[tmpl as usize];
        let base = self.nodes.len() as u32;
        let count = t.nodes.len() as u32;
        for i in 0..count {
            self.nodes.push(Node {
                scope: id,
                idx: i,
                state: StepState::Pending,
                info: NodeInfo::default(),
                preds_left: t.preds[i as usize].len() as u32,
                children: Vec::new(),
                children_left: 0,
                children_failed: 0,
                children_cancelled: 0,
            });
            self.is_dirty.push(false);
        }
        self.scopes.push(Scope {
            tmpl,
            parent,
            index,
            vars,
            base,
            left: count,
            failed: 0,
            cancelled: 0,
        });
        if let Some(p) = parent {
            let pn = &mut self.nodes[p.0 as usize];
            pn.children.push(id);
            pn.children_left += 1;
        }
        id
    }

    /// Creates a scope and readies its entry nodes.
    fn new_scope(
        &mut self,
        tmpl: TmplId,
        parent: Option<NodeId>,
        index: u32,
        vars: Vec<(String, Value)>,
    ) {
        let id = self.alloc_scope(tmpl, parent, index, vars);
        let s = &self.scopes[id as usize];
        let base = s.base;
        let t = &self.program.tmpls[tmpl as usize];
        for (i, p) in t.preds.iter().enumerate() {
            if p.is_empty() {
                self.work.push_back(Work::Ready(base + i as u32));
            }
        }
    }

    fn drain(&mut self) {
        while let Some(w) = self.work.pop_front() {
            match w {
                Work::Ready(n) => self.make_ready(n),
                Work::Finished(n) => self.after_finish(n),
            }
        }
    }

    /// Moves a node to a terminal state and queues what follows from it.
    fn finish(&mut self, n: u32, s: StepState) {
        debug_assert!(s.is_terminal());
        if self.nodes[n as usize].state.is_terminal() {
            return;
        }
        let node = &mut self.nodes[n as usize];
        node.state = s;
        node.info.finished = Some(self.now);
        node.info.kill = None;
        self.mark(n);
        self.work.push_back(Work::Finished(n));
    }

    fn after_finish(&mut self, n: u32) {
        let (scope, idx) = (self.nodes[n as usize].scope, self.nodes[n as usize].idx);
        let state = self.nodes[n as usize].state.clone();
        let sc = &mut self.scopes[scope as usize];
        sc.left -= 1;
        match &state {
            StepState::Cancelled => sc.cancelled += 1,
            StepState::Failed { .. }
            | StepState::Skipped {
                reason: SkipReason::UpstreamFailed { .. } | SkipReason::RunStopped,
            } => sc.failed += 1,
            _ => {}
        }
        let base = sc.base;
        let tmpl = sc.tmpl;
        let program = self.program.clone();
        let succs = &program.tmpls[tmpl as usize].succs[idx as usize];
        if state.lets_successors_run() {
            for s in succs {
                let m = base + s;
                let node = &mut self.nodes[m as usize];
                node.preds_left -= 1;
                if node.state.is_terminal() {
                    continue;
                }
                if node.preds_left == 0 {
                    self.work.push_back(Work::Ready(m));
                } else if node.state == StepState::Pending {
                    self.set_state(m, StepState::Waiting);
                }
            }
        } else {
            let next = match &state {
                StepState::Cancelled => StepState::Cancelled,
                StepState::Skipped {
                    reason: r @ SkipReason::UpstreamFailed { .. },
                } => StepState::Skipped { reason: r.clone() },
                _ => StepState::Skipped {
                    reason: SkipReason::UpstreamFailed {
                        upstream: self.key(NodeId(n)),
                    },
                },
            };
            for s in succs {
                self.finish(base + s, next.clone());
            }
        }
        if matches!(state, StepState::Failed { .. })
            && self.options.on_failure == FailurePolicy::Stop
            && !self.data.stopping
        {
            self.data.stopping = true;
            self.run_dirty = true;
            self.stop_launching(false);
        }
        if self.scopes[scope as usize].left == 0 {
            self.scope_done(scope);
        }
    }

    fn scope_outcome(&self, scope: u32) -> RunStatus {
        let s = &self.scopes[scope as usize];
        if s.failed > 0 {
            RunStatus::Failed
        } else if s.cancelled > 0 {
            RunStatus::Cancelled
        } else {
            RunStatus::Succeeded
        }
    }

    fn scope_done(&mut self, scope: u32) {
        let outcome = self.scope_outcome(scope);
        let Some(b) = self.scopes[scope as usize].parent else {
            self.run_done(outcome);
            return;
        };
        let bi = b.0 as usize;
        {
            let bn = &mut self.nodes[bi];
            bn.children_left -= 1;
            match outcome {
                RunStatus::Failed => bn.children_failed += 1,
                RunStatus::Cancelled => bn.children_cancelled += 1,
                _ => {}
            }
        }
        if self.nodes[bi].state.is_terminal() {
            return;
        }
        let program = self.program.clone();
        let btmpl = self.scopes[self.nodes[bi].scope as usize].tmpl;
        match program.node(btmpl, self.nodes[bi].idx) {
            TNode::ForEach { .. } => {
                let bn = &self.nodes[bi];
                if bn.children_left > 0 {
                    return;
                }
                let total = bn.children.len();
                let s = if bn.children_failed > 0 {
                    StepState::Failed {
                        failure: Failure::user(format!(
                            "{} of {total} items failed",
                            bn.children_failed
                        )),
                    }
                } else if bn.children_cancelled > 0 {
                    StepState::Cancelled
                } else {
                    StepState::Succeeded
                };
                self.finish(b.0, s);
            }
            TNode::Repeat {
                until, max, body, ..
            } => {
                let pass = self.scopes[scope as usize].index + 1;
                match outcome {
                    RunStatus::Failed => {
                        let f = Failure::user(format!("pass {pass} failed"));
                        self.finish(b.0, StepState::Failed { failure: f });
                    }
                    RunStatus::Cancelled => self.finish(b.0, StepState::Cancelled),
                    _ => {
                        let ctx = Ctx {
                            run: self,
                            scope,
                            node: None,
                            reads: None,
                        };
                        match eval::eval_bool(until, &ctx) {
                            Ok(true) => {
                                self.nodes[bi].info.note =
                                    Some(format!("`{until}` held after pass {pass}"));
                                self.finish(b.0, StepState::Succeeded);
                            }
                            Ok(false) if self.data.cancel.is_some() => {
                                self.finish(b.0, StepState::Cancelled)
                            }
                            Ok(false) if self.data.stopping => self.finish(
                                b.0,
                                StepState::Skipped {
                                    reason: SkipReason::RunStopped,
                                },
                            ),
                            Ok(false) if pass >= *max => {
                                let f = Failure::user(format!(
                                    "`{until}` was still false after {max} passes (the most `max` allows)"
                                ));
                                self.finish(b.0, StepState::Failed { failure: f });
                            }
                            Ok(false) => {
                                self.nodes[bi].info.items = Some(pass + 1);
                                self.nodes[bi].info.note = None;
                                self.mark(b.0);
                                self.new_scope(*body, Some(b), pass, Vec::new());
                            }
                            Err(e) => {
                                let f = Failure::user(format!("cannot evaluate `until`: {e}"));
                                self.finish(b.0, StepState::Failed { failure: f });
                            }
                        }
                    }
                }
            }
            TNode::When { .. } => {
                let s = match outcome {
                    RunStatus::Failed => StepState::Failed {
                        failure: Failure::user("the branch failed"),
                    },
                    RunStatus::Cancelled => StepState::Cancelled,
                    _ => StepState::Succeeded,
                };
                self.finish(b.0, s);
            }
            TNode::Step { .. } => {}
        }
    }

    fn run_done(&mut self, outcome: RunStatus) {
        let status = if self.data.cancel.is_some() && outcome != RunStatus::Succeeded {
            RunStatus::Cancelled
        } else {
            outcome
        };
        if status == RunStatus::Succeeded {
            let ctx = Ctx {
                run: self,
                scope: 0,
                node: None,
                reads: None,
            };
            let mut outs = Map::new();
            let mut err = None;
            for (k, o) in &self.program.workflow.workflow.outputs {
                match eval::render_value(&o.value, &ctx) {
                    Ok(v) => {
                        outs.insert(k.clone(), v);
                    }
                    Err(e) => err = Some(format!("workflow output `{k}`: {e}")),
                }
            }
            self.data.outputs = Some(outs);
            if let Some(e) = err {
                self.data.message = Some(e);
            }
        } else if self.data.message.is_none() {
            self.data.message = self.first_failure();
        }
        self.status = status;
        self.run_dirty = true;
        self.out.push(Action::RunFinished { status });
    }

    /// The first failed step and why, for the run's message.
    pub fn first_failure(&self) -> Option<String> {
        let failed = |want_block: bool| {
            self.nodes
                .iter()
                .enumerate()
                .find_map(|(i, n)| match &n.state {
                    StepState::Failed { failure }
                        if self.tnode(NodeId(i as u32)).is_block() == want_block =>
                    {
                        Some(format!(
                            "{} failed: {}",
                            self.key(NodeId(i as u32)),
                            failure.message
                        ))
                    }
                    _ => None,
                })
        };
        failed(false).or_else(|| failed(true))
    }

    fn make_ready(&mut self, n: u32) {
        if self.nodes[n as usize].state.is_terminal() {
            return;
        }
        if self.data.cancel.is_some() {
            self.finish(n, StepState::Cancelled);
            return;
        }
        if self.data.stopping {
            self.finish(
                n,
                StepState::Skipped {
                    reason: SkipReason::RunStopped,
                },
            );
            return;
        }
        let id = NodeId(n);
        let program = self.program.clone();
        match program.node(
            self.scopes[self.nodes[n as usize].scope as usize].tmpl,
            self.nodes[n as usize].idx,
        ) {
            TNode::Step { kind, name } => match kind {
                TKind::Marker | TKind::Noop => {
                    self.start_now(n);
                    self.finish(n, StepState::Succeeded);
                }
                TKind::Command | TKind::Spark => {
                    self.set_state(n, StepState::Ready);
                    self.enqueue(n);
                }
                TKind::Wait => {
                    self.start_now(n);
                    // After a timed-out wait, the next wait is a new attempt:
                    // the attempt number is what tells its timers from the
                    // old one's.
                    let attempt = self.nodes[n as usize].info.attempts + 1;
                    self.nodes[n as usize].info.attempts = attempt;
                    self.set_state(
                        n,
                        StepState::Running {
                            attempt,
                            handle: None,
                        },
                    );
                    let signal = match program.step(name).map(|s| &s.kind) {
                        Some(StepKind::Wait(w)) => w.signal.clone(),
                        _ => name.clone(),
                    };
                    self.nodes[n as usize].info.note =
                        Some(format!("waiting for signal `{signal}`"));
                    if let Some(v) = self.data.signals.get(&signal).cloned() {
                        self.wake(n, v);
                    } else {
                        self.set_timeout(n, attempt);
                    }
                }
                TKind::SubWorkflow => {
                    let attempt = self.nodes[n as usize].info.attempts + 1;
                    self.start_child(n, attempt)
                }
            },
            TNode::ForEach { bindings, body, .. } => {
                self.start_now(n);
                let ctx = Ctx {
                    run: self,
                    scope: self.nodes[n as usize].scope,
                    node: None,
                    reads: None,
                };
                let mut lists = Vec::new();
                let mut err = None;
                for b in bindings {
                    let v = match &b.source {
                        ListSource::Param { name } => {
                            Ok(self.params.get(&name.name).cloned().unwrap_or(Value::Null))
                        }
                        ListSource::Ref { r } => ctx.resolve(r),
                        ListSource::Literal { items, .. } => {
                            Ok(Value::Array(items.iter().map(eval::lit_value).collect()))
                        }
                    };
                    match v {
                        Ok(Value::Array(items)) => lists.push((b.var.name.clone(), items)),
                        Ok(other) => {
                            err = Some(format!(
                                "the list for `{}` is {}, not a list",
                                b.var.name,
                                eval::show(&other)
                            ))
                        }
                        Err(e) => err = Some(e),
                    }
                }
                if let Some(e) = err {
                    self.finish(
                        n,
                        StepState::Failed {
                            failure: Failure::user(e),
                        },
                    );
                    return;
                }
                let total: usize = lists.iter().map(|(_, l)| l.len()).product();
                self.nodes[n as usize].info.items = Some(total as u32);
                if total == 0 {
                    self.nodes[n as usize].info.note = Some("the list is empty".into());
                    self.finish(n, StepState::Succeeded);
                    return;
                }
                self.set_state(
                    n,
                    StepState::Running {
                        attempt: 1,
                        handle: None,
                    },
                );
                // Cross product, the last binding varying fastest.
                let mut idx = vec![0usize; lists.len()];
                for item in 0..total {
                    let vars = lists
                        .iter()
                        .zip(&idx)
                        .map(|((k, l), i)| (k.clone(), l[*i].clone()))
                        .collect();
                    self.new_scope(*body, Some(id), item as u32, vars);
                    for j in (0..idx.len()).rev() {
                        idx[j] += 1;
                        if idx[j] < lists[j].1.len() {
                            break;
                        }
                        idx[j] = 0;
                    }
                }
            }
            TNode::Repeat { body, .. } => {
                self.start_now(n);
                self.nodes[n as usize].info.items = Some(1);
                self.set_state(
                    n,
                    StepState::Running {
                        attempt: 1,
                        handle: None,
                    },
                );
                self.new_scope(*body, Some(id), 0, Vec::new());
            }
            TNode::When {
                cond,
                then,
                otherwise,
                ..
            } => {
                self.start_now(n);
                let ctx = Ctx {
                    run: self,
                    scope: self.nodes[n as usize].scope,
                    node: None,
                    reads: None,
                };
                match eval::eval_bool(cond, &ctx) {
                    Ok(c) => {
                        let branch = if c { Some(*then) } else { *otherwise };
                        self.nodes[n as usize].info.note = Some(format!("`{cond}` is {c}"));
                        match branch {
                            Some(t) => {
                                self.set_state(
                                    n,
                                    StepState::Running {
                                        attempt: 1,
                                        handle: None,
                                    },
                                );
                                self.new_scope(t, Some(id), u32::from(!c), Vec::new());
                            }
                            None => self.finish(
                                n,
                                StepState::Skipped {
                                    reason: SkipReason::ConditionFalse,
                                },
                            ),
                        }
                    }
                    Err(e) => self.finish(
                        n,
                        StepState::Failed {
                            failure: Failure::user(format!("cannot evaluate the condition: {e}")),
                        },
                    ),
                }
            }
        }
    }

    fn start_now(&mut self, n: u32) {
        let info = &mut self.nodes[n as usize].info;
        if info.started.is_none() {
            info.started = Some(self.now);
        }
        info.attempt_started = Some(self.now);
        self.mark(n);
    }

    fn enqueue(&mut self, n: u32) {
        let (cpus, memory) = match self.step_of(NodeId(n)) {
            Some(s) => (
                s.resources.cpus.unwrap_or(1.0),
                s.resources.memory.unwrap_or(0),
            ),
            None => (1.0, 0),
        };
        self.out.push(Action::Enqueue {
            node: NodeId(n),
            cpus,
            memory,
        });
    }

    fn set_timeout(&mut self, n: u32, attempt: u32) {
        if let Some(t) = self.step_of(NodeId(n)).and_then(|s| s.timeout) {
            let start = self.nodes[n as usize]
                .info
                .attempt_started
                .unwrap_or(self.now);
            self.out.push(Action::SetTimer {
                node: NodeId(n),
                attempt,
                at: start + t.as_millis() as u64,
                timer: Timer::Timeout,
            });
        }
    }

    fn admit(&mut self, n: u32) {
        if self.data.cancel.is_some() || self.data.stopping {
            self.make_ready(n);
            return;
        }
        let attempt = self.nodes[n as usize].info.attempts + 1;
        self.nodes[n as usize].info.attempts = attempt;
        self.nodes[n as usize].info.progress = None;
        self.start_now(n);
        self.set_state(n, StepState::Starting { attempt });
        match self.launch_order(n, attempt, false) {
            Ok(order) => {
                self.nodes[n as usize].info.inputs = order.inputs.clone();
                self.nodes[n as usize].info.memo_key = None;
                self.out.push(Action::Launch(Box::new(order)));
                self.set_timeout(n, attempt);
            }
            Err(e) => self.attempt_failed(n, Failure::user(e)),
        }
    }

    /// Builds the launch order of an attempt: every template rendered.
    pub fn launch_order(&self, n: u32, attempt: u32, adopt: bool) -> Result<LaunchOrder, String> {
        let id = NodeId(n);
        let step = self
            .step_of(id)
            .ok_or_else(|| format!("node {n} is not a step"))?;
        let reads = std::cell::RefCell::new(Vec::new());
        let ctx = Ctx {
            run: self,
            scope: self.nodes[n as usize].scope,
            node: Some(n),
            reads: Some(&reads),
        };
        let key = self.key(id);
        let invocation = match &step.kind {
            StepKind::Command(c) => match &c.run {
                CommandRun::Argv(argv) => Invocation::Argv {
                    argv: argv
                        .iter()
                        .map(|t| eval::render(t, &ctx))
                        .collect::<Result<_, _>>()?,
                },
                CommandRun::Script(s) => Invocation::Script {
                    script: eval::render(s, &ctx)?,
                },
            },
            other => Invocation::Unsupported {
                kind: other.name().to_string(),
            },
        };
        let workdir = match &step.workdir {
            Some(w) => self.program.base_dir.join(eval::render(w, &ctx)?),
            None => self.program.base_dir.clone(),
        };
        let invocation = match &step.kind {
            StepKind::Spark(s) => Invocation::Spark {
                job: Box::new(spark_job(s, step.constraints.as_ref(), &workdir, &ctx)?),
            },
            _ => invocation,
        };
        let mut env = Vec::new();
        for (k, t) in &step.env {
            env.push((k.clone(), eval::render(t, &ctx)?));
        }
        env.push(("KAON_RUN_ID".into(), self.id.clone()));
        env.push(("KAON_STEP".into(), step.name.clone()));
        env.push(("KAON_STEP_KEY".into(), key.clone()));
        env.push(("KAON_ATTEMPT".into(), attempt.to_string()));
        env.extend(self.param_env.iter().cloned());
        let mut s = self.nodes[n as usize].scope;
        loop {
            let sc = &self.scopes[s as usize];
            for (k, v) in &sc.vars {
                env.push((format!("KAON_VAR_{}", env_name(k)), eval::to_text(v)));
            }
            match sc.parent {
                Some(b) => s = self.nodes[b.0 as usize].scope,
                None => break,
            }
        }
        let mut outputs = Vec::new();
        for (name, o) in &step.outputs {
            let path = match &o.path {
                Some(p) => Some(workdir.join(eval::render(p, &ctx)?)),
                None => None,
            };
            outputs.push(OutputSpec {
                name: name.clone(),
                ty: o.ty.clone(),
                path,
            });
        }
        let memo = if step.cache.enabled && !matches!(invocation, Invocation::Unsupported { .. }) {
            let mut code = Vec::new();
            for c in &self.program.workflow.workflow.code {
                code.push(normalize(self.program.base_dir.join(c)));
            }
            for c in &step.cache.code {
                code.push(normalize(
                    self.program.base_dir.join(eval::render(c, &ctx)?),
                ));
            }
            code.sort();
            code.dedup();
            Some(MemoSpec {
                kind: step.kind.name().to_string(),
                cache_version: match &step.cache.version {
                    Some(v) => eval::render(v, &ctx)?,
                    None => String::new(),
                },
                code,
                config: Value::Null,
                reuse: !self.options.no_cache,
            })
        } else {
            None
        };
        // Of the outputs read, those that are artifacts are the inputs.
        let mut inputs: Vec<InputRef> = Vec::new();
        for (m, output) in reads.into_inner() {
            let node = &self.nodes[m as usize];
            if let Some(a) = node.info.artifacts.iter().find(|a| a.name == output) {
                let name = self
                    .step_of(NodeId(m))
                    .map(|s| s.name.as_str())
                    .unwrap_or("?");
                inputs.push(InputRef {
                    source: format!("{name}.{output}"),
                    artifact: a.id.clone(),
                    digest: a.digest.clone(),
                });
            }
        }
        inputs.sort();
        inputs.dedup();
        Ok(LaunchOrder {
            run: self.id.clone(),
            node: id,
            attempt,
            step: step.name.clone(),
            key,
            invocation,
            env,
            workdir: normalize(workdir),
            outputs,
            cpus: step.resources.cpus.unwrap_or(1.0),
            memory: step.resources.memory.unwrap_or(0),
            adopt,
            inputs,
            memo,
        })
    }

    fn exited(&mut self, n: u32, exit: Exit, outputs: Map<String, Value>, problems: Vec<String>) {
        let kill = self.nodes[n as usize].info.kill;
        if let Exit::Code { code } = exit {
            self.nodes[n as usize].info.exit_code = Some(code);
        }
        if kill == Some(KillReason::Cancel) {
            self.finish(n, StepState::Cancelled);
            return;
        }
        if kill == Some(KillReason::Timeout) {
            let t = self
                .step_of(NodeId(n))
                .and_then(|s| s.timeout)
                .map(|d| format!(" after {}", fmt_duration(d.as_millis() as u64)))
                .unwrap_or_default();
            let f = Failure {
                class: FailureClass::Timeout,
                message: format!("timed out{t}"),
                exit_code: None,
            };
            self.attempt_failed(n, f);
            return;
        }
        let f = match exit {
            Exit::Code { code: 0 } => match self.check_outputs(n, outputs, problems) {
                Ok(outs) => {
                    let info = &mut self.nodes[n as usize].info;
                    info.outputs = (!outs.is_empty()).then_some(outs);
                    if let Some(p) = &mut info.progress {
                        p.percent = Some(100.0);
                    }
                    self.finish(n, StepState::Succeeded);
                    return;
                }
                Err((problems, values)) => Failure::user(format!(
                    "exited 0 but {}{}",
                    problems.join("; "),
                    if values {
                        " (a step hands outputs back by printing `::kaon::output NAME=<json>` or writing them to $KAON_OUTPUTS_FILE)"
                    } else {
                        ""
                    }
                )),
            },
            Exit::Code { code } => Failure {
                class: FailureClass::User,
                message: format!("exited with status {code}"),
                exit_code: Some(code),
            },
            // SIGKILL that kaon did not send: the OOM killer or an operator.
            Exit::Signal { signal: 9 } => {
                Failure::platform("killed by signal 9 (SIGKILL), not sent by kaon")
            }
            Exit::Signal { signal } => Failure::user(format!("killed by signal {signal}")),
            Exit::Failed { code, message } => Failure {
                class: FailureClass::User,
                message,
                exit_code: code,
            },
            Exit::Lost { message } => Failure::platform(message),
        };
        self.attempt_failed(n, f);
    }

    fn check_outputs(
        &self,
        n: u32,
        mut got: Map<String, Value>,
        mut problems: Vec<String>,
    ) -> Result<Map<String, Value>, (Vec<String>, bool)> {
        // Problems with value outputs (as opposed to storing artifacts)
        // come with a hint on how steps report values.
        let stored = problems.len();
        let mut outs = Map::new();
        if let Some(step) = self.step_of(NodeId(n)) {
            for (name, decl) in &step.outputs {
                match got.remove(name) {
                    Some(v) if decl.ty.accepts_value(&v) => {
                        outs.insert(name.clone(), v);
                    }
                    Some(v) => problems.push(format!(
                        "output `{name}` should be {:#} but the step gave {}",
                        decl.ty,
                        eval::show(&v)
                    )),
                    None if decl.ty.is_artifact() => {}
                    None => problems.push(format!("output `{name}` ({}) is missing", decl.ty)),
                }
            }
        }
        if problems.is_empty() {
            Ok(outs)
        } else {
            let values = problems.len() > stored;
            Err((problems, values))
        }
    }

    fn attempt_failed(&mut self, n: u32, f: Failure) {
        let step = self.step_of(NodeId(n));
        let retries = step.map(|s| s.retries).unwrap_or(0);
        let base = step
            .and_then(|s| s.retry_backoff)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(self.options.retry_backoff_ms);
        let cap = step
            .and_then(|s| s.retry_backoff_max)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(self.options.retry_backoff_max_ms);
        let info = &mut self.nodes[n as usize].info;
        info.kill = None;
        if f.exit_code.is_some() {
            info.exit_code = f.exit_code;
        }
        let (used, budget) = match f.class {
            FailureClass::User | FailureClass::Timeout => {
                info.user_failures += 1;
                (info.user_failures, retries)
            }
            FailureClass::Platform => {
                info.platform_failures += 1;
                (info.platform_failures, self.options.platform_retries)
            }
        };
        let attempt = info.attempts;
        if used <= budget && self.data.cancel.is_none() && !self.data.stopping {
            let delay = backoff(base, cap, used, &self.id, n, attempt);
            let at = self.now + delay;
            self.set_state(
                n,
                StepState::Retrying {
                    attempt: attempt + 1,
                    at,
                    last: f,
                },
            );
            self.out.push(Action::SetTimer {
                node: NodeId(n),
                attempt: attempt + 1,
                at,
                timer: Timer::Retry,
            });
        } else {
            self.finish(n, StepState::Failed { failure: f });
        }
    }

    fn timer(&mut self, n: u32, attempt: u32, timer: Timer) {
        match (timer, self.nodes[n as usize].state.clone()) {
            (Timer::Retry, StepState::Retrying { attempt: a, .. }) if a == attempt => {
                self.make_ready(n);
            }
            (Timer::Timeout, StepState::Running { attempt: a, handle }) if a == attempt => {
                let kind = match self.tnode(NodeId(n)) {
                    TNode::Step { kind, .. } => *kind,
                    _ => return,
                };
                match (kind, handle) {
                    (TKind::Wait, _) => {
                        let f = Failure {
                            class: FailureClass::Timeout,
                            message: "no signal arrived before the timeout".into(),
                            exit_code: None,
                        };
                        self.attempt_failed(n, f);
                    }
                    (TKind::SubWorkflow, Some(Value::String(child))) => {
                        self.nodes[n as usize].info.kill = Some(KillReason::Timeout);
                        self.mark(n);
                        self.out.push(Action::CancelChildRun { child });
                    }
                    (_, Some(handle)) => {
                        self.nodes[n as usize].info.kill = Some(KillReason::Timeout);
                        self.mark(n);
                        self.out.push(Action::Kill {
                            node: NodeId(n),
                            attempt,
                            handle,
                            reason: KillReason::Timeout,
                        });
                    }
                    (_, None) => {}
                }
            }
            (Timer::Timeout, StepState::Starting { attempt: a }) if a == attempt => {
                // Killed as soon as the launch reports its handle.
                self.nodes[n as usize].info.kill = Some(KillReason::Timeout);
                self.mark(n);
            }
            _ => {}
        }
    }

    fn signal(&mut self, name: String, value: Value) {
        self.data.signals.insert(name.clone(), value.clone());
        self.run_dirty = true;
        let waiting: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&n| {
                matches!(self.nodes[n as usize].state, StepState::Running { .. })
                    && matches!(self.step_of(NodeId(n)).map(|s| &s.kind), Some(StepKind::Wait(w)) if w.signal == name)
            })
            .collect();
        for n in waiting {
            self.wake(n, value.clone());
        }
    }

    /// Completes a wait step with a signal's value: its output `value`
    /// is the whole value, and an object's fields are outputs too.
    fn wake(&mut self, n: u32, value: Value) {
        let mut outputs = match &value {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        outputs.insert("value".into(), value);
        match self.check_outputs(n, outputs.clone(), Vec::new()) {
            Ok(_) => {
                let info = &mut self.nodes[n as usize].info;
                info.outputs = Some(outputs);
                info.note = None;
                self.finish(n, StepState::Succeeded);
            }
            Err((problems, _)) => self.finish(
                n,
                StepState::Failed {
                    failure: Failure::user(format!(
                        "the signal's value does not fit the step's outputs: {}",
                        problems.join("; ")
                    )),
                },
            ),
        }
    }

    fn start_child(&mut self, n: u32, attempt: u32) {
        self.start_now(n);
        self.nodes[n as usize].info.attempts = attempt;
        let child = format!("{}.{}-{}", self.id, n, attempt);
        self.set_state(
            n,
            StepState::Running {
                attempt,
                handle: Some(Value::String(child.clone())),
            },
        );
        let params = self.child_params(n);
        match params {
            Ok(params) => {
                let step = self.tnode(NodeId(n)).name().to_string();
                self.out.push(Action::StartChildRun {
                    node: NodeId(n),
                    attempt,
                    child,
                    step,
                    params,
                });
                self.set_timeout(n, attempt);
            }
            Err(e) => self.finish(
                n,
                StepState::Failed {
                    failure: Failure::user(e),
                },
            ),
        }
    }

    /// The parameters a sub-workflow step passes to its child, coerced to
    /// the child's declared types.
    pub fn child_params(&self, n: u32) -> Result<Map<String, Value>, String> {
        let Some(step) = self.step_of(NodeId(n)) else {
            return Err("not a step".into());
        };
        let StepKind::SubWorkflow(sw) = &step.kind else {
            return Err(format!("`{}` is not a sub-workflow step", step.name));
        };
        let child = self.program.workflow.children.get(&step.name);
        let ctx = Ctx {
            run: self,
            scope: self.nodes[n as usize].scope,
            node: Some(n),
            reads: None,
        };
        let mut out = Map::new();
        for (k, t) in &sw.params {
            let v = eval::render_value(t, &ctx)?;
            let v = match child.and_then(|c| c.workflow.params.get(k)) {
                Some(p) => eval::coerce(&p.ty, v).map_err(|e| format!("parameter `{k}`: {e}"))?,
                None => v,
            };
            out.insert(k.clone(), v);
        }
        Ok(out)
    }

    fn child_finished(
        &mut self,
        n: u32,
        status: RunStatus,
        outputs: Map<String, Value>,
        message: Option<String>,
    ) {
        let kill = self.nodes[n as usize].info.kill;
        match status {
            RunStatus::Succeeded => {
                self.nodes[n as usize].info.outputs = (!outputs.is_empty()).then_some(outputs);
                self.finish(n, StepState::Succeeded);
            }
            RunStatus::Cancelled if kill == Some(KillReason::Timeout) => {
                let f = Failure {
                    class: FailureClass::Timeout,
                    message: "the child run timed out".into(),
                    exit_code: None,
                };
                self.attempt_failed(n, f);
            }
            RunStatus::Cancelled => self.finish(n, StepState::Cancelled),
            _ => {
                let f = Failure::user(format!(
                    "the child run failed{}",
                    message.map(|m| format!(": {m}")).unwrap_or_default()
                ));
                self.attempt_failed(n, f);
            }
        }
    }

    fn kill_step(&mut self, step: &str) {
        for n in 0..self.nodes.len() as u32 {
            let key = self.key(NodeId(n));
            let named = self.step_of(NodeId(n)).is_some_and(|s| s.name == step);
            if !(named || key == step) {
                continue;
            }
            match self.nodes[n as usize].state.clone() {
                StepState::Running {
                    attempt,
                    handle: Some(handle),
                } => {
                    self.nodes[n as usize].info.kill = Some(KillReason::Cancel);
                    self.mark(n);
                    self.out.push(Action::Kill {
                        node: NodeId(n),
                        attempt,
                        handle,
                        reason: KillReason::Cancel,
                    });
                }
                StepState::Starting { .. } => {
                    self.nodes[n as usize].info.kill = Some(KillReason::Cancel);
                    self.mark(n);
                }
                _ => {}
            }
        }
    }

    fn cancel(&mut self, reason: String) {
        if self.status.is_terminal() || self.data.cancel.is_some() {
            return;
        }
        self.data.cancel = Some(reason);
        self.data.stopping = true;
        self.run_dirty = true;
        self.stop_launching(true);
    }

    /// Stops whatever has not started; with `kill`, also stops what runs.
    fn stop_launching(&mut self, kill: bool) {
        let not_started = if kill {
            StepState::Cancelled
        } else {
            StepState::Skipped {
                reason: SkipReason::RunStopped,
            }
        };
        for n in 0..self.nodes.len() as u32 {
            let state = self.nodes[n as usize].state.clone();
            let kind = match self.tnode(NodeId(n)) {
                TNode::Step { kind, .. } => Some(*kind),
                _ => None,
            };
            match state {
                StepState::Pending | StepState::Waiting | StepState::Ready => {
                    self.finish(n, not_started.clone())
                }
                StepState::Retrying { last, .. } => {
                    let s = if kill {
                        StepState::Cancelled
                    } else {
                        StepState::Failed { failure: last }
                    };
                    self.finish(n, s);
                }
                StepState::Starting { .. } if kill => {
                    self.nodes[n as usize].info.kill = Some(KillReason::Cancel);
                    self.mark(n);
                }
                StepState::Running { attempt, handle } => match kind {
                    Some(TKind::Wait) => self.finish(n, StepState::Cancelled),
                    Some(TKind::SubWorkflow) if kill => {
                        self.nodes[n as usize].info.kill = Some(KillReason::Cancel);
                        self.mark(n);
                        if let Some(Value::String(child)) = handle {
                            self.out.push(Action::CancelChildRun { child });
                        }
                    }
                    Some(_) if kill => {
                        self.nodes[n as usize].info.kill = Some(KillReason::Cancel);
                        self.mark(n);
                        if let Some(handle) = handle {
                            self.out.push(Action::Kill {
                                node: NodeId(n),
                                attempt,
                                handle,
                                reason: KillReason::Cancel,
                            });
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }

    fn recovered(&mut self) {
        if self.status.is_terminal() {
            self.out.push(Action::RunFinished {
                status: self.status,
            });
            return;
        }
        if self.scopes.is_empty() {
            self.new_scope(0, None, 0, Vec::new());
            return;
        }
        for n in 0..self.nodes.len() as u32 {
            let state = self.nodes[n as usize].state.clone();
            let kind = match self.tnode(NodeId(n)) {
                TNode::Step { kind, .. } => Some(*kind),
                _ => None,
            };
            let kill = self.nodes[n as usize].info.kill;
            match state {
                StepState::Ready => self.enqueue(n),
                StepState::Retrying { attempt, at, .. } => self.out.push(Action::SetTimer {
                    node: NodeId(n),
                    attempt,
                    at,
                    timer: Timer::Retry,
                }),
                StepState::Starting { attempt } => match self.launch_order(n, attempt, true) {
                    Ok(order) => {
                        self.out.push(Action::Launch(Box::new(order)));
                        self.set_timeout(n, attempt);
                    }
                    Err(e) => self.attempt_failed(n, Failure::user(e)),
                },
                StepState::Running { attempt, handle } => match (kind, handle) {
                    (Some(TKind::Command | TKind::Spark), Some(handle)) => {
                        match self.launch_order(n, attempt, true) {
                            Ok(order) => self.out.push(Action::Reattach {
                                node: NodeId(n),
                                attempt,
                                handle: handle.clone(),
                                order: Box::new(order),
                            }),
                            Err(e) => {
                                self.attempt_failed(n, Failure::user(e));
                                continue;
                            }
                        }
                        if let Some(reason) = kill {
                            self.out.push(Action::Kill {
                                node: NodeId(n),
                                attempt,
                                handle,
                                reason,
                            });
                        } else {
                            self.set_timeout(n, attempt);
                        }
                    }
                    (Some(TKind::Wait), _) => {
                        let signal = match self.step_of(NodeId(n)).map(|s| &s.kind) {
                            Some(StepKind::Wait(w)) => w.signal.clone(),
                            _ => String::new(),
                        };
                        if let Some(v) = self.data.signals.get(&signal).cloned() {
                            self.wake(n, v);
                        } else {
                            self.set_timeout(n, attempt);
                        }
                    }
                    (Some(TKind::SubWorkflow), _) => match self.child_params(n) {
                        Ok(params) => {
                            let child = format!("{}.{}-{}", self.id, n, attempt);
                            self.out.push(Action::StartChildRun {
                                node: NodeId(n),
                                attempt,
                                child: child.clone(),
                                step: self.tnode(NodeId(n)).name().to_string(),
                                params,
                            });
                            if kill.is_some() {
                                self.out.push(Action::CancelChildRun { child });
                            } else {
                                self.set_timeout(n, attempt);
                            }
                        }
                        Err(e) => self.finish(
                            n,
                            StepState::Failed {
                                failure: Failure::user(e),
                            },
                        ),
                    },
                    _ => {}
                },
                _ => {}
            }
        }
    }
}

/// References resolved from a scope (and, for `${run.attempt}`, a node).
struct Ctx<'a> {
    run: &'a RunState,
    scope: u32,
    node: Option<u32>,
    /// When set, every step output read is noted here (node, output): the
    /// launch order's inputs.
    reads: Option<&'a std::cell::RefCell<Vec<(u32, String)>>>,
}

impl Resolve for Ctx<'_> {
    fn resolve(&self, r: &Ref) -> Result<Value, String> {
        let run = self.run;
        match r.target() {
            RefTarget::Param(name) => {
                let v = run
                    .params
                    .get(name)
                    .cloned()
                    .ok_or_else(|| format!("{r}: no value for parameter `{name}`"))?;
                eval::fields(v, &r.path[2..], r)
            }
            RefTarget::Run(field) => Ok(match field {
                "id" => Value::String(run.id.clone()),
                "name" => Value::String(run.program.workflow.workflow.name.clone()),
                "attempt" => Value::from(
                    self.node
                        .map(|n| run.nodes[n as usize].info.attempts)
                        .unwrap_or(1),
                ),
                other => return Err(format!("{r}: unknown run field `{other}`")),
            }),
            RefTarget::LoopVar(var) => {
                let mut s = self.scope;
                loop {
                    let sc = &run.scopes[s as usize];
                    if let Some((_, v)) = sc.vars.iter().find(|(k, _)| k == var) {
                        return Ok(v.clone());
                    }
                    match sc.parent {
                        Some(b) => s = run.nodes[b.0 as usize].scope,
                        None => return Err(format!("{r}: no loop variable `{var}` here")),
                    }
                }
            }
            RefTarget::Output {
                step,
                output,
                fields,
            } => {
                let v = run.output_value(self.scope, step, output, r, self.reads)?;
                eval::fields(v, fields, r)
            }
        }
    }
}

impl RunState {
    /// The value of `${step.output}` read from `scope`: one value, or a
    /// list per for-each between the reader and the step, or the last pass
    /// of a repeat; `null` for a branch not taken.
    fn output_value(
        &self,
        scope: u32,
        step: &str,
        output: &str,
        r: &Ref,
        reads: Option<&std::cell::RefCell<Vec<(u32, String)>>>,
    ) -> Result<Value, String> {
        let &(tt, ti) = self
            .program
            .step_loc
            .get(step)
            .ok_or_else(|| format!("{r}: no step `{step}` in the flow"))?;
        let chain = self.program.ancestry(tt);
        let mut s = scope;
        let pos = loop {
            let t = self.scopes[s as usize].tmpl;
            if let Some(p) = chain.iter().position(|(c, _)| *c == t) {
                break p;
            }
            match self.scopes[s as usize].parent {
                Some(b) => s = self.nodes[b.0 as usize].scope,
                None => return Err(format!("{r}: `{step}` is not reachable from here")),
            }
        };
        let mut leaves = Vec::new();
        let v = self.collect(s, pos, &chain, ti, output, &mut leaves);
        if let Some(reads) = reads {
            reads
                .borrow_mut()
                .extend(leaves.into_iter().map(|n| (n, output.to_string())));
        }
        Ok(v)
    }

    fn collect(
        &self,
        s: u32,
        pos: usize,
        chain: &[(TmplId, Option<u32>)],
        ti: u32,
        output: &str,
        leaves: &mut Vec<u32>,
    ) -> Value {
        let sc = &self.scopes[s as usize];
        let (t, via) = chain[pos];
        let Some(via) = via else {
            leaves.push(sc.base + ti);
            let n = &self.nodes[(sc.base + ti) as usize];
            return n
                .info
                .outputs
                .as_ref()
                .and_then(|o| o.get(output))
                .cloned()
                .unwrap_or(Value::Null);
        };
        let b = sc.base + via;
        let node = &self.nodes[b as usize];
        match self.program.node(t, via) {
            TNode::ForEach { .. } => Value::Array(
                node.children
                    .iter()
                    .map(|c| self.collect(*c, pos + 1, chain, ti, output, leaves))
                    .collect(),
            ),
            TNode::Repeat { .. } => node
                .children
                .last()
                .map(|c| self.collect(*c, pos + 1, chain, ti, output, leaves))
                .unwrap_or(Value::Null),
            TNode::When { .. } => {
                let want = chain[pos + 1].0;
                node.children
                    .iter()
                    .find(|c| self.scopes[**c as usize].tmpl == want)
                    .map(|c| self.collect(*c, pos + 1, chain, ti, output, leaves))
                    .unwrap_or(Value::Null)
            }
            TNode::Step { .. } => Value::Null,
        }
    }
}

/// `KAON_PARAM_<NAME>`: upper case, anything else than A-Z0-9 as `_`.
fn env_name(k: &str) -> String {
    k.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Renders a Spark step into the job the executor submits. Local paths
/// (the application, jars, py-files) are made absolute against the
/// working directory; URLs (`hdfs://`, `s3a://`, `local:`) pass as given.
fn spark_job(
    s: &kaon_model::spec::SparkStep,
    constraints: Option<&kaon_model::constraints::Constraints>,
    workdir: &std::path::Path,
    ctx: &Ctx<'_>,
) -> Result<SparkJob, String> {
    let place = |p: &str| -> String {
        if p.contains(':') && !p.starts_with('/') {
            p.to_string()
        } else {
            normalize(workdir.join(p)).to_string_lossy().into_owned()
        }
    };
    let mut conf = std::collections::BTreeMap::new();
    for (k, t) in &s.conf {
        conf.insert(k.clone(), eval::render(t, ctx)?);
    }
    Ok(SparkJob {
        version: s.version.clone(),
        app: match &s.app {
            Some(t) => Some(place(&eval::render(t, ctx)?)),
            None => None,
        },
        sql: match &s.sql {
            Some(t) => Some(eval::render(t, ctx)?),
            None => None,
        },
        main_class: s.main_class.clone(),
        args: s
            .args
            .iter()
            .map(|t| eval::render(t, ctx))
            .collect::<Result<_, _>>()?,
        master: s.master.clone(),
        cluster: s.cluster.clone(),
        deploy_mode: s.deploy_mode.map(|m| match m {
            kaon_model::spec::DeployMode::Client => "client".to_string(),
            kaon_model::spec::DeployMode::Cluster => "cluster".to_string(),
        }),
        conf,
        driver_memory: s.driver_memory,
        executor_memory: s.executor_memory,
        driver_cores: s.driver_cores,
        executor_cores: s.executor_cores,
        num_executors: s.num_executors,
        max_cores: s.max_cores,
        packages: s.packages.clone(),
        jars: s.jars.iter().map(|j| place(j)).collect(),
        py_files: s.py_files.iter().map(|j| place(j)).collect(),
        constraints: constraints.filter(|c| !c.is_empty()).map(|c| c.to_string()),
    })
}

fn normalize(p: PathBuf) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// `1.5s`, `2m3s`: durations for messages.
pub fn fmt_duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = ms as f64 / 1000.0;
        if s < 10.0 {
            format!("{s:.1}s")
        } else {
            format!("{}s", ms / 1000)
        }
    } else if ms < 3_600_000 {
        format!("{}m{}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}
