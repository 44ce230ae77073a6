//! The endpoint kaon's Spark listener posts to: `POST /v1/spark/events`.
//!
//! Each event names its run, node and attempt, and carries the run's token
//! (`Authorization: Bearer ...`): a keyed BLAKE3 hash of the run id under a
//! secret that only this kaon installation holds, so the token needs no
//! storage and survives restarts, and one run's driver cannot speak for
//! another run.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::submit::ListenerConf;

/// Where the listener posts, and the secret its tokens are made with.
#[derive(Clone)]
pub struct Callback {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The installation's secret.
    pub secret: [u8; 32],
}

impl Callback {
    /// The listener's settings for one attempt of `run`, loaded from `jar`.
    pub fn listener(&self, jar: &Path, run: &str, node: u32, attempt: u32) -> ListenerConf {
        ListenerConf {
            jar: jar.to_path_buf(),
            url: self.url.clone(),
            token: token(&self.secret, run),
            run: run.to_string(),
            node,
            attempt,
        }
    }
}

/// What one listener event means for the attempt it names.
#[derive(Clone, Debug, PartialEq)]
pub enum ListenerEvent {
    /// An output the job reported (`kaon_spark.output(name, value)`): its
    /// line for the attempt's reported outputs (`{"name": .., "value": ..}`),
    /// none when the event names no output.
    Output(Option<Value>),
    /// Progress or a failure, for [`crate::progress::SparkProgress::apply`];
    /// with the driver UI's address when the event carries one.
    Progress {
        /// The driver's UI.
        ui_url: Option<String>,
    },
}

impl ListenerEvent {
    /// Reads an event's JSON body.
    pub fn of(ev: &Value) -> ListenerEvent {
        if ev["type"] == "output" {
            return ListenerEvent::Output(
                ev["name"]
                    .as_str()
                    .map(|name| json!({"name": name, "value": ev["value"].clone()})),
            );
        }
        ListenerEvent::Progress {
            ui_url: ev["ui_url"].as_str().map(str::to_string),
        }
    }
}

/// Receives the events that passed the token check.
pub trait EventSink: Send + Sync + 'static {
    /// One event of `run`'s `node`, `attempt` (the whole JSON body).
    fn deliver(&self, run: &str, node: u32, attempt: u32, event: Value);
}

/// The token of `run` under `secret`.
pub fn token(secret: &[u8; 32], run: &str) -> String {
    blake3::keyed_hash(secret, run.as_bytes())
        .to_hex()
        .to_string()
}

struct Shared {
    secret: [u8; 32],
    sink: Arc<dyn EventSink>,
}

async fn events(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(ev): Json<Value>,
) -> StatusCode {
    let (Some(run), Some(node), Some(attempt)) = (
        ev["run"].as_str(),
        ev["node"].as_u64().and_then(|n| u32::try_from(n).ok()),
        ev["attempt"].as_u64().and_then(|n| u32::try_from(n).ok()),
    ) else {
        return StatusCode::BAD_REQUEST;
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let want = token(&s.secret, run);
    // Constant-time, so the token cannot be guessed byte by byte.
    if !constant_eq(given.as_bytes(), want.as_bytes()) {
        return StatusCode::UNAUTHORIZED;
    }
    let run = run.to_string();
    s.sink.deliver(&run, node, attempt, ev);
    StatusCode::NO_CONTENT
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves the endpoint on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    secret: [u8; 32],
    sink: Arc<dyn EventSink>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/v1/spark/events", post(events))
        .with_state(Arc::new(Shared { secret, sink }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Reads the installation's secret from `path`, creating it (mode 0600)
/// on first use.
pub fn load_secret(path: &Path) -> std::io::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(bytes) = std::fs::read(path)
        && let Ok(s) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(s);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut s = [0u8; 32];
    {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")?.read_exact(&mut s)?;
    }
    // Written whole under a name of this process's own, then linked into
    // place: `link` fails when another process got there first, and then
    // its secret is the one everybody uses.
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&s)?;
    f.sync_all()?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => return Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        // A file system without hard links: create it in place, exclusively.
        Err(_) => match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut f) => {
                f.write_all(&s)?;
                f.sync_all()?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        },
    }
    // Another process made it first: use its secret, once written whole
    // (a file created in place is briefly shorter).
    for _ in 0..100 {
        let bytes = std::fs::read(path)?;
        if let Ok(theirs) = <[u8; 32]>::try_from(bytes.as_slice()) {
            return Ok(theirs);
        }
        if bytes.len() > 32 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(std::io::Error::other(format!(
        "{} is not a kaon secret (32 bytes); remove it to have a new one made",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_told_apart_from_progress() {
        let ev = json!({"type": "output", "name": "rows", "value": 3});
        assert_eq!(
            ListenerEvent::of(&ev),
            ListenerEvent::Output(Some(json!({"name": "rows", "value": 3})))
        );
        assert_eq!(
            ListenerEvent::of(&json!({"type": "output"})),
            ListenerEvent::Output(None)
        );
        let ev = json!({"type": "progress", "ui_url": "http://127.0.0.1:4040"});
        assert_eq!(
            ListenerEvent::of(&ev),
            ListenerEvent::Progress {
                ui_url: Some("http://127.0.0.1:4040".into())
            }
        );
        let cb = Callback {
            url: "http://127.0.0.1:9".into(),
            secret: [7; 32],
        };
        let l = cb.listener(Path::new("/k/l.jar"), "r1", 2, 1);
        assert_eq!(l.token, token(&[7; 32], "r1"));
        assert_ne!(l.token, token(&[7; 32], "r2"));
    }
}
