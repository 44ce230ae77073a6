//! References: for-each lists, `${...}` in steps, conditions and outputs,
//! resolved to their types, and steps named in the flow.

use indexmap::IndexMap;
use petgraph::graph::NodeIndex;

use super::{Checker, Scope, Upstream};
use crate::diag::{Code, Diagnostic, suggest};
use crate::expr::{Lit, RUN_FIELDS, Ref, RefTarget, Template};
use crate::flow::{Ident, ListSource, MARKERS};
use crate::spec::StepKind;
use crate::types::Type;

impl Checker<'_> {
    /// The item type of a for-each list, or `None` after reporting why not.
    pub(super) fn list_source(
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
    pub(super) fn resolve(
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

    pub(super) fn step(&mut self, id: &Ident, n: NodeIndex, scope: &Scope) {
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
