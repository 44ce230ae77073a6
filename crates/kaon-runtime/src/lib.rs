//! kaon's runtime: drives any number of runs in one process.
//!
//! A [`Runner`] owns the state store, the executor and the artifact store,
//! and drives every run submitted to it in one loop (see
//! [`Runner`] for why one loop rather than a task per run): it feeds
//! events to each run's engine state ([`kaon_engine::RunState`]),
//! commits every transition before carrying out its actions, answers the
//! engine's memo lookups ([`memo`]), admits steps against the machine's
//! capacity ([`Capacity`]), fires timers, starts child runs, reads the
//! store's inbox (signals and cancels from other processes) and publishes
//! committed changes ([`Change`]) to subscribers.
//!
//! `kaon run` is a thin client of it; a server is another.

mod admission;
mod driver;
mod error;
pub mod memo;
mod observe;
mod owner;
pub mod rows;
mod runner;
pub mod secrets;
mod timers;

pub use admission::Capacity;
pub use error::{RuntimeError, SecretError};
pub use kaon_model::ids::RunId;
pub use observe::{Change, Observer, Quiet};
pub use owner::{base_dir, now_ms, owner_alive, owner_id, workflow_digest};
pub use runner::{NewRun, ResumedRun, RunHandle, Runner, RuntimeOptions};
pub use secrets::Sealer;
