//! Semantic checks: names, references, scopes, types, order, cycles.
//!
//! Two passes. The first walks the flow in order, building a graph of step
//! occurrences and checking each reference as it is met (by then every step
//! that may legally be referenced has been seen). The second, once the graph
//! is complete, finds cycles and checks that every referenced step really
//! runs before the place that reads it.

use std::collections::{BTreeMap, HashMap};

use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::diag::{Code, Diagnostic, Diagnostics, FileId, Span};
use crate::flow::{Flow, FlowKind, Ident, RESERVED};
use crate::spec::{DeployMode, StepKind, Workflow};
use crate::types::Type;

mod order;
mod refs;
mod types;

/// What validation learned about a workflow that others need: the types of
/// its outputs (for a parent's sub-workflow step).
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// `[workflow.outputs]` with their resolved types.
    pub output_types: IndexMap<String, Type>,
}

/// What a sub-workflow step needs to know about its child.
pub struct ChildInfo<'a> {
    /// The child's workflow.
    pub workflow: &'a Workflow,
    /// The child's facts.
    pub facts: &'a Facts,
}

#[derive(Clone, Debug)]
struct Var {
    name: String,
    ty: Type,
    span: Span,
}

#[derive(Clone, Debug, Default)]
struct Scope {
    vars: Vec<Var>,
    /// Ids of the enclosing for-each blocks, outermost first.
    foreach: Vec<usize>,
}

struct Upstream {
    span: Span,
    reader: String,
    target: String,
    /// Where the value is read: the target must run before one of these
    /// (or be one of them, when `inclusive`).
    at: Vec<NodeIndex>,
    inclusive: bool,
}

struct Checker<'a> {
    wf: &'a Workflow,
    file: FileId,
    children: &'a HashMap<String, ChildInfo<'a>>,
    diags: &'a mut Diagnostics,
    graph: DiGraph<String, ()>,
    nodes: HashMap<String, NodeIndex>,
    occurrences: BTreeMap<String, Vec<Span>>,
    /// Scope of each step's first occurrence.
    step_scope: HashMap<String, Scope>,
    /// Every loop variable declared anywhere, for "out of scope" messages.
    all_vars: HashMap<String, Span>,
    upstream: Vec<Upstream>,
    next_block: usize,
}

/// Checks a decoded workflow. `children` has the validated child of every
/// sub-workflow step that could be loaded.
pub fn check(
    wf: &Workflow,
    children: &HashMap<String, ChildInfo<'_>>,
    diags: &mut Diagnostics,
) -> Facts {
    let mut c = Checker {
        wf,
        file: wf.file,
        children,
        diags,
        graph: DiGraph::new(),
        nodes: HashMap::new(),
        occurrences: BTreeMap::new(),
        step_scope: HashMap::new(),
        all_vars: HashMap::new(),
        upstream: Vec::new(),
        next_block: 0,
    };
    c.markers();
    let exits = c.walk(&wf.flow, &[], &Scope::default());
    c.unused();
    for (name, step) in &wf.steps {
        c.spark_rules(name, step);
    }
    let facts = c.workflow_outputs(&exits);
    c.cycles_duplicates_and_order();
    facts
}

impl Checker<'_> {
    fn push(&mut self, d: Diagnostic) -> &mut Diagnostic {
        self.diags.push_mut(d)
    }

    fn error(&mut self, code: Code, span: Span, msg: impl Into<String>) -> &mut Diagnostic {
        self.push(Diagnostic::error(code, self.wf.file, span, msg))
    }

    fn markers(&mut self) {
        let items = self.wf.flow.items();
        let mut seen = Vec::new();
        self.wf
            .flow
            .for_each_step(&mut |id: &Ident| seen.push((id.name.clone(), id.span)));
        let first = items.first().and_then(|f| match &f.kind {
            FlowKind::Step { step } => Some(step.span),
            _ => None,
        });
        let last = items.last().and_then(|f| match &f.kind {
            FlowKind::Step { step } => Some(step.span),
            _ => None,
        });
        for (name, span) in seen {
            if name == "start" && Some(span) != first {
                self.error(Code::Conflict, span, "`start` must be the first step of the flow")
                    .help = Some("`start` and `end` mark the flow's entry and exit; remove this one or move it to the front".into());
            }
            if name == "end" && Some(span) != last {
                self.error(Code::Conflict, span, "`end` must be the last step of the flow")
                    .help = Some("`start` and `end` mark the flow's entry and exit; remove this one or move it to the end".into());
            }
        }
    }

    fn node(&mut self, name: &str) -> NodeIndex {
        if let Some(n) = self.nodes.get(name) {
            return *n;
        }
        let n = self.graph.add_node(name.to_string());
        self.nodes.insert(name.to_string(), n);
        n
    }

    /// Walks `flow` placed after `preds`; returns the nodes that finish it.
    fn walk(&mut self, flow: &Flow, preds: &[NodeIndex], scope: &Scope) -> Vec<NodeIndex> {
        match &flow.kind {
            FlowKind::Step { step } => {
                let n = self.node(&step.name);
                for p in preds {
                    self.graph.update_edge(*p, n, ());
                }
                let occ = self.occurrences.entry(step.name.clone()).or_default();
                occ.push(step.span);
                if occ.len() == 1 {
                    self.step_scope.insert(step.name.clone(), scope.clone());
                    self.step(step, n, scope);
                }
                vec![n]
            }
            FlowKind::Sequence { items } => {
                let mut last = preds.to_vec();
                for item in items {
                    last = self.walk(item, &last, scope);
                }
                last
            }
            FlowKind::Parallel { branches } => {
                if branches.len() == 1 {
                    self.push(Diagnostic::warning(
                        Code::FlowSyntax,
                        self.file,
                        flow.span,
                        "parallel block with a single branch",
                    ))
                    .help = Some(
                        "add another branch, or drop the parallel block around this one".into(),
                    );
                }
                let mut exits = Vec::new();
                for b in branches {
                    exits.extend(self.walk(b, preds, scope));
                }
                exits
            }
            FlowKind::ForEach { bindings, body } => {
                self.next_block += 1;
                let mut inner = scope.clone();
                inner.foreach.push(self.next_block);
                for b in bindings {
                    let ty = self.list_source(&b.source, scope, preds);
                    self.bind(&b.var, ty, &mut inner);
                }
                self.walk(body, preds, &inner)
            }
            FlowKind::Repeat { until, body, .. } => {
                let exits = self.walk(body, preds, scope);
                self.condition(until, scope, &exits, "the `until` condition");
                exits
            }
            FlowKind::When {
                cond,
                then,
                otherwise,
            } => {
                self.condition(cond, scope, preds, "the `when` condition");
                let mut exits = self.walk(then, preds, scope);
                match otherwise {
                    Some(o) => exits.extend(self.walk(o, preds, scope)),
                    // When the condition is false, what follows runs after the preds.
                    None => exits.extend(preds.iter().copied()),
                }
                exits
            }
        }
    }

    fn bind(&mut self, var: &Ident, ty: Option<Type>, scope: &mut Scope) {
        if RESERVED.contains(&var.name.as_str()) {
            self.error(
                Code::ReservedName,
                var.span,
                format!(
                    "`{}` is a reserved word and cannot name a loop variable",
                    var.name
                ),
            );
            return;
        }
        if let Some(prev) = scope.vars.iter().find(|v| v.name == var.name) {
            let prev_span = prev.span;
            let d = Diagnostic::error(
                Code::DuplicateName,
                self.file,
                var.span,
                format!("loop variable `{}` is already bound", var.name),
            )
            .with_secondary(self.file, prev_span, "first bound here")
            .with_help("give each loop variable its own name");
            self.push(d);
            return;
        }
        self.all_vars.entry(var.name.clone()).or_insert(var.span);
        scope.vars.push(Var {
            name: var.name.clone(),
            ty: ty.unwrap_or(Type::Json),
            span: var.span,
        });
    }

    fn unused(&mut self) {
        let unused: Vec<(String, Span)> = self
            .wf
            .steps
            .iter()
            .filter(|(name, _)| !self.occurrences.contains_key(*name))
            .map(|(name, s)| (name.clone(), s.span))
            .collect();
        for (name, span) in unused {
            self.push(Diagnostic::warning(
                Code::UnusedStep,
                self.file,
                span,
                format!("step `{name}` is declared but the flow never runs it"),
            ))
            .help = Some(format!("add `{name}` to the flow, or remove it"));
        }
    }

    fn spark_rules(&mut self, name: &str, step: &crate::spec::Step) {
        let StepKind::Spark(s) = &step.kind else {
            return;
        };
        let major = s
            .version
            .as_deref()
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        if let Some(master) = &s.master {
            if master.starts_with("mesos://") && major.is_some_and(|m| m >= 4) {
                let d = Diagnostic::error(Code::Conflict, self.file, s.master_span, format!("step `{name}` asks for Spark {} on a Mesos master, but Mesos support was removed in Spark 4.0", s.version.as_deref().unwrap_or("4")))
                    .with_secondary(self.file, s.version_span, "Spark version chosen here")
                    .with_help("pin this step to Spark 3.5 (`spark = \"3.5\"`), or run it on a standalone, YARN or Kubernetes master");
                self.push(d);
            }
            if master.starts_with("local") && s.deploy_mode == Some(DeployMode::Cluster) {
                self.error(Code::Conflict, s.master_span, format!("step `{name}` uses deploy_mode = \"cluster\" with a local master"))
                    .help = Some("cluster mode needs a cluster master (`spark://`, `yarn`, `k8s://`); use \"client\" with `local[N]`".into());
            }
        }
    }

    fn workflow_outputs(&mut self, exits: &[NodeIndex]) -> Facts {
        let mut facts = Facts::default();
        let scope = Scope::default();
        for (name, out) in &self.wf.outputs {
            let mut ty = Some(Type::String);
            for r in out.value.refs() {
                let t = self.resolve(r, &scope, "the workflow outputs", exits, true);
                if out.value.as_single_ref().is_some() {
                    ty = t;
                }
            }
            if let Some(t) = ty {
                facts.output_types.insert(name.clone(), t);
            }
        }
        facts
    }
}
