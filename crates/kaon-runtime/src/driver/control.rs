//! What callers ask of the loop, and the store's inbox.

use std::sync::Arc;

use kaon_engine::{Action, Event, Millis, Program, RetryError, RunState};
use kaon_exec::Executor;
use kaon_model::Validated;
use kaon_store::{ArtifactIndex, MessageBody, RunRow, StateStore};
use serde_json::{Map, Value};

use super::{Driver, RetryAsk, Root, RunCtx};
use crate::error::RuntimeError;
use crate::observe::Change;
use crate::owner::{base_dir, now_ms};
use crate::rows::{load_state, new_run_row};
use crate::runner::{Command, NewRun, ResumedRun};

impl<S, E> Driver<S, E>
where
    S: StateStore + ArtifactIndex + 'static,
    E: Executor + 'static,
{
    /// Carries out one command. Only a fault of the store stops the loop;
    /// what is wrong with one request goes back to its caller.
    pub(super) async fn command(&mut self, cmd: Command) -> Result<(), RuntimeError> {
        match cmd {
            Command::Start { run, created, done } => match self.start_new(*run).await {
                Ok(id) => {
                    if let Some(r) = self.roots.get_mut(&id) {
                        r.done = Some(done);
                    }
                    let _ = created.send(Ok(()));
                }
                Err(e) => {
                    let _ = created.send(Err(e));
                }
            },
            Command::Resume { run, loaded, done } => match self.resume(*run).await {
                Ok(id) => {
                    if let Some(r) = self.roots.get_mut(&id) {
                        r.done = Some(done);
                    }
                    let _ = loaded.send(Ok(()));
                }
                Err(e) => {
                    let _ = loaded.send(Err(e));
                }
            },
            Command::Retry {
                run,
                step,
                loaded,
                done,
            } => match self.retry_stored(*run, &step).await {
                Ok(id) => {
                    if let Some(r) = self.roots.get_mut(&id) {
                        r.done = Some(done);
                    }
                    // Told once the reset is committed, on the next turn.
                    self.after_commit.push((id, loaded));
                }
                Err(e) => {
                    let _ = loaded.send(Err(e));
                }
            },
            Command::RetryStep { run, step, retried } => {
                if self.runs.contains_key(&run) {
                    self.retries.push(RetryAsk {
                        run,
                        step,
                        reply: retried,
                    });
                } else {
                    let _ = retried.send(Err(RuntimeError::NotDriven { run }));
                }
            }
            Command::Post { run, body, posted } => {
                let result = self.post(&run, &body).await;
                let _ = posted.send(result);
            }
            Command::Note { run, message } => {
                if let Some(r) = self.roots.get_mut(&run) {
                    r.observer.note(&message);
                }
            }
            Command::Detach { run } => {
                if self.roots.contains_key(&run) {
                    // A run that already ended is reported as ended.
                    let ended = self
                        .runs
                        .get(&run)
                        .filter(|c| c.done)
                        .map(|c| c.state.status);
                    self.end_root(&run, Ok(ended)).await;
                }
            }
            Command::Shutdown { stopped } => self.shutdown = Some(stopped),
        }
        Ok(())
    }

    async fn start_new(&mut self, run: NewRun) -> Result<String, RuntimeError> {
        let NewRun {
            id,
            validated,
            params,
            options,
            observer,
        } = run;
        let id = id.into_string();
        let now = now_ms();
        let row = new_run_row(
            &id,
            &validated,
            &self
                .opts
                .sealer
                .seal_params(&validated.workflow.params, &params, &[]),
            &options,
            None,
            &self.opts.owner,
            now,
        );
        self.store
            .create_run(&row)
            .await
            .map_err(RuntimeError::store(format!("cannot create run {id}")))?;
        let program = Arc::new(Program::new(validated.clone(), base_dir(&validated)));
        let state = RunState::new(id.clone(), program, params, options);
        self.roots.insert(
            id.clone(),
            Root {
                observer,
                done: None,
                cancelling: false,
            },
        );
        let _ = self.changes.send(Change::RunCreated {
            run: id.clone(),
            root: id.clone(),
            workflow: validated.workflow.name.clone(),
        });
        self.hold(&id, &id, state, validated, None, Some(Event::RunStarted));
        Ok(id)
    }

    async fn resume(&mut self, run: ResumedRun) -> Result<String, RuntimeError> {
        let ResumedRun {
            row,
            validated,
            params,
            cancel,
            observer,
        } = run;
        if self.runs.contains_key(&row.id) {
            return Err(RuntimeError::Driving {
                run: row.id.clone(),
            });
        }
        let state = load_state(self.store.as_ref(), &row, validated.clone(), params).await?;
        let id = row.id.clone();
        self.roots.insert(
            id.clone(),
            Root {
                observer,
                done: None,
                cancelling: cancel.is_some(),
            },
        );
        self.hold(&id, &id, state, validated, None, Some(Event::Recovered));
        if let Some(reason) = cancel {
            self.pending
                .push_back((id.clone(), Event::CancelRequested { reason }));
        }
        Ok(id)
    }

    /// Retries a step of a stored run the caller claimed, and holds it.
    /// On a refusal nothing is held and the caller's claim is let go of.
    async fn retry_stored(&mut self, run: ResumedRun, step: &str) -> Result<String, RuntimeError> {
        let ResumedRun {
            row,
            validated,
            params,
            cancel,
            observer,
        } = run;
        if self.runs.contains_key(&row.id) {
            return Err(RuntimeError::Driving {
                run: row.id.clone(),
            });
        }
        let id = row.id.clone();
        let now = now_ms();
        let retried = match (&row.parent, cancel) {
            (Some((parent, _)), _) => Err(RuntimeError::ChildRun {
                run: id.clone(),
                parent: parent.clone(),
            }),
            (None, Some(_)) => Err(RetryError::Cancelling { run: id.clone() }.into()),
            (None, None) => {
                retried_state(
                    self.store.as_ref(),
                    &row,
                    validated.clone(),
                    params,
                    step,
                    now,
                )
                .await
            }
        };
        let (state, out) = match retried {
            Ok(r) => r,
            Err(e) => {
                let _ = self
                    .store
                    .claim(&id, Some(&self.opts.owner), None, now as i64)
                    .await;
                return Err(e);
            }
        };
        self.roots.insert(
            id.clone(),
            Root {
                observer,
                done: None,
                cancelling: false,
            },
        );
        self.hold(&id, &id, state, validated, None, None);
        // Carried out on the next turn, after the reset is committed.
        let mut owed = std::mem::take(&mut self.owed);
        self.route(&id, out, &mut owed);
        self.owed = owed;
        Ok(id)
    }

    /// Retries a step of a run held here; its actions join the turn's.
    pub(super) fn retry_held(
        &mut self,
        run: &str,
        step: &str,
        now: Millis,
        actions: &mut Vec<(String, Action)>,
    ) -> Result<(), RuntimeError> {
        let Some(ctx) = self.runs.get_mut(run) else {
            return Err(RuntimeError::NotDriven {
                run: run.to_string(),
            });
        };
        if let Some((parent, ..)) = &ctx.parent
            && ctx.state.status.is_terminal()
        {
            // Its parent heard of its end and moved on.
            return Err(RuntimeError::ChildRun {
                run: run.to_string(),
                parent: parent.clone(),
            });
        }
        // A run driven only to be cancelled keeps its secrets sealed and
        // launches nothing.
        if self.roots.get(&ctx.root).is_some_and(|r| r.cancelling) {
            return Err(RetryError::Cancelling {
                run: run.to_string(),
            }
            .into());
        }
        let out = ctx.state.retry(step, now)?;
        // A root that ended this turn, or that is held until its last
        // steps let go of their resources, runs again: its end is not
        // carried out.
        ctx.done = false;
        actions.retain(|(r, a)| !(r == run && matches!(a, Action::RunFinished { .. })));
        self.route(run, out, actions);
        Ok(())
    }

    /// Holds a run in memory and queues its first event, if it has one.
    pub(super) fn hold(
        &mut self,
        id: &str,
        root: &str,
        state: RunState,
        validated: Arc<Validated>,
        parent: Option<(String, kaon_engine::NodeId, u32)>,
        first: Option<Event>,
    ) {
        self.runs.insert(
            id.to_string(),
            RunCtx {
                state,
                validated,
                parent,
                root: root.to_string(),
                done: false,
            },
        );
        if let Some(first) = first {
            self.pending.push_back((id.to_string(), first));
        }
    }

    /// Commits a message to a run's inbox, then reads it: the same path as
    /// a message from another process, so it is acted on exactly once.
    async fn post(&mut self, run: &str, body: &MessageBody) -> Result<(), RuntimeError> {
        if !self.runs.contains_key(run) {
            return Err(RuntimeError::NoSuchRun {
                run: run.to_string(),
            });
        }
        self.store
            .post(run, body, now_ms() as i64)
            .await
            .map_err(RuntimeError::store(format!("cannot post to run {run}")))?;
        self.read_inbox(Some(run)).await
    }

    /// Reads the inbox of one run, or of every live run.
    pub(super) async fn read_inbox(&mut self, only: Option<&str>) -> Result<(), RuntimeError> {
        let ids = match only {
            Some(id) => vec![id.to_string()],
            None => self.live_runs(),
        };
        for id in ids {
            let messages = self
                .store
                .inbox(&id)
                .await
                .map_err(RuntimeError::store(format!("cannot read run {id}'s inbox")))?;
            for m in messages {
                if !self.seen.insert(m.id) {
                    continue;
                }
                let ev = match m.body {
                    MessageBody::Signal { name, value } => Event::SignalReceived {
                        name,
                        value: serde_json::from_str(&value).unwrap_or(Value::String(value)),
                    },
                    MessageBody::Cancel { reason } => Event::CancelRequested { reason },
                    MessageBody::Kill { step, reason } => Event::KillRequested { step, reason },
                };
                self.consumed.entry(id.clone()).or_default().push(m.id);
                self.pending.push_back((id.clone(), ev));
            }
        }
        Ok(())
    }
}

/// A stored run's state with a step retried, and the actions owed: a run
/// left running by a process that is gone first finds again what was
/// under way, as `resume` does.
async fn retried_state<S: StateStore + ?Sized>(
    store: &S,
    row: &RunRow,
    validated: Arc<Validated>,
    params: Map<String, Value>,
    step: &str,
    now: Millis,
) -> Result<(RunState, Vec<Action>), RuntimeError> {
    let mut state = load_state(store, row, validated, params).await?;
    let mut out = Vec::new();
    if !state.status.is_terminal() {
        out = state.apply(Event::Recovered, now)?;
    }
    out.extend(state.retry(step, now)?);
    Ok((state, out))
}
