//! `kaon run FILE`

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use kaon_engine::{FailurePolicy, RunOptions};
use kaon_store::{Durability, RunFilter, StateStore};
use serde_json::Value;

use super::common::{self, DataArgs, DriveArgs, Start};
use super::{Check, FileArg, load_reporting};
use kaon::progress::Mode;
use kaon_runtime::{self as driver, Capacity};

/// Run a workflow on this machine, with live progress.
///
/// Every state change is committed to kaon's database (.kaon/kaon.db)
/// before it takes effect, so a crash loses nothing: run the same command
/// again (or `kaon resume RUN`) and the run carries on where it was, without
/// running again any step that succeeded.
///
/// Exit status: 0 the run succeeded, 1 it failed, 2 bad input (the
/// workflow or a parameter), 3 it was cancelled, 4 kaon left it running.
///
/// Examples:
///   kaon run examples/recsys/recsys.toml
///   kaon run wf.toml -p cohort_date=2016-06-01 -p regions='["US","CA"]'
///   kaon run wf.toml --progress plain --on-failure stop
///   kaon run wf.toml --no-cache
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    file: FileArg,
    /// A parameter value, `name=value` (lists and json as JSON text).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// How progress is shown.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    progress: Mode,
    /// After a step fails for good: `continue` runs everything that does
    /// not depend on it; `stop` launches nothing new.
    #[arg(long, value_enum, default_value_t = Policy::Continue)]
    on_failure: Policy,
    /// CPU cores steps may use together (default: this machine's).
    #[arg(long)]
    cpus: Option<f64>,
    /// Memory steps may use together, e.g. `16g` (default: this machine's).
    #[arg(long, value_parser = common::parse_size)]
    memory: Option<u64>,
    /// Retries per step for failures of the platform (a lost process).
    #[arg(long, default_value_t = 3)]
    platform_retries: u32,
    /// Time between SIGTERM and SIGKILL when a step is stopped.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    kill_grace: Duration,
    /// Run every step even when an earlier run left its result (results
    /// are still recorded for later runs). A step opts out for good with
    /// `cache = false`; `cache_version` forces a miss.
    #[arg(long)]
    no_cache: bool,
    /// Start a new run even if an interrupted run of the same workflow and
    /// parameters could be carried on.
    #[arg(long)]
    new: bool,
    /// `full`: every commit reaches the disk (survives power loss);
    /// `process`: survives a crash of kaon, faster.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Full)]
    durability: DurabilityArg,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Policy {
    Continue,
    Stop,
}

/// How hard commits work to survive a crash.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DurabilityArg {
    /// fsync every commit.
    Full,
    /// Survive a crash of kaon, not of the machine.
    Process,
}

impl From<DurabilityArg> for Durability {
    fn from(d: DurabilityArg) -> Self {
        match d {
            DurabilityArg::Full => Durability::Full,
            DurabilityArg::Process => Durability::Process,
        }
    }
}

pub fn run(args: Args, color: bool) -> Result<ExitCode> {
    let (loaded, ok) = load_reporting(
        &args.file.file,
        args.file.diagnostics,
        color,
        Check::Runnable,
    );
    let Some(v) = loaded.result.filter(|_| ok) else {
        return Ok(ExitCode::from(2));
    };
    let given = common::given_params(&args.params, &v, false)?;
    let params = match kaon_engine::eval::bind_params(&v.workflow.params, &given) {
        Ok(p) => p,
        Err(errs) => {
            for e in errs {
                eprintln!("error: {e}");
            }
            // Parameters with a source say where their value is looked for.
            for (name, p) in &v.workflow.params {
                if p.source.is_some() && p.default.is_none() && !given.contains_key(name) {
                    eprintln!(
                        "help: `{name}` is read at run time: {}",
                        kaon_runtime::secrets::how_to_give(name, Some(p))
                    );
                }
            }
            return Ok(ExitCode::from(2));
        }
    };
    let options = RunOptions {
        on_failure: match args.on_failure {
            Policy::Continue => FailurePolicy::Continue,
            Policy::Stop => FailurePolicy::Stop,
        },
        platform_retries: args.platform_retries,
        no_cache: args.no_cache,
        ..RunOptions::default()
    };
    let capacity = Capacity::detect().with(args.cpus, args.memory)?;
    let v = Arc::new(v);
    common::block_on(async move {
        let store = Arc::new(args.data.store(args.durability.into()).await?);
        let drive = DriveArgs {
            mode: args.progress,
            capacity,
            kill_grace: args.kill_grace,
            cancel: None,
        };
        // An interrupted run of the same file and parameters is carried on.
        if !args.new {
            let path = std::path::absolute(&v.workflow.path)?.display().to_string();
            // Stored parameters have their secrets sealed: compare sealed.
            let sealed = args
                .data
                .sealer()?
                .seal_params(&v.workflow.params, &params, &[]);
            let params_text = Value::Object(sealed).to_string();
            let unfinished = store
                .list_runs(&RunFilter {
                    status: Some(kaon_store::row::RunStatus::Running),
                    ..Default::default()
                })
                .await?;
            for row in unfinished {
                let live = row
                    .owner
                    .as_deref()
                    .is_some_and(|o| driver::owner_alive(o, row.heartbeat_ms));
                if row.path != path || row.params != params_text || live {
                    continue;
                }
                if row.digest != driver::workflow_digest(&v) {
                    eprintln!(
                        "note: run {} of this workflow was interrupted, but the file changed since; starting a new run",
                        row.id
                    );
                    break;
                }
                kaon::outln!("run {}: carrying on the interrupted run", row.id);
                return common::drive(
                    &args.data,
                    store.clone(),
                    v.clone(),
                    Start::Resume(&row, given.clone()),
                    drive,
                )
                .await;
            }
        }
        common::drive(&args.data, store, v, Start::New { params, options }, drive).await
    })?
}
