//! Command-line verbs, one file each. Library crates never see clap.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kaon_model::Loaded;

mod artifacts;
mod cache;
mod cancel;
mod common;
mod db;
mod deploy;
mod fmt;
mod inspect;
mod kill;
mod logs;
mod plan;
mod remote;
mod resume;
mod retry;
mod run;
mod runs;
mod server;
mod signal;
mod spark;
mod tokens;
mod ui;
mod validate;

/// kaon: a workflow orchestrator for machine-learning pipelines on Spark.
#[derive(Debug, Parser)]
#[command(name = "kaon", version, about, long_about = None)]
pub struct Cli {
    /// When to colour diagnostics.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
    #[command(flatten)]
    server: remote::ServerArgs,
    #[command(subcommand)]
    command: Command,
}

/// When to colour output.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(run::Args),
    Deploy(deploy::Args),
    Validate(validate::Args),
    Plan(plan::Args),
    Fmt(fmt::Args),
    Runs(runs::Args),
    Logs(logs::Args),
    Cancel(cancel::Args),
    Kill(kill::Args),
    Signal(signal::Args),
    Retry(retry::Args),
    Resume(resume::Args),
    #[command(alias = "artifact")]
    Artifacts(artifacts::Args),
    Cache(cache::Args),
    Spark(spark::Args),
    Server(server::Args),
    Ui(ui::Args),
    Db(db::Args),
    Tokens(tokens::Args),
}

/// Runs one verb; the exit code says whether it succeeded.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    match cli.command {
        Command::Validate(a) => validate::run(a, color),
        Command::Plan(a) => plan::run(a, color),
        Command::Fmt(a) => fmt::run(a, color),
        Command::Run(a) => run::run(a, &cli.server, color),
        Command::Deploy(a) => deploy::run(a, &cli.server),
        Command::Runs(a) => runs::run(a, &cli.server),
        Command::Logs(a) => logs::run(a, &cli.server),
        Command::Cancel(a) => cancel::run(a, &cli.server, color),
        Command::Signal(a) => signal::run(a, &cli.server),
        Command::Retry(a) => retry::run(a, &cli.server, color),
        Command::Resume(a) => resume::run(a, &cli.server, color),
        Command::Artifacts(a) => artifacts::run(a, &cli.server),
        Command::Cache(a) => cache::run(a, &cli.server),
        Command::Kill(a) => kill::run(a),
        Command::Spark(a) => spark::run(a),
        Command::Server(a) => server::run(a),
        Command::Ui(a) => ui::run(a),
        Command::Db(a) => db::run(a),
        Command::Tokens(a) => tokens::run(a),
    }
}

/// How diagnostics are printed.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum DiagFormat {
    /// Source excerpts with the problem underlined.
    #[default]
    Rich,
    /// One line each: `file:line:col: error[code]: message`.
    Short,
}

/// What to check beyond the model when loading a workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// The workflow only (fmt, plan, resume, cancel).
    Model,
    /// Also that this machine can run it: Spark runtimes (validate, run).
    Runnable,
}

/// Loads a workflow and prints its diagnostics to stderr; `None` if it has
/// errors.
fn load_reporting(path: &Path, format: DiagFormat, color: bool, check: Check) -> (Loaded, bool) {
    let mut loaded = kaon_model::load(path);
    if check == Check::Runnable {
        check_runtimes(&mut loaded);
    }
    if !loaded.diagnostics.is_empty() {
        let text = match format {
            DiagFormat::Rich => loaded.diagnostics.render(&loaded.sources, color),
            DiagFormat::Short => loaded.diagnostics.render_short(&loaded.sources),
        };
        eprint!("{text}");
    }
    let ok = loaded.result.is_some();
    if !ok {
        let n = loaded.diagnostics.error_count();
        eprintln!(
            "error: {} has {n} error{}",
            path.display(),
            if n == 1 { "" } else { "s" }
        );
    }
    (loaded, ok)
}

/// Checks what the model cannot know: that every Spark step's version is
/// installed here (else `not-installed`, with the install command).
fn check_runtimes(loaded: &mut Loaded) {
    use kaon_model::diag::{Code, Diagnostic};
    use kaon_model::spec::StepKind;
    let Some(v) = &loaded.result else { return };
    let mut spark = Vec::new();
    fn walk<'a>(
        v: &'a kaon_model::Validated,
        out: &mut Vec<(
            &'a kaon_model::spec::Step,
            &'a kaon_model::spec::SparkStep,
            kaon_model::diag::FileId,
        )>,
    ) {
        for step in v.workflow.steps.values() {
            if let StepKind::Spark(s) = &step.kind {
                out.push((step, s, v.workflow.file));
            }
        }
        for c in v.children.values() {
            walk(c, out);
        }
    }
    walk(v, &mut spark);
    if spark.is_empty() {
        return;
    }
    let config = match kaon::config::Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warning: {e:#}; Spark versions were not checked");
            return;
        }
    };
    let reg = kaon_spark::Registry::discover(&config.spark);
    let mut problems = Vec::new();
    for (step, s, file) in spark {
        if let Err(e) = reg.resolve(s.version.as_deref()) {
            let req = s
                .version
                .clone()
                .or(reg.default_version.clone())
                .unwrap_or_else(|| "3.5".into());
            let span = if s.version.is_some() {
                s.version_span
            } else {
                step.span
            };
            // The error names the fix (`kaon spark install ...`) itself.
            problems.push(Diagnostic::error(
                Code::NotInstalled,
                file,
                span,
                format!("step `{}` needs Spark {req}: {e}", step.name),
            ));
        }
    }
    if !problems.is_empty() {
        for d in problems {
            loaded.diagnostics.push(d);
        }
        loaded.result = None;
    }
}

/// Writes to stdout; a reader that went away (`kaon plan wf.toml | head`)
/// is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    kaon::out!("{text}");
    Ok(())
}

/// A workflow file argument.
#[derive(Debug, clap::Args)]
struct FileArg {
    /// The workflow file (TOML).
    file: PathBuf,
    /// How to print problems.
    #[arg(long, value_enum, default_value_t = DiagFormat::Rich)]
    diagnostics: DiagFormat,
}
