//! API tokens: who the caller is; make, list, revoke (admin only).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use kaon_store::{ServiceStore, TokenRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Body, auth};
use crate::app::App;
use crate::auth::{Role, make_token};
use crate::error::{ApiError, ErrorBody};

/// Who the caller is.
#[derive(Serialize, ToSchema)]
pub(crate) struct WhoAmI {
    /// What the caller may do.
    role: Role,
    /// Its token's name; `null` for the local user.
    name: Option<String>,
    /// True for the anonymous local user of `kaon ui` (no token).
    local: bool,
}

/// Who the caller is and what it may do (any role; 401 without a valid
/// token, unless the server has an anonymous local user).
#[utoipa::path(get, path = "/api/v1/whoami",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub(crate) async fn whoami(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<WhoAmI>, ApiError> {
    let caller = auth(&app, &headers, Role::Read).await?;
    Ok(Json(WhoAmI {
        role: caller.role,
        local: caller.is_local(),
        name: caller.name,
    }))
}

/// A token to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    /// Who or what it is for.
    name: String,
    /// `read`, `operate` or `admin`.
    role: Role,
}

/// A token made: `token` is shown this once.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedToken {
    /// Its id.
    id: String,
    /// The token (`kaon_<id>_<secret>`); kaon keeps only its digest.
    token: String,
    /// Its role.
    role: Role,
}

/// A token as listed (never its secret).
#[derive(Serialize, ToSchema)]
pub(crate) struct TokenView {
    /// Its id.
    id: String,
    /// What it is for.
    name: String,
    /// Its role.
    role: String,
    /// When it was made.
    created_ms: i64,
    /// When it was revoked.
    revoked_ms: Option<i64>,
}

impl TokenView {
    pub(crate) fn of(t: &TokenRow) -> TokenView {
        TokenView {
            id: t.id.clone(),
            name: t.name.clone(),
            role: t.role.clone(),
            created_ms: t.created_ms,
            revoked_ms: t.revoked_ms,
        }
    }
}

/// Makes a token.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 403, body = ErrorBody)))]
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Body(req): Body<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    auth(&app, &headers, Role::Admin).await?;
    let t = make_token(&req.name, req.role, kaon_runtime::now_ms() as i64)?;
    app.store.create_token(&t.row).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: t.row.id,
            token: t.token,
            role: req.role,
        }),
    ))
}

/// Every token (not runs' own), newest first.
#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = Vec<TokenView>)))]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    auth(&app, &headers, Role::Admin).await?;
    Ok(Json(
        app.store
            .tokens()
            .await?
            .iter()
            .map(TokenView::of)
            .collect(),
    ))
}

/// Revokes a token: it is refused from now on.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}",
    params(("id" = String, Path, description = "The token's id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth(&app, &headers, Role::Admin).await?;
    if app
        .store
        .revoke_token(&id, kaon_runtime::now_ms() as i64)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no token {id}, or it was revoked before"
        )))
    }
}
