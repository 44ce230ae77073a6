//! The `kaon` binary's own pieces, as a library so that benchmarks and
//! tests use the same code as the binary: configuration, output and the
//! progress display. Runs are driven by `kaon_runtime`.
//! The command line itself (`src/cli/`) belongs to the binary only.

pub mod config;
pub mod out;
pub mod progress;
