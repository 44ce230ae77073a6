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
mod fmt;
mod inspect;
mod logs;
mod plan;
mod resume;
mod run;
mod runs;
mod signal;
mod validate;

/// kaon: a workflow orchestrator for machine-learning pipelines on Spark.
#[derive(Debug, Parser)]
#[command(name = "kaon", version, about, long_about = None)]
pub struct Cli {
    /// When to colour diagnostics.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
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
    Validate(validate::Args),
    Plan(plan::Args),
    Fmt(fmt::Args),
    Runs(runs::Args),
    Logs(logs::Args),
    Cancel(cancel::Args),
    Signal(signal::Args),
    Resume(resume::Args),
    #[command(alias = "artifact")]
    Artifacts(artifacts::Args),
    Cache(cache::Args),
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
        Command::Run(a) => run::run(a, color),
        Command::Runs(a) => runs::run(a),
        Command::Logs(a) => logs::run(a),
        Command::Cancel(a) => cancel::run(a, color),
        Command::Signal(a) => signal::run(a),
        Command::Resume(a) => resume::run(a, color),
        Command::Artifacts(a) => artifacts::run(a),
        Command::Cache(a) => cache::run(a),
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

/// Loads a workflow and prints its diagnostics to stderr; `None` if it has
/// errors.
fn load_reporting(path: &Path, format: DiagFormat, color: bool) -> (Loaded, bool) {
    let loaded = kaon_model::load(path);
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

/// Writes to stdout; a reader that went away (`kaon plan wf.toml | head`)
/// is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
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
