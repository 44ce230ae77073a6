//! Timers: a step's timeout and the wake-up of a retry.

use serde_json::Value;

use super::RunState;
use crate::event::{Action, NodeId, Timer};
use crate::program::{TKind, TNode};
use crate::state::{Failure, FailureClass, KillReason, StepState};

impl RunState {
    pub(super) fn set_timeout(&mut self, n: u32, attempt: u32) {
        if let Some(t) = self.step_of(NodeId(n)).and_then(|s| s.timeout) {
            let start = self.nodes[n as usize]
                .info
                .attempt_started
                .unwrap_or(self.now);
            self.out.push(Action::SetTimer {
                node: NodeId(n),
                attempt,
                at: start + t.as_millis() as u64,
                timer: Timer::Timeout,
            });
        }
    }

    pub(super) fn timer(&mut self, n: u32, attempt: u32, timer: Timer) {
        match (timer, self.nodes[n as usize].state.clone()) {
            (Timer::Retry, StepState::Retrying { attempt: a, .. }) if a == attempt => {
                self.make_ready(n);
            }
            (Timer::Timeout, StepState::Running { attempt: a, handle }) if a == attempt => {
                let kind = match self.tnode(NodeId(n)) {
                    TNode::Step { kind, .. } => *kind,
                    _ => return,
                };
                match (kind, handle) {
                    (TKind::Wait, _) => {
                        let f = Failure {
                            class: FailureClass::Timeout,
                            message: "no signal arrived before the timeout".into(),
                            exit_code: None,
                        };
                        self.attempt_failed(n, f);
                    }
                    (TKind::SubWorkflow, Some(Value::String(child))) => {
                        self.nodes[n as usize].info.kill = Some(KillReason::Timeout);
                        self.mark(n);
                        self.out.push(Action::CancelChildRun { child });
                    }
                    (_, Some(handle)) => {
                        self.nodes[n as usize].info.kill = Some(KillReason::Timeout);
                        self.mark(n);
                        self.out.push(Action::Kill {
                            node: NodeId(n),
                            attempt,
                            handle,
                            reason: KillReason::Timeout,
                        });
                    }
                    (_, None) => {}
                }
            }
            (Timer::Timeout, StepState::Starting { attempt: a }) if a == attempt => {
                // Killed as soon as the launch reports its handle.
                self.nodes[n as usize].info.kill = Some(KillReason::Timeout);
                self.mark(n);
            }
            _ => {}
        }
    }
}
