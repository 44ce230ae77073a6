//! References resolved for a node: parameters, run fields, loop variables
//! and the outputs of other steps.

use std::cell::RefCell;

use kaon_model::expr::{Ref, RefTarget};
use serde_json::Value;

use super::RunState;
use crate::error::EvalError;
use crate::eval::{self, Resolve};
use crate::program::{TNode, TmplId};

/// References resolved from a scope (and, for `${run.attempt}`, a node).
pub(super) struct Ctx<'a> {
    pub(super) run: &'a RunState,
    pub(super) scope: u32,
    pub(super) node: Option<u32>,
    /// When set, every step output read is noted here (node, output): the
    /// launch order's inputs.
    pub(super) reads: Option<&'a RefCell<Vec<(u32, String)>>>,
}

impl Resolve for Ctx<'_> {
    fn resolve(&self, r: &Ref) -> Result<Value, EvalError> {
        let run = self.run;
        match r.target() {
            RefTarget::Param(name) => {
                let v = run
                    .params
                    .get(name)
                    .cloned()
                    .ok_or_else(|| EvalError::UnknownParam {
                        reference: r.clone(),
                        name: name.to_string(),
                    })?;
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
                other => {
                    return Err(EvalError::UnknownRunField {
                        reference: r.clone(),
                        field: other.to_string(),
                    });
                }
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
                        None => {
                            return Err(EvalError::UnknownLoopVar {
                                reference: r.clone(),
                                var: var.to_string(),
                            });
                        }
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
        reads: Option<&RefCell<Vec<(u32, String)>>>,
    ) -> Result<Value, EvalError> {
        let &(tt, ti) = self
            .program
            .step_loc
            .get(step)
            .ok_or_else(|| EvalError::UnknownStep {
                reference: r.clone(),
                step: step.to_string(),
            })?;
        let chain = self.program.ancestry(tt);
        let mut s = scope;
        let pos = loop {
            let t = self.scopes[s as usize].tmpl;
            if let Some(p) = chain.iter().position(|(c, _)| *c == t) {
                break p;
            }
            match self.scopes[s as usize].parent {
                Some(b) => s = self.nodes[b.0 as usize].scope,
                None => {
                    return Err(EvalError::Unreachable {
                        reference: r.clone(),
                        step: step.to_string(),
                    });
                }
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
