//! The engine's errors.

use crate::event::NodeId;

/// What can go wrong in the engine; every case is a bug in the caller or a
/// damaged store, never a step failing (that is a state, not an error).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An event named a node the run does not have.
    #[error("run {run} has no node {node}")]
    UnknownNode {
        /// The run.
        run: String,
        /// The node.
        node: NodeId,
    },
    /// The stored run does not fit the workflow it names.
    #[error("run {run} cannot be restored: {reason}")]
    Restore {
        /// The run.
        run: String,
        /// What does not fit.
        reason: String,
    },
}
