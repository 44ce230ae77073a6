//! What an API call can answer instead of what it asked for.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kaon_runtime::RuntimeError;
use kaon_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// An API error: an HTTP status and a JSON body `{"error": {"code",
/// "message"}}` whose message says what was wrong and, where it helps,
/// what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`not_found`, `bad_request`, ...).
    pub code: &'static str,
    /// For people.
    pub message: String,
}

/// The body of an error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code: `bad_request`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `too_large`, `unprocessable`,
    /// `unavailable`, `internal`.
    pub code: String,
    /// For people.
    pub message: String,
}

impl ApiError {
    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 401: no token, or not one this server knows.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// 403: a known token that may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 422: the request is fine but what it names cannot be read as
    /// asked (a Parquet artifact that is not a readable Parquet file).
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", message)
    }
    /// 409: the request is fine but the state says no.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// 503: try again later.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match &e {
            StoreError::NoSuchRun(_) => ApiError::not_found(e.to_string()),
            StoreError::RunExists(_) | StoreError::TokenExists(_) | StoreError::Held { .. } => {
                ApiError::conflict(e.to_string())
            }
            StoreError::Ambiguous { .. } => ApiError::bad_request(e.to_string()),
            _ if e.is_transient() => ApiError::unavailable(e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> ApiError {
        match &e {
            RuntimeError::NoSuchRun { .. } => ApiError::not_found(e.to_string()),
            RuntimeError::Stopped => ApiError::unavailable(e.to_string()),
            RuntimeError::Store { source, .. } if source.is_transient() => {
                ApiError::unavailable(e.to_string())
            }
            RuntimeError::TakenOver { .. } | RuntimeError::Held { .. } => {
                ApiError::conflict(e.to_string())
            }
            RuntimeError::Secret(_) => ApiError::bad_request(e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}
