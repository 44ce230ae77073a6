//! [`Runner`]: the handle callers (the CLI, a server) hold to drive runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kaon_artifacts::ArtifactStore;
use kaon_engine::{RunOptions, RunStatus};
use kaon_exec::{ExecEvent, Executor};
use kaon_model::Validated;
use kaon_model::ids::RunId;
use kaon_store::{ArtifactIndex, MessageBody, RunRow, StateStore};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::admission::Capacity;
use crate::driver::Driver;
use crate::error::RuntimeError;
use crate::observe::{Change, Observer};
use crate::secrets::Sealer;

/// Settings of a runtime.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Resources steps are admitted against (shared by every run).
    pub capacity: Capacity,
    /// How often the store's inbox (signals, cancels from other
    /// processes) is read.
    pub inbox_every: Duration,
    /// Seals secret parameters before they are stored, and hides them and
    /// environment values in memo keys.
    pub sealer: Sealer,
    /// The owner name this process claims runs under (see
    /// [`crate::owner_id`]).
    pub owner: String,
}

/// A new run to drive.
pub struct NewRun {
    /// Its id ([`RunId::new_root`]); the run must not exist yet.
    pub id: RunId,
    /// The workflow.
    pub validated: Arc<Validated>,
    /// Its parameters, bound (secrets in clear: they are sealed before
    /// they are stored).
    pub params: Map<String, Value>,
    /// Run-wide settings.
    pub options: RunOptions,
    /// Who watches it; [`crate::Quiet`] when nobody does.
    pub observer: Box<dyn Observer>,
}

/// A stored run to carry on.
pub struct ResumedRun {
    /// Its stored row; the caller has claimed it for this runtime's owner.
    pub row: RunRow,
    /// The workflow.
    pub validated: Arc<Validated>,
    /// Its parameters with its secrets in clear (see
    /// [`Sealer::unseal_params`]), or as stored when it is only cancelled.
    pub params: Map<String, Value>,
    /// Cancel it as soon as it is loaded (secrets stay sealed; nothing
    /// new is launched).
    pub cancel: Option<String>,
    /// Who watches it.
    pub observer: Box<dyn Observer>,
}

/// What callers ask of the loop.
pub(crate) enum Command {
    Start {
        run: Box<NewRun>,
        created: oneshot::Sender<Result<(), RuntimeError>>,
        done: oneshot::Sender<Result<Option<RunStatus>, RuntimeError>>,
    },
    Resume {
        run: Box<ResumedRun>,
        loaded: oneshot::Sender<Result<(), RuntimeError>>,
        done: oneshot::Sender<Result<Option<RunStatus>, RuntimeError>>,
    },
    /// Retry a step of a stored run (claimed by the caller), then drive it.
    Retry {
        run: Box<ResumedRun>,
        step: String,
        loaded: oneshot::Sender<Result<(), RuntimeError>>,
        done: oneshot::Sender<Result<Option<RunStatus>, RuntimeError>>,
    },
    /// Retry a step of a run the loop drives, on the loop's next turn.
    RetryStep {
        run: String,
        step: String,
        retried: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// Write a message to a run's inbox, then read it at once.
    Post {
        run: String,
        body: MessageBody,
        posted: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// A message for a root run's observer.
    Note { run: String, message: String },
    /// Let go of a root run without ending it.
    Detach { run: String },
    /// Let go of every run and stop.
    Shutdown { stopped: oneshot::Sender<()> },
}

/// The loop's task: it ends with the fault that stopped it, if any.
type LoopTask = JoinHandle<Result<(), Arc<RuntimeError>>>;

/// A run being driven; [`RunHandle::finished`] waits for its end.
pub struct RunHandle {
    /// The run's id.
    pub id: RunId,
    done: oneshot::Receiver<Result<Option<RunStatus>, RuntimeError>>,
}

impl RunHandle {
    /// How the run ended, or `None` when the runtime let go of it before
    /// its end (detached, shut down): it can be carried on later.
    pub async fn finished(self) -> Result<Option<RunStatus>, RuntimeError> {
        self.done.await.unwrap_or(Err(RuntimeError::Stopped))
    }
}

/// Drives any number of runs concurrently in one process.
///
/// One loop (a tokio task) drives every run: events of all runs are
/// applied in turn, ready steps of all runs wait in one admission queue
/// against the machine's capacity, and the changes of one turn are
/// committed in one transaction. (Measured against one loop per run in
/// `benches/runtime.rs`; see docs/benchmarks.md.) A run is committed to
/// the store before any of its effects, so a runtime that stops (shutdown,
/// crash) leaves every run to be carried on by the next one.
///
/// Contract:
/// - [`Runner::submit`] returns once the run is in the store; its steps
///   start on the loop's next turns.
/// - [`Runner::cancel`] and [`Runner::signal`] are committed to the run's
///   inbox first (as `kaon cancel` from another process is) and acted on
///   at once; they reach child runs too.
/// - [`Runner::retry`] and [`Runner::retry_step`] return once the retry's
///   reset is committed; the steps it readies start after.
/// - [`Runner::subscribe`] sees every change committed after the call, in
///   commit order; a subscriber that falls behind by more than the
///   channel's capacity misses changes (and is told so by tokio's
///   `Lagged`), it never slows the runs down.
pub struct Runner {
    cmds: mpsc::UnboundedSender<Command>,
    changes: broadcast::Sender<Change>,
    task: Mutex<Option<LoopTask>>,
    blobs: Option<ArtifactStore>,
}

impl Runner {
    /// Starts the loop. `events` is the channel the executor was built to
    /// report on; `blobs` turns memoization on.
    pub fn start<S, E>(
        store: Arc<S>,
        exec: Arc<E>,
        events: mpsc::UnboundedReceiver<ExecEvent>,
        blobs: Option<ArtifactStore>,
        opts: RuntimeOptions,
    ) -> Runner
    where
        S: StateStore + ArtifactIndex + 'static,
        E: Executor + 'static,
    {
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let (changes, _) = broadcast::channel(4096);
        let driver = Driver::new(
            store,
            exec,
            events,
            cmd_rx,
            changes.clone(),
            blobs.clone(),
            opts,
        );
        let task = tokio::spawn(driver.run());
        Runner {
            cmds,
            changes,
            task: Mutex::new(Some(task)),
            blobs,
        }
    }

    /// The artifact store the runs' outputs go to (the one given to
    /// [`Runner::start`]), for reading artifacts back.
    pub fn blobs(&self) -> Option<&ArtifactStore> {
        self.blobs.as_ref()
    }

    fn send(&self, cmd: Command) -> Result<(), RuntimeError> {
        self.cmds.send(cmd).map_err(|_| RuntimeError::Stopped)
    }

    /// Creates a run in the store and drives it.
    pub async fn submit(&self, run: NewRun) -> Result<RunHandle, RuntimeError> {
        let id = run.id.clone();
        let (created, created_rx) = oneshot::channel();
        let (done, done_rx) = oneshot::channel();
        self.send(Command::Start {
            run: Box::new(run),
            created,
            done,
        })?;
        created_rx.await.unwrap_or(Err(RuntimeError::Stopped))?;
        Ok(RunHandle { id, done: done_rx })
    }

    /// Carries on a stored run (claimed by the caller for this runtime).
    pub async fn resume(&self, run: ResumedRun) -> Result<RunHandle, RuntimeError> {
        let id = RunId::parse(&run.row.id).map_err(|_| RuntimeError::NoSuchRun {
            run: run.row.id.clone(),
        })?;
        let (loaded, loaded_rx) = oneshot::channel();
        let (done, done_rx) = oneshot::channel();
        self.send(Command::Resume {
            run: Box::new(run),
            loaded,
            done,
        })?;
        loaded_rx.await.unwrap_or(Err(RuntimeError::Stopped))?;
        Ok(RunHandle { id, done: done_rx })
    }

    /// Retries a failed step of a stored run and drives the run again.
    ///
    /// `step` is a step's name (every failed instance of it) or an instance
    /// key (`train[reg=US]`). The run is one that ended failed, or one left
    /// running by a process that is gone (carried on as [`Runner::resume`]
    /// does, the step retried in place); as for `resume`, the caller loaded
    /// its workflow, unsealed its parameters and claimed it for this
    /// runtime's owner, and `cancel` is `None`. The failed instances get a
    /// fresh retry budget and go back to pending with what did not run
    /// because of them (see [`kaon_engine::RunState::retry`]); what
    /// succeeded never runs again. The run is `running` again.
    ///
    /// Returns once that reset is committed (no step of it has started
    /// yet). Refused, with the claim let go of and nothing changed: a run
    /// that succeeded or was cancelled, a step that did not fail
    /// ([`RuntimeError::Retry`]), a child run ([`RuntimeError::ChildRun`]:
    /// retry its sub-workflow step in the parent, which starts a new child
    /// run), a run this runtime drives already ([`RuntimeError::Driving`]:
    /// use [`Runner::retry_step`]; its claim is kept).
    pub async fn retry(&self, run: ResumedRun, step: &str) -> Result<RunHandle, RuntimeError> {
        let id = RunId::parse(&run.row.id).map_err(|_| RuntimeError::NoSuchRun {
            run: run.row.id.clone(),
        })?;
        let (loaded, loaded_rx) = oneshot::channel();
        let (done, done_rx) = oneshot::channel();
        self.send(Command::Retry {
            run: Box::new(run),
            step: step.to_string(),
            loaded,
            done,
        })?;
        loaded_rx.await.unwrap_or(Err(RuntimeError::Stopped))?;
        Ok(RunHandle { id, done: done_rx })
    }

    /// Retries a failed step of a run this runtime drives now: still
    /// running (`on_failure = continue` lets it go on after a failure), or
    /// ended but not yet let go of. Applied on the loop's next turn, after
    /// the events that came before it; the reset is committed before any
    /// step of it starts, and this returns once it is. The run's handle
    /// reports its new end.
    ///
    /// Refused with [`RuntimeError::NotDriven`] for a run this runtime does
    /// not hold (claim it and use [`Runner::retry`]), with
    /// [`RuntimeError::ChildRun`] for a child run that ended, and with
    /// [`RuntimeError::Retry`] when the run's state does not allow it.
    pub async fn retry_step(&self, run: &RunId, step: &str) -> Result<(), RuntimeError> {
        let (retried, rx) = oneshot::channel();
        self.send(Command::RetryStep {
            run: run.to_string(),
            step: step.to_string(),
            retried,
        })?;
        rx.await.unwrap_or(Err(RuntimeError::Stopped))
    }

    async fn post(&self, run: &RunId, body: MessageBody) -> Result<(), RuntimeError> {
        let (posted, rx) = oneshot::channel();
        self.send(Command::Post {
            run: run.to_string(),
            body,
            posted,
        })?;
        rx.await.unwrap_or(Err(RuntimeError::Stopped))
    }

    /// Asks a run to cancel: running steps are killed, nothing new starts.
    pub async fn cancel(&self, run: &RunId, reason: &str) -> Result<(), RuntimeError> {
        self.post(
            run,
            MessageBody::Cancel {
                reason: reason.to_string(),
            },
        )
        .await
    }

    /// Sends a named signal with a JSON value to a run (its waiting steps
    /// take it).
    pub async fn signal(&self, run: &RunId, name: &str, value: &Value) -> Result<(), RuntimeError> {
        self.post(
            run,
            MessageBody::Signal {
                name: name.to_string(),
                value: value.to_string(),
            },
        )
        .await
    }

    /// Kills the running attempts of one step of a run (a retry may follow).
    pub async fn kill_step(
        &self,
        run: &RunId,
        step: &str,
        reason: &str,
    ) -> Result<(), RuntimeError> {
        self.post(
            run,
            MessageBody::Kill {
                step: step.to_string(),
                reason: reason.to_string(),
            },
        )
        .await
    }

    /// Shows a message through a root run's observer.
    pub fn note(&self, run: &RunId, message: &str) {
        let _ = self.send(Command::Note {
            run: run.to_string(),
            message: message.to_string(),
        });
    }

    /// Lets go of a root run without ending it: its steps go on, and
    /// another process (or a later `resume`) carries it on. Its handle's
    /// [`RunHandle::finished`] gives `None`.
    pub fn detach(&self, run: &RunId) {
        let _ = self.send(Command::Detach {
            run: run.to_string(),
        });
    }

    /// Committed changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Lets go of every run (they are carried on by the next process) and
    /// stops the loop; returns the fault that stopped it, if one did.
    pub async fn shutdown(&self) -> Result<(), RuntimeError> {
        let (stopped, rx) = oneshot::channel();
        if self.send(Command::Shutdown { stopped }).is_ok() {
            let _ = rx.await;
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        match task {
            Some(task) => match task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(RuntimeError::Fault(e)),
                Err(_) => Err(RuntimeError::Stopped),
            },
            None => Ok(()),
        }
    }
}
