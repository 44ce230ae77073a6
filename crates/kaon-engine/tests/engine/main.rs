//! The scheduler state machine driven by hand: workflows built from TOML
//! text, events fed one by one, and the actions and node states it answers
//! with checked. No executor, no store, no clock: time is a number the test
//! moves, and every process exits the way the test says.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

mod cancel;
mod child;
mod exits;
mod expand;
mod finish;
mod history;
mod launch;
mod recovery;
mod retry;
mod support;
mod timers;
mod waits;
