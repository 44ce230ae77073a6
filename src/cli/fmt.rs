//! `kaon fmt FILE...`

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use kaon_model::edit::format_flow;
use kaon_model::flow::Notation;

use super::{Check, DiagFormat, emit, load_reporting};

/// Format workflow files: rewrite the flow of each in canonical form.
///
/// Only the flow string changes: comments, other keys, blank lines and the
/// string's quotes stay as they are byte for byte. Operators by default
/// (`a -> b ==> (c, d) >== e`), verbs with --verbs (`sequence(a, b)
/// parallel { c d } parallel e`); both parse to the same model, and
/// formatting a formatted file changes nothing. A one-line flow string that
/// needs several lines becomes a multi-line one of the same family (' to
/// ''', " to """).
///
/// A file already formatted is not touched. Otherwise it is replaced
/// atomically (a temporary file beside it, renamed over it) with the same
/// permissions and owner. Refused, and left as they are: a file you may
/// not write, a file with several hard links (renaming would leave the
/// other names with the old text), a file changed while it was formatted.
/// A FILE that is a symbolic link to a regular file has its target
/// rewritten (the link stays, and kaon says so); a link to anything else
/// is refused. A file with errors gets its diagnostics and is left as it is.
///
/// Exits 0 when every file is formatted; 1 when a file has errors or
/// cannot be written, or with --check when a file is not formatted.
///
/// Examples:
///   kaon fmt examples/recsys/recsys.toml                     # rewrite in place
///   kaon fmt --check *.toml                                  # CI: show a diff, exit 1
///   kaon fmt --stdout --verbs examples/recsys/recsys.toml    # operators -> verbs, printed
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The workflow files (TOML).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Write the flow in Meson's verb notation instead of operators.
    #[arg(long)]
    verbs: bool,
    /// Write nothing; print a unified diff of each file that is not
    /// formatted, and exit 1 if there is one.
    #[arg(long, conflicts_with = "stdout")]
    check: bool,
    /// Print each whole formatted file to stdout instead of writing it.
    #[arg(long)]
    stdout: bool,
    /// How to print problems.
    #[arg(long, value_enum, default_value_t = DiagFormat::Rich)]
    diagnostics: DiagFormat,
}

pub fn run(args: Args, color: bool) -> anyhow::Result<ExitCode> {
    let notation = if args.verbs {
        Notation::Verbs
    } else {
        Notation::Operators
    };
    let mut ok = true;
    for path in &args.files {
        let (loaded, valid) = load_reporting(path, args.diagnostics, color, Check::Model);
        let Some(v) = loaded.result.as_ref().filter(|_| valid) else {
            ok = false;
            continue;
        };
        // The text the model was read from, so what is written is exactly
        // that text with its flow replaced.
        let old = loaded.sources.text(v.workflow.file);
        let new = match format_flow(old, notation) {
            Ok(new) => new,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                ok = false;
                continue;
            }
        };
        if args.stdout {
            emit(&new)?;
        } else if args.check {
            if new != old {
                emit(&diff(path, old, &new))?;
                ok = false;
            }
        } else if new != old
            && let Err(e) = replace(path, old, &new)
        {
            eprintln!("error: {}", crate::message(&e));
            ok = false;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A unified diff from the file as it is to the file formatted.
fn diff(path: &Path, old: &str, new: &str) -> String {
    let name = path.display().to_string();
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .header(&name, &name)
        .to_string()
}

/// Writes `new` over the file at `path`, which held `old` when it was read.
fn replace(path: &Path, old: &str, new: &str) -> anyhow::Result<()> {
    let target = regular_file(path)?;
    let meta =
        fs::metadata(&target).with_context(|| format!("cannot read `{}`", target.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if meta.nlink() > 1 {
            bail!(
                "`{}` has {} hard links; kaon fmt replaces a file by renaming a new one over it, which would leave the other names with the old text (use --stdout and write it yourself)",
                target.display(),
                meta.nlink()
            );
        }
    }
    // Renaming needs only the folder to be writable: without this, a file
    // its owner made read-only would be replaced all the same.
    fs::OpenOptions::new()
        .write(true)
        .open(&target)
        .with_context(|| format!("cannot write `{}`", target.display()))?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let cannot = || format!("cannot write `{}`", target.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".kaon-fmt-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(cannot)?;
    tmp.write_all(new.as_bytes()).with_context(cannot)?;
    tmp.as_file()
        .set_permissions(meta.permissions())
        .with_context(cannot)?;
    #[cfg(unix)]
    keep_owner(tmp.as_file(), &meta, &target)?;
    tmp.as_file().sync_all().with_context(cannot)?;
    // An edit saved since the file was read would be lost by the rename.
    let now = fs::read(&target).with_context(|| format!("cannot read `{}`", target.display()))?;
    if now != old.as_bytes() {
        bail!(
            "`{}` changed while it was being formatted; it is left as it is, run kaon fmt again",
            target.display()
        );
    }
    // rename(2): a reader sees the old file or the new one, never a part.
    tmp.persist(&target)
        .map_err(|e| e.error)
        .with_context(cannot)?;
    // The rename is durable once the folder is; a failure here leaves the
    // new file in place all the same, so it is not worth an error.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The regular file to rewrite for `path`: itself, or the target of a
/// symbolic link (said on stderr, so a link is never followed silently).
fn regular_file(path: &Path) -> anyhow::Result<PathBuf> {
    let meta =
        fs::symlink_metadata(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    if meta.file_type().is_symlink() {
        let target = match fs::canonicalize(path) {
            Ok(t) => t,
            Err(e) => bail!(
                "`{}` is a symbolic link that does not lead to a regular file ({e}); kaon fmt rewrites only regular files",
                path.display()
            ),
        };
        let is_file = fs::metadata(&target).is_ok_and(|m| m.is_file());
        if !is_file {
            bail!(
                "`{}` is a symbolic link to `{}`, which is not a regular file; kaon fmt rewrites only regular files",
                path.display(),
                target.display()
            );
        }
        eprintln!(
            "note: `{}` is a symbolic link; formatting its target `{}`",
            path.display(),
            target.display()
        );
        return Ok(target);
    }
    if !meta.is_file() {
        bail!(
            "`{}` is not a regular file; kaon fmt rewrites only regular files",
            path.display()
        );
    }
    Ok(path.to_path_buf())
}

/// Gives the new file the old one's owner and group, which a rename would
/// otherwise change to whoever runs kaon; refuses when that is not allowed.
#[cfg(unix)]
fn keep_owner(tmp: &fs::File, old: &fs::Metadata, target: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let new = tmp
        .metadata()
        .with_context(|| format!("cannot write `{}`", target.display()))?;
    if (new.uid(), new.gid()) == (old.uid(), old.gid()) {
        return Ok(());
    }
    std::os::unix::fs::fchown(tmp, Some(old.uid()), Some(old.gid())).with_context(|| {
        format!(
            "`{}` belongs to another user or group, which kaon fmt cannot keep on the new file; run it as the owner, or use --stdout",
            target.display()
        )
    })
}
