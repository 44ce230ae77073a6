//! The runtime's errors.

use std::path::PathBuf;

/// What can stop the runtime from driving a run. A step that fails is not
/// an error (it is a state of the run); these are faults of the store, of
/// the files kaon reads, or of what the caller asked for.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The state store failed (a commit, a read, a claim).
    #[error("{what}: {source}")]
    Store {
        /// What the runtime was doing.
        what: String,
        /// The store's error.
        #[source]
        source: kaon_store::StoreError,
    },
    /// The engine refused an event (a damaged store or a bug).
    #[error(transparent)]
    Engine(#[from] kaon_engine::EngineError),
    /// The artifact store failed.
    #[error("{what}: {source}")]
    Artifact {
        /// What the runtime was doing.
        what: String,
        /// The artifact store's error.
        #[source]
        source: kaon_artifacts::ArtifactError,
    },
    /// A stored record cannot be read back.
    #[error("run {run}: {what} is damaged ({source})")]
    Damaged {
        /// The run.
        run: String,
        /// Which record.
        what: String,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// Another process took the run over; this one stops driving it.
    #[error("run {run} was taken over by another kaon process; this one stops driving it")]
    TakenOver {
        /// The run.
        run: String,
    },
    /// A live process drives the run already.
    #[error(
        "run {run} is being driven by another kaon process ({owner}); wait for it, or `kaon cancel {run}`"
    )]
    Held {
        /// The run.
        run: String,
        /// The process that holds it.
        owner: String,
    },
    /// This runtime drives the run already.
    #[error("run {run} is being driven by this runtime already")]
    Driving {
        /// The run.
        run: String,
    },
    /// A retry the run's state does not allow (the run succeeded, the
    /// step did not fail, ...).
    #[error(transparent)]
    Retry(#[from] kaon_engine::RetryError),
    /// The run is not driven by this runtime.
    #[error(
        "run {run} is not driven by this runtime (it ended, or another kaon process drives it)"
    )]
    NotDriven {
        /// The run.
        run: String,
    },
    /// A child run (of a sub-workflow step) is not retried on its own once
    /// it ended or outside its parent: its parent has moved on.
    #[error(
        "run {run} is a child run of {parent}; retry its sub-workflow step in run {parent} instead (that starts a new child run)"
    )]
    ChildRun {
        /// The child run.
        run: String,
        /// Its parent run.
        parent: String,
    },
    /// No run with this id is known to the runtime or the store.
    #[error("no run {run}")]
    NoSuchRun {
        /// The run.
        run: String,
    },
    /// A sub-workflow step whose workflow was not loaded.
    #[error("sub-workflow step `{step}` has no loaded child workflow")]
    NoChildWorkflow {
        /// The step.
        step: String,
    },
    /// A secret parameter cannot be given or does not match.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A code path of a step (its program, a script, a `code` entry)
    /// cannot be read.
    #[error("code path {} cannot be read: {source}", path.display())]
    Code {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A code path of a step is not there.
    #[error("code path {} does not exist", path.display())]
    CodeMissing {
        /// The path.
        path: PathBuf,
    },
    /// Steps of this kind cannot be memoized.
    #[error("steps of kind `{kind}` are not cached")]
    NotCached {
        /// The step kind.
        kind: String,
    },
    /// A resource limit that is not a positive amount.
    #[error("--{what} must be above 0, not {value}")]
    BadCapacity {
        /// `cpus` or `memory`.
        what: &'static str,
        /// What was given.
        value: String,
    },
    /// The runtime's loop has stopped; nothing more can be asked of it.
    #[error("the runtime has stopped")]
    Stopped,
    /// The runtime's loop stopped on a fault while driving this run.
    #[error(transparent)]
    Fault(std::sync::Arc<RuntimeError>),
}

impl RuntimeError {
    /// A store error with what the runtime was doing.
    pub fn store(what: impl Into<String>) -> impl FnOnce(kaon_store::StoreError) -> Self {
        let what = what.into();
        move |source| RuntimeError::Store { what, source }
    }

    /// True when the store is the cause (a server would retry or report
    /// itself unhealthy, not blame the run).
    pub fn is_store(&self) -> bool {
        matches!(self, RuntimeError::Store { .. })
    }
}

/// Why a secret parameter cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Carrying a run on needs a secret that was not given again.
    #[error(
        "secret parameter `{name}` is needed to carry the run on and kaon does not keep it: {how}"
    )]
    Missing {
        /// The parameter.
        name: String,
        /// How to give it.
        how: String,
    },
    /// The value given is not of the declared type.
    #[error("secret parameter `{name}`: the value given is not {ty}")]
    WrongType {
        /// The parameter.
        name: String,
        /// The declared type.
        ty: String,
    },
    /// The value given is not the one the run started with.
    #[error(
        "secret parameter `{name}` differs from the value the run started with; carrying it on with another would mix two runs (start a new run with `kaon run --new`)"
    )]
    Differs {
        /// The parameter.
        name: String,
    },
    /// An environment variable a parameter reads is not UTF-8.
    #[error("${var} (parameter `{name}`) is not valid UTF-8")]
    NotUtf8 {
        /// The parameter.
        name: String,
        /// The variable.
        var: String,
    },
    /// A `~/` path without `$HOME`.
    #[error("parameter `{name}`: `{file}` needs $HOME, which is not set")]
    NoHome {
        /// The parameter.
        name: String,
        /// The path as written.
        file: String,
    },
    /// A parameter's file cannot be read.
    #[error("parameter `{name}`: cannot read {}: {source}", path.display())]
    File {
        /// The parameter.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
