//! `kaon artifacts …`: list, show, get, put, lineage, inspect, gc.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use kaon_artifacts::{ArtifactKind, ArtifactStore, Digest, Existing};
use kaon_exec::outputs::ArtifactLine;
use kaon_store::{ArtifactFilter, ArtifactIndex, ArtifactRow, Batch, Direction, StateStore};
use serde_json::json;

use super::common::{self, DataArgs};

/// Artifacts: step outputs kept by content digest, with where they came
/// from and what used them.
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

pub fn run(args: Args) -> Result<ExitCode> {
    common::block_on(async move {
        let data = &args.data;
        match args.command {
            Verb::Put { path, name, tags } => put(data, &path, name, &tags).await,
            Verb::Get { id, output, force } => get(data, &id, &output, force).await,
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
                list(&data.existing_store().await?, &filter, format).await
            }
            Verb::Show { id, format } => {
                show(data, &data.existing_store().await?, &id, format).await
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
                lineage(&data.existing_store().await?, &id, dir, depth, format).await
            }
            Verb::Inspect { id, rows } => {
                inspect(data, &data.existing_store().await?, &id, rows).await
            }
            Verb::Verify { repair } => verify(data, &data.existing_store().await?, repair).await,
            Verb::Gc { dry_run, min_age } => {
                gc(data, &data.existing_store().await?, dry_run, min_age).await
            }
        }
    })?
}

async fn find<S: ArtifactIndex>(store: &S, id: &str) -> Result<ArtifactRow> {
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

async fn list<S: ArtifactIndex>(store: &S, f: &ArtifactFilter, format: Format) -> Result<ExitCode> {
    let rows = store.artifacts(f).await?;
    match format {
        Format::Json => {
            let v: Vec<_> = rows.iter().map(to_json).collect();
            kaon::outln!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            kaon::outln!(
                "{:<18} {:<14} {:<4} {:>10}  {:<12}  {:<22} STEP",
                "ID",
                "NAME",
                "KIND",
                "SIZE",
                "DIGEST",
                "RUN"
            );
            for a in &rows {
                kaon::outln!(
                    "{:<18} {:<14} {:<4} {:>10}  {:<12}  {:<22} {}{}",
                    a.id,
                    a.name,
                    a.kind,
                    size(a.size),
                    short(&a.digest),
                    a.run.as_deref().unwrap_or("-"),
                    a.step_key.as_deref().unwrap_or("-"),
                    if a.memoized_from.is_some() {
                        " (memoized)"
                    } else {
                        ""
                    }
                );
            }
            if rows.is_empty() {
                eprintln!("no artifacts match");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn show<S: ArtifactIndex>(
    data: &DataArgs,
    store: &S,
    id: &str,
    format: Format,
) -> Result<ExitCode> {
    let a = find(store, id).await?;
    let blobs = data.blobs()?;
    let digest: Digest = a.digest.parse()?;
    let present = blobs.contains(&digest).await?;
    let up = store.lineage(&a.id, Direction::Upstream, 1).await?;
    let down = store.lineage(&a.id, Direction::Downstream, 1).await?;
    let manifest = if a.kind == "dir" && present {
        Some(blobs.manifest(&digest).await?)
    } else {
        None
    };
    if let Format::Json = format {
        let mut v = to_json(&a);
        v["present"] = json!(present);
        v["read_from"] = json!(up.iter().map(|e| &e.from).collect::<Vec<_>>());
        v["read_by"] = json!(
            down.iter()
                .map(|e| format!("{}/{}", e.run, e.node))
                .collect::<BTreeSet<_>>()
        );
        if let Some(m) = &manifest {
            v["files"] = json!(
                m.entries
                    .iter()
                    .map(|e| json!({"path": e.path, "digest": e.digest, "size": e.size}))
                    .collect::<Vec<_>>()
            );
        }
        kaon::outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    kaon::outln!("artifact {}", a.id);
    kaon::outln!("  name        {}", a.name);
    kaon::outln!(
        "  kind        {} ({} file{})",
        a.kind,
        a.files,
        if a.files == 1 { "" } else { "s" }
    );
    kaon::outln!("  size        {} ({} bytes)", size(a.size), a.size);
    kaon::outln!("  media type  {}", a.media_type);
    kaon::outln!("  digest      {}", a.digest);
    kaon::outln!(
        "  blob        {}",
        if present {
            "present"
        } else {
            "MISSING from the artifact store"
        }
    );
    if let Some(run) = &a.run {
        kaon::outln!(
            "  made by     {} in run {run} (attempt {})",
            a.step_key.as_deref().unwrap_or("?"),
            a.attempt.unwrap_or(0)
        );
    } else {
        kaon::outln!("  made by     kaon artifacts put (no run)");
    }
    if let Some(m) = &a.memoized_from {
        kaon::outln!("  memoized    reuses {m}");
    }
    if let Some(p) = &a.path {
        kaon::outln!("  written at  {p}");
    }
    kaon::outln!("  created     {}", common::fmt_time(a.created_ms));
    if a.tags != "{}" {
        kaon::outln!("  tags        {}", a.tags);
    }
    if !up.is_empty() {
        kaon::outln!(
            "  read from   {}",
            up.iter()
                .map(|e| e.from.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !down.is_empty() {
        let readers: BTreeSet<String> = down.iter().map(|e| e.to.clone()).collect();
        kaon::outln!(
            "  used for    {}",
            readers.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(m) = manifest {
        kaon::outln!("  files:");
        for e in m.entries.iter().take(50) {
            kaon::outln!(
                "    {:<40} {:>10}  {}",
                e.path,
                size(e.size as i64),
                short(&e.digest)
            );
        }
        if m.entries.len() > 50 {
            kaon::outln!("    … {} more", m.entries.len() - 50);
        }
    }
    Ok(ExitCode::SUCCESS)
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

async fn put(
    data: &DataArgs,
    path: &Path,
    name: Option<String>,
    tags: &[String],
) -> Result<ExitCode> {
    let blobs = step_blobs(data)?;
    let stored = blobs
        .put_path(path)
        .await
        .with_context(|| format!("cannot store {}", path.display()))?;
    let name = match name {
        Some(n) => n,
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "artifact".into()),
    };
    let media_type = kaon_artifacts::media_type(path, stored.kind);
    let abs = std::path::absolute(path).unwrap_or(path.to_path_buf());
    if let Some(file) = step_file() {
        append(
            &file,
            &ArtifactLine::Put {
                name: name.clone(),
                digest: stored.digest.to_string(),
                kind: stored.kind.as_str().into(),
                size: stored.size,
                files: stored.files,
                media_type,
                path: abs.display().to_string(),
            },
        )?;
        kaon::outln!("{name} {} ({})", stored.digest, size(stored.size as i64));
        return Ok(ExitCode::SUCCESS);
    }
    let mut tag_map = serde_json::Map::new();
    for t in tags {
        let Some((k, v)) = t.split_once('=') else {
            bail!("--tag `{t}`: expected key=value");
        };
        tag_map.insert(k.to_string(), json!(v));
    }
    let now = kaon::driver::now_ms() as i64;
    let id = format!(
        "a{}",
        &blake3::hash(
            format!("{}\0{name}\0{now}\0{}", stored.digest, std::process::id()).as_bytes()
        )
        .to_hex()[..16]
    );
    let store = data.store(kaon_store::Durability::Full).await?;
    store
        .commit(&[Batch {
            artifacts: vec![ArtifactRow {
                id: id.clone(),
                digest: stored.digest.to_string(),
                kind: stored.kind.as_str().into(),
                size: stored.size as i64,
                files: stored.files as i64,
                media_type,
                name,
                path: Some(abs.display().to_string()),
                created_ms: now,
                tags: serde_json::Value::Object(tag_map).to_string(),
                ..ArtifactRow::default()
            }],
            ..Batch::default()
        }])
        .await?;
    kaon::outln!("{id} {} ({})", stored.digest, size(stored.size as i64));
    Ok(ExitCode::SUCCESS)
}

async fn get(data: &DataArgs, id: &str, output: &Path, force: bool) -> Result<ExitCode> {
    let store = data.existing_store().await?;
    let a = find(&store, id).await?;
    let blobs = step_blobs(data)?;
    let digest: Digest = a.digest.parse()?;
    let kind: ArtifactKind = a.kind.parse().map_err(anyhow::Error::msg)?;
    if kind == ArtifactKind::Reference {
        let r = blobs.reference(&digest).await?;
        bail!(
            "{} is a reference: its files stay at {}, nothing to copy",
            a.id,
            r.url
        );
    }
    let existing = if force {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    blobs
        .materialize(kind, &digest, output, existing)
        .await
        .with_context(|| format!("cannot write {} to {}", a.id, output.display()))?;
    if let Some(file) = step_file() {
        append(
            &file,
            &ArtifactLine::Get {
                artifact: a.id.clone(),
                digest: a.digest.clone(),
            },
        )?;
    }
    eprintln!("{} → {}", a.id, output.display());
    Ok(ExitCode::SUCCESS)
}

async fn lineage<S: ArtifactIndex>(
    store: &S,
    id: &str,
    dir: Direction,
    depth: u32,
    format: LineageFormat,
) -> Result<ExitCode> {
    let root = find(store, id).await?;
    let edges = store.lineage(&root.id, dir, depth).await?;
    let mut rows: HashMap<String, ArtifactRow> = HashMap::new();
    rows.insert(root.id.clone(), root.clone());
    for e in &edges {
        for id in [&e.from, &e.to] {
            if !rows.contains_key(id)
                && let Some(a) = store.artifact(id).await?
            {
                rows.insert(id.clone(), a);
            }
        }
    }
    let label = |id: &str| match rows.get(id) {
        Some(a) => format!(
            "{} {} ({}, {})",
            a.id,
            a.name,
            short(&a.digest),
            match (&a.run, &a.step_key) {
                (Some(r), Some(s)) => format!("{s} in {r}"),
                _ => "put by hand".into(),
            }
        ),
        None => format!("{id} (unknown)"),
    };
    match format {
        LineageFormat::Json => {
            let v = json!({
                "artifact": root.id,
                "direction": if dir == Direction::Upstream { "upstream" } else { "downstream" },
                "edges": edges.iter().map(|e| json!({
                    "depth": e.depth, "from": e.from, "to": e.to, "run": e.run, "node": e.node,
                })).collect::<Vec<_>>(),
                "artifacts": rows.values().map(to_json).collect::<Vec<_>>(),
            });
            kaon::outln!("{}", serde_json::to_string_pretty(&v)?);
        }
        LineageFormat::Dot => {
            kaon::outln!("digraph lineage {{\n  rankdir=LR;\n  node [shape=box];");
            for (id, a) in &rows {
                kaon::outln!(
                    "  \"{id}\" [label=\"{}\\n{}\\n{}\"];",
                    a.name,
                    short(&a.digest),
                    a.step_key.as_deref().unwrap_or("put")
                );
            }
            for e in &edges {
                kaon::outln!("  \"{}\" -> \"{}\";", e.from, e.to);
            }
            kaon::outln!("}}");
        }
        LineageFormat::Tree => {
            kaon::outln!("{}", label(&root.id));
            // Children of a node: the artifacts one hop further.
            let mut next: HashMap<&str, Vec<&str>> = HashMap::new();
            for e in &edges {
                let (a, b) = match dir {
                    Direction::Upstream => (e.to.as_str(), e.from.as_str()),
                    Direction::Downstream => (e.from.as_str(), e.to.as_str()),
                };
                let v = next.entry(a).or_default();
                if !v.contains(&b) {
                    v.push(b);
                }
            }
            let arrow = if dir == Direction::Upstream {
                "←"
            } else {
                "→"
            };
            fn walk(
                at: &str,
                prefix: &str,
                depth: u32,
                next: &HashMap<&str, Vec<&str>>,
                label: &dyn Fn(&str) -> String,
                arrow: &str,
                path: &mut Vec<String>,
            ) {
                let Some(kids) = next.get(at) else { return };
                for (i, k) in kids.iter().enumerate() {
                    let last = i + 1 == kids.len();
                    let seen = path.iter().any(|p| p == k);
                    kaon::outln!(
                        "{prefix}{}{arrow} {}{}",
                        if last { "└─" } else { "├─" },
                        label(k),
                        if seen { " (cycle)" } else { "" }
                    );
                    if seen || depth == 0 {
                        continue;
                    }
                    path.push(k.to_string());
                    let p = format!("{prefix}{}", if last { "   " } else { "│  " });
                    walk(k, &p, depth - 1, next, label, arrow, path);
                    path.pop();
                }
            }
            walk(
                &root.id,
                "",
                depth,
                &next,
                &label,
                arrow,
                &mut vec![root.id.clone()],
            );
            if edges.is_empty() {
                kaon::outln!(
                    "  ({})",
                    if dir == Direction::Upstream {
                        "made from no recorded artifact"
                    } else {
                        "not used by any recorded step"
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn inspect<S: ArtifactIndex>(
    data: &DataArgs,
    store: &S,
    id: &str,
    rows: usize,
) -> Result<ExitCode> {
    let a = find(store, id).await?;
    let blobs = data.blobs()?;
    let digest: Digest = a.digest.parse()?;
    let tmp = tempfile::tempdir()?;
    kaon::outln!(
        "artifact {} {} ({}, {}, {})",
        a.id,
        a.name,
        a.kind,
        a.media_type,
        size(a.size)
    );
    let mut files: Vec<PathBuf> = Vec::new();
    match a.kind.as_str() {
        "file" => {
            let p = tmp.path().join(&a.name);
            blobs.get_file(&digest, &p).await?;
            files.push(p);
        }
        "dir" => {
            let m = blobs.manifest(&digest).await?;
            kaon::outln!("{} files", m.entries.len());
            let parquet: Vec<_> = m
                .entries
                .iter()
                .filter(|e| e.path.ends_with(".parquet"))
                .collect();
            let chosen: Vec<_> = if parquet.is_empty() {
                for e in m.entries.iter().take(20) {
                    kaon::outln!("  {:<40} {:>10}", e.path, size(e.size as i64));
                }
                m.entries.iter().filter(|e| e.size > 0).take(1).collect()
            } else {
                parquet
            };
            for e in chosen {
                let d: Digest = e.digest.parse()?;
                let p = tmp.path().join(e.path.replace('/', "__"));
                blobs.get_file(&d, &p).await?;
                files.push(p);
            }
        }
        other => bail!("{}: a {other} artifact has no content kept by kaon", a.id),
    }
    let is_parquet = files
        .iter()
        .all(|f| f.extension().is_some_and(|e| e == "parquet"))
        && !files.is_empty()
        || a.media_type == "application/vnd.apache.parquet";
    if is_parquet {
        super::inspect::parquet(&files, rows)?;
    } else if let Some(f) = files.first() {
        super::inspect::text(f, rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the content of a blob may still be found: the paths its
/// artifacts were stored from, and for a folder's file, that file in the
/// folder.
async fn sources<S: ArtifactIndex>(
    store: &S,
    d: &Digest,
    entries: &HashMap<Digest, Vec<(Digest, String)>>,
) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let with = |digest: &Digest| ArtifactFilter {
        digest: Some(digest.to_string()),
        ..ArtifactFilter::default()
    };
    for a in store.artifacts(&with(d)).await? {
        out.extend(a.path.map(PathBuf::from));
    }
    for (dir, rel) in entries.get(d).into_iter().flatten() {
        for a in store.artifacts(&with(dir)).await? {
            if let Some(p) = a.path {
                out.push(Path::new(&p).join(rel));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

async fn verify<S: ArtifactIndex>(data: &DataArgs, store: &S, repair: bool) -> Result<ExitCode> {
    let blobs = data.blobs()?;
    let all = blobs.blobs().await?;
    let mut broken: Vec<(Digest, String)> = blobs
        .check_all()
        .await?
        .into_iter()
        .map(|(d, actual)| (d, format!("corrupt (its content hashes to {actual})")))
        .collect();
    // What the artifacts need: their blobs and, for folders, their files'.
    let present: BTreeSet<Digest> = all.iter().map(|(d, _, _)| *d).collect();
    let mut entries: HashMap<Digest, Vec<(Digest, String)>> = HashMap::new();
    let mut needed: BTreeSet<Digest> = BTreeSet::new();
    for (digest, kind) in store.digests().await? {
        let Ok(d) = digest.parse::<Digest>() else {
            continue;
        };
        if kind == "reference" {
            continue;
        }
        needed.insert(d);
        if kind == "dir"
            && let Ok(m) = blobs.manifest(&d).await
        {
            for e in m.entries {
                if let Ok(fd) = e.digest.parse::<Digest>() {
                    needed.insert(fd);
                    entries.entry(fd).or_default().push((d, e.path));
                }
            }
        }
    }
    for d in needed.difference(&present) {
        broken.push((*d, "missing".into()));
    }
    let mut left = 0;
    for (d, what) in &broken {
        let users: Vec<String> = store
            .artifacts(&ArtifactFilter {
                digest: Some(d.to_string()),
                limit: Some(5),
                ..ArtifactFilter::default()
            })
            .await?
            .into_iter()
            .map(|a| format!("{} {}", a.id, a.name))
            .collect();
        let used = if users.is_empty() {
            String::new()
        } else {
            format!("; artifacts: {}", users.join(", "))
        };
        kaon::outln!("blob {d}: {what}{used}");
        if !repair {
            left += 1;
            continue;
        }
        let mut fixed = None;
        for p in sources(store, d, &entries).await? {
            if let Ok(Some((ArtifactKind::File, have))) = kaon_artifacts::hash_path(&p).await
                && have == *d
                && blobs.put_file(&p).await.is_ok()
                && blobs.verify(d).await.is_ok()
            {
                fixed = Some(p);
                break;
            }
        }
        match fixed {
            Some(p) => kaon::outln!("  repaired from {}", p.display()),
            // Its content is gone: the artifacts stay broken (exit 1), but
            // nothing reuses them, so the steps that made them run again.
            None if what == "missing" => {
                left += 1;
                kaon::outln!(
                    "  no file holds its content any more; the steps that made it run again when next needed"
                );
            }
            None => {
                left += 1;
                let aside = blobs.quarantine(d).await?;
                kaon::outln!(
                    "  no file holds its content any more: moved aside to {aside}; the steps that made it run again when next needed"
                );
            }
        }
    }
    kaon::outln!(
        "checked {} blobs: {} broken{}",
        all.len(),
        broken.len(),
        if repair {
            format!(", {} left broken", left)
        } else if broken.is_empty() {
            String::new()
        } else {
            " (`kaon artifacts verify --repair` puts back what it can)".into()
        }
    );
    Ok(if left == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn gc<S: ArtifactIndex>(
    data: &DataArgs,
    store: &S,
    dry_run: bool,
    min_age: std::time::Duration,
) -> Result<ExitCode> {
    let blobs = data.blobs()?;
    let mut keep: BTreeSet<Digest> = BTreeSet::new();
    for (digest, kind) in store.digests().await? {
        let Ok(d) = digest.parse::<Digest>() else {
            continue;
        };
        keep.insert(d);
        if kind == "dir" {
            // A folder's files are blobs of their own, named in its manifest.
            match blobs.manifest(&d).await {
                Ok(m) => {
                    for e in m.entries {
                        if let Ok(fd) = e.digest.parse::<Digest>() {
                            keep.insert(fd);
                        }
                    }
                }
                Err(kaon_artifacts::ArtifactError::Missing { .. }) => {}
                Err(e) => bail!("cannot read the manifest {d}: {e} (nothing was deleted)"),
            }
        }
    }
    let all = blobs.blobs().await?;
    let young = std::time::SystemTime::now() - min_age;
    let doomed: Vec<(Digest, u64)> = all
        .iter()
        .filter(|(d, _, at)| !keep.contains(d) && *at <= young)
        .map(|(d, s, _)| (*d, *s))
        .collect();
    let bytes: u64 = doomed.iter().map(|(_, s)| s).sum();
    if dry_run {
        for (d, s) in &doomed {
            kaon::outln!("would delete {d} ({})", size(*s as i64));
        }
        kaon::outln!(
            "{} of {} blobs ({}) are unreferenced; nothing deleted (--dry-run)",
            doomed.len(),
            all.len(),
            size(bytes as i64)
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (d, _) in &doomed {
        blobs.delete(d).await?;
    }
    let tmp = blobs.clean_tmp(min_age).await?;
    kaon::outln!(
        "deleted {} of {} blobs ({}), {tmp} leftover upload{}",
        doomed.len(),
        all.len(),
        size(bytes as i64),
        if tmp == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}
