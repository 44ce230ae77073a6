//! Where a run's Spark listener posts its progress and outputs, with the
//! run's own token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::Body;
use crate::app::App;
use crate::auth::check_run_token;
use crate::error::{ApiError, ErrorBody};

/// A Spark listener's event (`{"run", "node", "attempt", "type", ...}`);
/// its token must be the run's.
#[utoipa::path(post, path = "/v1/spark/events", request_body = Object,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn spark_event(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Body(ev): Body<Value>,
) -> Result<StatusCode, ApiError> {
    let (Some(run), Some(node), Some(attempt)) = (
        ev["run"].as_str(),
        ev["node"].as_u64().and_then(|n| u32::try_from(n).ok()),
        ev["attempt"].as_u64().and_then(|n| u32::try_from(n).ok()),
    ) else {
        return Err(ApiError::bad_request(
            "an event names its `run` (text), `node` and `attempt` (numbers)",
        ));
    };
    check_run_token(&app.secret, &headers, run)?;
    let run = run.to_string();
    app.sink.deliver(&run, node, attempt, ev);
    Ok(StatusCode::NO_CONTENT)
}
