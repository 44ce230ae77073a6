//! A failed step retried by hand (`kaon retry RUN STEP`, the server's
//! `POST /runs/{id}/retry`): its failed instances get a fresh retry
//! budget, and what did not run because of the failure comes back, so the
//! run carries on from there. What succeeded stays as it is.

use std::collections::BTreeSet;

use super::{RunState, Work};
use crate::error::RetryError;
use crate::event::{Action, NodeId};
use crate::state::{Failure, FailureClass, Millis, RunStatus, SkipReason, StepState};

impl RunState {
    /// Retries the failed instances of `step` (a step's name, an instance
    /// key such as `train[reg=US]`, or a block's key) at time `now`.
    ///
    /// Each failed instance goes back to pending with a fresh retry budget;
    /// its attempt number goes on from where it was, so attempt ids stay
    /// unique and earlier attempts keep their logs. With it comes back
    /// what did not run because of the failure: the nodes skipped
    /// downstream of it, the blocks it failed (running again, their other
    /// items as they were), and, when the failure had stopped the run
    /// (`on_failure = stop`), everything the stop skipped or did not retry.
    /// Nodes that succeeded or were memoized are left alone. A failed block
    /// named by its key stands for the failed steps inside it.
    ///
    /// A run that ended failed runs again (its end, outputs and message
    /// cleared); a running run retries in place. A node that still has
    /// another failed predecessor is skipped again at once, and a run left
    /// with nothing to do ends again (an [`Action::RunFinished`] among the
    /// actions).
    ///
    /// As after [`RunState::apply`], the driver commits
    /// [`RunState::take_delta`] before carrying out the actions. On an
    /// error nothing changed.
    pub fn retry(&mut self, step: &str, now: Millis) -> Result<Vec<Action>, RetryError> {
        let targets = self.retry_targets(step)?;
        self.now = now;
        let mut queue = targets;
        if self.data.stopping {
            for n in 0..self.nodes.len() as u32 {
                match &self.nodes[n as usize].state {
                    StepState::Skipped {
                        reason: SkipReason::RunStopped,
                    } => queue.push(n),
                    StepState::Failed { failure } if self.cut_by_stop(n, failure) => queue.push(n),
                    _ => {}
                }
            }
        }

        // What comes back: nodes to pending, blocks that ran to running.
        let mut reset = BTreeSet::new();
        let mut reopen = BTreeSet::new();
        while let Some(n) = queue.pop() {
            let node = &self.nodes[n as usize];
            let fresh = if node.children.is_empty() {
                reset.insert(n)
            } else {
                reopen.insert(n)
            };
            if !fresh {
                continue;
            }
            let sc = &self.scopes[node.scope as usize];
            for s in &self.program.tmpls[sc.tmpl as usize].succs[node.idx as usize] {
                let m = sc.base + s;
                if matches!(
                    self.nodes[m as usize].state,
                    StepState::Skipped {
                        reason: SkipReason::UpstreamFailed { .. }
                    }
                ) {
                    queue.push(m);
                }
            }
            // The block around it ended because its scope did.
            if let Some(b) = sc.parent {
                let st = &self.nodes[b.0 as usize].state;
                if st.is_terminal() && !st.lets_successors_run() {
                    queue.push(b.0);
                }
            }
        }

        for &n in &reset {
            let node = &mut self.nodes[n as usize];
            node.state = StepState::Pending;
            let info = &mut node.info;
            info.user_failures = 0;
            info.platform_failures = 0;
            info.finished = None;
            info.kill = None;
            info.exit_code = None;
            info.outputs = None;
            info.progress = None;
            info.note = None;
            info.items = None;
            info.artifacts.clear();
            self.mark(n);
        }
        for &b in &reopen {
            let node = &mut self.nodes[b as usize];
            node.state = StepState::Running {
                attempt: 1,
                handle: None,
            };
            node.info.finished = None;
            self.mark(b);
        }
        self.status = RunStatus::Running;
        self.data.stopping = false;
        self.data.message = None;
        self.data.outputs = None;
        self.run_dirty = true;
        self.recount();

        // Each node back at pending is readied, left waiting for what is
        // still to run before it, or skipped again after a predecessor
        // that still did not let it run.
        let program = self.program.clone();
        for &n in &reset {
            let node = &self.nodes[n as usize];
            let sc = &self.scopes[node.scope as usize];
            let base = sc.base;
            let preds = &program.tmpls[sc.tmpl as usize].preds[node.idx as usize];
            let blocked = preds.iter().map(|p| base + p).find(|&p| {
                let s = &self.nodes[p as usize].state;
                s.is_terminal() && !s.lets_successors_run()
            });
            if let Some(p) = blocked {
                let next = self.after_upstream(p, &self.nodes[p as usize].state);
                self.finish(n, next);
            } else if node.preds_left == 0 {
                self.work.push_back(Work::Ready(n));
            } else if preds
                .iter()
                .any(|p| self.nodes[(base + p) as usize].state.lets_successors_run())
            {
                self.set_state(n, StepState::Waiting);
            }
        }
        // A block whose scopes had all ended (a repeat the stop ended
        // between passes) judges its last one again.
        for &b in &reopen {
            if self.nodes[b as usize].children_left == 0 {
                self.rejudge(b);
            }
        }
        self.drain();
        Ok(std::mem::take(&mut self.out))
    }

    /// The nodes a retry of `step` starts from: its failed instances, a
    /// failed block that ran standing for the failed steps inside it.
    fn retry_targets(&self, step: &str) -> Result<Vec<u32>, RetryError> {
        let run = || self.id.clone();
        match self.status {
            RunStatus::Succeeded | RunStatus::Cancelled => {
                return Err(RetryError::RunEnded {
                    run: run(),
                    status: self.status,
                });
            }
            RunStatus::Running | RunStatus::Failed => {}
        }
        if self.data.cancel.is_some() {
            return Err(RetryError::Cancelling { run: run() });
        }
        let matched: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&n| {
                self.step_of(NodeId(n)).is_some_and(|s| s.name == step)
                    || self.key(NodeId(n)) == step
            })
            .collect();
        if matched.is_empty() {
            return Err(if self.program.step(step).is_some() {
                RetryError::NotFailed {
                    run: run(),
                    step: step.to_string(),
                    states: Vec::new(),
                }
            } else {
                RetryError::UnknownStep {
                    run: run(),
                    step: step.to_string(),
                }
            });
        }
        let mut targets = Vec::new();
        for &n in &matched {
            let node = &self.nodes[n as usize];
            match &node.state {
                StepState::Failed { failure } if !node.children.is_empty() => {
                    let inside = self.failed_inside(n);
                    if inside.is_empty() {
                        return Err(RetryError::NoFailedStep {
                            run: run(),
                            step: self.key(NodeId(n)),
                            message: failure.message.clone(),
                        });
                    }
                    targets.extend(inside);
                }
                StepState::Failed { .. } => targets.push(n),
                _ => {}
            }
        }
        if targets.is_empty() {
            return Err(RetryError::NotFailed {
                run: run(),
                step: step.to_string(),
                states: matched
                    .iter()
                    .map(|&n| {
                        let state = self.nodes[n as usize].state.name().to_string();
                        (self.key(NodeId(n)), state)
                    })
                    .collect(),
            });
        }
        targets.sort_unstable();
        targets.dedup();
        Ok(targets)
    }

    /// The failed nodes in a block's scopes, failed blocks that ran
    /// replaced by what failed inside them.
    fn failed_inside(&self, b: u32) -> Vec<u32> {
        let mut out = Vec::new();
        for &s in &self.nodes[b as usize].children {
            for m in self.scope_nodes(s) {
                let node = &self.nodes[m as usize];
                if matches!(node.state, StepState::Failed { .. }) {
                    if node.children.is_empty() {
                        out.push(m);
                    } else {
                        out.extend(self.failed_inside(m));
                    }
                }
            }
        }
        out
    }

    /// True for a step that failed with retries left: the stop
    /// (`on_failure = stop`) ended it instead of retrying it.
    fn cut_by_stop(&self, n: u32, f: &Failure) -> bool {
        let info = &self.nodes[n as usize].info;
        let (used, budget) = match f.class {
            FailureClass::User | FailureClass::Timeout => (
                info.user_failures,
                self.step_of(NodeId(n)).map_or(0, |s| s.retries),
            ),
            FailureClass::Platform => (info.platform_failures, self.options.platform_retries),
        };
        used >= 1 && used <= budget
    }

    /// Judges a block again on its last scope, as when that scope ended.
    fn rejudge(&mut self, b: u32) {
        let Some(&last) = self.nodes[b as usize].children.last() else {
            return;
        };
        let outcome = self.scope_outcome(last);
        let node = &mut self.nodes[b as usize];
        node.children_left += 1;
        match outcome {
            RunStatus::Failed => node.children_failed -= 1,
            RunStatus::Cancelled => node.children_cancelled -= 1,
            RunStatus::Running | RunStatus::Succeeded => {}
        }
        self.scope_done(last);
    }
}
