//! `kaon run FILE`

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kaon_engine::{FailurePolicy, RunOptions};
use kaon_store::{Durability, RunFilter, StateStore};
use serde_json::Value;

use super::common::{self, DataArgs, DriveArgs, Start};
use super::remote::{Remote, RunDetail, ServerArgs};
use super::{Check, FileArg, deploy, load_reporting};
use kaon::progress::{self, Mode};
use kaon_runtime::{self as driver, Capacity};

/// Run a workflow on this machine, with live progress.
///
/// Every state change is committed to kaon's database (.kaon/kaon.db)
/// before it takes effect, so a crash loses nothing: run the same command
/// again (or `kaon resume RUN`) and the run carries on where it was, without
/// running again any step that succeeded.
///
/// With a server (--server URL or KAON_SERVER), the server runs it: FILE
/// is then a deployed workflow's name, or a file the server deploys first
/// (it reads the file from its own file system). Progress is followed from
/// the server, a line per change; Ctrl-C once cancels the run, twice
/// stops following it (it goes on on the server).
///
/// Exit status: 0 the run succeeded, 1 it failed, 2 bad input (the
/// workflow or a parameter), 3 it was cancelled, 4 kaon left it running.
///
/// Examples:
///   kaon run examples/recsys/recsys.toml
///   kaon run wf.toml -p cohort_date=2016-06-01 -p regions='["US","CA"]'
///   kaon run wf.toml --progress plain --on-failure stop
///   kaon run wf.toml --no-cache
///   kaon --server http://kaon.internal:8470 run recsys -p cohort_date=2016-06-01
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

pub fn run(args: Args, server: &ServerArgs, color: bool) -> Result<ExitCode> {
    if let Some(remote) = server.connect()? {
        return remote_run(remote, args);
    }
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

/// `kaon run` through a server: deploy the file first when given one,
/// submit, and follow the run to its end.
fn remote_run(remote: Remote, args: Args) -> Result<ExitCode> {
    // What the server decides for itself.
    if args.cpus.is_some() || args.memory.is_some() {
        eprintln!(
            "note: --cpus and --memory are for runs on this machine; the server admits steps against its own"
        );
    }
    if args.platform_retries != 3
        || args.kill_grace != Duration::from_secs(10)
        || !matches!(args.durability, DurabilityArg::Full)
    {
        eprintln!(
            "note: --platform-retries, --kill-grace and --durability are for runs on this machine; the server uses its own"
        );
    }
    // Values as given: the server coerces them to the declared types.
    let mut params = serde_json::Map::new();
    for p in &args.params {
        let Some((k, v)) = p.split_once('=') else {
            anyhow::bail!("-p {p}: expected NAME=VALUE");
        };
        let k = k.trim();
        if params.contains_key(k) {
            anyhow::bail!(
                "-p {k}=...: parameter `{k}` is given twice; give it once (a list is written as JSON: -p {k}='[\"a\", \"b\"]')"
            );
        }
        params.insert(k.to_string(), Value::String(v.to_string()));
    }
    common::block_on(async move {
        let target = &args.file.file;
        let name = if is_file(target) {
            let d = deploy::deploy(&remote, target).await?;
            if d.new {
                eprintln!("deployed {} {} (new)", d.workflow.name, d.workflow.digest);
            }
            d.workflow.name
        } else {
            target.display().to_string()
        };
        let on_failure = match args.on_failure {
            Policy::Continue => "continue",
            Policy::Stop => "stop",
        };
        let body = serde_json::json!({
            "workflow": name,
            "params": params,
            "no_cache": args.no_cache,
            "on_failure": on_failure,
        });
        let submitted: Value = remote.post(&["api", "v1", "runs"], &body).await?;
        let Some(id) = submitted["id"].as_str() else {
            anyhow::bail!("the server did not say which run it started: {submitted}");
        };
        follow(&remote, id, args.progress, None).await
    })?
}

/// Whether `kaon run`'s argument is a file to deploy rather than a
/// deployed workflow's name: a file here, or a path (the server may have
/// files this machine does not).
fn is_file(arg: &std::path::Path) -> bool {
    let text = arg.to_string_lossy();
    arg.is_file() || text.contains('/') || text.ends_with(".toml")
}

/// Follows a run on a server to its end: the progress lines from its
/// event stream, then the summary; returns the exit code. `before`: how
/// the run was before the change that is followed (a retry), whose nodes
/// are not told again; `None` for a new run, whose first line (`run ID:
/// NAME (PATH)`) is printed as a local run prints it. Ctrl-C once cancels
/// the run, twice (or SIGTERM) stops following.
pub async fn follow(
    remote: &Remote,
    id: &str,
    mode: Mode,
    before: Option<&RunDetail>,
) -> Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for signals")?;
    let mut term = signal(SignalKind::terminate()).context("cannot listen for signals")?;
    let mut view = progress::Followed::new(mode);
    let mut announced = before.is_some();
    if let Some(d) = before {
        let records: Vec<_> = d.nodes.iter().filter_map(|n| n.record()).collect();
        view.seen(id, &records);
    }
    let mut interrupts = 0;
    let mut lost = 0u32;
    let path = ["api", "v1", "runs", id, "events"];
    loop {
        let mut events = match remote.events(&path).await {
            Ok(e) => Some(e),
            // A refusal (no such run, a token refused) is final.
            Err(e) if super::remote::status_of(&e).is_some() => return Err(e),
            Err(_) if lost < 30 => None,
            Err(e) => return Err(e),
        };
        while let Some(stream) = events.as_mut() {
            let ev = tokio::select! {
                ev = stream.next() => ev,
                _ = int.recv() => {
                    interrupts += 1;
                    if interrupts > 1 {
                        view.note("interrupted again: leaving; the run goes on on the server");
                        return Ok(left(id));
                    }
                    view.note("cancelling the run (Ctrl-C again to leave at once)");
                    let asked: Result<Value> = remote
                        .post(&["api", "v1", "runs", id, "cancel"], &serde_json::json!({"reason": "interrupted (Ctrl-C)"}))
                        .await;
                    if let Err(e) = asked {
                        view.note(&format!("could not cancel: {e:#}"));
                    }
                    continue;
                }
                _ = term.recv() => {
                    view.note("SIGTERM: leaving the run as it is; it goes on on the server");
                    return Ok(left(id));
                }
            };
            let ev = match ev {
                Ok(Some(ev)) => ev,
                // The stream ended or broke before the run's end.
                Ok(None) | Err(_) => break,
            };
            lost = 0;
            let run = ev.data["run"].as_str().unwrap_or(id);
            let root = ev.data["root"].as_str().unwrap_or(id);
            match ev.name.as_str() {
                "snapshot" => {
                    let d: RunDetail = serde_json::from_value(ev.data)
                        .context("the server's snapshot of the run does not read")?;
                    if !announced {
                        kaon::outln!("run {id}: {} ({})", d.run.workflow, d.run.path);
                        announced = true;
                    }
                    show_nodes(&mut view, id, id, &d);
                }
                "nodes" => {
                    let nodes: Vec<super::remote::NodeView> =
                        serde_json::from_value(ev.data["nodes"].clone()).unwrap_or_default();
                    let records: Vec<_> = nodes.iter().filter_map(|n| n.record()).collect();
                    view.changed(root, run, &records);
                }
                "finished" if run == id => break,
                "released" if run == id => view.note(
                    "the server let go of the run; another server carries it on (only its end is followed from here)",
                ),
                "lagged" => {
                    let d = remote.run(id).await?;
                    show_nodes(&mut view, id, id, &d);
                }
                _ => {}
            }
        }
        // The run's end, or a stream that ended before it: look.
        match remote.run(id).await {
            Ok(d) if d.run.status.is_terminal() => {
                if !announced {
                    kaon::outln!("run {id}: {} ({})", d.run.workflow, d.run.path);
                }
                show_nodes(&mut view, id, id, &d);
                return Ok(ended(&d));
            }
            Ok(_) => {}
            Err(e) if super::remote::status_of(&e).is_some() || lost >= 30 => return Err(e),
            // The server is away for now (restarting?): try again.
            Err(_) => {}
        }
        lost += 1;
        if lost > 30 {
            anyhow::bail!(
                "lost the event stream of run {id} on {}; the run goes on there (`kaon runs show {id}`)",
                remote.shown()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn show_nodes(view: &mut progress::Followed, root: &str, run: &str, d: &RunDetail) {
    let records: Vec<_> = d.nodes.iter().filter_map(|n| n.record()).collect();
    view.changed(root, run, &records);
}

/// A run followed no more: it goes on on the server.
fn left(id: &str) -> ExitCode {
    kaon::outln!(
        "run {id} left running on the server; `kaon runs show {id}` shows how it goes, `kaon cancel {id}` stops it"
    );
    common::exit_code(None)
}

/// The summary of a run that ended, and its exit code.
fn ended(d: &RunDetail) -> ExitCode {
    let mut counts = std::collections::HashMap::new();
    for n in &d.nodes {
        if n.kind.is_block() || n.kind == kaon_store::row::NodeKind::Marker {
            continue;
        }
        *counts.entry(n.state).or_default() += 1;
    }
    let status = driver::rows::engine_status(d.run.status);
    let end = d.run.finished_ms.unwrap_or_else(|| driver::now_ms() as i64);
    let text = progress::report(&progress::Ending {
        id: &d.run.id,
        status,
        elapsed: Duration::from_millis((end - d.run.created_ms).max(0) as u64),
        counts: &counts,
        message: d.run.message.as_deref(),
        outputs: d.run.outputs(),
    });
    kaon::outln!("{text}");
    common::exit_code(Some(status))
}
