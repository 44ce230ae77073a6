//! What kaon adds to Spark, on a real standalone cluster and in local mode:
//!
//! - wall time of a trivial PySpark job run with spark-submit directly and
//!   through `kaon run` (client mode, `local[2]`);
//! - time from the driver's end to the step's state change (client mode:
//!   the exit file the wrapper writes as spark-submit ends; cluster mode:
//!   the last write of the driver's stderr on the worker);
//! - time from `kaon kill` to the confirmed end (cluster mode, REST kill).
//!
//! `cargo bench --bench spark` (KAON_BENCH_SPARK=3.5|4.3, KAON_BENCH_REPS).
//! Prints a table; figures are recorded in docs/benchmarks.md.
#![allow(clippy::unwrap_used)] // a benchmark that cannot proceed should panic right there

#[path = "../tests/spark/cluster.rs"]
mod cluster;
#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Kaon;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms_of(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

fn run_id(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .find_map(|l| l.strip_prefix("run ").and_then(|r| r.split(':').next()))
        .unwrap()
        .to_string()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let req = std::env::var("KAON_BENCH_SPARK").unwrap_or_else(|_| "3.5".into());
    let reps: usize = std::env::var("KAON_BENCH_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let (version, home) = cluster::runtime(&req);
    let k = Kaon::new();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/spark/job.py"),
        k.path("job.py"),
    )
    .unwrap();
    k.write(
        "trivial.toml",
        &format!(
            "[workflow]\nname = \"t\"\nflow = \"t\"\n[steps.t]\nkind = \"spark\"\nspark = \"{version}\"\napp = \"job.py\"\nmaster = \"local[2]\"\ncache = false\n"
        ),
    );
    let python = home.ancestors().nth(4).unwrap().join("bin/python");
    // Warm both paths once (JIT caches, the listener jar).
    let direct = || {
        let t = Instant::now();
        let st = Command::new(home.join("bin/spark-submit"))
            .args(["--master", "local[2]", "--py-files"])
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/spark-listener/python/kaon_spark.py"
            ))
            .arg(k.path("job.py"))
            .env("SPARK_HOME", &home)
            .env("PYSPARK_PYTHON", &python)
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        t.elapsed().as_secs_f64()
    };
    let via_kaon = || {
        let t = Instant::now();
        let o = k
            .cmd(&["run", "trivial.toml", "--progress", "none"])
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", common::text(&o));
        let took = t.elapsed().as_secs_f64();
        // Driver end -> state change: the wrapper's exit file vs finished_ms.
        let id = run_id(&o.stdout);
        let v = k.show(&id);
        let finished = v["nodes"][0]["finished_ms"].as_f64().unwrap();
        let exit = k.data().join(format!("runs/{id}/0-t.1.exit"));
        let ended = ms_of(std::fs::metadata(exit).unwrap().modified().unwrap());
        (took, finished - ended)
    };
    direct();
    via_kaon();
    let (mut d, mut kt, mut lag) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        d.push(direct());
        let (t, l) = via_kaon();
        kt.push(t);
        lag.push(l);
    }

    // Cluster mode: driver end -> state change, and kill -> confirmed end.
    let c = cluster::Cluster::start(&req, 6);
    let jar = c.job_jar(&k.path("job.jar"));
    k.write("kaon.toml", &c.kaon_toml());
    k.write(
        "cluster.toml",
        &format!(
            "[workflow]\nname = \"c\"\nflow = \"j\"\n[params]\nmode = \"ok\"\nmillis = 0\n[steps.j]\nkind = \"spark\"\nspark = \"{version}\"\napp = \"{}\"\nmain_class = \"Job\"\nargs = [\"${{params.mode}}\", 2, \"${{params.millis}}\"]\ncluster = \"test\"\ncache = false\n",
            jar.display()
        ),
    );
    let (mut clag, mut kill) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let o = k
            .cmd(&["run", "cluster.toml", "--progress", "none"])
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", common::text(&o));
        let id = run_id(&o.stdout);
        let v = k.show(&id);
        let finished = v["nodes"][0]["finished_ms"].as_f64().unwrap();
        let h: serde_json::Value = serde_json::from_slice(
            &std::fs::read(k.data().join(format!("runs/{id}/0-j.1.spark.json"))).unwrap(),
        )
        .unwrap();
        let sub = h["submission"].as_str().unwrap();
        let err = c.dir.path().join(format!("work/{sub}/stderr"));
        let ended = ms_of(std::fs::metadata(err).unwrap().modified().unwrap());
        clag.push(finished - ended);

        let mut child = k
            .cmd(&[
                "run",
                "cluster.toml",
                "--progress",
                "none",
                "-p",
                "mode=slow",
                "-p",
                "millis=60000",
            ])
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .spawn()
            .unwrap();
        let id = loop {
            std::thread::sleep(Duration::from_millis(200));
            let o = k.run(&["runs", "list"]);
            let out = String::from_utf8_lossy(&o.stdout).to_string();
            let first = out.lines().nth(1).unwrap_or("").to_string();
            if first.contains("running") {
                break first.split_whitespace().next().unwrap().to_string();
            }
        };
        loop {
            let v = k.show(&id);
            let n = &v["nodes"][0];
            if n["state"] == "running"
                && n["data"]["progress"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("stage 0/1"))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let t = Instant::now();
        let o = k.run(&["kill", &id, "j"]);
        kill.push(t.elapsed().as_secs_f64());
        assert!(o.status.success(), "{}", common::text(&o));
        child.wait().unwrap();
    }

    println!("Spark {version}, {reps} runs each (median, all)");
    println!("| what | median | runs |");
    println!("|---|---|---|");
    let show = |v: &[f64], unit: &str, scale: f64| {
        v.iter()
            .map(|x| format!("{:.0}{unit}", x * scale))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| trivial PySpark job, spark-submit directly | {:.2} s | {} |",
        median(d.clone()),
        show(&d, " ms", 1000.0)
    );
    println!(
        "| the same job through `kaon run` | {:.2} s | {} |",
        median(kt.clone()),
        show(&kt, " ms", 1000.0)
    );
    println!(
        "| added by kaon | {:+.0} ms ({:+.1}%) | |",
        (median(kt.clone()) - median(d.clone())) * 1000.0,
        (median(kt.clone()) / median(d.clone()) - 1.0) * 100.0
    );
    println!(
        "| driver end -> step state change, client mode | {:.0} ms | {} |",
        median(lag.clone()),
        show(&lag, " ms", 1.0)
    );
    println!(
        "| driver end -> step state change, cluster mode (REST) | {:.0} ms | {} |",
        median(clag.clone()),
        show(&clag, " ms", 1.0)
    );
    println!(
        "| `kaon kill` -> confirmed end, cluster mode | {:.0} ms | {} |",
        median(kill.clone()) * 1000.0,
        show(&kill, " ms", 1000.0)
    );
}
