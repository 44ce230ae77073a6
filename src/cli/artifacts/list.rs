//! `kaon artifacts list`: artifacts, newest first.

use std::process::ExitCode;

use anyhow::Result;
use kaon_store::ArtifactFilter;

use super::{Format, Lookup, short, size, to_json};

pub(super) async fn list(
    store: &impl Lookup,
    f: &ArtifactFilter,
    format: Format,
) -> Result<ExitCode> {
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
