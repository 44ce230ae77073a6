//! `kaon retry RUN STEP`

use std::process::ExitCode;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::common::{self, DataArgs, DriveArgs, Start};
use super::remote::ServerArgs;
use kaon::progress::Mode;
use kaon_runtime::Capacity;

/// Retry a failed step of a run.
///
/// The step gets a fresh retry budget, the steps that did not run because
/// of it run after it, and steps that succeeded are not run again. A
/// failed run goes back to running.
///
/// STEP is a step name (every failed instance of it), an instance key such
/// as `train[reg=US]`, or a block's key (the failed steps inside it). The
/// run is then followed to its end as `kaon run` follows it (Ctrl-C once
/// cancels it, twice stops following), unless --no-wait.
///
/// With --server URL (or KAON_SERVER) the server retries it; otherwise
/// this process drives the run of this machine's data directory (as
/// `kaon resume` does).
///
/// Exit status: as `kaon run`'s for the run's new end (0 succeeded, 1
/// failed, 3 cancelled, 4 left running); 0 with --no-wait once asked.
///
/// Examples:
///   kaon retry 20261123-071601-3f2a trainGlobalModel
///   kaon retry 20261123-071601-3f2a 'trainRegModel[reg=US]' --no-wait
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The run.
    run: String,
    /// The failed step's name, an instance key, or a block's key.
    step: String,
    /// Return once the retry is committed instead of following the run.
    #[arg(long)]
    no_wait: bool,
    /// How progress is shown.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    progress: Mode,
    /// A secret parameter's value, `name=value`, when the run was given
    /// it with `-p` (kaon does not store secrets). Without a server only.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Time between SIGTERM and SIGKILL when a step is stopped (without a
    /// server).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    kill_grace: std::time::Duration,
    #[command(flatten)]
    data: DataArgs,
}

/// Retries on this machine: takes the run (its driver must be gone) and
/// drives it to its new end.
fn local(args: Args, color: bool) -> Result<ExitCode> {
    if args.no_wait {
        bail!("--no-wait needs a server: without one, this process drives the retried run");
    }
    common::block_on(async move {
        let store = std::sync::Arc::new(args.data.existing_store().await?);
        let row = common::find_run(&store, &args.run).await?;
        if row.parent.is_some() {
            bail!(
                "run {} is a sub-workflow's child run; retry the failed step of its root run",
                row.id
            );
        }
        let v = common::load_for_resume(&row, color)?;
        let drive = DriveArgs {
            mode: args.progress,
            capacity: Capacity::detect(),
            kill_grace: args.kill_grace,
            cancel: None,
        };
        let given = common::given_params(&args.params, &v, true)?;
        common::drive(
            &args.data,
            store,
            v,
            Start::Retry(&row, given, &args.step),
            drive,
        )
        .await
    })?
}

pub fn run(args: Args, server: &ServerArgs, color: bool) -> Result<ExitCode> {
    let Some(remote) = server.connect()? else {
        return local(args, color);
    };
    common::block_on(async move {
        // The run as it was: what the retry changes is what is shown.
        let before = remote.run(&args.run).await?;
        let _: Value = remote
            .post(
                &["api", "v1", "runs", &args.run, "retry"],
                &json!({ "step": args.step }),
            )
            .await?;
        kaon::outln!("retrying `{}` in run {}", args.step, before.run.id);
        if args.no_wait {
            return Ok(ExitCode::SUCCESS);
        }
        super::run::follow(&remote, &before.run.id, args.progress, Some(&before)).await
    })?
}
