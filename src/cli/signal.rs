//! `kaon signal RUN NAME`

use std::process::ExitCode;

use anyhow::{Context, Result};
use kaon_store::{MessageBody, StateStore};

use super::common::{self, DataArgs};
use super::remote::{Remote, ServerArgs};
use kaon_runtime as driver;

/// Send a signal to a run: every wait step waiting for NAME goes on, with
/// the value as its output. A signal stays sent: a wait step that reaches
/// NAME later goes on at once.
///
/// Examples:
///   kaon signal 20261123-071601-3f2a approve
///   kaon signal 20261123-071601-3f2a approve --value '{"approved": true, "by": "ana"}'
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The run.
    run: String,
    /// The signal's name (a wait step's `signal`).
    name: String,
    /// Its value, as JSON (an object fills the wait step's outputs).
    #[arg(long, default_value = "null")]
    value: String,
    #[command(flatten)]
    data: DataArgs,
}

pub fn run(args: Args, server: &ServerArgs) -> Result<ExitCode> {
    let value: serde_json::Value = serde_json::from_str(&args.value).with_context(|| {
        format!(
            "--value {}: not valid JSON (quote strings: '\"yes\"')",
            args.value
        )
    })?;
    if let Some(remote) = server.connect()? {
        return common::block_on(remote_signal(remote, args, value))?;
    }
    common::block_on(async move {
        let store = args.data.existing_store().await?;
        let row = common::find_run(&store, &args.run).await?;
        if row.status.is_terminal() {
            anyhow::bail!(
                "run {} already ended ({}); the signal was not sent",
                row.id,
                row.status
            );
        }
        let body = MessageBody::Signal {
            name: args.name.clone(),
            value: value.to_string(),
        };
        store.post(&row.id, &body, driver::now_ms() as i64).await?;
        let live = row
            .owner
            .as_deref()
            .is_some_and(|o| driver::owner_alive(o, row.heartbeat_ms));
        if live {
            kaon::outln!("sent signal `{}` to run {}", args.name, row.id);
        } else {
            kaon::outln!(
                "stored signal `{}` for run {}; nothing drives the run now, so it takes effect at `kaon resume {}`",
                args.name,
                row.id,
                row.id
            );
        }
        Ok(ExitCode::SUCCESS)
    })?
}

/// `kaon signal` through a server.
async fn remote_signal(remote: Remote, args: Args, value: serde_json::Value) -> Result<ExitCode> {
    let d = remote.run(&args.run).await?;
    let id = d.run.id;
    if d.run.status.is_terminal() {
        anyhow::bail!(
            "run {id} already ended ({}); the signal was not sent",
            d.run.status
        );
    }
    let _: serde_json::Value = remote
        .post(
            &["api", "v1", "runs", &id, "signal"],
            &serde_json::json!({ "name": args.name, "value": value }),
        )
        .await?;
    kaon::outln!("sent signal `{}` to run {id}", args.name);
    Ok(ExitCode::SUCCESS)
}
