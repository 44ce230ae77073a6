//! Orchestration benchmarks: what kaon costs beyond the processes it runs.
//!
//! `cargo bench --bench orchestration` prints a table:
//! - the engine alone (no processes) on 100,000 steps, with the in-memory
//!   store and with SQLite on disk;
//! - `kaon run` of a chain of 1,000 `true` commands and of for-each blocks
//!   of 1,000, 10,000 and 30,000 `true` commands, next to a plain shell
//!   spawning the same processes (a loop, and `xargs -P` at the same
//!   parallelism), with kaon's peak RSS.
//!
//! `KAON_BENCH_SIZES=1000,10000` limits the sweeps (the 30,000 case takes
//! about a minute).
#![allow(clippy::unwrap_used, missing_docs)] // a benchmark that cannot proceed should stop

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kaon_engine::{Action, Event, Exit, NodeId, Program, RunOptions, RunState};
use kaon_store::{Batch, Durability, MemoryStore, RunRow, SqliteStore, StateStore};
use serde_json::{Map, Value, json};

fn sweep_workflow(n: usize, body: &str) -> String {
    let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    format!(
        "[workflow]\nname = \"sweep\"\nflow = \"**(i = items) --< (t) >--\"\n\n[params]\nitems = {{ type = \"list<int>\", default = [{}] }}\n\n[steps.t]\n{body}\n",
        items.join(",")
    )
}

fn chain_workflow(n: usize) -> String {
    let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let mut wf = format!(
        "[workflow]\nname = \"chain\"\nflow = \"{}\"\n\n[steps]\n",
        names.join(" -> ")
    );
    for s in &names {
        wf.push_str(&format!(
            "{s} = {{ kind = \"command\", command = [\"true\"] }}\n"
        ));
    }
    wf
}

fn program(text: &str) -> (Arc<Program>, Map<String, Value>) {
    let loaded = kaon_model::load_str(Path::new("/tmp/bench/wf.toml"), text);
    let v = loaded.result.unwrap();
    let params = kaon_engine::eval::bind_params(&v.workflow.params, &Map::new()).unwrap();
    (
        Arc::new(Program::new(Arc::new(v), "/tmp/bench".into())),
        params,
    )
}

/// What the driver commits for one tick: the same conversion, so the
/// benchmark measures the real rows.
fn batch(run: &str, state: &mut RunState, now: u64) -> (Batch, usize) {
    let d = state.take_delta();
    (
        kaon_runtime::rows::to_batch(run, &d, vec![], now),
        d.nodes.len(),
    )
}

fn run_row(id: &str) -> RunRow {
    RunRow {
        id: id.into(),
        workflow: "bench".into(),
        path: "/tmp/bench/wf.toml".into(),
        digest: "-".into(),
        params: "{}".into(),
        options: "{}".into(),
        parent: None,
        status: kaon_store::row::RunStatus::Running,
        data: "{}".into(),
        created_ms: 0,
        finished_ms: None,
        owner: None,
        heartbeat_ms: None,
    }
}

/// Plays the executor for `n` command steps: every ready step is admitted,
/// launched and exits 0; changes are committed every `tick` events, as the
/// driver does. Returns (events applied, rows written, seconds).
async fn engine_run(store: &impl StateStore, n: usize, tick: usize) -> (usize, usize, f64) {
    let (prog, params) = program(&sweep_workflow(
        n,
        "kind = \"command\"\ncommand = [\"true\"]",
    ));
    let id = format!("bench-{n}-{tick}");
    store.create_run(&run_row(&id)).await.unwrap();
    let start = Instant::now();
    let mut state = RunState::new(id.clone(), prog, params, RunOptions::default());
    let mut queue: Vec<Event> = vec![Event::RunStarted];
    let mut events = 0;
    let mut rows = 0;
    let mut now = 1_000u64;
    while !queue.is_empty() {
        let take = queue.len().min(tick);
        let batch_events: Vec<Event> = queue.drain(..take).collect();
        let mut next = Vec::new();
        let mut now_queue: std::collections::VecDeque<Event> = batch_events.into();
        while let Some(ev) = now_queue.pop_front() {
            events += 1;
            now += 1;
            for a in state.apply(ev, now).unwrap() {
                match a {
                    Action::Enqueue { node, .. } => next.push(Event::StepAdmitted { node }),
                    // The runtime's memo lookup, answered "no earlier
                    // result" in the same turn, as the runtime does (its
                    // answer changes nothing to commit): one more event
                    // per cached step than before it was an engine action.
                    Action::LookupMemo(o) => now_queue.push_front(Event::MemoMiss {
                        node: o.node,
                        attempt: o.attempt,
                        key: None,
                    }),
                    Action::Launch(o) => {
                        next.push(Event::StepLaunched {
                            node: o.node,
                            attempt: o.attempt,
                            handle: json!({"pid": 1}),
                            memo_key: None,
                        });
                        next.push(exited(o.node, o.attempt));
                    }
                    _ => {}
                }
            }
        }
        let (b, r) = batch(&id, &mut state, now);
        rows += r;
        store.commit(&[b]).await.unwrap();
        queue.extend(next);
    }
    assert_eq!(state.status, kaon_engine::RunStatus::Succeeded);
    (events, rows, start.elapsed().as_secs_f64())
}

fn exited(node: NodeId, attempt: u32) -> Event {
    Event::StepExited {
        node,
        attempt,
        exit: Exit::Code { code: 0 },
        outputs: Map::new(),
        problems: vec![],
        artifacts: vec![],
        reads: vec![],
    }
}

/// 100,000 no-op steps expand and finish in one tick.
async fn engine_noops(store: &impl StateStore, n: usize) -> (usize, f64) {
    let (prog, params) = program(&sweep_workflow(n, "kind = \"noop\""));
    let id = format!("noop-{n}");
    store.create_run(&run_row(&id)).await.unwrap();
    let start = Instant::now();
    let mut state = RunState::new(id.clone(), prog, params, RunOptions::default());
    state.apply(Event::RunStarted, 1).unwrap();
    let (b, rows) = batch(&id, &mut state, 1);
    store.commit(&[b]).await.unwrap();
    assert_eq!(state.status, kaon_engine::RunStatus::Succeeded);
    (rows, start.elapsed().as_secs_f64())
}

/// Peak RSS of a running process (VmHWM), in MB.
fn hwm_mb(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn time_cmd(c: &mut Command) -> f64 {
    let start = Instant::now();
    let s = c.status().unwrap();
    assert!(s.success(), "{c:?} failed");
    start.elapsed().as_secs_f64()
}

/// Runs a workflow; returns (wall seconds, peak RSS in MB). The peak is
/// kaon's VmHWM, read every 20 ms while it runs (it only grows, so the
/// last reading is the peak up to 20 ms before the end).
fn kaon_run(dir: &Path, wf: &Path, cpus: u32) -> (f64, f64) {
    let _ = std::fs::remove_dir_all(dir.join(".kaon"));
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaon"))
        .args([
            "run",
            wf.to_str().unwrap(),
            "--progress",
            "none",
            "--cpus",
            &cpus.to_string(),
        ])
        .current_dir(dir)
        .env("KAON_DATA_DIR", dir.join(".kaon"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0.0f64;
    loop {
        if let Some(m) = hwm_mb(child.id()) {
            peak = peak.max(m);
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "kaon run {} failed", wf.display());
            return (start.elapsed().as_secs_f64(), peak);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What kaon wraps each step in (see kaon-exec): the program, then its exit
/// status written to a file.
const WRAPPER: &str = r#""$@"; s=$?; printf '%s\n' "$s" > "$0.exit"; exit "$s""#;

fn step_cmd(wrapped: bool, tmp: &Path) -> String {
    if wrapped {
        format!(
            "sh -c '{}' {}/w /bin/true",
            WRAPPER.replace('\'', "'\\''"),
            tmp.display()
        )
    } else {
        "/bin/true".to_string()
    }
}

fn shell_loop(n: usize, wrapped: bool, tmp: &Path) -> f64 {
    let cmd = step_cmd(wrapped, tmp);
    time_cmd(Command::new("sh").args([
        "-c",
        &format!("i=0; while [ $i -lt {n} ]; do {cmd}; i=$((i+1)); done"),
    ]))
}

fn shell_parallel(n: usize, p: u32, wrapped: bool, tmp: &Path) -> f64 {
    let cmd = step_cmd(wrapped, tmp);
    time_cmd(Command::new("sh").args(["-c", &format!("seq {n} | xargs -P {p} -n 1 {cmd}")]))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs with no
    // such flag and must stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-orchestration");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();

    println!("## Engine alone (no processes), 100,000 steps\n");
    println!("| case | store | events | rows written | wall | events/s |");
    println!("|---|---|---:|---:|---:|---:|");
    rt.block_on(async {
        let mem = MemoryStore::new();
        let (rows, t) = engine_noops(&mem, 100_000).await;
        println!("| for-each of 100,000 noop | memory | 1 | {rows} | {:.2}s | {:.0} rows/s |", t, rows as f64 / t);
        let sq = SqliteStore::open(&base.join("engine.db"), Durability::Full).await.unwrap();
        let (rows, t) = engine_noops(&sq, 100_000).await;
        println!("| for-each of 100,000 noop | sqlite (full) | 1 | {rows} | {:.2}s | {:.0} rows/s |", t, rows as f64 / t);
        for (name, tick) in [("memory", 512usize)] {
            let (ev, rows, t) = engine_run(&mem, 100_000, tick).await;
            println!("| 100,000 commands, executor simulated, tick {tick} | {name} | {ev} | {rows} | {t:.2}s | {:.0} |", ev as f64 / t);
        }
        for (d, dname) in [(Durability::Full, "full"), (Durability::Process, "process")] {
            let sq = SqliteStore::open(&base.join(format!("engine-{dname}.db")), d).await.unwrap();
            for tick in [64usize, 512] {
                let (ev, rows, t) = engine_run(&sq, 100_000, tick).await;
                println!("| 100,000 commands, executor simulated, tick {tick} | sqlite ({dname}) | {ev} | {rows} | {t:.2}s | {:.0} |", ev as f64 / t);
            }
        }
    });

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(2);
    println!("\n## `kaon run` of `true` commands ({cpus} at a time; SQLite, full durability)\n");
    println!("Baselines spawn the same `true` from a plain shell, bare and inside the exit-status");
    println!("wrapper kaon uses; overhead = (kaon - baseline) / steps.\n");
    println!(
        "| case | steps | kaon wall | kaon peak RSS | shell, bare `true` | overhead vs bare | shell, wrapped `true` | overhead vs wrapped |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let chain = base.join("chain.toml");
    std::fs::write(&chain, chain_workflow(1000)).unwrap();
    let (t, rss) = kaon_run(&base, &chain, cpus);
    let bare = shell_loop(1000, false, &base);
    let wrapped = shell_loop(1000, true, &base);
    println!(
        "| chain (shell: `while` loop) | 1000 | {t:.2}s | {rss:.0} MB | {bare:.2}s | {:.2} ms | {wrapped:.2}s | {:.2} ms |",
        (t - bare) * 1000.0 / 1000.0,
        (t - wrapped) * 1000.0 / 1000.0
    );
    let sizes: Vec<usize> = std::env::var("KAON_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10_000, 30_000]);
    for n in sizes {
        let wf = base.join(format!("sweep-{n}.toml"));
        std::fs::write(
            &wf,
            sweep_workflow(n, "kind = \"command\"\ncommand = [\"true\"]"),
        )
        .unwrap();
        let (t, rss) = kaon_run(&base, &wf, cpus);
        let bare = shell_parallel(n, cpus, false, &base);
        let wrapped = shell_parallel(n, cpus, true, &base);
        println!(
            "| for-each (shell: `xargs -P {cpus}`) | {n} | {t:.2}s | {rss:.0} MB | {bare:.2}s | {:.2} ms | {wrapped:.2}s | {:.2} ms |",
            (t - bare) * 1000.0 / n as f64,
            (t - wrapped) * 1000.0 / n as f64
        );
    }
}
