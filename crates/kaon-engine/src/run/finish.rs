//! A node reaching a terminal state and what follows from it: successors
//! readied or skipped, the `stop` failure policy, the run's outcome.

use serde_json::Map;

use super::resolve::Ctx;
use super::{RunState, Work};
use crate::eval;
use crate::event::{Action, NodeId};
use crate::state::{AttemptOutcome, FailurePolicy, RunStatus, SkipReason, StepState};

impl RunState {
    /// Moves a node to a terminal state and queues what follows from it.
    pub(super) fn finish(&mut self, n: u32, s: StepState) {
        debug_assert!(s.is_terminal());
        if self.nodes[n as usize].state.is_terminal() {
            return;
        }
        // An attempt ending here (a wait woken, a child run ended, a wait
        // cancelled) is recorded; one that exited was already, with its
        // exit status. A memoized step did not run.
        match &s {
            StepState::Succeeded => self.record_attempt(n, None, None, AttemptOutcome::Succeeded),
            StepState::Failed { failure } => {
                let f = failure.clone();
                self.record_attempt(n, None, Some(&f), AttemptOutcome::Failed);
            }
            StepState::Cancelled => self.record_attempt(n, None, None, AttemptOutcome::Cancelled),
            _ => {}
        }
        let node = &mut self.nodes[n as usize];
        node.state = s;
        node.info.finished = Some(self.now);
        node.info.kill = None;
        self.mark(n);
        self.work.push_back(Work::Finished(n));
    }

    pub(super) fn after_finish(&mut self, n: u32) {
        let (scope, idx) = (self.nodes[n as usize].scope, self.nodes[n as usize].idx);
        let state = self.nodes[n as usize].state.clone();
        let sc = &mut self.scopes[scope as usize];
        sc.left -= 1;
        match &state {
            StepState::Cancelled => sc.cancelled += 1,
            StepState::Failed { .. }
            | StepState::Skipped {
                reason: SkipReason::UpstreamFailed { .. } | SkipReason::RunStopped,
            } => sc.failed += 1,
            _ => {}
        }
        let base = sc.base;
        let tmpl = sc.tmpl;
        let program = self.program.clone();
        let succs = &program.tmpls[tmpl as usize].succs[idx as usize];
        if state.lets_successors_run() {
            for s in succs {
                let m = base + s;
                let node = &mut self.nodes[m as usize];
                node.preds_left -= 1;
                if node.state.is_terminal() {
                    continue;
                }
                if node.preds_left == 0 {
                    self.work.push_back(Work::Ready(m));
                } else if node.state == StepState::Pending {
                    self.set_state(m, StepState::Waiting);
                }
            }
        } else {
            let next = self.after_upstream(n, &state);
            for s in succs {
                self.finish(base + s, next.clone());
            }
        }
        if matches!(state, StepState::Failed { .. })
            && self.options.on_failure == FailurePolicy::Stop
            && !self.data.stopping
        {
            self.data.stopping = true;
            self.run_dirty = true;
            self.stop_launching(false);
        }
        if self.scopes[scope as usize].left == 0 {
            self.scope_done(scope);
        }
    }

    /// What a node becomes when its predecessor `n` ended in `state`,
    /// which does not let it run: cancelled after a cancel, skipped after
    /// a failure (naming the node that failed first).
    pub(super) fn after_upstream(&self, n: u32, state: &StepState) -> StepState {
        match state {
            StepState::Cancelled => StepState::Cancelled,
            StepState::Skipped {
                reason: r @ SkipReason::UpstreamFailed { .. },
            } => StepState::Skipped { reason: r.clone() },
            _ => StepState::Skipped {
                reason: SkipReason::UpstreamFailed {
                    upstream: self.key(NodeId(n)),
                },
            },
        }
    }

    pub(super) fn scope_outcome(&self, scope: u32) -> RunStatus {
        let s = &self.scopes[scope as usize];
        if s.failed > 0 {
            RunStatus::Failed
        } else if s.cancelled > 0 {
            RunStatus::Cancelled
        } else {
            RunStatus::Succeeded
        }
    }

    pub(super) fn run_done(&mut self, outcome: RunStatus) {
        let status = if self.data.cancel.is_some() && outcome != RunStatus::Succeeded {
            RunStatus::Cancelled
        } else {
            outcome
        };
        if status == RunStatus::Succeeded {
            let ctx = Ctx {
                run: self,
                scope: 0,
                node: None,
                reads: None,
            };
            let mut outs = Map::new();
            let mut err = None;
            for (k, o) in &self.program.workflow.workflow.outputs {
                match eval::render_value(&o.value, &ctx) {
                    Ok(v) => {
                        outs.insert(k.clone(), v);
                    }
                    Err(e) => err = Some(format!("workflow output `{k}`: {e}")),
                }
            }
            self.data.outputs = Some(outs);
            if let Some(e) = err {
                self.data.message = Some(e);
            }
        } else if self.data.message.is_none() {
            self.data.message = self.first_failure();
        }
        self.status = status;
        self.run_dirty = true;
        self.out.push(Action::RunFinished { status });
    }

    /// The first failed step and why, for the run's message.
    pub fn first_failure(&self) -> Option<String> {
        let failed = |want_block: bool| {
            self.nodes
                .iter()
                .enumerate()
                .find_map(|(i, n)| match &n.state {
                    StepState::Failed { failure }
                        if self.tnode(NodeId(i as u32)).is_block() == want_block =>
                    {
                        Some(format!(
                            "{} failed: {}",
                            self.key(NodeId(i as u32)),
                            failure.message
                        ))
                    }
                    _ => None,
                })
        };
        failed(false).or_else(|| failed(true))
    }
}
