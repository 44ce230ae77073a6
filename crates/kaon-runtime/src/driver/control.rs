//! What callers ask of the loop, and the store's inbox.

use std::sync::Arc;

use kaon_engine::{Event, Program, RunState};
use kaon_exec::Executor;
use kaon_store::{ArtifactIndex, MessageBody, StateStore};
use serde_json::Value;

use super::{Driver, Root, RunCtx};
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
        self.hold(&id, &id, state, validated, None, Event::RunStarted);
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
        self.hold(&id, &id, state, validated, None, Event::Recovered);
        if let Some(reason) = cancel {
            self.pending
                .push_back((id.clone(), Event::CancelRequested { reason }));
        }
        Ok(id)
    }

    /// Holds a run in memory and queues its first event.
    pub(super) fn hold(
        &mut self,
        id: &str,
        root: &str,
        state: RunState,
        validated: Arc<kaon_model::Validated>,
        parent: Option<(String, kaon_engine::NodeId, u32)>,
        first: Event,
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
        self.pending.push_back((id.to_string(), first));
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
