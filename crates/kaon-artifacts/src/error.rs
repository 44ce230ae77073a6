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
    /// A symbolic link in an output leads out of the folder being stored.
    #[error(
        "{}: a symbolic link to {}, outside {}; kaon stores only what lies inside an output",
        link.display(), target.display(), root.display()
    )]
    LinkOutside {
        /// The link.
        link: PathBuf,
        /// Where it leads.
        target: PathBuf,
        /// The folder it should stay in.
        root: PathBuf,
    },
    /// A symbolic link in a folder being stored leads back to a folder it
    /// is in: storing it would never end.
    #[error("{}: a symbolic link back to {}, a folder it is in; kaon does not store loops", link.display(), target.display())]
    LinkLoop {
        /// The link.
        link: PathBuf,
        /// The folder it leads back to.
        target: PathBuf,
    },
    /// A path that leaves the folder it must stay in (`..`, absolute).
    #[error("{}: lies outside {}; outputs stay inside their step's folder", path.display(), root.display())]
    Outside {
        /// The path.
        path: PathBuf,
        /// The folder it should stay in.
        root: PathBuf,
    },
    /// A symbolic link stands where an artifact would be written.
    #[error("{}: is a symbolic link; kaon does not write through links", path.display())]
    LinkInTheWay {
        /// The link.
        path: PathBuf,
    },
    /// Something that is not the artifact's stands where it would be written.
    #[error("{}: is {what}, in the way of the artifact; kaon does not remove it", path.display())]
    InTheWay {
        /// The path.
        path: PathBuf,
        /// "a folder" or "a file".
        what: &'static str,
    },
    /// Files at the destination differ from the artifact's, and replacing
    /// them was not asked for.
    #[error(
        "{} file(s) under {} differ from the artifact's ({}{}); nothing was written (--force replaces them)",
        paths.len() + more, dest.display(),
        paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        if *more > 0 { ", ..." } else { "" }
    )]
    Conflicts {
        /// Where the artifact was to go.
        dest: PathBuf,
        /// The first few files that differ.
        paths: Vec<PathBuf>,
        /// How many more.
        more: usize,
    },
    /// Text that should be a digest is not `blake3:` and 64 hex digits.
    #[error("`{text}` is not a digest (expected `blake3:` and 64 hex digits)")]
    BadDigest {
        /// The text.
        text: String,
    },
    /// An artifact kind that is not `file`, `dir` or `reference` (a row
    /// written by a newer kaon, or a damaged one).
    #[error("unknown artifact kind `{kind}`")]
    UnknownKind {
        /// The kind as written.
        kind: String,
    },
    /// A file changed while it was being stored.
    #[error("{}: changed while it was being stored; nothing was kept", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
}

impl ArtifactError {
    /// True when the destination's layout refuses a restore (something in
    /// the way, a link, files that differ), as opposed to the store failing:
    /// the stored artifact is fine, and running the step instead is right.
    pub fn is_in_the_way(&self) -> bool {
        matches!(
            self,
            ArtifactError::InTheWay { .. }
                | ArtifactError::LinkInTheWay { .. }
                | ArtifactError::Conflicts { .. }
                | ArtifactError::Outside { .. }
                | ArtifactError::LinkOutside { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ArtifactError {
        let path = path.into();
        move |source| ArtifactError::Io { path, source }
    }
}
