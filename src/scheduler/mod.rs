//! Schedules (SPEC §3b): crontab expressions in an IANA time zone → slots, with an offset,
//! the daylight saving rules, jitter, windows and blackout calendars. Pure: the clock is
//! always passed in, and nothing here executes anything (the daemon's loop is in
//! [`crate::run`]).
//!
//! Two layers, so any recurrence on wall-clock time gets the same treatment:
//! - a [`Recurrence`] says which *wall-clock* times match: a crontab line
//!   ([`cron::CronExpr`], crontab(5) semantics, our own matcher; its module doc says why the
//!   `cron` crate was dropped) or an RFC 5545 RRULE ([`rrule::RruleExpr`]);
//! - [`Schedule`] shifts each of those by the schedule's `offset` (still on the wall clock)
//!   and maps the result to an instant in the zone: a local time in a spring-forward gap
//!   fires once at the end of the gap, a local time that happens twice fires at its first
//!   occurrence.
//!
//! The slot is the shifted instant: windows, blackouts, jitter, approvals ahead and the
//! at-most-once key all use it, and it is stable because it is a pure function of the
//! expression, the offset and the zone. Changing the offset (like changing the expression)
//! makes new slots.

//!
//! Blackout calendars may come from `.ics` files ([`ics`]).

use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::config::Calendar;
use crate::runbook::ScheduleSpec;

pub mod cron;
#[cfg(test)]
mod differential;
pub mod ics;
pub mod rrule;

/// What makes a schedule's local wall-clock times: a cron line or an RRULE.
#[derive(Debug, Clone)]
enum Recurrence {
    /// A crontab line (crontab(5) semantics).
    Cron(cron::CronExpr),
    /// An RFC 5545 recurrence rule, and where it ends as an instant (UNTIL=...Z).
    Rrule(Box<rrule::RruleExpr>),
}

impl Recurrence {
    /// Local wall-clock times from about `from` on, increasing.
    fn wall_clock_from(&self, from: NaiveDateTime) -> Box<dyn Iterator<Item = NaiveDateTime> + '_> {
        match self {
            Recurrence::Cron(c) => Box::new(std::iter::successors(c.next_after(from), |t| {
                c.next_after(*t)
            })),
            Recurrence::Rrule(r) => Box::new(r.after(from)),
        }
    }

    /// The last instant a slot may have (an RRULE's `UNTIL=...Z`).
    fn until(&self) -> Option<DateTime<Utc>> {
        match self {
            Recurrence::Rrule(r) => match r.until() {
                Some(rrule::Until::Instant(t)) => Some(t),
                _ => None,
            },
            Recurrence::Cron(_) => None,
        }
    }
}

/// What to do with a slot while the previous run is still active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    Skip,
    Queue,
}

impl Overlap {
    /// The name as a runbook spells it.
    pub fn name(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
        }
    }
}

/// What to do with slots missed while the daemon was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfire {
    Skip,
    RunOnce,
}

impl Misfire {
    /// The name as a runbook spells it.
    pub fn name(self) -> &'static str {
        match self {
            Misfire::Skip => "skip",
            Misfire::RunOnce => "run_once",
        }
    }
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    recurrence: Recurrence,
    /// Added to every matching wall-clock time before it is mapped to an instant; may be
    /// negative (`-1d`: the day before).
    pub offset: chrono::Duration,
    pub tz: Tz,
    pub window: Option<Duration>,
    pub jitter: Option<Duration>,
    pub overlap: Overlap,
    pub misfire: Misfire,
    pub blackout: Vec<String>,
}

impl Schedule {
    /// Parses a runbook's `schedule` section.
    pub fn parse(spec: &ScheduleSpec) -> Result<Schedule, String> {
        let recurrence = match (&spec.cron, &spec.rrule) {
            (Some(line), None) => {
                if spec.dtstart.is_some() {
                    return Err("`dtstart` belongs to `rrule`, not `cron`".into());
                }
                Recurrence::Cron(cron::CronExpr::parse(line).map_err(|e| e.to_string())?)
            }
            (None, Some(rule)) => {
                let dtstart = spec
                    .dtstart
                    .as_deref()
                    .map(rrule::parse_dtstart)
                    .transpose()?;
                Recurrence::Rrule(Box::new(rrule::RruleExpr::parse(rule, dtstart)?))
            }
            _ => return Err("give exactly one of `cron` or `rrule`".into()),
        };
        let offset = match &spec.offset {
            Some(o) => parse_offset(o)?,
            None => chrono::Duration::zero(),
        };
        let tz = match &spec.timezone {
            Some(t) => t
                .parse::<Tz>()
                .map_err(|_| format!("`{t}` is not an IANA time zone"))?,
            None => Tz::UTC,
        };
        let dur = |v: &Option<String>| -> Result<Option<Duration>, String> {
            v.as_deref().map(crate::runbook::parse_duration).transpose()
        };
        Ok(Schedule {
            recurrence,
            offset,
            tz,
            window: dur(&spec.window)?,
            jitter: dur(&spec.jitter)?,
            overlap: match spec.overlap.as_deref() {
                Some("queue") => Overlap::Queue,
                _ => Overlap::Skip,
            },
            misfire: match spec.misfire.as_deref() {
                Some("run_once") => Misfire::RunOnce,
                _ => Misfire::Skip,
            },
            blackout: spec.blackout.clone(),
        })
    }

    /// Slots strictly after `after`, in increasing order. A local time in a spring-forward
    /// gap fires once, at the end of the gap; a local time that happens twice fires once, at
    /// its first occurrence.
    pub fn slots_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        // Start a little before `after` in wall-clock time: around a fall-back change the
        // local clock repeats, and a slot must not be missed for that. Matching times are
        // shifted by the offset, so the search starts that much earlier (or later).
        let start_local = after.with_timezone(&self.tz).naive_local() - chrono::Duration::hours(3);
        let cursor = start_local.checked_sub_signed(self.offset);
        let mut last = after;
        let until = self.recurrence.until();
        let offset = self.offset;
        cursor
            .into_iter()
            .flat_map(move |from| self.recurrence.wall_clock_from(from))
            // UNTIL bounds the rule's own times, before the offset moves them.
            .take_while(move |wall| until.map_or(true, |u| self.instant_of(*wall) <= u))
            .map_while(move |wall| wall.checked_add_signed(offset))
            .map(move |shifted| self.instant_of(shifted))
            .filter(move |t| {
                // Strictly increasing: drops slots before `after`, the repeated local
                // hour, and the several gap times that all map to the gap's end.
                if *t > last {
                    last = *t;
                    true
                } else {
                    false
                }
            })
    }

    /// Warnings about an expression that parses but may not mean what its author thinks:
    /// both day fields restricted, so crontab fires when either matches.
    pub fn warnings(&self) -> Vec<String> {
        match &self.recurrence {
            Recurrence::Cron(c) => c.both_day_fields_warning().into_iter().collect(),
            Recurrence::Rrule(_) => Vec::new(),
        }
    }

    /// The next `count` slots after `after`.
    pub fn next(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        self.slots_after(after).take(count).collect()
    }

    /// The instant a local wall-clock time stands for (see [`Schedule::slots_after`]).
    fn instant_of(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
            LocalResult::None => gap_end(&self.tz, local),
        }
    }

    /// When this slot actually fires: the slot plus a jitter that is the same for the same
    /// runbook and slot, so a restart does not move it.
    pub fn fire_time(&self, runbook: &str, slot: DateTime<Utc>) -> DateTime<Utc> {
        match self.jitter {
            Some(j) if !j.is_zero() => {
                let seed = crate::audit::sha256_hex(
                    format!("{runbook}\0{}", slot.to_rfc3339()).as_bytes(),
                );
                let n = u64::from_str_radix(&seed[..12], 16).unwrap_or(0);
                let ms = n % (j.as_millis().max(1) as u64);
                slot + chrono::Duration::milliseconds(ms as i64)
            }
            _ => slot,
        }
    }

    /// When the maintenance window of a slot closes, if the schedule has one.
    pub fn window_end(&self, slot: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.window
            .and_then(|w| chrono::Duration::from_std(w).ok())
            .map(|w| slot + w)
    }

    /// The blackout calendar (and its reason) that `t` falls in, if any.
    pub fn blackout_at<'c>(
        &self,
        calendars: &'c std::collections::BTreeMap<String, Calendar>,
        t: DateTime<Utc>,
    ) -> Option<(&'c str, Option<&'c str>)> {
        for name in &self.blackout {
            if let Some((key, cal)) = calendars.get_key_value(name) {
                for p in &cal.periods {
                    if p.from.with_timezone(&Utc) <= t && t < p.to.with_timezone(&Utc) {
                        return Some((
                            key.as_str(),
                            p.reason.as_deref().or(cal.description.as_deref()),
                        ));
                    }
                }
                if let Some(why) = cal.ics.as_ref().and_then(|f| f.events.blocked_at(t)) {
                    return Some((key.as_str(), why.or(cal.description.as_deref())));
                }
            }
        }
        None
    }
}

/// The instant a spring-forward gap that contains `local` ends. With offsets `before` and
/// `after` the change, the transition instant T satisfies T + before <= local < T + after,
/// so T lies in (local - after, local - before]; a binary search over seconds finds it.
fn gap_end(tz: &Tz, local: NaiveDateTime) -> DateTime<Utc> {
    use chrono::Offset;
    let offset_at =
        |utc: NaiveDateTime| tz.offset_from_utc_datetime(&utc).fix().local_minus_utc() as i64;
    let before = offset_at(local - chrono::Duration::days(1));
    let after = offset_at(local + chrono::Duration::days(1));
    let (mut lo, mut hi) = (
        local - chrono::Duration::seconds(after),
        local - chrono::Duration::seconds(before),
    );
    if lo >= hi {
        return Utc.from_utc_datetime(&hi);
    }
    // Invariant: offset_at(lo) == before, offset_at(hi) == after.
    while (hi - lo).num_seconds() > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset_at(mid) == after {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Utc.from_utc_datetime(&hi)
}

/// The longest `offset` taken: a year and a day, either way.
const MAX_OFFSET_DAYS: i64 = 366;

/// Parses a schedule's `offset`: a duration (`4d`, `36h`, `90m`, `1d 12h`) with an optional
/// sign; `-1d` is the day before each slot. It is wall-clock time: `1d` is the same clock
/// time on the next day, also across a daylight saving change.
pub fn parse_offset(text: &str) -> Result<chrono::Duration, String> {
    let t = text.trim();
    let (negative, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let d = crate::runbook::parse_duration(body.trim())
        .map_err(|_| format!("`{text}` is not an offset like 4d, 36h, 90m or -1d"))?;
    if d.subsec_nanos() != 0 {
        return Err(format!("`{text}`: an offset is whole seconds"));
    }
    let d = chrono::Duration::from_std(d)
        .ok()
        .filter(|d| *d <= chrono::Duration::days(MAX_OFFSET_DAYS))
        .ok_or_else(|| format!("`{text}`: an offset is at most {MAX_OFFSET_DAYS} days"))?;
    Ok(if negative { -d } else { d })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(cron: &str, tz: &str) -> Schedule {
        Schedule::parse(&ScheduleSpec {
            cron: Some(cron.into()),
            timezone: Some(tz.into()),
            ..ScheduleSpec::default()
        })
        .unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fmt(v: &[DateTime<Utc>]) -> Vec<String> {
        v.iter()
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect()
    }

    #[test]
    fn berlin_spring_forward_fires_once_at_end_of_gap() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let s = sched("30 2 * * *", "Europe/Berlin");
        let got = fmt(&s.next(utc("2026-03-28T00:00:00Z"), 3));
        assert_eq!(
            got,
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z"
            ]
        );
        // Several times inside the gap still fire once.
        let s = sched("*/15 2 * * *", "Europe/Berlin");
        let got = fmt(&s.next(utc("2026-03-29T00:00:00Z"), 2));
        assert_eq!(got, ["2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"]);
    }

    #[test]
    fn berlin_fall_back_fires_once_at_first_occurrence() {
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let s = sched("30 2 * * *", "Europe/Berlin");
        let got = fmt(&s.next(utc("2026-10-24T12:00:00Z"), 2));
        assert_eq!(got, ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]);
        // Hourly: 02:00 local fires once.
        let s = sched("0 * * * *", "Europe/Berlin");
        let got = fmt(&s.next(utc("2026-10-24T23:30:00Z"), 4));
        assert_eq!(
            got,
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T02:00:00Z",
                "2026-10-25T03:00:00Z",
                "2026-10-25T04:00:00Z"
            ]
        );
        // Starting inside the repeated hour does not fire its first occurrence again.
        let got = fmt(&s.next(utc("2026-10-25T01:10:00Z"), 1));
        assert_eq!(got, ["2026-10-25T02:00:00Z"]);
    }

    #[test]
    fn new_york_spring_forward_and_fall_back() {
        // 2026-03-08: 02:00 EST → 03:00 EDT (07:00 UTC). 2026-11-01: 02:00 EDT → 01:00 EST.
        let s = sched("30 2 * * *", "America/New_York");
        let got = fmt(&s.next(utc("2026-03-07T00:00:00Z"), 3));
        assert_eq!(
            got,
            [
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z"
            ]
        );
        let s = sched("30 1 * * *", "America/New_York");
        let got = fmt(&s.next(utc("2026-10-31T12:00:00Z"), 2));
        assert_eq!(got, ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]);
    }

    #[test]
    fn crontab_weekdays_mean_what_crontab_means() {
        // 2026-11-30 is a Monday.
        let s = sched("0 9 * * 1-5", "UTC");
        let got = fmt(&s.next(utc("2026-11-28T00:00:00Z"), 6));
        assert_eq!(
            got,
            [
                "2026-11-30T09:00:00Z",
                "2026-12-01T09:00:00Z",
                "2026-12-02T09:00:00Z",
                "2026-12-03T09:00:00Z",
                "2026-12-04T09:00:00Z",
                "2026-12-07T09:00:00Z"
            ]
        );
        for sunday in ["0 9 * * 0", "0 9 * * 7", "0 9 * * sun", "0 9 * * SUN"] {
            assert_eq!(
                fmt(&sched(sunday, "UTC").next(utc("2026-11-28T00:00:00Z"), 1)),
                ["2026-11-29T09:00:00Z"],
                "{sunday}"
            );
        }
        assert_eq!(
            fmt(&sched("0 9 * * 5-7", "UTC").next(utc("2026-11-26T00:00:00Z"), 3)),
            [
                "2026-11-27T09:00:00Z",
                "2026-11-28T09:00:00Z",
                "2026-11-29T09:00:00Z"
            ]
        );
    }

    #[test]
    fn six_fields_have_seconds_first() {
        let s = sched("*/10 * * * * *", "UTC");
        assert_eq!(
            fmt(&s.next(utc("2026-01-01T00:00:05Z"), 2)),
            ["2026-01-01T00:00:10Z", "2026-01-01T00:00:20Z"]
        );
    }

    fn shifted(cron: &str, offset: &str, tz: &str) -> Schedule {
        let mut s = sched(cron, tz);
        s.offset = parse_offset(offset).unwrap();
        s
    }

    #[test]
    fn offset_is_wall_clock_days_with_the_slot_dst_rule() {
        // Saturday 02:00 after Patch Tuesday, across a year in Berlin: 01:00Z in winter,
        // 00:00Z in summer time.
        let s = shifted("0 2 * * TUE#2", "4d", "Europe/Berlin");
        let got = fmt(&s.next(utc("2026-01-01T00:00:00Z"), 12));
        assert_eq!(
            got,
            [
                "2026-01-17T01:00:00Z",
                "2026-02-14T01:00:00Z",
                "2026-03-14T01:00:00Z",
                "2026-04-18T00:00:00Z",
                "2026-05-16T00:00:00Z",
                "2026-06-13T00:00:00Z",
                "2026-07-18T00:00:00Z",
                "2026-08-15T00:00:00Z",
                "2026-09-12T00:00:00Z",
                "2026-10-17T00:00:00Z",
                "2026-11-14T01:00:00Z",
                "2026-12-12T01:00:00Z",
            ]
        );
        // The offset spans the change: Thursday 26 March 02:00 CET + 4d is Monday 30 March
        // 02:00 CEST (96 hours of clock time, 95 elapsed).
        let s = shifted("0 2 * * THU#4", "4d", "Europe/Berlin");
        assert_eq!(
            fmt(&s.next(utc("2026-03-05T00:00:00Z"), 1)),
            ["2026-03-30T00:00:00Z"]
        );
        assert_eq!(
            fmt(&s.next(utc("2026-10-01T00:00:00Z"), 1)),
            ["2026-10-26T01:00:00Z"]
        );
        // A shifted slot in the spring gap fires at its end; in the repeated hour, at the
        // first occurrence.
        let s = shifted("30 2 * * WED#4", "4d", "Europe/Berlin");
        assert_eq!(
            fmt(&s.next(utc("2026-03-05T00:00:00Z"), 1)),
            ["2026-03-29T01:00:00Z"]
        );
        let s = shifted("30 2 * * WED#3", "4d", "Europe/Berlin");
        assert_eq!(
            fmt(&s.next(utc("2026-10-01T00:00:00Z"), 2)),
            ["2026-10-25T00:30:00Z", "2026-11-22T01:30:00Z"]
        );
    }

    #[test]
    fn offsets_in_hours_minutes_and_negative() {
        // 36h after Tuesday 22:00 is Thursday 10:00; 90m after it is Tuesday 23:30.
        let s = shifted("0 22 * * TUE#2", "36h", "UTC");
        assert_eq!(
            fmt(&s.next(utc("2026-01-01T00:00:00Z"), 1)),
            ["2026-01-15T10:00:00Z"]
        );
        let s = shifted("0 22 * * TUE#2", "90m", "UTC");
        assert_eq!(
            fmt(&s.next(utc("2026-01-01T00:00:00Z"), 1)),
            ["2026-01-13T23:30:00Z"]
        );
        // -2d: the Sunday before Patch Tuesday; found even when the unshifted slot is
        // after `after` and the shifted one before it, or the other way round.
        let s = shifted("0 2 * * TUE#2", "-2d", "UTC");
        assert_eq!(
            fmt(&s.next(utc("2026-01-11T01:00:00Z"), 2)),
            ["2026-01-11T02:00:00Z", "2026-02-08T02:00:00Z"]
        );
        let s = shifted("0 2 * * TUE#2", "4d", "UTC");
        assert_eq!(
            fmt(&s.next(utc("2026-01-14T00:00:00Z"), 1)),
            ["2026-01-17T02:00:00Z"]
        );
        for bad in ["4 days later", "1.5s", "400d", "-400d", ""] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_offset("+1d 12h").unwrap(),
            chrono::Duration::hours(36)
        );
        assert_eq!(
            parse_offset("-90m").unwrap(),
            chrono::Duration::minutes(-90)
        );
    }

    fn rrule_sched(rule: &str, tz: &str) -> Schedule {
        Schedule::parse(&ScheduleSpec {
            rrule: Some(rule.into()),
            timezone: Some(tz.into()),
            ..ScheduleSpec::default()
        })
        .unwrap()
    }

    /// Slots of a schedule over `from..to`.
    fn year_of(s: &Schedule, from: &str, to: &str) -> Vec<DateTime<Utc>> {
        let end = utc(to);
        s.slots_after(utc(from)).take_while(|t| *t < end).collect()
    }

    #[test]
    fn rrule_equivalents_of_cron_lines_give_the_same_slots_over_a_year() {
        // 2027 in Berlin: spring forward on 28 March, fall back on 31 October.
        let pairs = [
            ("30 2 * * *", "FREQ=DAILY;BYHOUR=2;BYMINUTE=30"),
            ("0 9 * * 1-5", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9"),
            ("0 * * * *", "FREQ=HOURLY"),
            ("*/15 2 * * *", "FREQ=DAILY;BYHOUR=2;BYMINUTE=0,15,30,45"),
            ("0 22 1 * *", "FREQ=MONTHLY;BYHOUR=22"),
            ("0 4 * * 0", "FREQ=WEEKLY;BYDAY=SU;BYHOUR=4"),
        ];
        for tz in ["UTC", "Europe/Berlin", "America/New_York"] {
            for (cron, rule) in pairs {
                let want = year_of(
                    &sched(cron, tz),
                    "2026-12-31T12:00:00Z",
                    "2028-01-01T00:00:00Z",
                );
                let got = year_of(
                    &rrule_sched(rule, tz),
                    "2026-12-31T12:00:00Z",
                    "2028-01-01T00:00:00Z",
                );
                assert!(want.len() >= 12, "{cron} in {tz}");
                assert_eq!(got, want, "{rule} vs {cron} in {tz}");
            }
        }
        // Across the gap and the fold, the RRULE follows the same DST rule as cron.
        let s = rrule_sched("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "Europe/Berlin");
        assert_eq!(
            fmt(&s.next(utc("2027-03-27T12:00:00Z"), 2)),
            ["2027-03-28T01:00:00Z", "2027-03-29T00:30:00Z"]
        );
        assert_eq!(
            fmt(&s.next(utc("2027-10-30T12:00:00Z"), 2)),
            ["2027-10-31T00:30:00Z", "2027-11-01T01:30:00Z"]
        );
    }

    #[test]
    fn patch_tuesday_as_an_rrule_gives_the_second_tuesdays_by_hand() {
        let by_hand = [
            "2027-01-12T21:00:00Z",
            "2027-02-09T21:00:00Z",
            "2027-03-09T21:00:00Z",
            // Summer time from 28 March to 31 October: 22:00 in Berlin is 20:00 UTC.
            "2027-04-13T20:00:00Z",
            "2027-05-11T20:00:00Z",
            "2027-06-08T20:00:00Z",
            "2027-07-13T20:00:00Z",
            "2027-08-10T20:00:00Z",
            "2027-09-14T20:00:00Z",
            "2027-10-12T20:00:00Z",
            "2027-11-09T21:00:00Z",
            "2027-12-14T21:00:00Z",
        ];
        let s = rrule_sched(
            "FREQ=MONTHLY;BYDAY=2TU;BYHOUR=22;BYMINUTE=0",
            "Europe/Berlin",
        );
        let got = year_of(&s, "2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z");
        assert_eq!(fmt(&got), by_hand);
        let s = rrule_sched("FREQ=MONTHLY;BYDAY=2TU;BYHOUR=22;BYMINUTE=0", "UTC");
        let got = year_of(&s, "2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z");
        let by_hand_utc: Vec<String> = by_hand
            .iter()
            .map(|t| format!("{}T22:00:00Z", &t[..10]))
            .collect();
        assert_eq!(fmt(&got), by_hand_utc);
    }

    #[test]
    fn an_rrule_with_until_or_count_ends() {
        let s = rrule_sched(
            "FREQ=DAILY;BYHOUR=3;UNTIL=20270103T020000Z",
            "Europe/Berlin",
        );
        assert_eq!(
            fmt(&s.next(utc("2026-12-31T12:00:00Z"), 10)),
            [
                "2027-01-01T02:00:00Z",
                "2027-01-02T02:00:00Z",
                "2027-01-03T02:00:00Z"
            ]
        );
        let mut spec = ScheduleSpec {
            rrule: Some("FREQ=WEEKLY;COUNT=2;BYHOUR=5".into()),
            dtstart: Some("2027-01-04".into()),
            ..ScheduleSpec::default()
        };
        let s = Schedule::parse(&spec).unwrap();
        assert_eq!(
            fmt(&s.next(utc("2026-01-01T00:00:00Z"), 10)),
            ["2027-01-04T05:00:00Z", "2027-01-11T05:00:00Z"]
        );
        spec.cron = Some("0 5 * * *".into());
        assert!(Schedule::parse(&spec).unwrap_err().contains("exactly one"));
    }

    #[test]
    fn jitter_is_stable_and_bounded() {
        let mut s = sched("0 3 * * *", "UTC");
        s.jitter = Some(Duration::from_secs(600));
        let slot = utc("2026-01-01T03:00:00Z");
        let a = s.fire_time("patch", slot);
        assert_eq!(a, s.fire_time("patch", slot));
        assert!(a >= slot && a < slot + chrono::Duration::seconds(600));
    }
}
