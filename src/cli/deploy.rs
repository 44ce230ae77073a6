//! `kaon deploy FILE...`

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::{Value, json};

use super::common;
use super::remote::{Remote, ServerArgs};

/// Deploy workflow files to a kaon server (--server URL or KAON_SERVER).
///
/// Each file is checked and registered under its workflow's name, its
/// version is a digest of its sources, and its schedules and triggers
/// start firing.
///
/// The server reads each file from its own file system: give paths that
/// are the same there (a shared folder, or run this on the server's
/// machine). A relative path is made absolute here first. Deploying the
/// same version again changes nothing; deploying an earlier version again
/// makes it current again (a rollback). The token needs the admin role.
///
/// Examples:
///   kaon deploy flows/recsys.toml
///   kaon --server http://kaon.internal:8470 deploy /srv/flows/*.toml
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The workflow files (paths on the server's file system).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// A deployed version, as the API shows it.
#[derive(Debug, Deserialize)]
pub struct WorkflowView {
    /// The workflow's name.
    pub name: String,
    /// The version.
    pub digest: String,
    /// Its schedules and triggers as declared.
    #[serde(default)]
    pub declares: Value,
}

/// What a deployment did, as the API shows it.
#[derive(Debug, Deserialize)]
pub struct Deployed {
    /// The version deployed.
    pub workflow: WorkflowView,
    /// False when this version was deployed before.
    pub new: bool,
    /// The ids of its schedules and triggers.
    #[serde(default)]
    pub schedules: Vec<String>,
}

pub fn run(args: Args, server: &ServerArgs) -> Result<ExitCode> {
    let remote = server.require("kaon deploy")?;
    common::block_on(async move {
        // The versions current before, to tell a version unchanged from
        // one current again.
        let before: Vec<WorkflowView> = remote.get(&["api", "v1", "workflows"], &[]).await?;
        let current: HashMap<String, String> =
            before.into_iter().map(|w| (w.name, w.digest)).collect();
        let mut failed = false;
        for file in &args.files {
            match deploy(&remote, file).await {
                Ok(d) => print(&d, current.get(&d.workflow.name)),
                Err(e) => {
                    failed = true;
                    eprintln!("error: {}: {e:#}", file.display());
                }
            }
        }
        Ok(if failed {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        })
    })?
}

/// Deploys one file (its absolute path: the server reads it).
pub async fn deploy(remote: &Remote, file: &Path) -> Result<Deployed> {
    let path = std::path::absolute(file)
        .with_context(|| format!("{}: cannot make the path absolute", file.display()))?;
    remote
        .post(
            &["api", "v1", "workflows"],
            &json!({ "path": path.display().to_string() }),
        )
        .await
}

/// `deployed NAME VERSION (new|unchanged|current again)` and its
/// schedules and triggers.
fn print(d: &Deployed, was: Option<&String>) {
    let w = &d.workflow;
    let how = if d.new {
        "new"
    } else if was == Some(&w.digest) {
        "unchanged"
    } else {
        "current again"
    };
    kaon::outln!("deployed {} {} ({how})", w.name, w.digest);
    let declared =
        |kind: &str| -> Vec<Value> { w.declares[kind].as_array().cloned().unwrap_or_default() };
    let schedules = declared("schedules");
    let triggers = declared("triggers");
    for id in &d.schedules {
        let name = id.split_once(':').map_or(id.as_str(), |(_, n)| n);
        let named = |v: &&Value| v["name"] == name;
        if let Some(s) = schedules.iter().find(named) {
            kaon::outln!(
                "  schedule {id}: cron `{}` ({})",
                s["cron"].as_str().unwrap_or("?"),
                s["timezone"].as_str().unwrap_or("UTC")
            );
        } else if let Some(t) = triggers.iter().find(named) {
            kaon::outln!(
                "  trigger  {id}: after each successful run of `{}`",
                t["on_success"].as_str().unwrap_or("?")
            );
        } else {
            kaon::outln!("  schedule {id}");
        }
    }
}
