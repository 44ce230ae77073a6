//! Step logs, a page at a time, and followed while the step runs.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use kaon_exec::AttemptFiles;
use kaon_store::{NodeRow, StateStore};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth;
use crate::app::App;
use crate::auth::Role;
use crate::error::{ApiError, ErrorBody};

/// Which log, from where.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogQuery {
    /// The step's name, or an instance key such as `train[reg=US]`.
    step: String,
    /// `stdout` (default) or `stderr`.
    stream: Option<String>,
    /// Which attempt (default: the latest).
    attempt: Option<u32>,
    /// The byte to start at (default 0; a page's `next` for the next one).
    offset: Option<u64>,
    /// At most this many bytes (default and most: the server's page
    /// limit, 1 MiB unless configured).
    limit: Option<usize>,
    /// When there is nothing past `offset` yet and the step is still
    /// running, wait (up to 25 s) for more instead of answering at once.
    #[serde(default)]
    follow: bool,
}

/// A page of a log.
#[derive(Serialize, ToSchema)]
pub(crate) struct LogPage {
    /// The step instance.
    step: String,
    /// The attempt.
    attempt: u32,
    /// `stdout` or `stderr`.
    stream: String,
    /// Where this page starts (bytes).
    offset: u64,
    /// Where the next page starts.
    next: u64,
    /// The log's size now.
    size: u64,
    /// The text (UTF-8; a page never ends inside a character; bytes that
    /// are not UTF-8 show as U+FFFD).
    text: String,
    /// True when the step has ended and this page reaches the end: there
    /// will be no more.
    done: bool,
}

/// A page of a step's stdout or stderr.
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs",
    params(("id" = String, Path, description = "The run"), LogQuery),
    responses((status = 200, body = LogPage), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "The name matches several instances")))]
pub(crate) async fn page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Json<LogPage>, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    app.run_row(&id).await?;
    let stream = match q.stream.as_deref() {
        None | Some("stdout") => "stdout",
        Some("stderr") => "stderr",
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "stream is `stdout` or `stderr`, not `{other}`"
            )));
        }
    };
    let limit = q
        .limit
        .unwrap_or(app.cfg.log_page_limit)
        .clamp(1, app.cfg.log_page_limit);
    let offset = q.offset.unwrap_or(0);
    // Following waits in short steps, reading the node again each time
    // (it may end, or start a new attempt).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        let node = node(&app, &id, &q.step).await?;
        let attempt = q.attempt.unwrap_or(node.attempt).max(1);
        let files = AttemptFiles::new(&app.cfg.logs(), &id, node.id, &node.name, attempt);
        let path = if stream == "stdout" {
            files.stdout
        } else {
            files.stderr
        };
        let (bytes, size) = tokio::task::spawn_blocking(move || read_page(&path, offset, limit))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(format!("cannot read the log: {e}")))?;
        let ended = node.state.is_terminal() || attempt < node.attempt;
        let waiting = bytes.is_empty() && !ended;
        // A stopping server answers at once: a follower asks again (of the
        // next server).
        let stopping = *app.stopping.borrow();
        if !(q.follow && waiting) || stopping || tokio::time::Instant::now() >= deadline {
            let (text, used) = whole_chars(&bytes);
            let next = offset + used as u64;
            return Ok(Json(LogPage {
                step: node.key,
                attempt,
                stream: stream.to_string(),
                offset,
                next,
                size,
                text,
                done: ended && next >= size,
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The node a step name or instance key names: 404 when none, 409 when
/// a name matches several instances (for-each items, repeat passes).
async fn node(app: &App, run: &str, step: &str) -> Result<NodeRow, ApiError> {
    let nodes = app.store.nodes_named(run, step).await?;
    if let Some(n) = nodes.iter().find(|n| n.key == step) {
        return Ok(n.clone());
    }
    match nodes.len() {
        0 => Err(ApiError::not_found(format!(
            "run {run} has no step `{step}` that started"
        ))),
        1 => Ok(nodes.into_iter().next().expect("one node")),
        n => Err(ApiError::conflict(format!(
            "`{step}` names {n} instances in run {run}; give one: {}{}",
            nodes
                .iter()
                .take(5)
                .map(|n| n.key.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if n > 5 { ", ..." } else { "" }
        ))),
    }
}

/// Up to `limit` bytes from `offset`, and the file's size; a file not
/// written yet is empty.
fn read_page(path: &std::path::Path, offset: u64, limit: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let size = f.metadata()?.len();
    if offset >= size {
        return Ok((Vec::new(), size));
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(limit.min((size - offset) as usize));
    f.take(limit as u64).read_to_end(&mut buf)?;
    Ok((buf, size))
}

/// The text of `bytes` without a character cut at the end, and how many
/// bytes that is (the cut character starts the next page).
fn whole_chars(bytes: &[u8]) -> (String, usize) {
    let used = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        // Cut inside a character at the very end: leave it for later.
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => bytes.len(),
    };
    (String::from_utf8_lossy(&bytes[..used]).into_owned(), used)
}

#[cfg(test)]
mod tests {
    use super::whole_chars;

    #[test]
    fn a_page_never_ends_inside_a_character() {
        let s = "héllo".as_bytes();
        // 'é' is two bytes: cut after its first.
        let (t, used) = whole_chars(&s[..2]);
        assert_eq!((t.as_str(), used), ("h", 1));
        let (t, used) = whole_chars(s);
        assert_eq!((t.as_str(), used), ("héllo", 6));
        // Bytes that are not UTF-8 at all are shown, not held back.
        let (t, used) = whole_chars(&[b'a', 0xff, b'b']);
        assert_eq!((t.as_str(), used), ("a\u{fffd}b", 3));
    }
}
