#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

use super::*;

use crate::testing::{ms, utc, utcs};

fn cron(expr: &str, tz: &str) -> Cron {
    Cron::parse(expr, tz).unwrap_or_else(|e| panic!("{expr} in {tz}: {e}"))
}

/// The next `n` ticks after `from` (a UTC date-time), as UTC date-times.
fn next_n(c: &Cron, from: &str, n: usize) -> Vec<String> {
    let mut at = ms(from);
    (0..n)
        .map(|_| {
            at = c.next_after(at).unwrap();
            utc(at)
        })
        .collect()
}

#[test]
fn five_fields_fire_strictly_after() {
    let c = cron("0 3 * * *", "UTC");
    assert_eq!(
        next_n(&c, "2024-06-01T00:00:00", 2),
        ["2024-06-01T03:00:00", "2024-06-02T03:00:00"]
    );
    // On a tick, the next one is the one after it.
    assert_eq!(
        next_n(&c, "2024-06-01T03:00:00", 1),
        ["2024-06-02T03:00:00"]
    );
    // Weekdays, lists and ranges.
    let c = cron("15 9-10 * * MON-FRI", "UTC");
    assert_eq!(
        next_n(&c, "2024-06-07T10:00:00", 3), // a Friday
        [
            "2024-06-07T10:15:00",
            "2024-06-10T09:15:00",
            "2024-06-10T10:15:00"
        ]
    );
    assert_eq!(c.expr(), "15 9-10 * * MON-FRI");
    assert_eq!(c.timezone(), "UTC");
}

#[test]
fn six_fields_have_seconds_first() {
    let c = cron("*/15 * * * * *", "UTC");
    assert_eq!(
        next_n(&c, "2024-06-01T00:00:00", 3),
        [
            "2024-06-01T00:00:15",
            "2024-06-01T00:00:30",
            "2024-06-01T00:00:45"
        ]
    );
    // Part of a second past a tick still waits for the next.
    let half = ms("2024-06-01T00:00:15") + 500;
    assert_eq!(c.next_after(half), Some(ms("2024-06-01T00:00:30")));
    let c = cron("30 0 3 * * *", "UTC");
    assert_eq!(
        next_n(&c, "2024-06-01T00:00:00", 1),
        ["2024-06-01T03:00:30"]
    );
}

#[test]
fn nicknames() {
    let c = cron("@hourly", "UTC");
    assert_eq!(
        next_n(&c, "2024-06-01T10:20:00", 2),
        ["2024-06-01T11:00:00", "2024-06-01T12:00:00"]
    );
    let c = cron("@DAILY", "UTC");
    assert_eq!(
        next_n(&c, "2024-06-01T10:20:00", 1),
        ["2024-06-02T00:00:00"]
    );
    let c = cron("@weekly", "UTC");
    assert_eq!(
        next_n(&c, "2024-06-01T10:20:00", 1),
        ["2024-06-02T00:00:00"]
    ); // a Sunday
}

#[test]
fn the_wall_clock_of_the_time_zone() {
    // 03:00 in Amsterdam is 01:00Z in summer (CEST) and 02:00Z in winter (CET).
    let c = cron("0 3 * * *", "Europe/Amsterdam");
    assert_eq!(
        next_n(&c, "2024-06-01T00:00:00", 1),
        ["2024-06-01T01:00:00"]
    );
    assert_eq!(
        next_n(&c, "2024-12-01T00:00:00", 1),
        ["2024-12-01T02:00:00"]
    );
    let c = cron("0 9 * * *", "America/New_York");
    assert_eq!(
        next_n(&c, "2024-06-01T00:00:00", 1),
        ["2024-06-01T13:00:00"]
    );
    assert_eq!(
        next_n(&c, "2024-12-01T00:00:00", 1),
        ["2024-12-01T14:00:00"]
    );
    assert_eq!(c.timezone(), "America/New_York");
}

#[test]
fn spring_forward_gap_fires_after_the_gap() {
    // 2024-03-31 in Amsterdam: 02:00 CET jumps to 03:00 CEST; 02:30 does not
    // exist, and the daily 02:30 fires at 03:00 CEST (01:00Z) instead.
    let c = cron("30 2 * * *", "Europe/Amsterdam");
    assert_eq!(
        next_n(&c, "2024-03-30T00:00:00", 3),
        [
            "2024-03-30T01:30:00", // 02:30 CET
            "2024-03-31T01:00:00", // 03:00 CEST
            "2024-04-01T00:30:00", // 02:30 CEST
        ]
    );
    // 2024-03-10 in New York: 02:00 EST jumps to 03:00 EDT.
    let c = cron("30 2 * * *", "America/New_York");
    assert_eq!(
        next_n(&c, "2024-03-09T00:00:00", 3),
        [
            "2024-03-09T07:30:00", // 02:30 EST
            "2024-03-10T07:00:00", // 03:00 EDT
            "2024-03-11T06:30:00", // 02:30 EDT
        ]
    );
    // A schedule with a wildcard hour skips the ticks in the gap.
    let c = cron("30 * * * *", "Europe/Amsterdam");
    assert_eq!(
        next_n(&c, "2024-03-31T00:00:00", 2),
        ["2024-03-31T00:30:00", "2024-03-31T01:30:00"] // 01:30 CET, 03:30 CEST
    );
}

#[test]
fn fall_back_overlap_fires_fixed_times_once_and_wildcards_twice() {
    // 2024-10-27 in Amsterdam: 03:00 CEST falls back to 02:00 CET, so 02:30
    // happens twice (00:30Z and 01:30Z); the daily 02:30 fires at the first.
    let c = cron("30 2 * * *", "Europe/Amsterdam");
    assert_eq!(
        next_n(&c, "2024-10-26T00:00:00", 3),
        [
            "2024-10-26T00:30:00",
            "2024-10-27T00:30:00",
            "2024-10-28T01:30:00"
        ]
    );
    // Starting inside the repeated hour, it waits for the next day.
    assert_eq!(
        next_n(&c, "2024-10-27T00:45:00", 1),
        ["2024-10-28T01:30:00"]
    );
    // 2024-11-03 in New York: 02:00 EDT falls back to 01:00 EST.
    let c = cron("30 1 * * *", "America/New_York");
    assert_eq!(
        next_n(&c, "2024-11-02T12:00:00", 2),
        ["2024-11-03T05:30:00", "2024-11-04T06:30:00"]
    );
    // Every half hour fires in both passes of the repeated hour.
    let c = cron("*/30 * * * *", "Europe/Amsterdam");
    assert_eq!(
        utcs(&c.due(ms("2024-10-26T23:45:00"), ms("2024-10-27T02:15:00"), 100)),
        [
            "2024-10-27T00:00:00", // 02:00 CEST
            "2024-10-27T00:30:00", // 02:30 CEST
            "2024-10-27T01:00:00", // 02:00 CET
            "2024-10-27T01:30:00", // 02:30 CET
            "2024-10-27T02:00:00", // 03:00 CET
        ]
    );
}

#[test]
fn due_is_the_half_open_range_oldest_first() {
    let c = cron("0 * * * *", "UTC");
    let after = ms("2024-06-01T00:00:00");
    let upto = ms("2024-06-01T03:00:00");
    // A tick at `after` is excluded; one at `upto` is included.
    assert_eq!(
        utcs(&c.due(after, upto, 10)),
        [
            "2024-06-01T01:00:00",
            "2024-06-01T02:00:00",
            "2024-06-01T03:00:00"
        ]
    );
    // At most `max`: the newest.
    assert_eq!(
        utcs(&c.due(after, upto, 2)),
        ["2024-06-01T02:00:00", "2024-06-01T03:00:00"]
    );
    assert!(c.due(after, upto, 0).is_empty());
    assert!(c.due(upto, after, 10).is_empty());
    assert!(c.due(upto, upto, 10).is_empty());
    // Part of a second past the window's end changes nothing.
    assert_eq!(c.due(after, upto + 999, 10).len(), 3);
    assert!(c.due(after + 1, after + 3_599_999, 10).is_empty());
}

#[test]
fn due_after_a_long_pause_does_bounded_work() {
    // Every second, paused for a week: 604,800 ticks, of which the newest 100.
    let c = cron("* * * * * *", "UTC");
    let after = ms("2024-01-01T00:00:00");
    let upto = ms("2024-01-08T00:00:00");
    let started = std::time::Instant::now();
    let ticks = c.due(after, upto, 100);
    assert_eq!(ticks.len(), 100);
    assert_eq!(ticks.last(), Some(&upto));
    assert_eq!(ticks.first(), Some(&(upto - 99_000)));
    assert!(ticks.windows(2).all(|w| w[1] - w[0] == 1_000));
    // Walking all of them takes seconds in a debug build; this takes a
    // few hundred searches.
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

/// `due` is exactly the newest `max` of the forward walk, for every window
/// around both changes of clocks, for schedules of each kind.
#[test]
fn due_agrees_with_walking_forwards_around_clock_changes() {
    for (expr, tz, from) in [
        ("30 2 * * *", "Europe/Amsterdam", "2024-10-20T00:00:00"),
        ("30 2 * * *", "Europe/Amsterdam", "2024-03-25T00:00:00"),
        ("*/30 * * * *", "Europe/Amsterdam", "2024-10-26T20:00:00"),
        ("*/30 * * * *", "Europe/Amsterdam", "2024-03-30T20:00:00"),
        ("15 1-3 * * *", "America/New_York", "2024-11-01T00:00:00"),
        ("15 1-3 * * *", "America/New_York", "2024-03-08T00:00:00"),
        ("0 */20 * * * *", "America/New_York", "2024-11-03T04:00:00"),
    ] {
        let c = cron(expr, tz);
        let start = ms(from);
        let mut all = vec![start];
        for _ in 0..40 {
            all.push(c.next_after(*all.last().unwrap()).unwrap());
        }
        let all = &all[1..];
        for lo in 0..all.len() {
            for hi in lo..all.len() {
                for max in [1, 2, 3, 7] {
                    let after = all[lo] - 1;
                    let upto = all[hi];
                    let want: Vec<i64> =
                        all[lo..=hi].iter().rev().take(max).rev().copied().collect();
                    assert_eq!(
                        c.due(after, upto, max),
                        want,
                        "{expr} in {tz}, ({}, {}], max {max}",
                        utc(after),
                        utc(upto)
                    );
                }
            }
        }
    }
}

#[test]
fn bad_expressions_say_what_is_wrong() {
    let reason = |expr: &str| match Cron::parse(expr, "UTC") {
        Err(ScheduleError::InvalidCron { reason, .. }) => reason,
        other => panic!("{expr}: {other:?}"),
    };
    assert!(reason("60 * * * *").starts_with("the minute field `60` is wrong"));
    assert!(reason("60 * * * *").contains("0-59"));
    assert!(reason("0 0 32 * *").starts_with("the day-of-month field `32` is wrong"));
    assert!(reason("0 0 * 13 *").starts_with("the month field `13` is wrong"));
    assert!(reason("0 0 * * MON-FOO").starts_with("the day-of-week field"));
    assert!(reason("61 0 0 * * *").starts_with("the second field `61` is wrong"));
    assert!(reason("*/0 * * * *").contains("step cannot be zero"));
    assert!(reason("* * *").starts_with("it has 3 fields"));
    // Six fields are read with seconds first, so a year lands in day-of-week.
    assert!(reason("0 0 1 1 * 2030").starts_with("the day-of-week field `2030` is wrong"));
    assert!(reason("* * * * * * *").starts_with("it has 7 fields"));
    assert_eq!(reason("  "), "it is empty");
    assert!(reason("@dayly").contains("did you mean `@daily`?"));
    assert!(reason("0 0 30 2 *").contains("never fires"));
    let e = Cron::parse("60 * * * *", "UTC").unwrap_err().to_string();
    assert!(
        e.starts_with("`60 * * * *` is not a cron expression: the minute field"),
        "{e}"
    );
}

#[test]
fn unknown_time_zones_suggest_a_close_one() {
    let suggestion = |tz: &str| match Cron::parse("@daily", tz) {
        Err(ScheduleError::UnknownTimeZone { suggestion, .. }) => suggestion,
        other => panic!("{tz}: {other:?}"),
    };
    assert_eq!(
        suggestion("europe/amsterdam").as_deref(),
        Some("Europe/Amsterdam")
    );
    assert_eq!(
        suggestion("Europe/Amsterdm").as_deref(),
        Some("Europe/Amsterdam")
    );
    assert_eq!(
        suggestion("America/New York").as_deref(),
        Some("America/New_York")
    );
    assert_eq!(suggestion("Mars/Olympus_Mons"), None);
    assert!(check_timezone("Asia/Tokyo").is_ok());
    assert!(check_timezone("UTC").is_ok());
    let e = Cron::parse("@daily", "Europe/Amsterdm")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "unknown time zone `Europe/Amsterdm`; did you mean `Europe/Amsterdam`?"
    );
}

#[test]
fn due_widens_its_window_when_the_walks_disagree() {
    // As if the walk back had stopped too late: the window is widened
    // until it holds `max` ticks, or reaches `after`.
    let c = cron("0 * * * *", "UTC");
    let after = ms("2024-06-01T00:00:00");
    let upto = ms("2024-06-01T10:00:00");
    for max in [1, 3, 10, 20] {
        assert_eq!(
            c.due_from(upto - 1, after, upto, max),
            c.due(after, upto, max),
            "max {max}"
        );
    }
}
