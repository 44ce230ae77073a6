//! kaon's state store: where runs, their nodes and their inbox live.
//!
//! [`StateStore`] is the contract; [`MemoryStore`] is its in-memory twin,
//! [`SqliteStore`] the embedded default (WAL, one transaction per
//! scheduling tick) and [`PgStore`] the PostgreSQL backend for a server
//! that several processes or machines share (one transaction per tick too,
//! each table's rows in one statement). The same contract tests
//! (`tests/contract/`) run against every backend, PostgreSQL on a real
//! server (`kaon-pgtest`).
//!
//! The store knows rows, not engine types: node and run data travel as JSON
//! text the engine wrote, so the store never has to change with the engine.
//! The few columns copied out of that data for readers (a run's status, a
//! node's state and kind) are the store's own enums, in [`row`], stored as
//! the same text as always.

mod any;
mod artifacts;
mod memory;
mod postgres;
pub mod row;
mod service;
mod sqlite;

use std::future::Future;

pub use any::{AnyStore, Backend, COMMIT_BUCKETS, CommitTimes, is_postgres};
pub use artifacts::{
    ArtifactFilter, ArtifactIndex, ArtifactRow, Direction, KeyRow, LineageEdge, MemoRow,
    OutputFilter, ReadRow, RunOutput,
};
pub use memory::MemoryStore;
pub use postgres::PgStore;
pub use service::{ScheduleRow, ServiceStore, TickRow, TokenRow, WorkflowRow};
pub use sqlite::{Durability, SqliteStore};

use row::{NodeKind, NodeState, RunStatus};

/// A run as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRow {
    /// Its id.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow file.
    pub path: String,
    /// A digest of the workflow's sources when the run began.
    pub digest: String,
    /// Parameter values (JSON object).
    pub params: String,
    /// Run options (JSON object).
    pub options: String,
    /// For a child run: the parent run and its sub-workflow node.
    pub parent: Option<(String, u32)>,
    /// Its status.
    pub status: RunStatus,
    /// Run-level data (JSON object).
    pub data: String,
    /// When it was created (ms since the epoch).
    pub created_ms: i64,
    /// When it ended.
    pub finished_ms: Option<i64>,
    /// The driver that holds it (`pid:start@host`), if any.
    pub owner: Option<String>,
    /// The owner's last sign of life.
    pub heartbeat_ms: Option<i64>,
}

/// A scope as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeRow {
    /// Its id within the run.
    pub id: u32,
    /// Its template.
    pub tmpl: u32,
    /// Its block node.
    pub parent: Option<u32>,
    /// Item index or pass.
    pub index: u32,
    /// Loop variables (JSON array of pairs).
    pub vars: String,
}

/// A node as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRow {
    /// Its id within the run.
    pub id: u32,
    /// Its scope.
    pub scope: u32,
    /// Its instance key, e.g. `train[reg=US]`.
    pub key: String,
    /// Step name or block label.
    pub name: String,
    /// Its kind.
    pub kind: NodeKind,
    /// Its state (the facts of the state are in `data`).
    pub state: NodeState,
    /// Attempts started.
    pub attempt: u32,
    /// When its first attempt started.
    pub started_ms: Option<i64>,
    /// When it ended.
    pub finished_ms: Option<i64>,
    /// State and facts (JSON object).
    pub data: String,
}

/// A run's new status, data and end time, written together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunUpdate {
    /// The status.
    pub status: RunStatus,
    /// Run-level data (JSON object).
    pub data: String,
    /// When it ended, once it has.
    pub finished_ms: Option<i64>,
}

/// What one tick changed in one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The run.
    pub run: String,
    /// New status, data and end time, when they changed.
    pub update: Option<RunUpdate>,
    /// Scopes created (ids not stored before).
    pub scopes: Vec<ScopeRow>,
    /// Nodes to insert or replace.
    pub nodes: Vec<NodeRow>,
    /// Inbox messages this tick acted on.
    pub consumed: Vec<i64>,
    /// Artifacts recorded (ids stored before are left as they are).
    pub artifacts: Vec<ArtifactRow>,
    /// Artifacts step runs read.
    pub reads: Vec<ReadRow>,
    /// Memo entries of step runs that succeeded.
    pub memo: Vec<MemoRow>,
    /// Memo key parts of step runs that started or reused a result.
    pub keys: Vec<KeyRow>,
    /// The driver the batch is written for (a fencing token): when set, the
    /// batch applies only if this owner holds the run when the commit
    /// lands. A driver that lost the run (another process took over its
    /// lease, or it let go) then cannot write to it, even before its next
    /// heartbeat tells it so. `None` writes whoever holds the run (artifact
    /// rows of a standalone put, tools).
    pub owner: Option<String>,
}

impl Batch {
    /// True when the batch changes the run itself (then the run must exist);
    /// a batch of artifact rows alone may have an empty `run`.
    pub fn touches_run(&self) -> bool {
        self.update.is_some()
            || !self.scopes.is_empty()
            || !self.nodes.is_empty()
            || !self.consumed.is_empty()
    }
}

/// A message for a run's driver from another process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its id (increasing).
    pub id: i64,
    /// The run.
    pub run: String,
    /// What it asks.
    pub body: MessageBody,
    /// When it was posted.
    pub created_ms: i64,
}

/// What a message asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// `kaon signal RUN NAME --value JSON`.
    Signal {
        /// The signal.
        name: String,
        /// Its value, JSON text.
        value: String,
    },
    /// `kaon cancel RUN`.
    Cancel {
        /// Why.
        reason: String,
    },
    /// `kaon kill RUN STEP`.
    Kill {
        /// The step's name or instance key.
        step: String,
        /// Why.
        reason: String,
    },
}

/// Which runs to list.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Include child runs of sub-workflows.
    pub children: bool,
    /// At most this many, newest first.
    pub limit: Option<u32>,
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs listed after this one (newest first): the next page of a
    /// list that ended with it. A run id not stored gives nothing.
    pub after: Option<String>,
    /// Only runs created at or after this time (ms since the epoch;
    /// inclusive).
    pub since: Option<i64>,
    /// Only runs created before this time (ms since the epoch; exclusive),
    /// so that `since` and `until` of adjacent windows never both list a
    /// run.
    pub until: Option<i64>,
    /// Only runs that a tick of this schedule or trigger started (its id,
    /// `<workflow>:<name>`, as [`ServiceStore::ticks`] records them). A
    /// schedule that fired nothing, or that does not exist, gives nothing.
    pub schedule: Option<String>,
}

/// What went wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A run with this id exists already.
    #[error("run {0} exists already")]
    RunExists(String),
    /// No run with this id.
    #[error("no run {0}")]
    NoSuchRun(String),
    /// The run is not held by the driver the caller named: another one
    /// holds it, or none does. Returned by a claim whose expected owner is
    /// not the current one, and by a commit fenced by an owner that no
    /// longer holds its run; either way the caller must stop driving it.
    #[error("run {run} is held by {owner}")]
    Held {
        /// The run.
        run: String,
        /// Who holds it (`nobody` when no driver does).
        owner: String,
    },
    /// A prefix names more than one artifact.
    #[error(
        "`{prefix}` names more than one artifact ({}{}); give more of the id",
        candidates.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
        if candidates.len() > 5 { ", ..." } else { "" }
    )]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// Ids of some of the artifacts it names (up to 6: five are shown,
        /// a sixth says there are more).
        candidates: Vec<String>,
    },
    /// A token with this id exists already.
    #[error("token {0} exists already")]
    TokenExists(String),
    /// A commit creates a scope that is stored already (scopes are
    /// created once; nodes are the rows that are replaced).
    #[error("conflicting write: scope {scope} of run {run} exists already")]
    ScopeExists {
        /// The run.
        run: String,
        /// The scope's id.
        scope: u32,
    },
    /// A stored row holds a value this build does not know: a status,
    /// state or kind written by a newer kaon, or a damaged database. The
    /// row is not read rather than read as something it is not.
    #[error(
        "run {run}: its stored {what} is `{value}`, which this kaon does not know (written by a newer kaon, or the database is damaged)"
    )]
    Damaged {
        /// The run.
        run: String,
        /// Which value: `status`, or `state of node 3 (train)`.
        what: String,
        /// The text found.
        value: String,
    },
    /// The database said no.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database's schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database's folder cannot be written.
    #[error("kaon's data directory {} is read-only or not writable by this user ({source}); kaon writes its database, logs and artifacts there: make it writable or choose another with --data-dir", dir.display())]
    ReadOnly {
        /// The folder.
        dir: std::path::PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The database file went away under a running process.
    #[error("kaon's database {} was deleted or replaced while kaon was using it; what happened since is lost from it. Stopped here; steps that were running were left alone", path.display())]
    Gone {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The database could not be opened.
    #[error("cannot open the database at {path}: {source}")]
    Open {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl StoreError {
    /// True when trying again later may succeed: a locked SQLite database;
    /// a PostgreSQL transaction that lost a serialization race or a
    /// deadlock (the server rolled it back), or a server out of reach,
    /// restarting or full of connections; a pool with no connection free.
    pub fn is_transient(&self) -> bool {
        match self {
            // SQLite's codes are numbers (SQLITE_BUSY, SQLITE_LOCKED,
            // SQLITE_BUSY_SNAPSHOT), PostgreSQL's SQLSTATEs five characters:
            // they cannot be mistaken for one another.
            StoreError::Database(sqlx::Error::Database(e)) => match e.code().as_deref() {
                Some("5" | "6" | "517") => true,
                // serialization_failure, deadlock_detected,
                // too_many_connections, admin_shutdown, crash_shutdown,
                // cannot_connect_now.
                Some("40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03") => true,
                // Class 08: connection exceptions.
                Some(code) => code.len() == 5 && code.starts_with("08"),
                None => false,
            },
            StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => true,
            _ => false,
        }
    }
}

/// The state store's contract. Every backend passes `tests/contract.rs`.
///
/// All methods are safe to call from several processes at once (a driver
/// and `kaon signal`, say); each one is atomic.
pub trait StateStore: Send + Sync {
    /// Records a new run. Fails with [`StoreError::RunExists`] when the id
    /// is taken, leaving the existing run untouched.
    fn create_run(&self, run: &RunRow) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Applies the batches of one tick in a single transaction: all of them
    /// or none. Scopes are inserted (an id stored before is
    /// [`StoreError::ScopeExists`]), nodes replace any stored row with the
    /// same id, consumed messages are marked consumed. A batch with an
    /// [`Batch::owner`] applies only while that owner holds its run,
    /// checked in the same transaction: otherwise the commit fails with
    /// [`StoreError::Held`] and applies nothing, so a driver that lost a
    /// run between two heartbeats cannot overwrite its new driver's work.
    /// When this returns, the changes survive a crash of the process (and,
    /// with full durability, of the machine).
    fn commit(&self, batches: &[Batch]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One run.
    fn run(&self, id: &str) -> impl Future<Output = Result<Option<RunRow>, StoreError>> + Send;

    /// Runs matching every condition of the filter, newest first (by
    /// creation time, ties by id, greatest first). Listing a page of one
    /// workflow's runs, of one schedule's, or of a time window is served
    /// by an index, however many other runs there are.
    fn list_runs(
        &self,
        filter: &RunFilter,
    ) -> impl Future<Output = Result<Vec<RunRow>, StoreError>> + Send;

    /// The child runs of a run, oldest first.
    fn children(&self, id: &str) -> impl Future<Output = Result<Vec<RunRow>, StoreError>> + Send;

    /// A run's scopes, by id.
    fn scopes(&self, run: &str) -> impl Future<Output = Result<Vec<ScopeRow>, StoreError>> + Send;

    /// A run's stored nodes, by id. Nodes never stored are pending.
    fn nodes(&self, run: &str) -> impl Future<Output = Result<Vec<NodeRow>, StoreError>> + Send;

    /// Nodes of a run whose name or key is `name`, by id.
    fn nodes_named(
        &self,
        run: &str,
        name: &str,
    ) -> impl Future<Output = Result<Vec<NodeRow>, StoreError>> + Send;

    /// Sets the run's owner to `owner` if it is `expected` now (compare and
    /// set), stamping the heartbeat. [`StoreError::Held`] names the
    /// current owner otherwise.
    fn claim(
        &self,
        run: &str,
        expected: Option<&str>,
        owner: Option<&str>,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Fails with [`StoreError::Gone`] when the store is no longer the one
    /// opened (its database file deleted or replaced under a running
    /// process, whose writes would then go nowhere). Cheap: a driver calls
    /// it several times a second.
    fn check_present(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Stamps the heartbeat if `owner` still holds the run; false if not.
    fn heartbeat(
        &self,
        run: &str,
        owner: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Posts a message to a run's inbox; returns its id.
    fn post(
        &self,
        run: &str,
        body: &MessageBody,
        now_ms: i64,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Messages not yet consumed, oldest first.
    fn inbox(&self, run: &str) -> impl Future<Output = Result<Vec<Message>, StoreError>> + Send;
}
