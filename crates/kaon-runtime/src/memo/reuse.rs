//! Reuse of an earlier step run with the same memo key: finding it, and
//! putting its files back without overwriting anything of the user's.

use std::path::{Path, PathBuf};

use kaon_artifacts::{ArtifactError, ArtifactKind, ArtifactStore, Digest, Existing, RestorePlan};
use kaon_engine::{LaunchOrder, OutputArtifact};
use kaon_model::ids::ArtifactId;
use kaon_store::{ArtifactIndex, MemoRow};
use serde_json::{Map, Value};

use crate::error::RuntimeError;

/// An earlier step run whose result can stand in for this one.
pub struct Hit {
    /// `<run>/<step key>` of that step run.
    pub from: String,
    /// Value outputs, with file and dir outputs at this order's paths.
    pub outputs: Map<String, Value>,
    /// Its artifacts, as new artifacts of this run.
    pub artifacts: Vec<OutputArtifact>,
    /// The memo entry (to forget it if restoring fails).
    pub row: MemoRow,
    /// What to put back where: (kind, digest, path).
    pub restore: Vec<(ArtifactKind, Digest, PathBuf)>,
}

/// The newest memo entry with `key` whose artifacts are all still in the
/// store, ready to link into `order`'s run.
pub async fn lookup<S: ArtifactIndex>(
    index: &S,
    blobs: &ArtifactStore,
    key: &str,
    order: &LaunchOrder,
) -> Result<Option<Hit>, RuntimeError> {
    let rows = index
        .memo(key)
        .await
        .map_err(RuntimeError::store("cannot read the memo table"))?;
    'entries: for row in rows {
        let ids: Map<String, Value> = serde_json::from_str(&row.artifacts).unwrap_or_default();
        let mut outputs: Map<String, Value> =
            serde_json::from_str(&row.outputs).unwrap_or_default();
        let mut artifacts = Vec::new();
        let mut restore = Vec::new();
        for (name, id) in &ids {
            let Some(id) = id.as_str() else {
                continue 'entries;
            };
            let found = index
                .artifact(id)
                .await
                .map_err(RuntimeError::store("cannot read the artifact index"))?;
            let Some(a) = found else {
                continue 'entries;
            };
            let Ok(digest) = a.digest.parse::<Digest>() else {
                continue 'entries;
            };
            let Ok(kind) = a.kind.parse::<ArtifactKind>() else {
                continue 'entries;
            };
            let present =
                blobs
                    .contains(&digest)
                    .await
                    .map_err(|source| RuntimeError::Artifact {
                        what: "cannot look in the artifact store".into(),
                        source,
                    })?;
            if !present {
                continue 'entries;
            }
            let declared = order
                .outputs
                .iter()
                .find(|o| &o.name == name)
                .and_then(|o| o.path.clone());
            if let Some(p) = &declared {
                restore.push((kind, digest, p.clone()));
                outputs.insert(name.clone(), Value::String(p.display().to_string()));
            }
            artifacts.push(OutputArtifact {
                name: name.clone(),
                id: ArtifactId::new(&order.run, order.node.0, order.attempt, name).into_string(),
                digest: a.digest.clone(),
                kind: a.kind.clone(),
                size: a.size.max(0) as u64,
                files: a.files.max(0) as u64,
                media_type: a.media_type.clone(),
                path: declared.map(|p| p.display().to_string()).or(a.path.clone()),
                memoized_from: Some(a.memoized_from.clone().unwrap_or(a.id.clone())),
            });
        }
        return Ok(Some(Hit {
            from: format!("{}/{}", row.run, row.step_key),
            outputs,
            artifacts,
            row,
            restore,
        }));
    }
    Ok(None)
}

/// Decides how a hit's files and folders go back at the paths the step
/// declares, writing nothing: each path must lie inside the step's working
/// directory with no link on the way; a folder is merged into (files of
/// the user's stay), and a file at one of the artifact's own paths that
/// differs refuses the reuse ([`kaon_artifacts::ArtifactError::is_in_the_way`]):
/// kaon never overwrites a file it cannot tell it wrote, and running the
/// step instead is the step's own doing.
pub async fn plan(
    blobs: &ArtifactStore,
    hit: &Hit,
    workdir: &Path,
) -> Result<Vec<RestorePlan>, ArtifactError> {
    let mut plans = Vec::with_capacity(hit.restore.len());
    for (kind, digest, path) in &hit.restore {
        kaon_artifacts::no_link_below(workdir, path)?;
        plans.push(
            blobs
                .plan_restore(*kind, digest, path, Existing::Refuse)
                .await?,
        );
    }
    Ok(plans)
}

/// Carries out the plans of [`plan`].
pub async fn restore(blobs: &ArtifactStore, plans: Vec<RestorePlan>) -> Result<(), RuntimeError> {
    for p in plans {
        blobs
            .apply(p)
            .await
            .map_err(|source| RuntimeError::Artifact {
                what: "cannot restore a cached output from the artifact store".into(),
                source,
            })?;
    }
    Ok(())
}
