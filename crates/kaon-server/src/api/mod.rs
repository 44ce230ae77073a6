//! The HTTP API: routes, the OpenAPI description, and what handlers
//! share (the JSON body extractor, views of stored rows).

// utoipa's `path` macro writes the query types it is given qualified.
#![allow(unused_qualifications)]

mod artifacts;
mod callback;
mod content;
mod events;
mod graph;
mod logs;
mod ops;
mod preview;
mod runs;
mod schedules;
mod series;
mod steps;
mod tokens;
mod views;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::routing::{delete, get, post};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;

use crate::app::App;
use crate::error::ApiError;

pub(crate) use views::{NodeView, RunView};

/// Every route of the server.
pub(crate) fn router(app: Arc<App>) -> Router {
    let limit = app.cfg.body_limit;
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route(
            "/api/v1/workflows",
            get(workflows::list).post(workflows::deploy),
        )
        .route("/api/v1/workflows/{name}", get(workflows::show))
        .route("/api/v1/runs", get(runs::list).post(runs::submit))
        .route("/api/v1/runs/{id}", get(runs::show))
        .route("/api/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/api/v1/runs/{id}/signal", post(runs::signal))
        .route("/api/v1/runs/{id}/retry", post(runs::retry))
        .route("/api/v1/runs/{id}/logs", get(logs::page))
        .route("/api/v1/runs/{id}/events", get(events::of_run))
        .route("/api/v1/runs/{id}/graph", get(graph::show))
        .route("/api/v1/runs/{id}/steps/{key}/launch", get(steps::launch))
        .route("/api/v1/events", get(events::all))
        .route("/api/v1/artifacts", get(artifacts::list))
        .route("/api/v1/artifacts/{id}", get(artifacts::show))
        .route("/api/v1/artifacts/series", get(series::series))
        .route("/api/v1/artifacts/{id}/lineage", get(artifacts::lineage))
        .route("/api/v1/artifacts/{id}/content", get(content::content))
        .route("/api/v1/artifacts/{id}/preview", get(preview::preview))
        .route("/api/v1/cache/explain", get(artifacts::explain))
        .route("/api/v1/schedules", get(schedules::list))
        .route("/api/v1/schedules/{id}/ticks", get(schedules::ticks))
        .route("/api/v1/schedules/{id}/pause", post(schedules::pause))
        .route("/api/v1/schedules/{id}/resume", post(schedules::resume))
        .route("/api/v1/schedules/{id}/trigger", post(schedules::trigger))
        .route("/api/v1/whoami", get(tokens::whoami))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{id}", delete(tokens::revoke))
        .route("/v1/spark/events", post(callback::spark_event))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// The API's description, generated from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "kaon",
        description = "kaon's server: deploy workflows, start and watch runs, read logs, artifacts and lineage, manage schedules and tokens. Every call under /api carries `Authorization: Bearer <token>`."
    ),
    paths(
        ops::healthz,
        ops::readyz,
        ops::metrics,
        workflows::list,
        workflows::deploy,
        workflows::show,
        runs::list,
        runs::submit,
        runs::show,
        runs::cancel,
        runs::signal,
        runs::retry,
        logs::page,
        events::of_run,
        events::all,
        graph::show,
        steps::launch,
        artifacts::list,
        artifacts::show,
        artifacts::lineage,
        content::content,
        preview::preview,
        series::series,
        artifacts::explain,
        schedules::list,
        schedules::ticks,
        schedules::pause,
        schedules::resume,
        schedules::trigger,
        tokens::whoami,
        tokens::list,
        tokens::create,
        tokens::revoke,
        callback::spark_event,
    ),
    modifiers(&Bearer)
)]
pub(crate) struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        api.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// A JSON request body whose every fault is a 400 that names it: bad
/// JSON with its line and column, an unknown or missing field by name, a
/// wrong content type; a body over the limit is a 413.
pub(crate) struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError {
                        status: e.status(),
                        code: "too_large",
                        message: format!("the request body is too large: {}", e.body_text()),
                    }
                } else {
                    ApiError::bad_request(e.body_text())
                }
            })?;
        let text = if bytes.is_empty() {
            &b"{}"[..]
        } else {
            &bytes[..]
        };
        let mut de = serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize(&mut de)
            .map(Body)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path.is_empty() || path == "." {
                    ApiError::bad_request(format!("the request body is not valid: {inner}"))
                } else {
                    ApiError::bad_request(format!(
                        "the request body is not valid at `{path}`: {inner}"
                    ))
                }
            })
    }
}

/// Checks the caller's token allows `need` (see [`crate::auth`]).
pub(crate) async fn auth(
    app: &App,
    headers: &axum::http::HeaderMap,
    need: crate::auth::Role,
) -> Result<crate::auth::Caller, ApiError> {
    crate::auth::authorize(app.store.as_ref(), headers, need, app.cfg.anonymous).await
}
