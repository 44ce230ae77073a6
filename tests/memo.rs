//! End-to-end tests of artifacts and memoization through the binary: the
//! recsys example run again reuses every result, an edited script re-runs
//! exactly what depends on it, and the artifact verbs work on what runs left.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Kaon, text};
use serde_json::Value;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "work" || name == "__pycache__" {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if e.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A private copy of the example, so scripts can be edited.
fn recsys() -> Kaon {
    let k = Kaon::new();
    copy_dir(Path::new("examples/recsys"), &k.path("recsys"));
    copy_dir(Path::new("examples/lib"), &k.path("lib"));
    k
}

/// Runs the example; returns the run's steps (by instance key) and states.
fn run(k: &Kaon, extra: &[&str]) -> (String, BTreeMap<String, String>) {
    let mut args = vec!["run", "recsys/recsys.toml", "--progress", "plain", "--new"];
    args.extend_from_slice(extra);
    let o = k.run(&args);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("run ").and_then(|r| r.split(':').next()))
        .unwrap()
        .to_string();
    let v = k.show(&id);
    assert_eq!(v["status"], "succeeded");
    let steps = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "command" || n["kind"] == "spark")
        .map(|n| {
            (
                n["key"].as_str().unwrap().to_string(),
                n["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (id, steps)
}

fn with_state<'a>(steps: &'a BTreeMap<String, String>, state: &str) -> Vec<&'a str> {
    steps
        .iter()
        .filter(|(_, s)| s.as_str() == state)
        .map(|(k, _)| k.as_str())
        .collect()
}

fn step_name(key: &str) -> &str {
    key.split('[').next().unwrap()
}

#[test]
fn second_run_is_memoized_and_an_edit_reruns_exactly_its_dependents() {
    let k = recsys();
    let (_, first) = run(&k, &[]);
    assert!(first.len() >= 10, "{first:?}");
    assert!(
        with_state(&first, "memoized").is_empty(),
        "a first run has nothing to reuse: {first:?}"
    );

    // Again: nothing runs.
    let started = std::time::Instant::now();
    let (second_id, second) = run(&k, &[]);
    let took = started.elapsed();
    assert_eq!(
        with_state(&second, "memoized").len(),
        second.len(),
        "every step is memoized: {second:?}"
    );
    assert_eq!(
        second.keys().collect::<Vec<_>>(),
        first.keys().collect::<Vec<_>>()
    );
    eprintln!("the memoized run took {took:?}");

    // Memoized steps put their files back: delete one, run again.
    std::fs::remove_file(k.path("recsys/work/selected.model")).unwrap();
    let (_, third) = run(&k, &[]);
    assert_eq!(with_state(&third, "memoized").len(), third.len());
    assert!(k.path("recsys/work/selected.model").is_file());

    // A comment in publish.py: publish runs, nothing else.
    let publish = k.path("recsys/steps/publish.py");
    let mut src = std::fs::read_to_string(&publish).unwrap();
    src.push_str("\n# edited by a test\n");
    std::fs::write(&publish, src).unwrap();
    let (_, after_publish) = run(&k, &[]);
    assert_eq!(with_state(&after_publish, "succeeded"), ["publish"]);

    // A change to training that changes the regional models: every step
    // that reads one runs again, and so does the global model's Spark job,
    // which ships train.py (its split of held-out rows) as a py-file. The
    // cohort and the wrangling are reused, and so is the validation of the
    // global model, whose coefficients come out the same.
    let train = k.path("recsys/steps/train.py");
    let src = std::fs::read_to_string(&train).unwrap();
    assert!(src.contains("EPOCHS = 100"));
    std::fs::write(&train, src.replace("EPOCHS = 100", "EPOCHS = 120")).unwrap();
    let (edited_id, edited) = run(&k, &[]);
    let ran: Vec<&str> = with_state(&edited, "succeeded");
    let reused: Vec<&str> = with_state(&edited, "memoized");
    let mut reused_names: Vec<&str> = reused.iter().map(|k| step_name(k)).collect();
    reused_names.sort();
    reused_names.dedup();
    assert_eq!(
        reused_names,
        ["getUsers", "validateGlobalModel", "wrangleData"],
        "{edited:?}"
    );
    let mut ran_names: Vec<&str> = ran.iter().map(|k| step_name(k)).collect();
    ran_names.sort();
    ran_names.dedup();
    assert_eq!(
        ran_names,
        [
            "publish",
            "selectModel",
            "trainGlobalModel",
            "trainRegModel",
            "validateModel",
            "validateRegModel"
        ],
        "{edited:?}"
    );
    assert_eq!(ran.len() + reused.len(), edited.len());

    // Why did it run? The edited script, named.
    let o = k.run(&["cache", "explain", &edited_id, "trainGlobalModel"]);
    assert!(o.status.success(), "{}", text(&o));
    let why = String::from_utf8_lossy(&o.stdout);
    assert!(why.contains("ran (key blake3:"), "{why}");
    assert!(why.contains("code steps/train.py:"), "{why}");
    let o = k.run(&["cache", "explain", &edited_id, "validateRegModel"]);
    let why = String::from_utf8_lossy(&o.stdout);
    assert!(why.contains("input trainRegModel.model:"), "{why}");
    let o = k.run(&["cache", "explain", &second_id, "getUsers"]);
    let why = String::from_utf8_lossy(&o.stdout);
    assert!(why.contains("memoized, the result of"), "{why}");

    // --no-cache runs everything (and still records results).
    let (_, forced) = run(&k, &["--no-cache"]);
    assert_eq!(with_state(&forced, "succeeded").len(), forced.len());

    // Lineage of the selected model reaches the cohort.
    let o = k.run(&[
        "artifacts",
        "list",
        "--run",
        &edited_id,
        "--step",
        "selectModel",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    let model = list[0]["id"].as_str().unwrap().to_string();
    let o = k.run(&["artifacts", "lineage", &model, "--format", "json"]);
    let lin: Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = lin["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for want in ["model", "prepared", "users"] {
        assert!(names.contains(&want), "{names:?}");
    }
    let o = k.run(&["artifacts", "lineage", &model, "--format", "dot"]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("digraph lineage"));
}

#[test]
fn steps_put_and_get_artifacts_and_cache_false_always_runs() {
    let k = Kaon::new();
    k.write("notes.txt", "hello from outside\n");
    let o = k.run(&[
        "artifact",
        "put",
        "notes.txt",
        "--name",
        "notes",
        "--tag",
        "team=ml",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let notes_id = out.split_whitespace().next().unwrap().to_string();
    let wf = format!(
        r#"
[workflow]
name = "puts"
flow = "make -> side"

[steps.make]
kind = "command"
workdir = "sub"
script = '''
kaon artifacts get {notes_id} -o got.txt
mkdir -p out && cp got.txt out/a.txt && echo more > out/b.txt
kaon artifact put out --name bundle
'''

[steps.side]
kind = "command"
cache = false
script = "echo side effect >> side.log"
"#
    );
    k.write("wf.toml", &wf);
    // `make` runs in a folder of its own, where no `.kaon` is.
    std::fs::create_dir_all(k.path("sub")).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_kaon"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The data directory as a flag, not in the environment: kaon hands it
    // to the step, whose `kaon artifacts get/put` need its database.
    let o = k
        .cmd(&["run", "wf.toml", "--progress", "plain", "--data-dir"])
        .arg(k.data())
        .env_remove("KAON_DATA_DIR")
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = k.run(&["artifacts", "list", "--name", "bundle", "--format", "json"]);
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    let bundle = &list[0];
    assert_eq!(bundle["kind"], "dir");
    assert_eq!(bundle["files"], 2);
    assert_eq!(bundle["step"], "make");
    // The step's get is lineage: the bundle came from the notes.
    let id = bundle["id"].as_str().unwrap();
    let o = k.run(&["artifacts", "lineage", id, "--format", "json"]);
    let lin: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(lin["edges"][0]["from"], notes_id.as_str(), "{lin:#}");
    // Fetch it back.
    let o = k.run(&["artifacts", "get", id, "-o", "back"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(k.path("back/a.txt")).unwrap(),
        "hello from outside\n"
    );
    // Second run: `make` is reused, `side` (cache = false) runs again.
    let o = k
        .cmd(&["run", "wf.toml", "--progress", "plain", "--new"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("≡ make memoized"), "{out}");
    assert!(out.contains("✓ side"), "{out}");
    assert_eq!(
        std::fs::read_to_string(k.path("side.log")).unwrap(),
        "side effect\nside effect\n"
    );

    // gc keeps what artifacts name, drops what nothing names.
    // A blob no artifact names, as an interrupted run would leave.
    let hex = blake3::hash(b"orphan").to_hex().to_string();
    let orphan = k.data().join("artifacts/blobs").join(&hex[..2]).join(&hex);
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"orphan").unwrap();
    let o = k.run(&["artifacts", "gc"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("deleted 0 of"),
        "{}",
        text(&o)
    );
    assert!(orphan.exists(), "a blob younger than --min-age is kept");
    let o = k.run(&["artifacts", "gc", "--min-age", "0s"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("deleted 1 of"),
        "{}",
        text(&o)
    );
    assert!(!orphan.exists());
    let o = k.run(&["artifacts", "get", id, "-o", "back2"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_killed_put_leaves_no_blob() {
    let k = Kaon::new();
    let big = k.path("big.bin");
    let f = std::fs::File::create(&big).unwrap();
    // Sparse: costs no disk, reads as zeros at memory speed.
    f.set_len(3 << 30).unwrap();
    drop(f);
    let mut child = k.spawn(&["artifacts", "put", "big.bin"]);
    let tmp = k.data().join("artifacts/tmp");
    let start = std::time::Instant::now();
    // Wait until the upload is under way (its staging object exists).
    while !tmp.exists() || std::fs::read_dir(&tmp).unwrap().next().is_none() {
        assert!(start.elapsed().as_secs() < 30, "the put never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let blobs = k.data().join("artifacts/blobs");
    let n = if blobs.exists() {
        walk_files(&blobs)
    } else {
        0
    };
    assert_eq!(n, 0, "a killed put must leave no blob");
}

fn walk_files(p: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += walk_files(&e.path());
        } else {
            n += 1;
        }
    }
    n
}
