//! The executor contract suite (STYLE.md §3): the properties every
//! executor promises (see `kaon_exec::Executor`), written once in
//! [`suite`] and run against the in-memory twin, the local process
//! executor and the Spark executor, one test per executor and property
//! (`twin::kill_stops_a_running_attempt`, `spark::...`).
//!
//! The Spark cases need a Spark 3.5 runtime (`cargo run -- spark install
//! 3.5`, which `.ci/run` does); without one they fail, unless
//! `KAON_TEST_SKIP_SPARK=1` opts out.
#![allow(clippy::unwrap_used)] // a case that cannot proceed should panic right there

mod common;
mod local;
mod spark;
mod suite;
mod twin;
