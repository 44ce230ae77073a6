//! Turning a finished attempt's outputs into artifacts.
//!
//! Declared file and folder outputs are stored by content after the step
//! exits 0; `kaon artifact put` and `kaon artifact get` run inside the step
//! store or fetch blobs themselves and leave one JSON line each in
//! `$KAON_ARTIFACTS_FILE`, which is read here. Every executor that runs
//! steps on this machine's file system shares this code.

use std::path::Path;

use kaon_artifacts::ArtifactStore;
use kaon_engine::{InputRef, LaunchOrder, OutputArtifact};
use kaon_model::ids::ArtifactId;
use kaon_model::types::Type;
use serde::{Deserialize, Serialize};

/// One line of `$KAON_ARTIFACTS_FILE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ArtifactLine {
    /// `kaon artifact put`: a blob now in the store.
    Put {
        /// The name given.
        name: String,
        /// `blake3:<hex>`.
        digest: String,
        /// `file` or `dir`.
        kind: String,
        /// Bytes.
        size: u64,
        /// Files.
        files: u64,
        /// Media type.
        media_type: String,
        /// The path that was stored.
        path: String,
    },
    /// `kaon artifact get`: an artifact the step read.
    Get {
        /// Its id.
        artifact: String,
        /// Its digest.
        digest: String,
    },
}

/// Fails unless `path` lies inside `workdir`: written under it (no `..`
/// out of it, which a `${...}` in the path could still produce after
/// validation) and, with links resolved, still there.
fn within(path: &Path, workdir: &Path) -> Result<(), kaon_artifacts::ArtifactError> {
    let lexical = path.strip_prefix(workdir).is_ok_and(|rel| {
        !rel.components()
            .any(|c| c == std::path::Component::ParentDir)
    });
    if !lexical {
        return Err(kaon_artifacts::ArtifactError::Outside {
            path: path.to_path_buf(),
            root: workdir.to_path_buf(),
        });
    }
    kaon_artifacts::inside(path, workdir)
}

/// Stores the declared file/dir outputs of a successful attempt and reads
/// its artifacts file. Returns what was written, what was read, and
/// problems (an output that could not be stored fails the attempt).
pub async fn store_outputs(
    store: &ArtifactStore,
    order: &LaunchOrder,
    artifacts_file: &Path,
) -> (Vec<OutputArtifact>, Vec<InputRef>, Vec<String>) {
    let mut wrote = Vec::new();
    let mut read = Vec::new();
    let mut problems = Vec::new();
    for o in &order.outputs {
        let Some(path) = &o.path else { continue };
        if !matches!(o.ty, Type::File | Type::Dir) {
            continue;
        }
        if let Err(e) = within(path, &order.workdir) {
            problems.push(format!("cannot store output `{}`: {e}", o.name));
            continue;
        }
        match store.put_path(path).await {
            Ok(s) => wrote.push(OutputArtifact {
                name: o.name.clone(),
                id: ArtifactId::new(&order.run, order.node.0, order.attempt, &o.name).into_string(),
                digest: s.digest.to_string(),
                kind: s.kind.as_str().to_string(),
                size: s.size,
                files: s.files,
                media_type: kaon_artifacts::media_type(path, s.kind),
                path: Some(path.display().to_string()),
                memoized_from: None,
            }),
            Err(e) => problems.push(format!("cannot store output `{}`: {e}", o.name)),
        }
    }
    let text = match std::fs::read_to_string(artifacts_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            problems.push(format!("cannot read $KAON_ARTIFACTS_FILE: {e}"));
            String::new()
        }
    };
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ArtifactLine>(line) {
            Ok(ArtifactLine::Put {
                name,
                digest,
                kind,
                size,
                files,
                media_type,
                path,
            }) => {
                let id =
                    ArtifactId::new(&order.run, order.node.0, order.attempt, &name).into_string();
                // The same name put twice: the last one counts.
                wrote.retain(|a: &OutputArtifact| a.name != name);
                wrote.push(OutputArtifact {
                    name,
                    id,
                    digest,
                    kind,
                    size,
                    files,
                    media_type,
                    path: Some(path),
                    memoized_from: None,
                });
            }
            Ok(ArtifactLine::Get { artifact, digest }) => {
                let r = InputRef {
                    source: "get".into(),
                    artifact,
                    digest,
                };
                if !read.contains(&r) {
                    read.push(r);
                }
            }
            Err(e) => problems.push(format!("$KAON_ARTIFACTS_FILE line {}: {e}", i + 1)),
        }
    }
    (wrote, read, problems)
}
