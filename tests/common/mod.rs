//! Helpers for end-to-end tests that drive the `kaon` binary.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test: this build's, or `KAON_TEST_BIN` (to run the
/// suite against another build, e.g. to see a test fail before its fix).
pub fn kaon_bin() -> PathBuf {
    std::env::var_os("KAON_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kaon")))
}

/// A scratch workspace: a folder for workflow files and a data directory.
pub struct Kaon {
    pub dir: tempfile::TempDir,
}

impl Kaon {
    pub fn new() -> Kaon {
        Kaon {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn data(&self) -> PathBuf {
        self.path(".kaon")
    }

    /// Writes a file under the workspace.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kaon_bin());
        c.args(args)
            .current_dir(self.dir.path())
            .env("KAON_DATA_DIR", self.data())
            .env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `kaon runs show RUN --format json`.
    pub fn show(&self, run: &str) -> Value {
        let o = self.run(&["runs", "show", run, "--format", "json"]);
        assert!(o.status.success(), "runs show failed: {}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// The id of the newest run, waiting for one to exist.
    pub fn wait_run_id(&self) -> String {
        let start = Instant::now();
        loop {
            if self.data().join("kaon.db").exists() {
                let o = self.run(&["runs", "list"]);
                let out = String::from_utf8_lossy(&o.stdout).to_string();
                if let Some(line) = out.lines().nth(1) {
                    return line.split_whitespace().next().unwrap().to_string();
                }
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no run appeared");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a node named `name` is in `state`.
    pub fn wait_state(&self, run: &str, name: &str, state: &str) {
        let start = Instant::now();
        loop {
            let v = self.show(run);
            let hit = v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["name"] == name && n["state"] == state);
            if hit {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name} never became {state}: {v:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Nodes of a `runs show` JSON whose name is `name`.
pub fn nodes_named<'a>(show: &'a Value, name: &str) -> Vec<&'a Value> {
    show["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["name"] == name)
        .collect()
}

/// True when a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s.rsplit(')').next().unwrap_or("").split_whitespace().next();
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

/// Reads a pid a step wrote to a file.
pub fn read_pid(p: &Path) -> i32 {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(p)
            && let Ok(pid) = s.trim().parse()
        {
            return pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no pid in {}",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a child with a deadline; returns its output.
pub fn wait_output(mut c: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if c.try_wait().unwrap().is_some() {
            return c.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = c.kill();
            let o = c.wait_with_output().unwrap();
            panic!("kaon did not finish within {limit:?}: {}", text(&o));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
