use std::path::PathBuf;

use crate::Digest;

/// Why an artifact operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The store URL cannot be used.
    #[error("artifact store `{url}`: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No blob with this digest.
    #[error("blob {digest} is missing from the artifact store {store}")]
    Missing {
        /// The digest looked for.
        digest: Digest,
        /// The store's URL.
        store: String,
    },
    /// A blob's content does not hash to its name: never used.
    #[error(
        "blob {digest} in the artifact store {store} is corrupt: its content hashes to {actual}"
    )]
    Corrupt {
        /// The blob's name.
        digest: Digest,
        /// What its content hashes to.
        actual: Digest,
        /// The store's URL.
        store: String,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The object store refused or failed.
    #[error("artifact store {store}: {source}")]
    Store {
        /// The store's URL.
        store: String,
        /// The backend's error.
        source: object_store::Error,
    },
    /// A manifest or reference blob does not decode.
    #[error("blob {digest} is not a valid {what}: {reason}")]
    BadRecord {
        /// The blob.
        digest: Digest,
        /// "manifest" or "reference".
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A path to store is neither a regular file nor a folder.
    #[error("{}: not a file or a folder", path.display())]
    NotFileOrDir {
        /// The path.
        path: PathBuf,
    },
    /// A file changed while it was being stored.
    #[error("{}: changed while it was being stored; nothing was kept", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
}

impl ArtifactError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ArtifactError {
        let path = path.into();
        move |source| ArtifactError::Io { path, source }
    }
}
