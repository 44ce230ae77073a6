//! `kaon resume RUN`

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::common::{self, DataArgs, DriveArgs, Start};
use super::remote::{Remote, ServerArgs};
use kaon::progress::Mode;
use kaon_runtime::Capacity;

/// Carry on a run that kaon stopped driving (it crashed, was killed, or
/// left on SIGTERM).
///
/// Steps that succeeded are not run again. Steps whose processes are still
/// alive are watched again; steps whose processes ended while kaon was away
/// are judged by the exit status they left; steps lost without a trace are
/// retried from the platform budget.
///
/// A server (--server URL or KAON_SERVER) carries on its runs itself:
/// this then says whether one drives the run.
///
/// Example:
///   kaon resume 20261123-071601-3f2a
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The run.
    run: String,
    /// How progress is shown.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    progress: Mode,
    /// CPU cores steps may use together (default: this machine's).
    #[arg(long)]
    cpus: Option<f64>,
    /// Memory steps may use together, e.g. `16g` (default: this machine's).
    #[arg(long, value_parser = common::parse_size)]
    memory: Option<u64>,
    /// A secret parameter's value, `name=value`, when the run was given
    /// it with `-p` (kaon does not store secrets). Parameters with
    /// `from_env` or `from_file` are read again from there.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Time between SIGTERM and SIGKILL when a step is stopped.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    kill_grace: Duration,
    #[command(flatten)]
    data: DataArgs,
}

pub fn run(args: Args, server: &ServerArgs, color: bool) -> Result<ExitCode> {
    if let Some(remote) = server.connect()? {
        return common::block_on(remote_resume(remote, args))?;
    }
    common::block_on(async move {
        let store = Arc::new(args.data.existing_store().await?);
        let row = common::find_run(&store, &args.run).await?;
        if row.status.is_terminal() {
            kaon::outln!("run {} already ended: {}", row.id, row.status);
            let status = kaon_runtime::rows::engine_status(row.status);
            return Ok(common::exit_code(Some(status)));
        }
        if row.parent.is_some() {
            anyhow::bail!(
                "run {} is a sub-workflow's child run; resume its parent run instead",
                row.id
            );
        }
        let v = common::load_for_resume(&row, color)?;
        let capacity = Capacity::detect().with(args.cpus, args.memory)?;
        let drive = DriveArgs {
            mode: args.progress,
            capacity,
            kill_grace: args.kill_grace,
            cancel: None,
        };
        let given = common::given_params(&args.params, &v, true)?;
        common::drive(&args.data, store, v, Start::Resume(&row, given), drive).await
    })?
}

/// `kaon resume` through a server: servers carry on runs themselves (a
/// server that starts takes back the runs of one that stopped), so this
/// says who drives the run.
async fn remote_resume(remote: Remote, args: Args) -> Result<ExitCode> {
    let d = remote.run(&args.run).await?;
    let r = d.run;
    if r.status.is_terminal() {
        kaon::outln!("run {} already ended: {}", r.id, r.status);
        let status = kaon_runtime::rows::engine_status(r.status);
        return Ok(common::exit_code(Some(status)));
    }
    if let Some(p) = &r.parent {
        anyhow::bail!(
            "run {} is a sub-workflow's child run (of run {p}); its parent run is the one carried on",
            r.id
        );
    }
    match &r.owner {
        Some(o) => {
            kaon::outln!(
                "run {} is carried on by the server ({o}); nothing to resume (`kaon runs show {}` shows how it goes)",
                r.id,
                r.id
            );
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!(
            "run {} is running but no server drives it now; a server takes it back when it starts (restart `kaon server`)",
            r.id
        ),
    }
}
