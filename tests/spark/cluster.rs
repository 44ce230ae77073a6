//! A real Spark standalone cluster for tests: a master with its REST
//! submission server and one worker, from a kaon-managed runtime (installed
//! with `kaon spark install` when missing), all on 127.0.0.1 and stopped
//! (with every driver and executor under them) when dropped.
#![allow(dead_code)] // shared by tests/spark.rs and benches/spark.rs, which use different parts

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The runtime for `req` (`3.5`, `4.3`): its exact version and SPARK_HOME,
/// installing it first when `kaon spark list` does not show one.
pub fn runtime(req: &str) -> (String, PathBuf) {
    let find = || -> Option<(String, PathBuf)> {
        let o = Command::new(env!("CARGO_BIN_EXE_kaon"))
            .args(["spark", "list"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .skip(1)
            .find_map(|l| {
                let mut f = l.split_whitespace();
                let v = f.next()?;
                let home = f.nth(2)?;
                (v == req || v.starts_with(&format!("{req}.")))
                    .then(|| (v.to_string(), PathBuf::from(home)))
            })
    };
    if let Some(found) = find() {
        return found;
    }
    let o = Command::new(env!("CARGO_BIN_EXE_kaon"))
        .args(["spark", "install", req])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "kaon spark install {req} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    find().unwrap_or_else(|| panic!("Spark {req} installed but not listed"))
}

pub struct Cluster {
    pub version: String,
    pub home: PathBuf,
    pub master: String,
    pub rest: String,
    pub ui: String,
    pub dir: tempfile::TempDir,
    procs: Vec<Child>,
}

impl Cluster {
    /// Starts a master (REST on) and a worker with `cores` cores; waits
    /// until the worker has registered.
    pub fn start(req: &str, cores: u32) -> Cluster {
        let (version, home) = runtime(req);
        let dir = tempfile::tempdir().unwrap();
        let (port, rest, ui, wui) = (free_port(), free_port(), free_port(), free_port());
        let props = dir.path().join("master.properties");
        std::fs::write(
            &props,
            format!(
                "spark.master.rest.enabled true\nspark.master.rest.port {rest}\nspark.master.rest.host 127.0.0.1\n"
            ),
        )
        .unwrap();
        let d = dir.path().to_path_buf();
        let spawn = |args: Vec<String>, log: &str| -> Child {
            let out = std::fs::File::create(d.join(log)).unwrap();
            Command::new(home.join("bin/spark-class"))
                .args(&args)
                .env("SPARK_HOME", &home)
                .env("SPARK_LOCAL_IP", "127.0.0.1")
                .env("SPARK_LOCAL_HOSTNAME", "127.0.0.1")
                .env("SPARK_LOG_DIR", &d)
                .env("SPARK_WORKER_DIR", d.join("work"))
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let master = format!("spark://127.0.0.1:{port}");
        let mut c = Cluster {
            version,
            home: home.clone(),
            master: master.clone(),
            rest: format!("http://127.0.0.1:{rest}"),
            ui: format!("http://127.0.0.1:{ui}"),
            procs: Vec::new(),
            dir,
        };
        c.procs.push(spawn(
            [
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--webui-port",
                &ui.to_string(),
                "--properties-file",
                &props.display().to_string(),
            ]
            .map(String::from)
            .to_vec(),
            "master.log",
        ));
        c.procs.push(spawn(
            [
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--webui-port",
                &wui.to_string(),
                "--cores",
                &cores.to_string(),
                "--memory",
                "6g",
                "--work-dir",
                &c.dir.path().join("work").display().to_string(),
                &master,
            ]
            .map(String::from)
            .to_vec(),
            "worker.log",
        ));
        let start = Instant::now();
        loop {
            // A port picked free may be taken by the time Spark binds it;
            // Spark then moves to the next one and says so in its log.
            let log = std::fs::read_to_string(c.dir.path().join("master.log")).unwrap_or_default();
            let after = |marker: &str| {
                log.lines().find_map(|l| {
                    let rest = &l[l.find(marker)? + marker.len()..];
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse::<u16>().ok()
                })
            };
            if let Some(p) = after("started at http://127.0.0.1:") {
                c.ui = format!("http://127.0.0.1:{p}");
            }
            if let Some(p) = after("on 127.0.0.1 with port ") {
                c.rest = format!("http://127.0.0.1:{p}");
            }
            if let Some(v) = c.state()
                && v["aliveworkers"].as_u64().unwrap_or(0) >= 1
            {
                return c;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "the Spark {} cluster did not come up; logs in {}:\n{}",
                c.version,
                c.dir.path().display(),
                std::fs::read_to_string(c.dir.path().join("master.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The master's `/json/`.
    pub fn state(&self) -> Option<Value> {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5", &format!("{}/json/", self.ui)])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Every driver the master knows: (id, state), oldest first.
    pub fn drivers(&self) -> Vec<(String, String)> {
        let v = self.state().unwrap_or(Value::Null);
        let mut out: Vec<(String, String)> = ["activedrivers", "completeddrivers"]
            .iter()
            .flat_map(|k| v[*k].as_array().cloned().unwrap_or_default())
            .map(|d| {
                (
                    d["id"].as_str().unwrap_or("").to_string(),
                    d["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// A kaon.toml naming this cluster `test`.
    pub fn kaon_toml(&self) -> String {
        format!(
            "[spark.clusters.test]\nmaster = \"{}\"\nrest = \"{}\"\nui = \"{}\"\ndeploy_mode = \"cluster\"\nattributes = \"zone:local;tier:batch\"\n",
            self.master, self.rest, self.ui
        )
    }

    /// Compiles `tests/spark/Job.java` against this runtime into `out`.
    pub fn job_jar(&self, out: &Path) -> PathBuf {
        let classes = self.dir.path().join("job-classes");
        std::fs::create_dir_all(&classes).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spark/Job.java");
        let st = Command::new("javac")
            .args(["--release", "17", "-nowarn", "-cp"])
            .arg(format!("{}/jars/*", self.home.display()))
            .arg("-d")
            .arg(&classes)
            .arg(&src)
            .status()
            .unwrap();
        assert!(st.success(), "javac of the test job failed");
        let st = Command::new("jar")
            .arg("--create")
            .arg("--file")
            .arg(out)
            .arg("-C")
            .arg(&classes)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        out.to_path_buf()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = killpg(Pid::from_raw(p.id() as i32), Signal::SIGKILL);
            let _ = p.wait();
        }
    }
}
