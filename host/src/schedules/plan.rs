//! The pure part of schedules: a cron expression in a time zone (`Spec`), its fire times,
//! and what one look at a due schedule fires (`plan`: the on-time firings and the catch-up
//! policy for the missed ones). No IO, no clock: times come in as unix milliseconds.
//!
//! Cron syntax is croner's (POSIX/Vixie with an optional leading seconds field and an
//! optional trailing year, `L`, `W`, `#`, names, `@daily` ...). Fire times are whole
//! seconds. Across daylight saving changes croner follows the Open Cron Pattern
//! Specification: in a gap, a job at a fixed time fires at the first valid time after the
//! gap and interval jobs skip the missing times; in an overlap, a fixed-time job fires once
//! and interval jobs fire in both passes.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;

use crate::db::CatchUp;

/// The longest cron expression accepted.
pub const MAX_CRON_BYTES: usize = 256;

/// The most missed firings `catch_up: all` fires after a downtime (the most recent ones):
/// a per-second schedule down for a day must not start 86 400 executions at once.
pub const MAX_CATCH_UP: usize = 100;

/// A fire time handled later than this after its time counts as missed (the catch-up
/// policy decides), as one from before the host started does: the host was stalled or its
/// clock jumped, and it was not on time.
pub const LATE_GRACE_MS: u64 = 60_000;

/// A parsed cron expression and its time zone.
#[derive(Clone, Debug)]
pub struct Spec {
    cron: Cron,
    tz: Tz,
}

impl Spec {
    /// Parse `cron` (5 fields, or 6 with seconds first, or 7 with a year last) in the IANA
    /// time zone `timezone`; the error says what is wrong, for a 400.
    pub fn parse(cron: &str, timezone: &str) -> Result<Spec, String> {
        if cron.len() > MAX_CRON_BYTES {
            return Err(format!(
                "cron: at most {MAX_CRON_BYTES} bytes, got {}",
                cron.len()
            ));
        }
        let tz = Tz::from_str(timezone).map_err(|_| {
            format!(
                "timezone {timezone:?}: not an IANA time zone name such as UTC or Europe/Berlin"
            )
        })?;
        let parsed = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(cron)
            .map_err(|e| {
                format!(
                    "cron {cron:?}: {e} (expected 5 fields \"min hour day month weekday\", or 6 \
                     with seconds first)"
                )
            })?;
        Ok(Spec { cron: parsed, tz })
    }

    fn at(&self, ms: u64) -> Option<DateTime<Tz>> {
        // Whole seconds: fire times are, and croner compares whole seconds.
        let secs = i64::try_from(ms / 1000).ok()?;
        Utc.timestamp_opt(secs, 0)
            .single()
            .map(|t| t.with_timezone(&self.tz))
    }

    fn ms(t: &DateTime<Tz>) -> Option<u64> {
        u64::try_from(t.timestamp_millis()).ok()
    }

    /// The first fire time strictly after `ms`; `None` if there is none (a cron whose
    /// dates never come again, or past croner's year 5000).
    pub fn next_after(&self, ms: u64) -> Option<u64> {
        let t = self.cron.find_next_occurrence(&self.at(ms)?, false).ok()?;
        Self::ms(&t)
    }

    /// The latest fire time at or before `ms`.
    pub fn latest_until(&self, ms: u64) -> Option<u64> {
        let t = self
            .cron
            .find_previous_occurrence(&self.at(ms)?, true)
            .ok()?;
        Self::ms(&t)
    }

    /// The latest fire time strictly before `ms` (a whole second).
    fn before(&self, ms: u64) -> Option<u64> {
        let t = self
            .cron
            .find_previous_occurrence(&self.at(ms)?, false)
            .ok()?;
        Self::ms(&t)
    }

    /// The next `n` fire times after `ms`.
    pub fn upcoming(&self, ms: u64, n: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        let mut at = ms;
        while out.len() < n {
            match self.next_after(at) {
                Some(t) => {
                    out.push(t);
                    at = t;
                }
                None => break,
            }
        }
        out
    }
}

/// What one look at a due schedule does with its cron fire times.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Fire times to fire, oldest first, each with whether it was missed (fired by the
    /// catch-up policy).
    pub fire: Vec<(u64, bool)>,
    /// Missed fire times not fired (the catch-up policy, or past `MAX_CATCH_UP`).
    pub skipped: usize,
    /// Whether there were more missed fire times than were counted (`skipped` is a lower
    /// bound): only the most recent `MAX_CATCH_UP + 1` are looked at.
    pub more: bool,
    /// The next fire time after `now`: the schedule's new cursor.
    pub next: Option<u64>,
}

/// The fire times from `cursor` (the earliest not handled yet) to `now`: those on time
/// (at or after `started` and at most `LATE_GRACE_MS` late) fire; the missed ones follow
/// `catch_up`.
pub fn plan(spec: &Spec, catch_up: CatchUp, cursor: u64, now: u64, started: u64) -> Plan {
    let on_time = |t: u64| t >= started && now.saturating_sub(t) <= LATE_GRACE_MS;
    let (mut fresh, mut missed) = (Vec::new(), Vec::new());
    let mut more = false;
    // Newest first, so that a long downtime costs at most MAX_CATCH_UP + 1 steps back.
    let mut t = spec.latest_until(now);
    while let Some(at) = t.filter(|at| *at >= cursor) {
        if on_time(at) {
            fresh.push(at);
        } else if missed.len() > MAX_CATCH_UP {
            more = true;
            break;
        } else {
            missed.push(at);
        }
        t = spec.before(at);
    }
    let fired_missed: Vec<u64> = match catch_up {
        CatchUp::None => Vec::new(),
        CatchUp::Latest => missed.iter().take(1).copied().collect(),
        CatchUp::All => missed.iter().take(MAX_CATCH_UP).copied().collect(),
    };
    let skipped = missed.len() - fired_missed.len();
    let mut fire: Vec<(u64, bool)> = fired_missed.into_iter().map(|t| (t, true)).collect();
    fire.extend(fresh.into_iter().map(|t| (t, false)));
    fire.sort_unstable();
    Plan {
        fire,
        skipped,
        more,
        next: spec.next_after(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of an RFC 3339 time.
    fn ms(s: &str) -> u64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis() as u64
    }

    fn utc(ms: u64) -> String {
        crate::timer::rfc3339(ms)
    }

    /// (cron, time zone, after, the next fire times in UTC): every day, every second,
    /// names, offsets that are not whole hours, and both daylight saving changes.
    #[test]
    fn next_fire_times_follow_the_time_zone_and_daylight_saving() {
        let cases: &[(&str, &str, &str, &[&str])] = &[
            (
                "* * * * * *",
                "UTC",
                "2026-06-01T12:00:00.500Z",
                &["2026-06-01T12:00:01.000Z", "2026-06-01T12:00:02.000Z"],
            ),
            (
                "*/15 * * * * *",
                "UTC",
                "2026-06-01T12:00:14.999Z",
                &["2026-06-01T12:00:15.000Z", "2026-06-01T12:00:30.000Z"],
            ),
            // Five fields: seconds are 0.
            (
                "*/30 * * * *",
                "UTC",
                "2026-06-01T12:00:00.000Z",
                &["2026-06-01T12:30:00.000Z", "2026-06-01T13:00:00.000Z"],
            ),
            // Weekdays at 9 in Berlin (UTC+1 in winter): Saturday the 3rd -> Monday.
            (
                "0 9 * * MON-FRI",
                "Europe/Berlin",
                "2026-01-03T10:00:00Z",
                &["2026-01-05T08:00:00.000Z", "2026-01-06T08:00:00.000Z"],
            ),
            // Midnight in Kolkata (UTC+5:30).
            (
                "0 0 * * *",
                "Asia/Kolkata",
                "2026-06-01T00:00:00Z",
                &["2026-06-01T18:30:00.000Z", "2026-06-02T18:30:00.000Z"],
            ),
            // New York springs forward on 2026-03-08 at 02:00: 02:30 does not exist that
            // day, so the fixed-time job fires at 03:00 EDT, then 02:30 EDT the day after.
            (
                "30 2 * * *",
                "America/New_York",
                "2026-03-07T12:00:00Z",
                &["2026-03-08T07:00:00.000Z", "2026-03-09T06:30:00.000Z"],
            ),
            // And falls back on 2026-11-01 at 02:00: 01:30 happens twice; it fires once.
            (
                "30 1 * * *",
                "America/New_York",
                "2026-10-31T12:00:00Z",
                &["2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z"],
            ),
            // An hourly (interval) job fires in both passes of the repeated hour.
            (
                "0 * * * *",
                "America/New_York",
                "2026-11-01T04:30:00Z",
                &[
                    "2026-11-01T05:00:00.000Z",
                    "2026-11-01T06:00:00.000Z",
                    "2026-11-01T07:00:00.000Z",
                ],
            ),
            // The last day of February, in a leap year and not.
            (
                "0 12 L 2 *",
                "UTC",
                "2027-01-01T00:00:00Z",
                &["2027-02-28T12:00:00.000Z", "2028-02-29T12:00:00.000Z"],
            ),
        ];
        for (cron, tz, after, want) in cases {
            let spec = Spec::parse(cron, tz).unwrap();
            let got: Vec<String> = spec
                .upcoming(ms(after), want.len())
                .into_iter()
                .map(utc)
                .collect();
            assert_eq!(&got, want, "{cron} in {tz} after {after}");
        }
    }

    #[test]
    fn bad_crons_and_time_zones_are_refused_with_the_reason() {
        let cases: &[(&str, &str, &str)] = &[
            ("* * * *", "UTC", "cron"),
            ("61 * * * *", "UTC", "cron"),
            ("* * * * * * * *", "UTC", "cron"),
            ("every minute", "UTC", "cron"),
            ("", "UTC", "cron"),
            ("* * * * *", "Mars/Olympus", "timezone"),
            ("* * * * *", "", "timezone"),
        ];
        for (cron, tz, what) in cases {
            let e = Spec::parse(cron, tz).unwrap_err();
            assert!(e.starts_with(what), "{cron:?} {tz:?}: {e}");
        }
        let long = "1,".repeat(200) + "1 * * * *";
        assert!(Spec::parse(&long, "UTC").unwrap_err().contains("at most"));
        // February 30th never comes.
        assert_eq!(
            Spec::parse("0 0 30 2 *", "UTC").unwrap().next_after(0),
            None
        );
    }

    /// A per-second schedule whose cursor is at 10 s, looked at by a host that started at
    /// `started`, at `now`: what fires, by catch-up policy.
    #[test]
    fn missed_firings_follow_the_catch_up_policy() {
        let every_second = Spec::parse("* * * * * *", "UTC").unwrap();
        let s = |n: u64| n * 1000;
        type Case = (CatchUp, u64, u64, u64, Vec<(u64, bool)>, usize, bool);
        let cases: Vec<Case> = vec![
            // On time: the host was up; only the due second fires, whatever the policy.
            (
                CatchUp::None,
                s(10),
                s(10) + 300,
                0,
                vec![(s(10), false)],
                0,
                false,
            ),
            (
                CatchUp::All,
                s(10),
                s(10) + 300,
                0,
                vec![(s(10), false)],
                0,
                false,
            ),
            // Down from 10 s to 14.5 s (started at 14.5 s): 10..=14 were missed.
            (
                CatchUp::None,
                s(10),
                s(14) + 600,
                s(14) + 500,
                vec![],
                5,
                false,
            ),
            (
                CatchUp::Latest,
                s(10),
                s(14) + 600,
                s(14) + 500,
                vec![(s(14), true)],
                4,
                false,
            ),
            (
                CatchUp::All,
                s(10),
                s(14) + 600,
                s(14) + 500,
                vec![
                    (s(10), true),
                    (s(11), true),
                    (s(12), true),
                    (s(13), true),
                    (s(14), true),
                ],
                0,
                false,
            ),
            // Started at 12.5 s, looked at 14.2 s: 10..=12 missed, 13 and 14 on time.
            (
                CatchUp::None,
                s(10),
                s(14) + 200,
                s(12) + 500,
                vec![(s(13), false), (s(14), false)],
                3,
                false,
            ),
            (
                CatchUp::Latest,
                s(10),
                s(14) + 200,
                s(12) + 500,
                vec![(s(12), true), (s(13), false), (s(14), false)],
                2,
                false,
            ),
        ];
        for (i, (catch_up, cursor, now, started, fire, skipped, more)) in cases.iter().enumerate() {
            let p = plan(&every_second, *catch_up, *cursor, *now, *started);
            assert_eq!(p.fire, *fire, "case {i}: {catch_up:?}");
            assert_eq!(p.skipped, *skipped, "case {i}: {catch_up:?}");
            assert_eq!(p.more, *more, "case {i}: {catch_up:?}");
            assert_eq!(p.next, Some((now / 1000 + 1) * 1000), "case {i}");
        }
        // Handled more than LATE_GRACE_MS late while the host was up: missed too.
        let hourly = Spec::parse("0 * * * *", "UTC").unwrap();
        let late = plan(
            &hourly,
            CatchUp::None,
            3_600_000,
            3_600_000 + LATE_GRACE_MS + 1,
            0,
        );
        assert_eq!((late.fire.len(), late.skipped), (0, 1));
        let on_time = plan(
            &hourly,
            CatchUp::None,
            3_600_000,
            3_600_000 + LATE_GRACE_MS,
            0,
        );
        assert_eq!(on_time.fire, vec![(3_600_000, false)]);
    }

    #[test]
    fn a_long_downtime_fires_at_most_the_catch_up_bound() {
        let every_second = Spec::parse("* * * * * *", "UTC").unwrap();
        let day = 86_400_000;
        // Down for a day, started at `day` + 0.5 s.
        let all = plan(&every_second, CatchUp::All, 0, day + 500, day + 500);
        assert_eq!(all.fire.len(), MAX_CATCH_UP);
        // The most recent ones, oldest first.
        let first = day - (MAX_CATCH_UP as u64 - 1) * 1000;
        assert_eq!(all.fire.first(), Some(&(first, true)));
        assert_eq!(all.fire.last(), Some(&(day, true)));
        assert!(all.more && all.skipped == 1, "{all:?}");
        let latest = plan(&every_second, CatchUp::Latest, 0, day + 500, day + 500);
        assert_eq!(latest.fire, vec![(day, true)]);
        // The missed times are counted up to the bound, not one by one for a day.
        assert!(latest.more && latest.skipped == MAX_CATCH_UP);
    }
}
