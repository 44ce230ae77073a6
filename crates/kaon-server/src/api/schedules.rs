//! Schedules and triggers: list, ticks, pause, resume, trigger now.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use kaon_store::{ScheduleRow, ServiceStore, TickRow};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::{Body, auth};
use crate::app::{App, Declared};
use crate::auth::Role;
use crate::error::{ApiError, ErrorBody};

/// A schedule or trigger.
#[derive(Serialize, ToSchema)]
pub(crate) struct ScheduleView {
    /// `<workflow>:<name>`.
    id: String,
    /// The workflow it starts.
    workflow: String,
    /// The deployed version it starts.
    digest: String,
    /// What it is (`kind`: `cron` or `trigger`), as declared.
    #[schema(value_type = Object)]
    spec: Value,
    /// Paused schedules fire nothing.
    paused: bool,
    /// Its last tick.
    last: Option<TickView>,
    /// When a cron schedule fires next (ms since the epoch); none for a
    /// trigger, a paused schedule or a spec that no longer reads.
    next_ms: Option<i64>,
}

/// One tick of a schedule.
#[derive(Serialize, ToSchema)]
pub(crate) struct TickView {
    /// The due time (RFC 3339) or, for a trigger, the triggering run.
    tick: String,
    /// When it was due (ms since the epoch).
    due_ms: i64,
    /// The run it started.
    run: Option<String>,
    /// `pending`, `queued`, `started`, `skipped: ...`, `failed: ...`.
    outcome: String,
}

impl TickView {
    fn of(t: &TickRow) -> TickView {
        TickView {
            tick: t.tick.clone(),
            due_ms: t.due_ms,
            run: t.run.clone(),
            outcome: t.outcome.clone(),
        }
    }
}

/// Every schedule and trigger.
#[utoipa::path(get, path = "/api/v1/schedules", responses((status = 200, body = Vec<ScheduleView>)))]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Vec<ScheduleView>>, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    let mut out = Vec::new();
    for s in app.store.schedules().await? {
        let last = app.store.ticks(&s.id, 1).await?;
        let next_ms = match serde_json::from_str::<crate::app::Declared>(&s.spec) {
            Ok(crate::app::Declared::Cron(spec)) if !s.paused => spec
                .parse_cron()
                .ok()
                .and_then(|c| c.next_after(kaon_runtime::now_ms() as i64)),
            _ => None,
        };
        out.push(ScheduleView {
            next_ms,
            spec: serde_json::from_str(&s.spec).unwrap_or(Value::Null),
            id: s.id,
            workflow: s.workflow,
            digest: s.digest,
            paused: s.paused,
            last: last.first().map(TickView::of),
        });
    }
    Ok(Json(out))
}

/// How many ticks.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct TicksQuery {
    /// At most this many, latest first (default 100, at most 10000).
    limit: Option<u32>,
}

/// A schedule's ticks, latest first.
#[utoipa::path(get, path = "/api/v1/schedules/{id}/ticks",
    params(("id" = String, Path, description = "The schedule"), TicksQuery),
    responses((status = 200, body = Vec<TickView>), (status = 404, body = ErrorBody)))]
pub(crate) async fn ticks(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<TicksQuery>,
) -> Result<Json<Vec<TickView>>, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    schedule(&app, &id).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let rows = app.store.ticks(&id, limit).await?;
    Ok(Json(rows.iter().map(TickView::of).collect()))
}

async fn schedule(app: &App, id: &str) -> Result<ScheduleRow, ApiError> {
    app.store
        .schedules()
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no schedule `{id}`")))
}

/// Pauses a schedule: it fires nothing until resumed.
#[utoipa::path(post, path = "/api/v1/schedules/{id}/pause",
    params(("id" = String, Path, description = "The schedule")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(crate) async fn pause(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    set(&app, &headers, &id, true).await
}

/// Resumes a schedule; ticks missed while paused follow its catch-up
/// policy.
#[utoipa::path(post, path = "/api/v1/schedules/{id}/resume",
    params(("id" = String, Path, description = "The schedule")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(crate) async fn resume(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    set(&app, &headers, &id, false).await
}

async fn set(
    app: &App,
    headers: &HeaderMap,
    id: &str,
    paused: bool,
) -> Result<StatusCode, ApiError> {
    auth(app, headers, Role::Operate).await?;
    if app.store.set_paused(id, paused).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no schedule `{id}`")))
    }
}

/// Parameters for a run triggered by hand.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TriggerNow {
    /// Values over the schedule's own parameters.
    #[serde(default)]
    #[schema(value_type = Object)]
    params: Map<String, Value>,
}

/// What a trigger by hand started.
#[derive(Serialize, ToSchema)]
pub(crate) struct Triggered {
    /// The run.
    run: String,
}

/// Starts a run of the schedule now, with its parameters (and any given).
#[utoipa::path(post, path = "/api/v1/schedules/{id}/trigger", request_body = TriggerNow,
    params(("id" = String, Path, description = "The schedule")),
    responses((status = 201, body = Triggered), (status = 404, body = ErrorBody)))]
pub(crate) async fn trigger(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(req): Body<TriggerNow>,
) -> Result<(StatusCode, Json<Triggered>), ApiError> {
    auth(&app, &headers, Role::Operate).await?;
    let s = schedule(&app, &id).await?;
    let mut params: Map<String, Value> = match serde_json::from_str::<Declared>(&s.spec) {
        Ok(Declared::Cron(c)) => c.params.into_iter().collect(),
        _ => Map::new(),
    };
    params.extend(req.params);
    let run = app
        .submit(
            &s.workflow,
            Some(&s.digest),
            params,
            kaon_engine::RunOptions::default(),
            None,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Triggered {
            run: run.to_string(),
        }),
    ))
}
