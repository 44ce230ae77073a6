//! What the runtime tells the outside while it drives: state changes on a
//! broadcast stream (for a UI or an API's event stream), and, per root run,
//! an [`Observer`] (the terminal's progress view).

use std::collections::HashMap;
use std::sync::Arc;

use kaon_engine::{NodeRecord, RunState, RunStatus, ScopeRecord};

/// Told about one root run as it is driven. Calls come from the runtime's
/// loop, after the changes they report were committed; an observer must
/// not block.
pub trait Observer: Send {
    /// Nodes changed in the last tick (already committed).
    fn changed(
        &mut self,
        root: &str,
        runs: &HashMap<&str, &RunState>,
        changed: &[(String, NodeRecord)],
    );
    /// A message for the user.
    fn note(&mut self, msg: &str);
    /// The root run ended.
    fn finished(&mut self, state: &RunState);
}

/// An observer that shows nothing.
pub struct Quiet;

impl Observer for Quiet {
    fn changed(&mut self, _: &str, _: &HashMap<&str, &RunState>, _: &[(String, NodeRecord)]) {}
    fn note(&mut self, _: &str) {}
    fn finished(&mut self, _: &RunState) {}
}

/// A committed change, as the runtime's stream carries it. Changes of one
/// tick come batched: one `Nodes` per run per commit, however many nodes
/// changed, so a sweep of 30,000 items costs a subscriber a few messages
/// a second rather than one per item.
#[derive(Clone, Debug)]
pub enum Change {
    /// A run was created (a root run, or a child run of a sub-workflow step).
    RunCreated {
        /// The run.
        run: String,
        /// Its root run (itself for a root).
        root: String,
        /// The workflow's name.
        workflow: String,
    },
    /// Nodes of a run changed state or facts, or scopes were made (a
    /// for-each's items, a repeat's pass, a branch taken); committed.
    Nodes {
        /// The run.
        run: String,
        /// Its root run.
        root: String,
        /// The nodes as committed.
        nodes: Arc<Vec<NodeRecord>>,
        /// Scopes the same commit made (the nodes in them are among
        /// `nodes` once they change).
        scopes: Arc<Vec<ScopeRecord>>,
    },
    /// A run ended; committed.
    RunFinished {
        /// The run.
        run: String,
        /// Its root run.
        root: String,
        /// How it ended.
        status: RunStatus,
    },
    /// The runtime let go of a root run without ending it (shutdown, or
    /// the caller detached); another process can carry it on.
    Released {
        /// The root run.
        run: String,
    },
}
