//! A run picked up again after a restart (`Event::Recovered`).

use kaon_model::spec::StepKind;

use super::RunState;
use crate::event::{Action, NodeId, Timer};
use crate::program::{TKind, TNode};
use crate::state::{Failure, StepState};

impl RunState {
    pub(super) fn recovered(&mut self) {
        if self.status.is_terminal() {
            self.out.push(Action::RunFinished {
                status: self.status,
            });
            return;
        }
        if self.scopes.is_empty() {
            self.new_scope(0, None, 0, Vec::new());
            return;
        }
        for n in 0..self.nodes.len() as u32 {
            let state = self.nodes[n as usize].state.clone();
            let kind = match self.tnode(NodeId(n)) {
                TNode::Step { kind, .. } => Some(*kind),
                _ => None,
            };
            let kill = self.nodes[n as usize].info.kill;
            match state {
                StepState::Ready => self.enqueue(n),
                StepState::Retrying { attempt, at, .. } => self.out.push(Action::SetTimer {
                    node: NodeId(n),
                    attempt,
                    at,
                    timer: Timer::Retry,
                }),
                StepState::Starting { attempt } => match self.launch_order(n, attempt, true) {
                    Ok(order) => {
                        self.launch_or_lookup(n, order);
                        self.set_timeout(n, attempt);
                    }
                    Err(e) => self.attempt_failed(n, Failure::user(e.to_string())),
                },
                StepState::Running { attempt, handle } => match (kind, handle) {
                    (Some(TKind::Command | TKind::Spark), Some(handle)) => {
                        match self.launch_order(n, attempt, true) {
                            Ok(order) => self.out.push(Action::Reattach {
                                node: NodeId(n),
                                attempt,
                                handle: handle.clone(),
                                order: Box::new(order),
                            }),
                            Err(e) => {
                                self.attempt_failed(n, Failure::user(e.to_string()));
                                continue;
                            }
                        }
                        if let Some(reason) = kill {
                            self.out.push(Action::Kill {
                                node: NodeId(n),
                                attempt,
                                handle,
                                reason,
                            });
                        } else {
                            self.set_timeout(n, attempt);
                        }
                    }
                    (Some(TKind::Wait), _) => {
                        let signal = match self.step_of(NodeId(n)).map(|s| &s.kind) {
                            Some(StepKind::Wait(w)) => w.signal.clone(),
                            _ => String::new(),
                        };
                        if let Some(v) = self.data.signals.get(&signal).cloned() {
                            self.wake(n, v);
                        } else {
                            self.set_timeout(n, attempt);
                        }
                    }
                    (Some(TKind::SubWorkflow), _) => match self.child_params(n) {
                        Ok(params) => {
                            let child =
                                kaon_model::ids::RunId::child(&self.id, n, attempt).into_string();
                            self.out.push(Action::StartChildRun {
                                node: NodeId(n),
                                attempt,
                                child: child.clone(),
                                step: self.tnode(NodeId(n)).name().to_string(),
                                params,
                            });
                            if kill.is_some() {
                                self.out.push(Action::CancelChildRun { child });
                            } else {
                                self.set_timeout(n, attempt);
                            }
                        }
                        Err(e) => self.finish(
                            n,
                            StepState::Failed {
                                failure: Failure::user(e.to_string()),
                            },
                        ),
                    },
                    _ => {}
                },
                _ => {}
            }
        }
    }
}
