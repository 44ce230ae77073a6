//! Runs: submit, list, show, cancel, signal.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use kaon_engine::{FailurePolicy, RunOptions};
use kaon_runtime::{RunId, RuntimeError};
use kaon_store::row::RunStatus;
use kaon_store::{MessageBody, RunFilter, StateStore};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::views::{RunDetail, ScopeView};
use super::{Body, NodeView, RunView, auth};
use crate::app::App;
use crate::auth::Role;
use crate::error::{ApiError, ErrorBody};

/// A run to start.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitRun {
    /// A deployed workflow's name.
    workflow: String,
    /// Which deployed version (default: the latest).
    #[serde(default)]
    digest: Option<String>,
    /// Parameter values (JSON values of the declared types).
    #[serde(default)]
    #[schema(value_type = Object)]
    params: Map<String, Value>,
    /// Ignore cached results (they are still recorded for later runs).
    #[serde(default)]
    no_cache: bool,
    /// `stop` (default) or `continue` after a step fails.
    #[serde(default)]
    on_failure: Option<String>,
}

/// A run started.
#[derive(Serialize, ToSchema)]
pub(crate) struct Submitted {
    /// Its id.
    id: String,
}

/// Starts a run of a deployed workflow.
#[utoipa::path(post, path = "/api/v1/runs", request_body = SubmitRun,
    responses((status = 201, body = Submitted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn submit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Body(req): Body<SubmitRun>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    auth(&app, &headers, Role::Operate).await?;
    let on_failure = match req.on_failure.as_deref() {
        None | Some("stop") => FailurePolicy::Stop,
        Some("continue") => FailurePolicy::Continue,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "on_failure is `stop` or `continue`, not `{other}`"
            )));
        }
    };
    let options = RunOptions {
        on_failure,
        no_cache: req.no_cache,
        ..RunOptions::default()
    };
    let id = app
        .submit(
            &req.workflow,
            req.digest.as_deref(),
            req.params,
            options,
            None,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(Submitted { id: id.to_string() })))
}

/// Which runs to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only runs of this workflow.
    workflow: Option<String>,
    /// Only runs in this status.
    status: Option<String>,
    /// Only runs listed after this run: the next page of a list that
    /// ended with it.
    after: Option<String>,
    /// At most this many (default 50, at most 1000).
    limit: Option<u32>,
    /// Include sub-workflows' runs.
    #[serde(default)]
    children: bool,
    /// Only runs created at or after this time (ms since the epoch,
    /// inclusive).
    since: Option<i64>,
    /// Only runs created before this time (ms since the epoch, exclusive:
    /// `since=T1&until=T2` then `since=T2&until=T3` lists each run once).
    until: Option<i64>,
    /// Only runs that this schedule's (or trigger's) ticks started: its id,
    /// `<workflow>:<name>`, as `GET /api/v1/schedules` lists it.
    schedule: Option<String>,
}

/// Runs, newest first (by creation; ties by id). Every filter given must
/// hold; a page of one workflow, one schedule or a time window is served
/// by an index however many runs there are.
#[utoipa::path(get, path = "/api/v1/runs", params(ListQuery),
    responses((status = 200, body = Vec<RunView>), (status = 400, body = ErrorBody)))]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    let status = match &q.status {
        None => None,
        Some(s) => Some(s.parse::<RunStatus>().map_err(|_| {
            ApiError::bad_request(format!(
                "status is one of running, succeeded, failed, cancelled; not `{s}`"
            ))
        })?),
    };
    if let (Some(since), Some(until)) = (q.since, q.until)
        && since > until
    {
        return Err(ApiError::bad_request(format!(
            "since ({since}) is after until ({until}): the window is empty"
        )));
    }
    let rows = app
        .store
        .list_runs(&RunFilter {
            status,
            children: q.children,
            limit: Some(q.limit.unwrap_or(50).clamp(1, 1000)),
            workflow: q.workflow,
            after: q.after,
            since: q.since,
            until: q.until,
            schedule: q.schedule,
        })
        .await?;
    Ok(Json(rows.iter().map(RunView::of).collect()))
}

/// A run with its nodes and its sub-workflows' runs.
#[utoipa::path(get, path = "/api/v1/runs/{id}",
    params(("id" = String, Path, description = "The run")),
    responses((status = 200, body = RunDetail), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<RunDetail>, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    Ok(Json(detail(&app, &id).await?))
}

/// A run, its nodes and children, as the API shows them.
pub(crate) async fn detail(app: &App, id: &str) -> Result<RunDetail, ApiError> {
    let row = app.run_row(id).await?;
    // Nodes before scopes: the reads are separate (and, on SQLite, may be
    // on different connections) and a commit can fall between them. A
    // scope is committed with or before the nodes in it and never goes
    // away, so read in this order every node's scope is there; read the
    // other way, a run's first commit could show its nodes without scope 0.
    let nodes = app.store.nodes(id).await?;
    let scopes = app.store.scopes(id).await?;
    let children = app.store.children(id).await?;
    Ok(RunDetail {
        run: RunView::of(&row),
        scopes: scopes.iter().map(ScopeView::of).collect(),
        nodes: nodes.iter().map(NodeView::of).collect(),
        children: children.iter().map(RunView::of).collect(),
    })
}

/// Why a run is cancelled.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelRun {
    /// Shown in the run's message.
    #[serde(default)]
    reason: Option<String>,
}

/// Cancels a run: running steps are stopped, nothing new starts.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", request_body = CancelRun,
    params(("id" = String, Path, description = "The run")),
    responses((status = 202, description = "Asked; the run ends shortly"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn cancel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(req): Body<CancelRun>,
) -> Result<StatusCode, ApiError> {
    let caller = auth(&app, &headers, Role::Operate).await?;
    let run = live_root(&app, &id).await?;
    let reason = req
        .reason
        .unwrap_or_else(|| format!("cancelled through the API ({})", caller.describe()));
    let r = app.runner.cancel(&run, &reason).await;
    deliver(&app, &run, r, MessageBody::Cancel { reason }).await
}

/// What the runtime answered to a message for a run; a run this server
/// does not drive (another server does, or nobody does right now) gets
/// the message in its inbox in the store, where its driver reads it.
async fn deliver(
    app: &App,
    run: &RunId,
    answer: Result<(), RuntimeError>,
    body: MessageBody,
) -> Result<StatusCode, ApiError> {
    match answer {
        Ok(()) => Ok(StatusCode::ACCEPTED),
        Err(RuntimeError::NoSuchRun { .. }) => {
            app.store
                .post(run.as_str(), &body, kaon_runtime::now_ms() as i64)
                .await?;
            Ok(StatusCode::ACCEPTED)
        }
        Err(e) => Err(e.into()),
    }
}

/// A signal for a run's waiting steps.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignalRun {
    /// The signal's name (a wait step's `signal`).
    name: String,
    /// Its value.
    #[serde(default)]
    #[schema(value_type = Object)]
    value: Value,
}

/// Sends a signal to a run.
#[utoipa::path(post, path = "/api/v1/runs/{id}/signal", request_body = SignalRun,
    params(("id" = String, Path, description = "The run")),
    responses((status = 202, description = "Delivered to the run's inbox"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn signal(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(req): Body<SignalRun>,
) -> Result<StatusCode, ApiError> {
    auth(&app, &headers, Role::Operate).await?;
    let run = live_root(&app, &id).await?;
    let r = app.runner.signal(&run, &req.name, &req.value).await;
    let body = MessageBody::Signal {
        name: req.name,
        value: req.value.to_string(),
    };
    deliver(&app, &run, r, body).await
}

/// A running run's id: 404 when there is none, 409 when it ended.
/// Messages go to the run's inbox in the store, where its driver (this
/// server or another) reads them.
async fn live_root(app: &App, id: &str) -> Result<RunId, ApiError> {
    let row = app.run_row(id).await?;
    if row.status.is_terminal() {
        return Err(ApiError::conflict(format!(
            "run {id} already ended: {}",
            row.status
        )));
    }
    RunId::parse(&row.id).map_err(|_| ApiError::bad_request(format!("`{id}` is not a run id")))
}

/// Which step to retry.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryStep {
    /// The failed step's name (every failed instance), an instance key,
    /// or a block's key (the failed steps inside it).
    step: String,
}

/// Retries a failed step: it gets a fresh retry budget, the steps that
/// did not run because of it run after it, and steps that succeeded are
/// not run again. A failed run goes back to running.
#[utoipa::path(post, path = "/api/v1/runs/{id}/retry", request_body = RetryStep,
    params(("id" = String, Path, description = "The run")),
    responses((status = 202, description = "The reset is committed; the step runs shortly"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn retry(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(req): Body<RetryStep>,
) -> Result<StatusCode, ApiError> {
    auth(&app, &headers, Role::Operate).await?;
    let row = app.run_row(&id).await?;
    app.retry(&row, &req.step).await?;
    Ok(StatusCode::ACCEPTED)
}
