//! Server-sent event streams of committed state changes: of one run (and
//! its sub-workflows' runs), or of every run.
//!
//! Events: `snapshot` (a run stream's first: the run as it is, the same
//! body as `GET /api/v1/runs/{id}`), `run` (a run was created), `nodes`
//! (nodes changed, one event per run per commit however many nodes:
//! `{run, root, scopes, nodes}`, `scopes` being the scopes the commit
//! made, as in the snapshot, often none),
//! `finished` (a run ended; a run stream ends after its root's),
//! `released` (a server let go of a run; another carries it on), and
//! `lagged` (the client fell behind and missed changes: fetch the run
//! again). Changes of runs another server drives reach a run stream as
//! its `finished` only (the store is looked at every second).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use kaon_runtime::Change;
use kaon_store::StateStore;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::views::ScopeView;
use super::{NodeView, auth};
use crate::app::App;
use crate::auth::Role;
use crate::error::{ApiError, ErrorBody};

type Events = Sse<KeepAliveStream<futures::stream::BoxStream<'static, Result<Event, Infallible>>>>;

/// Changes of one run and its sub-workflows' runs, starting with a
/// snapshot; the stream ends after the run ends.
#[utoipa::path(get, path = "/api/v1/runs/{id}/events",
    params(("id" = String, Path, description = "The run")),
    responses((status = 200, content_type = "text/event-stream", description = "snapshot, run, nodes, finished, released, lagged events"), (status = 404, body = ErrorBody)))]
pub(crate) async fn of_run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Events, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    // Subscribed before the snapshot is read: a change committed in
    // between is sent (twice at worst), never lost.
    let changes = app.runner.subscribe();
    let snapshot = super::runs::detail(&app, &id).await?;
    let (tx, rx) = mpsc::channel(256);
    let ended = snapshot.run.status != "running";
    // Printed straight to text: a snapshot can hold 30,000 nodes.
    let first = Event::default()
        .event("snapshot")
        .data(serde_json::to_string(&snapshot).unwrap_or_else(|_| "null".into()));
    let _ = tx.send(first).await;
    if ended {
        let _ = tx
            .send(event(
                "finished",
                &json!({"run": id, "root": id, "status": snapshot.run.status}),
            ))
            .await;
    } else {
        tokio::spawn(forward(app.clone(), changes, tx, Some(id)));
    }
    Ok(stream(rx))
}

/// Changes of every run.
#[utoipa::path(get, path = "/api/v1/events",
    responses((status = 200, content_type = "text/event-stream", description = "run, nodes, finished, released, lagged events")))]
pub(crate) async fn all(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Events, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    let changes = app.runner.subscribe();
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(forward(app.clone(), changes, tx, None));
    Ok(stream(rx))
}

fn stream(rx: mpsc::Receiver<Event>) -> Events {
    use futures::StreamExt;
    let s = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(s.boxed()).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn event(kind: &str, data: &Value) -> Event {
    Event::default().event(kind).data(data.to_string())
}

/// Sends changes (of `root`'s runs, or all) until the client goes away
/// or, for a run stream, the run ends.
async fn forward(
    app: Arc<App>,
    mut changes: tokio::sync::broadcast::Receiver<Change>,
    tx: mpsc::Sender<Event>,
    root: Option<String>,
) {
    // A run stream follows the run and what runs under it (its
    // sub-workflows' runs share its root); a child run's own stream
    // follows that run.
    let mine = |run: &str, r: &str| root.as_deref().is_none_or(|want| r == want || run == want);
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    let mut stopping = app.stopping.subscribe();
    loop {
        if tx.is_closed() {
            return;
        }
        let ev = tokio::select! {
            () = crate::stopped(&mut stopping) => return,
            c = changes.recv() => match c {
                Ok(c) => match &c {
                    Change::RunCreated { run, root: r, workflow } if mine(run, r) => {
                        Some(event("run", &json!({"run": run, "root": r, "workflow": workflow})))
                    }
                    Change::Nodes { run, root: r, nodes, scopes } if mine(run, r) => {
                        let nodes: Vec<NodeView> = nodes
                            .iter()
                            .map(|n| NodeView::of(&kaon_runtime::rows::node_row(n)))
                            .collect();
                        let scopes: Vec<ScopeView> = scopes.iter().map(ScopeView::of_record).collect();
                        Some(event("nodes", &json!({"run": run, "root": r, "scopes": scopes, "nodes": nodes})))
                    }
                    Change::RunFinished { run, root: r, status } if mine(run, r) => {
                        let status = kaon_runtime::rows::store_status(*status);
                        let e = event("finished", &json!({"run": run, "root": r, "status": status.as_str()}));
                        if root.as_deref() == Some(run.as_str()) {
                            let _ = tx.send(e).await;
                            return;
                        }
                        Some(e)
                    }
                    Change::Released { run } if mine(run, run) => {
                        Some(event("released", &json!({"run": run})))
                    }
                    _ => None,
                },
                Err(RecvError::Lagged(n)) => Some(event("lagged", &json!({"missed": n}))),
                Err(RecvError::Closed) => return,
            },
            _ = poll.tick() => {
                // A run driven by another server ends there: its end is
                // read from the store.
                let Some(id) = root.as_deref() else { continue };
                match app.store.run(id).await {
                    Ok(Some(r)) if r.status.is_terminal() => {
                        let _ = tx
                            .send(event("finished", &json!({"run": id, "root": id, "status": r.status.as_str()})))
                            .await;
                        return;
                    }
                    _ => None,
                }
            }
        };
        if let Some(e) = ev
            && tx.send(e).await.is_err()
        {
            return;
        }
    }
}
