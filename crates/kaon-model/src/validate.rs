//! Semantic checks: names, references, scopes, types, order, cycles.
//!
//! Two passes. The first walks the flow in order, building a graph of step
//! occurrences and checking each reference as it is met (by then every step
//! that may legally be referenced has been seen). The second, once the graph
//! is complete, finds cycles and checks that every referenced step really
//! runs before the place that reads it.

use std::collections::{BTreeMap, HashMap};

use indexmap::IndexMap;
use petgraph::Direction;
use petgraph::algo::{kosaraju_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::diag::{Code, Diagnostic, Diagnostics, FileId, Span, suggest};
use crate::expr::{BinOp, Expr, Lit, RUN_FIELDS, Ref, RefTarget, Template};
use crate::flow::{Flow, FlowKind, Ident, ListSource, MARKERS, RESERVED};
use crate::spec::{DeployMode, StepKind, Workflow};
use crate::types::Type;

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

    /// The item type of a for-each list, or `None` after reporting why not.
    fn list_source(
        &mut self,
        src: &ListSource,
        scope: &Scope,
        preds: &[NodeIndex],
    ) -> Option<Type> {
        let (ty, what) = match src {
            ListSource::Param { name } => match self.wf.params.get(&name.name) {
                Some(p) => (p.ty.clone(), format!("parameter `{}`", name.name)),
                None => {
                    let help = self.param_help(&name.name);
                    let msg = format!(
                        "for-each over `{}`, but there is no parameter of that name",
                        name.name
                    );
                    self.error(Code::UnknownReference, name.span, msg).help = Some(help);
                    return None;
                }
            },
            ListSource::Ref { r } => {
                let ty = self.resolve(r, scope, "the for-each list", preds, true)?;
                (ty, format!("`{r}`"))
            }
            ListSource::Literal { items, span } => {
                let values: Vec<serde_json::Value> = items.iter().map(lit_json).collect();
                if values.is_empty() {
                    self.push(Diagnostic::warning(
                        Code::InvalidValue,
                        self.file,
                        *span,
                        "for-each over an empty list never runs its body",
                    ));
                }
                (
                    Type::of_value(&serde_json::Value::Array(values)),
                    "the list".to_string(),
                )
            }
        };
        match ty {
            Type::List(item) => Some(*item),
            Type::Json => Some(Type::Json),
            other => {
                self.error(
                    Code::TypeMismatch,
                    src.span(),
                    format!("for-each needs a list, but {what} is {other:#}"),
                )
                .help = Some("loop over a list<...> parameter or output".into());
                None
            }
        }
    }

    fn param_help(&self, name: &str) -> String {
        let names: Vec<&str> = self.wf.params.keys().map(String::as_str).collect();
        match suggest(name, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None if names.is_empty() => "declare it under `[params]`".into(),
            None => format!("parameters are: {}", names.join(", ")),
        }
    }

    /// Outputs a step offers, with types: declared ones, plus the implicit
    /// `value` of a wait step and the outputs of a sub-workflow.
    fn outputs_of(&self, step: &str) -> IndexMap<String, Type> {
        let mut out = IndexMap::new();
        let Some(s) = self.wf.steps.get(step) else {
            return out;
        };
        match &s.kind {
            StepKind::Wait(_) => {
                out.insert("value".to_string(), Type::Json);
            }
            StepKind::SubWorkflow(_) => {
                if let Some(child) = self.children.get(step) {
                    out.extend(
                        child
                            .facts
                            .output_types
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone())),
                    );
                }
            }
            _ => {}
        }
        out.extend(s.outputs.iter().map(|(k, o)| (k.clone(), o.ty.clone())));
        out
    }

    /// Resolves a reference read at `at` within `scope`: its type, or `None`
    /// after reporting what is wrong.
    fn resolve(
        &mut self,
        r: &Ref,
        scope: &Scope,
        reader: &str,
        at: &[NodeIndex],
        inclusive: bool,
    ) -> Option<Type> {
        match r.target() {
            RefTarget::Param(name) => {
                let Some(p) = self.wf.params.get(name) else {
                    let help = self.param_help(name);
                    self.error(
                        Code::UnknownReference,
                        r.span,
                        format!("`{r}`: there is no parameter `{name}`"),
                    )
                    .help = Some(help);
                    return None;
                };
                let ty = p.ty.clone();
                self.fields(r, ty, 2)
            }
            RefTarget::Run(field) => {
                if !RUN_FIELDS.contains(&field) {
                    self.error(
                        Code::UnknownReference,
                        r.span,
                        format!("`{r}`: runs have no field `{field}`"),
                    )
                    .help = Some(format!("run fields are: {}", RUN_FIELDS.join(", ")));
                    return None;
                }
                let ty = if field == "attempt" {
                    Type::Int
                } else {
                    Type::String
                };
                self.fields(r, ty, 2)
            }
            RefTarget::LoopVar(name) => {
                if let Some(v) = scope.vars.iter().find(|v| v.name == name) {
                    return Some(v.ty.clone());
                }
                if let Some(def) = self.all_vars.get(name).copied() {
                    let d = Diagnostic::error(
                        Code::OutOfScope,
                        self.file,
                        r.span,
                        format!("loop variable `{name}` is not in scope here"),
                    )
                    .with_secondary(self.file, def, "bound by this for-each")
                    .with_help(format!(
                        "`{r}` can only be used by steps inside that for-each"
                    ));
                    self.push(d);
                } else if self.wf.steps.contains_key(name) {
                    let outs: Vec<String> = self.outputs_of(name).keys().cloned().collect();
                    self.error(
                        Code::UnknownReference,
                        r.span,
                        format!("`{r}` names a step, not a value"),
                    )
                    .help = Some(format!(
                        "name one of its outputs: {}",
                        fmt_candidates(name, &outs)
                    ));
                } else {
                    let names: Vec<&str> = scope.vars.iter().map(|v| v.name.as_str()).collect();
                    let help = match suggest(name, names.iter().copied()) {
                        Some(s) => format!("did you mean `${{{s}}}`?"),
                        None => "write `${params.NAME}` for a parameter, `${STEP.OUTPUT}` for an output, `${VAR}` for a loop variable".into(),
                    };
                    self.error(
                        Code::UnknownReference,
                        r.span,
                        format!("`{r}` names no loop variable"),
                    )
                    .help = Some(help);
                }
                None
            }
            RefTarget::Output { step, output, .. } => {
                if self.wf.invalid_steps.iter().any(|s| s == step) {
                    return None;
                }
                if !self.wf.steps.contains_key(step) {
                    let names: Vec<&str> = self.wf.steps.keys().map(String::as_str).collect();
                    let help = match suggest(step, names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "declare the step under `[steps]`".into(),
                    };
                    let code = Code::UnknownReference;
                    self.error(code, r.span, format!("`{r}`: there is no step `{step}`"))
                        .help = Some(help);
                    return None;
                }
                let outs = self.outputs_of(step);
                let Some(ty) = outs.get(output).cloned() else {
                    let names: Vec<String> = outs.keys().cloned().collect();
                    let decl = self.wf.steps.get(step).map(|s| s.span).unwrap_or_default();
                    let msg = format!("`{r}`: step `{step}` does not declare an output `{output}`");
                    let help = match suggest(output, names.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `${{{step}.{s}}}`?"),
                        None if names.is_empty() => format!(
                            "`{step}` declares no outputs; add `[steps.{step}.outputs] {output} = \"string\"`"
                        ),
                        None => format!("`{step}` declares: {}", names.join(", ")),
                    };
                    let d = Diagnostic::error(Code::UnknownOutput, self.file, r.span, msg)
                        .with_secondary(self.file, decl, format!("`{step}` is declared here"))
                        .with_help(help);
                    self.push(d);
                    return None;
                };
                // Read from outside a for-each, a step's output is the list of
                // its values, one per item (per nesting level).
                let target_path = self
                    .step_scope
                    .get(step)
                    .map(|s| s.foreach.clone())
                    .unwrap_or_default();
                let common = target_path
                    .iter()
                    .zip(&scope.foreach)
                    .take_while(|(a, b)| a == b)
                    .count();
                let mut ty = ty;
                for _ in common..target_path.len() {
                    ty = Type::List(Box::new(ty));
                }
                self.upstream.push(Upstream {
                    span: r.span,
                    reader: reader.to_string(),
                    target: step.to_string(),
                    at: at.to_vec(),
                    inclusive,
                });
                self.fields(r, ty, 2)
            }
        }
    }

    /// Applies `.field` accesses past the first `skip` segments.
    fn fields(&mut self, r: &Ref, ty: Type, skip: usize) -> Option<Type> {
        if r.path.len() <= skip {
            return Some(ty);
        }
        if ty == Type::Json {
            return Some(Type::Json);
        }
        let base = r.path[..skip].join(".");
        self.error(
            Code::TypeMismatch,
            r.span,
            format!("`${{{base}}}` is {ty:#}; only json values have fields"),
        )
        .help = Some(format!("use `${{{base}}}` itself, or declare it as json"));
        None
    }

    fn step(&mut self, id: &Ident, n: NodeIndex, scope: &Scope) {
        let Some(step) = self.wf.steps.get(&id.name) else {
            if MARKERS.contains(&id.name.as_str()) || self.wf.invalid_steps.contains(&id.name) {
                return;
            }
            let names: Vec<&str> = self.wf.steps.keys().map(String::as_str).collect();
            let help = match suggest(&id.name, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("declare it as `[steps.{}]` with a `kind`", id.name),
            };
            self.error(
                Code::UnknownStep,
                id.span,
                format!("the flow uses step `{}`, which is not declared", id.name),
            )
            .help = Some(help);
            return;
        };
        let reader = format!("step `{}`", id.name);
        let templates: Vec<Template> = step.templates().into_iter().cloned().collect();
        for t in &templates {
            for r in t.refs() {
                if let RefTarget::Output { step: target, .. } = r.target()
                    && target == id.name
                {
                    self.error(Code::NotUpstream, r.span, format!("step `{}` reads its own output `{r}`", id.name))
                            .help = Some("a step's outputs exist only after it ends; pass the value through a file instead".into());
                    continue;
                }
                self.resolve(r, scope, &reader, &[n], false);
            }
        }
        if let StepKind::SubWorkflow(sw) = &step.kind {
            self.sub_params(&id.name, step.span, &sw.params, scope, n);
        }
    }

    fn sub_params(
        &mut self,
        name: &str,
        step_span: Span,
        given: &IndexMap<String, Template>,
        scope: &Scope,
        n: NodeIndex,
    ) {
        let Some(child) = self.children.get(name) else {
            return;
        };
        let child_params = &child.workflow.params;
        for (k, tpl) in given {
            let Some(p) = child_params.get(k) else {
                let names: Vec<&str> = child_params.keys().map(String::as_str).collect();
                let help = match suggest(k, names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("its parameters are: {}", names.join(", ")),
                };
                self.error(
                    Code::UnknownKey,
                    tpl.span,
                    format!(
                        "sub-workflow `{}` has no parameter `{k}`",
                        child.workflow.name
                    ),
                )
                .help = Some(help);
                continue;
            };
            let want = p.ty.clone();
            let got = match tpl.as_single_ref() {
                Some(r) => match self.resolve(r, scope, &format!("step `{name}`"), &[n], false) {
                    Some(t) => t,
                    None => continue,
                },
                None => match tpl.as_literal() {
                    Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
                        Ok(v) if want != Type::String && want.accepts_value(&v) => continue,
                        _ => Type::String,
                    },
                    None => Type::String,
                },
            };
            if !want.accepts(&got) {
                self.error(
                    Code::TypeMismatch,
                    tpl.span,
                    format!(
                        "parameter `{k}` of `{}` is {want:#}, but this is {got:#}",
                        child.workflow.name
                    ),
                )
                .help = Some(format!("pass {want:#}"));
            }
        }
        for (k, p) in child_params {
            if p.default.is_none() && !given.contains_key(k) {
                self.error(
                    Code::MissingKey,
                    step_span,
                    format!(
                        "sub-workflow `{}` needs parameter `{k}` ({})",
                        child.workflow.name, p.ty
                    ),
                )
                .help = Some(format!("add `params = {{ {k} = ... }}` to the step"));
            }
        }
    }

    fn condition(&mut self, e: &Expr, scope: &Scope, at: &[NodeIndex], what: &str) {
        if let Some(t) = self.expr_type(e, scope, at, what)
            && !Type::Bool.accepts(&t)
        {
            self.error(
                Code::TypeMismatch,
                e.span(),
                format!("{what} is {t:#}, not a bool"),
            )
            .help = Some(format!("compare it, e.g. `{e} == ...`"));
        }
    }

    fn expr_type(&mut self, e: &Expr, scope: &Scope, at: &[NodeIndex], what: &str) -> Option<Type> {
        match e {
            Expr::Lit { value, .. } => Some(match value {
                Lit::Str(_) => Type::String,
                Lit::Int(_) => Type::Int,
                Lit::Float(_) => Type::Float,
                Lit::Bool(_) => Type::Bool,
                Lit::Null => Type::Json,
            }),
            Expr::Ref { r } => self.resolve(r, scope, what, at, true),
            Expr::Not { operand, .. } => {
                let t = self.expr_type(operand, scope, at, what)?;
                if !Type::Bool.accepts(&t) {
                    self.error(
                        Code::TypeMismatch,
                        operand.span(),
                        format!("`!` needs a bool, but this is {t:#}"),
                    );
                }
                Some(Type::Bool)
            }
            Expr::Binary { left, op, right } => {
                let l = self.expr_type(left, scope, at, what);
                let r = self.expr_type(right, scope, at, what);
                let (l, r) = (l?, r?);
                let ok = match op {
                    BinOp::And | BinOp::Or => Type::Bool.accepts(&l) && Type::Bool.accepts(&r),
                    BinOp::Eq | BinOp::Ne => l.accepts(&r) || r.accepts(&l),
                    _ => {
                        (l.is_numeric() || l == Type::Json) && (r.is_numeric() || r == Type::Json)
                            || (Type::String.accepts(&l) && Type::String.accepts(&r))
                    }
                };
                if !ok {
                    self.error(
                        Code::TypeMismatch,
                        e.span(),
                        format!("`{}` cannot apply to {l:#} and {r:#}", op.as_str()),
                    )
                    .help = Some("compare values of the same type".into());
                }
                Some(Type::Bool)
            }
        }
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

    fn cycles_duplicates_and_order(&mut self) {
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

fn lit_json(l: &Lit) -> serde_json::Value {
    match l {
        Lit::Str(s) => serde_json::Value::String(s.clone()),
        Lit::Int(i) => serde_json::Value::from(*i),
        Lit::Float(f) => serde_json::Value::from(*f),
        Lit::Bool(b) => serde_json::Value::Bool(*b),
        Lit::Null => serde_json::Value::Null,
    }
}

fn fmt_candidates(step: &str, outs: &[String]) -> String {
    if outs.is_empty() {
        return format!("`{step}` declares no outputs");
    }
    outs.iter()
        .map(|o| format!("`${{{step}.{o}}}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
