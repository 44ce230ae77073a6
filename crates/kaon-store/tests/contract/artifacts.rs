//! The [`ArtifactIndex`] half of the contract: artifact rows, prefixes,
//! lineage, memo entries and keys.

use kaon_store::{
    ArtifactFilter, ArtifactIndex, Batch, Direction, KeyRow, MemoRow, OutputFilter, StateStore,
    StoreError,
};

use crate::fixtures::{art, read, run};

/// A chain a1 -> step1 -> a2 -> step2 -> a3, plus a diamond: step2 also
/// reads a1, and a standalone artifact with no run.
pub async fn artifacts_lineage_and_memo<S: StateStore + ArtifactIndex>(s: &S) {
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

/// An artifact is found by its id, by a unique prefix of its id, or of its
/// digest (with or without `blake3:`); a prefix of several is ambiguous,
/// and a prefix is a prefix (no wildcards). Of two rows with one id, the
/// first recorded stays.
pub async fn artifact_prefixes_and_first_rows<S: StateStore + ArtifactIndex>(s: &S) {
    s.create_run(&run("r", 1, None)).await.unwrap();
    let mut second = art("a12", "r", 0, "second", 3);
    second.size = 99;
    s.commit(&[Batch {
        run: "r".into(),
        artifacts: vec![
            art("a10", "r", 0, "ten", 1),
            art("a11", "r", 0, "eleven", 2),
            art("a12", "r", 0, "first", 3),
            second.clone(),
        ],
        ..Default::default()
    }])
    .await
    .unwrap();
    s.commit(&[Batch {
        artifacts: vec![second],
        ..Default::default()
    }])
    .await
    .unwrap();
    let found = |id: &str| {
        let id = id.to_string();
        async move { s.artifact(&id).await.map(|a| a.map(|a| (a.id, a.name))) }
    };
    let some = |id: &str, name: &str| Some((id.to_string(), name.to_string()));
    assert_eq!(found("a12").await.unwrap(), some("a12", "first"));
    assert_eq!(s.artifact("a12").await.unwrap().unwrap().size, 10);
    assert_eq!(found("a10").await.unwrap(), some("a10", "ten"));
    match found("a1").await {
        Err(StoreError::Ambiguous { prefix, candidates }) => {
            assert_eq!(prefix, "a1");
            let mut candidates = candidates;
            candidates.sort();
            assert_eq!(candidates, ["a10", "a11", "a12"]);
        }
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    // Digests are `blake3:` and 62 zeros and the id's digits.
    let digest = |id: &str| format!("{:0>64}", id.trim_start_matches('a'));
    assert_eq!(found(&digest("a11")).await.unwrap(), some("a11", "eleven"));
    assert_eq!(
        found(&format!("blake3:{}", digest("a10"))).await.unwrap(),
        some("a10", "ten")
    );
    assert!(matches!(
        found(&digest("a11")[..63]).await,
        Err(StoreError::Ambiguous { .. })
    ));
    for none in ["a2", "a1_", "a1%", "b", "blake3:1"] {
        assert_eq!(found(none).await.unwrap(), None, "{none}");
    }
}

/// `recent_outputs`: the latest runs of the workflow are chosen first, then
/// their artifacts of that name (of that step, when given): newest run
/// first; a run without one gives nothing; a child run, another workflow's
/// run and another name are left out; a memoized step's row counts as its
/// run's.
pub async fn outputs_of_a_workflows_latest_runs<S: StateStore + ArtifactIndex>(s: &S) {
    for (id, wf, created, parent) in [
        ("r1", "wf", 10, None),
        ("r2", "wf", 20, None),
        ("r3", "wf", 30, None),
        ("r4", "wf", 40, None),
        ("o1", "other", 35, None),
        ("c1", "wf", 36, Some(("r3", 9))),
    ] {
        let mut r = run(id, created, parent);
        r.workflow = wf.into();
        s.create_run(&r).await.unwrap();
    }
    let mut memoized = art("a22", "r2", 2, "metrics", 21);
    memoized.memoized_from = Some("a11".into());
    let mut other_step = art("a23", "r2", 3, "metrics", 22);
    other_step.step_key = Some("step3[reg=eu]".into());
    let batch = Batch {
        artifacts: vec![
            art("a11", "r1", 2, "metrics", 11),
            memoized,
            other_step,
            art("a31", "r3", 2, "model", 31),
            art("a41", "r4", 2, "metrics", 41),
            art("a51", "o1", 2, "metrics", 36),
            art("a61", "c1", 2, "metrics", 37),
        ],
        ..Default::default()
    };
    s.commit(&[batch]).await.unwrap();
    let got = |runs: u32, step: Option<&str>| {
        let f = OutputFilter {
            workflow: "wf".into(),
            name: "metrics".into(),
            step: step.map(str::to_string),
            runs,
        };
        async move {
            s.recent_outputs(&f)
                .await
                .unwrap()
                .into_iter()
                .map(|o| {
                    assert_eq!(o.artifact.run.as_deref(), Some(o.run.as_str()));
                    (o.run, o.run_created_ms, o.artifact.id)
                })
                .collect::<Vec<_>>()
        }
    };
    let t = |r: &str, c: i64, a: &str| (r.to_string(), c, a.to_string());
    assert_eq!(
        got(10, None).await,
        [
            t("r4", 40, "a41"),
            t("r2", 20, "a23"),
            t("r2", 20, "a22"),
            t("r1", 10, "a11"),
        ]
    );
    // The latest two runs are r4 and r3; r3 has no metrics.
    assert_eq!(got(2, None).await, [t("r4", 40, "a41")]);
    assert_eq!(
        got(10, Some("step2")).await,
        [t("r4", 40, "a41"), t("r2", 20, "a22"), t("r1", 10, "a11")]
    );
    assert_eq!(got(10, Some("step3[reg=eu]")).await, [t("r2", 20, "a23")]);
    let memo = s
        .recent_outputs(&OutputFilter {
            workflow: "wf".into(),
            name: "metrics".into(),
            step: Some("step2".into()),
            runs: 3,
        })
        .await
        .unwrap();
    assert_eq!(memo[1].artifact.memoized_from.as_deref(), Some("a11"));
    assert!(
        s.recent_outputs(&OutputFilter {
            workflow: "nosuch".into(),
            name: "metrics".into(),
            step: None,
            runs: 10,
        })
        .await
        .unwrap()
        .is_empty()
    );
}
