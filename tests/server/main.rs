//! `kaon server` end to end: a real server process, on SQLite and on a
//! real PostgreSQL, driven over HTTP.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

mod api;
mod artifacts;
mod auth;
mod cli;
mod harness;
mod launch;
mod schedules;
mod takeover;
mod ui;
