//! Memoization: a step's memo key, and reuse of an earlier step run with
//! the same key.
//!
//! The key is the BLAKE3 digest of a `MemoKey` record
//! (`artifacts/kaon_artifacts.proto`): the step kind, its command line with
//! every reference substituted, its environment (the step's `env` and its
//! for-each variables, not the run-wide `KAON_*` variables), working
//! directory, declared outputs, the content of its code (the program that
//! runs, script files on the command line, and `code` entries), and the
//! digests of the artifacts it reads. Parameters enter through the command
//! line they are substituted into, so a parameter a step does not use does
//! not change its key.

pub mod explain;
mod key;
pub mod launch;
mod reuse;

pub use key::{CodeCache, Hidden, memo_key};
pub use reuse::{Hit, lookup, plan, restore};
