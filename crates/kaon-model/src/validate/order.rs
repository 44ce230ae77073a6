//! Graph checks once the flow is walked: cycles, steps used twice, and
//! that every step whose output is read runs before the reader.

use std::collections::HashMap;

use petgraph::Direction;
use petgraph::algo::{kosaraju_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use super::Checker;
use crate::diag::{Code, Diagnostic, Span};
use crate::flow::{Flow, FlowKind};

impl Checker<'_> {
    pub(super) fn cycles_duplicates_and_order(&mut self) {
        let mut in_cycle = std::collections::HashSet::new();
        // Kosaraju's algorithm in petgraph is iterative; its Tarjan recurses
        // once per node of a path and overflows the stack on long chains.
        for scc in kosaraju_scc(&self.graph) {
            let looped = scc.len() > 1
                || scc
                    .first()
                    .is_some_and(|n| self.graph.contains_edge(*n, *n));
            if !looped {
                continue;
            }
            let mut names: Vec<String> = scc.iter().map(|n| self.graph[*n].clone()).collect();
            names.sort_by_key(|n| self.occurrences.get(n).and_then(|o| o.first()).copied());
            let first = &names[0];
            let occ = self.occurrences.get(first).cloned().unwrap_or_default();
            let span = occ.get(1).or(occ.first()).copied().unwrap_or_default();
            let path = format!("{} -> {first}", names.join(" -> "));
            let mut d = Diagnostic::error(Code::Cycle, self.file, span, format!("the flow runs in a circle: {path}"))
                .with_help("a step is one node of the graph; it cannot come after itself. Use `^^(until = ..., max = N) --< ( ) >--` to repeat steps");
            if let Some(f) = occ.first() {
                d = d.with_secondary(self.file, *f, format!("`{first}` first appears here"));
            }
            self.push(d);
            in_cycle.extend(names);
        }
        let dups: Vec<(String, Vec<Span>)> = self
            .occurrences
            .iter()
            .filter(|(n, o)| o.len() > 1 && !in_cycle.contains(*n))
            .map(|(n, o)| (n.clone(), o.clone()))
            .collect();
        let dups_found = !dups.is_empty();
        for (name, occ) in dups {
            for span in &occ[1..] {
                let d = Diagnostic::error(Code::DuplicateName, self.file, *span, format!("step `{name}` appears more than once in the flow"))
                    .with_secondary(self.file, occ[0], "first used here")
                    .with_help("a step is one node of the graph; to run it after several branches, put it once after the join `>==`; to run it again, declare a second step");
                self.push(d);
            }
        }
        if !in_cycle.is_empty() {
            return;
        }
        let checks = std::mem::take(&mut self.upstream);
        if checks.is_empty() {
            return;
        }
        let Some(mut order) = Order::new(&self.graph, &self.wf.flow, &self.nodes, dups_found)
        else {
            return;
        };
        for u in checks {
            let Some(t) = self.nodes.get(&u.target).copied() else {
                continue;
            };
            let ok =
                u.at.iter()
                    .any(|a| (u.inclusive && *a == t) || order.runs_before(&self.graph, t, *a));
            if !ok {
                let d = Diagnostic::error(Code::NotUpstream, self.file, u.span, format!("{} reads an output of `{}`, which does not run before it", u.reader, u.target))
                    .with_help(format!("order them in the flow so that `{}` runs first (e.g. `{} -> ...`), or read a step that does", u.target, u.target));
                let d = match self.occurrences.get(&u.target).and_then(|o| o.first()) {
                    Some(s) => d.with_secondary(self.file, *s, format!("`{}` runs here", u.target)),
                    None => d,
                };
                self.push(d);
            }
        }
    }
}

/// Answers "does step node `t` run before node `a`?" for the upstream checks,
/// in time and memory linear in the size of the flow.
enum Order {
    /// Every step occurs once, so the graph is series-parallel and its order
    /// has dimension two: `t` runs before `a` exactly when it comes first
    /// both when branches are read left to right and when read right to
    /// left (a branch point puts siblings in opposite orders).
    Realizer { left: Vec<u32>, right: Vec<u32> },
    /// A step occurs twice (already an error), which ties the graph in ways
    /// the flow's shape does not show: search the predecessors of `a`,
    /// skipping nodes that come before `t` in a topological order.
    Search {
        topo: Vec<u32>,
        seen: Vec<u32>,
        stamp: u32,
        stack: Vec<NodeIndex>,
    },
}

impl Order {
    /// `None` when the graph has a cycle (reported elsewhere).
    fn new(
        graph: &DiGraph<String, ()>,
        flow: &Flow,
        nodes: &HashMap<String, NodeIndex>,
        duplicates: bool,
    ) -> Option<Order> {
        let n = graph.node_count();
        if !duplicates {
            let mut positions = [vec![0u32; n], vec![0u32; n]];
            for (mirror, pos) in positions.iter_mut().enumerate() {
                let mut next = 0u32;
                steps_in_order(flow, mirror == 1, &mut |name: &str| {
                    if let Some(ix) = nodes.get(name) {
                        pos[ix.index()] = next;
                        next += 1;
                    }
                });
            }
            let [left, right] = positions;
            return Some(Order::Realizer { left, right });
        }
        let sorted = toposort(graph, None).ok()?;
        let mut topo = vec![0u32; n];
        for (i, ix) in sorted.iter().enumerate() {
            topo[ix.index()] = i as u32;
        }
        Some(Order::Search {
            topo,
            seen: vec![0; n],
            stamp: 0,
            stack: Vec::new(),
        })
    }

    /// True when there is a path from `t` to `a` (`t != a`).
    fn runs_before(&mut self, graph: &DiGraph<String, ()>, t: NodeIndex, a: NodeIndex) -> bool {
        match self {
            Order::Realizer { left, right } => {
                let (t, a) = (t.index(), a.index());
                left[t] < left[a] && right[t] < right[a]
            }
            Order::Search {
                topo,
                seen,
                stamp,
                stack,
            } => {
                *stamp += 1;
                stack.clear();
                stack.push(a);
                while let Some(x) = stack.pop() {
                    for e in graph.edges_directed(x, Direction::Incoming) {
                        let p = e.source();
                        if p == t {
                            return true;
                        }
                        if seen[p.index()] != *stamp && topo[p.index()] > topo[t.index()] {
                            seen[p.index()] = *stamp;
                            stack.push(p);
                        }
                    }
                }
                false
            }
        }
    }
}

/// Calls `f` with each step of `flow` in the order it is written, or with
/// the branches of every parallel and conditional block taken right to left
/// when `mirror`. Recurses once per nested block, which the parser bounds.
fn steps_in_order(flow: &Flow, mirror: bool, f: &mut impl FnMut(&str)) {
    let mut each = |items: &mut dyn Iterator<Item = &Flow>| {
        for item in items {
            steps_in_order(item, mirror, f);
        }
    };
    match &flow.kind {
        FlowKind::Step { step } => f(&step.name),
        FlowKind::Sequence { items } => each(&mut items.iter()),
        FlowKind::Parallel { branches } if mirror => each(&mut branches.iter().rev()),
        FlowKind::Parallel { branches } => each(&mut branches.iter()),
        FlowKind::ForEach { body, .. } | FlowKind::Repeat { body, .. } => {
            each(&mut std::iter::once(&**body));
        }
        FlowKind::When {
            then, otherwise, ..
        } => {
            let mut parts: Vec<&Flow> = std::iter::once(&**then)
                .chain(otherwise.as_deref())
                .collect();
            if mirror {
                parts.reverse();
            }
            each(&mut parts.into_iter());
        }
    }
}
