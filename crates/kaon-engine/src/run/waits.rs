//! Wait steps and the signals that complete them.

use kaon_model::spec::StepKind;
use serde_json::{Map, Value};

use super::RunState;
use crate::event::NodeId;
use crate::state::{Failure, StepState};

impl RunState {
    /// Starts a wait step: it runs until its signal arrives (at once
    /// when the signal came early) or its timeout fires.
    pub(super) fn start_wait(&mut self, n: u32, name: &str) {
        self.start_now(n);
        // After a timed-out wait, the next wait is a new attempt:
        // the attempt number is what tells its timers from the
        // old one's.
        let attempt = self.nodes[n as usize].info.attempts + 1;
        self.nodes[n as usize].info.attempts = attempt;
        self.set_state(
            n,
            StepState::Running {
                attempt,
                handle: None,
            },
        );
        let signal = match self.program.step(name).map(|s| &s.kind) {
            Some(StepKind::Wait(w)) => w.signal.clone(),
            _ => name.to_string(),
        };
        self.nodes[n as usize].info.note = Some(format!("waiting for signal `{signal}`"));
        if let Some(v) = self.data.signals.get(&signal).cloned() {
            self.wake(n, v);
        } else {
            self.set_timeout(n, attempt);
        }
    }

    pub(super) fn signal(&mut self, name: String, value: Value) {
        self.data.signals.insert(name.clone(), value.clone());
        self.run_dirty = true;
        let waiting: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&n| {
                matches!(self.nodes[n as usize].state, StepState::Running { .. })
                    && matches!(self.step_of(NodeId(n)).map(|s| &s.kind), Some(StepKind::Wait(w)) if w.signal == name)
            })
            .collect();
        for n in waiting {
            self.wake(n, value.clone());
        }
    }

    /// Completes a wait step with a signal's value: its output `value`
    /// is the whole value, and an object's fields are outputs too.
    pub(super) fn wake(&mut self, n: u32, value: Value) {
        let mut outputs = match &value {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        outputs.insert("value".into(), value);
        match self.check_outputs(n, outputs.clone(), Vec::new()) {
            Ok(_) => {
                let info = &mut self.nodes[n as usize].info;
                info.outputs = Some(outputs);
                info.note = None;
                self.finish(n, StepState::Succeeded);
            }
            Err((problems, _)) => self.finish(
                n,
                StepState::Failed {
                    failure: Failure::user(format!(
                        "the signal's value does not fit the step's outputs: {}",
                        problems.join("; ")
                    )),
                },
            ),
        }
    }
}
