//! Statuses, states and kinds are stored as the text kaon always stored,
//! on every database: rows an older kaon wrote read back, and a text this
//! build does not know is [`StoreError::Damaged`], naming the run and the
//! value, not a panic. Raw statements (the same SQL on both databases)
//! write what kaon itself would not.

use kaon_store::row::{NodeKind, NodeState, RunStatus};
use kaon_store::{Batch, RunFilter, RunUpdate, StateStore, StoreError};
use sqlx::Connection;

use crate::fixtures::{node, run};

/// A connection to a store's database, past the store.
pub enum Raw {
    /// SQLite.
    Sqlite(sqlx::SqliteConnection),
    /// PostgreSQL.
    Postgres(sqlx::PgConnection),
}

impl Raw {
    async fn exec(&mut self, sql: &str) {
        match self {
            Raw::Sqlite(c) => sqlx::query(sql).execute(c).await.map(drop),
            Raw::Postgres(c) => sqlx::query(sql).execute(c).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn texts(&mut self, sql: &str) -> (String, String, String) {
        match self {
            Raw::Sqlite(c) => sqlx::query_as(sql).fetch_one(c).await,
            Raw::Postgres(c) => sqlx::query_as(sql).fetch_one(c).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn close(self) {
        match self {
            Raw::Sqlite(c) => c.close().await,
            Raw::Postgres(c) => c.close().await,
        }
        .unwrap();
    }
}

/// `raw` is a connection to `s`'s database.
pub async fn stored_text_is_unchanged_and_unknown_text_is_damaged(
    s: &impl StateStore,
    mut raw: Raw,
) {
    s.create_run(&run("new", 1, None)).await.unwrap();
    let mut n = node(0, NodeState::Memoized);
    n.kind = NodeKind::ForEach;
    s.commit(&[Batch {
        run: "new".into(),
        nodes: vec![n],
        update: Some(RunUpdate {
            status: RunStatus::Cancelled,
            data: "{}".into(),
            finished_ms: Some(3),
        }),
        ..Default::default()
    }])
    .await
    .unwrap();
    let texts = raw
        .texts(
            "SELECT r.status, n.kind, n.state FROM runs r JOIN nodes n ON n.run_id = r.id \
             WHERE r.id = 'new'",
        )
        .await;
    assert_eq!(
        texts,
        ("cancelled".into(), "for-each".into(), "memoized".into())
    );

    // Rows as an older kaon wrote them, in its own statements.
    raw.exec(
        "INSERT INTO runs (id, workflow, path, digest, params, options, status, data, created_ms) \
         VALUES ('old', 'wf', 'wf.toml', 'd', '{}', '{}', 'failed', '{}', 2)",
    )
    .await;
    raw.exec(
        "INSERT INTO nodes (run_id, id, scope, key, name, kind, state, attempt, data) \
         VALUES ('old', 0, 0, 'child', 'child', 'subworkflow', 'skipped', 0, '{}'), \
                ('old', 1, 0, 'end', 'end', 'marker', 'succeeded', 0, '{}')",
    )
    .await;
    assert_eq!(
        s.run("old").await.unwrap().unwrap().status,
        RunStatus::Failed
    );
    let old: Vec<(NodeKind, NodeState)> = s
        .nodes("old")
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.kind, n.state))
        .collect();
    assert_eq!(
        old,
        [
            (NodeKind::SubWorkflow, NodeState::Skipped),
            (NodeKind::Marker, NodeState::Succeeded)
        ]
    );

    // Texts a newer kaon (or a damaged file) could hold.
    raw.exec("UPDATE nodes SET state = 'paused' WHERE run_id = 'old' AND id = 1")
        .await;
    for err in [
        s.nodes("old").await.unwrap_err(),
        s.nodes_named("old", "end").await.unwrap_err(),
    ] {
        assert!(
            matches!(&err, StoreError::Damaged { run, what, value }
                if run == "old" && what == "state of node 1 (end)" && value == "paused"),
            "{err:?}"
        );
        assert!(err.to_string().contains("`paused`"), "{err}");
    }
    raw.exec("UPDATE nodes SET kind = 'loop' WHERE run_id = 'old' AND id = 0")
        .await;
    let err = s.nodes_named("old", "child").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Damaged { what, value, .. }
            if what == "kind of node 0 (child)" && value == "loop"),
        "{err:?}"
    );
    raw.exec("UPDATE runs SET status = 'paused' WHERE id = 'old'")
        .await;
    let err = s.run("old").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Damaged { run, what, value }
            if run == "old" && what == "status" && value == "paused"),
        "{err:?}"
    );
    assert!(matches!(
        s.list_runs(&RunFilter::default()).await,
        Err(StoreError::Damaged { .. })
    ));
    // Runs whose rows are known are still read.
    assert_eq!(
        s.run("new").await.unwrap().unwrap().status,
        RunStatus::Cancelled
    );
    raw.close().await;
}
