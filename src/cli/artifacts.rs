//! `kaon artifacts …`: list, show, get, put, lineage, inspect, verify, gc;
//! one file per verb under `artifacts/`, the arguments and what the verbs
//! share here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use kaon_artifacts::{ArtifactStore, Digest};
use kaon_exec::outputs::ArtifactLine;
use kaon_store::{ArtifactFilter, ArtifactIndex, ArtifactRow, Direction, LineageEdge};
use serde_json::json;

use super::common::{self, DataArgs};
use super::remote::{self, ArtifactView, EdgeView, Remote, ServerArgs};

mod gc;
mod get;
mod inspect;
mod lineage;
mod list;
mod put;
mod show;
mod verify;

/// Artifacts: step outputs kept by content digest, with where they came
/// from and what used them.
///
/// With a server (--server URL or KAON_SERVER), list, show and lineage
/// read the server's; get, put, inspect, verify and gc work on an
/// artifact store directly, never through a server.
///
/// Examples:
///   kaon artifacts list --run 20261123-071601-3f2a
///   kaon artifacts show a1b2c3d4
///   kaon artifacts get a1b2c3d4 -o model.json
///   kaon artifacts lineage a1b2c3d4 --upstream
///   kaon artifacts inspect a1b2c3d4
///   kaon artifacts gc --dry-run
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
    /// Artifacts, newest first.
    List {
        /// Produced by this run.
        #[arg(long)]
        run: Option<String>,
        /// Produced by this step (name or instance key).
        #[arg(long)]
        step: Option<String>,
        /// With this name.
        #[arg(long)]
        name: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// `table` or `json`.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// One artifact: what it is, who made it, what it holds.
    Show {
        /// Its id, or a unique prefix of its id or digest.
        id: String,
        /// `table` or `json`.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Writes an artifact to a path (a file, or a folder for folder
    /// artifacts), checking its digest. Inside a step it is also recorded
    /// as an input of the step.
    ///
    /// A folder artifact is merged into an existing folder: files of its
    /// own that are missing are written, files already identical are left,
    /// and nothing else there is touched. A file that differs from the
    /// artifact's is never replaced without --force, and kaon never removes
    /// a file, a folder or a link that stands in the way.
    Get {
        /// Its id, or a unique prefix of its id or digest.
        id: String,
        /// Where to write it.
        #[arg(short, long)]
        output: PathBuf,
        /// Replace files at the artifact's paths that differ from it.
        #[arg(long)]
        force: bool,
    },
    /// Stores a file or folder. Inside a step (where `$KAON_ARTIFACTS_FILE`
    /// is set) it becomes an artifact of the step's run when the step
    /// succeeds; elsewhere it is recorded at once, with no run.
    Put {
        /// The file or folder.
        path: PathBuf,
        /// Its name (default: the file name).
        #[arg(long)]
        name: Option<String>,
        /// A tag, `key=value` (standalone puts).
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
    },
    /// Where an artifact came from (upstream, the default) or what used it
    /// (downstream).
    Lineage {
        /// Its id, or a unique prefix of its id or digest.
        id: String,
        /// What it was made from.
        #[arg(long, conflicts_with = "downstream")]
        upstream: bool,
        /// What was made from it.
        #[arg(long)]
        downstream: bool,
        /// Hops to follow.
        #[arg(long, default_value_t = 10)]
        depth: u32,
        /// `tree`, `dot` (Graphviz) or `json`.
        #[arg(long, value_enum, default_value_t = LineageFormat::Tree)]
        format: LineageFormat,
    },
    /// A look inside: Parquet schema, row count, row groups and first rows;
    /// the first lines of text (CSV, JSON, ...); a folder's files.
    Inspect {
        /// Its id, or a unique prefix of its id or digest.
        id: String,
        /// Rows or lines to show.
        #[arg(long, default_value_t = 10)]
        rows: usize,
    },
    /// Reads every blob back and checks it against its digest, and that
    /// every artifact's blobs are there. Exits 1 when something is broken.
    ///
    /// With --repair, a corrupt or missing blob is put back from a file
    /// that still has its content (where an artifact was stored from);
    /// one that cannot be is moved aside to `corrupt/` in the store (never
    /// deleted), so that nothing reuses it and the step that made it runs
    /// again when next needed.
    Verify {
        /// Put back or move aside what is broken.
        #[arg(long)]
        repair: bool,
    },
    /// Deletes blobs no artifact refers to, and leftovers of interrupted
    /// puts.
    Gc {
        /// Say what would go, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep blobs younger than this: a step that is storing its outputs
        /// has blobs whose artifact rows are not committed yet.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
        min_age: std::time::Duration,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LineageFormat {
    Tree,
    Dot,
    Json,
}

pub fn run(args: Args, server: &ServerArgs) -> Result<ExitCode> {
    // Inside a step, `put` and `get` are the step's own (the executor
    // points them at its store), whatever the environment says of servers.
    let in_step =
        step_file().is_some() && matches!(args.command, Verb::Put { .. } | Verb::Get { .. });
    if !in_step && let Some(remote) = server.connect()? {
        return common::block_on(remote_run(remote, args.command))?;
    }
    common::block_on(async move {
        let data = &args.data;
        match args.command {
            Verb::Put { path, name, tags } => put::put(data, &path, name, &tags).await,
            Verb::Get { id, output, force } => get::get(data, &id, &output, force).await,
            Verb::List {
                run,
                step,
                name,
                limit,
                format,
            } => {
                let filter = ArtifactFilter {
                    run,
                    step,
                    name,
                    digest: None,
                    limit: Some(limit),
                };
                list::list(&Local(&data.existing_store().await?), &filter, format).await
            }
            Verb::Show { id, format } => {
                let store = data.existing_store().await?;
                let a = find(&Local(&store), &id).await?;
                let blobs = data.blobs()?;
                let digest: Digest = a.digest.parse()?;
                let present = blobs.contains(&digest).await?;
                let manifest = if a.kind == "dir" && present {
                    Some(blobs.manifest(&digest).await?)
                } else {
                    None
                };
                show::show(&Local(&store), a, Some(present), manifest, format).await
            }
            Verb::Lineage {
                id,
                downstream,
                depth,
                format,
                ..
            } => {
                let dir = if downstream {
                    Direction::Downstream
                } else {
                    Direction::Upstream
                };
                lineage::lineage(
                    &Local(&data.existing_store().await?),
                    &id,
                    dir,
                    depth,
                    format,
                )
                .await
            }
            Verb::Inspect { id, rows } => {
                inspect::inspect(data, &data.existing_store().await?, &id, rows).await
            }
            Verb::Verify { repair } => {
                verify::verify(data, &data.existing_store().await?, repair).await
            }
            Verb::Gc { dry_run, min_age } => {
                gc::gc(data, &data.existing_store().await?, dry_run, min_age).await
            }
        }
    })?
}

/// `kaon artifacts list|show|lineage` through a server; the other verbs
/// work on this machine's artifact store only.
async fn remote_run(remote: Remote, verb: Verb) -> Result<ExitCode> {
    match verb {
        Verb::List {
            run,
            step,
            name,
            limit,
            format,
        } => {
            let filter = ArtifactFilter {
                run,
                step,
                name,
                digest: None,
                limit: Some(limit),
            };
            list::list(&remote, &filter, format).await
        }
        Verb::Show { id, format } => {
            let a = find(&remote, &id).await?;
            show::show(&remote, a, None, None, format).await
        }
        Verb::Lineage {
            id,
            downstream,
            depth,
            format,
            ..
        } => {
            let dir = if downstream {
                Direction::Downstream
            } else {
                Direction::Upstream
            };
            lineage::lineage(&remote, &id, dir, depth, format).await
        }
        Verb::Get { .. } => local_only("get", &remote),
        Verb::Put { .. } => local_only("put", &remote),
        Verb::Inspect { .. } => local_only("inspect", &remote),
        Verb::Verify { .. } => local_only("verify", &remote),
        Verb::Gc { .. } => local_only("gc", &remote),
    }
}

fn local_only(verb: &str, remote: &Remote) -> Result<ExitCode> {
    bail!(
        "`kaon artifacts {verb}` works on an artifact store directly and does not go through a server (--server {} was given); run it without --server and KAON_SERVER, with --artifacts URL naming the store",
        remote.shown()
    )
}

/// What `list`, `show` and `lineage` read: this machine's index, or a
/// server's.
trait Lookup {
    /// One artifact by id, or a unique prefix of its id or digest.
    async fn artifact(&self, id: &str) -> Result<Option<ArtifactRow>>;
    /// Artifacts matching a filter, newest first.
    async fn artifacts(&self, f: &ArtifactFilter) -> Result<Vec<ArtifactRow>>;
    /// Lineage edges from an artifact.
    async fn lineage(&self, id: &str, dir: Direction, depth: u32) -> Result<Vec<LineageEdge>>;
}

/// This machine's artifact index.
struct Local<'a, S>(&'a S);

impl<S: ArtifactIndex + Sync> Lookup for Local<'_, S> {
    async fn artifact(&self, id: &str) -> Result<Option<ArtifactRow>> {
        Ok(self.0.artifact(id).await?)
    }
    async fn artifacts(&self, f: &ArtifactFilter) -> Result<Vec<ArtifactRow>> {
        Ok(self.0.artifacts(f).await?)
    }
    async fn lineage(&self, id: &str, dir: Direction, depth: u32) -> Result<Vec<LineageEdge>> {
        Ok(self.0.lineage(id, dir, depth).await?)
    }
}

impl Lookup for Remote {
    async fn artifact(&self, id: &str) -> Result<Option<ArtifactRow>> {
        match self
            .get::<ArtifactView>(&["api", "v1", "artifacts", id], &[])
            .await
        {
            Ok(a) => Ok(Some(a.row())),
            Err(e) if remote::status_of(&e) == Some(reqwest::StatusCode::NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }
    async fn artifacts(&self, f: &ArtifactFilter) -> Result<Vec<ArtifactRow>> {
        let mut query = Vec::new();
        for (k, v) in [
            ("run", &f.run),
            ("step", &f.step),
            ("name", &f.name),
            ("digest", &f.digest),
        ] {
            if let Some(v) = v {
                query.push((k, v.clone()));
            }
        }
        if let Some(l) = f.limit {
            query.push(("limit", l.to_string()));
        }
        let rows: Vec<ArtifactView> = self.get(&["api", "v1", "artifacts"], &query).await?;
        Ok(rows.into_iter().map(ArtifactView::row).collect())
    }
    async fn lineage(&self, id: &str, dir: Direction, depth: u32) -> Result<Vec<LineageEdge>> {
        let direction = match dir {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
        };
        let query = [
            ("direction", direction.to_string()),
            ("depth", depth.to_string()),
        ];
        let edges: Vec<EdgeView> = self
            .get(&["api", "v1", "artifacts", id, "lineage"], &query)
            .await?;
        Ok(edges.into_iter().map(EdgeView::edge).collect())
    }
}

async fn find(store: &impl Lookup, id: &str) -> Result<ArtifactRow> {
    match store.artifact(id).await? {
        Some(a) => Ok(a),
        None => bail!("no artifact `{id}` (`kaon artifacts list` shows them)"),
    }
}

fn size(n: i64) -> String {
    let n = n.max(0) as f64;
    if n < 1024.0 {
        format!("{n} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else if n < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", n / 1024.0 / 1024.0 / 1024.0)
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("blake3:").unwrap_or(digest);
    &hex[..12.min(hex.len())]
}

fn to_json(a: &ArtifactRow) -> serde_json::Value {
    json!({
        "id": a.id,
        "name": a.name,
        "digest": a.digest,
        "kind": a.kind,
        "size": a.size,
        "files": a.files,
        "media_type": a.media_type,
        "run": a.run,
        "step": a.step,
        "step_key": a.step_key,
        "attempt": a.attempt,
        "path": a.path,
        "created_ms": a.created_ms,
        "tags": serde_json::from_str::<serde_json::Value>(&a.tags).unwrap_or(json!({})),
        "memoized_from": a.memoized_from,
    })
}

/// Inside a step: where `kaon artifacts put/get` leave their lines.
fn step_file() -> Option<PathBuf> {
    std::env::var_os("KAON_ARTIFACTS_FILE").map(PathBuf::from)
}

/// Inside a step the store is the one the executor named.
fn step_blobs(data: &DataArgs) -> Result<ArtifactStore> {
    match std::env::var("KAON_ARTIFACT_STORE") {
        Ok(url) if step_file().is_some() => {
            let cwd = std::env::current_dir()?;
            Ok(ArtifactStore::open(&url, &cwd)?.skipping(&data.data_dir))
        }
        _ => data.blobs(),
    }
}

fn append(file: &Path, line: &ArtifactLine) -> Result<()> {
    let mut text = serde_json::to_string(line)?;
    text.push('\n');
    // One short write with O_APPEND: lines of concurrent puts never mix.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .with_context(|| format!("cannot open $KAON_ARTIFACTS_FILE {}", file.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
