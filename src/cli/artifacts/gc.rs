//! `kaon artifacts gc`: deletes blobs no artifact refers to, and leftovers
//! of interrupted puts.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{Result, bail};
use kaon_artifacts::Digest;
use kaon_store::ArtifactIndex;

use super::super::common::DataArgs;
use super::size;

pub(super) async fn gc<S: ArtifactIndex>(
    data: &DataArgs,
    store: &S,
    dry_run: bool,
    min_age: std::time::Duration,
) -> Result<ExitCode> {
    let blobs = data.blobs()?;
    let mut keep: BTreeSet<Digest> = BTreeSet::new();
    for (digest, kind) in store.digests().await? {
        let Ok(d) = digest.parse::<Digest>() else {
            continue;
        };
        keep.insert(d);
        if kind == "dir" {
            // A folder's files are blobs of their own, named in its manifest.
            match blobs.manifest(&d).await {
                Ok(m) => {
                    for e in m.entries {
                        if let Ok(fd) = e.digest.parse::<Digest>() {
                            keep.insert(fd);
                        }
                    }
                }
                Err(kaon_artifacts::ArtifactError::Missing { .. }) => {}
                Err(e) => bail!("cannot read the manifest {d}: {e} (nothing was deleted)"),
            }
        }
    }
    let all = blobs.blobs().await?;
    let young = std::time::SystemTime::now() - min_age;
    let doomed: Vec<(Digest, u64)> = all
        .iter()
        .filter(|(d, _, at)| !keep.contains(d) && *at <= young)
        .map(|(d, s, _)| (*d, *s))
        .collect();
    let bytes: u64 = doomed.iter().map(|(_, s)| s).sum();
    if dry_run {
        for (d, s) in &doomed {
            kaon::outln!("would delete {d} ({})", size(*s as i64));
        }
        kaon::outln!(
            "{} of {} blobs ({}) are unreferenced; nothing deleted (--dry-run)",
            doomed.len(),
            all.len(),
            size(bytes as i64)
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (d, _) in &doomed {
        blobs.delete(d).await?;
    }
    let tmp = blobs.clean_tmp(min_age).await?;
    kaon::outln!(
        "deleted {} of {} blobs ({}), {tmp} leftover upload{}",
        doomed.len(),
        all.len(),
        size(bytes as i64),
        if tmp == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}
