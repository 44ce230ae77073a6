//! `kaon server`: the API, schedules and many runs, for a team.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kaon_runtime::Capacity;
use kaon_server::ServerConfig;

use super::common::{self, DataArgs};
use super::db::DbArgs;

/// Serve the HTTP API: deploy workflows, start, watch and cancel runs,
/// fire schedules and triggers, for a team.
///
/// It drives every run submitted to it, takes back unfinished runs when
/// it starts, and on SIGTERM or Ctrl-C stops answering and lets go of its
/// runs without stopping their steps (the next start re-attaches to
/// them). Every API call needs a token: make the first with
/// `kaon tokens create admin --role admin --db ...` on this machine.
///
/// It listens on 127.0.0.1 unless told otherwise; put TLS in front of it
/// with a reverse proxy (docs/operations.md).
///
/// Examples:
///   kaon server
///   kaon server --listen 0.0.0.0:8470 --db postgres://kaon@db/kaon --artifacts s3://ml/kaon
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the address
    /// is printed).
    #[arg(long, env = "KAON_LISTEN", default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// The URL Spark drivers on other machines post their progress to
    /// (default: the listening address).
    #[arg(long, env = "KAON_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// CPU cores steps may use together (default: this machine's).
    #[arg(long, env = "KAON_CPUS")]
    cpus: Option<f64>,
    /// Memory steps may use together, e.g. `16g` (default: this machine's).
    #[arg(long, env = "KAON_MEMORY", value_parser = common::parse_size)]
    memory: Option<u64>,
    /// Time between SIGTERM and SIGKILL when a step is stopped.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    kill_grace: Duration,
    /// How often schedules are looked at.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "500ms", hide = true)]
    schedule_every: Duration,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    data: DataArgs,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(args))
}

async fn serve(args: Args) -> Result<ExitCode> {
    let store = Arc::new(args.db.open(&args.data).await?);
    let config = kaon::config::Config::load()?;
    let mut cfg = ServerConfig::new(args.data.data_dir.clone());
    cfg.artifacts = args.data.artifacts.clone();
    cfg.capacity = Capacity::detect().with(args.cpus, args.memory)?;
    cfg.kill_grace = args.kill_grace;
    cfg.spark = config.spark.clone();
    cfg.public_url = args.public_url.clone();
    cfg.tick_every = args.schedule_every;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    kaon::outln!(
        "kaon server listening on http://{addr} (database: {}, data: {})",
        args.db.describe(&args.data),
        args.data.data_dir.display()
    );
    kaon_server::serve(cfg, store, listener, stop_signal("kaon server")).await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves at SIGTERM or Ctrl-C (never, if they cannot be caught), after
/// saying what stopping means.
pub(super) async fn stop_signal(who: &'static str) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("{who}: stopping; running steps go on and are picked up at the next start");
}
