//! The [`StateStore`] half of the contract: runs, commits, claims and
//! fencing, the inbox.

use kaon_store::row::{NodeKind, NodeState, RunStatus};
use kaon_store::{
    Batch, MessageBody, NodeRow, RunFilter, RunUpdate, ScopeRow, ServiceStore, StateStore,
    StoreError, TickRow,
};

use crate::fixtures::{node, run, scope};

pub async fn creates_and_reads_runs(s: &impl StateStore) {
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

pub async fn commit_is_atomic_and_replaces_nodes(s: &impl StateStore) {
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

pub async fn many_rows_in_one_commit(s: &impl StateStore) {
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
pub async fn typed_columns_round_trip(s: &impl StateStore) {
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

pub async fn claim_is_compare_and_set(s: &impl StateStore) {
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

pub async fn commit_is_fenced_by_owner(s: &impl StateStore) {
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

pub async fn inbox_delivers_until_consumed(s: &impl StateStore) {
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

/// In one commit, a later row for the same node or run wins, whichever
/// batch it comes in, and batches for other runs go in beside them.
pub async fn later_rows_of_a_commit_win(s: &impl StateStore) {
    s.create_run(&run("w1", 1, None)).await.unwrap();
    s.create_run(&run("w2", 2, None)).await.unwrap();
    let update = |status, data: &str, finished_ms| {
        Some(RunUpdate {
            status,
            data: data.into(),
            finished_ms,
        })
    };
    let mut done = node(0, NodeState::Succeeded);
    done.attempt = 2;
    s.commit(&[
        Batch {
            run: "w1".into(),
            update: update(RunStatus::Running, r#"{"n":1}"#, None),
            nodes: vec![node(0, NodeState::Ready), node(1, NodeState::Ready)],
            ..Default::default()
        },
        Batch {
            run: "w2".into(),
            nodes: vec![node(0, NodeState::Ready)],
            ..Default::default()
        },
        Batch {
            run: "w1".into(),
            update: update(RunStatus::Succeeded, r#"{"n":2}"#, Some(5)),
            nodes: vec![node(1, NodeState::Running), done.clone()],
            ..Default::default()
        },
    ])
    .await
    .unwrap();
    assert_eq!(
        s.nodes("w1").await.unwrap(),
        [done, node(1, NodeState::Running)]
    );
    assert_eq!(s.nodes("w2").await.unwrap(), [node(0, NodeState::Ready)]);
    let w1 = s.run("w1").await.unwrap().unwrap();
    assert_eq!(
        (w1.status, w1.data.as_str(), w1.finished_ms),
        (RunStatus::Succeeded, r#"{"n":2}"#, Some(5))
    );
}

/// Claims of one free run made at the same time: one wins, the others are
/// told who holds it.
pub async fn concurrent_claims_have_one_winner(s: &impl StateStore) {
    s.create_run(&run("race", 1, None)).await.unwrap();
    let results = tokio::join!(
        s.claim("race", None, Some("p0"), 10),
        s.claim("race", None, Some("p1"), 10),
        s.claim("race", None, Some("p2"), 10),
        s.claim("race", None, Some("p3"), 10),
        s.claim("race", None, Some("p4"), 10),
        s.claim("race", None, Some("p5"), 10),
    );
    let results = [
        results.0, results.1, results.2, results.3, results.4, results.5,
    ];
    let winners: Vec<String> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| format!("p{i}"))
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results {
        match r {
            Ok(()) => {}
            Err(StoreError::Held { owner, .. }) => assert_eq!(owner, winners[0]),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        s.run("race").await.unwrap().unwrap().owner,
        Some(winners[0].clone())
    );
}

/// Two stores on one database (two processes' worth of connections): each
/// sees what the other committed, and both can write at once.
pub async fn two_stores_share_one_database(a: &impl StateStore, b: &impl StateStore) {
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

pub async fn lists_one_workflow_a_page_at_a_time(s: &impl StateStore) {
    // Five runs of `wf` and two of `other`, two of them created in the same
    // millisecond (a page boundary between them must not lose one).
    for (id, wf, created) in [
        ("r1", "wf", 10),
        ("o1", "other", 11),
        ("r2", "wf", 12),
        ("r3", "wf", 12),
        ("o2", "other", 13),
        ("r4", "wf", 14),
        ("r5", "wf", 15),
    ] {
        let mut r = run(id, created, None);
        r.workflow = wf.into();
        s.create_run(&r).await.unwrap();
    }
    let page = |after: Option<String>| async move {
        s.list_runs(&RunFilter {
            workflow: Some("wf".into()),
            limit: Some(2),
            after,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect::<Vec<_>>()
    };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let p = page(after.clone()).await;
        if p.is_empty() {
            break;
        }
        after = p.last().cloned();
        seen.extend(p);
    }
    assert_eq!(seen, ["r5", "r4", "r3", "r2", "r1"]);
    // A cursor that names no run gives nothing rather than everything.
    assert!(page(Some("nosuch".into())).await.is_empty());
}

/// `since` (inclusive) and `until` (exclusive) bound the creation time,
/// alone, together, with a workflow and with paging; `schedule` keeps the
/// runs its ticks started (a tick that started no run, a run of the same
/// workflow started by hand and another schedule's runs are left out).
pub async fn lists_runs_of_a_window_and_a_schedule(s: &(impl StateStore + ServiceStore)) {
    for (id, wf, created) in [
        ("r10", "wf", 10),
        ("r20", "wf", 20),
        ("o20", "other", 20),
        ("r30", "wf", 30),
        ("r31", "wf", 30),
        ("r40", "wf", 40),
    ] {
        let mut r = run(id, created, None);
        r.workflow = wf.into();
        s.create_run(&r).await.unwrap();
    }
    // A child run inside the window: listed only with `children`.
    let mut child = run("c25", 25, Some(("r20", 1)));
    child.workflow = "wf".into();
    s.create_run(&child).await.unwrap();
    let ids = |f: RunFilter| async move {
        s.list_runs(&f)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    let window = |since: Option<i64>, until: Option<i64>| RunFilter {
        since,
        until,
        ..Default::default()
    };
    assert_eq!(
        ids(window(Some(20), Some(40))).await,
        ["r31", "r30", "r20", "o20"]
    );
    assert_eq!(ids(window(Some(30), None)).await, ["r40", "r31", "r30"]);
    assert_eq!(ids(window(None, Some(20))).await, ["r10"]);
    assert!(ids(window(Some(20), Some(20))).await.is_empty());
    assert_eq!(
        ids(RunFilter {
            children: true,
            ..window(Some(21), Some(30))
        })
        .await,
        ["c25"]
    );
    assert_eq!(
        ids(RunFilter {
            workflow: Some("wf".into()),
            ..window(Some(20), Some(31))
        })
        .await,
        ["r31", "r30", "r20"]
    );
    // Paging inside a window: the cursor's millisecond is not lost.
    assert_eq!(
        ids(RunFilter {
            workflow: Some("wf".into()),
            after: Some("r31".into()),
            limit: Some(1),
            ..window(Some(20), None)
        })
        .await,
        ["r30"]
    );
    assert_eq!(
        ids(RunFilter {
            after: Some("r30".into()),
            ..window(Some(15), None)
        })
        .await,
        ["r20", "o20"]
    );

    // Ticks: wf:daily started r10, r30 and r40 and skipped one;
    // wf:hourly started r20; r31 was started by hand.
    let tick = |schedule: &str, key: &str, due: i64, run: Option<&str>| TickRow {
        schedule: schedule.into(),
        tick: key.into(),
        due_ms: due,
        run: run.map(str::to_string),
        outcome: if run.is_some() {
            "started"
        } else {
            "skipped: busy"
        }
        .into(),
        params: "{}".into(),
        created_ms: due,
    };
    for t in [
        tick("wf:daily", "t1", 10, Some("r10")),
        tick("wf:daily", "t2", 15, None),
        tick("wf:daily", "t3", 30, Some("r30")),
        tick("wf:daily", "t4", 40, Some("r40")),
        tick("wf:hourly", "h1", 20, Some("r20")),
        tick("wf:daily2", "x", 20, Some("o20")),
    ] {
        assert!(s.record_tick(&t).await.unwrap());
    }
    let of = |schedule: &str| RunFilter {
        schedule: Some(schedule.into()),
        ..Default::default()
    };
    assert_eq!(ids(of("wf:daily")).await, ["r40", "r30", "r10"]);
    assert_eq!(ids(of("wf:hourly")).await, ["r20"]);
    assert!(ids(of("wf:nosuch")).await.is_empty());
    // With the other conditions.
    assert_eq!(
        ids(RunFilter {
            limit: Some(1),
            after: Some("r40".into()),
            ..of("wf:daily")
        })
        .await,
        ["r30"]
    );
    assert_eq!(
        ids(RunFilter {
            since: Some(11),
            until: Some(40),
            ..of("wf:daily")
        })
        .await,
        ["r30"]
    );
    assert!(
        ids(RunFilter {
            workflow: Some("other".into()),
            ..of("wf:daily")
        })
        .await
        .is_empty()
    );
    assert!(
        ids(RunFilter {
            status: Some(RunStatus::Succeeded),
            ..of("wf:daily")
        })
        .await
        .is_empty()
    );
}

/// A page of one workflow's runs among many, of a time window and of a
/// schedule's runs comes from an index: with 10,000 runs of the workflow
/// among 20,000 (and a tick for each of 5,000 of them), each page takes
/// well under 100 ms on every backend (the times are printed; the bound
/// asserted is loose, for slow machines).
pub async fn lists_a_page_of_many_runs_quickly(s: &(impl StateStore + ServiceStore)) {
    const RUNS: i64 = 20_000;
    let mut created = 0;
    while created < RUNS {
        // Created in chunks: the commits are not what is measured.
        let chunk: Vec<_> = (created..(created + 500).min(RUNS))
            .map(|i| {
                let mut r = run(&format!("r{i:06}"), 1_000 + i, None);
                r.workflow = if i % 2 == 0 { "wf" } else { "other" }.into();
                r
            })
            .collect();
        for r in &chunk {
            s.create_run(r).await.unwrap();
        }
        created += 500;
    }
    for i in (0..RUNS).step_by(4) {
        s.record_tick(&TickRow {
            schedule: "wf:daily".into(),
            tick: format!("t{i:06}"),
            due_ms: 1_000 + i,
            run: Some(format!("r{i:06}")),
            outcome: "started".into(),
            params: "{}".into(),
            created_ms: 1_000 + i,
        })
        .await
        .unwrap();
    }
    let cases = [
        (
            "one workflow",
            RunFilter {
                workflow: Some("wf".into()),
                limit: Some(50),
                ..Default::default()
            },
        ),
        (
            "one workflow, after a cursor",
            RunFilter {
                workflow: Some("wf".into()),
                after: Some("r010000".into()),
                limit: Some(50),
                ..Default::default()
            },
        ),
        (
            "every workflow",
            RunFilter {
                limit: Some(50),
                ..Default::default()
            },
        ),
        (
            "a window",
            RunFilter {
                since: Some(5_000),
                until: Some(6_000),
                limit: Some(50),
                ..Default::default()
            },
        ),
        (
            "one workflow in a window",
            RunFilter {
                workflow: Some("wf".into()),
                since: Some(5_000),
                until: Some(6_000),
                limit: Some(50),
                ..Default::default()
            },
        ),
        (
            "one schedule",
            RunFilter {
                schedule: Some("wf:daily".into()),
                limit: Some(50),
                ..Default::default()
            },
        ),
    ];
    for (what, f) in cases {
        // Once to warm the statement cache, then timed.
        s.list_runs(&f).await.unwrap();
        let start = std::time::Instant::now();
        let page = s.list_runs(&f).await.unwrap();
        let took = start.elapsed();
        eprintln!("list a page of runs, {what}: {took:?}");
        assert_eq!(page.len(), 50, "{what}");
        assert!(
            page.windows(2).all(|w| w[0].created_ms > w[1].created_ms),
            "{what}"
        );
        assert!(
            took < std::time::Duration::from_millis(250),
            "{what}: {took:?}"
        );
    }
}
