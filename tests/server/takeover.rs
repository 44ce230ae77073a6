//! Two servers on one PostgreSQL: kill -9 the one driving 20 runs; the
//! other finishes them, and no step that had succeeded runs again.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Site, state_of};

const WF: &str = r#"
[workflow]
name = "relay"
flow = "first -> second -> third"

[params]
n = { type = "int" }

[steps.first]
kind = "command"
command = ["sh", "-c", "echo ran >> counts/first-$1", "sh", "${params.n}"]

[steps.second]
kind = "command"
command = ["sh", "-c", "echo ran >> counts/second-$1; sleep 4", "sh", "${params.n}"]

[steps.third]
kind = "command"
command = ["sh", "-c", "echo ran >> counts/third-$1", "sh", "${params.n}"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_finishes_the_runs_of_one_killed() {
    let site = Site::postgres().await;
    let wf = site.write("relay.toml", WF);
    std::fs::create_dir_all(site.path("counts")).unwrap();
    // Both on one data directory (a shared volume: logs and the local
    // steps' exit files are read by whoever drives the run).
    let mut a = site.server();
    let b = site.server();
    a.ready().await;
    b.ready().await;
    a.deploy(&wf).await;
    let mut runs = Vec::new();
    for n in 0..20 {
        runs.push(a.submit("relay", json!({"n": n})).await);
    }
    // Every run past its first step, its second running, on server A.
    for r in &runs {
        let v = a
            .wait(r, Duration::from_secs(60), |v| {
                state_of(v, "second").as_deref() == Some("running")
                    || v["run"]["status"] != "running"
            })
            .await;
        assert_eq!(
            v["run"]["status"], "running",
            "run {r} ended before the kill"
        );
    }
    let owner_a = a.run(&runs[0]).await["run"]["owner"].clone();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a.child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = a.child.wait();
    let killed = Instant::now();
    // B takes them within seconds.
    for r in &runs {
        b.wait(r, Duration::from_secs(20), |v| {
            v["run"]["owner"] != owner_a
                && (v["run"]["status"] != "running" || !v["run"]["owner"].is_null())
        })
        .await;
    }
    let taken = killed.elapsed();
    assert!(taken < Duration::from_secs(15), "took {taken:?}");
    for r in &runs {
        let v = b
            .wait(r, Duration::from_secs(60), |v| {
                v["run"]["status"] != "running"
            })
            .await;
        assert_eq!(v["run"]["status"], "succeeded", "{v:#}");
    }
    for n in 0..20 {
        for step in ["first", "second", "third"] {
            let ran = std::fs::read_to_string(site.path(&format!("counts/{step}-{n}"))).unwrap();
            assert_eq!(
                ran.lines().count(),
                1,
                "{step} of run {n} ran {} times",
                ran.lines().count()
            );
        }
    }
    eprintln!("server B took over 20 runs {taken:?} after the kill");
}

const NAP: &str = r#"
[workflow]
name = "nap"
flow = "nap -> after"

[steps.nap]
kind = "command"
command = ["sh", "-c", "echo ran >> nap.count; sleep 3"]

[steps.after]
kind = "command"
command = ["sh", "-c", "echo ran >> after.count"]
"#;

/// SIGTERM stops the server, not its steps: the next server re-attaches
/// to the step still running, which is not started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_gracefully_leaves_its_steps_running() {
    let site = Site::sqlite();
    let wf = site.write("nap.toml", NAP);
    let mut server = site.server();
    server.ready().await;
    server.deploy(&wf).await;
    let run = server.submit("nap", json!({})).await;
    server
        .wait(&run, Duration::from_secs(30), |v| {
            state_of(v, "nap").as_deref() == Some("running")
        })
        .await;
    // Event streams open at the stop do not hold the server up.
    let _watching = server.events(&run).await;
    let _all = server.all_events().await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopped = Instant::now();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    drop(server);
    let server = site.server();
    server.ready().await;
    let v = server
        .wait(&run, Duration::from_secs(30), |v| {
            v["run"]["status"] != "running"
        })
        .await;
    assert_eq!(v["run"]["status"], "succeeded", "{v:#}");
    for n in v["nodes"].as_array().unwrap() {
        assert_eq!(n["attempt"], 1, "{n}");
    }
    assert_eq!(
        std::fs::read_to_string(site.path("nap.count")).unwrap(),
        "ran\n"
    );
    assert_eq!(
        std::fs::read_to_string(site.path("after.count")).unwrap(),
        "ran\n"
    );
}
