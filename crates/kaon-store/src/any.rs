//! [`AnyStore`]: one type for whichever backend a process opened, so that
//! code above the store (a server, the CLI) is written once rather than
//! once per backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{
    ArtifactFilter, ArtifactIndex, ArtifactRow, Batch, Direction, Durability, KeyRow, LineageEdge,
    MemoRow, MemoryStore, Message, MessageBody, NodeRow, OutputFilter, PgStore, RunFilter,
    RunOutput, RunRow, ScheduleRow, ScopeRow, ServiceStore, SqliteStore, StateStore, StoreError,
    TickRow, TokenRow, WorkflowRow,
};

/// A state store of any backend, timing its commits.
pub struct AnyStore {
    backend: Backend,
    commits: Arc<CommitTimes>,
}

/// Which backend an [`AnyStore`] is.
pub enum Backend {
    /// The in-memory twin (tests); boxed, being six times the size of the
    /// others.
    Memory(Box<MemoryStore>),
    /// SQLite: the embedded default.
    Sqlite(SqliteStore),
    /// PostgreSQL: a server a team shares.
    Postgres(PgStore),
}

impl AnyStore {
    /// Opens the database `db` names: a `postgres://` or `postgresql://`
    /// URL, else the path of a SQLite file (created if missing). Both are
    /// brought up to date with their migrations.
    pub async fn open(db: &str, durability: Durability) -> Result<AnyStore, StoreError> {
        if is_postgres(db) {
            let s = PgStore::connect(db).await?;
            s.migrate().await?;
            Ok(AnyStore::from(Backend::Postgres(s)))
        } else {
            let path = db.strip_prefix("sqlite://").unwrap_or(db);
            Ok(AnyStore::from(Backend::Sqlite(
                SqliteStore::open(std::path::Path::new(path), durability).await?,
            )))
        }
    }

    /// Which backend, for messages and metrics: `memory`, `sqlite`,
    /// `postgres`.
    pub fn backend(&self) -> &'static str {
        match &self.backend {
            Backend::Memory(_) => "memory",
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// How long commits took, so far.
    pub fn commit_times(&self) -> &CommitTimes {
        &self.commits
    }
}

impl From<Backend> for AnyStore {
    fn from(backend: Backend) -> AnyStore {
        AnyStore {
            backend,
            commits: Arc::default(),
        }
    }
}

impl From<MemoryStore> for AnyStore {
    fn from(s: MemoryStore) -> AnyStore {
        AnyStore::from(Backend::Memory(Box::new(s)))
    }
}

/// Upper bounds (seconds) of the commit time histogram's buckets.
pub const COMMIT_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A histogram of commit times (a Prometheus histogram's numbers), kept
/// with atomics: a commit never waits for a reader.
#[derive(Debug, Default)]
pub struct CommitTimes {
    /// Commits whose time is at most each bound of [`COMMIT_BUCKETS`]
    /// (not cumulative).
    buckets: [AtomicU64; 10],
    count: AtomicU64,
    total_ns: AtomicU64,
}

impl CommitTimes {
    fn record(&self, took: std::time::Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = COMMIT_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_ns.fetch_add(
            took.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// Cumulative counts per bound of [`COMMIT_BUCKETS`], the count and
    /// the sum in seconds.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut acc = 0;
        let buckets = COMMIT_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(b, n)| {
                acc += n.load(Ordering::Relaxed);
                (*b, acc)
            })
            .collect();
        (
            buckets,
            self.count.load(Ordering::Relaxed),
            self.total_ns.load(Ordering::Relaxed) as f64 / 1e9,
        )
    }
}

/// True when `db` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match &$self.backend {
            Backend::Memory($s) => $e,
            Backend::Sqlite($s) => $e,
            Backend::Postgres($s) => $e,
        }
    };
}

impl StateStore for AnyStore {
    async fn create_run(&self, run: &RunRow) -> Result<(), StoreError> {
        each!(self, s => s.create_run(run).await)
    }
    async fn commit(&self, batches: &[Batch]) -> Result<(), StoreError> {
        let start = std::time::Instant::now();
        let r = each!(self, s => s.commit(batches).await);
        self.commits.record(start.elapsed());
        r
    }
    async fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        each!(self, s => s.run(id).await)
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        each!(self, s => s.list_runs(filter).await)
    }
    async fn children(&self, id: &str) -> Result<Vec<RunRow>, StoreError> {
        each!(self, s => s.children(id).await)
    }
    async fn scopes(&self, run: &str) -> Result<Vec<ScopeRow>, StoreError> {
        each!(self, s => s.scopes(run).await)
    }
    async fn nodes(&self, run: &str) -> Result<Vec<NodeRow>, StoreError> {
        each!(self, s => s.nodes(run).await)
    }
    async fn nodes_named(&self, run: &str, name: &str) -> Result<Vec<NodeRow>, StoreError> {
        each!(self, s => s.nodes_named(run, name).await)
    }
    async fn claim(
        &self,
        run: &str,
        expected: Option<&str>,
        owner: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        each!(self, s => s.claim(run, expected, owner, now_ms).await)
    }
    fn check_present(&self) -> Result<(), StoreError> {
        each!(self, s => s.check_present())
    }
    async fn heartbeat(&self, run: &str, owner: &str, now_ms: i64) -> Result<bool, StoreError> {
        each!(self, s => s.heartbeat(run, owner, now_ms).await)
    }
    async fn post(&self, run: &str, body: &MessageBody, now_ms: i64) -> Result<i64, StoreError> {
        each!(self, s => s.post(run, body, now_ms).await)
    }
    async fn inbox(&self, run: &str) -> Result<Vec<Message>, StoreError> {
        each!(self, s => s.inbox(run).await)
    }
}

impl ArtifactIndex for AnyStore {
    async fn artifact(&self, id: &str) -> Result<Option<ArtifactRow>, StoreError> {
        each!(self, s => s.artifact(id).await)
    }
    async fn artifacts(&self, filter: &ArtifactFilter) -> Result<Vec<ArtifactRow>, StoreError> {
        each!(self, s => s.artifacts(filter).await)
    }
    async fn artifacts_of(&self, run: &str, node: u32) -> Result<Vec<ArtifactRow>, StoreError> {
        each!(self, s => s.artifacts_of(run, node).await)
    }
    async fn recent_outputs(&self, filter: &OutputFilter) -> Result<Vec<RunOutput>, StoreError> {
        each!(self, s => s.recent_outputs(filter).await)
    }
    async fn memo(&self, key: &str) -> Result<Vec<MemoRow>, StoreError> {
        each!(self, s => s.memo(key).await)
    }
    async fn forget_memo(&self, key: &str, run: &str, node: u32) -> Result<(), StoreError> {
        each!(self, s => s.forget_memo(key, run, node).await)
    }
    async fn keys(&self, step: &str, limit: u32) -> Result<Vec<KeyRow>, StoreError> {
        each!(self, s => s.keys(step, limit).await)
    }
    async fn key_of(&self, run: &str, node: u32) -> Result<Option<KeyRow>, StoreError> {
        each!(self, s => s.key_of(run, node).await)
    }
    async fn lineage(
        &self,
        id: &str,
        direction: Direction,
        depth: u32,
    ) -> Result<Vec<LineageEdge>, StoreError> {
        each!(self, s => s.lineage(id, direction, depth).await)
    }
    async fn digests(&self) -> Result<Vec<(String, String)>, StoreError> {
        each!(self, s => s.digests().await)
    }
}

impl ServiceStore for AnyStore {
    async fn deploy(
        &self,
        workflow: &WorkflowRow,
        schedules: &[ScheduleRow],
    ) -> Result<bool, StoreError> {
        each!(self, s => s.deploy(workflow, schedules).await)
    }
    async fn workflows(&self) -> Result<Vec<WorkflowRow>, StoreError> {
        each!(self, s => s.workflows().await)
    }
    async fn workflow(
        &self,
        name: &str,
        digest: Option<&str>,
    ) -> Result<Option<WorkflowRow>, StoreError> {
        each!(self, s => s.workflow(name, digest).await)
    }
    async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        each!(self, s => s.schedules().await)
    }
    async fn set_paused(&self, id: &str, paused: bool) -> Result<bool, StoreError> {
        each!(self, s => s.set_paused(id, paused).await)
    }
    async fn record_tick(&self, tick: &TickRow) -> Result<bool, StoreError> {
        each!(self, s => s.record_tick(tick).await)
    }
    async fn set_tick(
        &self,
        schedule: &str,
        tick: &str,
        outcome: &str,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.set_tick(schedule, tick, outcome).await)
    }
    async fn ticks(&self, schedule: &str, limit: u32) -> Result<Vec<TickRow>, StoreError> {
        each!(self, s => s.ticks(schedule, limit).await)
    }
    async fn latest_tick(
        &self,
        schedule: &str,
        outcome: &str,
    ) -> Result<Option<TickRow>, StoreError> {
        each!(self, s => s.latest_tick(schedule, outcome).await)
    }
    async fn ticks_with(&self, outcome: &str) -> Result<Vec<TickRow>, StoreError> {
        each!(self, s => s.ticks_with(outcome).await)
    }
    async fn create_token(&self, token: &TokenRow) -> Result<(), StoreError> {
        each!(self, s => s.create_token(token).await)
    }
    async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        each!(self, s => s.token(id).await)
    }
    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        each!(self, s => s.tokens().await)
    }
    async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        each!(self, s => s.revoke_token(id, now_ms).await)
    }
}
