//! `kaon artifacts put`: stores a file or folder, as a step's artifact
//! inside a step, standalone elsewhere.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use kaon_exec::outputs::ArtifactLine;
use kaon_store::{ArtifactRow, Batch, StateStore};
use serde_json::json;

use super::super::common::DataArgs;
use super::{append, size, step_blobs, step_file};

pub(super) async fn put(
    data: &DataArgs,
    path: &Path,
    name: Option<String>,
    tags: &[String],
) -> Result<ExitCode> {
    let blobs = step_blobs(data)?;
    let stored = blobs
        .put_path(path)
        .await
        .with_context(|| format!("cannot store {}", path.display()))?;
    let name = match name {
        Some(n) => n,
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "artifact".into()),
    };
    let media_type = kaon_artifacts::media_type(path, stored.kind);
    let abs = std::path::absolute(path).unwrap_or(path.to_path_buf());
    if let Some(file) = step_file() {
        append(
            &file,
            &ArtifactLine::Put {
                name: name.clone(),
                digest: stored.digest.to_string(),
                kind: stored.kind.as_str().into(),
                size: stored.size,
                files: stored.files,
                media_type,
                path: abs.display().to_string(),
            },
        )?;
        kaon::outln!("{name} {} ({})", stored.digest, size(stored.size as i64));
        return Ok(ExitCode::SUCCESS);
    }
    let mut tag_map = serde_json::Map::new();
    for t in tags {
        let Some((k, v)) = t.split_once('=') else {
            bail!("--tag `{t}`: expected key=value");
        };
        tag_map.insert(k.to_string(), json!(v));
    }
    let now = kaon_runtime::now_ms() as i64;
    let id = kaon_model::ids::ArtifactId::standalone(
        &stored.digest.to_string(),
        &name,
        now,
        std::process::id(),
    )
    .into_string();
    let store = data.store(kaon_store::Durability::Full).await?;
    store
        .commit(&[Batch {
            artifacts: vec![ArtifactRow {
                id: id.clone(),
                digest: stored.digest.to_string(),
                kind: stored.kind.as_str().into(),
                size: stored.size as i64,
                files: stored.files as i64,
                media_type,
                name,
                path: Some(abs.display().to_string()),
                created_ms: now,
                tags: serde_json::Value::Object(tag_map).to_string(),
                ..ArtifactRow::default()
            }],
            ..Batch::default()
        }])
        .await?;
    kaon::outln!("{id} {} ({})", stored.digest, size(stored.size as i64));
    Ok(ExitCode::SUCCESS)
}
