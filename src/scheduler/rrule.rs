//! `rrule:` schedules: an iCalendar recurrence rule (RFC 5545 §3.3.10) evaluated on
//! *wall-clock* time, like cron lines, by the `rrule` crate.
//!
//! The crate is given the rule with a DTSTART in UTC that stands for the schedule's local
//! wall clock; [`super::Schedule`] then maps each local time to an instant with the one DST
//! rule every schedule follows (a time in a spring-forward gap fires once at the end of the
//! gap, a repeated time once at its first occurrence). Left to itself in a real zone, the
//! crate would move a gap time forward by the length of the gap (02:30 → 03:30), which is
//! RFC 5545's rule but not crontab's, and a schedule must not change meaning with its syntax.
//!
//! DTSTART: the `dtstart:` key (a local date-time in the schedule's zone), or, without it,
//! 2001-01-01 00:00:00, a Monday at midnight on the 1st of January. As in RFC 5545, what the
//! rule does not say comes from DTSTART: without BYHOUR/BYMINUTE/BYSECOND a DAILY rule fires
//! at DTSTART's time (so at 00:00:00 with the implied one), a WEEKLY rule without BYDAY on
//! DTSTART's weekday (Monday), a MONTHLY one without BYDAY/BYMONTHDAY on DTSTART's day (the
//! 1st), and INTERVAL counts from DTSTART. COUNT counts from DTSTART, so it needs an explicit
//! `dtstart:`. UNTIL ends the schedule: a UTC time (`...Z`) is an instant, a time without `Z`
//! or a date is local wall-clock time in the schedule's zone. COUNT counts local times, so
//! several times inside one spring-forward gap, which fire once, count each.

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use rrule::{Frequency, RRule, RRuleSet, Tz as RTz, Unvalidated};

/// The implied DTSTART: a Monday, at midnight, on the 1st of January.
fn implied_dtstart() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2001, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// Where a rule ends, if it has an UNTIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// `UNTIL=...Z`: the last instant a slot may have.
    Instant(DateTime<Utc>),
    /// `UNTIL` without `Z`, or a date (its end of day): local wall-clock time.
    WallClock(NaiveDateTime),
}

/// A parsed `rrule:` line.
#[derive(Debug, Clone)]
pub struct RruleExpr {
    /// The rule with every BYxxx that DTSTART implies made explicit, and without UNTIL
    /// (applied by the caller, see [`Until`]).
    rule: RRule,
    dtstart: NaiveDateTime,
    until: Option<Until>,
}

impl RruleExpr {
    /// Parses the text of `rrule:` (with or without a leading `RRULE:`), with `dtstart` the
    /// local wall-clock DTSTART if the schedule gives one.
    pub fn parse(text: &str, dtstart: Option<NaiveDateTime>) -> Result<RruleExpr, String> {
        let body = text.trim();
        let body = body
            .strip_prefix("RRULE:")
            .or_else(|| body.strip_prefix("rrule:"))
            .unwrap_or(body);
        if body.contains('\n') || body.to_ascii_uppercase().contains("DTSTART") {
            return Err(
                "give one RRULE line; DTSTART goes in the schedule's `dtstart:` key".into(),
            );
        }
        // UNTIL is taken out and applied after the wall-clock → instant mapping: the crate
        // would read `...Z` against a DTSTART that is really local time.
        let mut until = None;
        let mut parts = Vec::new();
        for part in body.split(';').filter(|p| !p.trim().is_empty()) {
            match part.split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("UNTIL") => {
                    until = Some(parse_until(v.trim())?);
                }
                _ => parts.push(part.trim()),
            }
        }
        let rest = parts.join(";");
        let unvalidated: RRule<Unvalidated> = rest
            .parse()
            .map_err(|e| format!("`{text}` is not an RFC 5545 recurrence rule: {e}"))?;
        if unvalidated.get_count().is_some() && dtstart.is_none() {
            return Err(
                "COUNT counts occurrences from DTSTART: give `dtstart:` (a local date-time) too"
                    .into(),
            );
        }
        let dtstart = dtstart.unwrap_or_else(implied_dtstart);
        let rule = unvalidated
            .validate(wall(dtstart))
            .map_err(|e| format!("`{text}`: {e}"))?;
        let expr = RruleExpr {
            rule,
            dtstart,
            until,
        };
        if until.is_none()
            && expr.rule.get_count().is_none()
            && expr.after(dtstart).next().is_none()
        {
            return Err(format!("`{text}` never fires"));
        }
        Ok(expr)
    }

    /// Where the rule ends, if it has an UNTIL.
    pub fn until(&self) -> Option<Until> {
        self.until
    }

    /// Local wall-clock times of the rule from `from` on (a few before it may come first:
    /// the caller drops what it does not want), in increasing order.
    pub fn after(&self, from: NaiveDateTime) -> impl Iterator<Item = NaiveDateTime> {
        let start = self.start_near(from);
        let set = RRuleSet::new(wall(start)).rrule(self.rule.clone()).limit();
        let until = match self.until {
            Some(Until::WallClock(u)) => Some(u),
            _ => None,
        };
        (&set)
            .into_iter()
            .map(|t| t.naive_utc())
            .skip_while(move |t| *t < from)
            .take_while(move |t| until.map_or(true, |u| *t <= u))
    }

    /// A DTSTART a whole number of periods (FREQ × INTERVAL) after the real one and at least
    /// one period before `from`: the same occurrences from `from` on, without iterating from
    /// 2001 on each call. With COUNT the real DTSTART is kept, since COUNT counts from it.
    fn start_near(&self, from: NaiveDateTime) -> NaiveDateTime {
        if self.rule.get_count().is_some() || from <= self.dtstart {
            return self.dtstart;
        }
        let interval = i64::from(self.rule.get_interval().max(1));
        let fixed = |unit: i64| {
            let period = unit * interval;
            let n = (from - self.dtstart).num_seconds() / period - 1;
            if n > 0 {
                self.dtstart + chrono::Duration::seconds(n * period)
            } else {
                self.dtstart
            }
        };
        let by_months = |months_per_period: i64| {
            let months = i64::from(from.year() - self.dtstart.year()) * 12
                + i64::from(from.month())
                - i64::from(self.dtstart.month());
            let n = months / (months_per_period * interval) - 1;
            if n <= 0 {
                return self.dtstart;
            }
            // The first day of the period at midnight: every BYxxx is explicit, so only the
            // period matters, and no day-of-month is clamped.
            let first = self
                .dtstart
                .date()
                .with_day(1)
                .unwrap_or(self.dtstart.date());
            let first = if months_per_period == 12 {
                first.with_month(1).unwrap_or(first)
            } else {
                first
            };
            u32::try_from(n * months_per_period * interval)
                .ok()
                .and_then(|m| first.checked_add_months(Months::new(m)))
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .unwrap_or(self.dtstart)
        };
        match self.rule.get_freq() {
            Frequency::Secondly => fixed(1),
            Frequency::Minutely => fixed(60),
            Frequency::Hourly => fixed(3600),
            Frequency::Daily => fixed(86_400),
            Frequency::Weekly => fixed(7 * 86_400),
            Frequency::Monthly => by_months(1),
            Frequency::Yearly => by_months(12),
        }
    }
}

/// A local wall-clock time as the crate's UTC time that stands for it.
fn wall(t: NaiveDateTime) -> DateTime<RTz> {
    RTz::UTC.from_utc_datetime(&t)
}

/// `UNTIL`'s value: `YYYYMMDD`, `YYYYMMDDTHHMMSS` or `YYYYMMDDTHHMMSSZ`.
pub(super) fn parse_until(v: &str) -> Result<Until, String> {
    if let Some(utc) = v.strip_suffix('Z').or_else(|| v.strip_suffix('z')) {
        return NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S")
            .map(|t| Until::Instant(Utc.from_utc_datetime(&t)))
            .map_err(|_| format!("UNTIL=`{v}` is not a date-time like 20271231T220000Z"));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%S") {
        return Ok(Until::WallClock(t));
    }
    NaiveDate::parse_from_str(v, "%Y%m%d")
        .ok()
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .map(Until::WallClock)
        .ok_or_else(|| format!("UNTIL=`{v}` is not a date (20271231) or date-time"))
}

/// `dtstart:`: a local date-time (`2026-01-06T22:00`, `2026-01-06 22:00:00`) or a date.
pub fn parse_dtstart(v: &str) -> Result<NaiveDateTime, String> {
    let v = v.trim();
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Ok(t.with_nanosecond(0).unwrap_or(t));
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| {
            format!(
                "`{v}` is not a local date-time like 2026-01-06T22:00 (in the schedule's \
                 timezone, without an offset)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> NaiveDateTime {
        parse_dtstart(s).unwrap()
    }

    fn take(rule: &str, dtstart: Option<&str>, from: &str, n: usize) -> Vec<String> {
        RruleExpr::parse(rule, dtstart.map(local))
            .unwrap()
            .after(local(from))
            .take(n)
            .map(|t| t.format("%Y-%m-%d %a %H:%M:%S").to_string())
            .collect()
    }

    #[test]
    fn what_the_rule_leaves_out_comes_from_the_implied_dtstart() {
        // DAILY without BYHOUR: midnight. WEEKLY without BYDAY: Monday. MONTHLY: the 1st.
        assert_eq!(
            take("FREQ=DAILY", None, "2026-12-02", 2),
            ["2026-12-02 Wed 00:00:00", "2026-12-03 Thu 00:00:00"]
        );
        assert_eq!(
            take("FREQ=WEEKLY;BYHOUR=9", None, "2026-12-02", 2),
            ["2026-12-07 Mon 09:00:00", "2026-12-14 Mon 09:00:00"]
        );
        assert_eq!(
            take("FREQ=MONTHLY", None, "2026-12-02", 2),
            ["2027-01-01 Fri 00:00:00", "2027-02-01 Mon 00:00:00"]
        );
        // BYHOUR without BYMINUTE: minute and second from DTSTART (0).
        assert_eq!(
            take("FREQ=DAILY;BYHOUR=22", None, "2026-12-02", 1),
            ["2026-12-02 Wed 22:00:00"]
        );
        // An explicit dtstart gives the time of day.
        assert_eq!(
            take("FREQ=DAILY", Some("2026-01-01T03:15"), "2026-12-02", 1),
            ["2026-12-02 Wed 03:15:00"]
        );
    }

    #[test]
    fn interval_counts_from_dtstart_however_far_back() {
        // Every other week from Monday 2026-01-05: 2026-11-30 is 47 weeks after it (odd),
        // 2026-12-07 is 48 (even). Iterating from a start near `from` keeps that phase.
        let got = take(
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;BYHOUR=6",
            Some("2026-01-05"),
            "2026-12-01",
            2,
        );
        assert_eq!(got, ["2026-12-07 Mon 06:00:00", "2026-12-21 Mon 06:00:00"]);
        // The shortcut gives what iterating from DTSTART itself gives.
        for (rule, dtstart) in [
            (
                "FREQ=WEEKLY;INTERVAL=3;BYDAY=TU,FR;BYHOUR=22",
                "2025-02-05T10:00",
            ),
            ("FREQ=MONTHLY;INTERVAL=5;BYDAY=-1FR;BYHOUR=18", "2024-03-01"),
            (
                "FREQ=MONTHLY;BYDAY=2TU;BYSETPOS=1;BYHOUR=22",
                "2024-03-20T07:00",
            ),
            (
                "FREQ=YEARLY;INTERVAL=2;BYMONTH=2;BYMONTHDAY=29",
                "2024-01-01",
            ),
            ("FREQ=DAILY;INTERVAL=9;BYHOUR=3,15", "2025-12-31T23:00"),
            ("FREQ=HOURLY;INTERVAL=5;BYMINUTE=7", "2026-01-01T01:00"),
            ("FREQ=MINUTELY;INTERVAL=13", "2026-11-30T00:00"),
        ] {
            let e = RruleExpr::parse(rule, Some(local(dtstart))).unwrap();
            for from in ["2026-12-01T00:00", "2027-03-29T02:30", "2028-02-28T12:00"] {
                let from = local(from);
                let near: Vec<_> = e.after(from).take(5).collect();
                let far: Vec<_> = e.after(e.dtstart).filter(|t| *t >= from).take(5).collect();
                assert_eq!(near, far, "{rule} from {from}");
                assert_eq!(near.len(), 5, "{rule} from {from}");
            }
        }
        // Every 7 hours from the implied DTSTART, 25 years on.
        let got = take("FREQ=HOURLY;INTERVAL=7", None, "2026-12-02", 1);
        let hours = (local("2026-12-02") - implied_dtstart()).num_hours();
        let next = implied_dtstart() + chrono::Duration::hours((hours / 7 + 1) * 7);
        assert_eq!(got, [next.format("%Y-%m-%d %a %H:%M:%S").to_string()]);
        // Every third month on the 31st: months without one are skipped, not clamped.
        let got = take(
            "FREQ=MONTHLY;INTERVAL=3;BYMONTHDAY=31",
            Some("2026-01-31T04:00"),
            "2027-06-01",
            3,
        );
        assert_eq!(
            got,
            [
                "2027-07-31 Sat 04:00:00",
                "2027-10-31 Sun 04:00:00",
                "2028-01-31 Mon 04:00:00"
            ]
        );
    }

    #[test]
    fn count_and_until_end_a_schedule() {
        let got = take(
            "FREQ=DAILY;COUNT=3;BYHOUR=1",
            Some("2026-12-01"),
            "2026-11-01",
            10,
        );
        assert_eq!(
            got,
            [
                "2026-12-01 Tue 01:00:00",
                "2026-12-02 Wed 01:00:00",
                "2026-12-03 Thu 01:00:00"
            ]
        );
        let got = take("FREQ=DAILY;BYHOUR=1;UNTIL=20261203", None, "2026-12-01", 10);
        assert_eq!(got.len(), 3, "{got:?}");
        let e = RruleExpr::parse("FREQ=DAILY;UNTIL=20261203T000000Z", None).unwrap();
        assert_eq!(
            e.until(),
            Some(Until::Instant(
                Utc.with_ymd_and_hms(2026, 12, 3, 0, 0, 0).unwrap()
            ))
        );
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        for (rule, dtstart, want) in [
            ("FREQ=FORTNIGHTLY", None, "not an RFC 5545 recurrence rule"),
            ("FREQ=DAILY;BYHOUR=25", None, "FREQ=DAILY;BYHOUR=25"),
            ("FREQ=DAILY;COUNT=3", None, "give `dtstart:`"),
            ("FREQ=DAILY;UNTIL=tomorrow", None, "UNTIL=`tomorrow`"),
            ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", None, "never fires"),
            (
                "DTSTART:20260101T000000\nRRULE:FREQ=DAILY",
                None,
                "`dtstart:` key",
            ),
        ] {
            let e = RruleExpr::parse(rule, dtstart).unwrap_err();
            assert!(e.contains(want), "{rule}: {e}");
        }
        assert!(parse_dtstart("2026-01-06T22:00+01:00").is_err());
        assert_eq!(
            parse_dtstart("2026-01-06 22:00").unwrap(),
            local("2026-01-06T22:00:00")
        );
    }
}
