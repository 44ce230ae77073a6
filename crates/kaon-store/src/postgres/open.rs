//! Connecting to the server and bringing the database's schema up to date.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};

use super::PgStore;
use crate::StoreError;

/// The schema, separate from SQLite's: the same tables in PostgreSQL's
/// types. Its numbers follow SQLite's where the two share a migration.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");

/// Connections in the pool: a driver commits from one task at a time, and
/// the rest serve readers (`kaon runs`, a server's API) beside it.
const CONNECTIONS: u32 = 10;

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`).
    /// The schema is not touched: call [`PgStore::migrate`] (or use
    /// [`PgStore::connect_and_migrate`]) before the first read or write.
    ///
    /// Fails at once when the server cannot be reached or refuses the
    /// connection (a server down is [`StoreError::is_transient`]).
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        // One connection first, opened once: a pool's first connection is
        // retried until the acquire timeout, so a server that is down (or
        // a wrong password) would take that long to be told.
        PgConnection::connect_with(&options).await?.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            // Long enough to ride out a busy server, short enough that a
            // server gone for good is an error rather than a hang; a pool
            // timeout is transient (`StoreError::is_transient`).
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(options);
        Ok(PgStore { pool })
    }

    /// Brings the schema up to date, applying the migrations this build has
    /// and the database does not.
    ///
    /// Safe to call from several processes at once (two servers starting
    /// together): sqlx's PostgreSQL migrator holds an advisory lock on the
    /// database while it migrates, so one applies the migrations and the
    /// others then find nothing to do. Fails if the database was migrated
    /// by a newer kaon, whose migrations this build does not know.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// [`PgStore::connect`], then [`PgStore::migrate`].
    pub async fn connect_and_migrate(url: &str) -> Result<PgStore, StoreError> {
        let store = PgStore::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }
}
