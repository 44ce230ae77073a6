//! Schedules fire each tick exactly once, across kill -9 of the server;
//! triggers start a workflow with another's outputs.

use std::collections::BTreeSet;
use std::time::Duration;

use kaon_store::{ServiceStore, StateStore, TickRow};
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Site;

const EVERY_SECOND: &str = r#"
[workflow]
name = "tick"
flow = "note"

[params]
label = { type = "string" }

[[workflow.schedule]]
name = "each-second"
cron = "* * * * * *"
params = { label = "scheduled" }
catch_up = "all"
catch_up_limit = 1000
concurrency = "allow"

[steps.note]
kind = "command"
command = ["true"]
"#;

fn kill9(server: &mut crate::harness::Server) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = server.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_each_tick_once_across_kill_9() {
    let site = Site::sqlite();
    let wf = site.write("tick.toml", EVERY_SECOND);
    let mut server = site.server();
    server.ready().await;
    let d = server.deploy(&wf).await;
    assert_eq!(d["schedules"], json!(["tick:each-second"]), "{d}");
    // Kill -9 at moments that fall anywhere within a tick, three times;
    // the server is down for ticks in between.
    for (up, down) in [(2300, 1700), (3100, 1200), (1900, 2600)] {
        tokio::time::sleep(Duration::from_millis(up)).await;
        kill9(&mut server);
        tokio::time::sleep(Duration::from_millis(down)).await;
        server = site.server();
        server.ready().await;
    }
    // A tick recorded by a server that died before it created the run:
    // the next server starts that run, once.
    {
        let store = kaon_store::SqliteStore::open(
            &site.data().join("kaon.db"),
            kaon_store::Durability::Full,
        )
        .await
        .unwrap();
        let recorded = store
            .record_tick(&TickRow {
                schedule: "tick:each-second".into(),
                tick: "2001-01-01T00:00:00.000Z".into(),
                due_ms: 978_307_200_000,
                run: Some("20010101-000000-beef".into()),
                outcome: "pending".into(),
                params: json!({"label": "planted"}).to_string(),
                created_ms: 978_307_200_000,
            })
            .await
            .unwrap();
        assert!(recorded);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The list says when an active schedule fires next: within a second.
    let listed = server.get("/api/v1/schedules").await;
    let next = listed[0]["next_ms"]
        .as_i64()
        .expect("an active cron schedule has a next tick");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        next > now - 1000 && next <= now + 1000,
        "next {next}, now {now}"
    );
    // Pause: no more ticks; then stop the server gracefully and read the
    // store.
    let (s, _) = server
        .post("/api/v1/schedules/tick:each-second/pause", json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let listed = server.get("/api/v1/schedules").await;
    assert!(
        listed[0]["next_ms"].is_null(),
        "a paused schedule fires never: {listed}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let planted = server.run("20010101-000000-beef").await;
    assert_eq!(planted["run"]["params"]["label"], "planted");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = server.child.wait();

    let store =
        kaon_store::SqliteStore::open(&site.data().join("kaon.db"), kaon_store::Durability::Full)
            .await
            .unwrap();
    let ticks = store.ticks("tick:each-second", 10_000).await.unwrap();
    let mut seconds: Vec<i64> = ticks
        .iter()
        .filter(|t| t.due_ms > 978_307_200_000)
        .map(|t| t.due_ms)
        .collect();
    seconds.sort();
    assert!(seconds.len() >= 12, "too few ticks: {ticks:#?}");
    // Every second from the first tick to the last, each once: none
    // lost to a kill, none fired twice.
    for w in seconds.windows(2) {
        assert_eq!(w[1] - w[0], 1000, "a gap or a repeat: {seconds:?}");
    }
    let mut runs = BTreeSet::new();
    for t in &ticks {
        assert_eq!(t.outcome, "started", "{t:?}");
        let run = t.run.clone().expect("a started tick has its run");
        assert!(runs.insert(run.clone()), "run {run} started by two ticks");
        let row = store
            .run(&run)
            .await
            .unwrap()
            .expect("the tick's run exists");
        assert_eq!(row.workflow, "tick");
    }
    // And no run of the workflow that no tick accounts for.
    let all = store
        .list_runs(&kaon_store::RunFilter::default())
        .await
        .unwrap();
    let of_wf: BTreeSet<String> = all
        .into_iter()
        .filter(|r| r.workflow == "tick")
        .map(|r| r.id)
        .collect();
    assert_eq!(of_wf, runs);
}

/// The first run of a workflow, waiting for one to exist.
async fn first_run_of(server: &crate::harness::Server, workflow: &str) -> serde_json::Value {
    let start = std::time::Instant::now();
    loop {
        let runs = server
            .get(&format!("/api/v1/runs?workflow={workflow}"))
            .await;
        if let Some(r) = runs.as_array().unwrap().first() {
            return r.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no run of {workflow}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const UP: &str = r#"
[workflow]
name = "ingest"
flow = "load"

[workflow.outputs]
day = "${load.day}"

[steps.load]
kind = "command"
command = ["sh", "-c", "echo '{\"day\": \"2026-11-27\"}' > \"$KAON_OUTPUTS_FILE\""]
outputs = { day = "string" }
"#;

const DOWN: &str = r#"
[workflow]
name = "report"
flow = "write"

[params]
day = { type = "string" }

[[workflow.trigger]]
name = "after-ingest"
on_success = "ingest"
params = { day = "${outputs.day}" }

[steps.write]
kind = "command"
command = ["echo", "${params.day}"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_starts_a_run_with_the_upstream_outputs() {
    let site = Site::sqlite();
    let up = site.write("ingest.toml", UP);
    let down = site.write("report.toml", DOWN);
    let server = site.server();
    server.ready().await;
    server.deploy(&up).await;
    server.deploy(&down).await;
    let id = server.submit("ingest", json!({})).await;
    let report = first_run_of(&server, "report").await;
    assert_eq!(report["params"]["day"], "2026-11-27", "{report}");
    let ticks = server
        .get("/api/v1/schedules/report:after-ingest/ticks")
        .await;
    assert_eq!(ticks.as_array().unwrap().len(), 1, "{ticks}");
    assert_eq!(ticks[0]["tick"], id.as_str());
    let done = server
        .wait(
            report["id"].as_str().unwrap(),
            Duration::from_secs(30),
            |v| v["run"]["status"] != "running",
        )
        .await;
    assert_eq!(done["run"]["status"], "succeeded", "{done}");

    // Trigger by hand: another run, with the parameter given.
    let (s, v) = server
        .post(
            "/api/v1/schedules/report:after-ingest/trigger",
            json!({"params": {"day": "2026-12-01"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let by_hand = server.run(v["run"].as_str().unwrap()).await;
    assert_eq!(by_hand["run"]["params"]["day"], "2026-12-01");
}

fn policy_flow(name: &str, concurrency: &str) -> String {
    format!(
        r#"
[workflow]
name = "{name}"
flow = "slow"

[[workflow.schedule]]
name = "each-second"
cron = "* * * * * *"
concurrency = "{concurrency}"

[steps.slow]
kind = "command"
cache = false
command = ["sh", "-c", "echo start $(date +%s%N) >> {name}.log; sleep 2.5; echo end $(date +%s%N) >> {name}.log"]
"#
    )
}

/// `skip` drops a tick while the schedule's run is running; `queue`
/// keeps it and starts it after: either way, runs of the schedule never
/// overlap, and every tick is accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_and_queue_never_overlap_runs() {
    let site = Site::sqlite();
    let skip = site.write("skip.toml", &policy_flow("skipper", "skip"));
    let queue = site.write("queue.toml", &policy_flow("queuer", "queue"));
    let server = site.server();
    server.ready().await;
    server.deploy(&skip).await;
    server.deploy(&queue).await;
    tokio::time::sleep(Duration::from_millis(6500)).await;
    for id in ["skipper:each-second", "queuer:each-second"] {
        let (s, _) = server
            .post(&format!("/api/v1/schedules/{id}/pause"), json!({}))
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let skipped = server
        .get("/api/v1/schedules/skipper:each-second/ticks")
        .await;
    let outcomes: Vec<&str> = skipped
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.iter().any(|o| o.starts_with("skipped: run ")),
        "{outcomes:?} {:?} {}",
        std::fs::read_to_string(site.path("skipper.log")),
        server.get("/api/v1/runs?workflow=skipper").await
    );
    assert!(outcomes.contains(&"started"), "{outcomes:?}");
    let queued = server
        .get("/api/v1/schedules/queuer:each-second/ticks")
        .await;
    let q: Vec<&str> = queued
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["outcome"].as_str().unwrap())
        .collect();
    // Queued ticks start later, one at a time: none is dropped.
    assert!(q.len() >= 5, "{q:?}");
    assert!(!q.iter().any(|o| o.starts_with("skipped")), "{q:?}");
    let late = queued
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["outcome"] == "queued")
        .count();
    assert!(late > 0, "nothing waited in the queue: {queued}");
    // Let the queue drain a little, then read the logs: no start while a
    // run of the same schedule had not ended.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    for name in ["skipper", "queuer"] {
        let log = std::fs::read_to_string(site.path(&format!("{name}.log"))).unwrap();
        let mut running = false;
        let mut starts = 0;
        for line in log.lines() {
            if line.starts_with("start") {
                assert!(!running, "{name}: two runs at once:\n{log}");
                running = true;
                starts += 1;
            } else {
                running = false;
            }
        }
        assert!(starts >= 2, "{name}: {log}");
    }
}

/// A trigger fires for a success the server did not see happen: the
/// upstream run was driven by another process (here `kaon run` on the
/// same database), as it would be by another server, or before a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_fires_for_a_success_another_process_drove() {
    let site = Site::sqlite();
    let up = site.write("ingest.toml", UP);
    let down = site.write("report.toml", DOWN);
    let server = site.server();
    server.ready().await;
    server.deploy(&down).await;
    let o = site
        .cmd(&["run", up.to_str().unwrap(), "--progress", "none"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = first_run_of(&server, "report").await;
    assert_eq!(report["params"]["day"], "2026-11-27", "{report}");
    // Once: later turns find the tick recorded.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let runs = server.get("/api/v1/runs?workflow=report").await;
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
}

const LONG_SKIP: &str = r#"
[workflow]
name = "long"
flow = "work"

[[workflow.schedule]]
name = "each-second"
cron = "* * * * * *"
concurrency = "skip"

[steps.work]
kind = "command"
cache = false
command = ["sh", "-c", "echo start >> long.log; sleep 20; echo end >> long.log"]
"#;

/// However many ticks were skipped since a schedule's run started, `skip`
/// still sees that run going (it once looked at the newest 20 ticks only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_sees_its_run_past_many_skipped_ticks() {
    let site = Site::sqlite();
    let wf = site.write("long.toml", LONG_SKIP);
    let mut server = site.server();
    server.ready().await;
    server.deploy(&wf).await;
    let id = "long:each-second";
    let started = loop {
        let ticks = server.get(&format!("/api/v1/schedules/{id}/ticks")).await;
        if let Some(t) = ticks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["outcome"] == "started")
        {
            break t.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Stop the server (the run's step goes on) and record 30 skipped
    // ticks after the started one, as 30 seconds of skipping would.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = server.child.wait();
    {
        let store = kaon_store::SqliteStore::open(
            &site.data().join("kaon.db"),
            kaon_store::Durability::Full,
        )
        .await
        .unwrap();
        let from = started["due_ms"].as_i64().unwrap();
        for k in 1..=30 {
            let due = from + k * 10;
            assert!(
                store
                    .record_tick(&TickRow {
                        schedule: id.into(),
                        tick: format!("planted-{k:02}"),
                        due_ms: due,
                        run: None,
                        outcome: "skipped: planted".into(),
                        params: "{}".into(),
                        created_ms: due,
                    })
                    .await
                    .unwrap()
            );
        }
    }
    server = site.server();
    server.ready().await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let ticks = server
        .get(&format!("/api/v1/schedules/{id}/ticks?limit=100"))
        .await;
    let starts: Vec<&serde_json::Value> = ticks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["outcome"] == "started" || t["outcome"] == "pending")
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "a second run started while the first ran: {ticks:#}"
    );
    let log = std::fs::read_to_string(site.path("long.log")).unwrap();
    assert_eq!(log, "start\n");
    drop(server);
}
