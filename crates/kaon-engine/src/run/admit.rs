//! Admission: a ready step waits in the driver's queue until its
//! resources fit, then starts its next attempt.

use super::RunState;
use crate::event::{Action, LaunchOrder, NodeId};
use crate::state::{Failure, StepState};

impl RunState {
    pub(super) fn enqueue(&mut self, n: u32) {
        let (cpus, memory) = match self.step_of(NodeId(n)) {
            Some(s) => (
                s.resources.cpus.unwrap_or(1.0),
                s.resources.memory.unwrap_or(0),
            ),
            None => (1.0, 0),
        };
        self.out.push(Action::Enqueue {
            node: NodeId(n),
            cpus,
            memory,
        });
    }

    pub(super) fn admit(&mut self, n: u32) {
        if self.data.cancel.is_some() || self.data.stopping {
            self.make_ready(n);
            return;
        }
        let attempt = self.nodes[n as usize].info.attempts + 1;
        self.nodes[n as usize].info.attempts = attempt;
        self.nodes[n as usize].info.progress = None;
        self.start_now(n);
        self.set_state(n, StepState::Starting { attempt });
        match self.launch_order(n, attempt, false) {
            Ok(order) => {
                self.nodes[n as usize].info.inputs = order.inputs.clone();
                self.nodes[n as usize].info.memo_key = None;
                self.launch_or_lookup(n, order);
                self.set_timeout(n, attempt);
            }
            Err(e) => self.attempt_failed(n, Failure::user(e.to_string())),
        }
    }

    /// Orders the launch of a step that is not cached; asks for a memo
    /// lookup first for one that is, keeping the order until the answer.
    pub(super) fn launch_or_lookup(&mut self, n: u32, order: LaunchOrder) {
        if order.memo.is_some() {
            self.awaiting_memo.insert(n, Box::new(order.clone()));
            self.out.push(Action::LookupMemo(Box::new(order)));
        } else {
            self.out.push(Action::Launch(Box::new(order)));
        }
    }

    /// The order kept for attempt `attempt` of node `n` while its memo
    /// lookup is out; an answer for another attempt (stale) takes nothing.
    pub(super) fn take_awaiting(&mut self, n: u32, attempt: u32) -> Option<Box<LaunchOrder>> {
        match self.awaiting_memo.get(&n) {
            Some(o) if o.attempt == attempt => self.awaiting_memo.remove(&n),
            _ => None,
        }
    }
}
