//! `kaon cache explain RUN STEP`: why a step ran instead of reusing a result.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use kaon_runtime::memo::{self, explain::ExplainError};
use kaon_store::{ArtifactIndex, StateStore};

use super::common::{self, DataArgs};
use super::remote::{Remote, ServerArgs};

/// Memoization: why a step ran or whose result it reused.
///
/// With a server (--server URL or KAON_SERVER), the server's runs.
///
/// Examples:
///   kaon cache explain 20261123-071601-3f2a trainGlobalModel
///   kaon cache explain 20261123-071601-3f2a 'trainRegModel[pass=1, reg=europe]'
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    command: Verb,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Says whether a step reused an earlier result and, when it ran, what
    /// changed since the closest earlier run of the same step: code,
    /// inputs, command line, environment, outputs or cache_version.
    Explain {
        /// The run.
        run: String,
        /// The step name or instance key.
        step: String,
    },
}

pub fn run(args: Args, server: &ServerArgs) -> Result<ExitCode> {
    if let Some(remote) = server.connect()? {
        return common::block_on(async move {
            match args.command {
                Verb::Explain { run, step } => remote_explain(&remote, &run, &step).await,
            }
        })?;
    }
    common::block_on(async move {
        let store = args.data.existing_store().await?;
        match args.command {
            Verb::Explain { run, step } => explain(&store, &run, &step).await,
        }
    })?
}

async fn explain<S: StateStore + ArtifactIndex>(
    store: &S,
    run: &str,
    step: &str,
) -> Result<ExitCode> {
    let found = memo::explain::explain(store, run, step)
        .await
        .map_err(|e| match e {
            ExplainError::NoSuchRun { run } => {
                anyhow!("no run `{run}` (`kaon runs list` shows them)")
            }
            // The text it had before the move, without the parser's detail.
            ExplainError::Damaged { instance, .. } => {
                anyhow!("the stored key parts of {instance} do not read")
            }
            e => e.into(),
        })?;
    for e in &found {
        for line in e.lines() {
            kaon::outln!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kaon cache explain` through a server: the lines it explains with.
async fn remote_explain(remote: &Remote, run: &str, step: &str) -> Result<ExitCode> {
    let query = [("run", run.to_string()), ("step", step.to_string())];
    let found: serde_json::Value = remote
        .get(&["api", "v1", "cache", "explain"], &query)
        .await?;
    for line in found["lines"].as_array().into_iter().flatten() {
        kaon::outln!("{}", line.as_str().unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}
