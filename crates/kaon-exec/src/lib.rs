//! kaon's executors: what runs a step's attempt and watches it end.
//!
//! The [`Executor`] contract follows Maestro's step runtime: launching is
//! idempotent per attempt (an attempt id is in the process's environment,
//! so a launch that may have happened before a crash is found instead of
//! repeated), the [`Handle`] returned is plain data the driver stores
//! (as [`Handle::to_stored`]) before it marks the step running, and the end
//! of an attempt, its outputs and its progress come back as [`ExecEvent`]s
//! on a channel.
//!
//! [`LocalExecutor`] runs command steps as child processes of this machine;
//! [`MemoryExecutor`] is its in-memory twin for tests, scripted per step.

pub mod files;
mod handle;
mod local;
pub mod memory;
pub mod outputs;
mod procfs;
pub mod spark;

pub use files::AttemptFiles;
pub use handle::{HANDLE_VERSION, Handle, HandleError};

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
pub use memory::MemoryExecutor;
pub use spark::{Callback, SparkExecutor};

use kaon_engine::{Event, LaunchOrder};
use serde_json::Value;

/// What an executor reports about an attempt: an engine event
/// ([`Event::StepProgressed`] or [`Event::StepExited`]) for a run, ready to
/// be fed to that run's state.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecEvent {
    /// The run.
    pub run: String,
    /// What happened.
    pub event: Event,
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
///   [`Event::StepExited`] follows every handle returned.
/// - [`Executor::reattach`] watches an attempt started by an earlier kaon
///   process, from its stored handle; it too ends in exactly one `Exited`
///   (with [`kaon_engine::Exit::Lost`] when the process is gone and left no
///   exit status, or the handle is not one of this executor's kinds).
/// - [`Executor::kill`] asks the attempt to stop (SIGTERM to its process
///   group); whatever of the group outlives the executor's grace period
///   gets SIGKILL before its `StepExited` is sent. Killing an attempt that
///   already ended (or a handle not of this executor's kinds) does nothing.
///
/// The suite in `crates/kaon-exec/tests/contract/` checks every executor
/// against this contract.
pub trait Executor: Send + Sync {
    /// Launches (or, with `adopt`, finds) an attempt.
    fn start(&self, order: &LaunchOrder) -> Result<Handle, LaunchError>;
    /// Watches an attempt launched before a restart.
    fn reattach(&self, order: &LaunchOrder, handle: &Handle);
    /// Stops an attempt.
    fn kill(&self, handle: &Handle);
    /// Facts about how `order` would run that its text does not fix (the
    /// exact Spark version a `"3.5"` resolves to), for its memo key.
    /// `Null` when there are none.
    fn describe(&self, order: &LaunchOrder) -> Value {
        let _ = order;
        Value::Null
    }
}
