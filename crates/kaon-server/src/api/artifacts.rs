//! Artifacts, lineage and the cache's explanations.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use kaon_store::{ArtifactFilter, ArtifactIndex, ArtifactRow, Direction, LineageEdge};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::auth;
use crate::app::App;
use crate::auth::Role;
use crate::error::{ApiError, ErrorBody};

/// An artifact.
#[derive(Serialize, ToSchema)]
pub(crate) struct ArtifactView {
    /// Its id.
    id: String,
    /// Its content digest (`blake3:...`).
    digest: String,
    /// `file`, `dir` or `reference`.
    kind: String,
    /// Bytes.
    size: i64,
    /// Files (1 for a file).
    files: i64,
    /// Media type.
    media_type: String,
    /// The output's name.
    name: String,
    /// The producing run, node, step, instance and attempt.
    run: Option<String>,
    /// The producing node.
    node: Option<u32>,
    /// The producing step.
    step: Option<String>,
    /// The producing step instance.
    step_key: Option<String>,
    /// The producing attempt.
    attempt: Option<u32>,
    /// Where the step wrote it.
    path: Option<String>,
    /// When it was recorded (ms since the epoch).
    created_ms: i64,
    /// Tags.
    #[schema(value_type = Object)]
    tags: Value,
    /// For a memoized step's output: the artifact it reuses.
    memoized_from: Option<String>,
}

impl ArtifactView {
    fn of(a: ArtifactRow) -> ArtifactView {
        ArtifactView {
            tags: serde_json::from_str(&a.tags).unwrap_or(Value::Null),
            id: a.id,
            digest: a.digest,
            kind: a.kind,
            size: a.size,
            files: a.files,
            media_type: a.media_type,
            name: a.name,
            run: a.run,
            node: a.node,
            step: a.step,
            step_key: a.step_key,
            attempt: a.attempt,
            path: a.path,
            created_ms: a.created_ms,
            memoized_from: a.memoized_from,
        }
    }
}

/// Which artifacts.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Produced by this run.
    run: Option<String>,
    /// Produced by this step (name or instance key).
    step: Option<String>,
    /// With this name.
    name: Option<String>,
    /// With this digest.
    digest: Option<String>,
    /// At most this many, newest first (default 100, at most 10000).
    limit: Option<u32>,
}

/// Artifacts, newest first.
#[utoipa::path(get, path = "/api/v1/artifacts", params(ListQuery),
    responses((status = 200, body = Vec<ArtifactView>)))]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<ArtifactView>>, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    let rows = app
        .store
        .artifacts(&ArtifactFilter {
            run: q.run,
            step: q.step,
            name: q.name,
            digest: q.digest,
            limit: Some(q.limit.unwrap_or(100).clamp(1, 10_000)),
        })
        .await?;
    Ok(Json(rows.into_iter().map(ArtifactView::of).collect()))
}

/// One artifact, by id or a unique prefix of its id or digest.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}",
    params(("id" = String, Path, description = "Id, or a unique prefix of the id or digest")),
    responses((status = 200, body = ArtifactView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ArtifactView>, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    match app.store.artifact(&id).await? {
        Some(a) => Ok(Json(ArtifactView::of(a))),
        None => Err(ApiError::not_found(format!("no artifact `{id}`"))),
    }
}

/// Which way and how far.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineageQuery {
    /// `upstream` (where it came from, the default) or `downstream`
    /// (what used it).
    direction: Option<String>,
    /// Hops (default 10, at most 100).
    depth: Option<u32>,
}

/// One hop of lineage.
#[derive(Serialize, ToSchema)]
pub(crate) struct EdgeView {
    /// Hops from the artifact asked about.
    depth: u32,
    /// The artifact read.
    from: String,
    /// The run of the step in between.
    run: String,
    /// Its node.
    node: u32,
    /// The artifact written.
    to: String,
}

/// An artifact's lineage: the artifacts and step runs it came from, or
/// that used it.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/lineage",
    params(("id" = String, Path, description = "The artifact"), LineageQuery),
    responses((status = 200, body = Vec<EdgeView>), (status = 404, body = ErrorBody)))]
pub(crate) async fn lineage(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LineageQuery>,
) -> Result<Json<Vec<EdgeView>>, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    let direction = match q.direction.as_deref() {
        None | Some("upstream") => Direction::Upstream,
        Some("downstream") => Direction::Downstream,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "direction is `upstream` or `downstream`, not `{other}`"
            )));
        }
    };
    let Some(a) = app.store.artifact(&id).await? else {
        return Err(ApiError::not_found(format!("no artifact `{id}`")));
    };
    let edges = app
        .store
        .lineage(&a.id, direction, q.depth.unwrap_or(10).clamp(1, 100))
        .await?;
    Ok(Json(
        edges
            .into_iter()
            .map(|e: LineageEdge| EdgeView {
                depth: e.depth,
                from: e.from,
                run: e.run,
                node: e.node,
                to: e.to,
            })
            .collect(),
    ))
}

/// Which step run.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExplainQuery {
    /// The run.
    run: String,
    /// The step name or instance key.
    step: String,
}

/// Why a step ran instead of reusing an earlier result, or whose result
/// it reused (what `kaon cache explain` prints, as data and as lines).
#[utoipa::path(get, path = "/api/v1/cache/explain", params(ExplainQuery),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub(crate) async fn explain(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ExplainQuery>,
) -> Result<Json<Value>, ApiError> {
    use kaon_runtime::memo::explain::{ExplainError, explain};
    auth(&app, &headers, Role::Read).await?;
    let found = explain(app.store.as_ref(), &q.run, &q.step)
        .await
        .map_err(|e| match e {
            ExplainError::Store(s) => ApiError::from(s),
            ExplainError::NoSuchRun { .. } | ExplainError::NoSuchStep { .. } => {
                ApiError::not_found(e.to_string())
            }
            other => ApiError::internal(other.to_string()),
        })?;
    let lines: Vec<String> = found.iter().flat_map(|e| e.lines()).collect();
    Ok(Json(serde_json::json!({ "steps": found, "lines": lines })))
}
