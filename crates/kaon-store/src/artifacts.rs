//! Artifact metadata, lineage and memo entries: the rows and the queries.
//!
//! Blobs live in the artifact store (`kaon-artifacts`); what they are, who
//! made them and who read them lives here, written in the same transaction
//! as the step state that produced them (see [`crate::Batch`]).

use std::future::Future;

use crate::StoreError;

/// One artifact: a named output of a step run (or a standalone put).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArtifactRow {
    /// Its id, `a` and 16 hex digits.
    pub id: String,
    /// The content digest (`blake3:<hex>`); for folders, the manifest's.
    pub digest: String,
    /// `file`, `dir` or `reference`.
    pub kind: String,
    /// Bytes of content.
    pub size: i64,
    /// Files (1 for a file).
    pub files: i64,
    /// Media type, e.g. `application/vnd.apache.parquet`.
    pub media_type: String,
    /// The output's name (or the name given to `kaon artifact put`).
    pub name: String,
    /// The run that produced it, if any.
    pub run: Option<String>,
    /// The producing node.
    pub node: Option<u32>,
    /// The producing step's name.
    pub step: Option<String>,
    /// The producing step instance's key (`train[reg=eu]`).
    pub step_key: Option<String>,
    /// The producing attempt.
    pub attempt: Option<u32>,
    /// Where the step wrote it.
    pub path: Option<String>,
    /// When it was recorded (ms since the epoch).
    pub created_ms: i64,
    /// Free tags, a JSON object.
    pub tags: String,
    /// For outputs of a memoized step: the artifact it reuses.
    pub memoized_from: Option<String>,
}

/// A step run read an artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRow {
    /// The reading run.
    pub run: String,
    /// The reading node.
    pub node: u32,
    /// Its attempt.
    pub attempt: u32,
    /// The artifact read.
    pub artifact: String,
}

/// A finished step run that a later step with the same key may reuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoRow {
    /// The memo key (`blake3:<hex>`).
    pub key: String,
    /// The run.
    pub run: String,
    /// The node.
    pub node: u32,
    /// The attempt that succeeded.
    pub attempt: u32,
    /// The step's name.
    pub step: String,
    /// The instance's key.
    pub step_key: String,
    /// Its value outputs, a JSON object.
    pub outputs: String,
    /// Its artifacts, a JSON object from output name to artifact id.
    pub artifacts: String,
    /// When it finished.
    pub created_ms: i64,
}

/// The parts a step run's memo key was computed from (for explaining a
/// miss).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRow {
    /// The run.
    pub run: String,
    /// The node.
    pub node: u32,
    /// The attempt.
    pub attempt: u32,
    /// The step's name.
    pub step: String,
    /// The instance's key.
    pub step_key: String,
    /// The memo key.
    pub key: String,
    /// The key's parts, as JSON (the `MemoKey` record of
    /// `artifacts/kaon_artifacts.proto`).
    pub parts: String,
    /// Whether it ran (`ran`) or reused an earlier run (`memoized`).
    pub outcome: String,
    /// When it was computed.
    pub created_ms: i64,
}

/// Which artifacts to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArtifactFilter {
    /// Produced by this run.
    pub run: Option<String>,
    /// Produced by this step (name or instance key).
    pub step: Option<String>,
    /// With this name.
    pub name: Option<String>,
    /// With this digest.
    pub digest: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<u32>,
}

/// Which outputs of a workflow's latest runs
/// ([`ArtifactIndex::recent_outputs`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputFilter {
    /// The workflow.
    pub workflow: String,
    /// The artifacts' name (the output's).
    pub name: String,
    /// Only those of this step (its name or an instance key).
    pub step: Option<String>,
    /// How many of the workflow's latest runs to look in.
    pub runs: u32,
}

/// An artifact of one run, with when the run was created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutput {
    /// The run.
    pub run: String,
    /// When the run was created (ms since the epoch).
    pub run_created_ms: i64,
    /// The artifact (a memoized step's has this run's id and
    /// `memoized_from` set).
    pub artifact: ArtifactRow,
}

/// One hop of lineage: `from` was read by the step run that wrote `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineageEdge {
    /// Hops from the artifact asked about (1 for direct neighbours).
    pub depth: u32,
    /// The artifact read.
    pub from: String,
    /// The step run in between.
    pub run: String,
    /// Its node.
    pub node: u32,
    /// The artifact written.
    pub to: String,
}

/// Which way lineage goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Where an artifact came from.
    Upstream,
    /// What used it.
    Downstream,
}

/// Queries over artifact metadata, lineage and memo entries. Writes go
/// through [`crate::StateStore::commit`] with the step state they belong to.
///
/// Contract:
/// - Artifact ids are unique; committing a row whose id exists leaves the
///   stored row as it was (a replayed commit is harmless).
/// - [`ArtifactIndex::memo`] returns entries with the key, newest first.
/// - Lineage follows reads and writes of step runs up to `depth` hops, each
///   edge once, nearest first.
pub trait ArtifactIndex: Send + Sync {
    /// One artifact by id, or by a unique prefix of its id or digest.
    fn artifact(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ArtifactRow>, StoreError>> + Send;

    /// Artifacts matching a filter, newest first.
    fn artifacts(
        &self,
        filter: &ArtifactFilter,
    ) -> impl Future<Output = Result<Vec<ArtifactRow>, StoreError>> + Send;

    /// Artifacts a step run wrote.
    fn artifacts_of(
        &self,
        run: &str,
        node: u32,
    ) -> impl Future<Output = Result<Vec<ArtifactRow>, StoreError>> + Send;

    /// The artifacts named `filter.name` (of `filter.step`, when given)
    /// that the latest `filter.runs` top-level runs of `filter.workflow`
    /// produced: the latest runs are chosen first (newest by creation,
    /// ties by id, greatest first, as [`crate::StateStore::list_runs`]
    /// orders them), then their artifacts are looked up, so a run without
    /// one gives nothing and an older run never takes its place. Newest run
    /// first; a run's own artifacts newest first (ties by id). One query,
    /// served by indexes on runs by workflow and artifacts by run.
    fn recent_outputs(
        &self,
        filter: &OutputFilter,
    ) -> impl Future<Output = Result<Vec<RunOutput>, StoreError>> + Send;

    /// Memo entries with this key, newest first.
    fn memo(&self, key: &str) -> impl Future<Output = Result<Vec<MemoRow>, StoreError>> + Send;

    /// Drops a memo entry whose artifacts turned out to be unusable.
    fn forget_memo(
        &self,
        key: &str,
        run: &str,
        node: u32,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The key parts of a step's runs, newest first, at most `limit`.
    fn keys(
        &self,
        step: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<KeyRow>, StoreError>> + Send;

    /// The key parts of one step run (its latest attempt).
    fn key_of(
        &self,
        run: &str,
        node: u32,
    ) -> impl Future<Output = Result<Option<KeyRow>, StoreError>> + Send;

    /// Lineage edges from an artifact.
    fn lineage(
        &self,
        id: &str,
        direction: Direction,
        depth: u32,
    ) -> impl Future<Output = Result<Vec<LineageEdge>, StoreError>> + Send;

    /// Every digest some artifact names (for garbage collection).
    fn digests(&self) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
}
