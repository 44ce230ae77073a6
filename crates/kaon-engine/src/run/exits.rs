//! An attempt ending: its exit and outputs judged, and a failed attempt
//! retried with backoff while its budget lasts.

use serde_json::{Map, Value};

use super::RunState;
use crate::eval;
use crate::event::{Action, Exit, NodeId, Timer};
use crate::program::TNode;
use crate::retry::backoff;
use crate::state::{AttemptOutcome, AttemptRecord, Failure, FailureClass, KillReason, StepState};

impl RunState {
    pub(super) fn exited(
        &mut self,
        n: u32,
        exit: Exit,
        outputs: Map<String, Value>,
        problems: Vec<String>,
    ) {
        let kill = self.nodes[n as usize].info.kill;
        if let Exit::Code { code } = exit {
            self.nodes[n as usize].info.exit_code = Some(code);
        }
        // This attempt's own exit status, for its record.
        let code = match &exit {
            Exit::Code { code } => Some(*code),
            Exit::Failed { code, .. } => *code,
            Exit::Signal { .. } | Exit::Lost { .. } => None,
        };
        if kill == Some(KillReason::Cancel) {
            self.record_attempt(n, code, None, AttemptOutcome::Cancelled);
            self.finish(n, StepState::Cancelled);
            return;
        }
        if kill == Some(KillReason::Timeout) {
            let t = self
                .step_of(NodeId(n))
                .and_then(|s| s.timeout)
                .map(|d| format!(" after {}", fmt_duration(d.as_millis() as u64)))
                .unwrap_or_default();
            let f = Failure {
                class: FailureClass::Timeout,
                message: format!("timed out{t}"),
                exit_code: None,
            };
            self.record_attempt(n, code, Some(&f), AttemptOutcome::Failed);
            self.attempt_failed(n, f);
            return;
        }
        let f = match exit {
            Exit::Code { code: 0 } => match self.check_outputs(n, outputs, problems) {
                Ok(outs) => {
                    self.record_attempt(n, code, None, AttemptOutcome::Succeeded);
                    let info = &mut self.nodes[n as usize].info;
                    info.outputs = (!outs.is_empty()).then_some(outs);
                    if let Some(p) = &mut info.progress {
                        p.percent = Some(100.0);
                    }
                    self.finish(n, StepState::Succeeded);
                    return;
                }
                Err((problems, values)) => Failure::user(format!(
                    "exited 0 but {}{}",
                    problems.join("; "),
                    if values {
                        " (a step hands outputs back by printing `::kaon::output NAME=<json>` or writing them to $KAON_OUTPUTS_FILE)"
                    } else {
                        ""
                    }
                )),
            },
            Exit::Code { code } => Failure {
                class: FailureClass::User,
                message: format!("exited with status {code}"),
                exit_code: Some(code),
            },
            // SIGKILL that kaon did not send: the OOM killer or an operator.
            Exit::Signal { signal: 9 } => {
                Failure::platform("killed by signal 9 (SIGKILL), not sent by kaon")
            }
            Exit::Signal { signal } => Failure::user(format!("killed by signal {signal}")),
            Exit::Failed { code, message } => Failure {
                class: FailureClass::User,
                message,
                exit_code: code,
            },
            Exit::Lost { message } => Failure::platform(message),
        };
        self.record_attempt(n, code, Some(&f), AttemptOutcome::Failed);
        self.attempt_failed(n, f);
    }

    /// Records the end of the attempt under way on step node `n` in its
    /// history ([`crate::NodeInfo::history`]): how it ended, its exit
    /// status, and its failure when it failed. Called where an attempt
    /// ends, before the node leaves its active state (first where the
    /// exit is known, then again, harmlessly, on the way out through
    /// [`RunState::attempt_failed`] or [`RunState::finish`]). Nothing when
    /// no attempt is under way, for blocks (which run no attempts), or
    /// when this attempt was recorded already.
    pub(super) fn record_attempt(
        &mut self,
        n: u32,
        exit_code: Option<i32>,
        failure: Option<&Failure>,
        state: AttemptOutcome,
    ) {
        let Some(attempt) = self.nodes[n as usize].state.attempt() else {
            return;
        };
        if !matches!(self.tnode(NodeId(n)), TNode::Step { .. }) {
            return;
        }
        let now = self.now;
        let info = &mut self.nodes[n as usize].info;
        let started = info.attempt_started;
        info.record_attempt(AttemptRecord {
            attempt,
            started,
            finished: Some(now),
            exit_code,
            failure: failure.cloned(),
            state,
        });
        self.mark(n);
    }

    pub(super) fn check_outputs(
        &self,
        n: u32,
        mut got: Map<String, Value>,
        mut problems: Vec<String>,
    ) -> Result<Map<String, Value>, (Vec<String>, bool)> {
        // Problems with value outputs (as opposed to storing artifacts)
        // come with a hint on how steps report values.
        let stored = problems.len();
        let mut outs = Map::new();
        if let Some(step) = self.step_of(NodeId(n)) {
            for (name, decl) in &step.outputs {
                match got.remove(name) {
                    Some(v) if decl.ty.accepts_value(&v) => {
                        outs.insert(name.clone(), v);
                    }
                    Some(v) => problems.push(format!(
                        "output `{name}` should be {:#} but the step gave {}",
                        decl.ty,
                        eval::show(&v)
                    )),
                    None if decl.ty.is_artifact() => {}
                    None => problems.push(format!("output `{name}` ({}) is missing", decl.ty)),
                }
            }
        }
        if problems.is_empty() {
            Ok(outs)
        } else {
            let values = problems.len() > stored;
            Err((problems, values))
        }
    }

    pub(super) fn attempt_failed(&mut self, n: u32, f: Failure) {
        let step = self.step_of(NodeId(n));
        let retries = step.map(|s| s.retries).unwrap_or(0);
        let base = step
            .and_then(|s| s.retry_backoff)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(self.options.retry_backoff_ms);
        let cap = step
            .and_then(|s| s.retry_backoff_max)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(self.options.retry_backoff_max_ms);
        // Recorded here unless the exit was (with its status).
        self.record_attempt(n, f.exit_code, Some(&f), AttemptOutcome::Failed);
        let info = &mut self.nodes[n as usize].info;
        info.kill = None;
        if f.exit_code.is_some() {
            info.exit_code = f.exit_code;
        }
        let (used, budget) = match f.class {
            FailureClass::User | FailureClass::Timeout => {
                info.user_failures += 1;
                (info.user_failures, retries)
            }
            FailureClass::Platform => {
                info.platform_failures += 1;
                (info.platform_failures, self.options.platform_retries)
            }
        };
        let attempt = info.attempts;
        if used <= budget && self.data.cancel.is_none() && !self.data.stopping {
            let delay = backoff(base, cap, used, &self.id, n, attempt);
            let at = self.now + delay;
            self.set_state(
                n,
                StepState::Retrying {
                    attempt: attempt + 1,
                    at,
                    last: f,
                },
            );
            self.out.push(Action::SetTimer {
                node: NodeId(n),
                attempt: attempt + 1,
                at,
                timer: Timer::Retry,
            });
        } else {
            self.finish(n, StepState::Failed { failure: f });
        }
    }
}

/// `1.5s`, `2m3s`: durations for messages.
pub fn fmt_duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = ms as f64 / 1000.0;
        if s < 10.0 {
            format!("{s:.1}s")
        } else {
            format!("{}s", ms / 1000)
        }
    } else if ms < 3_600_000 {
        format!("{}m{}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}
