//! Deployed workflows.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use kaon_store::{ServiceStore, WorkflowRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{Body, auth};
use crate::app::App;
use crate::auth::Role;
use crate::error::{ApiError, ErrorBody};

/// A workflow file to deploy.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Deploy {
    /// The workflow file's path on the server's file system (absolute,
    /// or relative to the server's working directory).
    path: String,
}

/// A deployed version of a workflow.
#[derive(Serialize, ToSchema)]
pub(crate) struct WorkflowView {
    /// The workflow's name.
    name: String,
    /// The version: a digest of its sources.
    digest: String,
    /// Its file.
    path: String,
    /// When this version was deployed (ms since the epoch).
    deployed_ms: i64,
    /// Its schedules and triggers as declared.
    #[schema(value_type = Object)]
    declares: Value,
    /// The workflow's description.
    description: Option<String>,
    /// Its parameters by name: `type`, `default` (never a secret's),
    /// `description`, `secret`, `required`. Empty when the file can no
    /// longer be read as deployed (see `problem`).
    #[schema(value_type = Object)]
    params: Value,
    /// Why the description and parameters are missing, if they are.
    problem: Option<String>,
}

impl WorkflowView {
    fn of(w: &WorkflowRow) -> WorkflowView {
        WorkflowView {
            name: w.name.clone(),
            digest: w.digest.clone(),
            path: w.path.clone(),
            deployed_ms: w.deployed_ms,
            declares: serde_json::from_str(&w.spec).unwrap_or(Value::Null),
            description: None,
            params: Value::Object(Default::default()),
            problem: None,
        }
    }

    /// With what the workflow file says of itself (what a form to start a
    /// run needs).
    async fn described(app: &App, w: &WorkflowRow) -> WorkflowView {
        let mut view = WorkflowView::of(w);
        match app.validated(w).await {
            Ok(v) => {
                view.description = v.workflow.description.clone();
                view.params = Value::Object(
                    v.workflow
                        .params
                        .iter()
                        .map(|(name, p)| {
                            let default = if p.secret { None } else { p.default.clone() };
                            (
                                name.clone(),
                                serde_json::json!({
                                    "type": p.ty.to_string(),
                                    "default": default,
                                    "description": p.description,
                                    "secret": p.secret,
                                    "required": p.default.is_none() && p.source.is_none(),
                                }),
                            )
                        })
                        .collect(),
                );
            }
            Err(e) => view.problem = Some(e.message),
        }
        view
    }
}

/// What a deployment did.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeployedView {
    /// The version now current.
    workflow: WorkflowView,
    /// False when this version was deployed before (nothing changed).
    new: bool,
    /// The ids of its schedules and triggers.
    schedules: Vec<String>,
}

/// Deploys (registers) a workflow file: it is loaded and checked, its
/// version is the digest of its sources, and its schedules start firing.
#[utoipa::path(post, path = "/api/v1/workflows", request_body = Deploy,
    responses((status = 201, body = DeployedView), (status = 200, body = DeployedView, description = "This version was deployed before"), (status = 400, body = ErrorBody)))]
pub(crate) async fn deploy(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Body(req): Body<Deploy>,
) -> Result<(StatusCode, Json<DeployedView>), ApiError> {
    auth(&app, &headers, Role::Admin).await?;
    let d = app.deploy(std::path::Path::new(&req.path)).await?;
    let status = if d.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(DeployedView {
            workflow: WorkflowView::of(&d.row),
            new: d.new,
            schedules: d.schedules,
        }),
    ))
}

/// Every deployed workflow (its latest version).
#[utoipa::path(get, path = "/api/v1/workflows", responses((status = 200, body = Vec<WorkflowView>)))]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Vec<WorkflowView>>, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    let rows = app.store.workflows().await?;
    let mut out = Vec::with_capacity(rows.len());
    for w in &rows {
        out.push(WorkflowView::described(&app, w).await);
    }
    Ok(Json(out))
}

/// A deployed workflow's latest version.
#[utoipa::path(get, path = "/api/v1/workflows/{name}",
    params(("name" = String, Path, description = "The workflow's name")),
    responses((status = 200, body = WorkflowView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<WorkflowView>, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    match app.store.workflow(&name, None).await? {
        Some(w) => Ok(Json(WorkflowView::described(&app, &w).await)),
        None => Err(ApiError::not_found(format!(
            "no workflow `{name}` is deployed"
        ))),
    }
}
