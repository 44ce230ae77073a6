//! Walking a folder as a put stores it (which links are followed, which
//! files are left out), and hashing a path without storing it.

use std::path::{Path, PathBuf};

use prost::Message;

use super::ArtifactKind;
use crate::proto::{Manifest, ManifestEntry};
use crate::{ArtifactError, Digest};

/// Which symbolic links [`walk`] follows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Links {
    /// Only those that stay inside the root (what is stored).
    Inside,
    /// All (code that is only read and hashed, e.g. a `lib -> ../shared`).
    All,
}

/// The files under `root`: (relative "/"-path, absolute path, executable),
/// sorted by relative path. A symbolic link is followed when it leads to a
/// file or folder inside `root` and, with [`Links::Inside`], is an error
/// when it leads out of it: an output stores what its step wrote, never
/// `/etc/passwd` by way of a link. A link back to a folder it is in is an
/// error either way (the walk would never end).
pub(super) fn walk(
    root: &Path,
    links: Links,
    skip: &[PathBuf],
) -> Result<Vec<(String, PathBuf, bool)>, ArtifactError> {
    let croot = std::fs::canonicalize(root).map_err(ArtifactError::io(root))?;
    let mut out = Vec::new();
    // Each folder with the canonical folders that lead to it: a link to
    // one of them is a loop.
    let mut stack = vec![(root.to_path_buf(), String::new(), vec![croot.clone()])];
    while let Some((dir, rel, chain)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(ArtifactError::io(&dir))?;
        for entry in rd {
            let entry = entry.map_err(ArtifactError::io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_temp_name(&name) {
                continue;
            }
            let path = entry.path();
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let link = entry
                .file_type()
                .map_err(ArtifactError::io(&path))?
                .is_symlink();
            let canonical = if link {
                let target = std::fs::canonicalize(&path).map_err(ArtifactError::io(&path))?;
                if links == Links::Inside && !target.starts_with(&croot) {
                    return Err(ArtifactError::LinkOutside {
                        link: path,
                        target,
                        root: root.to_path_buf(),
                    });
                }
                target
            } else {
                chain.last().map(|c| c.join(&name)).unwrap_or_default()
            };
            let meta = std::fs::metadata(&path).map_err(ArtifactError::io(&path))?;
            if meta.is_dir() {
                if skip.contains(&canonical) {
                    continue;
                }
                if chain.contains(&canonical) {
                    return Err(ArtifactError::LinkLoop {
                        link: path,
                        target: canonical,
                    });
                }
                let mut next = chain.clone();
                next.push(canonical);
                stack.push((path, child, next));
            } else if meta.is_file() {
                out.push((child, path, is_executable(&meta)));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The temporary name of a file kaon is putting in place (see
/// [`super::temp_beside`]): one left by a crash is not part of an output.
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".kaon-")
}

#[cfg(unix)]
pub(super) fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
pub(super) fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

/// Fails when a component of `path` below `root` (or `path` itself) is a
/// symbolic link, or a file where a folder is needed. Components that do
/// not exist yet are fine: they are created as folders.
pub fn no_link_below(root: &Path, path: &Path) -> Result<(), ArtifactError> {
    let Ok(rel) = path.strip_prefix(root) else {
        return Err(ArtifactError::Outside {
            path: path.to_path_buf(),
            root: root.to_path_buf(),
        });
    };
    let mut at = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, c) in parts.iter().enumerate() {
        match c {
            std::path::Component::Normal(n) => at.push(n),
            std::path::Component::CurDir => continue,
            _ => {
                return Err(ArtifactError::Outside {
                    path: path.to_path_buf(),
                    root: root.to_path_buf(),
                });
            }
        }
        match std::fs::symlink_metadata(&at) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ArtifactError::io(&at)(e)),
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ArtifactError::LinkInTheWay { path: at });
            }
            Ok(m) if !m.is_dir() && i + 1 < parts.len() => {
                return Err(ArtifactError::InTheWay {
                    path: at,
                    what: "a file",
                });
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Fails unless `path`, with every link resolved, lies inside `root`
/// (also resolved): what an output names must not be a link out of the
/// step's folder.
pub fn inside(path: &Path, root: &Path) -> Result<(), ArtifactError> {
    let croot = std::fs::canonicalize(root).map_err(ArtifactError::io(root))?;
    let target = std::fs::canonicalize(path).map_err(ArtifactError::io(path))?;
    if target.starts_with(&croot) {
        Ok(())
    } else {
        Err(ArtifactError::LinkOutside {
            link: path.to_path_buf(),
            target,
            root: root.to_path_buf(),
        })
    }
}

/// What `path` would be stored as, without storing it: its kind and
/// digest (a folder's manifest digest), or `None` when it does not exist.
/// Links follow the rule of storing (see `walk`).
pub async fn hash_path(path: &Path) -> Result<Option<(ArtifactKind, Digest)>, ArtifactError> {
    hash_with(path, Links::Inside).await
}

/// Like [`hash_path`], following every link: for code that a step only
/// reads (a memo key's `code` folders), where a link out of the folder is
/// the user's own layout, not a leak.
pub async fn hash_code(path: &Path) -> Result<Option<(ArtifactKind, Digest)>, ArtifactError> {
    hash_with(path, Links::All).await
}

async fn hash_with(
    path: &Path,
    links: Links,
) -> Result<Option<(ArtifactKind, Digest)>, ArtifactError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || hash_path_blocking(&path, links))
        .await
        .map_err(|e| ArtifactError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?
}

pub(super) fn hash_file(path: &Path) -> Result<(Digest, u64), ArtifactError> {
    let mut file = std::fs::File::open(path).map_err(ArtifactError::io(path))?;
    let mut hasher = blake3::Hasher::new();
    let n = std::io::copy(&mut file, &mut hasher).map_err(ArtifactError::io(path))?;
    Ok((Digest::from(hasher.finalize()), n))
}

fn hash_path_blocking(
    path: &Path,
    links: Links,
) -> Result<Option<(ArtifactKind, Digest)>, ArtifactError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ArtifactError::io(path)(e)),
    };
    if meta.is_file() {
        return Ok(Some((ArtifactKind::File, hash_file(path)?.0)));
    }
    if !meta.is_dir() {
        return Err(ArtifactError::NotFileOrDir {
            path: path.to_path_buf(),
        });
    }
    let mut entries = Vec::new();
    for (rel, abs, executable) in walk(path, links, &[])? {
        let (d, size) = hash_file(&abs)?;
        entries.push(ManifestEntry {
            path: rel,
            digest: d.to_string(),
            size,
            executable,
        });
    }
    Ok(Some((
        ArtifactKind::Dir,
        Digest::of(&Manifest { entries }.encode_to_vec()),
    )))
}
