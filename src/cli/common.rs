//! What the run-related verbs share: the data directory, the store, and
//! driving a run to its end.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kaon_engine::{RunOptions, RunStatus};
use kaon_exec::{Callback, SparkExecutor};
use kaon_model::Validated;
use kaon_store::{Durability, RunRow, SqliteStore, StateStore};
use serde_json::{Map, Value};

use kaon::progress::{self, Mode};
use kaon_artifacts::ArtifactStore;
use kaon_runtime::{Capacity, NewRun, ResumedRun, Runner, RuntimeOptions, Sealer};

/// Where kaon keeps its database and logs.
#[derive(Debug, clap::Args, Clone)]
pub struct DataArgs {
    /// kaon's data directory (database, logs).
    #[arg(long, global = true, env = "KAON_DATA_DIR", default_value = ".kaon")]
    pub data_dir: PathBuf,
    /// Where artifacts are kept: a folder, `file:///abs/dir`,
    /// `s3://bucket/prefix` (configured by the usual `AWS_*` variables) or
    /// `hdfs://namenode/prefix`. Default: `<data-dir>/artifacts`.
    #[arg(long, global = true, env = "KAON_ARTIFACTS", value_name = "URL")]
    pub artifacts: Option<String>,
}

impl DataArgs {
    /// The SQLite database file.
    pub fn db(&self) -> PathBuf {
        self.data_dir.join("kaon.db")
    }

    /// Where attempt logs live.
    pub fn logs(&self) -> PathBuf {
        let root = self.data_dir.join("runs");
        std::path::absolute(&root).unwrap_or(root)
    }

    /// Creates the data directory, private to its owner, if it is missing.
    fn ensure_dir(&self) -> Result<()> {
        kaon_exec::files::create_private_dir(&self.data_dir).with_context(|| {
            format!(
                "cannot create kaon's data directory {}",
                self.data_dir.display()
            )
        })
    }

    /// The data directory's sealer of secrets (its key is made on first
    /// use).
    pub fn sealer(&self) -> Result<Sealer> {
        self.ensure_dir()?;
        Ok(Sealer::with_key(load_secret(self)?))
    }

    /// Opens the artifact store.
    pub fn blobs(&self) -> Result<ArtifactStore> {
        if self.artifacts.is_none() {
            self.ensure_dir()?;
        }
        let url = match &self.artifacts {
            Some(u) => u.clone(),
            None => self.data_dir.join("artifacts").display().to_string(),
        };
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        ArtifactStore::open(&url, &cwd)
            .map(|s| s.skipping(&self.data_dir))
            .with_context(|| format!("cannot open the artifact store `{url}`"))
    }

    /// Opens the store.
    pub async fn store(&self, durability: Durability) -> Result<SqliteStore> {
        SqliteStore::open(&self.db(), durability)
            .await
            .with_context(|| format!("cannot open kaon's database {}", self.db().display()))
    }

    /// Opens the store for a command that only reads it: a missing
    /// database is reported, not created.
    pub async fn existing_store(&self) -> Result<SqliteStore> {
        if !self.db().exists() {
            bail!(
                "no kaon database at {} (runs are kept under the directory `kaon run` was started in; use --data-dir to point elsewhere)",
                self.db().display()
            );
        }
        self.store(Durability::Full).await
    }
}

/// Runs an async block on a runtime made for one command.
pub fn block_on<F: Future>(f: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(rt.block_on(f))
}

/// The exit code for how a run ended: 0 succeeded, 1 failed, 3 cancelled,
/// 4 left running (detached).
pub fn exit_code(status: Option<RunStatus>) -> ExitCode {
    match status {
        Some(RunStatus::Succeeded) => ExitCode::SUCCESS,
        Some(RunStatus::Failed) => ExitCode::from(1),
        Some(RunStatus::Cancelled) => ExitCode::from(3),
        Some(RunStatus::Running) | None => ExitCode::from(4),
    }
}

/// How a run is to be driven.
pub struct DriveArgs {
    /// Progress display.
    pub mode: Mode,
    /// Resources to admit steps against.
    pub capacity: Capacity,
    /// SIGTERM to SIGKILL.
    pub kill_grace: Duration,
    /// Cancel as soon as the loop starts (`kaon cancel` of an orphaned run).
    pub cancel: Option<String>,
}

/// What to drive.
pub enum Start<'a> {
    /// A new run.
    New {
        /// Its parameters, bound.
        params: Map<String, Value>,
        /// Its options.
        options: RunOptions,
    },
    /// A stored run to carry on, with the parameters given now (`-p` and
    /// `from_env`/`from_file`): its secrets, which the store does not keep.
    Resume(&'a RunRow, Map<String, Value>),
    /// A stored run whose failed step (name, instance or block key) is
    /// retried, with the parameters given now (as for `Resume`).
    Retry(&'a RunRow, Map<String, Value>, &'a str),
}

/// Drives a run to its end through the runtime and prints the summary;
/// returns the exit code.
pub async fn drive(
    data: &DataArgs,
    store: Arc<SqliteStore>,
    validated: Arc<Validated>,
    start: Start<'_>,
    args: DriveArgs,
) -> Result<ExitCode> {
    let owner = kaon_runtime::owner_id();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let blobs = data.blobs()?;
    let config = kaon::config::Config::load()?;
    // Spark listeners post to a local endpoint; a run without Spark steps
    // listens on no port at all.
    let (callback, listener) = if uses_spark(&validated) {
        let secret = load_secret(data)?;
        let (listener, url) = callback_listener(data, &config).await?;
        (Some(Callback { url, secret }), Some((listener, secret)))
    } else {
        (None, None)
    };
    let exec = SparkExecutor::new(
        data.logs(),
        tx,
        Duration::from_millis(250),
        args.kill_grace,
        config.spark.clone(),
        callback,
        Some(blobs.clone()),
    )
    .with_data_dir(&data.data_dir);
    let (stop_callback, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = listener.map(|(listener, secret)| {
        tokio::spawn(kaon_spark::callback::serve(
            listener,
            secret,
            exec.sink(),
            async move {
                let _ = stopped.await;
            },
        ))
    });
    let sealer = data.sealer()?;
    let runner = Arc::new(Runner::start(
        store.clone(),
        Arc::new(exec),
        rx,
        Some(blobs),
        RuntimeOptions {
            capacity: args.capacity,
            inbox_every: Duration::from_millis(200),
            sealer: sealer.clone(),
            owner: owner.clone(),
        },
    ));
    // Listening before the run starts: a Ctrl-C in its first moments
    // cancels it too, instead of killing kaon.
    let signals = Signals::listen()?;
    let summary = Arc::new(std::sync::Mutex::new(None));
    let observer = Box::new(progress::Summarized::new(
        progress::observer(args.mode),
        summary.clone(),
    ));
    let handle = match start {
        Start::New { params, options } => {
            let id = kaon_runtime::RunId::new_root();
            let handle = runner
                .submit(NewRun {
                    id: id.clone(),
                    validated: validated.clone(),
                    params,
                    options,
                    observer,
                })
                .await?;
            kaon::outln!(
                "run {id}: {} ({})",
                validated.workflow.name,
                validated.workflow.path.display()
            );
            handle
        }
        Start::Resume(row, current) => {
            claim_orphan(store.as_ref(), row, &owner).await?;
            let stored: Map<String, Value> = serde_json::from_str(&row.params)
                .with_context(|| format!("run {}: stored parameters are damaged", row.id))?;
            // A run being cancelled launches nothing: its secrets stay sealed.
            let params = if args.cancel.is_some() {
                stored
            } else {
                sealer.unseal_params(&validated.workflow.params, &stored, &current)?
            };
            runner
                .resume(ResumedRun {
                    row: row.clone(),
                    validated,
                    params,
                    cancel: args.cancel.clone(),
                    observer,
                })
                .await?
        }
        Start::Retry(row, current, step) => {
            claim_orphan(store.as_ref(), row, &owner).await?;
            let stored: Map<String, Value> = serde_json::from_str(&row.params)
                .with_context(|| format!("run {}: stored parameters are damaged", row.id))?;
            let params = sealer.unseal_params(&validated.workflow.params, &stored, &current)?;
            let resumed = ResumedRun {
                row: row.clone(),
                validated,
                params,
                cancel: None,
                observer,
            };
            let handle = runner.retry(resumed, step).await?;
            kaon::outln!("run {}: retrying `{step}`", row.id);
            handle
        }
    };
    let id = handle.id.clone();
    let signals = tokio::spawn(signals.handle(runner.clone(), id.clone()));
    let status = handle.finished().await;
    signals.abort();
    let stopped = runner.shutdown().await;
    let _ = stop_callback.send(());
    if let Some(server) = server {
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    }
    let status = status?;
    stopped?;
    // The end was committed; make sure it was committed somewhere.
    store.check_present()?;
    let shown = summary.lock().ok().and_then(|mut s| s.take());
    match (status, shown) {
        (Some(_), Some(text)) => kaon::outln!("{text}"),
        (Some(_), None) => {}
        (None, _) => kaon::outln!("run {id} left running; `kaon resume {id}` carries it on"),
    }
    Ok(exit_code(status))
}

/// Ctrl-C and SIGTERM, listened for.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot listen for signals")?,
            term: signal(SignalKind::terminate()).context("cannot listen for signals")?,
        })
    }

    /// Ctrl-C once cancels the run, twice leaves it; SIGTERM leaves it (its
    /// steps go on, and `kaon resume` carries it on).
    async fn handle(mut self, runner: Arc<Runner>, run: kaon_runtime::RunId) {
        let mut interrupts = 0;
        loop {
            tokio::select! {
                _ = self.int.recv() => {
                    interrupts += 1;
                    if interrupts > 1 {
                        runner.note(&run, "interrupted again: leaving; the steps still running go on, and `kaon resume` picks the run up");
                        runner.detach(&run);
                        return;
                    }
                    runner.note(&run, "cancelling the run (Ctrl-C again to leave at once)");
                    let _ = runner.cancel(&run, "interrupted (Ctrl-C)").await;
                }
                _ = self.term.recv() => {
                    runner.note(&run, "SIGTERM: leaving the run as it is; `kaon resume` carries it on");
                    runner.detach(&run);
                    return;
                }
            }
        }
    }
}

/// The data directory's secret (Spark listeners sign their posts with it;
/// secrets are sealed under it).
fn load_secret(data: &DataArgs) -> Result<[u8; 32]> {
    let path = data.data_dir.join("secret");
    kaon_spark::callback::load_secret(&path)
        .with_context(|| format!("cannot read or create kaon's secret {}", path.display()))
}

/// Whether a workflow or one of its sub-workflows has a Spark step.
fn uses_spark(v: &Validated) -> bool {
    v.workflow
        .steps
        .values()
        .any(|s| matches!(s.kind, kaon_model::spec::StepKind::Spark(_)))
        || v.children.values().any(uses_spark)
}

/// The socket Spark listeners post to and the URL they are given:
/// loopback, on the port of last time when it is free (drivers that outlived
/// a kaon crash keep posting to it, so a resumed run hears them again), or
/// every interface on the port of `[spark] callback` when drivers run on
/// other machines.
async fn callback_listener(
    data: &DataArgs,
    config: &kaon::config::Config,
) -> Result<(tokio::net::TcpListener, String)> {
    if let Some(url) = &config.spark.callback {
        let port = url::Url::parse(url)
            .ok()
            .and_then(|u| u.port_or_known_default())
            .with_context(|| format!("[spark] callback `{url}` is not an http URL with a port"))?;
        let l = tokio::net::TcpListener::bind(("0.0.0.0", port))
            .await
            .with_context(|| format!("cannot listen on port {port} for Spark listener events"))?;
        return Ok((l, url.trim_end_matches('/').to_string()));
    }
    let port_file = data.data_dir.join("callback.port");
    let last = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok());
    let reused = match last {
        Some(p) => tokio::net::TcpListener::bind(("127.0.0.1", p)).await.ok(),
        None => None,
    };
    let l = match reused {
        Some(l) => l,
        None => tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("cannot listen on 127.0.0.1 for Spark listener events")?,
    };
    let addr = l.local_addr()?;
    {
        use std::io::Write;
        let _ = kaon_exec::files::create_private(&port_file)
            .and_then(|mut f| f.write_all(addr.port().to_string().as_bytes()));
    }
    Ok((l, format!("http://{addr}")))
}

/// Takes over a run whose driver is gone; refuses one whose driver lives.
pub async fn claim_orphan(store: &SqliteStore, row: &RunRow, owner: &str) -> Result<()> {
    if let Some(o) = &row.owner
        && o != owner
        && kaon_runtime::owner_alive(o, row.heartbeat_ms)
    {
        bail!(
            "run {} is being driven by another kaon process ({o}); `kaon cancel {}` or `kaon signal` reach it",
            row.id,
            row.id
        );
    }
    store
        .claim(
            &row.id,
            row.owner.as_deref(),
            Some(owner),
            kaon_runtime::now_ms() as i64,
        )
        .await
        .with_context(|| format!("cannot take over run {}", row.id))
}

/// The parameters given to a run now: `-p NAME=VALUE` (each name once),
/// then each parameter's `from_env` or `from_file` source. `resuming`: a
/// stored run is carried on, which needs only its secrets.
pub fn given_params(args: &[String], v: &Validated, resuming: bool) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for a in args {
        let Some((k, val)) = a.split_once('=') else {
            bail!("-p {a}: expected NAME=VALUE");
        };
        let k = k.trim();
        if resuming && !v.workflow.params.get(k).is_some_and(|p| p.secret) {
            bail!(
                "-p {k}=...: a run carries on with the parameters it started with; only secret parameters (which kaon does not store) are given again"
            );
        }
        if m.contains_key(k) {
            bail!(
                "-p {k}=...: parameter `{k}` is given twice; give it once (a list is written as JSON: -p {k}='[\"a\", \"b\"]')"
            );
        }
        m.insert(k.to_string(), Value::String(val.to_string()));
    }
    let base = kaon_runtime::base_dir(v);
    kaon_runtime::secrets::take_from_sources(&v.workflow.params, &mut m, &base, resuming)?;
    Ok(m)
}

/// Loads the workflow a stored run was started from, checking it did not
/// change since.
pub fn load_for_resume(row: &RunRow, color: bool) -> Result<Arc<Validated>> {
    let path = Path::new(&row.path);
    let (loaded, ok) =
        super::load_reporting(path, super::DiagFormat::Rich, color, super::Check::Model);
    let Some(v) = loaded.result.filter(|_| ok) else {
        bail!(
            "run {}: its workflow {} no longer loads",
            row.id,
            path.display()
        );
    };
    let digest = kaon_runtime::workflow_digest(&v);
    if digest != row.digest {
        bail!(
            "run {}: the workflow {} changed since the run started; finishing it with the new file could mix two versions. Start a new run with `kaon run --new {}`",
            row.id,
            path.display(),
            path.display()
        );
    }
    Ok(Arc::new(v))
}

/// Finds a run by id, with a clear error when there is none.
pub async fn find_run(store: &SqliteStore, id: &str) -> Result<RunRow> {
    match store.run(id).await? {
        Some(r) => Ok(r),
        None => {
            let recent = store
                .list_runs(&kaon_store::RunFilter {
                    limit: Some(5),
                    ..Default::default()
                })
                .await?;
            let ids: Vec<String> = recent.into_iter().map(|r| r.id).collect();
            if ids.is_empty() {
                bail!("no run {id} (there are no runs yet)");
            }
            bail!("no run {id}; recent runs: {}", ids.join(", "))
        }
    }
}

/// Parses sizes like `512m`, `2g`, `1.5GiB` into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    kaon_model::load::parse_memory(s).ok_or_else(|| format!("`{s}` is not a size (e.g. 512m, 4g)"))
}

/// A time in ms since the epoch as RFC 3339 (UTC, seconds).
pub fn fmt_time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
