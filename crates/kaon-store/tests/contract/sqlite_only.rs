//! What only SQLite has: several stores on one file, and the file itself.

use kaon_store::{Durability, SqliteStore};
use sqlx::Connection;

use crate::damaged::{self, Raw};
use crate::state;

/// Two processes' worth of connections on one file: a second store sees
/// what the first committed, and both can write (WAL + busy timeout).
#[tokio::test]
async fn two_connections_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kaon.db");
    let a = SqliteStore::open(&path, Durability::Full).await.unwrap();
    let b = SqliteStore::open(&path, Durability::Process).await.unwrap();
    state::two_stores_share_one_database(&a, &b).await;
}

#[tokio::test]
async fn stored_text_is_unchanged_and_unknown_text_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kaon.db");
    let s = SqliteStore::open(&path, Durability::Full).await.unwrap();
    let raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    damaged::stored_text_is_unchanged_and_unknown_text_is_damaged(&s, Raw::Sqlite(raw)).await;
}

/// A page of a workflow with 10,000 runs among 20,000, of a window and of
/// a schedule comes from an index (in a file, as a server keeps it).
#[tokio::test]
async fn lists_a_page_of_many_runs_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("kaon.db"), Durability::Process)
        .await
        .unwrap();
    state::lists_a_page_of_many_runs_quickly(&s).await;
}
