//! Blocks expanded at run time: repeat passes, nested for-each over an
//! upstream list, `when` branches, a very wide for-each.

use std::collections::BTreeSet;

use crate::support::*;

const REPEAT: &str = r#"
[workflow]
name = "repeat"
flow = '''^^(until = ${evaluate.stable}, max = MAX) --< (evaluate) >-- -> done'''

[steps]
evaluate = { kind = "command", command = ["eval"], outputs = { stable = "bool" } }
done = { kind = "command", command = ["true"] }
"#;

fn is_repeat(t: &TNode) -> bool {
    matches!(t, TNode::Repeat { .. })
}

#[test]
fn repeat_runs_passes_until_the_condition_holds() {
    let mut h = H::new(&REPEAT.replace("MAX", "5"));
    h.start();
    let rep = h.block(is_repeat);
    assert_eq!(h.launched(), ["evaluate[pass=1]"]);

    let acts = h.exit("evaluate[pass=1]", 0, json!({"stable": false}));
    assert_eq!(launches_in(&acts), ["evaluate[pass=2]"]);
    assert!(is_running(&h.run.node(rep).unwrap().state));
    assert_eq!(h.run.node(rep).unwrap().info.items, Some(2));
    let acts = h.exit("evaluate[pass=2]", 0, json!({"stable": false}));
    assert_eq!(launches_in(&acts), ["evaluate[pass=3]"]);
    assert_eq!(h.state("done"), StepState::Pending);

    let acts = h.exit("evaluate[pass=3]", 0, json!({"stable": true}));
    assert_eq!(launches_in(&acts), ["done"]);
    let block = h.run.node(rep).unwrap();
    assert_eq!(block.state, StepState::Succeeded);
    assert_eq!(block.info.items, Some(3));
    assert!(
        block
            .info
            .note
            .clone()
            .unwrap_or_default()
            .contains("pass 3")
    );
    assert_eq!(h.run.children(rep).len(), 3, "three passes, three scopes");
    let keys: BTreeSet<String> = h.keys().into_iter().collect();
    for p in 1..=3 {
        assert!(keys.contains(&format!("evaluate[pass={p}]")));
    }
    assert!(!keys.contains("evaluate[pass=4]"));

    h.exit("done", 0, json!({}));
    assert_eq!(h.run.status, RunStatus::Succeeded);
    assert_eq!(
        h.launched(),
        [
            "evaluate[pass=1]",
            "evaluate[pass=2]",
            "evaluate[pass=3]",
            "done"
        ]
    );
}

#[test]
fn repeat_fails_when_max_passes_do_not_satisfy_the_condition() {
    let mut h = H::new(&REPEAT.replace("MAX", "2"));
    h.start();
    h.drive(|o| {
        assert_eq!(o.step, "evaluate", "nothing else may run");
        (0, json!({"stable": false}))
    });
    assert_eq!(h.launched(), ["evaluate[pass=1]", "evaluate[pass=2]"]);
    let rep = h.block(is_repeat);
    assert_failed(
        &h.run.node(rep).unwrap().state,
        FailureClass::User,
        "after 2 passes",
    );
    assert!(matches!(
        h.state("done"),
        StepState::Skipped {
            reason: SkipReason::UpstreamFailed { .. }
        }
    ));
    assert_eq!(h.run.status, RunStatus::Failed);
    assert_eq!(h.finishes(), [RunStatus::Failed]);
}

const NESTED: &str = r#"
[workflow]
name = "nested"
flow = '''prep -> **(reg = ${prep.regions}) --< ( **(m = ["a", "b"]) --< (fit) >-- ) >-- -> collect'''

[steps.prep]
kind = "command"
command = ["prep"]
outputs = { regions = "list<string>" }

[steps.fit]
kind = "command"
command = ["fit", "${reg}", "${m}"]
outputs = { score = "float" }

[steps.collect]
kind = "command"
command = ["echo", "${fit.score}"]
"#;

#[test]
fn nested_for_each_over_an_upstream_list_collects_outputs_in_item_order() {
    let mut h = H::new(NESTED);
    h.start();
    assert!(
        !h.keys().iter().any(|k| k.starts_with("fit")),
        "the list is not known yet: {:?}",
        h.keys()
    );

    let acts = h.exit("prep", 0, json!({"regions": ["US", "CA", "MX"]}));
    let fits = launches_in(&acts);
    assert_eq!(fits.len(), 6, "{fits:?}");
    let distinct: BTreeSet<&String> = fits.iter().collect();
    assert_eq!(distinct.len(), 6, "keys must differ: {fits:?}");
    let regs = ["US", "CA", "MX"];
    let ms = ["a", "b"];
    let mut want = BTreeSet::new();
    for r in regs {
        for m in ms {
            want.insert(format!("fit[reg={r}, m={m}]"));
        }
    }
    assert_eq!(distinct, want.iter().collect());
    for o in &h.launches[1..] {
        let a = argv(o);
        assert_eq!(o.key, format!("fit[reg={}, m={}]", a[1], a[2]), "{a:?}");
        assert_eq!(env(o, "KAON_VAR_REG"), Some(a[1].as_str()));
        assert_eq!(env(o, "KAON_VAR_M"), Some(a[2].as_str()));
    }
    let outer =
        h.block(|t| matches!(t, TNode::ForEach { bindings, .. } if bindings[0].var.name == "reg"));
    assert_eq!(h.run.node(outer).unwrap().info.items, Some(3));

    // Finish the fits in reverse order: the collected list still follows
    // the items.
    let score = |r: &str, m: &str| {
        let ri = regs.iter().position(|x| *x == r).unwrap() as f64;
        let mi = ms.iter().position(|x| *x == m).unwrap() as f64;
        ri * 10.0 + mi * 0.25 + 0.25
    };
    let mut order: Vec<String> = fits.clone();
    order.reverse();
    for (i, k) in order.iter().enumerate() {
        let o = h.running.iter().find(|o| &o.key == k).unwrap().clone();
        let a = argv(&o);
        let acts = h.exit(k, 0, json!({ "score": score(&a[1], &a[2]) }));
        if i < 5 {
            assert!(launches_in(&acts).is_empty(), "collect waits for all fits");
            assert_eq!(h.state("collect"), StepState::Pending);
        } else {
            assert_eq!(launches_in(&acts), ["collect"]);
        }
    }
    assert_eq!(h.run.node(outer).unwrap().state, StepState::Succeeded);

    let collect = h.launches.last().unwrap();
    let got: Value = serde_json::from_str(&argv(collect)[1]).unwrap();
    assert_eq!(
        got,
        json!([[0.25, 0.5], [10.25, 10.5], [20.25, 20.5]]),
        "argv: {:?}",
        argv(collect)
    );
    let acts = h.exit("collect", 0, json!({}));
    assert_eq!(run_finished(&acts), Some(RunStatus::Succeeded));
}

const WHEN: &str = r#"
[workflow]
name = "when"
flow = '''a -> ??(${a.go}) --< (BRANCHES) >-- -> after'''

[steps]
a = { kind = "command", command = ["true"], outputs = { go = "bool" } }
yes = { kind = "command", command = ["true"] }
no = { kind = "command", command = ["true"] }
after = { kind = "command", command = ["true"] }
"#;

fn is_when(t: &TNode) -> bool {
    matches!(t, TNode::When { .. })
}

#[test]
fn when_takes_exactly_one_branch() {
    for (go, taken, other) in [(true, "yes", "no"), (false, "no", "yes")] {
        let mut h = H::new(&WHEN.replace("BRANCHES", "yes | no"));
        h.start();
        let acts = h.exit("a", 0, json!({ "go": go }));
        assert_eq!(launches_in(&acts), [taken], "go = {go}");
        assert_eq!(h.enqueued(&acts), [taken], "go = {go}");
        assert!(h.find(other).is_none(), "the branch not taken has no nodes");
        let acts = h.exit(taken, 0, json!({}));
        assert_eq!(launches_in(&acts), ["after"]);
        let w = h.block(is_when);
        assert_eq!(h.run.node(w).unwrap().state, StepState::Succeeded);
        h.drive(|_| (0, json!({})));
        assert_eq!(h.launched(), ["a", taken, "after"]);
        assert!(!h.log.iter().any(|a| match a {
            Action::Enqueue { node, .. } => h.run.key(*node) == other,
            _ => false,
        }));
        assert_eq!(h.run.status, RunStatus::Succeeded);
    }
}

#[test]
fn when_without_otherwise_skips_and_what_follows_still_runs() {
    let text = WHEN
        .replace("BRANCHES", "yes")
        .replace("no = { kind = \"command\", command = [\"true\"] }\n", "");
    let mut h = H::new(&text);
    h.start();
    let acts = h.exit("a", 0, json!({ "go": false }));
    let w = h.block(is_when);
    assert_eq!(
        h.run.node(w).unwrap().state,
        StepState::Skipped {
            reason: SkipReason::ConditionFalse
        }
    );
    assert_eq!(launches_in(&acts), ["after"]);
    assert!(h.find("yes").is_none());
    let acts = h.exit("after", 0, json!({}));
    assert_eq!(run_finished(&acts), Some(RunStatus::Succeeded));
    assert_eq!(h.launched(), ["a", "after"]);
}

#[test]
fn twenty_thousand_items_run_to_the_end() {
    const N: usize = 20_000;
    let items: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    let text = format!(
        r#"
[workflow]
name = "wide"
flow = '''**(i = [{}]) --< (work) >-- -> done'''

[steps]
work = {{ kind = "command", command = ["work", "${{i}}"], outputs = {{ n = "int" }} }}
done = {{ kind = "command", command = ["done"] }}
"#,
        items.join(", ")
    );
    let started = std::time::Instant::now();
    let mut h = H::new(&text);
    let acts = h.start();
    assert_eq!(launches_in(&acts).len(), N);
    h.drive(|o| match o.step.as_str() {
        "work" => (0, json!({ "n": argv(o)[1].parse::<i64>().unwrap() })),
        _ => (0, json!({})),
    });
    let work: Vec<&LaunchOrder> = h.launches.iter().filter(|o| o.step == "work").collect();
    assert_eq!(work.len(), N);
    let keys: BTreeSet<&str> = work.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys.len(), N);
    assert_eq!(h.launches.iter().filter(|o| o.step == "done").count(), 1);
    assert_eq!(h.launches.last().unwrap().step, "done");
    assert_eq!(h.run.status, RunStatus::Succeeded);
    assert_eq!(h.finishes(), [RunStatus::Succeeded]);
    let fe = h.block(|t| matches!(t, TNode::ForEach { .. }));
    assert_eq!(h.run.node(fe).unwrap().info.items, Some(N as u32));
    assert_eq!(h.run.children(fe).len(), N);
    eprintln!("{N} items in {:?}", started.elapsed());
}
