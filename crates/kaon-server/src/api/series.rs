//! Metrics over runs: one JSON artifact of each of a workflow's latest
//! runs, its numbers flattened to dotted names, for the UI's charts.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use futures::StreamExt;
use kaon_artifacts::{ArtifactKind, ArtifactStore};
use kaon_store::{ArtifactIndex, ArtifactRow, OutputFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};
use utoipa::{IntoParams, ToSchema};

use super::auth;
use super::content::{blobs, digest_of};
use crate::app::App;
use crate::auth::Role;
use crate::error::{ApiError, ErrorBody};

/// Content read of each artifact at most: larger ones are skipped.
const MAX_BYTES: i64 = 1 << 20;
/// Artifacts read at once.
const READS: usize = 8;

/// Which metric artifact of which runs.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeriesQuery {
    /// The workflow whose runs to look at.
    workflow: String,
    /// The artifact's name (the step's output, e.g. `feature_importance`).
    name: String,
    /// Only the artifact of this step (its name, or an instance key such
    /// as `train[reg=eu]` to pick one instance of a for-each).
    step: Option<String>,
    /// How many of the workflow's latest runs (default 30, at most 365).
    limit: Option<u32>,
}

/// One run's values.
#[derive(Serialize, ToSchema)]
pub(crate) struct Point {
    /// The run.
    run: String,
    /// When the run was created (ms since the epoch).
    created_ms: i64,
    /// The artifact read (a memoized step's output is its run's own row,
    /// which names the artifact it reuses in `memoized_from`).
    artifact: String,
    /// The artifact's numbers by dotted name (`{"a": {"b": 1}}` gives
    /// `a.b`); other values are left out.
    #[schema(value_type = BTreeMap<String, f64>)]
    values: BTreeMap<String, Number>,
}

/// A run whose artifact was found but not used.
#[derive(Serialize, ToSchema)]
pub(crate) struct Skipped {
    /// The run.
    run: String,
    /// Its artifact.
    artifact: String,
    /// Why: larger than 1 MiB, not a JSON object, not in the store, ...
    reason: String,
}

/// Values of a metric artifact over runs.
#[derive(Serialize, ToSchema)]
pub(crate) struct Series {
    /// Newest run first; runs without the artifact are left out.
    points: Vec<Point>,
    /// Every value name of the points, sorted.
    names: Vec<String>,
    /// Runs whose artifact could not be used, and why.
    skipped: Vec<Skipped>,
}

/// A metric artifact over a workflow's latest runs: for each of the last
/// `limit` runs of `workflow` (top-level runs, newest first) that has an
/// artifact named `name` (of `step`, when given; of several, the newest),
/// the numbers of its JSON object, flattened to dotted names. A run whose
/// artifact is larger than 1 MiB or not a JSON object is listed in
/// `skipped`.
#[utoipa::path(get, path = "/api/v1/artifacts/series", params(SeriesQuery),
    responses((status = 200, body = Series), (status = 400, body = ErrorBody)))]
pub(crate) async fn series(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<SeriesQuery>,
) -> Result<Json<Series>, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    let blobs = blobs(&app)?.clone();
    let found = app
        .store
        .recent_outputs(&OutputFilter {
            workflow: q.workflow,
            name: q.name,
            step: q.step,
            runs: q.limit.unwrap_or(30).clamp(1, 365),
        })
        .await?;
    // The newest artifact of each run (they come newest first).
    let mut seen = HashSet::new();
    let picked: Vec<_> = found
        .into_iter()
        .filter(|o| seen.insert(o.run.clone()))
        .collect();
    let read: Vec<_> = futures::stream::iter(picked)
        .map(|o| {
            let blobs = blobs.clone();
            async move {
                let values = values_of(&blobs, &o.artifact).await;
                (o, values)
            }
        })
        .buffered(READS)
        .collect()
        .await;
    let mut out = Series {
        points: Vec::new(),
        names: Vec::new(),
        skipped: Vec::new(),
    };
    let mut names = BTreeSet::new();
    for (o, values) in read {
        match values {
            Ok(values) => {
                names.extend(values.keys().cloned());
                out.points.push(Point {
                    run: o.run,
                    created_ms: o.run_created_ms,
                    artifact: o.artifact.id,
                    values,
                });
            }
            Err(reason) => out.skipped.push(Skipped {
                run: o.run,
                artifact: o.artifact.id,
                reason,
            }),
        }
    }
    out.names = names.into_iter().collect();
    Ok(Json(out))
}

/// The numbers of a JSON object artifact, or why there are none.
async fn values_of(
    blobs: &ArtifactStore,
    a: &ArtifactRow,
) -> Result<BTreeMap<String, Number>, String> {
    if a.kind != ArtifactKind::File.as_str() {
        return Err(format!("a {} artifact, not a file", a.kind));
    }
    if a.size > MAX_BYTES {
        return Err(format!("{} bytes, more than 1 MiB", a.size));
    }
    let digest = digest_of(a).map_err(|e| e.message)?;
    let bytes = blobs.read_bytes(&digest).await.map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let mut out = BTreeMap::new();
    flatten("", &v, &mut out);
    Ok(out)
}

/// Numbers under `v`, by dotted path.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Number>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        Value::Number(n) => {
            out.insert(prefix.to_string(), n.clone());
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
mod tests {
    use super::*;

    #[test]
    fn numbers_are_flattened_to_dotted_names() {
        let v = serde_json::json!({
            "auc": 0.7,
            "by_region": {"eu": {"auc": 0.6, "n": 10}, "us": {"auc": 0.8}},
            "name": "global",
            "list": [1, 2],
            "ok": true,
            "none": null
        });
        let mut out = BTreeMap::new();
        flatten("", &v, &mut out);
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            serde_json::json!({
                "auc": 0.7,
                "by_region.eu.auc": 0.6,
                "by_region.eu.n": 10,
                "by_region.us.auc": 0.8,
            })
        );
    }
}
