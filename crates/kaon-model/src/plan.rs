//! The plan: a validated workflow as a graph of what runs after what.
//!
//! Steps are nodes and edges say "after". For-each, repeat and conditional
//! blocks, and sub-workflow steps, are single structured nodes that carry
//! their own inner [`Plan`]: the engine expands them at run time, when the
//! list to loop over, the loop condition or the branch is known.

use std::fmt::Write as _;
use std::path::PathBuf;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;
use serde_json::{Value, json};

use crate::expr::{Expr, Lit};
use crate::flow::{Binding, Flow, FlowKind, ListSource, MARKERS};
use crate::spec::{StepKind, Workflow};

/// A node of the plan.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "node", rename_all = "snake_case")]
pub enum PlanNode {
    /// A step (or the `start`/`end` marker).
    Step {
        /// The step's name.
        name: String,
        /// Its kind (`marker` for `start`/`end`).
        kind: String,
    },
    /// A for-each block.
    ForEach {
        /// A unique label, e.g. `for-each#1(reg)`.
        label: String,
        /// The loop variables and their lists.
        bindings: Vec<Binding>,
        /// What runs per item.
        body: Plan,
    },
    /// A repeat-until block.
    Repeat {
        /// A unique label.
        label: String,
        /// Checked after each pass.
        until: Expr,
        /// Most passes.
        max: u32,
        /// What repeats.
        body: Plan,
    },
    /// A conditional block.
    When {
        /// A unique label.
        label: String,
        /// The condition.
        cond: Expr,
        /// Taken when true.
        then: Plan,
        /// Taken when false.
        otherwise: Option<Plan>,
    },
    /// A sub-workflow step: a child run of another workflow.
    SubWorkflow {
        /// The step's name.
        name: String,
        /// The child workflow file.
        path: PathBuf,
        /// The child's plan.
        child: Box<Plan>,
    },
}

impl PlanNode {
    /// The step name or block label.
    pub fn label(&self) -> &str {
        match self {
            PlanNode::Step { name, .. } | PlanNode::SubWorkflow { name, .. } => name,
            PlanNode::ForEach { label, .. }
            | PlanNode::Repeat { label, .. }
            | PlanNode::When { label, .. } => label,
        }
    }
}

/// A graph of plan nodes; edges point from a node to what runs after it.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The nodes and "after" edges.
    pub graph: DiGraph<PlanNode, ()>,
}

impl Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// Builds plans, numbering blocks across the whole workflow.
pub struct PlanBuilder<'w> {
    workflow: &'w Workflow,
    child_plans: &'w dyn Fn(&str) -> Option<Plan>,
    counter: usize,
}

impl<'w> PlanBuilder<'w> {
    /// A builder for `workflow`; `child_plans` gives the plan of a
    /// sub-workflow step by step name.
    pub fn new(workflow: &'w Workflow, child_plans: &'w dyn Fn(&str) -> Option<Plan>) -> Self {
        Self {
            workflow,
            child_plans,
            counter: 0,
        }
    }

    /// Builds the plan of the whole flow.
    pub fn build(mut self) -> Plan {
        let mut plan = Plan::default();
        self.add(&self.workflow.flow, &[], &mut plan);
        plan
    }

    fn label(&mut self, what: &str, detail: &str) -> String {
        self.counter += 1;
        if detail.is_empty() {
            format!("{what}#{}", self.counter)
        } else {
            format!("{what}#{}({detail})", self.counter)
        }
    }

    fn sub(&mut self, flow: &Flow) -> Plan {
        let mut p = Plan::default();
        self.add(flow, &[], &mut p);
        p
    }

    /// Adds `flow` after `preds`; returns the nodes that finish it.
    fn add(&mut self, flow: &Flow, preds: &[NodeIndex], plan: &mut Plan) -> Vec<NodeIndex> {
        let node = match &flow.kind {
            FlowKind::Sequence { items } => {
                let mut last = preds.to_vec();
                for item in items {
                    last = self.add(item, &last, plan);
                }
                return last;
            }
            FlowKind::Parallel { branches } => {
                let mut exits = Vec::new();
                for b in branches {
                    exits.extend(self.add(b, preds, plan));
                }
                return exits;
            }
            FlowKind::Step { step } => {
                let name = step.name.clone();
                match self.workflow.steps.get(&name).map(|s| &s.kind) {
                    Some(StepKind::SubWorkflow(sw)) => PlanNode::SubWorkflow {
                        child: Box::new((self.child_plans)(&name).unwrap_or_default()),
                        path: sw.workflow.clone(),
                        name,
                    },
                    Some(k) => PlanNode::Step {
                        kind: k.name().to_string(),
                        name,
                    },
                    None if MARKERS.contains(&name.as_str()) => PlanNode::Step {
                        name,
                        kind: "marker".into(),
                    },
                    None => PlanNode::Step {
                        name,
                        kind: "unknown".into(),
                    },
                }
            }
            FlowKind::ForEach { bindings, body } => {
                let vars: Vec<&str> = bindings.iter().map(|b| b.var.name.as_str()).collect();
                let label = self.label("for-each", &vars.join(","));
                PlanNode::ForEach {
                    label,
                    bindings: bindings.clone(),
                    body: self.sub(body),
                }
            }
            FlowKind::Repeat { until, max, body } => {
                let label = self.label("repeat", "");
                PlanNode::Repeat {
                    label,
                    until: until.clone(),
                    max: *max,
                    body: self.sub(body),
                }
            }
            FlowKind::When {
                cond,
                then,
                otherwise,
            } => {
                let label = self.label("when", "");
                PlanNode::When {
                    label,
                    cond: cond.clone(),
                    then: self.sub(then),
                    otherwise: otherwise.as_ref().map(|o| self.sub(o)),
                }
            }
        };
        let idx = plan.graph.add_node(node);
        for p in preds {
            plan.graph.add_edge(*p, idx, ());
        }
        vec![idx]
    }
}

fn source_text(s: &ListSource) -> String {
    match s {
        ListSource::Param { name } => format!("${{params.{}}}", name.name),
        ListSource::Ref { r } => r.to_string(),
        ListSource::Literal { items, .. } => {
            let parts: Vec<String> = items.iter().map(Lit::to_string).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

impl Plan {
    /// Nodes in insertion order, which is a topological order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeIndex, &PlanNode)> {
        self.graph.node_indices().map(|i| (i, &self.graph[i]))
    }

    /// Labels of the nodes that must finish before `idx`.
    pub fn after(&self, idx: NodeIndex) -> Vec<&str> {
        let mut v: Vec<NodeIndex> = self
            .graph
            .neighbors_directed(idx, Direction::Incoming)
            .collect();
        v.sort();
        v.into_iter().map(|i| self.graph[i].label()).collect()
    }

    /// Counts steps, for-each blocks, repeats and conditionals, recursively.
    pub fn counts(&self) -> PlanCounts {
        let mut c = PlanCounts::default();
        self.count_into(&mut c);
        c
    }

    fn count_into(&self, c: &mut PlanCounts) {
        for (_, n) in self.nodes() {
            match n {
                PlanNode::Step { kind, .. } if kind != "marker" => c.steps += 1,
                PlanNode::Step { .. } => {}
                PlanNode::SubWorkflow { .. } => {
                    c.steps += 1;
                    c.subworkflows += 1;
                }
                PlanNode::ForEach { body, .. } => {
                    c.for_each += 1;
                    body.count_into(c);
                }
                PlanNode::Repeat { body, .. } => {
                    c.repeats += 1;
                    body.count_into(c);
                }
                PlanNode::When {
                    then, otherwise, ..
                } => {
                    c.whens += 1;
                    then.count_into(c);
                    if let Some(o) = otherwise {
                        o.count_into(c);
                    }
                }
            }
        }
    }

    /// The plan as an indented tree: one line per node, nested bodies
    /// indented under their block, `after` naming each node's predecessors.
    pub fn to_tree(&self, name: &str) -> String {
        let c = self.counts();
        let mut out = format!(
            "workflow {name}: {} steps, {} for-each, {} repeat, {} when, {} sub-workflow\n",
            c.steps, c.for_each, c.repeats, c.whens, c.subworkflows
        );
        self.tree_into(&mut out, 1);
        out
    }

    fn tree_into(&self, out: &mut String, depth: usize) {
        let pad = "  ".repeat(depth);
        for (idx, node) in self.nodes() {
            let after = self.after(idx);
            let after = if after.is_empty() {
                String::new()
            } else {
                format!("  after {}", after.join(", "))
            };
            match node {
                PlanNode::Step { name, kind } => {
                    let _ = writeln!(out, "{pad}{name} [{kind}]{after}");
                }
                PlanNode::SubWorkflow { name, path, child } => {
                    let _ = writeln!(out, "{pad}{name} [subworkflow {}]{after}", path.display());
                    child.tree_into(out, depth + 1);
                }
                PlanNode::ForEach {
                    label,
                    bindings,
                    body,
                } => {
                    let b: Vec<String> = bindings
                        .iter()
                        .map(|b| format!("{} in {}", b.var.name, source_text(&b.source)))
                        .collect();
                    let _ = writeln!(out, "{pad}{label}: for each {}{after}", b.join(" × "));
                    body.tree_into(out, depth + 1);
                }
                PlanNode::Repeat {
                    label,
                    until,
                    max,
                    body,
                } => {
                    let _ = writeln!(out, "{pad}{label}: repeat until {until} (max {max}){after}");
                    body.tree_into(out, depth + 1);
                }
                PlanNode::When {
                    label,
                    cond,
                    then,
                    otherwise,
                } => {
                    let _ = writeln!(out, "{pad}{label}: when {cond}{after}");
                    then.tree_into(out, depth + 1);
                    if let Some(o) = otherwise {
                        let _ = writeln!(out, "{pad}otherwise");
                        o.tree_into(out, depth + 1);
                    }
                }
            }
        }
    }

    /// The plan as Graphviz DOT; blocks are clusters.
    pub fn to_dot(&self, name: &str) -> String {
        let mut out = format!(
            "digraph {} {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
            dot_id(name)
        );
        let mut next = 0usize;
        self.dot_into(&mut out, "", &mut next, 1);
        out.push_str("}\n");
        out
    }

    /// Writes nodes and edges; returns the DOT ids of each node's entry and
    /// exit (a cluster is entered at its first nodes and left at its last).
    fn dot_into(
        &self,
        out: &mut String,
        prefix: &str,
        next: &mut usize,
        depth: usize,
    ) -> Vec<(Vec<String>, Vec<String>)> {
        let pad = "  ".repeat(depth);
        let mut ends = Vec::new();
        for (_, node) in self.nodes() {
            let id = format!("{prefix}{}", dot_id(node.label()));
            let e = match node {
                PlanNode::Step { name, kind } => {
                    let shape = if kind == "marker" {
                        ", shape=circle"
                    } else {
                        ""
                    };
                    let _ = writeln!(out, "{pad}{id} [label=\"{name}\\n{kind}\"{shape}];");
                    (vec![id.clone()], vec![id])
                }
                _ => {
                    *next += 1;
                    let title = match node {
                        PlanNode::ForEach { bindings, .. } => {
                            let b: Vec<String> = bindings
                                .iter()
                                .map(|b| format!("{} in {}", b.var.name, source_text(&b.source)))
                                .collect();
                            format!("for each {}", b.join(" x "))
                        }
                        PlanNode::Repeat { until, max, .. } => {
                            format!("repeat until {until} (max {max})")
                        }
                        PlanNode::When { cond, .. } => format!("when {cond}"),
                        PlanNode::SubWorkflow { name, path, .. } => {
                            format!("{name}: {}", path.display())
                        }
                        PlanNode::Step { .. } => String::new(),
                    };
                    let _ = writeln!(out, "{pad}subgraph cluster_{} {{", *next);
                    let _ = writeln!(out, "{pad}  label=\"{}\";", title.replace('"', "\\\""));
                    let inner_prefix = format!("{id}__");
                    let bodies: Vec<&Plan> = match node {
                        PlanNode::ForEach { body, .. } | PlanNode::Repeat { body, .. } => {
                            vec![body]
                        }
                        PlanNode::When {
                            then, otherwise, ..
                        } => {
                            let mut v = vec![then];
                            v.extend(otherwise.iter());
                            v
                        }
                        PlanNode::SubWorkflow { child, .. } => vec![&**child],
                        PlanNode::Step { .. } => vec![],
                    };
                    let mut entry = Vec::new();
                    let mut exit = Vec::new();
                    for (bi, body) in bodies.iter().enumerate() {
                        let p = format!("{inner_prefix}{bi}_");
                        let inner = body.dot_into(out, &p, next, depth + 1);
                        for (i, (idx, _)) in body.nodes().enumerate() {
                            if body
                                .graph
                                .neighbors_directed(idx, Direction::Incoming)
                                .next()
                                .is_none()
                            {
                                entry.extend(inner[i].0.clone());
                            }
                            if body
                                .graph
                                .neighbors_directed(idx, Direction::Outgoing)
                                .next()
                                .is_none()
                            {
                                exit.extend(inner[i].1.clone());
                            }
                        }
                    }
                    let _ = writeln!(out, "{pad}}}");
                    (entry, exit)
                }
            };
            ends.push(e);
        }
        for edge in self.graph.raw_edges() {
            for from in &ends[edge.source().index()].1 {
                for to in &ends[edge.target().index()].0 {
                    let _ = writeln!(out, "{pad}{from} -> {to};");
                }
            }
        }
        ends
    }

    /// The plan as JSON: `{"nodes": [{"id", "node", ..., "after": [ids]}]}`.
    pub fn to_json(&self) -> Value {
        let nodes: Vec<Value> = self
            .nodes()
            .map(|(idx, n)| {
                let mut v = serde_json::to_value(n).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("id".into(), json!(n.label()));
                    m.insert("after".into(), json!(self.after(idx)));
                }
                v
            })
            .collect();
        json!({ "nodes": nodes })
    }
}

fn dot_id(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What a plan contains, counted through nested blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanCounts {
    /// Steps (markers excluded).
    pub steps: usize,
    /// For-each blocks.
    pub for_each: usize,
    /// Repeat blocks.
    pub repeats: usize,
    /// Conditional blocks.
    pub whens: usize,
    /// Sub-workflow steps.
    pub subworkflows: usize,
}
