//! `kaon cancel RUN`

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kaon_store::{MessageBody, StateStore};

use super::common::{self, DataArgs, DriveArgs, Start};
use super::remote::{Remote, ServerArgs};
use kaon::progress::Mode;
use kaon_runtime::{self as driver, Capacity};

/// Cancel a run: nothing new starts, running steps get SIGTERM (then
/// SIGKILL after the grace period), and the run ends `cancelled` once every
/// step has stopped.
///
/// When a `kaon run` drives the run, it is asked through the database and
/// this command waits for the run to end. When nothing drives it (kaon
/// crashed), this command takes it over, stops its steps and ends it.
/// With a server (--server URL or KAON_SERVER), the server is asked.
///
/// Examples:
///   kaon cancel 20261123-071601-3f2a
///   kaon cancel 20261123-071601-3f2a --no-wait
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The run.
    run: String,
    /// Why (kept with the run).
    #[arg(long, default_value = "cancelled by the user")]
    reason: String,
    /// Return once the request is delivered instead of waiting for the end.
    #[arg(long)]
    no_wait: bool,
    /// Longest wait for the run to end.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    timeout: Duration,
    /// Time between SIGTERM and SIGKILL (when this command stops the steps).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    kill_grace: Duration,
    #[command(flatten)]
    data: DataArgs,
}

pub fn run(args: Args, server: &ServerArgs, color: bool) -> Result<ExitCode> {
    if let Some(remote) = server.connect()? {
        return common::block_on(remote_cancel(remote, args))?;
    }
    common::block_on(async move {
        let store = Arc::new(args.data.existing_store().await?);
        let row = common::find_run(&store, &args.run).await?;
        if row.status.is_terminal() {
            kaon::outln!("run {} already ended: {}", row.id, row.status);
            return Ok(ExitCode::SUCCESS);
        }
        let live = row
            .owner
            .as_deref()
            .is_some_and(|o| driver::owner_alive(o, row.heartbeat_ms));
        if !live {
            if row.parent.is_some() {
                bail!(
                    "run {} is a child run whose parent is not running; cancel the parent",
                    row.id
                );
            }
            let v = common::load_for_resume(&row, color)?;
            let drive = DriveArgs {
                mode: Mode::None,
                capacity: Capacity::detect(),
                kill_grace: args.kill_grace,
                cancel: Some(args.reason.clone()),
            };
            // Cancelling launches nothing: no parameters are needed.
            let none = serde_json::Map::new();
            common::drive(&args.data, store, v, Start::Resume(&row, none), drive).await?;
            return Ok(ExitCode::SUCCESS);
        }
        store
            .post(
                &row.id,
                &MessageBody::Cancel {
                    reason: args.reason.clone(),
                },
                driver::now_ms() as i64,
            )
            .await?;
        kaon::outln!("asked run {} to cancel", row.id);
        if args.no_wait {
            return Ok(ExitCode::SUCCESS);
        }
        let start = Instant::now();
        while start.elapsed() < args.timeout {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let r = common::find_run(&store, &row.id).await?;
            if r.status.is_terminal() {
                kaon::outln!("run {} ended: {}", r.id, r.status);
                return Ok(ExitCode::SUCCESS);
            }
        }
        bail!(
            "run {} has not ended after {}; it is still stopping its steps",
            row.id,
            humantime::format_duration(args.timeout)
        )
    })?
}

/// `kaon cancel` through a server: ask it, and wait for the run's end.
async fn remote_cancel(remote: Remote, args: Args) -> Result<ExitCode> {
    let d = remote.run(&args.run).await?;
    if d.run.status.is_terminal() {
        kaon::outln!("run {} already ended: {}", d.run.id, d.run.status);
        return Ok(ExitCode::SUCCESS);
    }
    let id = d.run.id;
    let asked: Result<serde_json::Value> = remote
        .post(
            &["api", "v1", "runs", &id, "cancel"],
            &serde_json::json!({ "reason": args.reason }),
        )
        .await;
    match asked {
        Ok(_) => {}
        // It ended in between.
        Err(e) if super::remote::status_of(&e) == Some(reqwest::StatusCode::CONFLICT) => {
            let d = remote.run(&id).await?;
            kaon::outln!("run {id} already ended: {}", d.run.status);
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e),
    }
    kaon::outln!("asked run {id} to cancel");
    if args.no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    let start = Instant::now();
    while start.elapsed() < args.timeout {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let d = remote.run(&id).await?;
        if d.run.status.is_terminal() {
            kaon::outln!("run {id} ended: {}", d.run.status);
            return Ok(ExitCode::SUCCESS);
        }
    }
    bail!(
        "run {id} has not ended after {}; it is still stopping its steps",
        humantime::format_duration(args.timeout)
    )
}
