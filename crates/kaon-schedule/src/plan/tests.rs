#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

use super::*;
use crate::testing::{ms, utc, utcs};

const MINUTE: i64 = 60_000;

fn hourly() -> Cron {
    Cron::parse("0 * * * *", "UTC").unwrap()
}

/// Hourly, last moved at 00:00, now 05:00:30 with a minute's grace: 05:00
/// is on time, 01:00 to 04:00 were missed.
fn after_a_pause(catch_up: CatchUp, limit: u32) -> Plan {
    plan(
        &hourly(),
        catch_up,
        limit,
        ms("2024-06-01T00:00:00"),
        ms("2024-06-01T05:00:30"),
        MINUTE,
    )
}

fn skipped(oldest: &str, newest: &str, n: u64) -> Option<Skipped> {
    Some(Skipped {
        oldest: ms(oldest),
        newest: ms(newest),
        count: SkipCount::Exactly(n),
    })
}

#[test]
fn skip_fires_only_the_tick_on_time() {
    let p = after_a_pause(CatchUp::Skip, 100);
    assert_eq!(utcs(&p.fire), ["2024-06-01T05:00:00"]);
    assert_eq!(
        p.skipped,
        skipped("2024-06-01T01:00:00", "2024-06-01T04:00:00", 4)
    );
    assert_eq!(p.newest(), Some(ms("2024-06-01T05:00:00")));
}

#[test]
fn latest_fires_the_newest_missed_tick_and_the_one_on_time() {
    let p = after_a_pause(CatchUp::Latest, 100);
    assert_eq!(
        utcs(&p.fire),
        ["2024-06-01T04:00:00", "2024-06-01T05:00:00"]
    );
    assert_eq!(
        p.skipped,
        skipped("2024-06-01T01:00:00", "2024-06-01T03:00:00", 3)
    );
}

#[test]
fn all_fires_every_missed_tick_oldest_first() {
    let p = after_a_pause(CatchUp::All, 100);
    assert_eq!(
        utcs(&p.fire),
        [
            "2024-06-01T01:00:00",
            "2024-06-01T02:00:00",
            "2024-06-01T03:00:00",
            "2024-06-01T04:00:00",
            "2024-06-01T05:00:00",
        ]
    );
    assert_eq!(p.skipped, None);
}

#[test]
fn all_fires_the_newest_up_to_the_limit() {
    let p = after_a_pause(CatchUp::All, 2);
    assert_eq!(
        utcs(&p.fire),
        [
            "2024-06-01T03:00:00",
            "2024-06-01T04:00:00",
            "2024-06-01T05:00:00"
        ]
    );
    assert_eq!(
        p.skipped,
        skipped("2024-06-01T01:00:00", "2024-06-01T02:00:00", 2)
    );
    // A limit of exactly the number missed skips nothing.
    assert_eq!(after_a_pause(CatchUp::All, 4).skipped, None);
    // A limit of 0 is a skip.
    assert_eq!(
        after_a_pause(CatchUp::All, 0),
        after_a_pause(CatchUp::Skip, 9)
    );
}

#[test]
fn nothing_missed_is_the_same_under_every_policy() {
    for catch_up in [CatchUp::Skip, CatchUp::Latest, CatchUp::All] {
        let p = plan(
            &hourly(),
            catch_up,
            100,
            ms("2024-06-01T04:00:00"),
            ms("2024-06-01T05:00:10"),
            MINUTE,
        );
        assert_eq!(utcs(&p.fire), ["2024-06-01T05:00:00"], "{catch_up}");
        assert_eq!(p.skipped, None);
    }
}

#[test]
fn a_tick_past_the_grace_is_missed() {
    // 05:00 is 90 s old with 60 s of grace.
    let p = plan(
        &hourly(),
        CatchUp::Skip,
        100,
        ms("2024-06-01T04:00:00"),
        ms("2024-06-01T05:01:30"),
        MINUTE,
    );
    assert!(p.fire.is_empty());
    assert_eq!(
        p.skipped,
        skipped("2024-06-01T05:00:00", "2024-06-01T05:00:00", 1)
    );
    // Exactly at the edge of the grace it is on time.
    let p = plan(
        &hourly(),
        CatchUp::Skip,
        100,
        ms("2024-06-01T04:00:00"),
        ms("2024-06-01T05:01:00"),
        MINUTE,
    );
    assert_eq!(utcs(&p.fire), ["2024-06-01T05:00:00"]);
    // With Latest the missed tick fires all the same.
    let p = plan(
        &hourly(),
        CatchUp::Latest,
        100,
        ms("2024-06-01T04:00:00"),
        ms("2024-06-01T05:01:30"),
        MINUTE,
    );
    assert_eq!(utcs(&p.fire), ["2024-06-01T05:00:00"]);
    assert_eq!(p.skipped, None);
}

#[test]
fn nothing_is_due_before_the_next_tick_or_when_time_stands_still() {
    let last = ms("2024-06-01T04:00:00");
    for now in [last - 1, last, last + 30 * MINUTE] {
        let p = plan(&hourly(), CatchUp::All, 100, last, now, MINUTE);
        assert_eq!(p, Plan::default(), "now {}", utc(now));
        assert_eq!(p.newest(), None);
    }
    // A negative grace counts as none.
    let p = plan(
        &hourly(),
        CatchUp::Skip,
        100,
        last,
        ms("2024-06-01T05:00:00"),
        -5,
    );
    assert_eq!(utcs(&p.fire), ["2024-06-01T05:00:00"]);
}

#[test]
fn a_week_of_seconds_is_planned_in_bounded_work() {
    let c = Cron::parse("* * * * * *", "UTC").unwrap();
    let last = ms("2024-01-01T00:00:00");
    let now = ms("2024-01-08T00:00:00");
    let started = std::time::Instant::now();
    let p = plan(&c, CatchUp::All, 100, last, now, 5_000);
    // Six on time (now - 5 s to now) and the newest 100 missed.
    assert_eq!(p.fire.len(), 106);
    assert_eq!(p.fire.last(), Some(&now));
    assert_eq!(p.fire.first(), Some(&(now - 105_000)));
    let s = p.skipped.unwrap();
    assert_eq!(s.oldest, last + 1_000);
    assert_eq!(s.newest, now - 106_000);
    assert_eq!(s.count, SkipCount::AtLeast(SKIP_COUNT_LIMIT as u64));
    assert_eq!(s.count.to_string(), "more than 1000");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn policies_read_and_print_as_in_files() {
    for c in [CatchUp::Skip, CatchUp::Latest, CatchUp::All] {
        assert_eq!(c.as_str().parse::<CatchUp>(), Ok(c));
        assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
    }
    for c in [Concurrency::Allow, Concurrency::Skip, Concurrency::Queue] {
        assert_eq!(c.to_string().parse::<Concurrency>(), Ok(c));
        assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
    }
    assert_eq!(CatchUp::default(), CatchUp::Latest);
    assert_eq!(Concurrency::default(), Concurrency::Skip);
    let e = "Latest".parse::<CatchUp>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "`Latest` is not a catch_up policy; use one of: skip, latest, all"
    );
    assert!(serde_json::from_str::<Concurrency>("\"wait\"").is_err());
}
