//! kaon's schedules and triggers: the pure logic of when they fire.
//!
//! A workflow file declares `[[workflow.schedule]]` tables (run when a cron
//! expression fires) and `[[workflow.trigger]]` tables (run when another
//! workflow's run succeeds); `kaon-model` reads them into [`ScheduleSpec`]
//! and [`TriggerSpec`], and the server stores them as JSON. This crate has
//! no clock and no I/O: every instant is passed in, as milliseconds since
//! the Unix epoch.
//!
//! - [`Cron`] reads a cron expression in an IANA time zone and lists its
//!   ticks ([`Cron::next_after`], [`Cron::due`]).
//! - [`plan`] decides which of the ticks due since a schedule last moved
//!   fire, by its [`CatchUp`] policy.
//! - [`TriggerSpec::bind`] turns a trigger's parameters into a run's, from
//!   the upstream run's outputs.
//!
//! ```
//! use kaon_schedule::{CatchUp, Cron, plan};
//!
//! let cron = Cron::parse("0 3 * * *", "Europe/Amsterdam")?;
//! // 2024-06-01T00:00:00Z, and three days later.
//! let (last, now) = (1_717_200_000_000, 1_717_459_200_000);
//! let p = plan(&cron, CatchUp::Latest, 100, last, now, 60_000);
//! assert_eq!(p.fire.len(), 1); // the newest missed 03:00
//! assert!(p.skipped.is_some()); // and two older ones
//! # Ok::<(), kaon_schedule::ScheduleError>(())
//! ```

mod cron;
mod error;
mod plan;
mod spec;
#[cfg(test)]
mod testing;

pub use cron::{Cron, DEFAULT_TIMEZONE, check_timezone};
pub use error::ScheduleError;
pub use plan::{
    CatchUp, Concurrency, DEFAULT_CATCH_UP_LIMIT, MAX_ON_TIME, Plan, SKIP_COUNT_LIMIT, SkipCount,
    Skipped, plan,
};
pub use spec::{Piece, ScheduleSpec, TriggerSpec, pieces};
