//! End-to-end tests of `kaon run` and the run verbs, through the binary,
//! with real processes and the real SQLite store.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

mod common;

use std::time::{Duration, Instant};

use common::{Kaon, nodes_named, pid_alive, read_pid, text, wait_output};

#[test]
fn recsys_example_runs_end_to_end() {
    let k = Kaon::new();
    let wf = std::path::absolute("examples/recsys/recsys.toml").unwrap();
    let o = k.run(&["run", wf.to_str().unwrap(), "--progress", "plain"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("succeeded in"), "{out}");
    let run = k.wait_run_id();
    let v = k.show(&run);
    assert_eq!(v["status"], "succeeded");
    // The regions come from the wrangle step at run time: one trainRegModel
    // per region it reported, in the last pass of the loop.
    let wrangle = nodes_named(&v, "wrangleData");
    let regions = wrangle.last().unwrap()["data"]["outputs"]["regions"]
        .as_array()
        .unwrap()
        .len();
    assert!(regions >= 3, "wrangle reported {regions} regions");
    let passes = nodes_named(&v, "repeat#1")[0]["data"]["items"]
        .as_u64()
        .unwrap_or(1) as usize;
    assert_eq!(nodes_named(&v, "trainRegModel").len(), regions * passes);
    for n in v["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "succeeded", "{n:#}");
    }
    assert!(
        v["data"]["outputs"]["model"]
            .as_str()
            .unwrap()
            .ends_with("selected.model")
    );
    // The logs of a step are kept and shown.
    let logs = k.run(&["logs", &run, "publish"]);
    assert!(logs.status.success(), "{}", text(&logs));
}

#[test]
fn failed_attempts_are_retried_with_backoff_then_succeed() {
    let k = Kaon::new();
    let wf = k.write(
        "wf.toml",
        r#"
[workflow]
name = "flaky"
flow = "flaky -> after"

[steps.flaky]
kind = "command"
script = '''
n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count
echo "attempt $n ($KAON_ATTEMPT)"
[ "$n" -ge 3 ]
'''
retries = 2
retry_backoff = "200ms"

[steps.after]
kind = "command"
command = ["true"]
"#,
    );
    let start = Instant::now();
    let o = k.run(&["run", wf.to_str().unwrap(), "--progress", "plain"]);
    assert!(o.status.success(), "{}", text(&o));
    // Two waits: 100-200ms, then 200-400ms.
    assert!(start.elapsed() >= Duration::from_millis(300));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("↻ flaky: attempt 1 exited with status 1; retrying in"),
        "{out}"
    );
    let run = k.wait_run_id();
    let v = k.show(&run);
    let f = nodes_named(&v, "flaky")[0];
    assert_eq!(f["attempts"], 3);
    assert_eq!(f["state"], "succeeded");
    assert_eq!(
        std::fs::read_to_string(k.path("count")).unwrap().trim(),
        "3"
    );
    let logs = k.run(&["logs", &run, "flaky", "--attempt", "2"]);
    assert_eq!(
        String::from_utf8_lossy(&logs.stdout).trim(),
        "attempt 2 (2)"
    );
}

#[test]
fn a_step_that_keeps_failing_fails_the_run_and_skips_what_depends_on_it() {
    let k = Kaon::new();
    let wf = k.write(
        "wf.toml",
        r#"
[workflow]
name = "bad"
flow = "a ==> (broken -> downstream, independent) >== last"

[steps]
a = { kind = "command", command = ["true"] }
broken = { kind = "command", script = "echo boom >&2; exit 7", retries = 1, retry_backoff = "50ms" }
downstream = { kind = "command", command = ["true"] }
independent = { kind = "command", script = "sleep 0.3; touch independent.done" }
last = { kind = "command", command = ["true"] }
"#,
    );
    let o = k.run(&["run", wf.to_str().unwrap(), "--progress", "plain"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("broken failed: exited with status 7"), "{out}");
    assert!(
        k.path("independent.done").exists(),
        "the independent branch must finish"
    );
    let v = k.show(&k.wait_run_id());
    assert_eq!(nodes_named(&v, "broken")[0]["data"]["exit_code"], 7);
    assert_eq!(nodes_named(&v, "broken")[0]["attempts"], 2);
    assert_eq!(nodes_named(&v, "downstream")[0]["state"], "skipped");
    assert_eq!(nodes_named(&v, "last")[0]["state"], "skipped");
    let logs = k.run(&["logs", v["id"].as_str().unwrap(), "broken"]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("boom"));

    // With --on-failure stop, the independent branch is not launched after
    // the failure (it sleeps, so `broken` fails first).
    let k2 = Kaon::new();
    let wf2 = k2.write(
        "wf.toml",
        r#"
[workflow]
name = "stop"
flow = "start ==> (broken, slow -> x) >== z"

[steps]
broken = { kind = "command", script = "exit 3" }
slow = { kind = "command", script = "sleep 0.5" }
x = { kind = "command", command = ["touch", "x.ran"] }
z = { kind = "command", command = ["true"] }
"#,
    );
    let o = k2.run(&[
        "run",
        wf2.to_str().unwrap(),
        "--progress",
        "plain",
        "--on-failure",
        "stop",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v = k2.show(&k2.wait_run_id());
    assert_eq!(
        nodes_named(&v, "slow")[0]["state"],
        "succeeded",
        "running steps finish"
    );
    let x = nodes_named(&v, "x")[0];
    assert_eq!(
        x["state"], "skipped",
        "nothing new may start after the failure: {x:#}"
    );
    assert_eq!(x["data"]["reason"]["why"], "run_stopped");
    assert!(!k2.path("x.ran").exists());
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let k = Kaon::new();
    let wf = k.write(
        "wf.toml",
        r#"
[workflow]
name = "slow"
flow = "slow"

[steps.slow]
kind = "command"
script = "sleep 60 & echo $! > child.pid; wait"
timeout = "1s"
"#,
    );
    let start = Instant::now();
    let o = k.run(&[
        "run",
        wf.to_str().unwrap(),
        "--progress",
        "plain",
        "--kill-grace",
        "2s",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("timed out after 1.0s"),
        "{}",
        text(&o)
    );
    let pid = read_pid(&k.path("child.pid"));
    let t = Instant::now();
    while pid_alive(pid) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !pid_alive(pid),
        "the step's own child {pid} survived the timeout"
    );
}

#[test]
fn cancel_stops_running_steps_and_ends_the_run_cancelled() {
    let k = Kaon::new();
    let wf = k.write(
        "wf.toml",
        r#"
[workflow]
name = "long"
flow = "long -> never"

[steps.long]
kind = "command"
script = "echo $$ > long.pid; exec sleep 60"

[steps.never]
kind = "command"
command = ["touch", "never.ran"]
"#,
    );
    let child = k.spawn(&["run", wf.to_str().unwrap(), "--progress", "plain"]);
    let run = k.wait_run_id();
    k.wait_state(&run, "long", "running");
    let pid = read_pid(&k.path("long.pid"));
    let c = k.run(&["cancel", &run, "--kill-grace", "2s"]);
    assert!(c.status.success(), "{}", text(&c));
    let o = wait_output(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let v = k.show(&run);
    assert_eq!(v["status"], "cancelled");
    assert_eq!(nodes_named(&v, "long")[0]["state"], "cancelled");
    assert!(!k.path("never.ran").exists());
    assert!(!pid_alive(pid), "the step survived the cancel");
}

#[test]
fn a_wait_step_goes_on_when_signalled() {
    let k = Kaon::new();
    let wf = k.write(
        "wf.toml",
        r#"
[workflow]
name = "gate"
flow = "prepare -> approval -> deploy"

[steps.prepare]
kind = "command"
command = ["true"]

[steps.approval]
kind = "wait"
signal = "approve"
outputs = { by = "string" }

[steps.deploy]
kind = "command"
command = ["sh", "-c", "echo $1 > deployed.by", "sh", "${approval.by}"]
"#,
    );
    let child = k.spawn(&["run", wf.to_str().unwrap(), "--progress", "plain"]);
    let run = k.wait_run_id();
    k.wait_state(&run, "approval", "running");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!k.path("deployed.by").exists());
    let bad = k.run(&["signal", &run, "approve", "--value", "{not json"]);
    assert!(!bad.status.success());
    let s = k.run(&["signal", &run, "approve", "--value", r#"{"by": "ana"}"#]);
    assert!(s.status.success(), "{}", text(&s));
    let o = wait_output(child, Duration::from_secs(30));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(k.path("deployed.by"))
            .unwrap()
            .trim(),
        "ana"
    );
}

#[test]
fn loops_nested_for_each_and_conditions_run_as_written() {
    let k = Kaon::new();
    let wf = k.write(
        "wf.toml",
        r#"
[workflow]
name = "shapes"
flow = '''
^^(until = ${check.stable}, max = 5) --< (tune, check) >--
  -> regions **(reg = ${regions.list}) --< (**(m = ["gbm", "lin"]) --< (fit) >--) >--
  -> collect ??(${collect.n} > 4) --< (big | small) >--
'''

[steps.tune]
kind = "command"
script = "echo x >> passes"

[steps.check]
kind = "command"
script = '''n=$(wc -l < passes); if [ $n -ge 3 ]; then s=true; else s=false; fi; echo "::kaon::output stable=$s"'''
outputs = { stable = "bool" }

[steps.regions]
kind = "command"
script = '''echo '::kaon::output list=["US","CA","MX"]' '''
outputs = { list = "list<string>" }

[steps.fit]
kind = "command"
command = ["sh", "-c", "echo \"::kaon::output score=\\\"$1-$2\\\"\"", "sh", "${reg}", "${m}"]
outputs = { score = "string" }

[steps.collect]
kind = "command"
command = ["sh", "-c", "echo \"$1\" > scores.json; echo '::kaon::output n=6'", "sh", "${fit.score}"]
outputs = { n = "int" }

[steps.big]
kind = "command"
command = ["touch", "big.ran"]

[steps.small]
kind = "command"
command = ["touch", "small.ran"]
"#,
    );
    let o = k.run(&["run", wf.to_str().unwrap(), "--progress", "plain"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(k.path("passes"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(k.path("scores.json")).unwrap()).unwrap();
    assert_eq!(
        scores,
        serde_json::json!([
            ["US-gbm", "US-lin"],
            ["CA-gbm", "CA-lin"],
            ["MX-gbm", "MX-lin"]
        ])
    );
    assert!(k.path("big.ran").exists());
    assert!(!k.path("small.ran").exists());
    let v = k.show(&k.wait_run_id());
    assert_eq!(nodes_named(&v, "fit").len(), 6);
    assert_eq!(nodes_named(&v, "check").len(), 3);
    assert!(
        nodes_named(&v, "small").is_empty(),
        "the branch not taken never exists"
    );
}

#[test]
fn a_sub_workflow_runs_as_a_child_run_and_hands_back_outputs() {
    let k = Kaon::new();
    k.write(
        "child.toml",
        r#"
[workflow]
name = "child"
flow = "double"

[workflow.outputs]
result = "${double.out}"

[params]
n = { type = "int" }

[steps.double]
kind = "command"
command = ["sh", "-c", "echo ::kaon::output out=$(($1 * 2))", "sh", "${params.n}"]
outputs = { out = "int" }
"#,
    );
    let wf = k.write(
        "parent.toml",
        r#"
[workflow]
name = "parent"
flow = "sub -> use"

[steps.sub]
kind = "subworkflow"
workflow = "child.toml"
params = { n = "21" }

[steps.use]
kind = "command"
command = ["sh", "-c", "echo $1 > result", "sh", "${sub.result}"]
"#,
    );
    let o = k.run(&["run", wf.to_str().unwrap(), "--progress", "plain"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(k.path("result")).unwrap().trim(),
        "42"
    );
    let all = k.run(&["runs", "list", "--all"]);
    let listing = String::from_utf8_lossy(&all.stdout);
    assert!(listing.contains("child"), "{listing}");
    let root = k.run(&["runs", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&root.stdout).lines().count(),
        2,
        "child runs are hidden by default"
    );
}

#[test]
fn bad_parameters_and_workflows_exit_2_with_a_clear_message() {
    let k = Kaon::new();
    let wf = k.write(
        "wf.toml",
        r#"
[workflow]
name = "p"
flow = "a"

[params]
n = { type = "int" }

[steps]
a = { kind = "command", command = ["true"] }
"#,
    );
    let o = k.run(&["run", wf.to_str().unwrap(), "-p", "n=abc", "-p", "m=1"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("parameter `n`: expected an int, got \"abc\""),
        "{err}"
    );
    assert!(err.contains("no parameter `m`"), "{err}");
    let o = k.run(&["run", wf.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("parameter `n` (int) is required"));
    let missing = k.write(
        "missing.toml",
        "[workflow]\nname = \"m\"\nflow = \"a\"\n[steps]\na = { kind = \"command\", command = [\"no-such-program-kaon\"] }\n",
    );
    let o = k.run(&["run", missing.to_str().unwrap(), "--progress", "plain"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("program `no-such-program-kaon` not found on PATH"),
        "{}",
        text(&o)
    );
}

#[test]
fn cancel_reaches_programs_that_ignore_sigterm() {
    let k = Kaon::new();
    let wf = k.write(
        "wf.toml",
        r#"
[workflow]
name = "stubborn"
flow = "stubborn"

[steps.stubborn]
kind = "command"
script = "trap '' TERM; echo $$ > s.pid; while true; do sleep 0.1; done"
"#,
    );
    let child = k.spawn(&[
        "run",
        wf.to_str().unwrap(),
        "--progress",
        "plain",
        "--kill-grace",
        "1s",
    ]);
    let run = k.wait_run_id();
    k.wait_state(&run, "stubborn", "running");
    let pid = read_pid(&k.path("s.pid"));
    let c = k.run(&["cancel", &run]);
    assert!(c.status.success(), "{}", text(&c));
    let o = wait_output(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        !pid_alive(pid),
        "a program ignoring SIGTERM must get SIGKILL after the grace period"
    );
}

#[test]
fn a_run_started_with_a_relative_path_resumes_after_sigkill() {
    let k = Kaon::new();
    k.write(
        "wf.toml",
        r#"
[workflow]
name = "rel"
flow = "first -> second"

[steps.first]
kind = "command"
script = "echo once >> first.log; sleep 1"

[steps.second]
kind = "command"
script = "echo once >> second.log"
"#,
    );
    let mut child = k.spawn(&["run", "wf.toml", "--progress", "plain"]);
    let run = k.wait_run_id();
    k.wait_state(&run, "first", "running");
    child.kill().unwrap();
    child.wait().unwrap();
    let r = k.run(&["runs", "list", "--status", "interrupted"]);
    assert!(
        String::from_utf8_lossy(&r.stdout).contains(&run),
        "{}",
        text(&r)
    );
    let o = k.run(&["resume", &run, "--progress", "plain"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(k.path("first.log")).unwrap(),
        "once\n",
        "re-attached, not run again"
    );
    assert_eq!(
        std::fs::read_to_string(k.path("second.log")).unwrap(),
        "once\n"
    );
    let v = k.show(&run);
    assert_eq!(nodes_named(&v, "first")[0]["attempts"], 1);
}

#[test]
fn a_program_killed_by_sigkill_is_retried_from_the_platform_budget() {
    let k = Kaon::new();
    let wf = k.write(
        "wf.toml",
        r#"
[workflow]
name = "oom"
flow = "victim"

[params]
extra = { type = "json" }

[steps.victim]
kind = "command"
script = '''
echo "${params.extra.a}" > extra.a
if [ ! -e killed ]; then touch killed; kill -KILL $$; fi
'''
"#,
    );
    let o = k.run(&[
        "run",
        wf.to_str().unwrap(),
        "--progress",
        "plain",
        "-p",
        r#"extra={"a": 5}"#,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("killed by signal 9"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(k.path("extra.a")).unwrap().trim(),
        "5",
        "json parameters are parsed"
    );
    let v = k.show(&k.wait_run_id());
    let n = nodes_named(&v, "victim")[0];
    assert_eq!(n["attempts"], 2);
    assert_eq!(n["data"]["platform_failures"], 1);
}

#[test]
fn a_failed_step_is_retried_and_what_succeeded_does_not_run_again() {
    let k = Kaon::new();
    let wf = k.write(
        "wf.toml",
        r#"
[workflow]
name = "mend"
flow = "first -> flaky -> last"

[steps.first]
kind = "command"
command = ["sh", "-c", "echo ran >> first.count"]

[steps.flaky]
kind = "command"
command = ["sh", "-c", "test -e fixed || { echo not fixed >&2; exit 1; }"]

[steps.last]
kind = "command"
command = ["sh", "-c", "echo ran >> last.count"]
"#,
    );
    let o = k.run(&["run", wf.to_str().unwrap(), "--progress", "plain"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let run = k.wait_run_id();
    assert!(!k.path("last.count").exists());
    // Retrying a step that did not fail is refused, and changes nothing.
    let no = k.run(&["retry", &run, "first"]);
    assert_eq!(no.status.code(), Some(2), "{}", text(&no));
    assert!(text(&no).contains("succeeded"), "{}", text(&no));
    std::fs::write(k.path("fixed"), "").unwrap();
    let o = k.run(&["retry", &run, "flaky", "--progress", "plain"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = k.show(&run);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(nodes_named(&v, "first")[0]["attempts"], 1);
    assert_eq!(nodes_named(&v, "flaky")[0]["attempts"], 2);
    assert_eq!(
        std::fs::read_to_string(k.path("first.count")).unwrap(),
        "ran\n"
    );
    assert_eq!(
        std::fs::read_to_string(k.path("last.count")).unwrap(),
        "ran\n"
    );
    // A run that succeeded has nothing to retry.
    let again = k.run(&["retry", &run, "flaky"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
}
