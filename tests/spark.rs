//! kaon against real Spark: a standalone cluster (master with the REST
//! submission server, one worker) started here from a kaon-managed runtime,
//! on Spark 3.5 and on 4.x, plus client-mode PySpark and SQL steps.
//!
//! Each version's test runs its scenarios one after another on one cluster
//! (a cluster takes 10-20 s to start on two cores): a job that succeeds,
//! one that fails, one retried after a failure, one killed mid-stage, kaon
//! killed with SIGKILL while a cluster-mode driver runs, and kaon dying just
//! before and just after the master accepts a submission.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

#[path = "spark/cluster.rs"]
mod cluster;
mod common;

use std::time::{Duration, Instant};

use cluster::Cluster;
use common::{Kaon, text};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

fn workflow(k: &Kaon, c: &Cluster, jar: &str) {
    let v = &c.version;
    k.write("kaon.toml", &c.kaon_toml());
    k.write(
        "job.toml",
        &format!(
            r#"[workflow]
name = "job"
flow = "job"

[params]
mode = "ok"
tasks = 6
millis = 0
marker = "unused"

[steps.job]
kind = "spark"
spark = "{v}"
app = "{jar}"
main_class = "Job"
args = ["${{params.mode}}", "${{params.tasks}}", "${{params.millis}}", "${{params.marker}}"]
constraints = "tier:batch"
conf = {{ "spark.ui.showConsoleProgress" = "false", "spark.executor.memory" = "512m", "spark.driver.memory" = "512m" }}
outputs = {{ record_count = "int" }}
retries = 1
retry_backoff = "1s"
cache = false
"#
        ),
    );
}

/// Runs to the end; returns (run id, `runs show` JSON).
fn run(k: &Kaon, args: &[&str]) -> (String, Value, String) {
    let mut all = vec!["run", "job.toml", "--progress", "plain"];
    all.extend_from_slice(args);
    let o = k
        .cmd(&all)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("run ").and_then(|r| r.split(':').next()))
        .unwrap_or_else(|| panic!("no run id: {}", text(&o)))
        .to_string();
    let v = k.show(&id);
    (id, v, text(&o))
}

fn node(v: &Value) -> &Value {
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "job")
        .unwrap()
}

fn new_drivers(c: &Cluster, before: &[(String, String)]) -> Vec<(String, String)> {
    c.drivers()
        .into_iter()
        .filter(|(id, _)| !before.iter().any(|(b, _)| b == id))
        .collect()
}

/// `kaon run` of the job in slow mode: four tasks, each sleeping `millis`.
fn slow_run(k: &Kaon, millis: u32) -> std::process::Command {
    let mut c = k.cmd(&[
        "run",
        "job.toml",
        "--progress",
        "plain",
        "-p",
        "mode=slow",
        "-p",
        "tasks=4",
        "-p",
        &format!("millis={millis}"),
    ]);
    c.env("SPARK_LOCAL_IP", "127.0.0.1");
    c
}

/// Starts [`slow_run`].
fn spawn_slow(k: &Kaon, millis: u32) -> std::process::Child {
    slow_run(k, millis)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every run id so far.
fn run_ids(k: &Kaon) -> Vec<String> {
    let o = k.run(&["runs", "list"]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The id of a run started after `known` was taken.
fn new_run(k: &Kaon, known: &[String]) -> String {
    let mut found = None;
    wait_for("the new run", Duration::from_secs(30), || {
        found = run_ids(k).into_iter().find(|i| !known.contains(i));
        found.is_some()
    });
    found.unwrap()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cluster_scenarios(req: &str) {
    let c = Cluster::start(req, 6);
    let k = Kaon::new();
    let jar = c.job_jar(&k.path("job.jar"));
    workflow(&k, &c, &jar.display().to_string());

    // 1. Success: the output the job sent through the listener, live
    //    progress, and the driver's stdout fetched from the worker.
    let before = c.drivers();
    let (id, v, out) = run(&k, &[]);
    assert_eq!(v["status"], "succeeded", "{out}\n{v:#}");
    let n = node(&v);
    assert_eq!(n["data"]["outputs"]["record_count"], 600, "{n:#}");
    let note = n["data"]["progress"]["message"].as_str().unwrap_or("");
    assert!(note.starts_with("stage 1/1 · tasks 6/6"), "progress: {n:#}");
    let reported =
        std::fs::read_to_string(k.data().join(format!("runs/{id}/0-job.1.reported.jsonl")))
            .unwrap();
    assert!(
        reported.contains(r#""record_count""#),
        "the listener's output event: {reported}"
    );
    let logs = k.run(&["logs", &id, "job"]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("counted 600"),
        "{}",
        text(&logs)
    );
    assert_eq!(
        new_drivers(&c, &before)
            .iter()
            .map(|d| d.1.as_str())
            .collect::<Vec<_>>(),
        ["FINISHED"]
    );

    // 2. Failure: the step fails with the driver's own error (the root
    //    cause, not the reflection wrapper), after its retry also failed.
    let before = c.drivers();
    let (_, v, out) = run(&k, &["-p", "mode=fail"]);
    assert_eq!(v["status"], "failed", "{out}");
    let n = node(&v);
    let msg = n["data"]["failure"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("java.lang.IllegalStateException: boom from the job"),
        "{n:#}"
    );
    assert_eq!(n["attempts"], 2);
    let d = new_drivers(&c, &before);
    assert_eq!(
        d.iter().map(|d| d.1.as_str()).collect::<Vec<_>>(),
        ["FAILED", "FAILED"],
        "{d:?}"
    );

    // 3. Retry: the first attempt fails, the second (submitted only once
    //    the first driver is confirmed ended) succeeds.
    let before = c.drivers();
    let marker = k.path("flaky.marker").display().to_string();
    let (_, v, out) = run(&k, &["-p", "mode=flaky", "-p", &format!("marker={marker}")]);
    assert_eq!(v["status"], "succeeded", "{out}");
    assert_eq!(node(&v)["attempts"], 2);
    let d = new_drivers(&c, &before);
    assert_eq!(
        d.iter().map(|d| d.1.as_str()).collect::<Vec<_>>(),
        ["FAILED", "FINISHED"],
        "{d:?}"
    );

    // 4. Kill mid-stage: `kaon kill` ends the driver through the REST API;
    //    the step is cancelled once the master says KILLED.
    let before = c.drivers();
    let known = run_ids(&k);
    let mut child = spawn_slow(&k, 60_000);
    let id = new_run(&k, &known);
    wait_for("a running stage", Duration::from_secs(120), || {
        node(&k.show(&id))["data"]["progress"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("stage 0/1"))
    });
    let o = k.run(&["kill", &id, "job"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("job: cancelled"),
        "{}",
        text(&o)
    );
    let o = common::wait_output(child, Duration::from_secs(60));
    let v = k.show(&id);
    assert_eq!(node(&v)["state"], "cancelled", "{}", text(&o));
    assert_eq!(node(&v)["attempts"], 1, "a killed step is not retried");
    let d = new_drivers(&c, &before);
    assert_eq!(
        d.iter().map(|d| d.1.as_str()).collect::<Vec<_>>(),
        ["KILLED"],
        "{d:?}"
    );

    // 5. kaon dies (SIGKILL) while the driver runs; `kaon resume` re-attaches
    //    to it: the master shows exactly one driver for the step.
    let before = c.drivers();
    let known = run_ids(&k);
    child = spawn_slow(&k, 4_000);
    let id2 = new_run(&k, &known);
    wait_for("the driver to run", Duration::from_secs(120), || {
        new_drivers(&c, &before).iter().any(|d| d.1 == "RUNNING")
            && node(&k.show(&id2))["state"] == "running"
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    let o = k
        .cmd(&["resume", &id2, "--progress", "plain"])
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let v = k.show(&id2);
    assert_eq!(v["status"], "succeeded", "{}", text(&o));
    assert_eq!(node(&v)["attempts"], 1);
    let d = new_drivers(&c, &before);
    assert_eq!(
        d.iter().map(|d| d.1.as_str()).collect::<Vec<_>>(),
        ["FINISHED"],
        "one driver only: {d:?}"
    );

    // 6. kaon dies right after the master accepted the submission, before
    //    the submission id is on disk: `kaon resume` finds the driver by
    //    the tag in its launch command and watches it (one driver).
    // 7. kaon dies right before the request: `kaon resume` finds no driver
    //    with the tag and submits then (one driver).
    for (point, millis) in [("spark-after-create", 3_000), ("spark-before-create", 0)] {
        let before = c.drivers();
        let known = run_ids(&k);
        let o = slow_run(&k, millis)
            .env("KAON_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(
            !o.status.success(),
            "{point}: kaon should have died: {}",
            text(&o)
        );
        assert!(
            text(&o).contains(&format!("failpoint {point}")),
            "{point}: {}",
            text(&o)
        );
        let id = new_run(&k, &known);
        let pending: Value = serde_json::from_slice(
            &std::fs::read(k.data().join(format!("runs/{id}/0-job.1.spark.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(pending["spark"], "rest-pending", "{point}: {pending:#}");
        let states = |d: Vec<(String, String)>| d.into_iter().map(|d| d.1).collect::<Vec<_>>();
        let now = states(new_drivers(&c, &before));
        if point == "spark-after-create" {
            assert!(
                matches!(now.as_slice(), [s] if s == "SUBMITTED" || s == "RUNNING"),
                "{point}: the driver outlives kaon: {now:?}"
            );
        } else {
            assert!(now.is_empty(), "{point}: nothing was submitted: {now:?}");
        }
        let o = k
            .cmd(&["resume", &id, "--progress", "plain"])
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{point}: {}", text(&o));
        let v = k.show(&id);
        assert_eq!(v["status"], "succeeded", "{point}: {}", text(&o));
        assert_eq!(node(&v)["attempts"], 1, "{point}");
        assert_eq!(node(&v)["data"]["outputs"]["record_count"], 400, "{point}");
        assert_eq!(
            states(new_drivers(&c, &before)),
            ["FINISHED"],
            "{point}: one driver only"
        );
    }
}

fn client_scenarios(req: &str) {
    let (version, _) = cluster::runtime(req);
    let k = Kaon::new();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/spark/job.py"),
        k.path("job.py"),
    )
    .unwrap();
    k.write(
        "job.toml",
        &format!(
            r#"[workflow]
name = "client"
flow = "py -> sql"

[params]
who = {{ type = "string", default = "kaon" }}

[steps.py]
kind = "spark"
spark = "{version}"
app = "job.py"
master = "local[2]"
outputs = {{ groups = "int" }}

[steps.sql]
kind = "spark"
spark = "{version}"
sql = "SELECT ${{py.groups}} AS groups, '${{params.who}}' AS who UNION ALL SELECT 1, 'spark'"
master = "local[2]"
outputs = {{ table = {{ type = "dir", path = "out/table" }}, rows = "int" }}
"#
        ),
    );
    let (_, v, out) = run(&k, &[]);
    assert_eq!(v["status"], "succeeded", "{out}\n{v:#}");
    let nodes = v["nodes"].as_array().unwrap();
    let py = nodes.iter().find(|n| n["name"] == "py").unwrap();
    assert_eq!(py["data"]["outputs"]["groups"], 7, "{py:#}");
    assert!(
        py["data"]["progress"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("stage "),
        "{py:#}"
    );
    let sql = nodes.iter().find(|n| n["name"] == "sql").unwrap();
    assert_eq!(sql["data"]["outputs"]["rows"], 2, "{sql:#}");
    assert!(
        std::fs::read_dir(k.path("out/table")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".parquet")),
        "the SQL result is written as Parquet"
    );

    // Run again: both steps are memoized (same code, conf, Spark version
    // and inputs).
    let (_, v, out) = run(&k, &[]);
    assert_eq!(v["status"], "succeeded", "{out}");
    let spark: Vec<&Value> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "spark")
        .collect();
    assert_eq!(spark.len(), 2, "{v:#}");
    for n in spark {
        assert_eq!(n["state"], "memoized", "{n:#}");
    }

    // A parameter the SQL reads changes: the SQL step runs again, and
    // `kaon cache explain` names the SQL text as what changed (its memo
    // key is recorded field by field), not just "config".
    let (id, v, out) = run(&k, &["-p", "who=team"]);
    assert_eq!(v["status"], "succeeded", "{out}");
    let sql = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "sql")
        .unwrap();
    assert_eq!(sql["state"], "succeeded", "{sql:#}");
    let o = k.cmd(&["cache", "explain", &id, "sql"]).output().unwrap();
    let explained = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        explained.contains("sql: ") && explained.contains("team"),
        "{explained}"
    );
    assert!(!explained.contains("config: changed"), "{explained}");

    // A failing PySpark driver: its Python error is the step's message.
    k.write(
        "fail.toml",
        &format!(
            "[workflow]\nname = \"f\"\nflow = \"py\"\n[steps.py]\nkind = \"spark\"\nspark = \"{version}\"\napp = \"job.py\"\nargs = [\"fail\"]\nmaster = \"local[2]\"\n"
        ),
    );
    let o = k
        .cmd(&["run", "fail.toml", "--progress", "plain"])
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ValueError: boom from python"),
        "{}",
        text(&o)
    );
}

#[test]
fn spark_3_5_cluster_mode() {
    cluster_scenarios("3.5");
}

#[test]
fn spark_4_cluster_mode() {
    cluster_scenarios("4.3");
}

#[test]
fn spark_3_5_client_mode() {
    client_scenarios("3.5");
}

#[test]
fn spark_4_client_mode() {
    client_scenarios("4.3");
}
