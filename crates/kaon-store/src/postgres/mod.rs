//! The PostgreSQL backend: a server several kaon processes (and machines)
//! share.
//!
//! It keeps the same rows as SQLite (`migrations-postgres/` is the twin of
//! `migrations/`, JSON kept as TEXT so rows read back byte for byte) and
//! passes the same contract tests. What differs is how it gets there:
//!
//! - One transaction per [`StateStore::commit`], as in SQLite, but each
//!   table's rows of *all* the commit's batches go in as one statement of
//!   arrays (`INSERT .. SELECT FROM UNNEST($1, $2, ..)`): a tick that touches
//!   100 runs and 5,000 nodes costs about ten round trips, not hundreds, and
//!   no statement runs into PostgreSQL's limit of 65,535 parameters.
//! - Fencing locks the run rows the commit writes for (`FOR NO KEY UPDATE`,
//!   in id order so that two commits never deadlock on each other) and checks
//!   their owners under that lock: a [`StateStore::claim`], an `UPDATE` of
//!   the same row, waits for the commit to end or the commit waits for it,
//!   so a commit never lands for an owner that lost its run.
//!
//! `open` connects and migrates; `batch` writes a commit; `state` answers
//! the [`StateStore`] contract (runs, nodes, claims, the inbox); `artifacts`
//! the [`crate::ArtifactIndex`]; `service` the [`crate::ServiceStore`].

mod artifacts;
mod batch;
mod open;
mod service;
mod state;

#[cfg(doc)]
use crate::StateStore;

/// The PostgreSQL state store: a pool of connections to one database.
///
/// Cloning is cheap and shares the pool.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: sqlx::PgPool,
}
