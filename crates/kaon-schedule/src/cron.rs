//! A cron expression read in a time zone, and the instants at which it fires.

use std::collections::VecDeque;
use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};

use crate::error::ScheduleError;

/// The time zone a schedule is read in when it names none.
pub const DEFAULT_TIMEZONE: &str = "UTC";

/// The nicknames a cron expression may be instead of fields.
const NICKNAMES: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
];

/// The fields of a five-field expression, with the values each takes.
const FIELDS_5: &[(&str, &str)] = &[
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L, W"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT (0 and 7 are Sunday), L, #"),
];
/// The fields of a six-field expression.
const FIELDS_6: &[(&str, &str)] = &[
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L, W"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT (0 and 7 are Sunday), L, #"),
];

/// How often [`Cron::due`] may widen its window when the walk back and the
/// walk forward disagree (they can, by a tick, around a change of clocks),
/// before it walks forward from the start of the range.
const MAX_WIDENINGS: usize = 4;

/// A cron expression read in a time zone.
///
/// Five fields (`minute hour day-of-month month day-of-week`), six (a
/// `second` field first), or a nickname (`@yearly`, `@annually`,
/// `@monthly`, `@weekly`, `@daily`, `@hourly`). The fields are Vixie cron's
/// with croner's additions (`L`, `W`, `#`, and `+` before the day of the
/// week to require both days).
///
/// The fields are matched against the wall clock of the time zone; every
/// instant in and out is milliseconds since the Unix epoch (UTC). Around a
/// change of clocks, as croner does it (and Vixie cron before it):
///
/// - a wall clock time that does not exist (spring forward): a schedule at
///   fixed times (`30 2 * * *`) fires at the first time after the gap on
///   that day; one with wildcards or steps in its time fields skips the
///   ticks that fall in the gap;
/// - a wall clock time that happens twice (fall back): a schedule at fixed
///   times fires once, at the first; one with wildcards or steps fires in
///   both passes.
#[derive(Clone)]
pub struct Cron {
    expr: String,
    zone: Tz,
    inner: croner::Cron,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cron")
            .field("expr", &self.expr)
            .field("timezone", &self.zone.name())
            .finish()
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expr, self.zone.name())
    }
}

impl Cron {
    /// Reads `expr` in the IANA time zone `timezone` (pass
    /// [`DEFAULT_TIMEZONE`] when the user named none).
    ///
    /// Fails with [`ScheduleError::UnknownTimeZone`] for a zone the
    /// database does not know (with the closest name when one is close),
    /// and [`ScheduleError::InvalidCron`] for an expression that does not
    /// parse (naming the field at fault) or that never fires (`0 0 30 2 *`).
    pub fn parse(expr: &str, timezone: &str) -> Result<Cron, ScheduleError> {
        let zone = parse_timezone(timezone)?;
        let inner = parse_expr(expr)?;
        let cron = Cron {
            expr: expr.trim().to_string(),
            zone,
            inner,
        };
        // 2000-01-01T00:00:00Z. With no year field, a pattern that matches
        // at all matches within 28 years (the calendar's cycle) of any date.
        const ANCHOR_MS: i64 = 946_684_800_000;
        if cron.next_after(ANCHOR_MS).is_none() {
            return Err(ScheduleError::InvalidCron {
                expr: expr.to_string(),
                reason: "it never fires: no date matches its day-of-month and month fields"
                    .to_string(),
            });
        }
        Ok(cron)
    }

    /// The expression as written (trimmed).
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The IANA name of the time zone it is read in.
    pub fn timezone(&self) -> &str {
        self.zone.name()
    }

    /// The first tick strictly after `ms`; `None` when there is none that
    /// croner can represent (past the year 5000) or `ms` is out of range.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let at = self.at(ms)?;
        let next = self.inner.find_next_occurrence(&at, false).ok()?;
        Some(next.timestamp_millis()).filter(|&t| t > ms)
    }

    /// The newest tick at or before `ms`, by a search backwards.
    fn at_or_before(&self, ms: i64, inclusive: bool) -> Option<i64> {
        let at = self.at(ms)?;
        let prev = self.inner.find_previous_occurrence(&at, inclusive).ok()?;
        Some(prev.timestamp_millis()).filter(|&t| t <= ms)
    }

    fn at(&self, ms: i64) -> Option<DateTime<Tz>> {
        DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.with_timezone(&self.zone))
    }

    /// The ticks in `(after_ms, upto_ms]`, oldest first, at most `max` of
    /// them: the newest `max` when there are more.
    ///
    /// The work is bounded by `max`, not by the length of the range: the
    /// newest `max` ticks are found by walking back from `upto_ms`, and the
    /// answer is then walked forwards from just before the oldest of them
    /// with [`Cron::next_after`], so that it is exactly the forward
    /// sequence of ticks. Where the two walks disagree (around a change of
    /// clocks they may, by a tick) the window is widened backwards a few
    /// times, and as a last resort walked forwards from `after_ms`, still
    /// keeping only the newest `max` in memory. A schedule that fires every
    /// second and was paused for a week costs about `2 * max` searches.
    pub fn due(&self, after_ms: i64, upto_ms: i64, max: usize) -> Vec<i64> {
        if max == 0 || upto_ms <= after_ms {
            return Vec::new();
        }
        let start = self.window_start(upto_ms, after_ms, max);
        self.due_from(start, after_ms, upto_ms, max)
    }

    /// [`Cron::due`] from a first guess of where its window starts.
    fn due_from(&self, mut start: i64, after_ms: i64, upto_ms: i64, max: usize) -> Vec<i64> {
        for _ in 0..MAX_WIDENINGS {
            let ticks = self.forward(start, upto_ms, max);
            if ticks.len() >= max || start <= after_ms {
                return ticks;
            }
            let missing = max - ticks.len();
            start = self.window_start(start, after_ms, missing + 1);
        }
        self.forward(after_ms, upto_ms, max)
    }

    /// An instant just before the `n`-th tick back from `upto_ms`
    /// (inclusive), or `after_ms` when fewer than `n` ticks lie after it.
    fn window_start(&self, upto_ms: i64, after_ms: i64, n: usize) -> i64 {
        let mut at = upto_ms;
        let mut inclusive = true;
        for _ in 0..n {
            match self.at_or_before(at, inclusive) {
                Some(t) if t > after_ms => at = t,
                _ => return after_ms,
            }
            inclusive = false;
        }
        (at - 1).max(after_ms)
    }

    /// The ticks in `(start, upto]` walked forwards, keeping the newest `max`.
    fn forward(&self, start: i64, upto_ms: i64, max: usize) -> Vec<i64> {
        let mut out = VecDeque::with_capacity(max.min(1024));
        let mut at = start;
        while let Some(t) = self.next_after(at) {
            if t > upto_ms {
                break;
            }
            if out.len() == max {
                out.pop_front();
            }
            out.push_back(t);
            at = t;
        }
        out.into()
    }
}

/// Checks that `name` is an IANA time zone name, as [`Cron::parse`] does.
pub fn check_timezone(name: &str) -> Result<(), ScheduleError> {
    parse_timezone(name).map(|_| ())
}

fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    if let Ok(tz) = name.parse::<Tz>() {
        return Ok(tz);
    }
    let names = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name());
    let suggestion = names
        .clone()
        .find(|n| n.eq_ignore_ascii_case(name))
        .or_else(|| {
            names
                .map(|n| {
                    let score =
                        strsim::jaro_winkler(&name.to_ascii_lowercase(), &n.to_ascii_lowercase());
                    (score, n)
                })
                .filter(|(score, _)| *score > 0.85)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, n)| n)
        })
        .map(str::to_string);
    Err(ScheduleError::UnknownTimeZone {
        zone: name.to_string(),
        suggestion,
    })
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

fn parse_expr(expr: &str) -> Result<croner::Cron, ScheduleError> {
    let invalid = |reason: String| ScheduleError::InvalidCron {
        expr: expr.to_string(),
        reason,
    };
    let trimmed = expr.trim();
    if trimmed.is_empty() {
        return Err(invalid("it is empty".to_string()));
    }
    if trimmed.starts_with('@') {
        if !NICKNAMES.iter().any(|n| n.eq_ignore_ascii_case(trimmed)) {
            let near = NICKNAMES
                .iter()
                .map(|n| (strsim::jaro_winkler(&trimmed.to_ascii_lowercase(), n), *n))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, n)| format!("did you mean `{n}`? "))
                .unwrap_or_default();
            return Err(invalid(format!(
                "`{trimmed}` is not a nickname; {near}the nicknames are {}",
                NICKNAMES.join(", ")
            )));
        }
    } else {
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        let names = match fields.len() {
            5 => FIELDS_5,
            6 => FIELDS_6,
            n => {
                return Err(invalid(format!(
                    "it has {n} field{}; write 5 ({}) or 6 (a second field first)",
                    if n == 1 { "" } else { "s" },
                    FIELDS_5.iter().map(|f| f.0).collect::<Vec<_>>().join(" ")
                )));
            }
        };
        // Parse each field alone (the others `*`), to name the one at fault.
        for (i, field) in fields.iter().enumerate() {
            let alone: Vec<&str> = (0..fields.len())
                .map(|j| if i == j { *field } else { "*" })
                .collect();
            if let Err(e) = parser().parse(&alone.join(" ")) {
                let (name, takes) = names[i];
                return Err(invalid(format!(
                    "the {name} field `{field}` is wrong: {}; it takes {takes}, with `*`, `,`, `-` and `/`",
                    cron_reason(&e)
                )));
            }
        }
    }
    parser()
        .parse(trimmed)
        .map_err(|e| invalid(cron_reason(&e)))
}

/// croner's message without its prefix, starting in lower case and ending
/// without a full stop.
fn cron_reason(e: &CronError) -> String {
    let text = match e {
        CronError::InvalidPattern(m) | CronError::ComponentError(m) => m.clone(),
        CronError::IllegalCharacters(m) => m
            .strip_prefix("CronPattern contains ")
            .unwrap_or(m)
            .to_string(),
        other => other.to_string(),
    };
    let text = text.trim().trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "croner rejects it".to_string(),
    }
}

#[cfg(test)]
mod tests;
