//! The state of one run and the transitions that move it.
//!
//! [`RunState::apply`] (here) dispatches each event to the file of the job
//! it concerns: `arena` holds the storage and the delta, `expand` readies
//! nodes and expands blocks, `finish` propagates terminal states, `admit`
//! and `launch` start attempts, `exits` judges their end and retries,
//! `timers`, `waits`, `child`, `cancel` and `recovery` handle the rest,
//! `retry` brings a failed step back by hand ([`RunState::retry`]),
//! `resolve` reads references, and `spark` renders Spark jobs.

mod admit;
mod arena;
mod cancel;
mod child;
mod exits;
mod expand;
mod finish;
mod launch;
mod recovery;
mod resolve;
mod retry;
mod spark;
mod timers;
mod waits;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::EngineError;
use crate::event::{Action, Event, Exit, LaunchOrder, NodeId};
use crate::program::Program;
use crate::state::{Failure, Millis, Progress, RunData, RunOptions, RunStatus, StepState};

pub use arena::{Delta, Node, NodeRecord, Scope, ScopeRecord};
pub use exits::fmt_duration;
pub use launch::MAX_ENV_VALUE;

#[derive(Debug)]
enum Work {
    Finished(u32),
    Ready(u32),
}

/// The state of one run, held in memory by the driver.
#[derive(Debug)]
pub struct RunState {
    /// The run's id.
    pub id: String,
    /// What it runs.
    pub program: Arc<Program>,
    /// Parameter values (defaults filled in).
    pub params: Map<String, Value>,
    /// Run-wide settings.
    pub options: RunOptions,
    /// Running or how it ended.
    pub status: RunStatus,
    /// Run-level facts.
    pub data: RunData,
    scopes: Vec<Scope>,
    nodes: Vec<Node>,
    dirty: Vec<u32>,
    is_dirty: Vec<bool>,
    scopes_saved: usize,
    run_dirty: bool,
    work: VecDeque<Work>,
    out: Vec<Action>,
    now: Millis,
    param_env: Arc<Vec<(String, String)>>,
    /// Orders of attempts waiting for the answer to their memo lookup.
    awaiting_memo: HashMap<u32, Box<LaunchOrder>>,
}

impl RunState {
    /// Applies one event at time `now` and returns what must be done.
    ///
    /// Events about an attempt that is no longer current (a late exit of a
    /// killed attempt, a timer of an attempt that already ended) change
    /// nothing and return no actions.
    pub fn apply(&mut self, event: Event, now: Millis) -> Result<Vec<Action>, EngineError> {
        self.now = now;
        match event {
            Event::RunStarted => {
                if self.scopes.is_empty() {
                    self.new_scope(0, None, 0, Vec::new());
                }
            }
            Event::Recovered => self.recovered(),
            Event::StepAdmitted { node } => {
                let n = self.check(node)?;
                if matches!(self.nodes[n].state, StepState::Ready) {
                    self.admit(n as u32);
                }
            }
            Event::StepLaunched {
                node,
                attempt,
                handle,
                memo_key,
            } => {
                let n = self.check(node)?;
                if self.nodes[n].state == (StepState::Starting { attempt }) {
                    // A step launched after a memo miss has its key already.
                    if memo_key.is_some() {
                        self.nodes[n].info.memo_key = memo_key;
                    }
                    self.set_state(
                        n as u32,
                        StepState::Running {
                            attempt,
                            handle: Some(handle.clone()),
                        },
                    );
                    if let Some(reason) = self.nodes[n].info.kill {
                        self.out.push(Action::Kill {
                            node,
                            attempt,
                            handle,
                            reason,
                        });
                    }
                }
            }
            Event::LaunchFailed {
                node,
                attempt,
                message,
                platform,
            } => {
                let n = self.check(node)?;
                if self.nodes[n].state.attempt() == Some(attempt) {
                    // A lookup that failed (its key could not be made)
                    // leaves no order behind.
                    self.take_awaiting(n as u32, attempt);
                    let f = if platform {
                        Failure::platform(message)
                    } else {
                        Failure::user(message)
                    };
                    self.attempt_failed(n as u32, f);
                }
            }
            Event::StepProgressed {
                node,
                attempt,
                percent,
                message,
            } => {
                let n = self.check(node)?;
                if self.nodes[n].state.attempt() == Some(attempt) {
                    let p = self.nodes[n]
                        .info
                        .progress
                        .get_or_insert_with(Progress::default);
                    if percent.is_some() {
                        p.percent = percent;
                    }
                    if message.is_some() {
                        p.message = message;
                    }
                    self.mark(n as u32);
                }
            }
            Event::StepExited {
                node,
                attempt,
                exit,
                outputs,
                problems,
                artifacts,
                reads,
            } => {
                let n = self.check(node)?;
                if self.nodes[n].state.attempt() == Some(attempt) {
                    let info = &mut self.nodes[n].info;
                    for r in reads {
                        if !info.inputs.contains(&r) {
                            info.inputs.push(r);
                        }
                    }
                    info.artifacts = artifacts;
                    self.exited(n as u32, exit, outputs, problems);
                }
            }
            Event::MemoMiss { node, attempt, key } => {
                let n = self.check(node)?;
                if self.nodes[n].state == (StepState::Starting { attempt })
                    && let Some(order) = self.take_awaiting(n as u32, attempt)
                {
                    // Not marked for saving: the launch follows from the
                    // committed Starting state, and the key is saved with
                    // StepLaunched (a launch re-issued after a crash looks
                    // it up again); a commit here would cost every cached
                    // launch a transaction.
                    self.nodes[n].info.memo_key = key;
                    if self.nodes[n].info.kill.is_some() {
                        // Cancelled or timed out while the lookup was out:
                        // nothing runs; the attempt ends as its kill says.
                        let exit = Exit::Lost {
                            message: "stopped before it was launched".into(),
                        };
                        self.exited(n as u32, exit, Map::new(), Vec::new());
                    } else {
                        self.out.push(Action::Launch(order));
                    }
                }
            }
            Event::MemoHit {
                node,
                attempt,
                key,
                from,
                outputs,
                artifacts,
            } => {
                let n = self.check(node)?;
                if self.nodes[n].state == (StepState::Starting { attempt })
                    && self.take_awaiting(n as u32, attempt).is_some()
                {
                    let info = &mut self.nodes[n].info;
                    info.memo_key = Some(key);
                    info.artifacts = artifacts;
                    info.outputs = (!outputs.is_empty()).then_some(outputs);
                    info.progress = Some(Progress {
                        percent: Some(100.0),
                        message: None,
                    });
                    self.finish(n as u32, StepState::Memoized { from });
                }
            }
            Event::TimerFired {
                node,
                attempt,
                timer,
            } => {
                let n = self.check(node)?;
                self.timer(n as u32, attempt, timer);
            }
            Event::SignalReceived { name, value } => self.signal(name, value),
            Event::ChildRunFinished {
                node,
                attempt,
                status,
                outputs,
                message,
            } => {
                let n = self.check(node)?;
                if self.nodes[n].state.attempt() == Some(attempt) {
                    self.child_finished(n as u32, status, outputs, message);
                }
            }
            Event::CancelRequested { reason } => self.cancel(reason),
            Event::KillRequested { step, reason: _ } => self.kill_step(&step),
        }
        self.drain();
        Ok(std::mem::take(&mut self.out))
    }

    fn check(&self, node: NodeId) -> Result<usize, EngineError> {
        if (node.0 as usize) < self.nodes.len() {
            Ok(node.0 as usize)
        } else {
            Err(EngineError::UnknownNode {
                run: self.id.clone(),
                node,
            })
        }
    }

    fn drain(&mut self) {
        while let Some(w) = self.work.pop_front() {
            match w {
                Work::Ready(n) => self.make_ready(n),
                Work::Finished(n) => self.after_finish(n),
            }
        }
    }
}
