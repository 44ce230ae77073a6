//! Stopping: a run cancelled, a step killed, nothing new launched after
//! a failure under the `stop` policy.

use serde_json::Value;

use super::RunState;
use crate::event::{Action, NodeId};
use crate::program::{TKind, TNode};
use crate::state::{KillReason, SkipReason, StepState};

impl RunState {
    pub(super) fn kill_step(&mut self, step: &str) {
        for n in 0..self.nodes.len() as u32 {
            let key = self.key(NodeId(n));
            let named = self.step_of(NodeId(n)).is_some_and(|s| s.name == step);
            if !(named || key == step) {
                continue;
            }
            match self.nodes[n as usize].state.clone() {
                StepState::Running {
                    attempt,
                    handle: Some(handle),
                } => {
                    self.nodes[n as usize].info.kill = Some(KillReason::Cancel);
                    self.mark(n);
                    self.out.push(Action::Kill {
                        node: NodeId(n),
                        attempt,
                        handle,
                        reason: KillReason::Cancel,
                    });
                }
                StepState::Starting { .. } => {
                    self.nodes[n as usize].info.kill = Some(KillReason::Cancel);
                    self.mark(n);
                }
                _ => {}
            }
        }
    }

    pub(super) fn cancel(&mut self, reason: String) {
        if self.status.is_terminal() || self.data.cancel.is_some() {
            return;
        }
        self.data.cancel = Some(reason);
        self.data.stopping = true;
        self.run_dirty = true;
        self.stop_launching(true);
    }

    /// Stops whatever has not started; with `kill`, also stops what runs.
    pub(super) fn stop_launching(&mut self, kill: bool) {
        let not_started = if kill {
            StepState::Cancelled
        } else {
            StepState::Skipped {
                reason: SkipReason::RunStopped,
            }
        };
        for n in 0..self.nodes.len() as u32 {
            let state = self.nodes[n as usize].state.clone();
            let kind = match self.tnode(NodeId(n)) {
                TNode::Step { kind, .. } => Some(*kind),
                _ => None,
            };
            match state {
                StepState::Pending | StepState::Waiting | StepState::Ready => {
                    self.finish(n, not_started.clone())
                }
                StepState::Retrying { last, .. } => {
                    let s = if kill {
                        StepState::Cancelled
                    } else {
                        StepState::Failed { failure: last }
                    };
                    self.finish(n, s);
                }
                StepState::Starting { .. } if kill => {
                    self.nodes[n as usize].info.kill = Some(KillReason::Cancel);
                    self.mark(n);
                }
                StepState::Running { attempt, handle } => match kind {
                    Some(TKind::Wait) => self.finish(n, StepState::Cancelled),
                    Some(TKind::SubWorkflow) if kill => {
                        self.nodes[n as usize].info.kill = Some(KillReason::Cancel);
                        self.mark(n);
                        if let Some(Value::String(child)) = handle {
                            self.out.push(Action::CancelChildRun { child });
                        }
                    }
                    Some(_) if kill => {
                        self.nodes[n as usize].info.kill = Some(KillReason::Cancel);
                        self.mark(n);
                        if let Some(handle) = handle {
                            self.out.push(Action::Kill {
                                node: NodeId(n),
                                attempt,
                                handle,
                                reason: KillReason::Cancel,
                            });
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
}
