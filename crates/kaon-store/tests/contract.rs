//! The StateStore contract, run against every backend.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

use kaon_store::row::{NodeKind, NodeState, RunStatus};
use kaon_store::{
    ArtifactFilter, ArtifactIndex, ArtifactRow, Batch, Direction, KeyRow, MemoRow, MemoryStore,
    MessageBody, NodeRow, ReadRow, RunFilter, RunRow, RunUpdate, ScopeRow, SqliteStore, StateStore,
    StoreError,
};

fn run(id: &str, created: i64, parent: Option<(&str, u32)>) -> RunRow {
    RunRow {
        id: id.into(),
        workflow: "wf".into(),
        path: "wf.toml".into(),
        digest: "d".into(),
        params: "{}".into(),
        options: "{}".into(),
        parent: parent.map(|(p, n)| (p.to_string(), n)),
        status: RunStatus::Running,
        data: "{}".into(),
        created_ms: created,
        finished_ms: None,
        owner: None,
        heartbeat_ms: None,
    }
}

fn node(id: u32, state: NodeState) -> NodeRow {
    NodeRow {
        id,
        scope: 0,
        key: format!("s{id}[x=\"q\"]"),
        name: format!("s{id}"),
        kind: NodeKind::Command,
        state,
        attempt: 1,
        started_ms: Some(5),
        finished_ms: None,
        data: format!("{{\"state\":\"{state}\",\"quote\":\"a\\\"b\"}}"),
    }
}

fn scope(id: u32) -> ScopeRow {
    ScopeRow {
        id,
        tmpl: 0,
        parent: None,
        index: 0,
        vars: r#"[["reg","US"]]"#.into(),
    }
}

async fn creates_and_reads_runs(s: &impl StateStore) {
    s.create_run(&run("a", 1, None)).await.unwrap();
    s.create_run(&run("b", 2, None)).await.unwrap();
    s.create_run(&run("a.1-1", 3, Some(("a", 1))))
        .await
        .unwrap();
    let err = s.create_run(&run("a", 9, None)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::RunExists(ref id) if id == "a"),
        "{err}"
    );
    assert_eq!(
        s.run("a").await.unwrap().unwrap().created_ms,
        1,
        "a duplicate create must not overwrite"
    );
    assert_eq!(s.run("zz").await.unwrap(), None);
    let ids: Vec<String> = s
        .list_runs(&RunFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["b", "a"], "newest first, children hidden");
    let all = s
        .list_runs(&RunFilter {
            children: true,
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, "a.1-1");
    let kids = s.children("a").await.unwrap();
    assert_eq!(kids.len(), 1);
    assert_eq!(kids[0].parent, Some(("a".to_string(), 1)));
}

async fn commit_is_atomic_and_replaces_nodes(s: &impl StateStore) {
    s.create_run(&run("r", 1, None)).await.unwrap();
    let b1 = Batch {
        run: "r".into(),
        update: None,
        scopes: vec![scope(0)],
        nodes: vec![node(0, NodeState::Ready), node(1, NodeState::Pending)],
        consumed: vec![],
        ..Default::default()
    };
    s.commit(&[b1]).await.unwrap();
    let mut n0 = node(0, NodeState::Succeeded);
    n0.finished_ms = Some(7);
    let b2 = Batch {
        run: "r".into(),
        update: Some(RunUpdate {
            status: RunStatus::Succeeded,
            data: r#"{"outputs":{}}"#.into(),
            finished_ms: Some(8),
        }),
        scopes: vec![],
        nodes: vec![n0.clone()],
        consumed: vec![],
        ..Default::default()
    };
    s.commit(&[b2]).await.unwrap();
    let nodes = s.nodes("r").await.unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0], n0, "the latest row wins, byte for byte");
    assert_eq!(nodes[1], node(1, NodeState::Pending));
    assert_eq!(s.scopes("r").await.unwrap(), vec![scope(0)]);
    let r = s.run("r").await.unwrap().unwrap();
    assert_eq!((r.status, r.finished_ms), (RunStatus::Succeeded, Some(8)));

    // A batch that cannot apply (a scope stored twice) leaves nothing behind,
    // not even the other batch of the same commit.
    s.create_run(&run("r2", 2, None)).await.unwrap();
    let good = Batch {
        run: "r2".into(),
        nodes: vec![node(5, NodeState::Ready)],
        ..Default::default()
    };
    let bad = Batch {
        run: "r".into(),
        scopes: vec![scope(0)],
        nodes: vec![node(0, NodeState::Failed)],
        ..Default::default()
    };
    let err = s.commit(&[good, bad]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::ScopeExists { ref run, scope: 0 } if run == "r"),
        "{err}"
    );
    assert!(
        s.nodes("r2").await.unwrap().is_empty(),
        "a failed commit must not leave part of itself"
    );
    assert_eq!(s.nodes("r").await.unwrap()[0], n0);

    let missing = Batch {
        run: "nope".into(),
        update: Some(RunUpdate {
            status: RunStatus::Failed,
            data: "{}".into(),
            finished_ms: None,
        }),
        ..Default::default()
    };
    assert!(s.commit(&[missing]).await.is_err());
}

async fn many_rows_in_one_commit(s: &impl StateStore) {
    s.create_run(&run("big", 1, None)).await.unwrap();
    let nodes: Vec<NodeRow> = (0..20_000).map(|i| node(i, NodeState::Succeeded)).collect();
    let scopes: Vec<ScopeRow> = (0..5_000).map(scope).collect();
    s.commit(&[Batch {
        run: "big".into(),
        scopes,
        nodes,
        ..Default::default()
    }])
    .await
    .unwrap();
    assert_eq!(s.nodes("big").await.unwrap().len(), 20_000);
    assert_eq!(s.scopes("big").await.unwrap().len(), 5_000);
    let named = s.nodes_named("big", "s42").await.unwrap();
    assert_eq!(named.len(), 1);
    let by_key = s.nodes_named("big", "s42[x=\"q\"]").await.unwrap();
    assert_eq!(by_key, named);
}

/// Every status, state and kind is stored and read back as itself, and
/// runs are listed by status.
async fn typed_columns_round_trip(s: &impl StateStore) {
    s.create_run(&run("t", 1, None)).await.unwrap();
    s.create_run(&run("u", 2, None)).await.unwrap();
    let nodes: Vec<NodeRow> = NodeState::ALL
        .iter()
        .enumerate()
        .map(|(i, state)| {
            let mut n = node(i as u32, *state);
            n.kind = NodeKind::ALL[i % NodeKind::ALL.len()];
            n
        })
        .chain(NodeKind::ALL.iter().enumerate().map(|(i, kind)| {
            let mut n = node(100 + i as u32, NodeState::Running);
            n.kind = *kind;
            n
        }))
        .collect();
    s.commit(&[Batch {
        run: "t".into(),
        nodes: nodes.clone(),
        ..Default::default()
    }])
    .await
    .unwrap();
    assert_eq!(s.nodes("t").await.unwrap(), nodes);
    let named = s.nodes_named("t", "s3").await.unwrap();
    assert_eq!(named, [nodes[3].clone()]);

    let listed = |status| async move {
        s.list_runs(&RunFilter {
            status: Some(status),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect::<Vec<_>>()
    };
    for status in RunStatus::ALL {
        s.commit(&[Batch {
            run: "t".into(),
            update: Some(RunUpdate {
                status: *status,
                data: "{}".into(),
                finished_ms: status.is_terminal().then_some(9),
            }),
            ..Default::default()
        }])
        .await
        .unwrap();
        assert_eq!(s.run("t").await.unwrap().unwrap().status, *status);
        let want: &[&str] = match status {
            RunStatus::Running => &["u", "t"],
            _ => &["t"],
        };
        assert_eq!(listed(*status).await, want, "{status}");
    }
    assert_eq!(listed(RunStatus::Running).await, ["u"]);
}

async fn claim_is_compare_and_set(s: &impl StateStore) {
    s.create_run(&run("c", 1, None)).await.unwrap();
    s.claim("c", None, Some("p1"), 10).await.unwrap();
    let err = s.claim("c", None, Some("p2"), 11).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Held { ref owner, .. } if owner == "p1"),
        "{err}"
    );
    assert!(s.heartbeat("c", "p1", 12).await.unwrap());
    assert!(!s.heartbeat("c", "p2", 13).await.unwrap());
    assert_eq!(s.run("c").await.unwrap().unwrap().heartbeat_ms, Some(12));
    s.claim("c", Some("p1"), Some("p2"), 14).await.unwrap();
    s.claim("c", Some("p2"), None, 15).await.unwrap();
    assert_eq!(s.run("c").await.unwrap().unwrap().owner, None);
    assert!(matches!(
        s.claim("nope", None, Some("p"), 1).await,
        Err(StoreError::NoSuchRun(_))
    ));
}

async fn commit_is_fenced_by_owner(s: &impl StateStore) {
    s.create_run(&run("f", 1, None)).await.unwrap();
    s.claim("f", None, Some("p1"), 10).await.unwrap();
    let batch = |owner: &str, n: u32| Batch {
        run: "f".into(),
        nodes: vec![node(n, NodeState::Ready)],
        owner: Some(owner.into()),
        ..Default::default()
    };
    s.commit(&[batch("p1", 0)]).await.unwrap();
    // p2 takes over p1's lease; p1 has not heartbeaten since and still
    // thinks it drives the run.
    s.claim("f", Some("p1"), Some("p2"), 11).await.unwrap();
    s.create_run(&run("g", 2, None)).await.unwrap();
    let other = Batch {
        run: "g".into(),
        nodes: vec![node(9, NodeState::Ready)],
        ..Default::default()
    };
    let err = s
        .commit(&[other.clone(), batch("p1", 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Held { ref run, ref owner } if run == "f" && owner == "p2"),
        "{err}"
    );
    assert_eq!(
        s.nodes("f").await.unwrap(),
        vec![node(0, NodeState::Ready)],
        "a fenced commit applies nothing"
    );
    assert!(s.nodes("g").await.unwrap().is_empty());
    s.commit(&[other, batch("p2", 1)]).await.unwrap();
    assert_eq!(s.nodes("f").await.unwrap().len(), 2);
    // Let go: nobody's batch is fenced in, an unfenced one still applies.
    s.claim("f", Some("p2"), None, 12).await.unwrap();
    let err = s.commit(&[batch("p2", 2)]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Held { ref owner, .. } if owner == "nobody"),
        "{err}"
    );
    s.commit(&[Batch {
        run: "f".into(),
        nodes: vec![node(2, NodeState::Ready)],
        ..Default::default()
    }])
    .await
    .unwrap();
    assert!(matches!(
        s.commit(&[Batch {
            run: "nope".into(),
            owner: Some("p1".into()),
            ..Default::default()
        }])
        .await,
        Err(StoreError::NoSuchRun(_))
    ));
}

async fn inbox_delivers_until_consumed(s: &impl StateStore) {
    s.create_run(&run("i", 1, None)).await.unwrap();
    let a = s
        .post(
            "i",
            &MessageBody::Signal {
                name: "go".into(),
                value: "{\"n\":1}".into(),
            },
            5,
        )
        .await
        .unwrap();
    let b = s
        .post(
            "i",
            &MessageBody::Cancel {
                reason: "user".into(),
            },
            6,
        )
        .await
        .unwrap();
    assert!(b > a);
    let msgs = s.inbox("i").await.unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        msgs[0].body,
        MessageBody::Signal {
            name: "go".into(),
            value: "{\"n\":1}".into()
        }
    );
    assert_eq!(
        s.inbox("i").await.unwrap().len(),
        2,
        "reading does not consume"
    );
    s.commit(&[Batch {
        run: "i".into(),
        consumed: vec![a],
        ..Default::default()
    }])
    .await
    .unwrap();
    let left = s.inbox("i").await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, b);
    assert!(matches!(
        s.post(
            "nope",
            &MessageBody::Cancel {
                reason: String::new()
            },
            1
        )
        .await,
        Err(StoreError::NoSuchRun(_))
    ));
}

fn art(id: &str, run: &str, node: u32, name: &str, t: i64) -> ArtifactRow {
    ArtifactRow {
        id: id.into(),
        digest: format!("blake3:{:0>64}", id.trim_start_matches('a')),
        kind: "file".into(),
        size: 10,
        files: 1,
        media_type: "text/csv".into(),
        name: name.into(),
        run: Some(run.into()),
        node: Some(node),
        step: Some(format!("step{node}")),
        step_key: Some(format!("step{node}")),
        attempt: Some(1),
        path: None,
        created_ms: t,
        tags: "{}".into(),
        memoized_from: None,
    }
}

fn read(run: &str, node: u32, artifact: &str) -> ReadRow {
    ReadRow {
        run: run.into(),
        node,
        attempt: 1,
        artifact: artifact.into(),
    }
}

/// A chain a1 -> step1 -> a2 -> step2 -> a3, plus a diamond: step2 also
/// reads a1, and a standalone artifact with no run.
async fn artifacts_lineage_and_memo<S: StateStore + ArtifactIndex>(s: &S) {
    s.create_run(&run("r", 1, None)).await.unwrap();
    let batch = Batch {
        run: "r".into(),
        artifacts: vec![
            art("a1", "r", 0, "users", 1),
            art("a2", "r", 1, "prepared", 2),
            art("a3", "r", 2, "model", 3),
        ],
        reads: vec![read("r", 1, "a1"), read("r", 2, "a2"), read("r", 2, "a1")],
        memo: vec![MemoRow {
            key: "blake3:k".into(),
            run: "r".into(),
            node: 2,
            attempt: 1,
            step: "step2".into(),
            step_key: "step2".into(),
            outputs: r#"{"auc":0.7}"#.into(),
            artifacts: r#"{"model":"a3"}"#.into(),
            created_ms: 3,
        }],
        keys: vec![KeyRow {
            run: "r".into(),
            node: 2,
            attempt: 1,
            step: "step2".into(),
            step_key: "step2".into(),
            key: "blake3:k".into(),
            parts: "{}".into(),
            outcome: "ran".into(),
            created_ms: 3,
        }],
        ..Default::default()
    };
    s.commit(std::slice::from_ref(&batch)).await.unwrap();
    // Replaying the same commit changes nothing.
    s.commit(&[batch]).await.unwrap();
    // A standalone put: no run.
    let mut lone = art("a9", "", 0, "notes", 9);
    lone.run = None;
    lone.node = None;
    s.commit(&[Batch {
        artifacts: vec![lone],
        ..Default::default()
    }])
    .await
    .unwrap();

    assert_eq!(s.artifact("a2").await.unwrap().unwrap().name, "prepared");
    assert_eq!(s.artifact("a9").await.unwrap().unwrap().run, None);
    assert!(s.artifact("zz").await.unwrap().is_none());
    // `a` is a prefix of every id: ambiguous, and said so.
    match s.artifact("a").await {
        Err(e @ StoreError::Ambiguous { .. }) => {
            let text = e.to_string();
            assert!(text.contains("a9") && text.contains("give more"), "{text}");
        }
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    let all = s.artifacts(&ArtifactFilter::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["a9", "a3", "a2", "a1"]
    );
    let by_step = s
        .artifacts(&ArtifactFilter {
            step: Some("step1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_step.len(), 1);
    assert_eq!(s.artifacts_of("r", 2).await.unwrap()[0].id, "a3");

    let up = s.lineage("a3", Direction::Upstream, 10).await.unwrap();
    let edges: Vec<(u32, &str, &str)> = up
        .iter()
        .map(|e| (e.depth, e.from.as_str(), e.to.as_str()))
        .collect();
    assert_eq!(edges, [(1, "a1", "a3"), (1, "a2", "a3"), (2, "a1", "a2")]);
    let up1 = s.lineage("a3", Direction::Upstream, 1).await.unwrap();
    assert_eq!(up1.len(), 2, "depth limits the walk");
    let down = s.lineage("a1", Direction::Downstream, 10).await.unwrap();
    let edges: Vec<(u32, &str, &str)> = down
        .iter()
        .map(|e| (e.depth, e.from.as_str(), e.to.as_str()))
        .collect();
    assert_eq!(edges, [(1, "a1", "a2"), (1, "a1", "a3"), (2, "a2", "a3")]);

    let memo = s.memo("blake3:k").await.unwrap();
    assert_eq!(memo.len(), 1);
    assert_eq!(memo[0].artifacts, r#"{"model":"a3"}"#);
    assert!(s.memo("blake3:other").await.unwrap().is_empty());
    assert_eq!(s.keys("step2", 5).await.unwrap().len(), 1);
    assert_eq!(s.key_of("r", 2).await.unwrap().unwrap().outcome, "ran");
    s.forget_memo("blake3:k", "r", 2).await.unwrap();
    assert!(s.memo("blake3:k").await.unwrap().is_empty());
    let digests = s.digests().await.unwrap();
    assert_eq!(digests.len(), 4);
}

macro_rules! contract {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn creates_and_reads_runs() {
                super::creates_and_reads_runs(&$make).await;
            }
            #[tokio::test]
            async fn commit_is_atomic_and_replaces_nodes() {
                super::commit_is_atomic_and_replaces_nodes(&$make).await;
            }
            #[tokio::test]
            async fn many_rows_in_one_commit() {
                super::many_rows_in_one_commit(&$make).await;
            }
            #[tokio::test]
            async fn typed_columns_round_trip() {
                super::typed_columns_round_trip(&$make).await;
            }
            #[tokio::test]
            async fn claim_is_compare_and_set() {
                super::claim_is_compare_and_set(&$make).await;
            }
            #[tokio::test]
            async fn commit_is_fenced_by_owner() {
                super::commit_is_fenced_by_owner(&$make).await;
            }
            #[tokio::test]
            async fn inbox_delivers_until_consumed() {
                super::inbox_delivers_until_consumed(&$make).await;
            }
            #[tokio::test]
            async fn artifacts_lineage_and_memo() {
                super::artifacts_lineage_and_memo(&$make).await;
            }
        }
    };
}

contract!(memory, MemoryStore::new());
contract!(sqlite_memory, SqliteStore::in_memory().await.unwrap());
contract!(sqlite_file, {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("kaon.db"), kaon_store::Durability::Full)
        .await
        .unwrap();
    std::mem::forget(dir);
    s
});

/// Two processes' worth of connections on one file: a second store sees
/// what the first committed, and both can write (WAL + busy timeout).
#[tokio::test]
async fn two_connections_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kaon.db");
    let a = SqliteStore::open(&path, kaon_store::Durability::Full)
        .await
        .unwrap();
    let b = SqliteStore::open(&path, kaon_store::Durability::Process)
        .await
        .unwrap();
    a.create_run(&run("x", 1, None)).await.unwrap();
    b.post(
        "x",
        &MessageBody::Signal {
            name: "s".into(),
            value: "1".into(),
        },
        2,
    )
    .await
    .unwrap();
    let ba = [Batch {
        run: "x".into(),
        nodes: vec![node(1, NodeState::Ready)],
        ..Default::default()
    }];
    let bb = [Batch {
        run: "x".into(),
        nodes: vec![node(2, NodeState::Ready)],
        ..Default::default()
    }];
    let (r1, r2) = tokio::join!(a.commit(&ba), b.commit(&bb));
    r1.unwrap();
    r2.unwrap();
    assert_eq!(a.inbox("x").await.unwrap().len(), 1);
    assert_eq!(b.nodes("x").await.unwrap().len(), 2);
}

/// Statuses, states and kinds are the text kaon always stored (databases
/// written before they were typed read back), and a text this build does
/// not know is an error naming the run and the value, not a panic.
#[tokio::test]
async fn stored_text_is_unchanged_and_unknown_text_is_damaged() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kaon.db");
    let s = SqliteStore::open(&path, kaon_store::Durability::Full)
        .await
        .unwrap();
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
    let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let texts: (String, String, String) = sqlx::query_as(
        "SELECT r.status, n.kind, n.state FROM runs r JOIN nodes n ON n.run_id = r.id \
         WHERE r.id = 'new'",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    assert_eq!(
        texts,
        ("cancelled".into(), "for-each".into(), "memoized".into())
    );

    // Rows as an older kaon wrote them, in its own statements.
    sqlx::query(
        "INSERT INTO runs (id, workflow, path, digest, params, options, status, data, created_ms) \
         VALUES ('old', 'wf', 'wf.toml', 'd', '{}', '{}', 'failed', '{}', 2)",
    )
    .execute(&mut raw)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO nodes (run_id, id, scope, key, name, kind, state, attempt, data) \
         VALUES ('old', 0, 0, 'child', 'child', 'subworkflow', 'skipped', 0, '{}'), \
                ('old', 1, 0, 'end', 'end', 'marker', 'succeeded', 0, '{}')",
    )
    .execute(&mut raw)
    .await
    .unwrap();
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
    sqlx::query("UPDATE nodes SET state = 'paused' WHERE run_id = 'old' AND id = 1")
        .execute(&mut raw)
        .await
        .unwrap();
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
    sqlx::query("UPDATE nodes SET kind = 'loop' WHERE run_id = 'old' AND id = 0")
        .execute(&mut raw)
        .await
        .unwrap();
    let err = s.nodes_named("old", "child").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Damaged { what, value, .. }
            if what == "kind of node 0 (child)" && value == "loop"),
        "{err:?}"
    );
    sqlx::query("UPDATE runs SET status = 'paused' WHERE id = 'old'")
        .execute(&mut raw)
        .await
        .unwrap();
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
    raw.close().await.unwrap();
}
