//! Spark steps rendered into what the executor submits.

use std::path::{Component, Path, PathBuf};

use kaon_model::constraints::Constraints;
use kaon_model::spec::SparkStep;

use super::resolve::Ctx;
use crate::error::EvalError;
use crate::eval;
use crate::event::Invocation;

/// Renders a Spark step for one attempt. Local paths (the application,
/// jars, py-files) are made absolute against the working directory; URLs
/// (`hdfs://`, `s3a://`, `local:`) pass as given.
pub(super) fn spark_invocation(
    s: &SparkStep,
    constraints: Option<&Constraints>,
    workdir: &Path,
    ctx: &Ctx<'_>,
) -> Result<Invocation, EvalError> {
    let place = |p: &str| -> String {
        if p.contains(':') && !p.starts_with('/') {
            p.to_string()
        } else {
            normalize(workdir.join(p)).to_string_lossy().into_owned()
        }
    };
    Ok(Invocation::Spark {
        step: Box::new(s.render(|t| eval::render(t, ctx), place)?),
        constraints: constraints.filter(|c| !c.is_empty()).map(|c| c.to_string()),
    })
}

pub(super) fn normalize(p: PathBuf) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}
