//! What can be wrong with a schedule or a trigger.

use thiserror::Error;

/// An error of this crate. Each variant says what was wrong and carries
/// what a caller needs to point at it or to act on it.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A cron expression that does not parse or never fires.
    #[error("`{expr}` is not a cron expression: {reason}")]
    InvalidCron {
        /// The expression as written.
        expr: String,
        /// What is wrong with it, naming the field when one is at fault.
        reason: String,
    },
    /// A time zone that is not in the IANA database.
    #[error("unknown time zone `{zone}`{}", suggestion_text(.suggestion))]
    UnknownTimeZone {
        /// The name as written.
        zone: String,
        /// The closest known name, when one is close.
        suggestion: Option<String>,
    },
    /// A policy name (`catch_up`, `concurrency`) that is not one of its values.
    #[error("`{value}` is not a {what} policy; use one of: {}", allowed.join(", "))]
    UnknownPolicy {
        /// Which setting (`catch_up`, `concurrency`).
        what: &'static str,
        /// The value as written.
        value: String,
        /// The values it takes.
        allowed: &'static [&'static str],
    },
    /// A `${...}` in a trigger parameter that is not `${outputs.NAME}`.
    #[error(
        "parameter `{param}`: `{text}` is not a reference to an upstream output; write `${{outputs.NAME}}`, or `$${{` for a literal `${{`"
    )]
    InvalidReference {
        /// The parameter whose value holds it.
        param: String,
        /// The offending text.
        text: String,
        /// Its byte offset in the value.
        offset: usize,
    },
    /// A trigger parameter names an output the upstream run did not produce.
    #[error(
        "parameter `{param}` takes `${{outputs.{output}}}`, but the upstream run has no output `{output}` (it has: {})",
        if available.is_empty() { "none".to_string() } else { available.join(", ") }
    )]
    MissingOutput {
        /// The parameter whose value names it.
        param: String,
        /// The output's name.
        output: String,
        /// The outputs the upstream run has.
        available: Vec<String>,
    },
}

fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("; did you mean `{s}`?"),
        None => "; use an IANA name such as `UTC` or `Europe/Amsterdam`".to_string(),
    }
}
