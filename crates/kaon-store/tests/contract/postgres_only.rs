//! What only PostgreSQL has: a server several stores (processes, machines)
//! share, migrations that may run at once, and errors worth a retry.

use kaon_store::{PgStore, StoreError};
use sqlx::Connection;

use crate::damaged::{self, Raw};
use crate::state;

/// Two stores (two pools) on one database see each other's commits and
/// write at once.
#[tokio::test]
async fn two_stores_share_one_database() {
    let db = kaon_pgtest::database().await;
    let a = PgStore::connect_and_migrate(db.url()).await.unwrap();
    let b = PgStore::connect(db.url()).await.unwrap();
    state::two_stores_share_one_database(&a, &b).await;
}

#[tokio::test]
async fn stored_text_is_unchanged_and_unknown_text_is_damaged() {
    let db = kaon_pgtest::database().await;
    let s = PgStore::connect_and_migrate(db.url()).await.unwrap();
    let raw = sqlx::PgConnection::connect(db.url()).await.unwrap();
    damaged::stored_text_is_unchanged_and_unknown_text_is_damaged(&s, Raw::Postgres(raw)).await;
}

/// Servers starting together migrate one new database together: the
/// migrator's advisory lock lets one apply the migrations, the others
/// find them applied; and migrating again changes nothing.
#[tokio::test]
async fn migrations_may_run_at_once() {
    let db = kaon_pgtest::database().await;
    let (a, b, c) = tokio::join!(
        PgStore::connect_and_migrate(db.url()),
        PgStore::connect_and_migrate(db.url()),
        PgStore::connect_and_migrate(db.url()),
    );
    let (a, _b, _c) = (a.unwrap(), b.unwrap(), c.unwrap());
    a.migrate().await.unwrap();
    let mut raw = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut raw)
            .await
            .unwrap();
    assert_eq!(applied[..3], [1, 2, 3], "{applied:?}");
}

/// A transaction the server rolled back for a serialization failure, and
/// a server out of reach, are worth a retry; a constraint violation is
/// not.
#[tokio::test]
async fn retryable_errors_are_transient() {
    let db = kaon_pgtest::database().await;
    let mut setup = sqlx::PgConnection::connect(db.url()).await.unwrap();
    sqlx::raw_sql("CREATE TABLE t (k INT PRIMARY KEY, v INT NOT NULL)")
        .execute(&mut setup)
        .await
        .unwrap();
    // Write skew between two serializable transactions: each reads what
    // the other writes. The second to commit fails with 40001.
    let mut one = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let mut two = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let serializable = "BEGIN ISOLATION LEVEL SERIALIZABLE";
    sqlx::raw_sql(serializable).execute(&mut one).await.unwrap();
    sqlx::raw_sql(serializable).execute(&mut two).await.unwrap();
    let count = "SELECT count(*) FROM t";
    sqlx::raw_sql(count).execute(&mut one).await.unwrap();
    sqlx::raw_sql(count).execute(&mut two).await.unwrap();
    sqlx::raw_sql("INSERT INTO t VALUES (1, 1)")
        .execute(&mut one)
        .await
        .unwrap();
    sqlx::raw_sql("INSERT INTO t VALUES (2, 2)")
        .execute(&mut two)
        .await
        .unwrap();
    sqlx::raw_sql("COMMIT").execute(&mut one).await.unwrap();
    let failed = sqlx::raw_sql("COMMIT").execute(&mut two).await.unwrap_err();
    let code = failed.as_database_error().and_then(|e| e.code());
    assert_eq!(code.as_deref(), Some("40001"), "{failed}");
    assert!(StoreError::from(failed).is_transient());

    let duplicate = sqlx::raw_sql("INSERT INTO t VALUES (1, 1)")
        .execute(&mut setup)
        .await
        .unwrap_err();
    assert!(!StoreError::from(duplicate).is_transient());

    // Nothing listens on port 1 of 127.0.0.1: told at once, and worth
    // trying again later.
    let started = std::time::Instant::now();
    let refused = PgStore::connect("postgres://postgres@127.0.0.1:1/postgres")
        .await
        .unwrap_err();
    assert!(refused.is_transient(), "{refused:?}");
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
}

/// A page of a workflow with 10,000 runs among 20,000, of a window and of
/// a schedule comes from an index.
#[tokio::test]
async fn lists_a_page_of_many_runs_quickly() {
    let db = kaon_pgtest::database().await;
    let s = PgStore::connect_and_migrate(db.url()).await.unwrap();
    state::lists_a_page_of_many_runs_quickly(&s).await;
}
