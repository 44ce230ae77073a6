//! The harness itself: servers start, serve and stop; databases are fresh
//! and go away.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

use kaon_pgtest::Server;
use sqlx::Connection;

async fn select_one(url: &str) -> Result<i32, sqlx::Error> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let one = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
    conn.close().await?;
    Ok(one)
}

#[tokio::test]
async fn a_server_starts_serves_and_stops() {
    let mut server = Server::start();
    let dir = server.dir().to_path_buf();
    assert!(dir.join("data/PG_VERSION").is_file());
    assert_eq!(select_one(&server.url()).await.unwrap(), 1);
    server.stop().unwrap();
    assert!(select_one(&server.url()).await.is_err(), "stopped");
    server.stop().unwrap();
    drop(server);
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[tokio::test]
async fn databases_are_fresh_and_dropped() {
    let a = kaon_pgtest::database().await;
    let b = kaon_pgtest::database().await;
    assert_ne!(a.name(), b.name());
    assert!(a.name().starts_with("t_"), "{}", a.name());
    let mut conn = sqlx::PgConnection::connect(a.url()).await.unwrap();
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(current, a.name());
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, 0, "a fresh database is empty");
    conn.close().await.unwrap();

    let exists = |name: String, admin: String| async move {
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        n == 1
    };
    let (name, admin) = (b.name().to_string(), b.admin_url().to_string());
    assert!(exists(name.clone(), admin.clone()).await);
    // Dropped on a shared server; on this process's own, left for the
    // server's end.
    let shared = std::env::var(kaon_pgtest::URL_VAR).is_ok_and(|u| !u.is_empty());
    drop(b);
    assert_eq!(exists(name, admin).await, !shared);
}
