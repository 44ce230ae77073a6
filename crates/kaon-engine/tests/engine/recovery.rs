//! A run rebuilt from its stored deltas after a restart.

use crate::support::*;

const RESTORE: &str = r#"
[workflow]
name = "restore"
flow = '''a ==> (b, r, **(x = [1, 2]) --< (f) >--) >== z'''

[steps]
a = { kind = "command", command = ["true"] }
b = { kind = "command", command = ["sleep", "9"], timeout = "1h" }
r = { kind = "command", command = ["true"], retries = 2, retry_backoff = "1m" }
f = { kind = "command", command = ["f", "${x}"] }
z = { kind = "command", command = ["true"] }
"#;

#[test]
fn a_run_restored_from_its_deltas_picks_up_where_it_was() {
    let mut h = H::new(RESTORE);
    h.start();
    h.now += 1_000;
    h.exit("a", 0, json!({}));
    let mut started = h.launched();
    started.sort();
    assert_eq!(started, ["a", "b", "f[x=1]", "f[x=2]", "r"]);
    h.now += 1_000;
    h.exit("r", 1, json!({}));
    h.exit("f[x=1]", 0, json!({}));
    let r_at = match h.state("r") {
        StepState::Retrying { attempt: 2, at, .. } => at,
        other => panic!("expected retrying, got {other:?}"),
    };

    // Rebuild from what the store would hold.
    let (status, data) = h.saved.run.clone().unwrap();
    assert_eq!(status, RunStatus::Running);
    let scopes = h.saved.scopes.clone();
    assert_eq!(scopes.len(), 3, "the flow and two for-each items");
    let nodes: Vec<(NodeId, kaon_engine::NodeData)> = h
        .saved
        .nodes
        .values()
        .map(|r| (r.id, r.data.clone()))
        .collect();
    let fresh = RunState::new(
        "r1",
        h.run.program.clone(),
        h.run.params.clone(),
        h.run.options.clone(),
    );
    let restored = RunState::restore(fresh, status, data, scopes, nodes).unwrap();
    assert_eq!(restored.len(), h.run.len());
    for (id, n) in h.run.nodes() {
        let m = restored.node(id).unwrap();
        assert_eq!(restored.key(id), h.run.key(id));
        assert_eq!(m.state, n.state, "{}", h.run.key(id));
        assert_eq!(m.info, n.info, "{}", h.run.key(id));
    }

    let mut g = H::wrap(restored);
    g.now = h.now + 5_000;
    let acts = g.feed(Event::Recovered);
    let (b, f2, r) = (g.id("b"), g.id("f[x=2]"), g.id("r"));
    let mut reattached: Vec<(NodeId, u32, Value)> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Reattach {
                node,
                attempt,
                handle,
                order,
            } => {
                assert_eq!(order.node, *node);
                assert!(order.adopt);
                Some((*node, *attempt, handle.clone()))
            }
            _ => None,
        })
        .collect();
    reattached.sort_by_key(|x| x.0);
    let mut want = vec![(b, 1, handle(b)), (f2, 1, handle(f2))];
    want.sort_by_key(|x| x.0);
    assert_eq!(reattached, want);
    let b_started = h.info("b").attempt_started.unwrap();
    let mut timers = timers_in(&acts);
    timers.sort_by_key(|t| t.0);
    let mut want = vec![
        (r, 2, r_at, Timer::Retry),
        (b, 1, b_started + 3_600_000, Timer::Timeout),
    ];
    want.sort_by_key(|t| t.0);
    assert_eq!(timers, want, "the retry as it was, b's timeout as it was");
    assert_eq!(acts.len(), 4, "nothing for what already ended: {acts:?}");
    assert!(launches_in(&acts).is_empty());
    assert!(g.enqueued(&acts).is_empty());

    // Finish from the restored state.
    g.drive(|_| (0, json!({})));
    assert_eq!(g.launched(), ["r", "z"]);
    assert_eq!(g.launches[0].attempt, 2);
    assert_eq!(g.state("r"), StepState::Succeeded);
    assert_eq!(g.state("b"), StepState::Succeeded);
    let fe = g.block(|t| matches!(t, TNode::ForEach { .. }));
    assert_eq!(g.run.node(fe).unwrap().state, StepState::Succeeded);
    assert_eq!(g.run.status, RunStatus::Succeeded);
    assert_eq!(g.finishes(), [RunStatus::Succeeded]);
}
