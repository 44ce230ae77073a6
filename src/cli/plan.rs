//! `kaon plan FILE`

use std::process::ExitCode;

use clap::ValueEnum;

use super::{Check, FileArg, emit, load_reporting};

/// Output formats of `kaon plan`.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum Format {
    /// An indented tree: blocks hold their bodies, `after` names predecessors.
    #[default]
    Tree,
    /// Graphviz DOT (blocks are clusters): `kaon plan wf.toml --format dot | dot -Tsvg`.
    Dot,
    /// JSON: nodes with ids, kinds, `after` lists and nested bodies.
    Json,
}

/// Show what runs after what: the validated workflow as a graph.
///
/// For-each, repeat and conditional blocks and sub-workflows are shown as
/// structured nodes: they are expanded when the run reaches them.
///
/// Examples:
///   kaon plan examples/recsys/recsys.toml
///   kaon plan examples/recsys/recsys.toml --format dot | dot -Tsvg > plan.svg
///   kaon plan examples/sweep/sweep.toml --format json | jq '.nodes[].id'
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    file: FileArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Tree)]
    format: Format,
}

pub fn run(args: Args, color: bool) -> anyhow::Result<ExitCode> {
    let (loaded, ok) = load_reporting(&args.file.file, args.file.diagnostics, color, Check::Model);
    let Some(v) = loaded.result.filter(|_| ok) else {
        return Ok(ExitCode::from(1));
    };
    let name = &v.workflow.name;
    match args.format {
        Format::Tree => emit(&v.plan.to_tree(name))?,
        Format::Dot => emit(&v.plan.to_dot(name))?,
        Format::Json => {
            let mut j = v.plan.to_json();
            if let Some(m) = j.as_object_mut() {
                m.insert("workflow".into(), serde_json::Value::String(name.clone()));
            }
            emit(&format!("{}\n", serde_json::to_string_pretty(&j)?))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
