//! kaon's server: many runs at once for a team.
//!
//! [`serve`] drives every run submitted to it through one
//! [`kaon_runtime::Runner`], answers the HTTP API ([`api`'s routes, with
//! an OpenAPI description at `/openapi.json`), serves the web UI at `/`,
//! fires schedules and triggers exactly once per tick, takes over runs
//! whose driver died (another server's too, on a shared PostgreSQL), and
//! on shutdown lets go of its runs without stopping their steps: the next
//! server re-attaches to them.

mod api;
mod app;
pub mod auth;
mod config;
mod error;
mod metrics;
mod scheduler;
mod ui;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kaon_artifacts::ArtifactStore;
use kaon_exec::{Callback, SparkExecutor};
use kaon_runtime::{Runner, RuntimeOptions, Sealer};
use kaon_store::AnyStore;
use tokio::net::TcpListener;

pub use config::ServerConfig;
pub use error::ApiError;

use app::App;

/// Why a server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Listening or serving failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    /// The data directory's secret could not be read or made.
    #[error("cannot read or create kaon's secret {path}: {source}")]
    Secret {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The artifact store could not be opened.
    #[error("cannot open the artifact store `{url}`: {message}")]
    Artifacts {
        /// Its URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The runtime stopped with a fault.
    #[error("the runtime stopped: {0}")]
    Runtime(#[from] kaon_runtime::RuntimeError),
}

/// The OpenAPI description of the API, as JSON text.
pub fn openapi_json() -> String {
    use utoipa::OpenApi;
    api::ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Serves on `listener` until `shutdown` completes, then lets go of every
/// run (their steps go on; the next server re-attaches to them).
pub async fn serve(
    cfg: ServerConfig,
    store: Arc<AnyStore>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    kaon_exec::files::create_private_dir(&cfg.data_dir)?;
    let secret_path = cfg.data_dir.join("secret");
    let secret =
        kaon_spark::callback::load_secret(&secret_path).map_err(|source| ServerError::Secret {
            path: secret_path.display().to_string(),
            source,
        })?;
    let url = match &cfg.artifacts {
        Some(u) => u.clone(),
        None => cfg.data_dir.join("artifacts").display().to_string(),
    };
    let cwd = std::env::current_dir()?;
    let blobs = ArtifactStore::open(&url, &cwd)
        .map(|s| s.skipping(&cfg.data_dir))
        .map_err(|e| ServerError::Artifacts {
            url: url.clone(),
            message: e.to_string(),
        })?;
    let addr = listener.local_addr()?;
    let public = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exec = SparkExecutor::new(
        cfg.logs(),
        tx,
        Duration::from_millis(250),
        cfg.kill_grace,
        cfg.spark.clone(),
        Some(Callback {
            url: public.trim_end_matches('/').to_string(),
            secret,
        }),
        Some(blobs.clone()),
    )
    .with_data_dir(&cfg.data_dir);
    let sink = exec.sink();
    let sealer = Sealer::with_key(secret);
    let owner = kaon_runtime::owner_id();
    let runner = Arc::new(Runner::start(
        store.clone(),
        Arc::new(exec),
        rx,
        Some(blobs),
        RuntimeOptions {
            capacity: cfg.capacity,
            inbox_every: Duration::from_millis(200),
            sealer: sealer.clone(),
            owner: owner.clone(),
        },
    ));
    let app = Arc::new(App::new(
        store,
        runner.clone(),
        cfg,
        sealer,
        secret,
        owner,
        sink,
    ));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(watch(app.clone()));
    tasks.spawn(adopt(app.clone()));
    tasks.spawn(scheduler::run(app.clone(), app.stopping.subscribe()));
    let router = api::router(app.clone()).merge(ui::router());
    let stopping = app.stopping.clone();
    let served = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    // Requests still open 10 s after the shutdown began (a client that
    // never reads) do not hold the server up.
    let mut stopped = app.stopping.subscribe();
    let drained = async move {
        crate::stopped(&mut stopped).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    };
    let served = tokio::select! {
        r = served => r,
        () = drained => Ok(()),
    };
    let _ = app.stopping.send(true);
    tasks.shutdown().await;
    let stopped = runner.shutdown().await;
    served?;
    stopped?;
    Ok(())
}

/// Resolves once the server is stopping (at once if it already is).
pub(crate) async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: dropped here.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// Counts committed changes.
async fn watch(app: Arc<App>) {
    let mut changes = app.runner.subscribe();
    let mut stopping = app.stopping.subscribe();
    loop {
        let c = tokio::select! {
            c = changes.recv() => c,
            () = stopped(&mut stopping) => return,
        };
        match c {
            Ok(c) => app.metrics.observe(&c),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Takes back unfinished runs at start (then the server is ready), and
/// takes over runs whose driver died from then on.
async fn adopt(app: Arc<App>) {
    let mut stopping = app.stopping.subscribe();
    loop {
        match app.adopt_orphans().await {
            Ok(n) if n > 0 => eprintln!("kaon server: carrying on {n} run(s) whose driver stopped"),
            Ok(_) => {}
            Err(e) => eprintln!("kaon server: looking for runs to carry on: {e}"),
        }
        app.ready.store(true, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(app.cfg.orphan_every) => {}
            () = stopped(&mut stopping) => return,
        }
    }
}
