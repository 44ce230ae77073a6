//! `kaon artifacts show`: one artifact, what it is, who made it, what it
//! holds.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::Result;
use kaon_artifacts::proto::Manifest;
use kaon_store::{ArtifactRow, Direction};
use serde_json::json;

use super::super::common;
use super::{Format, Lookup, short, size, to_json};

/// Shows artifact `a`. `present`: whether its blob is in the artifact
/// store, and `manifest` a folder's files, when they were looked at (a
/// server's store is not).
pub(super) async fn show(
    store: &impl Lookup,
    a: ArtifactRow,
    present: Option<bool>,
    manifest: Option<Manifest>,
    format: Format,
) -> Result<ExitCode> {
    let up = store.lineage(&a.id, Direction::Upstream, 1).await?;
    let down = store.lineage(&a.id, Direction::Downstream, 1).await?;
    if let Format::Json = format {
        let mut v = to_json(&a);
        if let Some(p) = present {
            v["present"] = json!(p);
        }
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
    if let Some(p) = present {
        kaon::outln!(
            "  blob        {}",
            if p {
                "present"
            } else {
                "MISSING from the artifact store"
            }
        );
    }
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
