//! The store's contract, run against every backend: the in-memory twin,
//! SQLite (in memory and in a file) and PostgreSQL (a database of each
//! test's own on a real server, from `kaon-pgtest`).
//!
//! `state` and `artifacts` hold the contract, one function per property,
//! generic over the backend; `contract!` runs each against each backend.
//! `damaged` is the stored-text check, which needs a raw connection;
//! `sqlite_only` and `postgres_only` what only one backend has.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

mod artifacts;
mod damaged;
mod fixtures;
mod postgres_only;
mod sqlite_only;
mod state;

use kaon_store::{Durability, MemoryStore, PgStore, SqliteStore};

/// A module of tests for one backend: every contract function, each on a
/// fresh store that `$make` returns with what must live as long as it
/// (a temporary folder, a test database).
macro_rules! contract {
    ($name:ident, $make:expr) => {
        contract!(
            @tests $name, $make,
            state::creates_and_reads_runs,
            state::commit_is_atomic_and_replaces_nodes,
            state::many_rows_in_one_commit,
            state::typed_columns_round_trip,
            state::claim_is_compare_and_set,
            state::commit_is_fenced_by_owner,
            state::inbox_delivers_until_consumed,
            state::later_rows_of_a_commit_win,
            state::concurrent_claims_have_one_winner,
            state::lists_one_workflow_a_page_at_a_time,
            state::lists_runs_of_a_window_and_a_schedule,
            artifacts::artifacts_lineage_and_memo,
            artifacts::artifact_prefixes_and_first_rows,
            artifacts::outputs_of_a_workflows_latest_runs,
        );
    };
    (@tests $name:ident, $make:expr, $($module:ident :: $test:ident),+ $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[tokio::test]
                async fn $test() {
                    let (s, _keep) = $make;
                    super::$module::$test(&s).await;
                }
            )+
        }
    };
}

contract!(memory, (MemoryStore::new(), ()));
contract!(sqlite_memory, (SqliteStore::in_memory().await.unwrap(), ()));
contract!(sqlite_file, {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("kaon.db"), Durability::Full)
        .await
        .unwrap();
    (s, dir)
});
contract!(postgres, {
    let db = kaon_pgtest::database().await;
    let s = PgStore::connect_and_migrate(db.url()).await.unwrap();
    (s, db)
});
