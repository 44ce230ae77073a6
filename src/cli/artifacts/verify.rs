//! `kaon artifacts verify`: reads every blob back, checks that every
//! artifact's blobs are there, and with --repair puts back or moves aside
//! what is broken.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use kaon_artifacts::{ArtifactKind, Digest};
use kaon_store::{ArtifactFilter, ArtifactIndex};

use super::super::common::DataArgs;

/// Where the content of a blob may still be found: the paths its
/// artifacts were stored from, and for a folder's file, that file in the
/// folder.
async fn sources<S: ArtifactIndex>(
    store: &S,
    d: &Digest,
    entries: &HashMap<Digest, Vec<(Digest, String)>>,
) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let with = |digest: &Digest| ArtifactFilter {
        digest: Some(digest.to_string()),
        ..ArtifactFilter::default()
    };
    for a in store.artifacts(&with(d)).await? {
        out.extend(a.path.map(PathBuf::from));
    }
    for (dir, rel) in entries.get(d).into_iter().flatten() {
        for a in store.artifacts(&with(dir)).await? {
            if let Some(p) = a.path {
                out.push(Path::new(&p).join(rel));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub(super) async fn verify<S: ArtifactIndex>(
    data: &DataArgs,
    store: &S,
    repair: bool,
) -> Result<ExitCode> {
    let blobs = data.blobs()?;
    let all = blobs.blobs().await?;
    let mut broken: Vec<(Digest, String)> = blobs
        .check_all()
        .await?
        .into_iter()
        .map(|(d, actual)| (d, format!("corrupt (its content hashes to {actual})")))
        .collect();
    // What the artifacts need: their blobs and, for folders, their files'.
    let present: BTreeSet<Digest> = all.iter().map(|(d, _, _)| *d).collect();
    let mut entries: HashMap<Digest, Vec<(Digest, String)>> = HashMap::new();
    let mut needed: BTreeSet<Digest> = BTreeSet::new();
    for (digest, kind) in store.digests().await? {
        let Ok(d) = digest.parse::<Digest>() else {
            continue;
        };
        if kind == "reference" {
            continue;
        }
        needed.insert(d);
        if kind == "dir"
            && let Ok(m) = blobs.manifest(&d).await
        {
            for e in m.entries {
                if let Ok(fd) = e.digest.parse::<Digest>() {
                    needed.insert(fd);
                    entries.entry(fd).or_default().push((d, e.path));
                }
            }
        }
    }
    for d in needed.difference(&present) {
        broken.push((*d, "missing".into()));
    }
    let mut left = 0;
    for (d, what) in &broken {
        let users: Vec<String> = store
            .artifacts(&ArtifactFilter {
                digest: Some(d.to_string()),
                limit: Some(5),
                ..ArtifactFilter::default()
            })
            .await?
            .into_iter()
            .map(|a| format!("{} {}", a.id, a.name))
            .collect();
        let used = if users.is_empty() {
            String::new()
        } else {
            format!("; artifacts: {}", users.join(", "))
        };
        kaon::outln!("blob {d}: {what}{used}");
        if !repair {
            left += 1;
            continue;
        }
        let mut fixed = None;
        for p in sources(store, d, &entries).await? {
            if let Ok(Some((ArtifactKind::File, have))) = kaon_artifacts::hash_path(&p).await
                && have == *d
                && blobs.put_file(&p).await.is_ok()
                && blobs.verify(d).await.is_ok()
            {
                fixed = Some(p);
                break;
            }
        }
        match fixed {
            Some(p) => kaon::outln!("  repaired from {}", p.display()),
            // Its content is gone: the artifacts stay broken (exit 1), but
            // nothing reuses them, so the steps that made them run again.
            None if what == "missing" => {
                left += 1;
                kaon::outln!(
                    "  no file holds its content any more; the steps that made it run again when next needed"
                );
            }
            None => {
                left += 1;
                let aside = blobs.quarantine(d).await?;
                kaon::outln!(
                    "  no file holds its content any more: moved aside to {aside}; the steps that made it run again when next needed"
                );
            }
        }
    }
    kaon::outln!(
        "checked {} blobs: {} broken{}",
        all.len(),
        broken.len(),
        if repair {
            format!(", {} left broken", left)
        } else if broken.is_empty() {
            String::new()
        } else {
            " (`kaon artifacts verify --repair` puts back what it can)".into()
        }
    );
    Ok(if left == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
