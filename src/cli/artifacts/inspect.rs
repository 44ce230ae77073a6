//! `kaon artifacts inspect`: a look inside an artifact (Parquet schema and
//! rows, the first lines of text, a folder's files).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use kaon_artifacts::Digest;
use kaon_store::ArtifactIndex;

use super::super::common::DataArgs;
use super::{find, size};

pub(super) async fn inspect<S: ArtifactIndex>(
    data: &DataArgs,
    store: &S,
    id: &str,
    rows: usize,
) -> Result<ExitCode> {
    let a = find(&super::Local(store), id).await?;
    let blobs = data.blobs()?;
    let digest: Digest = a.digest.parse()?;
    let tmp = tempfile::tempdir()?;
    kaon::outln!(
        "artifact {} {} ({}, {}, {})",
        a.id,
        a.name,
        a.kind,
        a.media_type,
        size(a.size)
    );
    let mut files: Vec<PathBuf> = Vec::new();
    match a.kind.as_str() {
        "file" => {
            let p = tmp.path().join(&a.name);
            blobs.get_file(&digest, &p).await?;
            files.push(p);
        }
        "dir" => {
            let m = blobs.manifest(&digest).await?;
            kaon::outln!("{} files", m.entries.len());
            let parquet: Vec<_> = m
                .entries
                .iter()
                .filter(|e| e.path.ends_with(".parquet"))
                .collect();
            let chosen: Vec<_> = if parquet.is_empty() {
                for e in m.entries.iter().take(20) {
                    kaon::outln!("  {:<40} {:>10}", e.path, size(e.size as i64));
                }
                m.entries.iter().filter(|e| e.size > 0).take(1).collect()
            } else {
                parquet
            };
            for e in chosen {
                let d: Digest = e.digest.parse()?;
                let p = tmp.path().join(e.path.replace('/', "__"));
                blobs.get_file(&d, &p).await?;
                files.push(p);
            }
        }
        other => bail!("{}: a {other} artifact has no content kept by kaon", a.id),
    }
    let is_parquet = files
        .iter()
        .all(|f| f.extension().is_some_and(|e| e == "parquet"))
        && !files.is_empty()
        || a.media_type == "application/vnd.apache.parquet";
    if is_parquet {
        super::super::inspect::parquet(&files, rows)?;
    } else if let Some(f) = files.first() {
        super::super::inspect::text(f, rows)?;
    }
    Ok(ExitCode::SUCCESS)
}
