//! The plan compiled into flat templates the engine instantiates.
//!
//! A [`kaon_model::plan::Plan`] nests blocks inside blocks. The engine wants
//! numbers: each (sub-)plan becomes a [`Tmpl`] with its nodes in a vector and
//! edges as index lists, so that an instance of a template (a scope) is just
//! a base offset into the run's node arena.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use kaon_model::Validated;
use kaon_model::expr::Expr;
use kaon_model::flow::Binding;
use kaon_model::plan::{Plan, PlanNode};
use kaon_model::spec::{Step, StepKind};

/// Index of a template in [`Program::tmpls`]; 0 is the whole flow.
pub type TmplId = u32;

/// A validated workflow, compiled for the engine.
#[derive(Debug)]
pub struct Program {
    /// The workflow it came from.
    pub workflow: Arc<Validated>,
    /// Templates; 0 is the top-level flow.
    pub tmpls: Vec<Tmpl>,
    /// Where each step of the flow sits: (template, node index).
    pub step_loc: HashMap<String, (TmplId, u32)>,
    /// The directory of the workflow file; relative paths start there.
    pub base_dir: PathBuf,
}

/// One (sub-)plan: nodes and their "after" edges.
#[derive(Debug, Default)]
pub struct Tmpl {
    /// The block node this template is the body (or branch) of.
    pub parent: Option<(TmplId, u32)>,
    /// The nodes.
    pub nodes: Vec<TNode>,
    /// Predecessors of each node.
    pub preds: Vec<Vec<u32>>,
    /// Successors of each node.
    pub succs: Vec<Vec<u32>>,
}

/// What a template node runs.
#[derive(Debug)]
pub enum TNode {
    /// A step (or the `start`/`end` marker).
    Step {
        /// The step's name.
        name: String,
        /// How the engine treats it.
        kind: TKind,
    },
    /// A for-each block.
    ForEach {
        /// Its label, e.g. `for-each#1(reg)`.
        label: String,
        /// The loop variables and their lists.
        bindings: Vec<Binding>,
        /// The body template.
        body: TmplId,
    },
    /// A repeat-until block.
    Repeat {
        /// Its label.
        label: String,
        /// Checked after each pass.
        until: Expr,
        /// Most passes.
        max: u32,
        /// The body template.
        body: TmplId,
    },
    /// A conditional block.
    When {
        /// Its label.
        label: String,
        /// The condition.
        cond: Expr,
        /// Taken when true.
        then: TmplId,
        /// Taken when false.
        otherwise: Option<TmplId>,
    },
}

impl TNode {
    /// The step name or block label.
    pub fn name(&self) -> &str {
        match self {
            TNode::Step { name, .. } => name,
            TNode::ForEach { label, .. }
            | TNode::Repeat { label, .. }
            | TNode::When { label, .. } => label,
        }
    }

    /// A short kind name for tables: `command`, `for-each`, ...
    pub fn kind_name(&self) -> &'static str {
        match self {
            TNode::Step { kind, .. } => kind.name(),
            TNode::ForEach { .. } => "for-each",
            TNode::Repeat { .. } => "repeat",
            TNode::When { .. } => "when",
        }
    }

    /// True for for-each, repeat and when blocks.
    pub fn is_block(&self) -> bool {
        !matches!(self, TNode::Step { .. })
    }
}

/// How the engine runs a step node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TKind {
    /// `start` / `end`: done as soon as reached.
    Marker,
    /// `kind = "noop"`: done as soon as reached.
    Noop,
    /// A child process, through an executor.
    Command,
    /// A Spark application, through an executor.
    Spark,
    /// Parks until a signal arrives.
    Wait,
    /// A child run of another workflow.
    SubWorkflow,
}

impl TKind {
    /// The name used in tables.
    pub fn name(self) -> &'static str {
        match self {
            TKind::Marker => "marker",
            TKind::Noop => "noop",
            TKind::Command => "command",
            TKind::Spark => "spark",
            TKind::Wait => "wait",
            TKind::SubWorkflow => "subworkflow",
        }
    }

    /// True when an executor runs it (and resources are admitted).
    pub fn is_executed(self) -> bool {
        matches!(self, TKind::Command | TKind::Spark)
    }
}

impl Program {
    /// Compiles a validated workflow whose relative paths (working
    /// directories, output paths) start at `base_dir`.
    pub fn new(workflow: Arc<Validated>, base_dir: PathBuf) -> Program {
        let mut p = Program {
            tmpls: Vec::new(),
            step_loc: HashMap::new(),
            base_dir,
            workflow: workflow.clone(),
        };
        p.compile(&workflow.plan, None);
        p
    }

    /// The step's declaration (`None` for markers).
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.workflow.workflow.steps.get(name)
    }

    /// The template node at `(tmpl, idx)`.
    pub fn node(&self, tmpl: TmplId, idx: u32) -> &TNode {
        &self.tmpls[tmpl as usize].nodes[idx as usize]
    }

    fn compile(&mut self, plan: &Plan, parent: Option<(TmplId, u32)>) -> TmplId {
        let id = self.tmpls.len() as TmplId;
        self.tmpls.push(Tmpl {
            parent,
            ..Tmpl::default()
        });
        let g = &plan.graph;
        let n = g.node_count();
        let mut nodes = Vec::with_capacity(n);
        for (i, ix) in g.node_indices().enumerate() {
            let here = Some((id, i as u32));
            let node = match &g[ix] {
                PlanNode::Step { name, kind } => {
                    self.step_loc.insert(name.clone(), (id, i as u32));
                    let kind = match self.workflow.workflow.steps.get(name).map(|s| &s.kind) {
                        Some(StepKind::Command(_)) => TKind::Command,
                        Some(StepKind::Spark(_)) => TKind::Spark,
                        Some(StepKind::Wait(_)) => TKind::Wait,
                        Some(StepKind::SubWorkflow(_)) => TKind::SubWorkflow,
                        Some(StepKind::Noop) => TKind::Noop,
                        None if kind == "marker" => TKind::Marker,
                        None => TKind::Noop,
                    };
                    TNode::Step {
                        name: name.clone(),
                        kind,
                    }
                }
                PlanNode::SubWorkflow { name, .. } => {
                    self.step_loc.insert(name.clone(), (id, i as u32));
                    TNode::Step {
                        name: name.clone(),
                        kind: TKind::SubWorkflow,
                    }
                }
                PlanNode::ForEach {
                    label,
                    bindings,
                    body,
                } => TNode::ForEach {
                    label: label.clone(),
                    bindings: bindings.clone(),
                    body: self.compile(body, here),
                },
                PlanNode::Repeat {
                    label,
                    until,
                    max,
                    body,
                } => TNode::Repeat {
                    label: label.clone(),
                    until: until.clone(),
                    max: *max,
                    body: self.compile(body, here),
                },
                PlanNode::When {
                    label,
                    cond,
                    then,
                    otherwise,
                } => TNode::When {
                    label: label.clone(),
                    cond: cond.clone(),
                    then: self.compile(then, here),
                    otherwise: otherwise.as_ref().map(|o| self.compile(o, here)),
                },
            };
            nodes.push(node);
        }
        let mut preds = vec![Vec::new(); n];
        let mut succs = vec![Vec::new(); n];
        for e in g.raw_edges() {
            let (a, b) = (e.source().index() as u32, e.target().index() as u32);
            succs[a as usize].push(b);
            preds[b as usize].push(a);
        }
        let t = &mut self.tmpls[id as usize];
        t.nodes = nodes;
        t.preds = preds;
        t.succs = succs;
        id
    }

    /// The chain of templates from the root down to `tmpl`, with the block
    /// node (in the previous template) that leads into each.
    pub fn ancestry(&self, tmpl: TmplId) -> Vec<(TmplId, Option<u32>)> {
        let mut ts = vec![tmpl];
        let mut t = tmpl;
        while let Some((pt, _)) = self.tmpls[t as usize].parent {
            ts.push(pt);
            t = pt;
        }
        ts.reverse();
        (0..ts.len())
            .map(|i| {
                let via = ts
                    .get(i + 1)
                    .and_then(|n| self.tmpls[*n as usize].parent.map(|(_, b)| b));
                (ts[i], via)
            })
            .collect()
    }
}
