//! Crash safety: `kaon run` is killed with SIGKILL at 20 random points of a
//! 200-step workflow and started again each time. The run must complete,
//! every step's side effect must have happened exactly once (the step
//! processes outlive kaon and are re-attached, or adopted when kaon died
//! while launching them), and the database must be consistent at every
//! kill: no step ran or succeeded before the step it depends on succeeded.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Kaon, text, wait_output};
use serde_json::Value;

const ITEMS: usize = 20;
const CHAIN: usize = 10;

fn workflow() -> String {
    let items: Vec<String> = (0..ITEMS).map(|i| format!("\"i{i:02}\"")).collect();
    let chain: Vec<String> = (0..CHAIN).map(|s| format!("s{s}")).collect();
    let mut wf = format!(
        "[workflow]\nname = \"crash\"\nflow = \"**(item = items) --< ({}) >--\"\n\n[params]\nitems = {{ type = \"list<string>\", default = [{}] }}\n\n[steps]\n",
        chain.join(" -> "),
        items.join(", ")
    );
    for s in &chain {
        // The side effect: one line per execution, appended atomically.
        wf.push_str(&format!(
            "{s} = {{ kind = \"command\", script = \"echo \\\"$KAON_STEP_KEY\\\" >> effects.log; sleep 0.1\" }}\n"
        ));
    }
    wf
}

/// A small deterministic generator, seeded from the clock (printed, so a
/// failure can be replayed by setting KAON_CRASH_SEED).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo + 1)
    }
}

fn step_index(name: &str) -> Option<usize> {
    name.strip_prefix('s')?.parse().ok()
}

/// Checks dependency order in one snapshot; returns the keys that succeeded.
fn check_consistent(v: &Value) -> BTreeSet<String> {
    let nodes = v["nodes"].as_array().unwrap();
    // item -> step index -> node
    let mut by_item: BTreeMap<String, BTreeMap<usize, &Value>> = BTreeMap::new();
    let mut ok = BTreeSet::new();
    for n in nodes {
        let Some(i) = n["name"].as_str().and_then(step_index) else {
            continue;
        };
        let key = n["key"].as_str().unwrap().to_string();
        let item = key.split_once('[').unwrap().1.to_string();
        by_item.entry(item).or_default().insert(i, n);
        if n["state"] == "succeeded" {
            ok.insert(key);
        }
    }
    for (item, steps) in &by_item {
        for (i, n) in steps {
            let started = !matches!(n["state"].as_str(), Some("pending" | "waiting" | "ready"));
            if *i == 0 || !started {
                continue;
            }
            let prev = steps
                .get(&(i - 1))
                .unwrap_or_else(|| panic!("s{i}[{item} started with no record of s{}", i - 1));
            assert_eq!(
                prev["state"], "succeeded",
                "s{i}[{item} is {} before its upstream succeeded: {prev:#}",
                n["state"]
            );
            let (pf, ns) = (
                prev["finished_ms"].as_i64().unwrap(),
                n["started_ms"].as_i64().unwrap(),
            );
            assert!(
                pf <= ns,
                "s{i}[{item} started at {ns}, before s{} finished at {pf}",
                i - 1
            );
        }
    }
    ok
}

/// The newest run's id, if there is a run yet.
fn newest_run(k: &Kaon) -> Option<String> {
    if !k.data().join("kaon.db").exists() {
        return None;
    }
    let o = k.run(&["runs", "list"]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
}

#[test]
fn sigkill_at_twenty_random_points_loses_nothing_and_repeats_nothing() {
    let k = Kaon::new();
    let wf = k.write("crash.toml", &workflow());
    let wf = wf.to_str().unwrap();
    let seed = std::env::var("KAON_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("KAON_CRASH_SEED={seed}");
    let mut rng = Lcg(seed);
    let args = ["run", wf, "--progress", "plain", "--cpus", "4"];
    let mut succeeded_before_kill: BTreeSet<String> = BTreeSet::new();
    let mut run_id = None;
    let mut kills = 0;
    let mut finished = false;
    let start = Instant::now();
    while kills < 20 {
        let mut child = k.spawn(&args);
        let delay = rng.next(20, 350);
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_some() {
            // Finished before the kill point: the run is over too early to
            // count; the loop ends and the assertions below decide.
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", text(&o));
            finished = true;
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        // Killed before it created the run (a loaded machine can take that
        // long to start kaon): the next start creates it.
        if run_id.is_none() {
            run_id = newest_run(&k);
        }
        let Some(id) = run_id.clone() else {
            continue;
        };
        let snapshot = k.show(&id);
        assert_eq!(
            snapshot["status"], "running",
            "a killed run is unfinished: {snapshot:#}"
        );
        succeeded_before_kill.extend(check_consistent(&snapshot));
        assert!(start.elapsed() < Duration::from_secs(240), "too slow");
    }
    eprintln!(
        "{kills} kills, {} steps had succeeded before some kill",
        succeeded_before_kill.len()
    );
    assert!(
        kills >= 10,
        "the run finished after only {kills} kills; kill earlier"
    );
    // Carry it to the end.
    let mut out = String::new();
    if !finished {
        let o = wait_output(k.spawn(&args), Duration::from_secs(120));
        assert!(o.status.success(), "{}", text(&o));
        out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(out.contains("carrying on the interrupted run"), "{out}");
    }

    let runs = k.run(&["runs", "list"]);
    let listing = String::from_utf8_lossy(&runs.stdout).to_string();
    assert_eq!(
        listing.lines().count(),
        2,
        "every restart carried on the same run: {listing}\n{out}"
    );
    let id = run_id.unwrap();
    let v = k.show(&id);
    assert_eq!(v["status"], "succeeded");
    check_consistent(&v);
    let steps: Vec<&Value> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "command")
        .collect();
    assert_eq!(steps.len(), ITEMS * CHAIN);
    for n in &steps {
        assert_eq!(n["state"], "succeeded", "{n:#}");
        assert_eq!(
            n["attempts"], 1,
            "no attempt was lost, so none was repeated: {n:#}"
        );
    }

    let log = std::fs::read_to_string(k.path("effects.log")).unwrap();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in log.lines() {
        *counts.entry(line.trim()).or_default() += 1;
    }
    assert_eq!(counts.len(), ITEMS * CHAIN, "every step ran");
    for key in &succeeded_before_kill {
        assert_eq!(
            counts.get(key.as_str()),
            Some(&1),
            "{key} succeeded before a kill and must not run again"
        );
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        repeated.is_empty(),
        "steps whose side effect happened more than once: {repeated:?}"
    );
}
