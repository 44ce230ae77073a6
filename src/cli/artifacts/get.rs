//! `kaon artifacts get`: writes an artifact to a path, checking its digest.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use kaon_artifacts::{ArtifactKind, Digest, Existing};
use kaon_exec::outputs::ArtifactLine;

use super::super::common::DataArgs;
use super::{append, find, step_blobs, step_file};

pub(super) async fn get(data: &DataArgs, id: &str, output: &Path, force: bool) -> Result<ExitCode> {
    let store = data.existing_store().await?;
    let a = find(&super::Local(&store), id).await?;
    let blobs = step_blobs(data)?;
    let digest: Digest = a.digest.parse()?;
    let kind: ArtifactKind = a.kind.parse()?;
    if kind == ArtifactKind::Reference {
        let r = blobs.reference(&digest).await?;
        bail!(
            "{} is a reference: its files stay at {}, nothing to copy",
            a.id,
            r.url
        );
    }
    let existing = if force {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    blobs
        .materialize(kind, &digest, output, existing)
        .await
        .with_context(|| format!("cannot write {} to {}", a.id, output.display()))?;
    if let Some(file) = step_file() {
        append(
            &file,
            &ArtifactLine::Get {
                artifact: a.id.clone(),
                digest: a.digest.clone(),
            },
        )?;
    }
    eprintln!("{} → {}", a.id, output.display());
    Ok(ExitCode::SUCCESS)
}
