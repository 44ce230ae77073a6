//! The `kaon` binary's run machinery, as a library so that benchmarks and
//! tests use the same code as the binary: the driver loop that joins the
//! engine, the state store and the executor, and the progress display.
//! The command line itself (`src/cli/`) belongs to the binary only.

pub mod config;
pub mod driver;
pub mod memo;
pub mod out;
pub mod progress;
pub mod secrets;
