//! The run's storage: scopes and nodes in two arenas (a node's id is its
//! position), the counters that tell when a scope or block is done, and
//! the delta of what one `apply` changed, which the driver stores.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use kaon_model::spec::Step;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::launch::param_env;
use super::{RunState, Work};
use crate::error::EngineError;
use crate::eval;
use crate::event::NodeId;
use crate::program::{Program, TNode, TmplId};
use crate::state::{NodeData, NodeInfo, RunData, RunOptions, RunStatus, SkipReason, StepState};

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
    pub(super) left: u32,
    pub(super) failed: u32,
    pub(super) cancelled: u32,
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
    pub(super) preds_left: u32,
    pub(super) children: Vec<u32>,
    pub(super) children_left: u32,
    pub(super) children_failed: u32,
    pub(super) children_cancelled: u32,
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
            awaiting_memo: HashMap::new(),
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
    pub(super) fn recount(&mut self) {
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
        groups.reverse();
        let frames: Vec<String> = groups.into_iter().flatten().collect();
        kaon_model::ids::NodeKey::instance(&name, &frames).into_string()
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

    pub(super) fn mark(&mut self, n: u32) {
        if !self.is_dirty[n as usize] {
            self.is_dirty[n as usize] = true;
            self.dirty.push(n);
        }
    }

    pub(super) fn set_state(&mut self, n: u32, s: StepState) {
        self.nodes[n as usize].state = s;
        self.mark(n);
    }

    pub(super) fn alloc_scope(
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
    pub(super) fn new_scope(
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

    pub(super) fn start_now(&mut self, n: u32) {
        let info = &mut self.nodes[n as usize].info;
        if info.started.is_none() {
            info.started = Some(self.now);
        }
        info.attempt_started = Some(self.now);
        self.mark(n);
    }
}
