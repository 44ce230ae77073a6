//! What the subjects share: attempt orders and a unique run id per case.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use kaon_engine::event::{Invocation, OutputSpec};
use kaon_engine::{LaunchOrder, NodeId};

/// A run id no other case (in this or a concurrent test process) uses:
/// the local executor finds an attempt's process by its id among all of
/// the machine's processes.
pub fn run_id(executor: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "contract-{executor}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Attempt 1 of step `step` (node `node`) of `run`.
pub fn order(
    run: &str,
    node: u32,
    step: &str,
    invocation: Invocation,
    workdir: &Path,
    outputs: Vec<OutputSpec>,
) -> LaunchOrder {
    LaunchOrder {
        run: run.to_string(),
        node: NodeId(node),
        attempt: 1,
        step: step.to_string(),
        key: step.to_string(),
        invocation,
        env: Vec::new(),
        workdir: workdir.to_path_buf(),
        outputs,
        cpus: 1.0,
        memory: 0,
        adopt: false,
        inputs: Vec::new(),
        memo: None,
    }
}

/// A declared output; `path` relative to `workdir` for file and folder ones.
pub fn output(name: &str, ty: &str, workdir: &Path, path: Option<&str>) -> OutputSpec {
    OutputSpec {
        name: name.to_string(),
        ty: ty.parse().expect("a type"),
        path: path.map(|p| workdir.join(p)),
    }
}
