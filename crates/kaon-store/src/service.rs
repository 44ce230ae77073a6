//! What a kaon server keeps besides runs: deployed workflows, their
//! schedules, the ticks schedules and triggers fired, and API tokens.
//!
//! A tick is the durable intent to start one run: it is recorded (with the
//! id the run will have) before the run is created, and recorded once per
//! schedule and tick key, so a server killed between the two starts the
//! run at its next start (the run id is fixed by the tick; creating a run
//! whose id exists fails), and never twice.

use std::future::Future;

use crate::StoreError;

/// One deployed version of a workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowRow {
    /// The workflow's name.
    pub name: String,
    /// A digest of its sources (the same as a run's `digest`).
    pub digest: String,
    /// The workflow file on the server's file system.
    pub path: String,
    /// Its sources when deployed: a JSON object from file path to text.
    pub sources: String,
    /// What it declares for the server (schedules, triggers), JSON.
    pub spec: String,
    /// When this version was deployed (ms since the epoch).
    pub deployed_ms: i64,
}

/// A schedule or trigger of the current version of a workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleRow {
    /// Its id, stable across deployments of the workflow:
    /// `<workflow>:<name>` (the schedule's name, or its index).
    pub id: String,
    /// The workflow it starts.
    pub workflow: String,
    /// The deployed version it belongs to.
    pub digest: String,
    /// What it is: cron, time zone, parameters, policies, or the workflow
    /// whose success triggers it (JSON; the server reads it).
    pub spec: String,
    /// Paused schedules fire nothing (ticks missed meanwhile are judged by
    /// the catch-up policy when resumed).
    pub paused: bool,
    /// When it was first deployed; the first tick it may fire is after.
    pub created_ms: i64,
}

/// What became of a tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TickRow {
    /// The schedule.
    pub schedule: String,
    /// The tick's key: the scheduled time (RFC 3339, UTC) for a cron
    /// schedule, the triggering run's id for a trigger. Unique per
    /// schedule.
    pub tick: String,
    /// The scheduled time (ms since the epoch), for ordering.
    pub due_ms: i64,
    /// The run it starts (its id is fixed when the tick is recorded), or
    /// `None` when the tick was skipped.
    pub run: Option<String>,
    /// `pending` (recorded, its run not created yet), `started`, `queued`
    /// (waits for the schedule's running run to end), `skipped: <why>` or
    /// `failed: <why>` (its run could not be started).
    pub outcome: String,
    /// Parameters of the run (JSON object).
    pub params: String,
    /// When it was recorded.
    pub created_ms: i64,
}

/// An API token as stored: never the token itself, only its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    /// The token's public id (the part of the token before its secret).
    pub id: String,
    /// What it is for, given at creation.
    pub name: String,
    /// `read`, `operate`, `admin`, or `run:<run id>` for a run's own token.
    pub role: String,
    /// A digest of the token's secret (BLAKE3, hex).
    pub hash: String,
    /// When it was made.
    pub created_ms: i64,
    /// When it was revoked; a revoked token is refused.
    pub revoked_ms: Option<i64>,
}

/// The server's tables.
///
/// Contract:
/// - [`ServiceStore::deploy`] stores a version once (name and digest) and
///   returns true only then. Deploying a stored version that is not the
///   latest is a rollback: it becomes the latest (its `deployed_ms` and
///   `path` become the given row's; its sources and spec stay). Either way
///   the schedules given replace the workflow's: ids kept keep their
///   `paused` and `created_ms`, ids gone are deleted, their ticks kept.
///   Deploying the latest version again changes nothing and returns false.
/// - [`ServiceStore::record_tick`] stores a tick once per (schedule, tick):
///   a second record of the same tick returns false and changes nothing,
///   whatever its outcome. This is what makes a tick fire exactly once
///   across restarts and between servers.
/// - [`ServiceStore::set_tick`] changes the outcome of a stored tick (a
///   queued tick starting).
/// - Token hashes are compared by the caller; the store finds by id.
pub trait ServiceStore: Send + Sync {
    /// Stores a deployed version and the workflow's schedules (rows whose
    /// `workflow` is this workflow's name), in one transaction; true when
    /// the version is new.
    ///
    /// A version stored before returns false. If it is the latest (as in
    /// [`ServiceStore::workflows`]) nothing changes; otherwise it is
    /// rolled back to: its `deployed_ms` and `path` are set to the given
    /// row's (so, given the time of deployment, it is the latest again)
    /// and the schedules given replace the workflow's, as for a new
    /// version. Deployments of one workflow take turns, so two at once
    /// never leave a mix of two versions' schedules.
    fn deploy(
        &self,
        workflow: &WorkflowRow,
        schedules: &[ScheduleRow],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The latest deployed version of every workflow, by name: the one
    /// deployed last (of versions deployed in the same millisecond, the
    /// one with the greatest digest).
    fn workflows(&self) -> impl Future<Output = Result<Vec<WorkflowRow>, StoreError>> + Send;

    /// One workflow: a given version, or its latest (as in
    /// [`ServiceStore::workflows`]) when `digest` is `None`.
    fn workflow(
        &self,
        name: &str,
        digest: Option<&str>,
    ) -> impl Future<Output = Result<Option<WorkflowRow>, StoreError>> + Send;

    /// Every schedule, by id.
    fn schedules(&self) -> impl Future<Output = Result<Vec<ScheduleRow>, StoreError>> + Send;

    /// Pauses or resumes a schedule; false when there is none by that id.
    fn set_paused(
        &self,
        id: &str,
        paused: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records a tick; false when it was recorded before.
    fn record_tick(&self, tick: &TickRow) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Changes a stored tick's outcome (its run stays the one recorded
    /// with it); false when there is no such tick.
    fn set_tick(
        &self,
        schedule: &str,
        tick: &str,
        outcome: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// A schedule's ticks, latest due first (ties by tick key, greatest
    /// first), at most `limit`.
    fn ticks(
        &self,
        schedule: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<TickRow>, StoreError>> + Send;

    /// The newest tick (latest due, ties by the greater tick key) of one
    /// schedule with this outcome (compared whole), however many ticks of
    /// other outcomes came after it: whether a schedule's last run is
    /// still going is asked of its newest `started` tick.
    fn latest_tick(
        &self,
        schedule: &str,
        outcome: &str,
    ) -> impl Future<Output = Result<Option<TickRow>, StoreError>> + Send;

    /// Ticks of every schedule with this outcome (`queued`, `started`;
    /// compared whole), oldest due first (ties by schedule, then tick
    /// key): what a starting server looks at again.
    fn ticks_with(
        &self,
        outcome: &str,
    ) -> impl Future<Output = Result<Vec<TickRow>, StoreError>> + Send;

    /// Stores a new token; [`StoreError::TokenExists`] when its id is taken.
    fn create_token(&self, token: &TokenRow)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One token by id (revoked ones too).
    fn token(&self, id: &str) -> impl Future<Output = Result<Option<TokenRow>, StoreError>> + Send;

    /// Every token that is not a run's own (role `run:…`), newest first
    /// (ties by id, greatest first).
    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenRow>, StoreError>> + Send;

    /// Revokes a token; false when there is no such token or it was
    /// revoked before.
    fn revoke_token(
        &self,
        id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
