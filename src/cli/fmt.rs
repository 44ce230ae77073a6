//! `kaon fmt FILE`

use std::process::ExitCode;

use kaon_model::flow::{Notation, print_flow};

use super::{Check, FileArg, emit, load_reporting};

/// Print a workflow's flow in canonical form.
///
/// Operators by default (`a -> b ==> (c, d) >== e`), or verbs with
/// `--verbs` (`sequence(a, b) parallel { c d } parallel e`). Both notations
/// parse to the same model, and formatting is stable: formatting the output
/// again gives the same text.
///
/// Examples:
///   kaon fmt examples/recsys/recsys-verbs.toml            # verbs -> operators
///   kaon fmt --verbs examples/recsys/recsys.toml          # operators -> verbs
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    file: FileArg,
    /// Print Meson's verb notation instead of operators.
    #[arg(long)]
    verbs: bool,
}

pub fn run(args: Args, color: bool) -> anyhow::Result<ExitCode> {
    let (loaded, ok) = load_reporting(&args.file.file, args.file.diagnostics, color, Check::Model);
    let Some(v) = loaded.result.filter(|_| ok) else {
        return Ok(ExitCode::from(1));
    };
    let notation = if args.verbs {
        Notation::Verbs
    } else {
        Notation::Operators
    };
    emit(&print_flow(&v.workflow.flow, notation))?;
    Ok(ExitCode::SUCCESS)
}
