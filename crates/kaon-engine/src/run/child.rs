//! Sub-workflow steps, each run as a child run.

use serde_json::{Map, Value};

use kaon_model::spec::StepKind;

use super::RunState;
use super::resolve::Ctx;
use crate::error::EvalError;
use crate::eval;
use crate::event::{Action, NodeId};
use crate::state::{Failure, FailureClass, KillReason, RunStatus, StepState};

impl RunState {
    pub(super) fn start_child(&mut self, n: u32, attempt: u32) {
        self.start_now(n);
        self.nodes[n as usize].info.attempts = attempt;
        let child = kaon_model::ids::RunId::child(&self.id, n, attempt).into_string();
        self.set_state(
            n,
            StepState::Running {
                attempt,
                handle: Some(Value::String(child.clone())),
            },
        );
        let params = self.child_params(n);
        match params {
            Ok(params) => {
                let step = self.tnode(NodeId(n)).name().to_string();
                self.out.push(Action::StartChildRun {
                    node: NodeId(n),
                    attempt,
                    child,
                    step,
                    params,
                });
                self.set_timeout(n, attempt);
            }
            Err(e) => self.finish(
                n,
                StepState::Failed {
                    failure: Failure::user(e.to_string()),
                },
            ),
        }
    }

    /// The parameters a sub-workflow step passes to its child, coerced to
    /// the child's declared types.
    pub fn child_params(&self, n: u32) -> Result<Map<String, Value>, EvalError> {
        let Some(step) = self.step_of(NodeId(n)) else {
            return Err(EvalError::NotAStep { node: NodeId(n) });
        };
        let StepKind::SubWorkflow(sw) = &step.kind else {
            return Err(EvalError::NotASubWorkflow {
                step: step.name.clone(),
            });
        };
        let child = self.program.workflow.children.get(&step.name);
        let ctx = Ctx {
            run: self,
            scope: self.nodes[n as usize].scope,
            node: Some(n),
            reads: None,
        };
        let mut out = Map::new();
        for (k, t) in &sw.params {
            let v = eval::render_value(t, &ctx)?;
            let v = match child.and_then(|c| c.workflow.params.get(k)) {
                Some(p) => eval::coerce(&p.ty, v).map_err(|e| EvalError::Param {
                    name: k.clone(),
                    error: Box::new(e),
                })?,
                None => v,
            };
            out.insert(k.clone(), v);
        }
        Ok(out)
    }

    pub(super) fn child_finished(
        &mut self,
        n: u32,
        status: RunStatus,
        outputs: Map<String, Value>,
        message: Option<String>,
    ) {
        let kill = self.nodes[n as usize].info.kill;
        match status {
            RunStatus::Succeeded => {
                self.nodes[n as usize].info.outputs = (!outputs.is_empty()).then_some(outputs);
                self.finish(n, StepState::Succeeded);
            }
            RunStatus::Cancelled if kill == Some(KillReason::Timeout) => {
                let f = Failure {
                    class: FailureClass::Timeout,
                    message: "the child run timed out".into(),
                    exit_code: None,
                };
                self.attempt_failed(n, f);
            }
            RunStatus::Cancelled => self.finish(n, StepState::Cancelled),
            _ => {
                let f = Failure::user(format!(
                    "the child run failed{}",
                    message.map(|m| format!(": {m}")).unwrap_or_default()
                ));
                self.attempt_failed(n, f);
            }
        }
    }
}
