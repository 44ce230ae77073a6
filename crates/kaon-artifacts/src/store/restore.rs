//! Putting an artifact at a destination: planned first (nothing is
//! written when something is in the way), then applied.

use std::path::{Path, PathBuf};

use super::walk::{hash_file, is_executable, no_link_below};
use super::{ArtifactKind, ArtifactStore, Existing, failpoint};
use crate::{ArtifactError, Digest};

impl ArtifactStore {
    /// Puts an artifact at `dest`, merging into what is there: files the
    /// artifact holds are written (each to a temporary name beside it,
    /// renamed once its digest checks), files already identical are left
    /// as they are, and nothing else under `dest` is touched or removed.
    /// A file (or link) at one of the artifact's paths with other content
    /// is replaced only with [`Existing::Replace`]; with
    /// [`Existing::Refuse`] the call fails before writing anything. A
    /// folder or a file standing where the artifact needs the other is an
    /// error, never removed, and no link at or under `dest` is written
    /// through. Returns how many files were written.
    pub async fn materialize(
        &self,
        kind: ArtifactKind,
        d: &Digest,
        dest: &Path,
        existing: Existing,
    ) -> Result<u64, ArtifactError> {
        let plan = self.plan_restore(kind, d, dest, existing).await?;
        self.apply(plan).await
    }

    /// What [`ArtifactStore::materialize`] would write, decided without
    /// writing anything: the checks happen here, so a caller can choose
    /// something else when the destination refuses the artifact
    /// ([`ArtifactError::is_in_the_way`]).
    pub async fn plan_restore(
        &self,
        kind: ArtifactKind,
        d: &Digest,
        dest: &Path,
        existing: Existing,
    ) -> Result<RestorePlan, ArtifactError> {
        let entries: Vec<(PathBuf, Digest, bool)> = match kind {
            ArtifactKind::File => vec![(PathBuf::new(), *d, false)],
            ArtifactKind::Dir => {
                let manifest = self.manifest(d).await?;
                let mut out = Vec::with_capacity(manifest.entries.len());
                for e in &manifest.entries {
                    let rel = safe_relative(&e.path).ok_or_else(|| ArtifactError::BadRecord {
                        digest: *d,
                        what: "manifest",
                        reason: format!("entry path `{}` leaves the folder", e.path),
                    })?;
                    let fd = e.digest.parse().map_err(|err: ArtifactError| {
                        ArtifactError::BadRecord {
                            digest: *d,
                            what: "manifest",
                            reason: err.to_string(),
                        }
                    })?;
                    out.push((rel, fd, e.executable));
                }
                out
            }
            // A reference is never copied: its files are where they are.
            ArtifactKind::Reference => return Ok(RestorePlan::default()),
        };
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || plan_writes(kind, &dest, entries, existing))
            .await
            .map_err(|e| ArtifactError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other(e),
            })?
    }

    /// Carries out a plan from [`ArtifactStore::plan_restore`]; returns
    /// how many files were written.
    pub async fn apply(&self, plan: RestorePlan) -> Result<u64, ArtifactError> {
        if let Some(dir) = &plan.folder {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(ArtifactError::io(dir))?;
        }
        let mut written = 0;
        for (target, fd, executable) in plan.writes {
            self.get_file(&fd, &target).await?;
            if executable {
                set_executable(&target)?;
            }
            written += 1;
            failpoint("artifact-restore");
        }
        for p in plan.chmods {
            set_executable(&p)?;
        }
        Ok(written)
    }
}

/// What putting an artifact in place writes: see
/// [`ArtifactStore::plan_restore`].
#[derive(Debug, Default)]
pub struct RestorePlan {
    /// The folder to create (a folder artifact's destination).
    folder: Option<PathBuf>,
    /// (target, digest, executable) of each file to write.
    writes: Vec<(PathBuf, Digest, bool)>,
    /// Files already right but for their executable bit.
    chmods: Vec<PathBuf>,
}

impl RestorePlan {
    /// True when everything is in place already.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.chmods.is_empty()
    }
}

/// Decides what [`ArtifactStore::apply`] writes, after checking that
/// nothing is in the way.
fn plan_writes(
    kind: ArtifactKind,
    dest: &Path,
    entries: Vec<(PathBuf, Digest, bool)>,
    existing: Existing,
) -> Result<RestorePlan, ArtifactError> {
    let mut plan = RestorePlan::default();
    match std::fs::symlink_metadata(dest) {
        // Files are written under a folder: never through a link to one.
        Ok(m) if kind == ArtifactKind::Dir && m.file_type().is_symlink() => {
            return Err(ArtifactError::LinkInTheWay {
                path: dest.to_path_buf(),
            });
        }
        Ok(m) if kind == ArtifactKind::Dir && !m.is_dir() => {
            return Err(ArtifactError::InTheWay {
                path: dest.to_path_buf(),
                what: "a file",
            });
        }
        Ok(m) if kind == ArtifactKind::File && m.is_dir() => {
            return Err(ArtifactError::InTheWay {
                path: dest.to_path_buf(),
                what: "a folder",
            });
        }
        Err(_) if kind == ArtifactKind::Dir => plan.folder = Some(dest.to_path_buf()),
        _ => {}
    }
    let mut conflicts = Vec::new();
    for (rel, d, executable) in entries {
        let target = if rel.as_os_str().is_empty() {
            dest.to_path_buf()
        } else {
            if let Some(parent) = rel.parent() {
                no_link_below(dest, &dest.join(parent))?;
            }
            dest.join(&rel)
        };
        match std::fs::symlink_metadata(&target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                plan.writes.push((target, d, executable))
            }
            Err(e) => return Err(ArtifactError::io(&target)(e)),
            Ok(m) if m.is_dir() => {
                return Err(ArtifactError::InTheWay {
                    path: target,
                    what: "a folder",
                });
            }
            // The rename that puts a file in place replaces a link (never
            // writes through it), but the link is the user's: it differs.
            Ok(m) if m.file_type().is_symlink() => {
                if existing == Existing::Refuse {
                    conflicts.push(target.clone());
                }
                plan.writes.push((target, d, executable));
            }
            Ok(m) => {
                if hash_file(&target)?.0 != d {
                    if existing == Existing::Refuse {
                        conflicts.push(target.clone());
                    }
                    plan.writes.push((target, d, executable));
                } else if executable && !is_executable(&m) {
                    plan.chmods.push(target);
                }
            }
        }
    }
    if !conflicts.is_empty() {
        let more = conflicts.len().saturating_sub(5);
        conflicts.truncate(5);
        return Err(ArtifactError::Conflicts {
            dest: dest.to_path_buf(),
            paths: conflicts,
            more,
        });
    }
    Ok(plan)
}

#[cfg(unix)]
fn set_executable(p: &Path) -> Result<(), ArtifactError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p).map_err(ArtifactError::io(p))?;
    let mut perm = meta.permissions();
    perm.set_mode(perm.mode() | 0o111);
    std::fs::set_permissions(p, perm).map_err(ArtifactError::io(p))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<(), ArtifactError> {
    Ok(())
}

fn safe_relative(p: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in p.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return None;
        }
        out.push(part);
    }
    Some(out)
}
