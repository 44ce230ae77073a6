//! `kaon runs list` and `kaon runs show RUN`

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use kaon_engine::run::fmt_duration;
use kaon_engine::{NodeData, StepState};
use kaon_store::row::{NodeKind, RunStatus};
use kaon_store::{NodeRow, RunFilter, RunRow, StateStore};

use super::common::{self, DataArgs};
use super::emit;
use super::remote::{Remote, RunView, ServerArgs};
use kaon_runtime as driver;

/// Runs: list them, show one.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    List(ListArgs),
    Show(ShowArgs),
}

/// List runs, newest first.
///
/// Examples:
///   kaon runs list
///   kaon runs list --status failed --limit 5
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct ListArgs {
    /// Only runs in this state.
    #[arg(long, value_enum)]
    status: Option<StatusFilter>,
    /// Also list the child runs of sub-workflows.
    #[arg(long)]
    all: bool,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    #[command(flatten)]
    data: DataArgs,
}

/// Show a run: its state, and a table of its steps with state, attempts,
/// duration and exit status.
///
/// Steps of big for-each blocks are summed up per step (failures are still
/// listed one by one); `--all` lists every instance.
///
/// Examples:
///   kaon runs show 20261123-071601-3f2a
///   kaon runs show 20261123-071601-3f2a --all
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct ShowArgs {
    /// The run.
    run: String,
    /// List every instance of steps inside for-each blocks.
    #[arg(long)]
    all: bool,
    /// `table` for people, `json` for programs (every node, full records).
    #[arg(long, value_enum, default_value_t = ShowFormat::Table)]
    format: ShowFormat,
    #[command(flatten)]
    data: DataArgs,
}

/// What `runs list --status` takes: a stored status, or `interrupted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum StatusFilter {
    /// Driven by a live kaon process.
    Running,
    /// Running, but no live process drives it (`kaon resume` carries it on).
    Interrupted,
    /// Ended: every step succeeded.
    Succeeded,
    /// Ended: a step failed.
    Failed,
    /// Ended: cancelled.
    Cancelled,
}

impl StatusFilter {
    /// The stored status it selects from: `interrupted` is `running` with
    /// no live driver, told apart after reading.
    fn stored(self) -> RunStatus {
        match self {
            StatusFilter::Running | StatusFilter::Interrupted => RunStatus::Running,
            StatusFilter::Succeeded => RunStatus::Succeeded,
            StatusFilter::Failed => RunStatus::Failed,
            StatusFilter::Cancelled => RunStatus::Cancelled,
        }
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ShowFormat {
    Table,
    Json,
}

fn show_json(r: &RunRow, nodes: &[NodeRow]) -> String {
    let parse =
        |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::Value::Null);
    let nodes: Vec<serde_json::Value> = nodes
        .iter()
        .map(|n| {
            serde_json::json!({
                "id": n.id, "key": n.key, "name": n.name, "kind": n.kind, "state": n.state,
                "attempts": n.attempt, "started_ms": n.started_ms, "finished_ms": n.finished_ms,
                "data": parse(&n.data),
            })
        })
        .collect();
    let v = serde_json::json!({
        "id": r.id, "workflow": r.workflow, "path": r.path, "status": r.status,
        "params": parse(&r.params), "data": parse(&r.data), "created_ms": r.created_ms,
        "finished_ms": r.finished_ms, "parent": r.parent.as_ref().map(|p| &p.0),
        "nodes": nodes,
    });
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

pub fn run(args: Args, server: &ServerArgs) -> Result<ExitCode> {
    if let Some(remote) = server.connect()? {
        return common::block_on(async move {
            match args.verb {
                Verb::List(a) => remote_list(&remote, a).await,
                Verb::Show(a) => remote_show(&remote, a).await,
            }
        })?;
    }
    match args.verb {
        Verb::List(a) => list(a),
        Verb::Show(a) => show(a),
    }
}

fn when(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

fn run_duration(r: &RunRow) -> String {
    let end = r.finished_ms.unwrap_or_else(|| driver::now_ms() as i64);
    fmt_duration((end - r.created_ms).max(0) as u64)
}

/// The status shown of a run a server keeps: the stored one, or
/// `interrupted` for a run stored as running that no server holds.
fn remote_status(r: &RunRow) -> &'static str {
    if r.status == RunStatus::Running && r.owner.is_none() {
        "interrupted"
    } else {
        r.status.as_str()
    }
}

/// The status shown: the stored one, or `interrupted` for a run stored as
/// running that no live process drives.
fn status_of(r: &RunRow) -> &'static str {
    let live = r
        .owner
        .as_deref()
        .is_some_and(|o| driver::owner_alive(o, r.heartbeat_ms));
    if r.status == RunStatus::Running && !live {
        "interrupted"
    } else {
        r.status.as_str()
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut w = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn list(a: ListArgs) -> Result<ExitCode> {
    common::block_on(async move {
        let store = a.data.existing_store().await?;
        // `interrupted` is `running` with no live driver: filter here.
        let interrupted = a.status == Some(StatusFilter::Interrupted);
        let runs: Vec<RunRow> = store
            .list_runs(&RunFilter {
                status: a.status.map(StatusFilter::stored),
                children: a.all,
                limit: Some(a.limit),
                ..Default::default()
            })
            .await?
            .into_iter()
            .filter(|r| !interrupted || status_of(r) == "interrupted")
            .collect();
        print_list(&runs, status_of)
    })?
}

/// `kaon runs list` through a server.
async fn remote_list(remote: &Remote, a: ListArgs) -> Result<ExitCode> {
    let mut query = vec![("limit", a.limit.to_string())];
    if let Some(s) = a.status {
        query.push(("status", s.stored().as_str().to_string()));
    }
    if a.all {
        query.push(("children", "true".to_string()));
    }
    let views: Vec<RunView> = remote.get(&["api", "v1", "runs"], &query).await?;
    let interrupted = a.status == Some(StatusFilter::Interrupted);
    let runs: Vec<RunRow> = views
        .iter()
        .map(RunView::row)
        .filter(|r| !interrupted || remote_status(r) == "interrupted")
        .collect();
    print_list(&runs, remote_status)
}

fn print_list(runs: &[RunRow], status_of: fn(&RunRow) -> &'static str) -> Result<ExitCode> {
    if runs.is_empty() {
        emit("no runs\n")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec![
        "RUN".into(),
        "WORKFLOW".into(),
        "STATUS".into(),
        "STARTED".into(),
        "DURATION".into(),
    ]];
    for r in runs {
        rows.push(vec![
            r.id.clone(),
            r.workflow.clone(),
            status_of(r).to_string(),
            when(r.created_ms),
            run_duration(r),
        ]);
    }
    emit(&table(&rows))?;
    Ok(ExitCode::SUCCESS)
}

fn node_line(n: &NodeRow, d: &NodeData) -> Vec<String> {
    let dur = match (d.info.started, d.info.finished) {
        (Some(s), Some(f)) => fmt_duration(f.saturating_sub(s)),
        (Some(s), None) if !d.state.is_terminal() => {
            format!("{}+", fmt_duration(driver::now_ms().saturating_sub(s)))
        }
        _ => String::new(),
    };
    let exit = d.info.exit_code.map(|c| c.to_string()).unwrap_or_default();
    let note = match &d.state {
        StepState::Failed { failure } => failure.message.clone(),
        StepState::Retrying { last, .. } => format!("retrying after: {}", last.message),
        StepState::Memoized { from } => format!("result of {from}"),
        StepState::Skipped { reason } => match reason {
            kaon_engine::SkipReason::UpstreamFailed { upstream } => format!("{upstream} failed"),
            kaon_engine::SkipReason::ConditionFalse => "condition false".into(),
            kaon_engine::SkipReason::RunStopped => "run stopped after a failure".into(),
        },
        StepState::Running {
            handle: Some(serde_json::Value::String(child)),
            ..
        } => format!("child run {child}"),
        _ => {
            let mut parts = Vec::new();
            if let Some(p) = &d.info.progress {
                if let Some(x) = p.percent {
                    parts.push(format!("{x:.0}%"));
                }
                if let Some(m) = &p.message {
                    parts.push(m.clone());
                }
            }
            if let Some(i) = d.info.items {
                if n.kind == NodeKind::ForEach {
                    parts.push(format!("{i} items"));
                } else if n.kind == NodeKind::Repeat {
                    parts.push(format!("{i} passes"));
                }
            }
            if let Some(x) = &d.info.note {
                parts.push(x.clone());
            }
            parts.join(" ")
        }
    };
    vec![
        n.key.clone(),
        n.kind.to_string(),
        d.state.name().to_string(),
        d.info.attempts.to_string(),
        dur,
        exit,
        note,
    ]
}

fn show(a: ShowArgs) -> Result<ExitCode> {
    common::block_on(async move {
        let store = a.data.existing_store().await?;
        let r = common::find_run(&store, &a.run).await?;
        let nodes = store.nodes(&r.id).await?;
        if matches!(a.format, ShowFormat::Json) {
            emit(&show_json(&r, &nodes))?;
            return Ok(ExitCode::SUCCESS);
        }
        let children = store.children(&r.id).await?;
        emit(&show_table(&r, &nodes, &children, a.all, status_of))?;
        Ok(ExitCode::SUCCESS)
    })?
}

/// `kaon runs show` through a server.
async fn remote_show(remote: &Remote, a: ShowArgs) -> Result<ExitCode> {
    let d = remote.run(&a.run).await?;
    let r = d.run.row();
    let nodes: Vec<NodeRow> = d.nodes.iter().map(|n| n.row()).collect();
    if matches!(a.format, ShowFormat::Json) {
        emit(&show_json(&r, &nodes))?;
        return Ok(ExitCode::SUCCESS);
    }
    let children: Vec<RunRow> = d.children.iter().map(RunView::row).collect();
    emit(&show_table(&r, &nodes, &children, a.all, remote_status))?;
    Ok(ExitCode::SUCCESS)
}

/// A run, its children and a table of its steps, for people.
fn show_table(
    r: &RunRow,
    nodes: &[NodeRow],
    children: &[RunRow],
    all: bool,
    status_of: fn(&RunRow) -> &'static str,
) -> String {
    let mut out = format!(
        "run       {}\nworkflow  {} ({})\nstatus    {}\nstarted   {}\nduration  {}\nparams    {}\n",
        r.id,
        r.workflow,
        r.path,
        status_of(r),
        when(r.created_ms),
        run_duration(r),
        r.params
    );
    if let Some((p, n)) = &r.parent {
        out.push_str(&format!("parent    {p} (node {n})\n"));
    }
    let data: kaon_engine::RunData = serde_json::from_str(&r.data).unwrap_or_default();
    if let Some(m) = &data.message {
        out.push_str(&format!("message   {m}\n"));
    }
    if let Some(c) = &data.cancel {
        out.push_str(&format!("cancel    {c}\n"));
    }
    if let Some(o) = &data.outputs {
        for (k, v) in o {
            out.push_str(&format!(
                "output    {k} = {}\n",
                kaon_engine::eval::to_text(v)
            ));
        }
    }
    for c in children {
        out.push_str(&format!(
            "child     {} {} ({})\n",
            c.id,
            c.workflow,
            status_of(c)
        ));
    }
    out.push('\n');
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for n in nodes {
        if n.key != n.name {
            *by_name.entry(n.name.as_str()).or_default() += 1;
        }
    }
    let mut rows = vec![vec![
        "STEP".into(),
        "KIND".into(),
        "STATE".into(),
        "ATTEMPTS".into(),
        "DURATION".into(),
        "EXIT".into(),
        "NOTE".into(),
    ]];
    let mut summed: BTreeMap<&str, BTreeMap<String, u32>> = BTreeMap::new();
    for n in nodes {
        if n.kind == NodeKind::Marker {
            continue;
        }
        let d: NodeData = match serde_json::from_str(&n.data) {
            Ok(d) => d,
            Err(e) => {
                rows.push(vec![
                    n.key.clone(),
                    n.kind.to_string(),
                    n.state.to_string(),
                    n.attempt.to_string(),
                    String::new(),
                    String::new(),
                    format!("damaged record: {e}"),
                ]);
                continue;
            }
        };
        let many = by_name.get(n.name.as_str()).copied().unwrap_or(0) > 20;
        if many && !all {
            *summed
                .entry(n.name.as_str())
                .or_default()
                .entry(d.state.name().to_string())
                .or_default() += 1;
            if !matches!(d.state, StepState::Failed { .. }) {
                continue;
            }
        }
        rows.push(node_line(n, &d));
    }
    for (name, states) in summed {
        let total: u32 = states.values().sum();
        let parts: Vec<String> = states.iter().map(|(s, c)| format!("{c} {s}")).collect();
        rows.push(vec![
            format!("{name}[…] ×{total}"),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            parts.join(", "),
        ]);
    }
    out.push_str(&table(&rows));
    if nodes.is_empty() {
        out.push_str("(no step has started yet)\n");
    }
    out
}
