//! The artifact store: blobs by digest over an [`ObjectStore`].
//!
//! This file holds the types and the blob namespace; `open` makes a store
//! from a URL (local, S3, HDFS), `put` stores files and folders, `get`
//! reads blobs back and checks them, `restore` plans and writes an
//! artifact at a destination, `verify` checks and quarantines blobs,
//! `walk` lists and hashes folders as a put would, `reference` records
//! files left in place, and `media` names media types.

mod get;
mod media;
mod open;
mod put;
mod reference;
mod restore;
mod verify;
mod walk;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::{ArtifactError, Digest};

pub use media::media_type;
pub use reference::{check_reference, record_reference};
pub use restore::RestorePlan;
pub use walk::{hash_code, hash_path, inside, no_link_below};

/// Chunk size for reads, hashing and multipart parts: S3 needs parts of at
/// least 5 MiB, and 8 MiB keeps two in flight well under memory limits.
const PART: usize = 8 << 20;
/// Parts in flight per upload.
const CONCURRENCY: usize = 2;

/// What an artifact's digest names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// A file: the digest is its content's.
    File,
    /// A folder: the digest is its manifest's.
    Dir,
    /// Files left in place: the digest is the reference record's.
    Reference,
}

impl ArtifactKind {
    /// `file`, `dir` or `reference`.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::File => "file",
            ArtifactKind::Dir => "dir",
            ArtifactKind::Reference => "reference",
        }
    }
}

impl std::str::FromStr for ArtifactKind {
    type Err = ArtifactError;

    /// The inverse of [`ArtifactKind::as_str`]; anything else is
    /// [`ArtifactError::UnknownKind`].
    fn from_str(s: &str) -> Result<Self, ArtifactError> {
        match s {
            "file" => Ok(ArtifactKind::File),
            "dir" => Ok(ArtifactKind::Dir),
            "reference" => Ok(ArtifactKind::Reference),
            other => Err(ArtifactError::UnknownKind {
                kind: other.to_string(),
            }),
        }
    }
}

/// What a put stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The digest the artifact is known by.
    pub digest: Digest,
    /// Bytes of content (the sum over a folder's files).
    pub size: u64,
    /// File, folder or reference.
    pub kind: ArtifactKind,
    /// Number of files (1 for a file).
    pub files: u64,
}

/// What [`ArtifactStore::materialize`] does with a file that is already at
/// one of the artifact's paths with other content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Fail before writing anything (`kaon artifacts get`).
    Refuse,
    /// Replace it (a memo restore at the step's own declared output, which
    /// running the step would have overwritten too; `get --force`).
    Replace,
}

/// A content-addressed blob store over an [`ObjectStore`].
///
/// Contract:
/// - `put_*` returns the digest of what was stored; storing content that is
///   already there gives the same result and leaves one blob. On a local
///   store that put replaces the blob atomically with the copy it just
///   checked (so a blob that went bad is repaired); on a remote store a
///   blob of the wrong size is replaced, others are kept. A blob becomes visible
///   under its digest only when complete: an interrupted put leaves nothing
///   under `blobs/` (at most an unreferenced object under `tmp/`, which
///   [`ArtifactStore::clean_tmp`] removes).
/// - Every read checks the content against the digest and fails with
///   [`ArtifactError::Corrupt`] naming the blob instead of returning bad
///   bytes; a local destination is written to a temporary name and renamed
///   only after the check.
/// - Files are streamed in `PART`-sized chunks (8 MiB), never read whole.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    inner: Arc<dyn ObjectStore>,
    root: ObjPath,
    url: String,
    /// Local-like stores (file, memory) take one pass: stream to `tmp/`
    /// while hashing, then link into place if absent. Remote stores hash
    /// first so content already there is never uploaded again.
    staged: bool,
    /// Folders never stored as part of a folder output (canonical paths):
    /// a local store's own root, and what [`ArtifactStore::skipping`] adds
    /// (kaon's data directory), so that an output folder that holds them
    /// does not take in the database, the secret and every blob.
    skip: Arc<Vec<PathBuf>>,
}

/// Test hook: `KAON_FAILPOINT=<name>` makes the process die (SIGABRT, no
/// clean-up, like a SIGKILL) at the named point, so tests can check what
/// a crash there leaves behind. Shared by kaon's crates (the Spark
/// executor has its own points).
#[doc(hidden)]
pub fn failpoint(name: &str) {
    if std::env::var("KAON_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("kaon: failpoint {name}: aborting");
        std::process::abort();
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{nanos:x}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

fn is_exists(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

fn is_unsupported(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }
    )
}

impl ArtifactStore {
    /// The store's URL (a `file://` URL with an absolute path for local stores).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn at(&self, parts: &[&str]) -> ObjPath {
        let mut p = self.root.clone();
        for part in parts {
            p = p.clone().join(*part);
        }
        p
    }

    /// Where a blob lives: `blobs/<first two hex digits>/<hex>`.
    pub fn blob_path(&self, d: &Digest) -> String {
        let hex = d.hex();
        self.at(&["blobs", &hex[..2], &hex]).to_string()
    }

    fn blob(&self, d: &Digest) -> ObjPath {
        let hex = d.hex();
        self.at(&["blobs", &hex[..2], &hex])
    }

    fn err(&self) -> impl FnOnce(object_store::Error) -> ArtifactError + '_ {
        move |source| ArtifactError::Store {
            store: self.url.clone(),
            source,
        }
    }

    /// True when the blob exists.
    pub async fn contains(&self, d: &Digest) -> Result<bool, ArtifactError> {
        match self.inner.head(&self.blob(d)).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.err()(e)),
        }
    }

    /// Every blob: digest, size and when it was written. Objects under
    /// `blobs/` whose names are not digests are left out.
    pub async fn blobs(&self) -> Result<Vec<(Digest, u64, SystemTime)>, ArtifactError> {
        let prefix = self.at(&["blobs"]);
        let mut out = Vec::new();
        let mut list = self.inner.list(Some(&prefix));
        while let Some(m) = list.next().await {
            let m = m.map_err(self.err())?;
            if let Some(name) = m.location.filename()
                && let Ok(d) = name.parse::<Digest>()
            {
                out.push((d, m.size, SystemTime::from(m.last_modified)));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes a blob (garbage collection). Deleting a missing blob is fine.
    pub async fn delete(&self, d: &Digest) -> Result<(), ArtifactError> {
        match self.inner.delete(&self.blob(d)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.err()(e)),
        }
    }

    /// Removes leftovers of interrupted puts older than `age`; returns how
    /// many.
    pub async fn clean_tmp(&self, age: std::time::Duration) -> Result<usize, ArtifactError> {
        let prefix = self.at(&["tmp"]);
        let cutoff = SystemTime::now() - age;
        let mut n = 0;
        let mut list = self.inner.list(Some(&prefix));
        let mut old = Vec::new();
        while let Some(m) = list.next().await {
            let m = m.map_err(self.err())?;
            if SystemTime::from(m.last_modified) < cutoff {
                old.push(m.location);
            }
        }
        for p in old {
            if self.inner.delete(&p).await.is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn temp_beside(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "artifact".into());
    dest.with_file_name(format!(".{name}.kaon-{}", unique()))
}
