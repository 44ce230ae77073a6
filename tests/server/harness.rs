//! A real `kaon server` process for the tests, and an HTTP client of it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub fn kaon_bin() -> PathBuf {
    std::env::var_os("KAON_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kaon")))
}

/// Where a test's servers keep their data, and which database they share.
pub struct Site {
    pub dir: tempfile::TempDir,
    /// `--db`: a SQLite file or a PostgreSQL URL.
    pub db: String,
    /// An admin token.
    pub admin: String,
    /// Keeps a test database alive.
    _pg: Option<kaon_pgtest::TestDb>,
}

impl Site {
    /// A site on SQLite in a temp dir.
    pub fn sqlite() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data/kaon.db").display().to_string();
        Site::with(dir, db, None)
    }

    /// A site on a fresh PostgreSQL database.
    pub async fn postgres() -> Site {
        let pg = kaon_pgtest::database().await;
        let dir = tempfile::tempdir().unwrap();
        let db = pg.url().to_string();
        Site::with(dir, db, Some(pg))
    }

    fn with(dir: tempfile::TempDir, db: String, pg: Option<kaon_pgtest::TestDb>) -> Site {
        let mut s = Site {
            dir,
            db,
            admin: String::new(),
            _pg: pg,
        };
        s.admin = s.token("admin", "admin");
        s
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A data directory (servers sharing a database each have their own,
    /// as on different machines; they share the secret run tokens are
    /// made with).
    pub fn data(&self) -> PathBuf {
        self.path("data")
    }

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
            .env("KAON_DB", &self.db)
            .env("NO_COLOR", "1")
            .env_remove("KAON_SERVER")
            .env_remove("KAON_TOKEN");
        c
    }

    /// `kaon tokens create NAME --role ROLE`: the token.
    pub fn token(&self, name: &str, role: &str) -> String {
        let o = self
            .cmd(&["tokens", "create", name, "--role", role])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "tokens create: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }

    /// Starts a server on a free port with `data` as its data directory.
    pub fn server_in(&self, data: &Path, extra: &[&str]) -> Server {
        std::fs::create_dir_all(data).unwrap();
        let log = std::fs::File::create(data.join(format!(
            "server-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )))
        .unwrap();
        let mut args = vec![
            "server",
            "--listen",
            "127.0.0.1:0",
            "--cpus",
            "64",
            "--memory",
            "64g",
            "--kill-grace",
            "2s",
            "--schedule-every",
            "200ms",
        ];
        args.extend_from_slice(extra);
        let mut child = self
            .cmd(&args)
            .env("KAON_DATA_DIR", data)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep the pipe drained.
            for _ in lines {}
        });
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server printed its address");
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in `{first}`"))
            .to_string();
        Server {
            child,
            url,
            token: self.admin.clone(),
            http: reqwest::Client::new(),
        }
    }

    pub fn server(&self) -> Server {
        self.server_in(&self.data(), &[])
    }
}

/// A running server.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The token calls carry unless told otherwise.
    pub token: String,
    pub http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Waits for `/readyz`.
    pub async fn ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.url)).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A call with a token (`None`: without one).
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn get(&self, path: &str) -> Value {
        let (s, v) = self
            .call_as(Some(&self.token), Method::GET, path, None)
            .await;
        assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
        v
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call_as(Some(&self.token), Method::POST, path, Some(body))
            .await
    }

    /// Deploys a workflow file; its name.
    pub async fn deploy(&self, file: &Path) -> Value {
        let (s, v) = self
            .post(
                "/api/v1/workflows",
                json!({"path": file.display().to_string()}),
            )
            .await;
        assert!(s.is_success(), "deploy: {s} {v}");
        v
    }

    /// Submits a run; its id.
    pub async fn submit(&self, workflow: &str, params: Value) -> String {
        let (s, v) = self
            .post(
                "/api/v1/runs",
                json!({"workflow": workflow, "params": params}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "submit: {v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// A run's detail.
    pub async fn run(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/runs/{id}")).await
    }

    /// Polls a run until `done` says yes of its detail.
    pub async fn wait(&self, id: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let v = self.run(id).await;
            if done(&v) {
                return v;
            }
            assert!(start.elapsed() < limit, "run {id} did not get there: {v:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens a run's event stream.
    pub async fn events(&self, id: &str) -> EventStream {
        self.stream(&format!("/api/v1/runs/{id}/events")).await
    }

    /// Opens the event stream of every run.
    pub async fn all_events(&self) -> EventStream {
        self.stream("/api/v1/events").await
    }

    async fn stream(&self, path: &str) -> EventStream {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        EventStream {
            resp: r,
            buf: String::new(),
        }
    }
}

/// A server-sent event stream.
pub struct EventStream {
    resp: reqwest::Response,
    buf: String,
}

impl EventStream {
    /// The next event (its name and data), or `None` when the stream ends.
    pub async fn next(&mut self, limit: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = n.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .expect("an event in time")
                .unwrap()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// The state of node `name` in a run's detail.
pub fn state_of(detail: &Value, name: &str) -> Option<String> {
    detail["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == name)
        .map(|n| n["state"].as_str().unwrap_or("").to_string())
}
