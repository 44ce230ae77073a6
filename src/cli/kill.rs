//! `kaon kill RUN STEP`

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kaon_store::{MessageBody, StateStore};

use super::common::{self, DataArgs};
use kaon_runtime as driver;

/// Kill a running step: its process group gets SIGTERM then SIGKILL, a
/// Spark driver in cluster mode is killed through the master's REST API.
/// The step ends `cancelled` once its end is confirmed; it is not retried.
///
/// STEP is a step name (every running instance of it) or an instance key
/// such as `train[reg=US]`.
///
/// Examples:
///   kaon kill 20261123-071601-3f2a trainGlobalModel
///   kaon kill 20261123-071601-3f2a 'trainRegModel[reg=US]' --no-wait
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The run.
    run: String,
    /// The step name or instance key.
    step: String,
    /// Why.
    #[arg(long, default_value = "killed by the user")]
    reason: String,
    /// Return once the request is delivered.
    #[arg(long)]
    no_wait: bool,
    /// Longest wait for the step to end.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2m")]
    timeout: Duration,
    #[command(flatten)]
    data: DataArgs,
}

pub fn run(args: Args) -> Result<ExitCode> {
    common::block_on(async move {
        let store = Arc::new(args.data.existing_store().await?);
        let row = common::find_run(&store, &args.run).await?;
        if row.status.is_terminal() {
            bail!("run {} has ended; nothing runs in it", row.id);
        }
        let live = row
            .owner
            .as_deref()
            .is_some_and(|o| driver::owner_alive(o, row.heartbeat_ms));
        if !live {
            bail!(
                "no kaon process drives run {}; `kaon resume {}` takes it over (or `kaon cancel {}` stops it all)",
                row.id,
                row.id,
                row.id
            );
        }
        let running = |nodes: &[kaon_store::NodeRow]| -> Vec<String> {
            nodes
                .iter()
                .filter(|n| n.name == args.step || n.key == args.step)
                .filter(|n| n.state.is_active())
                .map(|n| n.key.clone())
                .collect()
        };
        let nodes = store.nodes(&row.id).await?;
        let targets = running(&nodes);
        if targets.is_empty() {
            let known = nodes
                .iter()
                .any(|n| n.name == args.step || n.key == args.step);
            if known {
                bail!("step `{}` of run {} is not running", args.step, row.id);
            }
            bail!("run {} has no step `{}`", row.id, args.step);
        }
        store
            .post(
                &row.id,
                &MessageBody::Kill {
                    step: args.step.clone(),
                    reason: args.reason.clone(),
                },
                driver::now_ms() as i64,
            )
            .await?;
        kaon::outln!("asked run {} to kill {}", row.id, targets.join(", "));
        if args.no_wait {
            return Ok(ExitCode::SUCCESS);
        }
        let start = Instant::now();
        while start.elapsed() < args.timeout {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let nodes = store.nodes(&row.id).await?;
            let still: Vec<&kaon_store::NodeRow> = nodes
                .iter()
                .filter(|n| targets.contains(&n.key))
                .filter(|n| n.state.is_active())
                .collect();
            if still.is_empty() {
                for n in nodes.iter().filter(|n| targets.contains(&n.key)) {
                    kaon::outln!("{}: {}", n.key, n.state);
                }
                return Ok(ExitCode::SUCCESS);
            }
        }
        bail!(
            "{} has not ended after {}",
            targets.join(", "),
            humantime::format_duration(args.timeout)
        )
    })?
}
