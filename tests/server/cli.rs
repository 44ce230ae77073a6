//! The `kaon` command line through a server (`KAON_SERVER`, `KAON_TOKEN`):
//! deploy, run and follow, runs, logs, signal, cancel (by command and by
//! Ctrl-C), retry, cache explain, artifacts; and the errors of a wrong
//! token and of a server that is not there.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Server, Site, state_of};

const HELLO: &str = r#"
[workflow]
name = "hello"
flow = "greet"

[params]
who = { type = "string" }
times = { type = "int", default = 1 }

[steps.greet]
kind = "command"
command = ["sh", "-c", "echo hello $1 $2 > out.txt; cat out.txt; echo to stderr >&2", "sh", "${params.who}", "${params.times}"]
outputs = { out = { type = "file", path = "out.txt" } }
"#;

const GATE: &str = r#"
[workflow]
name = "gate"
flow = "approval -> after"

[steps.approval]
kind = "wait"
signal = "approve"
outputs = { by = "string" }

[steps.after]
kind = "command"
command = ["echo", "approved by ${approval.by}"]
"#;

const SLEEPY: &str = r#"
[workflow]
name = "sleepy"
flow = "nap"

[steps.nap]
kind = "command"
command = ["sleep", "300"]
"#;

const FLAKY: &str = r#"
[workflow]
name = "flaky"
flow = "first -> flaky"

[steps.first]
kind = "command"
command = ["echo", "one"]

[steps.flaky]
kind = "command"
command = ["sh", "-c", "test -e ok.marker || { echo no marker >&2; exit 1; }"]
"#;

/// `kaon ARGS` through `server` with `token`.
fn kaon(site: &Site, server: &Server, token: &str, args: &[&str]) -> Command {
    let mut c = site.cmd(args);
    c.env("KAON_SERVER", &server.url)
        .env("KAON_TOKEN", token)
        .env_remove("KAON_TOKEN_FILE");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a command to its end: its output, checked to exit with `code`.
fn expect(mut c: Command, code: i32) -> Output {
    let o = c.output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(code),
        "{c:?}\nstdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    o
}

/// A `kaon run` in the background: the run's id from its first line, and
/// the rest of its output as it comes.
struct Following {
    child: Child,
    id: String,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Following {
    fn start(mut c: Command) -> Following {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let first = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        let id = first
            .strip_prefix("run ")
            .and_then(|r| r.split_once(':'))
            .map(|(id, _)| id.to_string())
            .unwrap_or_else(|| panic!("no run id in `{first}`"));
        Following {
            child,
            id,
            lines: rx,
        }
    }

    /// Waits for its end: its exit code and the lines after the first.
    fn end(mut self, limit: Duration) -> (i32, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let seen: Vec<String> = self.lines.try_iter().collect();
                panic!("`kaon run` did not end: {seen:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut rest = String::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            rest.push_str(&l);
            rest.push('\n');
        }
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (status.code().unwrap_or(-1), format!("{rest}{err}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_goes_through_a_server() {
    let site = Site::sqlite();
    let hello = site.write("flows/hello.toml", HELLO);
    site.write("flows/gate.toml", GATE);
    site.write("flows/sleepy.toml", SLEEPY);
    site.write("flows/flaky.toml", FLAKY);
    let server = site.server();
    server.ready().await;
    let admin = site.admin.clone();
    let k = |args: &[&str]| kaon(&site, &server, &admin, args);

    // Deploy: new, then the same version again is unchanged.
    let o = expect(
        k(&[
            "deploy",
            "flows/hello.toml",
            "flows/gate.toml",
            "flows/sleepy.toml",
        ]),
        0,
    );
    let out = text(&o.stdout);
    assert!(
        out.contains("deployed hello ") && out.contains("(new)"),
        "{out}"
    );
    assert!(out.contains("deployed sleepy "), "{out}");
    let o = expect(k(&["deploy", &hello.display().to_string()]), 0);
    assert!(
        text(&o.stdout).contains("(unchanged)"),
        "{}",
        text(&o.stdout)
    );

    // Run a deployed workflow by name; an int parameter given as text.
    let o = expect(k(&["run", "hello", "-p", "who=ana", "-p", "times=2"]), 0);
    let out = text(&o.stdout);
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("run ") && first.contains(": hello ("),
        "{out}"
    );
    let id = first[4..first.find(':').unwrap()].to_string();
    assert!(out.contains("✓ greet"), "{out}");
    assert!(
        out.contains(&format!("run {id} succeeded in")) && out.contains("(1 succeeded)"),
        "{out}"
    );

    // A file is deployed first, then run.
    let o = expect(k(&["run", "flows/flaky.toml", "--progress", "none"]), 1);
    let out = text(&o.stdout);
    let flaky = out.lines().next().unwrap()[4..]
        .split(':')
        .next()
        .unwrap()
        .to_string();
    assert!(out.contains(&format!("run {flaky} failed in")), "{out}");

    // Runs: the list and one run, as a table and as JSON.
    let o = expect(k(&["runs", "list"]), 0);
    let out = text(&o.stdout);
    assert!(out.contains(&id) && out.contains("succeeded"), "{out}");
    let o = expect(k(&["runs", "list", "--status", "failed"]), 0);
    let out = text(&o.stdout);
    assert!(out.contains(&flaky) && !out.contains(&id), "{out}");
    let o = expect(k(&["runs", "show", &id]), 0);
    let out = text(&o.stdout);
    assert!(
        out.contains("greet") && out.contains("status    succeeded"),
        "{out}"
    );
    let o = expect(k(&["runs", "show", &id, "--format", "json"]), 0);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["params"]["times"], 2, "{v}");

    // Logs: stdout, then stderr.
    let o = expect(k(&["logs", &id, "greet"]), 0);
    assert_eq!(text(&o.stdout), "hello ana 2\n--- stderr ---\nto stderr\n");
    let o = expect(k(&["logs", &id, "nosuch"]), 2);
    assert!(
        text(&o.stderr).contains("no step `nosuch`"),
        "{}",
        text(&o.stderr)
    );

    // Cache explain and artifacts.
    let o = expect(k(&["cache", "explain", &id, "greet"]), 0);
    assert!(
        text(&o.stdout).starts_with("greet: ran"),
        "{}",
        text(&o.stdout)
    );
    let o = expect(
        k(&["artifacts", "list", "--run", &id, "--format", "json"]),
        0,
    );
    let arts: Value = serde_json::from_slice(&o.stdout).unwrap();
    let art = arts[0]["id"].as_str().unwrap().to_string();
    assert_eq!(arts[0]["name"], "out", "{arts}");
    let o = expect(k(&["artifacts", "list", "--run", &id]), 0);
    assert!(text(&o.stdout).contains(&art), "{}", text(&o.stdout));
    let o = expect(k(&["artifacts", "show", &art]), 0);
    assert!(
        text(&o.stdout).contains(&format!("greet in run {id}")),
        "{}",
        text(&o.stdout)
    );
    expect(k(&["artifacts", "lineage", &art, "--downstream"]), 0);
    let o = expect(k(&["artifacts", "gc", "--dry-run"]), 2);
    assert!(
        text(&o.stderr).contains("does not go through a server"),
        "{}",
        text(&o.stderr)
    );

    // Resume: the server carries on its runs; an ended one says so.
    let o = expect(k(&["resume", &id]), 0);
    assert!(text(&o.stdout).contains("already ended: succeeded"));

    // Retry the failed step once its cause is fixed: the run succeeds.
    std::fs::write(site.path("flows/ok.marker"), "").unwrap();
    let o = expect(k(&["retry", &flaky, "flaky", "--progress", "plain"]), 0);
    let out = text(&o.stdout);
    assert!(out.contains(&format!("run {flaky} succeeded in")), "{out}");
    assert!(out.contains("✓ flaky") && !out.contains("✓ first"), "{out}");

    // A wait step goes on at `kaon signal`.
    let run = Following::start(k(&["run", "gate"]));
    server
        .wait(&run.id, Duration::from_secs(30), |v| {
            state_of(v, "approval").as_deref() == Some("running")
        })
        .await;
    let o = expect(
        k(&["signal", &run.id, "approve", "--value", r#"{"by": "ana"}"#]),
        0,
    );
    assert!(text(&o.stdout).contains("sent signal `approve`"));
    let (code, out) = run.end(Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("✓ after"), "{out}");

    // `kaon cancel`: the `kaon run` following it exits 3.
    let run = Following::start(k(&["run", "sleepy"]));
    server
        .wait(&run.id, Duration::from_secs(30), |v| {
            state_of(v, "nap").as_deref() == Some("running")
        })
        .await;
    let o = expect(k(&["cancel", &run.id]), 0);
    let out = text(&o.stdout);
    assert!(out.contains("ended: cancelled"), "{out}");
    let (code, out) = run.end(Duration::from_secs(60));
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("was cancelled"), "{out}");

    // Ctrl-C once cancels the run.
    let run = Following::start(k(&["run", "sleepy"]));
    server
        .wait(&run.id, Duration::from_secs(30), |v| {
            state_of(v, "nap").as_deref() == Some("running")
        })
        .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let (code, out) = run.end(Duration::from_secs(60));
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("cancelling the run"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_and_an_absent_server_are_said_plainly() {
    let site = Site::sqlite();
    let wf = site.write("flows/hello.toml", HELLO);
    let reader = site.token("dashboard", "read");
    let server = site.server();
    server.ready().await;

    // A token the server does not know: exit 2, and the token is not shown.
    let wrong = "kaon_0123456789ab_thisisnotasecretanyonekeeps";
    let o = expect(kaon(&site, &server, wrong, &["runs", "list"]), 2);
    let err = text(&o.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("KAON_TOKEN"),
        "{err}"
    );
    assert!(!err.contains("thisisnotasecret"), "{err}");
    assert!(!text(&o.stdout).contains("thisisnotasecret"));

    // A read token may not deploy: the role is named.
    let o = expect(
        kaon(
            &site,
            &server,
            &reader,
            &["deploy", &wf.display().to_string()],
        ),
        2,
    );
    let err = text(&o.stderr);
    assert!(err.contains("role"), "{err}");
    assert!(!err.contains(&reader), "{err}");

    // The token from a file.
    let file = site.write("token", &format!("{}\n", site.admin));
    let mut c = kaon(&site, &server, "", &["deploy", &wf.display().to_string()]);
    c.env_remove("KAON_TOKEN").env("KAON_TOKEN_FILE", &file);
    expect(c, 0);

    // No token at all.
    let mut c = kaon(&site, &server, "", &["runs", "list"]);
    c.env_remove("KAON_TOKEN");
    let o = expect(c, 2);
    assert!(text(&o.stderr).contains("no token"), "{}", text(&o.stderr));

    // A server that is not there.
    let mut c = site.cmd(&["runs", "list"]);
    c.env("KAON_SERVER", "http://127.0.0.1:1")
        .env("KAON_TOKEN", &site.admin);
    let o = expect(c, 2);
    let err = text(&o.stderr);
    assert!(
        err.contains("cannot reach the kaon server at http://127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains(&site.admin), "{err}");

    // Verbs that need a server say so without one.
    let o = expect(site.cmd(&["deploy", "flows/hello.toml"]), 2);
    assert!(text(&o.stderr).contains("--server"), "{}", text(&o.stderr));
}
