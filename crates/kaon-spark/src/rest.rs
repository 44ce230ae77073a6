//! A standalone master's REST submission API (port 6066):
//! `/v1/submissions/create`, `status/<id>`, `kill/<id>`.

use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::SparkError;

/// A driver's state as the master reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverState {
    /// Accepted, waiting for a worker with room (possibly forever).
    Submitted,
    /// Running on a worker.
    Running,
    /// Being relaunched (supervised drivers).
    Relaunching,
    /// Exited 0.
    Finished,
    /// Exited non-zero (the master gives no exit code).
    Failed,
    /// Killed on request.
    Killed,
    /// Could not be started (a missing jar, say).
    Error,
    /// The master does not know (yet).
    Unknown,
}

impl DriverState {
    fn parse(s: &str) -> DriverState {
        match s {
            "SUBMITTED" => DriverState::Submitted,
            "RUNNING" => DriverState::Running,
            "RELAUNCHING" => DriverState::Relaunching,
            "FINISHED" => DriverState::Finished,
            "FAILED" => DriverState::Failed,
            "KILLED" => DriverState::Killed,
            "ERROR" => DriverState::Error,
            _ => DriverState::Unknown,
        }
    }

    /// True once the driver has ended for good.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DriverState::Finished | DriverState::Failed | DriverState::Killed | DriverState::Error
        )
    }
}

/// What `status` says about a driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverStatus {
    /// Its state.
    pub state: DriverState,
    /// The worker running it (`worker-2026...-127.0.0.1-39201`).
    pub worker_id: Option<String>,
    /// The master's message (the cause of `ERROR`).
    pub message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reply {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    submission_id: Option<String>,
    #[serde(default)]
    driver_state: Option<String>,
    #[serde(default)]
    worker_id: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// A client of one master's REST server.
#[derive(Clone, Debug)]
pub struct RestClient {
    base: String,
    http: reqwest::Client,
}

impl RestClient {
    /// A client of `base` (`http://host:6066`).
    pub fn new(base: &str) -> RestClient {
        RestClient {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn call(
        &self,
        post: bool,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, SparkError> {
        let url = format!("{}/v1/submissions/{path}", self.base);
        let req = if post {
            self.http.post(&url)
        } else {
            self.http.get(&url)
        };
        let req = match body {
            Some(b) => req.json(b),
            None => req,
        };
        // Only a failed connect says the request never arrived.
        let no_answer = |e: reqwest::Error| SparkError::NoAnswer {
            url: url.clone(),
            message: e.to_string(),
        };
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                transient(&url, e)
            } else {
                no_answer(e)
            }
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(no_answer)?;
        match serde_json::from_str::<Reply>(&text) {
            Ok(r) if status.is_success() => Ok(r),
            Ok(r) => Err(SparkError::Rest {
                url,
                message: format!(
                    "HTTP {status}: {}",
                    first_line(r.message.as_deref().unwrap_or(&text))
                ),
                transient: status.is_server_error(),
            }),
            Err(_) => Err(SparkError::Rest {
                url,
                message: format!("HTTP {status}: {}", first_line(&text)),
                transient: status.is_server_error(),
            }),
        }
    }

    /// Submits a driver; returns its submission id (`driver-...`).
    pub async fn create(&self, body: &Value) -> Result<String, SparkError> {
        let r = self.call(true, "create", Some(body)).await?;
        match (r.success, r.submission_id) {
            (Some(true), Some(id)) => Ok(id),
            (_, _) => Err(SparkError::Rest {
                url: format!("{}/v1/submissions/create", self.base),
                message: format!(
                    "the master refused the submission: {}",
                    first_line(r.message.as_deref().unwrap_or("no reason given"))
                ),
                transient: false,
            }),
        }
    }

    /// A driver's status. An id the master does not know is
    /// [`DriverState::Unknown`] (the master answers 200 with
    /// `success: false`).
    pub async fn status(&self, id: &str) -> Result<DriverStatus, SparkError> {
        let r = self.call(false, &format!("status/{id}"), None).await?;
        let state = match (r.success, &r.driver_state) {
            (Some(true), Some(s)) => DriverState::parse(s),
            _ => DriverState::Unknown,
        };
        Ok(DriverStatus {
            state,
            worker_id: r.worker_id,
            message: r.message,
        })
    }

    /// Asks the master to kill a driver. True when the master accepted
    /// (killing an ended driver is refused, which callers check by status).
    pub async fn kill(&self, id: &str) -> Result<bool, SparkError> {
        let r = self.call(true, &format!("kill/{id}"), None).await?;
        Ok(r.success == Some(true))
    }
}

fn first_line(s: &str) -> String {
    let line = s
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut out: String = line.chars().take(300).collect();
    if line.chars().count() > 300 {
        out.push('…');
    }
    out
}

/// The client for reads of masters, workers and driver UIs: one pool of
/// connections, and a timeout, so that a peer that accepts and never
/// answers cannot stall a watcher.
fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default()
    })
}

/// A failure worth trying again (the master or worker may be restarting).
fn transient(url: &str, e: impl std::fmt::Display) -> SparkError {
    SparkError::Rest {
        url: url.to_string(),
        message: e.to_string(),
        transient: true,
    }
}

/// GET `url` as text; any failure is transient.
async fn get_text(url: &str) -> Result<String, SparkError> {
    http()
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| transient(url, e))?
        .text()
        .await
        .map_err(|e| transient(url, e))
}

/// GET `url` as JSON; any failure is transient.
pub(crate) async fn get_json(url: &str) -> Result<Value, SparkError> {
    let text = get_text(url).await?;
    serde_json::from_str(&text).map_err(|e| transient(url, e))
}

/// A standalone master's `/json/` page.
async fn master_json(master_ui: &str) -> Result<Value, SparkError> {
    get_json(&format!("{}/json/", master_ui.trim_end_matches('/'))).await
}

/// Reads a standalone master's `/json/` page: its workers' web UIs, for
/// driver logs.
pub async fn worker_ui(master_ui: &str, worker_id: &str) -> Result<Option<String>, SparkError> {
    Ok(worker_ui_in(&master_json(master_ui).await?, worker_id))
}

fn worker_ui_in(master: &Value, worker_id: &str) -> Option<String> {
    master["workers"].as_array().and_then(|ws| {
        ws.iter()
            .find(|w| w["id"] == worker_id)
            .and_then(|w| w["webuiaddress"].as_str())
            .map(str::to_string)
    })
}

/// A driver as a standalone master's `/json/` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverInfo {
    /// Its submission id (`driver-...`).
    pub id: String,
    /// Its state.
    pub state: DriverState,
    /// The main class it was submitted with.
    pub main_class: String,
    /// The web UI of the worker it runs or ran on; none while it waits
    /// for one (or when that worker is gone).
    pub worker_ui: Option<String>,
}

/// Every driver a standalone master knows, running and completed (the
/// master keeps `spark.deploy.retainedDrivers` completed ones).
pub async fn drivers(master_ui: &str) -> Result<Vec<DriverInfo>, SparkError> {
    let v = master_json(master_ui).await?;
    Ok(["activedrivers", "completeddrivers"]
        .iter()
        .flat_map(|k| v[*k].as_array().cloned().unwrap_or_default())
        .filter_map(|d| {
            Some(DriverInfo {
                id: d["id"].as_str()?.to_string(),
                state: DriverState::parse(d["state"].as_str().unwrap_or("")),
                main_class: d["mainclass"].as_str().unwrap_or("").to_string(),
                worker_ui: d["worker"].as_str().and_then(|w| worker_ui_in(&v, w)),
            })
        })
        .collect())
}

/// Reads up to `max` bytes of a driver's `stdout` or `stderr` from its
/// worker's log endpoint, from `offset`.
pub async fn driver_log(
    worker_ui: &str,
    driver_id: &str,
    which: &str,
    offset: u64,
    max: u64,
) -> Result<String, SparkError> {
    // The trailing slash after `log` matters to the worker's router.
    get_text(&format!(
        "{}/log/?driverId={driver_id}&logType={which}&offset={offset}&byteLength={max}",
        worker_ui.trim_end_matches('/')
    ))
    .await
}
