//! Helpers of the unit tests: instants written as UTC date-times.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

use chrono::{DateTime, Utc};

/// Milliseconds of a UTC date-time written `2024-03-31T01:30:00`.
pub(crate) fn ms(s: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// The UTC date-time of an instant, as [`ms`] reads it.
pub(crate) fn utc(t: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(t)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// [`utc`] of each.
pub(crate) fn utcs(ticks: &[i64]) -> Vec<String> {
    ticks.iter().map(|&t| utc(t)).collect()
}
