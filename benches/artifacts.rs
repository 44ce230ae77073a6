//! Artifact store benchmarks, printed as tables (figures in
//! docs/benchmarks.md):
//!
//! 1. put and get of a 1 GiB file on `file://` against `cp` of the same file;
//! 2. memo-key lookups and depth-10 lineage queries with 1,000,000
//!    artifacts in SQLite.
//!
//! `cargo bench --bench artifacts`. `KAON_BENCH_BLOB_MIB` (default 1024)
//! and `KAON_BENCH_ARTIFACTS` (default 1000000) change the sizes;
//! `KAON_BENCH_DIR` where files go (default: a temp dir).
#![allow(clippy::unwrap_used)] // a benchmark that cannot proceed should panic right there

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use kaon_artifacts::ArtifactStore;
use kaon_store::{
    ArtifactIndex, ArtifactRow, Batch, Direction, Durability, MemoRow, ReadRow, RunRow,
    SqliteStore, StateStore,
};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn write_random(path: &Path, bytes: u64) {
    let mut f = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// Times `f` after flushing dirty pages, so no operation pays for the
/// writeback of the one before it.
fn secs<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let _ = std::process::Command::new("sync").status();
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn blobs(rt: &tokio::runtime::Runtime, dir: &Path) {
    let mib = env_num("KAON_BENCH_BLOB_MIB", 1024);
    let src = dir.join("src.bin");
    write_random(&src, mib << 20);
    let mb = mib as f64 * 1.048_576;
    let runs = 3;
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    let mut cp = Vec::new();
    let mut cp_sync = Vec::new();
    let mut put = Vec::new();
    let mut put_again = Vec::new();
    let mut get = Vec::new();
    for i in 0..runs {
        let dst = dir.join(format!("cp-{i}.bin"));
        let (_, t) = secs(|| {
            assert!(
                std::process::Command::new("cp")
                    .arg(&src)
                    .arg(&dst)
                    .status()
                    .unwrap()
                    .success()
            )
        });
        cp.push(t);
        let dst2 = dir.join(format!("cps-{i}.bin"));
        let (_, t) = secs(|| {
            assert!(
                std::process::Command::new("cp")
                    .arg(&src)
                    .arg(&dst2)
                    .status()
                    .unwrap()
                    .success()
            );
            std::fs::File::open(&dst2).unwrap().sync_all().unwrap();
        });
        cp_sync.push(t);
        std::fs::remove_file(&dst).unwrap();
        std::fs::remove_file(&dst2).unwrap();
        // A fresh store each time: a second put of the same content would
        // be a no-op and measure nothing.
        let store = ArtifactStore::open(&format!("store-{i}"), dir).unwrap();
        let (s, t) = secs(|| rt.block_on(store.put_file(&src)).unwrap());
        put.push(t);
        // The same content again: streamed and hashed as the first time,
        // then linked over the existing blob (which repairs a bad one).
        let (again, t) = secs(|| rt.block_on(store.put_file(&src)).unwrap());
        assert_eq!(again, s);
        put_again.push(t);
        let back = dir.join(format!("back-{i}.bin"));
        let (_, t) = secs(|| rt.block_on(store.get_file(&s.digest, &back)).unwrap());
        get.push(t);
        std::fs::remove_file(&back).unwrap();
        std::fs::remove_dir_all(dir.join(format!("store-{i}"))).unwrap();
    }
    rows.push(("cp".into(), cp.clone()));
    rows.push(("cp + fsync".into(), cp_sync));
    rows.push(("kaon put (read + hash + write + link)".into(), put));
    rows.push((
        "kaon put, content already stored (read + hash + write + relink)".into(),
        put_again,
    ));
    rows.push(("kaon get (read + verify + write)".into(), get));
    let base = mb / median(cp);
    println!("\n{mib} MiB file on file:// ({runs} runs, median)");
    println!("| operation | seconds | MB/s | vs cp |");
    println!("|---|---:|---:|---:|");
    for (name, t) in rows {
        let m = median(t);
        println!(
            "| {name} | {m:.2} | {:.0} | {:.0}% |",
            mb / m,
            100.0 * (mb / m) / base
        );
    }
    std::fs::remove_file(&src).unwrap();
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// 1,000,000 artifacts in chains of 10 (each step run reads the previous
/// link and writes the next), with a memo entry per step run.
fn index(rt: &tokio::runtime::Runtime, dir: &Path) {
    let n = env_num("KAON_BENCH_ARTIFACTS", 1_000_000) as usize;
    let chain = 10usize;
    let db = dir.join("bench.db");
    let store = rt
        .block_on(SqliteStore::open(&db, Durability::Process))
        .unwrap();
    let run = "bench";
    rt.block_on(store.create_run(&RunRow {
        id: run.into(),
        workflow: "bench".into(),
        path: "bench.toml".into(),
        digest: String::new(),
        params: "{}".into(),
        options: "{}".into(),
        parent: None,
        status: kaon_store::row::RunStatus::Succeeded,
        data: "{}".into(),
        created_ms: 0,
        finished_ms: None,
        owner: None,
        heartbeat_ms: None,
    }))
    .unwrap();
    let id = |i: usize| format!("a{i:016x}");
    let key = |i: usize| format!("blake3:{:064x}", i as u128 * 2_654_435_761);
    let (_, fill) = secs(|| {
        let per = 20_000;
        let mut i = 0;
        while i < n {
            let mut b = Batch::default();
            for j in i..(i + per).min(n) {
                b.artifacts.push(ArtifactRow {
                    id: id(j),
                    digest: format!("blake3:{j:064x}"),
                    kind: "file".into(),
                    size: 1000,
                    files: 1,
                    media_type: "application/octet-stream".into(),
                    name: "out".into(),
                    run: Some(run.into()),
                    node: Some(j as u32),
                    step: Some(format!("s{}", j % chain)),
                    step_key: Some(format!("s{}[i={}]", j % chain, j / chain)),
                    attempt: Some(1),
                    path: None,
                    created_ms: j as i64,
                    tags: "{}".into(),
                    memoized_from: None,
                });
                if j % chain != 0 {
                    b.reads.push(ReadRow {
                        run: run.into(),
                        node: j as u32,
                        attempt: 1,
                        artifact: id(j - 1),
                    });
                }
                b.memo.push(MemoRow {
                    key: key(j),
                    run: run.into(),
                    node: j as u32,
                    attempt: 1,
                    step: format!("s{}", j % chain),
                    step_key: format!("s{}[i={}]", j % chain, j / chain),
                    outputs: "{}".into(),
                    artifacts: format!("{{\"out\":\"{}\"}}", id(j)),
                    created_ms: j as i64,
                });
            }
            rt.block_on(store.commit(&[b])).unwrap();
            i += per;
        }
    });
    let samples = 10_000usize;
    let mut x: u64 = 42;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as usize % n
    };
    // A memo lookup as the driver does it: the entry, then each artifact.
    let mut lookup = Vec::with_capacity(samples);
    for _ in 0..samples {
        let i = next();
        let t = Instant::now();
        let m = rt.block_on(store.memo(&key(i))).unwrap();
        assert_eq!(m.len(), 1);
        let a = rt.block_on(store.artifact(&id(i))).unwrap();
        assert!(a.is_some());
        lookup.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut miss = Vec::with_capacity(samples);
    for s in 0..samples {
        let t = Instant::now();
        let m = rt.block_on(store.memo(&format!("blake3:miss{s}"))).unwrap();
        assert!(m.is_empty());
        miss.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut up = Vec::new();
    let mut down = Vec::new();
    for _ in 0..1000 {
        let c = next() / chain;
        let tail = c * chain + chain - 1;
        let t = Instant::now();
        let e = rt
            .block_on(store.lineage(&id(tail), Direction::Upstream, 10))
            .unwrap();
        assert_eq!(e.len(), chain - 1);
        up.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let e = rt
            .block_on(store.lineage(&id(c * chain), Direction::Downstream, 10))
            .unwrap();
        assert_eq!(e.len(), chain - 1);
        down.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "\n{n} artifacts, {n} memo entries, {} reads in SQLite ({:.0} MB, filled in {fill:.1} s)",
        n - n / chain,
        size as f64 / 1e6
    );
    println!("| query | samples | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [
        ("memo lookup, hit (entry + artifact)", &mut lookup),
        ("memo lookup, miss", &mut miss),
        ("lineage upstream, depth 10", &mut up),
        ("lineage downstream, depth 10", &mut down),
    ] {
        let len = v.len();
        let p50 = pct(v, 0.5);
        let p99 = pct(v, 0.99);
        let max = pct(v, 1.0);
        println!("| {name} | {len} | {p50:.3} | {p99:.3} | {max:.3} |");
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` builds and runs benches without
        // `--bench`: nothing to measure then.
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp;
    let dir = match std::env::var_os("KAON_BENCH_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir().unwrap();
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir).unwrap();
    let only = std::env::var("KAON_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "blobs" {
        blobs(&rt, &dir);
    }
    if only.is_empty() || only == "index" {
        index(&rt, &dir);
    }
}
