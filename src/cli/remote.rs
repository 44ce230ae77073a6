//! A client of `kaon server`'s HTTP API, for the verbs that go through a
//! server with `--server URL` (or `KAON_SERVER`), and the API's answers as
//! the rows the local verbs print.
//!
//! The token is read from `--token-file`, else `KAON_TOKEN`, else the file
//! `KAON_TOKEN_FILE` names; never from an argument (a command line is
//! visible to every user of the machine), and it is never printed: not in
//! errors, not in debug output.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use kaon_engine::{NodeData, NodeId, NodeRecord};
use kaon_store::row::{NodeKind, NodeState, RunStatus};
use kaon_store::{ArtifactRow, LineageEdge, NodeRow, RunRow};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use url::Url;

/// Which server, and the token to show it.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Go through the kaon server at this URL (`http://host:8470`) instead
    /// of this machine's data directory: run, runs, logs, cancel, signal,
    /// retry, resume, artifacts list/show/lineage, cache explain, deploy.
    /// The token is read from KAON_TOKEN or a file (--token-file,
    /// KAON_TOKEN_FILE).
    #[arg(long, global = true, env = "KAON_SERVER", value_name = "URL")]
    server: Option<String>,
    /// A file holding the token for --server (default: the KAON_TOKEN
    /// variable, else the file KAON_TOKEN_FILE names). There is no
    /// --token: a command line is visible to every user of the machine.
    #[arg(long, global = true, value_name = "PATH")]
    token_file: Option<PathBuf>,
}

impl ServerArgs {
    /// The server to go through, when one is given.
    pub fn connect(&self) -> Result<Option<Remote>> {
        let Some(url) = self
            .server
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        else {
            return Ok(None);
        };
        let base = base_url(url)?;
        let token = self.token(&base)?;
        Remote::new(base, &token).map(Some)
    }

    /// The server, for a verb that works only through one.
    pub fn require(&self, verb: &str) -> Result<Remote> {
        match self.connect()? {
            Some(r) => Ok(r),
            None => bail!(
                "`{verb}` goes through a kaon server: give its URL with --server URL or KAON_SERVER (and its token in KAON_TOKEN or --token-file)"
            ),
        }
    }

    /// The token: `--token-file`, else `KAON_TOKEN`, else `KAON_TOKEN_FILE`.
    fn token(&self, base: &Url) -> Result<String> {
        let file = match &self.token_file {
            Some(f) => Some(f.clone()),
            None => match std::env::var("KAON_TOKEN") {
                Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
                _ => std::env::var_os("KAON_TOKEN_FILE")
                    .filter(|f| !f.is_empty())
                    .map(PathBuf::from),
            },
        };
        let Some(file) = file else {
            bail!(
                "no token for the kaon server at {}: set KAON_TOKEN, or give a file holding it with --token-file PATH or KAON_TOKEN_FILE (an admin makes tokens with `kaon tokens create NAME --role operate`)",
                shown(base)
            );
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read the token file {}", file.display()))?;
        let t = text.trim();
        if t.is_empty() {
            bail!("the token file {} is empty", file.display());
        }
        Ok(t.to_string())
    }
}

/// The server's URL as given: `host:port` means `http://host:port`.
fn base_url(given: &str) -> Result<Url> {
    let text = if given.contains("://") {
        given.to_string()
    } else {
        format!("http://{given}")
    };
    let url = Url::parse(&text).with_context(|| format!("--server {given}: not a URL"))?;
    match url.scheme() {
        "http" => {}
        "https" => bail!(
            "--server {}: this kaon speaks plain http only; reach the server over http:// on a trusted network (or through an SSH tunnel)",
            shown(&url)
        ),
        other => bail!("--server {}: `{other}` is not http", shown(&url)),
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        bail!("--server {}: not an http URL with a host", shown(&url));
    }
    Ok(url)
}

/// A URL as shown to people: without a password, should it hold one.
fn shown(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(None);
    }
    u.as_str().trim_end_matches('/').to_string()
}

/// An answer of the server that is not a success: its status and the
/// `{"error": {"code", "message"}}` body.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What the server said, and what to do about it.
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// The status of a failed call, when the server answered it.
pub fn status_of(e: &anyhow::Error) -> Option<StatusCode> {
    e.downcast_ref::<ApiError>().map(|a| a.status)
}

/// A kaon server and the token to show it.
pub struct Remote {
    base: Url,
    auth: HeaderValue,
    http: reqwest::Client,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("server", &shown(&self.base))
            .finish_non_exhaustive()
    }
}

impl Remote {
    fn new(base: Url, token: &str) -> Result<Remote> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            anyhow!("the token has characters an HTTP header cannot carry; check KAON_TOKEN or the token file")
        })?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot make an HTTP client")?;
        Ok(Remote { base, auth, http })
    }

    /// The server's URL, for messages.
    pub fn shown(&self) -> String {
        shown(&self.base)
    }

    /// The URL of an API path (its segments are escaped) with a query.
    fn url(&self, path: &[&str], query: &[(&str, String)]) -> Result<Url> {
        let mut u = self.base.clone();
        u.path_segments_mut()
            .map_err(|()| anyhow!("{} cannot have a path", self.shown()))?
            .pop_if_empty()
            .extend(path);
        if !query.is_empty() {
            let mut q = u.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(u)
    }

    /// Sends a call; an answer that is not a success is an [`ApiError`].
    async fn send(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response> {
        let mut req = self
            .http
            .request(method, self.url(path, query)?)
            .header(AUTHORIZATION, self.auth.clone());
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(refused(resp).await.into())
    }

    /// Why a call got no answer, naming the server (never the token).
    fn unreachable(&self, e: &reqwest::Error) -> anyhow::Error {
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            cause = s.to_string();
            source = s.source();
        }
        if e.is_connect() {
            anyhow!(
                "cannot reach the kaon server at {}: {cause} (is `kaon server` running there? check --server or KAON_SERVER)",
                self.shown()
            )
        } else if e.is_timeout() {
            anyhow!("the kaon server at {} did not answer in time", self.shown())
        } else {
            anyhow!(
                "lost the connection to the kaon server at {}: {cause}",
                self.shown()
            )
        }
    }

    /// `GET` an API path.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, String)],
    ) -> Result<T> {
        let resp = self
            .send(
                Method::GET,
                path,
                query,
                None,
                Some(Duration::from_secs(90)),
            )
            .await?;
        self.read(resp).await
    }

    /// `POST` a JSON body to an API path; its answer (`null` when empty).
    pub async fn post<T: DeserializeOwned>(&self, path: &[&str], body: &Value) -> Result<T> {
        let resp = self
            .send(
                Method::POST,
                path,
                &[],
                Some(body),
                Some(Duration::from_secs(90)),
            )
            .await?;
        self.read(resp).await
    }

    async fn read<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T> {
        let text = resp.text().await.map_err(|e| self.unreachable(&e))?;
        let text = if text.trim().is_empty() {
            "null"
        } else {
            &text
        };
        serde_json::from_str(text).with_context(|| {
            format!(
                "the kaon server at {} answered something this kaon does not understand (a different version?)",
                self.shown()
            )
        })
    }

    /// Opens a server-sent event stream.
    pub async fn events(&self, path: &[&str]) -> Result<Events> {
        let mut req = self
            .http
            .get(self.url(path, &[])?)
            .header(AUTHORIZATION, self.auth.clone());
        req = req.header(ACCEPT, "text/event-stream");
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        if !resp.status().is_success() {
            return Err(refused(resp).await.into());
        }
        Ok(Events {
            resp,
            buf: Vec::new(),
        })
    }

    /// A run with its nodes and child runs.
    pub async fn run(&self, id: &str) -> Result<RunDetail> {
        self.get(&["api", "v1", "runs", id], &[]).await
    }
}

/// The error of an answer that is not a success, with what to do for a
/// refused token.
async fn refused(resp: reqwest::Response) -> ApiError {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let said = match body["error"]["message"].as_str() {
        Some(m) => m.to_string(),
        None if text.trim().is_empty() => format!("the server answered {status}"),
        None => format!("the server answered {status}: {}", text.trim()),
    };
    let message = match status {
        StatusCode::UNAUTHORIZED => format!(
            "{said}; check KAON_TOKEN (or the token file): the server does not accept this token"
        ),
        StatusCode::FORBIDDEN => format!(
            "{said}; the token's role does not allow this: ask an admin for a token with the role it needs"
        ),
        _ => said,
    };
    ApiError { status, message }
}

/// A server-sent event stream.
pub struct Events {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

/// One server-sent event.
#[derive(Debug)]
pub struct Event {
    /// Its name (`snapshot`, `nodes`, `finished`, ...).
    pub name: String,
    /// Its data.
    pub data: Value,
}

impl Events {
    /// The next event; `None` when the stream ends. The server sends a
    /// keep-alive every 15 s: a stream silent for longer is taken as lost.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(ev) = self.take() {
                return Ok(Some(ev));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(45), self.resp.chunk())
                .await
                .map_err(|_| anyhow!("the server sent nothing for 45 s"))?
                .map_err(|e| anyhow!("the event stream broke: {e}"))?;
            match chunk {
                Some(bytes) => self.buf.extend(bytes.iter().filter(|b| **b != b'\r')),
                None => return Ok(None),
            }
        }
    }

    /// An event whole in the buffer, if there is one (comments skipped).
    fn take(&mut self) -> Option<Event> {
        while let Some(i) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.buf.drain(..i + 2).collect();
            if let Some(ev) = parse_event(&String::from_utf8_lossy(&block)) {
                return Some(ev);
            }
        }
        None
    }
}

/// An event block's name and data; `None` for a block without data (a
/// keep-alive comment).
fn parse_event(block: &str) -> Option<Event> {
    let mut name = String::from("message");
    let mut data: Option<String> = None;
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = value.to_string(),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    let data = data?;
    let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
    Some(Event { name, data })
}

/// A run as the API shows it.
#[derive(Debug, Deserialize)]
pub struct RunView {
    /// Its id.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow file (on the server).
    pub path: String,
    /// The deployed version.
    pub digest: String,
    /// Its status.
    pub status: RunStatus,
    /// Parameter values (secrets as `<secret>`).
    #[serde(default)]
    pub params: Value,
    /// A child run's parent run.
    pub parent: Option<String>,
    /// Its sub-workflow node in the parent.
    pub parent_node: Option<u32>,
    /// When it was created (ms since the epoch).
    pub created_ms: i64,
    /// When it ended.
    pub finished_ms: Option<i64>,
    /// The server driving it, if any.
    pub owner: Option<String>,
    /// The workflow's outputs.
    pub outputs: Option<Value>,
    /// Why it ended as it did.
    pub message: Option<String>,
    /// Signals received.
    pub signals: Option<Value>,
}

impl RunView {
    /// The row the local verbs print; what the API does not show is
    /// empty (the run's options, its driver's heartbeat, a cancel's
    /// reason).
    pub fn row(&self) -> RunRow {
        let mut data = Map::new();
        if let Some(m) = &self.message {
            data.insert("message".into(), json!(m));
        }
        if let Some(Value::Object(s)) = &self.signals
            && !s.is_empty()
        {
            data.insert("signals".into(), Value::Object(s.clone()));
        }
        if let Some(o) = &self.outputs {
            data.insert("outputs".into(), o.clone());
        }
        RunRow {
            id: self.id.clone(),
            workflow: self.workflow.clone(),
            path: self.path.clone(),
            digest: self.digest.clone(),
            params: self.params.to_string(),
            options: "{}".into(),
            parent: self
                .parent
                .clone()
                .map(|p| (p, self.parent_node.unwrap_or(0))),
            status: self.status,
            data: Value::Object(data).to_string(),
            created_ms: self.created_ms,
            finished_ms: self.finished_ms,
            owner: self.owner.clone(),
            heartbeat_ms: None,
        }
    }

    /// The run's outputs as a map, when it has any.
    pub fn outputs(&self) -> Option<&Map<String, Value>> {
        self.outputs.as_ref().and_then(Value::as_object)
    }
}

/// A node as the API shows it.
#[derive(Debug, Deserialize)]
pub struct NodeView {
    /// Its id within the run.
    pub id: u32,
    /// Its scope.
    pub scope: u32,
    /// Its instance key.
    pub key: String,
    /// Step name or block label.
    pub name: String,
    /// Its kind.
    pub kind: NodeKind,
    /// Its state.
    pub state: NodeState,
    /// Attempts started.
    pub attempt: u32,
    /// When its first attempt started.
    pub started_ms: Option<i64>,
    /// When it ended.
    pub finished_ms: Option<i64>,
    /// Its state and facts.
    #[serde(default)]
    pub data: Value,
}

impl NodeView {
    /// The stored row it shows.
    pub fn row(&self) -> NodeRow {
        NodeRow {
            id: self.id,
            scope: self.scope,
            key: self.key.clone(),
            name: self.name.clone(),
            kind: self.kind,
            state: self.state,
            attempt: self.attempt,
            started_ms: self.started_ms,
            finished_ms: self.finished_ms,
            data: self.data.to_string(),
        }
    }

    /// The engine's record of it, as the progress display takes it;
    /// `None` when its facts do not read.
    pub fn record(&self) -> Option<NodeRecord> {
        let data: NodeData = serde_json::from_value(self.data.clone()).ok()?;
        Some(NodeRecord {
            id: NodeId(self.id),
            scope: self.scope,
            key: self.key.clone(),
            name: self.name.clone(),
            kind: self.kind.as_str(),
            data,
        })
    }
}

/// A run with its nodes and child runs.
#[derive(Debug, Deserialize)]
pub struct RunDetail {
    /// The run.
    pub run: RunView,
    /// Its nodes (those stored: pending nodes never stored are missing).
    pub nodes: Vec<NodeView>,
    /// Its sub-workflows' runs.
    #[serde(default)]
    pub children: Vec<RunView>,
}

/// An artifact as the API shows it.
#[derive(Debug, Deserialize)]
pub struct ArtifactView {
    id: String,
    digest: String,
    kind: String,
    size: i64,
    files: i64,
    media_type: String,
    name: String,
    run: Option<String>,
    node: Option<u32>,
    step: Option<String>,
    step_key: Option<String>,
    attempt: Option<u32>,
    path: Option<String>,
    created_ms: i64,
    #[serde(default)]
    tags: Value,
    memoized_from: Option<String>,
}

impl ArtifactView {
    /// The row the local verbs print.
    pub fn row(self) -> ArtifactRow {
        ArtifactRow {
            id: self.id,
            digest: self.digest,
            kind: self.kind,
            size: self.size,
            files: self.files,
            media_type: self.media_type,
            name: self.name,
            run: self.run,
            node: self.node,
            step: self.step,
            step_key: self.step_key,
            attempt: self.attempt,
            path: self.path,
            created_ms: self.created_ms,
            tags: match self.tags {
                Value::Null => "{}".into(),
                t => t.to_string(),
            },
            memoized_from: self.memoized_from,
        }
    }
}

/// A lineage edge as the API shows it.
#[derive(Debug, Deserialize)]
pub struct EdgeView {
    depth: u32,
    from: String,
    run: String,
    node: u32,
    to: String,
}

impl EdgeView {
    /// The store's edge.
    pub fn edge(self) -> LineageEdge {
        LineageEdge {
            depth: self.depth,
            from: self.from,
            run: self.run,
            node: self.node,
            to: self.to,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
mod tests {
    use super::{base_url, parse_event};

    #[test]
    fn an_event_block_reads_with_its_name_and_data() {
        let ev = parse_event("event: nodes\ndata: {\"run\": \"r\"}\n\n").unwrap();
        assert_eq!(ev.name, "nodes");
        assert_eq!(ev.data["run"], "r");
        // A keep-alive comment is no event.
        assert!(parse_event(":\n\n").is_none());
        // Data on several lines is joined with newlines.
        let ev = parse_event("data: [1,\ndata: 2]\n\n").unwrap();
        assert_eq!(ev.name, "message");
        assert_eq!(ev.data, serde_json::json!([1, 2]));
    }

    #[test]
    fn a_server_url_is_http() {
        assert_eq!(
            base_url("localhost:8470").unwrap().as_str(),
            "http://localhost:8470/"
        );
        assert!(base_url("https://kaon.example").is_err());
        assert!(base_url("ftp://kaon.example").is_err());
    }
}
