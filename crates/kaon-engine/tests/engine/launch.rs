//! Launch orders: artifact inputs, memoized steps, cache settings.

use crate::support::*;

/// Reads of artifact outputs become a launch's inputs; a memoized step
/// counts as done for what follows; `cache = false` and `--no-cache` show
/// in the launch order.
#[test]
fn artifact_inputs_and_memoized_steps() {
    let text = r#"
[workflow]
name = "memo"
flow = "a -> b -> c"

[steps.a]
kind = "command"
command = ["make-data"]
outputs = { data = { type = "file", path = "data.csv" }, n = "int" }

[steps.b]
kind = "command"
command = ["train", "${a.data}", "${a.n}"]
cache_version = "v${a.n}"
outputs = { model = { type = "file", path = "model.bin" } }

[steps.c]
kind = "command"
cache = false
command = ["publish", "${b.model}"]
"#;
    let mut h = H::with(text, Map::new(), RunOptions::default());
    h.auto_launch = false;
    h.start();
    let a = h.take("a");
    let spec = a.memo.clone().unwrap();
    assert!(spec.reuse);
    assert_eq!(spec.kind, "command");
    assert!(a.inputs.is_empty());
    h.feed(Event::StepLaunched {
        node: a.node,
        attempt: 1,
        handle: handle(a.node),
        memo_key: Some("blake3:ka".into()),
    });
    let art = kaon_engine::OutputArtifact {
        name: "data".into(),
        id: "adata".into(),
        digest: "blake3:dd".into(),
        kind: "file".into(),
        size: 3,
        files: 1,
        media_type: "text/csv".into(),
        path: Some("/tmp/wf/data.csv".into()),
        memoized_from: None,
    };
    h.feed(Event::StepExited {
        node: a.node,
        attempt: 1,
        exit: Exit::Code { code: 0 },
        outputs: obj(json!({"data": "/tmp/wf/data.csv", "n": 3})),
        problems: vec![],
        artifacts: vec![art.clone()],
        reads: vec![],
    });
    assert_eq!(h.state("a"), StepState::Succeeded);
    let b = h.take("b");
    // Only the artifact output is an input; the int is in the command line.
    assert_eq!(
        b.inputs,
        [kaon_engine::InputRef {
            source: "a.data".into(),
            artifact: "adata".into(),
            digest: "blake3:dd".into(),
        }]
    );
    assert_eq!(b.memo.as_ref().unwrap().cache_version, "v3");
    h.feed(Event::MemoHit {
        node: b.node,
        attempt: 1,
        key: "blake3:kb".into(),
        from: "old-run/b".into(),
        outputs: obj(json!({"model": "/tmp/wf/model.bin"})),
        artifacts: vec![],
    });
    assert_eq!(
        h.state("b"),
        StepState::Memoized {
            from: "old-run/b".into()
        }
    );
    let c = h.take("c");
    assert!(c.memo.is_none(), "cache = false: no memo key at all");
    assert_eq!(argv(&c)[1], "/tmp/wf/model.bin");
    let saved = h.saved.nodes.values().find(|n| n.key == "b").unwrap();
    assert_eq!(saved.data.info.memo_key.as_deref(), Some("blake3:kb"));
    assert_eq!(saved.data.info.inputs.len(), 1);

    // --no-cache: keys are still computed, never used to skip.
    let mut h = H::with(
        text,
        Map::new(),
        RunOptions {
            no_cache: true,
            ..RunOptions::default()
        },
    );
    h.auto_launch = false;
    h.start();
    assert!(!h.take("a").memo.unwrap().reuse);
}

/// A cached step asks for a memo lookup before it launches; a miss orders
/// the launch of the same attempt under the key found, which the step's
/// record keeps; after a restart, a step caught between the two asks
/// again with `adopt` set (a process may exist: it is found, not reused).
#[test]
fn memo_lookup_comes_before_the_launch() {
    let text = r#"
[workflow]
name = "memo"
flow = "a -> b"

[steps.a]
kind = "command"
command = ["make"]

[steps.b]
kind = "command"
cache = false
command = ["publish"]
"#;
    let mut h = H::new(text);
    h.auto_launch = false;
    let out = h.start();
    let lookups: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            Action::LookupMemo(o) => Some(o.key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(lookups, ["a"]);
    assert!(
        !out.iter().any(|a| matches!(a, Action::Launch(_))),
        "no launch before the lookup's answer: {out:?}"
    );
    let a = h.take("a");
    assert!(!a.adopt);
    // A restart while the lookup is out: the order is asked again, adopting.
    let saved = h.saved.clone();
    let mut r = H::wrap(restore(&h, &saved));
    r.auto_launch = false;
    let out = r.feed(Event::Recovered);
    let again: Vec<_> = out
        .iter()
        .filter_map(|x| match x {
            Action::LookupMemo(o) => Some((o.key.clone(), o.adopt, o.attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(again, [("a".to_string(), true, 1)]);
    // The miss: the launch of that attempt follows, under the key.
    let out = h.feed(Event::MemoMiss {
        node: a.node,
        attempt: 1,
        key: Some("blake3:ka".into()),
    });
    let launched: Vec<_> = out
        .iter()
        .filter_map(|x| match x {
            Action::Launch(o) => Some((o.key.clone(), o.attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(launched, [("a".to_string(), 1)]);
    // A second answer (a duplicate) orders nothing more.
    let out = h.feed(Event::MemoMiss {
        node: a.node,
        attempt: 1,
        key: Some("blake3:ka".into()),
    });
    assert!(!out.iter().any(|x| matches!(x, Action::Launch(_))));
    h.feed(Event::StepLaunched {
        node: a.node,
        attempt: 1,
        handle: handle(a.node),
        memo_key: None,
    });
    h.exit("a", 0, json!({}));
    assert_eq!(h.info("a").memo_key.as_deref(), Some("blake3:ka"));
    // `cache = false`: launched at once, no lookup.
    let b = h.take("b");
    assert!(b.memo.is_none());
}

/// A run cancelled while a step's memo lookup is out: the miss that comes
/// back launches nothing, and the step ends cancelled; a stale answer for
/// another attempt takes nothing.
#[test]
fn a_miss_after_a_cancel_launches_nothing() {
    let text = r#"
[workflow]
name = "memo"
flow = "a"

[steps.a]
kind = "command"
command = ["make"]
"#;
    let mut h = H::new(text);
    h.auto_launch = false;
    h.start();
    let a = h.take("a");
    h.feed(Event::CancelRequested {
        reason: "test".into(),
    });
    let stale = h.feed(Event::MemoMiss {
        node: a.node,
        attempt: 2,
        key: None,
    });
    assert!(!stale.iter().any(|x| matches!(x, Action::Launch(_))));
    let out = h.feed(Event::MemoMiss {
        node: a.node,
        attempt: 1,
        key: Some("blake3:ka".into()),
    });
    assert!(
        !out.iter().any(|x| matches!(x, Action::Launch(_))),
        "{out:?}"
    );
    assert_eq!(h.state("a"), StepState::Cancelled);
    assert_eq!(run_finished(&h.log), Some(RunStatus::Cancelled));
}
