//! `kaon logs RUN STEP`

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use kaon_exec::AttemptFiles;
use kaon_store::row::NodeState;
use kaon_store::{NodeRow, StateStore};

use super::common::{self, DataArgs};
use super::remote::{Remote, ServerArgs};

/// Show a step's output: stdout, then stderr, of its last attempt (or the
/// one given). STEP is a step name, or an instance key such as
/// `trainRegModel[reg=US]` for one item of a for-each.
///
/// Examples:
///   kaon logs 20261123-071601-3f2a wrangleData
///   kaon logs 20261123-071601-3f2a 'trainRegModel[pass=1, reg=US]' --follow
///   kaon logs 20261123-071601-3f2a train --attempt 1
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The run.
    run: String,
    /// The step name or instance key.
    step: String,
    /// Keep printing as the step writes, until it ends.
    #[arg(short, long)]
    follow: bool,
    /// Which attempt (default: the latest).
    #[arg(long)]
    attempt: Option<u32>,
    #[command(flatten)]
    data: DataArgs,
}

fn copy_from(path: &Path, offset: &mut u64, out: &mut impl Write) -> std::io::Result<bool> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Ok(false);
    };
    let len = f.metadata()?.len();
    if len <= *offset {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(*offset))?;
    let mut buf = Vec::new();
    f.take(len - *offset).read_to_end(&mut buf)?;
    *offset = len;
    out.write_all(&buf)?;
    Ok(true)
}

fn files_of(data: &DataArgs, run: &str, n: &NodeRow, attempt: u32) -> AttemptFiles {
    AttemptFiles::new(&data.logs(), run, n.id, &n.name, attempt)
}

pub fn run(args: Args, server: &ServerArgs) -> Result<ExitCode> {
    if let Some(remote) = server.connect()? {
        return common::block_on(remote_show(remote, args))?;
    }
    let r = common::block_on(show(args))?;
    match r {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

/// The nodes whose logs to show: those `args.step` names that ran a
/// program; an error that says why there are none. `all`: every node of
/// the run (read only when none matches).
async fn pick<F: Future<Output = Result<Vec<NodeRow>>>>(
    args: &Args,
    run: &str,
    named: Vec<NodeRow>,
    all: impl FnOnce() -> F,
) -> Result<Vec<NodeRow>> {
    let runs_program = |n: &NodeRow| n.kind.is_executed();
    if let Some(n) = named.first()
        && !named.iter().any(runs_program)
    {
        bail!(
            "`{}` in run {run} is a {} step: it runs no program, so it has no logs",
            args.step,
            n.kind
        );
    }
    let (nodes, not_run): (Vec<NodeRow>, Vec<NodeRow>) = named
        .into_iter()
        .filter(runs_program)
        .partition(|n| n.attempt > 0);
    if nodes.is_empty()
        && let Some(n) = not_run.first()
    {
        let state = if not_run.iter().all(|m| m.state == n.state) {
            n.state.as_str()
        } else {
            "not run"
        };
        bail!(
            "`{}` in run {run} has no logs: it never started (it is {state})",
            args.step
        );
    }
    if nodes.is_empty() {
        let all = all().await?;
        let mut names: Vec<&str> = all
            .iter()
            .filter(|n| n.kind.is_executed())
            .map(|n| n.name.as_str())
            .collect();
        names.dedup();
        if names.is_empty() {
            bail!(
                "run {run} has no step `{}`, and no step of it has run yet",
                args.step
            );
        }
        bail!(
            "run {run} has no step `{}` that ran; steps that ran: {}",
            args.step,
            names.join(", ")
        );
    }
    if args.follow && nodes.len() > 1 {
        let keys: Vec<&str> = nodes.iter().take(5).map(|n| n.key.as_str()).collect();
        bail!(
            "`{}` has {} instances; --follow needs one, e.g. '{}'",
            args.step,
            nodes.len(),
            keys.join("', '")
        );
    }
    for n in &nodes {
        if let Some(a) = args.attempt
            && (a > n.attempt || a == 0)
        {
            bail!(
                "{} has had {} attempt(s); there is no attempt {a}",
                n.key,
                n.attempt
            );
        }
    }
    Ok(nodes)
}

async fn show(args: Args) -> Result<ExitCode> {
    {
        let store = args.data.existing_store().await?;
        let row = common::find_run(&store, &args.run).await?;
        let named = store.nodes_named(&row.id, &args.step).await?;
        let (s, id) = (&store, row.id.as_str());
        let nodes = pick(
            &args,
            id,
            named,
            move || async move { Ok(s.nodes(id).await?) },
        )
        .await?;
        let mut out = std::io::stdout().lock();
        let several = nodes.len() > 1;
        for n in &nodes {
            let attempt = args.attempt.unwrap_or(n.attempt.max(1));
            let f = files_of(&args.data, &row.id, n, attempt);
            if several {
                writeln!(out, "==> {} (attempt {attempt}, {}) <==", n.key, n.state)?;
            }
            let (mut o, mut e) = (0u64, 0u64);
            copy_from(&f.stdout, &mut o, &mut out)?;
            if !args.follow {
                let mut err = Vec::new();
                copy_from(&f.stderr, &mut e, &mut err)?;
                if !err.is_empty() {
                    writeln!(out, "--- stderr ---")?;
                    out.write_all(&err)?;
                }
                continue;
            }
            copy_from(&f.stderr, &mut e, &mut out)?;
            loop {
                out.flush()?;
                tokio::time::sleep(Duration::from_millis(200)).await;
                let a = copy_from(&f.stdout, &mut o, &mut out)?;
                let b = copy_from(&f.stderr, &mut e, &mut out)?;
                if a || b {
                    continue;
                }
                let now = store.nodes_named(&row.id, &n.key).await?;
                let Some(cur) = now.into_iter().find(|x| x.id == n.id) else {
                    break;
                };
                let ended = cur.attempt != attempt
                    || cur.state.is_terminal()
                    || cur.state == NodeState::Retrying;
                if ended {
                    copy_from(&f.stdout, &mut o, &mut out)?;
                    copy_from(&f.stderr, &mut e, &mut out)?;
                    break;
                }
            }
        }
        out.flush()?;
        Ok(ExitCode::SUCCESS)
    }
}

/// `kaon logs` through a server: the same text, a page at a time.
async fn remote_show(remote: Remote, args: Args) -> Result<ExitCode> {
    let d = remote.run(&args.run).await?;
    let id = d.run.id.clone();
    let named: Vec<NodeRow> = d
        .nodes
        .iter()
        .filter(|n| n.name == args.step || n.key == args.step)
        .map(|n| n.row())
        .collect();
    let all: Vec<NodeRow> = d.nodes.iter().map(|n| n.row()).collect();
    let nodes = pick(&args, &id, named, move || async move { Ok(all) }).await?;
    let several = nodes.len() > 1;
    let logs = Logs {
        remote: &remote,
        run: &id,
    };
    for n in &nodes {
        let attempt = args.attempt.unwrap_or(n.attempt.max(1));
        if several {
            kaon::outln!("==> {} (attempt {attempt}, {}) <==", n.key, n.state);
        }
        if args.follow {
            // Both streams as they come, until the step's attempt ends.
            let (a, b) = tokio::join!(
                logs.copy(&n.key, attempt, "stdout", true, Sink::Out),
                logs.copy(&n.key, attempt, "stderr", true, Sink::Out),
            );
            a?;
            b?;
            continue;
        }
        logs.copy(&n.key, attempt, "stdout", false, Sink::Out)
            .await?;
        let mut err = String::new();
        logs.copy(&n.key, attempt, "stderr", false, Sink::Buf(&mut err))
            .await?;
        if !err.is_empty() {
            kaon::outln!("--- stderr ---");
            kaon::out!("{err}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A run's logs on a server.
struct Logs<'a> {
    remote: &'a Remote,
    run: &'a str,
}

/// Where text read goes.
enum Sink<'a> {
    /// Standard output, as it comes.
    Out,
    /// Kept, to print after the rest.
    Buf(&'a mut String),
}

/// A page of a log as the API shows it.
#[derive(serde::Deserialize)]
struct Page {
    next: u64,
    size: u64,
    text: String,
    done: bool,
}

impl Logs<'_> {
    /// Copies a log: what there is now, or (`follow`) until the attempt
    /// ended and all of it was read.
    async fn copy(
        &self,
        step: &str,
        attempt: u32,
        stream: &str,
        follow: bool,
        mut sink: Sink<'_>,
    ) -> Result<()> {
        let mut offset = 0u64;
        loop {
            let query = [
                ("step", step.to_string()),
                ("attempt", attempt.to_string()),
                ("stream", stream.to_string()),
                ("offset", offset.to_string()),
                ("follow", follow.to_string()),
            ];
            let page: Page = self
                .remote
                .get(&["api", "v1", "runs", self.run, "logs"], &query)
                .await?;
            match &mut sink {
                Sink::Out => kaon::out!("{}", page.text),
                Sink::Buf(b) => b.push_str(&page.text),
            }
            if kaon::out::closed() {
                return Ok(());
            }
            let read_all = page.next >= page.size;
            offset = page.next;
            if page.done || (!follow && read_all) {
                return Ok(());
            }
        }
    }
}
