//! One step of a run: what it launched, its command line or script and
//! its settings as resolved, decoded from the memo key the driver
//! recorded (see [`kaon_runtime::memo::launch`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use kaon_runtime::memo::launch::{Launch, LaunchError, launch as launch_of};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::auth;
use crate::app::App;
use crate::auth::Role;
use crate::error::{ApiError, ErrorBody};

/// What a step run launched.
#[derive(Serialize, ToSchema)]
pub(crate) struct LaunchView {
    /// The instance key, e.g. `train[reg=US]`.
    instance: String,
    /// The attempt the settings are of (the latest that recorded them),
    /// or the attempts started when none did.
    attempt: u32,
    /// The memo key it ran under (`blake3:...`), when one was recorded.
    memo_key: Option<String>,
    /// Its command line (`argv[0]`, `argv[1]`, ...) or `script`, and its
    /// settings as resolved: a Spark step's `app`, `sql`, `args[i]`,
    /// `conf[spark.x]`, `placement.*`; `env[NAME]`, `workdir`, `program`,
    /// `code[PATH]`, `outputs.NAME`, `version`. Empty when nothing was
    /// recorded (see `note`).
    settings: Vec<SettingView>,
    /// The artifacts it read, by the output they came from.
    inputs: Vec<InputView>,
    /// Why there are no settings (`cache = false`: nothing recorded), or
    /// what else to know about them.
    note: Option<String>,
}

/// One setting of a step run.
#[derive(Serialize, ToSchema)]
pub(crate) struct SettingView {
    /// Its name: `argv[1]`, `script`, `conf[spark.sql.shuffle.partitions]`,
    /// `env[TOKEN]`, ...
    name: String,
    /// Its value: a string for a command line argument, a Spark
    /// setting's JSON value.
    #[schema(value_type = Object)]
    value: Value,
    /// True when the value is not what the step saw: an environment
    /// value (kept only as a keyed digest, `kd:...`) or one holding a
    /// secret parameter (shown as `«secret NAME kd:...»`). Absent when
    /// false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    hidden: bool,
}

/// An artifact a step run read.
#[derive(Serialize, ToSchema)]
pub(crate) struct InputView {
    /// The output it read, `step.output`.
    #[serde(rename = "ref")]
    source: String,
    /// The artifact's content digest (`blake3:...`).
    digest: String,
}

impl LaunchView {
    fn of(l: Launch) -> LaunchView {
        LaunchView {
            instance: l.instance,
            attempt: l.attempt,
            memo_key: l.memo_key,
            settings: l
                .settings
                .into_iter()
                .map(|s| SettingView {
                    name: s.name,
                    value: s.value,
                    hidden: s.hidden,
                })
                .collect(),
            inputs: l
                .inputs
                .into_iter()
                .map(|i| InputView {
                    source: i.source,
                    digest: i.digest,
                })
                .collect(),
            note: l.note,
        }
    }
}

/// What a step run launched: its resolved command line or script, its
/// settings and the digests of what it read, as its memo key recorded
/// them. Secret parameters and environment values are never shown. A
/// step that recorded no key (`cache = false`, a wait) answers with no
/// settings and a `note` saying why.
#[utoipa::path(get, path = "/api/v1/runs/{id}/steps/{key}/launch",
    params(
        ("id" = String, Path, description = "The run"),
        ("key" = String, Path, description = "An instance key such as `train[reg=US]` (URL-encoded), or a step name with one instance")
    ),
    responses(
        (status = 200, body = LaunchView),
        (status = 400, body = ErrorBody, description = "A step name with several instances"),
        (status = 404, body = ErrorBody)
    ))]
pub(crate) async fn launch(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<LaunchView>, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    let l = launch_of(app.store.as_ref(), &id, &key)
        .await
        .map_err(|e| match e {
            LaunchError::Store(s) => ApiError::from(s),
            LaunchError::NoSuchRun { .. } | LaunchError::NoSuchStep { .. } => {
                ApiError::not_found(e.to_string())
            }
            LaunchError::Several { .. } => ApiError::bad_request(e.to_string()),
            other => ApiError::internal(other.to_string()),
        })?;
    Ok(Json(LaunchView::of(l)))
}
