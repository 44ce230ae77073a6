//! `kaon validate FILE`

use std::process::ExitCode;

use super::{Check, FileArg, emit, load_reporting};

/// Check a workflow file and report every problem with its file:line:col.
///
/// Exits 0 when the file is valid (warnings are printed but do not fail),
/// 1 when it has errors.
///
/// Example:
///   kaon validate examples/recsys/recsys.toml
///   kaon validate --diagnostics short wf.toml   # one line per problem
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    file: FileArg,
}

pub fn run(args: Args, color: bool) -> anyhow::Result<ExitCode> {
    let (loaded, ok) = load_reporting(
        &args.file.file,
        args.file.diagnostics,
        color,
        Check::Runnable,
    );
    let Some(v) = loaded.result.filter(|_| ok) else {
        return Ok(ExitCode::from(1));
    };
    let c = v.plan.counts();
    emit(&format!(
        "{}: workflow `{}` is valid ({} steps, {} for-each, {} repeat, {} when, {} sub-workflow)\n",
        args.file.file.display(),
        v.workflow.name,
        c.steps,
        c.for_each,
        c.repeats,
        c.whens,
        c.subworkflows
    ))?;
    for s in &v.workflow.schedules {
        let limit = match s.catch_up {
            kaon_model::spec::CatchUp::All => format!(" (at most {})", s.catch_up_limit),
            _ => String::new(),
        };
        emit(&format!(
            "  schedule `{}`: {} ({}), catch_up {}{limit}, concurrency {}\n",
            s.name, s.cron, s.timezone, s.catch_up, s.concurrency
        ))?;
    }
    for t in &v.workflow.triggers {
        emit(&format!(
            "  trigger `{}`: on success of `{}`, concurrency {}\n",
            t.name, t.on_success, t.concurrency
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
