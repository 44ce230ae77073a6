//! The server under load: a real `kaon server`, 200 workflows deployed and
//! 1,000 runs submitted through the HTTP API as fast as a client can, on
//! SQLite and on PostgreSQL.
//!
//! `cargo bench --bench server` prints, per backend: the time to deploy the
//! workflows, submissions per second, steps dispatched per second (step
//! attempts started over the time from the first submission to the last
//! start), runs completed per second, the latency of API reads made while
//! the runs are submitted and while they execute, and the server's memory
//! (RSS before the load, after it, and its peak, `VmHWM`).
//!
//! Each workflow is cheap on purpose (3 or 4 `true` commands: a chain, or
//! a fan-out and join), so what is measured is the server: the API, the
//! runtime's loop, the store. The server gets `--cpus 64 --memory 64g` so
//! that admission does not hold steps back.
//!
//! The reader makes one request every 10 ms (a few dashboards polling),
//! one at a time: four in five read a run picked at random among those
//! submitted, the fifth lists the latest 50 runs. The same reads are timed
//! again once every run has ended, to compare with.
//!
//! Knobs: `KAON_BENCH_BACKENDS=sqlite,postgres` (which, default both),
//! `KAON_BENCH_RUNS` (1000), `KAON_BENCH_WORKFLOWS` (200),
//! `KAON_BENCH_CLIENTS` (concurrent submissions, 32),
//! `KAON_BENCH_READ_EVERY_MS` (10; 0 reads back to back),
//! `KAON_BENCH_CACHE=1` (cached steps: a step's memo key is the same in
//! every run of every workflow, so all but the first few dozen steps are
//! memo hits). PostgreSQL is the one `kaon_pgtest` gives tests
//! (`KAON_TEST_PG_URL`, or a server of its own).
//!
//! "Where the time went" adds the store's commits (`/metrics`), the
//! slowest read and when it came, and, timed after the server stopped,
//! one pass of what the runtime's loop does per live run on timers (a
//! heartbeat, an inbox read). Every read is kept in
//! `target/tmp/bench-server/<backend>/reads.csv`; the server's log is
//! `server.log` beside it. Figures are recorded in docs/benchmarks.md.
#![allow(clippy::unwrap_used, missing_docs)] // a benchmark that cannot proceed should stop

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kaon_store::{AnyStore, Durability, StateStore};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Workflow `i`: even ones a chain of 3 `true`, odd ones a fan-out and
/// join of 4. Uncached unless `cached`: every step of every run is then a
/// process the server starts (cached, the runs of a workflow after its
/// first reuse its results: their memo keys are equal).
fn workflow(i: usize, cached: bool) -> (String, String, usize) {
    let name = format!("load{i:03}");
    let (flow, steps): (&str, &[&str]) = if i.is_multiple_of(2) {
        ("a -> b -> c", &["a", "b", "c"])
    } else {
        ("a ==> (b, c) >== d", &["a", "b", "c", "d"])
    };
    let mut text = format!("[workflow]\nname = \"{name}\"\nflow = \"{flow}\"\n\n[steps]\n");
    for s in steps {
        text.push_str(&format!(
            "{s} = {{ kind = \"command\", command = [\"true\"], cache = {cached} }}\n"
        ));
    }
    (name, text, steps.len())
}

/// A line of `/proc/PID/status`, in MB.
fn proc_mb(pid: u32, field: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

/// CPU seconds (user + system) a process used so far.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 here.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ
}

/// The `q` quantile (nearest rank) of sorted samples.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Lat {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

fn lat(mut v: Vec<f64>) -> Lat {
    v.sort_by(f64::total_cmp);
    Lat {
        n: v.len(),
        p50: quantile(&v, 0.5),
        p99: quantile(&v, 0.99),
        max: v.last().copied().unwrap_or(f64::NAN),
    }
}

/// A `kaon server` of the benchmark's, and where it keeps its data.
struct Server {
    child: Child,
    url: String,
    token: String,
    http: reqwest::Client,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kaon(dir: &Path, db: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kaon"));
    c.current_dir(dir)
        .env("KAON_DATA_DIR", dir.join("data"))
        .env("KAON_DB", db)
        .env("NO_COLOR", "1")
        .env_remove("KAON_SERVER")
        .env_remove("KAON_TOKEN");
    c
}

fn start(dir: &Path, db: &str) -> Server {
    let o = kaon(dir, db)
        .args(["tokens", "create", "bench", "--role", "admin"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "kaon tokens create: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let token = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let log = dir.join("server.log");
    let mut child = kaon(dir, db)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--cpus",
            "64",
            "--memory",
            "64g",
        ])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines {}
    });
    let first = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the server printed no address; see {}", log.display()));
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in `{first}`"))
        .to_string();
    Server {
        child,
        url,
        token,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap(),
        log,
    }
}

impl Server {
    async fn ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.url)).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the server is not ready; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let s = r.status();
        let text = r.text().await.unwrap();
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        let text = r.text().await.unwrap();
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of a metric line (`name{labels} value`) starting with `prefix`.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// What one backend measured.
struct Outcome {
    backend: &'static str,
    workflows: usize,
    deploy_s: f64,
    runs: usize,
    submit_errors: usize,
    submit_s: f64,
    submit_lat: Lat,
    steps: usize,
    /// First submission to last step start.
    dispatch_s: f64,
    /// Steps started before the last submission was answered.
    steps_during_submit: usize,
    /// First submission to last run end.
    complete_s: f64,
    not_succeeded: usize,
    turnaround: Lat,
    reads: Vec<(&'static str, &'static str, Lat)>,
    rss_before: f64,
    rss_after: f64,
    rss_peak: f64,
    cpu_s: f64,
    commits: f64,
    commit_mean_ms: f64,
    commits_over_10ms: f64,
    commits_over_100ms: f64,
    /// The slowest read under load: (ms, when in ms after the first
    /// submission).
    slowest: (f64, i64),
    hb_pass_ms: f64,
    inbox_pass_ms: f64,
}

/// What the runtime's loop does for every live run on a timer, timed
/// through the store API it uses, once the server is gone (nothing else
/// on the database): a heartbeat of each run (every 5 s) and a read of
/// each run's inbox (every 200 ms). Each is one statement per run, one
/// after the other; returns the ms of one pass of each over `ids`.
async fn probe(db: &str, ids: &[String]) -> (f64, f64) {
    let store = AnyStore::open(db, Durability::Full).await.unwrap();
    let now = epoch_ms();
    for id in ids {
        store
            .claim(id, None, Some("bench-probe"), now)
            .await
            .unwrap();
    }
    let t = Instant::now();
    for id in ids {
        assert!(store.heartbeat(id, "bench-probe", now + 1).await.unwrap());
    }
    let hb = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    for id in ids {
        store.inbox(id).await.unwrap();
    }
    (hb, t.elapsed().as_secs_f64() * 1000.0)
}

/// A read made by the reader: when, in which phase of the load, what,
/// and how long it took (ms).
struct Read {
    /// Epoch ms when it was sent.
    at: i64,
    phase: &'static str,
    what: &'static str,
    ms: f64,
}

/// One read as the reader makes them: every fifth a list of the latest
/// 50 runs, else a run picked at random among those submitted so far.
/// `None` while there is no run to read.
async fn read_once(
    server: &Server,
    ids: &Mutex<Vec<String>>,
    k: u64,
    rng: &mut u64,
) -> Option<(&'static str, f64)> {
    let (what, path) = if k.is_multiple_of(5) {
        (
            "GET /api/v1/runs?limit=50",
            "/api/v1/runs?limit=50".to_string(),
        )
    } else {
        let ids = ids.lock().unwrap();
        if ids.is_empty() {
            return None;
        }
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let id = &ids[(*rng % ids.len() as u64) as usize];
        ("GET /api/v1/runs/{id}", format!("/api/v1/runs/{id}"))
    };
    let t = Instant::now();
    let (s, v) = server.get(&path).await;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(s, StatusCode::OK, "{path}: {v}");
    Some((what, ms))
}

async fn measure(backend: &'static str, dir: &Path, db: &str) -> Outcome {
    let n_workflows = env_num("KAON_BENCH_WORKFLOWS", 200);
    let n_runs = env_num("KAON_BENCH_RUNS", 1000);
    let clients = env_num("KAON_BENCH_CLIENTS", 32).max(1);
    let cached = std::env::var("KAON_BENCH_CACHE").is_ok_and(|v| v == "1");
    let read_every = Duration::from_millis(env_num("KAON_BENCH_READ_EVERY_MS", 10) as u64);
    let server = Arc::new(start(dir, db));
    let pid = server.child.id();
    server.ready().await;

    // 1. Deploy, one after the other (as `kaon deploy` of each would).
    let wf_dir = dir.join("workflows");
    std::fs::create_dir_all(&wf_dir).unwrap();
    let mut names = Vec::new();
    let mut steps_of = std::collections::HashMap::new();
    for i in 0..n_workflows {
        let (name, text, steps) = workflow(i, cached);
        let p = wf_dir.join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        steps_of.insert(name.clone(), steps);
        names.push((name, p));
    }
    let t = Instant::now();
    for (_, p) in &names {
        let (s, v) = server
            .post(
                "/api/v1/workflows",
                &json!({"path": p.display().to_string()}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "deploy {}: {v}", p.display());
    }
    let deploy_s = t.elapsed().as_secs_f64();
    let names: Arc<Vec<String>> = Arc::new(names.into_iter().map(|(n, _)| n).collect());
    let rss_before = proc_mb(pid, "VmRSS:");

    // 2. Submit as fast as `clients` concurrent requests go, while a
    // reader reads runs and lists in a loop.
    let ids: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::with_capacity(n_runs)));
    let submitting = Arc::new(AtomicBool::new(true));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let server = server.clone();
        let ids = ids.clone();
        let submitting = submitting.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut reads = Vec::new();
            let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut k = 0u64;
            let mut tick = tokio::time::interval(read_every.max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !done.load(Ordering::Relaxed) {
                if !read_every.is_zero() {
                    tick.tick().await;
                }
                let phase = if submitting.load(Ordering::Relaxed) {
                    "during submissions"
                } else {
                    "while runs execute"
                };
                k += 1;
                let at = epoch_ms();
                match read_once(&server, &ids, k, &mut rng).await {
                    Some((what, ms)) => reads.push(Read {
                        at,
                        phase,
                        what,
                        ms,
                    }),
                    None => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
            reads
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let t0_ms = epoch_ms();
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (server, ids, next, errors, names) = (
            server.clone(),
            ids.clone(),
            next.clone(),
            errors.clone(),
            names.clone(),
        );
        tasks.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n_runs {
                    return lat;
                }
                let body = json!({"workflow": names[i % names.len()]});
                let t = Instant::now();
                let (s, v) = server.post("/api/v1/runs", &body).await;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                if s == StatusCode::CREATED {
                    ids.lock()
                        .unwrap()
                        .push(v["id"].as_str().unwrap().to_string());
                } else if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("{backend}: a submission was refused: {s} {v}");
                }
            }
        });
    }
    let mut submit_lat = Vec::new();
    while let Some(l) = tasks.join_next().await {
        submit_lat.extend(l.unwrap());
    }
    let submit_s = t0.elapsed().as_secs_f64();
    let submit_end_ms = epoch_ms();
    submitting.store(false, Ordering::Relaxed);

    // 3. Wait for every run to end.
    loop {
        let (s, v) = server.get("/api/v1/runs?status=running&limit=1").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if v.as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "runs still running after 15 minutes; see {}",
            server.log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, Ordering::Relaxed);
    let mut reads = reader.await.unwrap();
    // The same reads with nothing else going on, to compare with.
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    for k in 1..=500 {
        let at = epoch_ms();
        let (what, ms) = read_once(&server, &ids, k, &mut rng).await.unwrap();
        reads.push(Read {
            at,
            phase: "idle, after the load",
            what,
            ms,
        });
    }

    // 4. What the runs say: step starts, run ends.
    let ids: Vec<String> = ids.lock().unwrap().clone();
    let mut details = Vec::new();
    for chunk in ids.chunks(16) {
        let mut set = tokio::task::JoinSet::new();
        for id in chunk {
            let (server, id) = (server.clone(), id.clone());
            set.spawn(async move { server.get(&format!("/api/v1/runs/{id}")).await });
        }
        while let Some(r) = set.join_next().await {
            let (s, v) = r.unwrap();
            assert_eq!(s, StatusCode::OK, "{v}");
            details.push(v);
        }
    }
    let mut steps = 0usize;
    let mut steps_during_submit = 0usize;
    let mut last_start = t0_ms;
    let mut last_end = t0_ms;
    let mut not_succeeded = 0;
    let mut turnaround = Vec::new();
    for d in &details {
        let run = &d["run"];
        if run["status"] != "succeeded" {
            not_succeeded += 1;
        }
        let created = run["created_ms"].as_i64().unwrap();
        if let Some(f) = run["finished_ms"].as_i64() {
            last_end = last_end.max(f);
            turnaround.push((f - created) as f64);
        }
        for n in d["nodes"].as_array().unwrap() {
            if n["kind"] != "command" {
                continue;
            }
            let Some(s) = n["started_ms"].as_i64() else {
                continue;
            };
            steps += n["attempt"].as_u64().unwrap_or(1) as usize;
            last_start = last_start.max(s);
            if s <= submit_end_ms {
                steps_during_submit += 1;
            }
        }
    }
    let expected: usize = (0..ids.len())
        .map(|i| steps_of[&names[i % names.len()]])
        .sum();
    if steps < expected {
        eprintln!("{backend}: {steps} step attempts started, {expected} expected");
    }

    // 5. Memory and the store's commit times.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = proc_mb(pid, "VmRSS:");
    let rss_peak = proc_mb(pid, "VmHWM:");
    let cpu_s = cpu_secs(pid);
    let m = server.metrics().await;
    let commits = metric(&m, "kaon_store_commit_seconds_count");
    let commit_sum = metric(&m, "kaon_store_commit_seconds_sum");
    let bucket = |le: &str| {
        metric(
            &m,
            &format!("kaon_store_commit_seconds_bucket{{backend=\"{backend}\",le=\"{le}\"}}"),
        )
    };
    let (under_10ms, under_100ms) = (bucket("0.01"), bucket("0.1"));

    drop(server);
    let (hb_pass_ms, inbox_pass_ms) = probe(db, &ids).await;

    // Every read, for a closer look (`at`: ms since the first submission).
    let mut csv = String::from("at_ms,phase,request,ms\n");
    for r in &reads {
        csv.push_str(&format!(
            "{},\"{}\",{},{:.3}\n",
            r.at - t0_ms,
            r.phase,
            r.what,
            r.ms
        ));
    }
    std::fs::write(dir.join("reads.csv"), csv).unwrap();
    let slowest = reads
        .iter()
        .filter(|r| r.phase != "idle, after the load")
        .map(|r| (r.ms, r.at - t0_ms))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((f64::NAN, 0));
    let mut by: Vec<(&'static str, &'static str, Vec<f64>)> = Vec::new();
    for r in reads {
        match by
            .iter_mut()
            .find(|(p, w, _)| *p == r.phase && *w == r.what)
        {
            Some((_, _, v)) => v.push(r.ms),
            None => by.push((r.phase, r.what, vec![r.ms])),
        }
    }
    let rank = |p: &str| {
        ["during submissions", "while runs execute"]
            .iter()
            .position(|x| *x == p)
            .unwrap_or(2)
    };
    by.sort_by_key(|(p, w, _)| (rank(p), *w));
    Outcome {
        backend,
        workflows: n_workflows,
        deploy_s,
        runs: ids.len(),
        submit_errors: errors.load(Ordering::Relaxed),
        submit_s,
        submit_lat: lat(submit_lat),
        steps,
        dispatch_s: (last_start - t0_ms) as f64 / 1000.0,
        steps_during_submit,
        complete_s: (last_end - t0_ms) as f64 / 1000.0,
        not_succeeded,
        turnaround: lat(turnaround),
        reads: by.into_iter().map(|(p, w, v)| (p, w, lat(v))).collect(),
        rss_before,
        rss_after,
        rss_peak,
        cpu_s,
        commits,
        commit_mean_ms: commit_sum / commits * 1000.0,
        commits_over_10ms: commits - under_10ms,
        commits_over_100ms: commits - under_100ms,
        slowest,
        hb_pass_ms,
        inbox_pass_ms,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` and nextest's
    // listing run without it and must stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-server");
    let _ = std::fs::remove_dir_all(&base);
    let backends =
        std::env::var("KAON_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let mut out = Vec::new();
    for b in backends.split(',').map(str::trim) {
        let dir = base.join(b);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let o = match b {
            "sqlite" => {
                let db = dir.join("data/kaon.db").display().to_string();
                rt.block_on(measure("sqlite", &dir, &db))
            }
            "postgres" => {
                let pg = rt.block_on(kaon_pgtest::database());
                let o = rt.block_on(measure("postgres", &dir, pg.url()));
                drop(pg);
                o
            }
            other => panic!("KAON_BENCH_BACKENDS: `{other}` is not sqlite or postgres"),
        };
        out.push(o);
    }

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "## Server under load ({cpus} cores): {} workflows deployed, {} runs submitted through the API\n",
        out.first().map_or(0, |o| o.workflows),
        out.first().map_or(0, |o| o.runs + o.submit_errors)
    );
    println!(
        "| backend | deploy | submissions/s | submit p50 / p99 | step attempts | steps dispatched/s | runs completed/s | RSS before / after / peak |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for o in &out {
        println!(
            "| {} | {} in {:.2}s | **{:.0}** ({} in {:.2}s{}) | {:.1} / {:.1} ms | {} | {:.0} ({:.2}s) | {:.0} ({:.2}s) | {:.0} / {:.0} / {:.0} MB |",
            o.backend,
            o.workflows,
            o.deploy_s,
            o.runs as f64 / o.submit_s,
            o.runs,
            o.submit_s,
            if o.submit_errors > 0 {
                format!(", {} refused", o.submit_errors)
            } else {
                String::new()
            },
            o.submit_lat.p50,
            o.submit_lat.p99,
            o.steps,
            o.steps as f64 / o.dispatch_s,
            o.dispatch_s,
            o.runs as f64 / o.complete_s,
            o.complete_s,
            o.rss_before,
            o.rss_after,
            o.rss_peak,
        );
    }
    let every = env_num("KAON_BENCH_READ_EVERY_MS", 10);
    println!(
        "\n### API reads under load (one reader, {})\n",
        if every == 0 {
            "requests back to back".to_string()
        } else {
            format!("a request every {every} ms")
        }
    );
    println!("| backend | when | request | reads | p50 | p99 | max |");
    println!("|---|---|---|---:|---:|---:|---:|");
    for o in &out {
        for (phase, what, l) in &o.reads {
            println!(
                "| {} | {phase} | `{what}` | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
                o.backend, l.n, l.p50, l.p99, l.max
            );
        }
    }
    println!("\n### Where the time went\n");
    println!(
        "| backend | steps started during submissions | run turnaround p50 / p99 / max | runs not succeeded | server CPU | store commits | mean commit | commits > 10 / 100 ms | slowest read under load | heartbeat pass | inbox pass |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in &out {
        println!(
            "| {} | {} of {} | {:.0} / {:.0} / {:.0} ms | {} | {:.1}s | {:.0} | {:.2} ms | {:.0} / {:.0} | {:.0} ms at {:.1}s | {:.0} ms | {:.0} ms |",
            o.backend,
            o.steps_during_submit,
            o.steps,
            o.turnaround.p50,
            o.turnaround.p99,
            o.turnaround.max,
            o.not_succeeded,
            o.cpu_s,
            o.commits,
            o.commit_mean_ms,
            o.commits_over_10ms,
            o.commits_over_100ms,
            o.slowest.0,
            o.slowest.1 as f64 / 1000.0,
            o.hb_pass_ms,
            o.inbox_pass_ms,
        );
    }
}
