//! kaon's executors: what runs a step's attempt and watches it end.
//!
//! The [`Executor`] contract follows Maestro's step runtime: launching is
//! idempotent per attempt (an attempt id is in the process's environment,
//! so a launch that may have happened before a crash is found instead of
//! repeated), the handle returned is plain data the driver stores before it
//! marks the step running, and the end of an attempt, its outputs and its
//! progress come back as [`ExecEvent`]s on a channel.
//!
//! [`LocalExecutor`] runs command steps as child processes of this machine.

mod files;
mod local;
mod procfs;

use std::time::Duration;

pub use files::AttemptFiles;

/// True when `pid` is alive and started at `start` (clock ticks after boot,
/// as in `/proc/<pid>/stat`): the same process, not a reused pid.
pub fn process_alive(pid: i32, start: u64) -> bool {
    procfs::alive(pid, start)
}

/// The start time of `pid` (clock ticks after boot), if it exists.
pub fn process_start(pid: i32) -> Option<u64> {
    procfs::stat(pid).map(|s| s.start)
}
pub use local::LocalExecutor;

use kaon_engine::{Exit, LaunchOrder, NodeId};
use serde_json::{Map, Value};

/// What an executor reports about an attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecEvent {
    /// The step printed progress.
    Progress {
        /// The run.
        run: String,
        /// The node.
        node: NodeId,
        /// The attempt.
        attempt: u32,
        /// Percent complete.
        percent: Option<f32>,
        /// Message.
        message: Option<String>,
    },
    /// The attempt ended.
    Exited {
        /// The run.
        run: String,
        /// The node.
        node: NodeId,
        /// The attempt.
        attempt: u32,
        /// How.
        exit: Exit,
        /// Value outputs it handed back and file/dir outputs that exist.
        outputs: Map<String, Value>,
        /// What is wrong with its outputs.
        problems: Vec<String>,
    },
}

/// Why an attempt could not be launched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LaunchError {
    /// What went wrong, for people.
    pub message: String,
    /// True when the platform is to blame (out of processes, disk full);
    /// false when the step's settings are (program not found).
    pub platform: bool,
}

/// Runs attempts and watches them.
///
/// Contract:
/// - [`Executor::start`] launches the attempt and returns its handle, or
///   says why it could not. With `order.adopt` set, a process already
///   running (or already finished) for the same run, node and attempt is
///   taken over instead of launching a second one. Exactly one
///   [`ExecEvent::Exited`] follows every handle returned.
/// - [`Executor::reattach`] watches an attempt started by an earlier kaon
///   process, from its stored handle; it too ends in exactly one `Exited`
///   (with [`Exit::Lost`] when the process is gone and left no exit status).
/// - [`Executor::kill`] asks the attempt to stop (SIGTERM to its process
///   group, SIGKILL after `grace`); its `Exited` still follows. Killing an
///   attempt that already ended does nothing.
pub trait Executor: Send + Sync {
    /// Launches (or, with `adopt`, finds) an attempt.
    fn start(&self, order: &LaunchOrder) -> Result<Value, LaunchError>;
    /// Watches an attempt launched before a restart.
    fn reattach(&self, order: &LaunchOrder, handle: &Value);
    /// Stops an attempt.
    fn kill(&self, handle: &Value, grace: Duration);
}
