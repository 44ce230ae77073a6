//! The SQLite backend: the embedded default.
//!
//! One file, WAL journal (readers never block the driver's writes), and one
//! transaction per [`StateStore::commit`]: the driver commits every change
//! of a scheduling tick together, so a tick that finished 500 steps costs
//! one fsync. Rows of a tick go in as one JSON array per table
//! (`INSERT .. SELECT FROM json_each(?)`): one statement, however many rows.
//!
//! `open` creates, migrates and locks the file; `batch` writes a commit;
//! `state` answers the [`StateStore`] contract (runs, nodes, claims, the
//! inbox); `artifacts` the [`crate::ArtifactIndex`]; `service` the
//! [`crate::ServiceStore`] (workflows, schedules, ticks, tokens).

mod artifacts;
mod batch;
mod open;
mod service;
mod state;

use sqlx::sqlite::SqlitePool;

#[cfg(doc)]
use crate::StateStore;

/// How hard a commit works to survive a crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: survives power loss (the default).
    #[default]
    Full,
    /// fsync at checkpoints only: survives a crash of kaon, and may lose the
    /// last commits (never consistency) on power loss.
    Process,
}

/// The SQLite state store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// The one writer: every transaction and write goes here, in turn.
    pool: SqlitePool,
    /// Readers beside the writer (WAL lets them run while it commits), so
    /// that an API's reads neither wait for the driver's commits nor hold
    /// them up. The same pool as `pool` for an in-memory database, which
    /// exists only on its one connection.
    read: SqlitePool,
    /// The database file and its (device, inode) when opened, to notice it
    /// being deleted or replaced.
    file: Option<(std::path::PathBuf, u64, u64)>,
}
