//! A node becoming ready, and what blocks do with it: for-each blocks
//! expanded into one scope per item, repeat passes, the branch a `when`
//! takes; and a block finishing once its scopes have.

use kaon_model::flow::ListSource;
use serde_json::Value;

use super::RunState;
use super::resolve::Ctx;
use crate::error::EvalError;
use crate::eval::{self, Resolve};
use crate::event::NodeId;
use crate::program::{TKind, TNode};
use crate::state::{Failure, RunStatus, SkipReason, StepState};

impl RunState {
    pub(super) fn make_ready(&mut self, n: u32) {
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
                TKind::Wait => self.start_wait(n, name),
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
                            err = Some(EvalError::NotAList {
                                var: b.var.name.clone(),
                                value: Box::new(other),
                            })
                        }
                        Err(e) => err = Some(e),
                    }
                }
                if let Some(e) = err {
                    self.finish(
                        n,
                        StepState::Failed {
                            failure: Failure::user(e.to_string()),
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

    pub(super) fn scope_done(&mut self, scope: u32) {
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
}
