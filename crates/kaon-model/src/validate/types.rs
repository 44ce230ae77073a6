//! Type checks: the parameters given to a sub-workflow, and conditions.

use indexmap::IndexMap;
use petgraph::graph::NodeIndex;

use super::{Checker, Scope};
use crate::diag::{Code, Span, suggest};
use crate::expr::{BinOp, Expr, Lit, Template};
use crate::types::Type;

impl Checker<'_> {
    pub(super) fn sub_params(
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

    pub(super) fn condition(&mut self, e: &Expr, scope: &Scope, at: &[NodeIndex], what: &str) {
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
}
