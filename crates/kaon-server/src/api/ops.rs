//! Probes, metrics and the API's description.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use kaon_store::row::RunStatus;
use kaon_store::{RunFilter, StateStore};
use utoipa::OpenApi;

use super::{ApiDoc, auth};
use crate::app::App;
use crate::auth::Role;
use crate::error::{ApiError, ErrorBody};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", security(), responses((status = 200, body = String)))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store answers and the runs of the last server were
/// taken back.
#[utoipa::path(get, path = "/readyz", security(),
    responses((status = 200, body = String), (status = 503, body = ErrorBody)))]
pub(crate) async fn readyz(State(app): State<Arc<App>>) -> Result<&'static str, ApiError> {
    if !app.ready.load(Ordering::Relaxed) {
        return Err(ApiError::unavailable(
            "starting: taking back unfinished runs",
        ));
    }
    app.store.check_present()?;
    app.store
        .list_runs(&RunFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await?;
    Ok("ready")
}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    let running = app
        .store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Running),
            children: true,
            ..Default::default()
        })
        .await?
        .len();
    let body = app
        .metrics
        .render(running, app.store.commit_times(), app.store.backend());
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    ))
}

/// The OpenAPI description of this API.
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
