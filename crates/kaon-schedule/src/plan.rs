//! What a schedule does about the ticks it missed, and about a run still
//! going when the next is due: the policies, and [`plan`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cron::Cron;
use crate::error::ScheduleError;

/// The default of [`crate::ScheduleSpec::catch_up_limit`].
pub const DEFAULT_CATCH_UP_LIMIT: u32 = 100;

/// At most this many on-time ticks fire in one [`plan`]; older ones are
/// treated as missed. Only a grace period many times the schedule's period
/// reaches it.
pub const MAX_ON_TIME: usize = 10_000;

/// Skipped ticks are counted one by one up to this many; past it the count
/// is a lower bound ([`SkipCount::AtLeast`]).
pub const SKIP_COUNT_LIMIT: usize = 1_000;

/// What a schedule does with the ticks it missed (the server was down, the
/// schedule paused).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Fire none of them.
    Skip,
    /// Fire the newest one only.
    #[default]
    Latest,
    /// Fire them all, oldest first, up to the catch-up limit (the newest).
    All,
}

impl CatchUp {
    /// The values as written in files.
    pub const NAMES: &'static [&'static str] = &["skip", "latest", "all"];

    /// The value as written in files.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Skip => "skip",
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
        }
    }
}

impl fmt::Display for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CatchUp {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(CatchUp::Skip),
            "latest" => Ok(CatchUp::Latest),
            "all" => Ok(CatchUp::All),
            _ => Err(ScheduleError::UnknownPolicy {
                what: "catch_up",
                value: s.to_string(),
                allowed: Self::NAMES,
            }),
        }
    }
}

/// What happens when a run is due while the previous one of the same
/// schedule or trigger is still going.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// Start it anyway: runs overlap.
    Allow,
    /// Do not start it; it is recorded as skipped.
    #[default]
    Skip,
    /// Start it when the previous one has finished.
    Queue,
}

impl Concurrency {
    /// The values as written in files.
    pub const NAMES: &'static [&'static str] = &["allow", "skip", "queue"];

    /// The value as written in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Concurrency::Allow => "allow",
            Concurrency::Skip => "skip",
            Concurrency::Queue => "queue",
        }
    }
}

impl fmt::Display for Concurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Concurrency {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Concurrency::Allow),
            "skip" => Ok(Concurrency::Skip),
            "queue" => Ok(Concurrency::Queue),
            _ => Err(ScheduleError::UnknownPolicy {
                what: "concurrency",
                value: s.to_string(),
                allowed: Self::NAMES,
            }),
        }
    }
}

/// What to do with the ticks due since a schedule last moved: see [`plan`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The ticks to fire, oldest first (ms since the epoch).
    pub fire: Vec<i64>,
    /// The ticks not fired, when there are any.
    pub skipped: Option<Skipped>,
}

impl Plan {
    /// The newest tick the plan accounts for, fired or skipped: where the
    /// schedule's progress moves to once the plan is recorded.
    pub fn newest(&self) -> Option<i64> {
        self.fire
            .last()
            .copied()
            .or(self.skipped.as_ref().map(|s| s.newest))
    }
}

/// The ticks a [`Plan`] does not fire: every tick of the schedule from
/// `oldest` to `newest`, both included, and nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The oldest skipped tick (ms since the epoch).
    pub oldest: i64,
    /// The newest skipped tick (ms since the epoch).
    pub newest: i64,
    /// How many there are.
    pub count: SkipCount,
}

/// How many ticks were skipped: counted exactly up to [`SKIP_COUNT_LIMIT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipCount {
    /// Exactly this many.
    Exactly(u64),
    /// More than [`SKIP_COUNT_LIMIT`] (this many were counted).
    AtLeast(u64),
}

impl fmt::Display for SkipCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipCount::Exactly(n) => write!(f, "{n}"),
            SkipCount::AtLeast(n) => write!(f, "more than {n}"),
        }
    }
}

/// Which of the ticks due in `(last_ms, now_ms]` to fire.
///
/// `last_ms` is the newest tick already accounted for (fired or skipped;
/// for a new schedule, the time it was deployed), `now_ms` the present, all
/// in ms since the epoch.
///
/// - A tick `t` with `now_ms - grace_ms <= t <= now_ms` is **on time** and
///   always fires, whatever the policy (at most [`MAX_ON_TIME`] of them, the
///   newest; older ones count as missed).
/// - A tick `t` with `last_ms < t < now_ms - grace_ms` is **missed**, and
///   `catch_up` decides:
///   - [`CatchUp::Skip`]: none of the missed ticks fires;
///   - [`CatchUp::Latest`]: the newest missed tick fires;
///   - [`CatchUp::All`]: the newest `limit` missed ticks fire (all of them
///     when there are no more than `limit`; none when `limit` is 0).
///
/// [`Plan::fire`] holds the ticks to fire, oldest first: the chosen missed
/// ones, then the on-time ones. [`Plan::skipped`] holds the missed ticks not
/// fired, which are always older than every fired one: the server records
/// one row per fired tick and one for the newest skipped tick, so that the
/// schedule's progress ([`Plan::newest`]) moves past all of them. A negative
/// `grace_ms` counts as 0. Nothing is due when `now_ms <= last_ms`.
///
/// The work is bounded by the number of ticks fired plus
/// [`SKIP_COUNT_LIMIT`], however long the schedule was stopped.
pub fn plan(
    cron: &Cron,
    catch_up: CatchUp,
    limit: u32,
    last_ms: i64,
    now_ms: i64,
    grace_ms: i64,
) -> Plan {
    if now_ms <= last_ms {
        return Plan::default();
    }
    // Ticks before this instant are missed.
    let cutoff = now_ms.saturating_sub(grace_ms.max(0));
    let on_time_after = cutoff.saturating_sub(1).max(last_ms);
    let on_time = cron.due(on_time_after, now_ms, MAX_ON_TIME);
    // Missed ticks: up to the cutoff, or up to the oldest on-time tick fired
    // when more were on time than fire.
    let missed_upto = match on_time.first() {
        Some(&first) if on_time.len() == MAX_ON_TIME => first - 1,
        _ => on_time_after,
    };
    let take = match catch_up {
        CatchUp::Skip => 0,
        CatchUp::Latest => 1,
        CatchUp::All => usize::try_from(limit).unwrap_or(usize::MAX),
    };
    // One more than fire, to learn the newest skipped tick.
    let missed = cron.due(last_ms, missed_upto, take.saturating_add(1));
    let (skipped_newest, fired_missed) = if missed.len() > take {
        (missed.first().copied(), &missed[1..])
    } else {
        (None, &missed[..])
    };
    let skipped = skipped_newest.map(|newest| skipped_range(cron, last_ms, newest));
    let mut fire = fired_missed.to_vec();
    fire.extend(on_time);
    Plan { fire, skipped }
}

/// The skipped ticks in `(last_ms, newest]`, counted up to the limit.
fn skipped_range(cron: &Cron, last_ms: i64, newest: i64) -> Skipped {
    let oldest = cron.next_after(last_ms).unwrap_or(newest).min(newest);
    let mut count: u64 = 1;
    let mut at = oldest;
    while at < newest {
        if count as usize >= SKIP_COUNT_LIMIT {
            return Skipped {
                oldest,
                newest,
                count: SkipCount::AtLeast(count),
            };
        }
        match cron.next_after(at) {
            Some(t) if t <= newest => {
                count += 1;
                at = t;
            }
            _ => break,
        }
    }
    Skipped {
        oldest,
        newest,
        count: SkipCount::Exactly(count),
    }
}

#[cfg(test)]
mod tests;
