//! crontab expressions, parsed and matched as crontab(5) (Vixie cron) defines them, plus the
//! Quartz day idioms maintenance schedules need: `DAY#N` (the Nth such weekday of the month),
//! `L` (the last day of the month) and `DAYL` (the last such weekday of the month).
//!
//! This works on wall-clock time only ([`NaiveDateTime`]): which instant a local time stands
//! for (daylight saving gaps and folds) and the schedule's `offset` are the parent module's.
//!
//! # Why our own matcher
//!
//! The `cron` crate requires day-of-month *and* day-of-week to match, where crontab(5) fires
//! when *either* matches if both are restricted (`0 3 1,15 * 1` is the 1st, the 15th and every
//! Monday); it numbers weekdays from Sunday = 1; and it has no `#` or `L`. Correcting all of
//! that around it cost more than the ~300 lines below: fields are bitsets, a day is matched
//! once per day (month, then the two day fields combined as Vixie cron combines them), then
//! the time of day is found in the hour, minute and second sets.
//!
//! # Day matching (crontab(5), Vixie cron)
//!
//! A day matches when its month matches and:
//! - if the day-of-month or the day-of-week field *starts with* `*` (or `?`), both day
//!   fields must match (`*/2` counts as starting with `*`, as in Vixie cron);
//! - otherwise either one matching is enough.
//!
//! `DAY#N` and `DAYL` are day-of-week items and `L` a day-of-month item, so they restrict
//! their field like any other value: `0 2 1 * TUE#2` fires on the 1st *and* on the second
//! Tuesday of each month.

use std::fmt;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// Days in one 400-year Gregorian cycle, after which every calendar pattern repeats: a day
/// pattern that matches nowhere in one cycle never matches.
const CYCLE_DAYS: i64 = 146_097;

/// A parsed crontab expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    seconds: u64,
    minutes: u64,
    hours: u64,
    /// Days of the month, bits 1..=31.
    dom: u64,
    /// `L` in day-of-month: the last day of the month.
    dom_last: bool,
    /// Months, bits 1..=12.
    months: u64,
    /// Weekdays, bits 0..=6, Sunday = 0.
    dow: u64,
    /// `DAY#N`: for each weekday (Sunday = 0), bits 1..=5 for N.
    dow_nth: [u8; 7],
    /// `DAYL`: weekdays (bits 0..=6) whose last occurrence in the month matches.
    dow_last: u64,
    /// The day-of-month field starts with `*` or `?`.
    dom_star: bool,
    /// The day-of-week field starts with `*` or `?`.
    dow_star: bool,
}

/// Why an expression does not parse: the field and the token at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    /// The expression as written.
    pub expr: String,
    /// `minute`, `day-of-week`, … or empty for the expression as a whole.
    pub field: &'static str,
    /// The offending token (empty for the expression as a whole).
    pub token: String,
    pub message: String,
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            return write!(f, "`{}` {}", self.expr, self.message);
        }
        write!(
            f,
            "`{}`: {} field, `{}`: {}",
            self.expr, self.field, self.token, self.message
        )
    }
}

impl std::error::Error for CronError {}

/// One field's name, bounds and value names.
struct Field {
    name: &'static str,
    lo: u32,
    hi: u32,
    /// Names for `lo`, `lo + 1`, … (case-insensitive).
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    lo: 0,
    hi: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    lo: 0,
    hi: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    lo: 0,
    hi: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    lo: 1,
    hi: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    lo: 1,
    hi: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
/// 0 and 7 are both Sunday, as in crontab(5); `*` spans 0-7 (so `*/2` is 0,2,4,6).
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    lo: 0,
    hi: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

const WEEKDAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
/// The months by name, January first.
pub(crate) const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const ORDINAL_WORDS: [&str; 5] = ["first", "second", "third", "fourth", "fifth"];

impl CronExpr {
    /// Parses five fields (minute hour day-of-month month day-of-week), six with seconds
    /// first, or a macro (`@daily`, …).
    pub fn parse(expr: &str) -> Result<CronExpr, CronError> {
        let whole = |message: String| CronError {
            expr: expr.to_string(),
            field: "",
            token: String::new(),
            message,
        };
        let trimmed = expr.trim();
        let text = match trimmed.strip_prefix('@') {
            Some(name) => match name.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                "reboot" => {
                    return Err(whole(
                        "is not a time: in crontab it runs once when cron starts; a tandem \
                         schedule is a series of slots, so start such a runbook from the \
                         host's service manager with `tandem run`"
                            .into(),
                    ))
                }
                _ => {
                    return Err(whole(
                        "is not a macro (@yearly, @annually, @monthly, @weekly, @daily, \
                         @midnight, @hourly)"
                            .into(),
                    ))
                }
            },
            None => trimmed,
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        let (second, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(whole(format!(
                    "has {n} fields; cron takes 5 (minute hour day-of-month month \
                     day-of-week), or 6 with seconds first"
                )))
            }
        };
        let err = |field: &'static str, token: &str, message: String| CronError {
            expr: expr.to_string(),
            field,
            token: token.to_string(),
            message,
        };
        let plain = |f: &Field, text: &str| -> Result<u64, CronError> {
            let mut bits = 0;
            for item in text.split(',') {
                bits |= range_item(f, item).map_err(|m| err(f.name, item, m))?;
            }
            Ok(bits)
        };
        let mut e = CronExpr {
            seconds: plain(&SECOND, second)?,
            minutes: plain(&MINUTE, rest[0])?,
            hours: plain(&HOUR, rest[1])?,
            dom: 0,
            dom_last: false,
            months: plain(&MONTH, rest[3])?,
            dow: 0,
            dow_nth: [0; 7],
            dow_last: 0,
            dom_star: starts_with_star(rest[2]),
            dow_star: starts_with_star(rest[4]),
        };
        for item in rest[2].split(',') {
            let bad = |m: String| err(DAY_OF_MONTH.name, item, m);
            if item.eq_ignore_ascii_case("l") {
                e.dom_last = true;
            } else if item.len() > 1 && (item.ends_with(['w', 'W']) || item.contains(['l', 'L'])) {
                return Err(bad(
                    "not supported: day-of-month takes numbers, names, ranges, steps and \
                     `L` (the last day of the month)"
                        .into(),
                ));
            } else {
                e.dom |= range_item(&DAY_OF_MONTH, item).map_err(bad)?;
            }
        }
        for item in rest[4].split(',') {
            let bad = |m: String| err(DAY_OF_WEEK.name, item, m);
            if let Some((day, n)) = item.split_once('#') {
                let day = value(&DAY_OF_WEEK, day).map_err(bad)? % 7;
                let n = match n.parse::<u32>() {
                    Ok(n @ 1..=5) => n,
                    _ => {
                        return Err(bad(format!(
                            "N after `#` must be 1 to 5 (`{}#2` is the second {} of the \
                             month)",
                            DAY_OF_WEEK.names[day as usize].to_ascii_uppercase(),
                            WEEKDAY_NAMES[day as usize]
                        )))
                    }
                };
                e.dow_nth[day as usize] |= 1 << n;
            } else if item.eq_ignore_ascii_case("l") {
                return Err(bad(
                    "`L` needs a day in day-of-week: `FRIL` or `5L` is the last Friday of \
                     the month (`L` alone is for day-of-month)"
                        .into(),
                ));
            } else if let Some(day) = item.strip_suffix(['l', 'L']) {
                e.dow_last |= 1 << (value(&DAY_OF_WEEK, day).map_err(bad)? % 7);
            } else {
                let bits = range_item(&DAY_OF_WEEK, item).map_err(bad)?;
                // Bit 7 is Sunday again.
                e.dow |= (bits & 0x7f) | ((bits >> 7) & 1);
            }
        }
        if !e.day_matches_in_a_cycle() {
            return Err(whole(
                "never fires: no day matches it (such as the 30th of February)".into(),
            ));
        }
        Ok(e)
    }

    /// The first wall-clock time strictly after `t` (to the second) that the expression
    /// matches; `None` only past the end of chrono's calendar.
    pub fn next_after(&self, t: NaiveDateTime) -> Option<NaiveDateTime> {
        let start = t
            .with_nanosecond(0)?
            .checked_add_signed(Duration::seconds(1))?;
        let mut date = start.date();
        let mut from = start.time();
        // A matching day recurs within one 400-year cycle (checked at parse time).
        for _ in 0..=CYCLE_DAYS {
            if !bit(self.months, date.month()) {
                // Skip the rest of the month.
                date = first_of_next_month(date)?;
                from = NaiveTime::MIN;
                continue;
            }
            if self.day_matches(date) {
                if let Some(time) = self.time_at_or_after(from) {
                    return Some(date.and_time(time));
                }
            }
            date = date.succ_opt()?;
            from = NaiveTime::MIN;
        }
        None
    }

    /// Whether the expression fires on `date` (at some time of day).
    pub fn day_matches(&self, date: NaiveDate) -> bool {
        if !bit(self.months, date.month()) {
            return false;
        }
        let day = date.day();
        let last = days_in_month(date);
        let weekday = date.weekday().num_days_from_sunday();
        let dom = bit(self.dom, day) || (self.dom_last && day == last);
        let dow = bit(self.dow, weekday)
            || self.dow_nth[weekday as usize] & (1 << ((day - 1) / 7 + 1)) != 0
            || (bit(self.dow_last, weekday) && day + 7 > last);
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The classic crontab surprise, in words, when both day fields are restricted (and so
    /// either one matching is enough): "fires on the 1st and 15th of the month AND on every
    /// Monday".
    pub fn both_day_fields_warning(&self) -> Option<String> {
        if self.dom_star || self.dow_star {
            return None;
        }
        let mut dom: Vec<String> = runs(self.dom, 1, 31)
            .into_iter()
            .map(|(a, b)| match b - a {
                0 => ordinal(a),
                1 => format!("{} and {}", ordinal(a), ordinal(b)),
                _ => format!("{} to {}", ordinal(a), ordinal(b)),
            })
            .collect();
        if self.dom_last {
            dom.push("last day".into());
        }
        let mut dow: Vec<String> = Vec::new();
        let plain: Vec<String> = runs(self.dow, 0, 6)
            .into_iter()
            .map(|(a, b)| match b - a {
                0 => WEEKDAY_NAMES[a as usize].to_string(),
                1 => format!(
                    "{} and {}",
                    WEEKDAY_NAMES[a as usize], WEEKDAY_NAMES[b as usize]
                ),
                _ => format!(
                    "{} to {}",
                    WEEKDAY_NAMES[a as usize], WEEKDAY_NAMES[b as usize]
                ),
            })
            .collect();
        if !plain.is_empty() {
            dow.push(format!("every {}", join_and(&plain)));
        }
        for (day, name) in WEEKDAY_NAMES.iter().enumerate() {
            for (i, word) in ORDINAL_WORDS.iter().enumerate() {
                if self.dow_nth[day] & (1 << (i + 1)) != 0 {
                    dow.push(format!("the {word} {name}"));
                }
            }
            if bit(self.dow_last, day as u32) {
                dow.push(format!("the last {name}"));
            }
        }
        let months = if self.months == bits_between(1, 12) {
            String::new()
        } else {
            let names: Vec<String> = (1..=12u32)
                .filter(|m| bit(self.months, *m))
                .map(|m| MONTH_NAMES[m as usize - 1].to_string())
                .collect();
            format!(", in {}", join_and(&names))
        };
        Some(format!(
            "fires on the {} of the month AND on {}{months} (crontab ORs the two day fields \
             when neither starts with `*`)",
            join_and(&dom),
            join_and(&dow),
        ))
    }

    /// Whether some day of one full Gregorian cycle matches, so the expression fires at all.
    fn day_matches_in_a_cycle(&self) -> bool {
        let Some(mut date) = NaiveDate::from_ymd_opt(2000, 1, 1) else {
            return true;
        };
        for _ in 0..CYCLE_DAYS {
            if self.day_matches(date) {
                return true;
            }
            match date.succ_opt() {
                Some(d) => date = d,
                None => return true,
            }
        }
        false
    }

    /// The earliest matching time of day at or after `from`.
    fn time_at_or_after(&self, from: NaiveTime) -> Option<NaiveTime> {
        let (h0, m0, s0) = (from.hour(), from.minute(), from.second());
        let mut h = next_bit(self.hours, h0)?;
        loop {
            let mut m = next_bit(self.minutes, if h == h0 { m0 } else { 0 });
            while let Some(minute) = m {
                let s_from = if h == h0 && minute == m0 { s0 } else { 0 };
                if let Some(s) = next_bit(self.seconds, s_from) {
                    return NaiveTime::from_hms_opt(h, minute, s);
                }
                m = next_bit(self.minutes, minute + 1);
            }
            h = next_bit(self.hours, h + 1)?;
        }
    }
}

/// Vixie cron's DOM_STAR / DOW_STAR: the field's first character is `*` (we also take
/// Quartz's `?`, "no specific value").
fn starts_with_star(field: &str) -> bool {
    field.starts_with('*') || field.starts_with('?')
}

/// One list item of a plain field: `*`, `N`, `A-B`, each optionally `/STEP`; `N/STEP` runs
/// from N to the field's end. Returns the bits it sets.
fn range_item(f: &Field, item: &str) -> Result<u64, String> {
    if item.is_empty() {
        return Err("empty item (two commas in a row, or a comma at the end?)".into());
    }
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => match s.parse::<u32>() {
            Ok(n) if n > 0 => (r, n),
            _ => return Err(format!("bad step `{s}` (a whole number above 0)")),
        },
        None => (item, 1),
    };
    let star = range == "*" || (range == "?" && matches!(f.name, "day-of-month" | "day-of-week"));
    let (lo, hi) = if star {
        (f.lo, f.hi)
    } else {
        match range.split_once('-') {
            Some((a, b)) => (value(f, a)?, value(f, b)?),
            None if step > 1 || item.contains('/') => (value(f, range)?, f.hi),
            None => {
                let v = value(f, range)?;
                (v, v)
            }
        }
    };
    if lo > hi {
        return Err(format!(
            "a range from high to low ({} takes {}-{}; write two ranges to wrap around)",
            f.name, f.lo, f.hi
        ));
    }
    let mut bits = 0u64;
    let mut v = Some(lo);
    while let Some(n) = v.filter(|n| *n <= hi) {
        bits |= 1 << n;
        v = n.checked_add(step);
    }
    Ok(bits)
}

/// One value of a field: a number in its bounds or one of its names.
fn value(f: &Field, text: &str) -> Result<u32, String> {
    if let Some(i) = f.names.iter().position(|n| text.eq_ignore_ascii_case(n)) {
        return Ok(f.lo + i as u32);
    }
    match text.parse::<u32>() {
        Ok(n) if (f.lo..=f.hi).contains(&n) => Ok(n),
        Ok(n) => Err(format!(
            "{n} is out of range ({} takes {}-{})",
            f.name, f.lo, f.hi
        )),
        Err(_) if f.names.is_empty() => Err(format!(
            "`{text}` is not a number ({} takes {}-{})",
            f.name, f.lo, f.hi
        )),
        Err(_) => Err(format!(
            "`{text}` is not a number or a name ({} takes {}-{} or {}-{})",
            f.name,
            f.lo,
            f.hi,
            f.names[0].to_ascii_uppercase(),
            f.names[f.names.len() - 1].to_ascii_uppercase()
        )),
    }
}

fn bit(bits: u64, n: u32) -> bool {
    n < 64 && bits & (1 << n) != 0
}

fn bits_between(lo: u32, hi: u32) -> u64 {
    (lo..=hi).fold(0, |b, n| b | 1 << n)
}

/// The lowest set bit at or above `from`.
fn next_bit(bits: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = bits >> from;
    (rest != 0).then(|| from + rest.trailing_zeros())
}

fn first_of_next_month(d: NaiveDate) -> Option<NaiveDate> {
    if d.month() == 12 {
        NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
    }
}

fn days_in_month(d: NaiveDate) -> u32 {
    first_of_next_month(d)
        .and_then(|n| n.pred_opt())
        .map_or(31, |l| l.day())
}

/// Runs of consecutive set bits in lo..=hi, as (first, last).
fn runs(bits: u64, lo: u32, hi: u32) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for n in lo..=hi {
        if bit(bits, n) {
            match out.last_mut() {
                Some((_, b)) if *b + 1 == n => *b = n,
                _ => out.push((n, n)),
            }
        }
    }
    out
}

fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// "a", "a and b", "a, b and c".
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    /// The next `n` times after `from`, formatted.
    fn next(expr: &str, from: &str, n: usize) -> Vec<String> {
        let e = CronExpr::parse(expr).unwrap();
        let mut t = at(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = e.next_after(t).unwrap();
            out.push(t.format("%Y-%m-%d %H:%M:%S %a").to_string());
        }
        out
    }

    #[test]
    fn both_day_fields_restricted_fire_when_either_matches() {
        // December 2026: Tuesday the 1st; Mondays 7, 14, 21, 28.
        assert_eq!(
            next("0 3 1,15 * 1", "2026-12-01 00:00:00", 6),
            [
                "2026-12-01 03:00:00 Tue",
                "2026-12-07 03:00:00 Mon",
                "2026-12-14 03:00:00 Mon",
                "2026-12-15 03:00:00 Tue",
                "2026-12-21 03:00:00 Mon",
                "2026-12-28 03:00:00 Mon",
            ]
        );
        // A field starting with `*` makes both required (Vixie): odd days that are Mondays.
        assert_eq!(
            next("0 3 */2 * 1", "2026-12-01 00:00:00", 2),
            ["2026-12-07 03:00:00 Mon", "2026-12-21 03:00:00 Mon"]
        );
        assert_eq!(
            next("0 3 1-7 * */7", "2026-12-01 00:00:00", 2),
            ["2026-12-06 03:00:00 Sun", "2027-01-03 03:00:00 Sun"]
        );
    }

    #[test]
    fn nth_weekday_last_day_and_last_weekday() {
        // Patch Tuesday: the second Tuesday.
        assert_eq!(
            next("0 2 * * TUE#2", "2026-01-01 00:00:00", 3),
            [
                "2026-01-13 02:00:00 Tue",
                "2026-02-10 02:00:00 Tue",
                "2026-03-10 02:00:00 Tue"
            ]
        );
        assert_eq!(
            next("0 2 * * 2#2", "2026-01-01 00:00:00", 1),
            ["2026-01-13 02:00:00 Tue"]
        );
        // The last day, in a leap year's February too.
        assert_eq!(
            next("0 0 L * *", "2028-01-15 00:00:00", 3),
            [
                "2028-01-31 00:00:00 Mon",
                "2028-02-29 00:00:00 Tue",
                "2028-03-31 00:00:00 Fri"
            ]
        );
        // The last Friday of each quarter.
        assert_eq!(
            next("0 18 * 3,6,9,12 FRIL", "2026-01-01 00:00:00", 4),
            [
                "2026-03-27 18:00:00 Fri",
                "2026-06-26 18:00:00 Fri",
                "2026-09-25 18:00:00 Fri",
                "2026-12-25 18:00:00 Fri"
            ]
        );
        assert_eq!(
            next("0 18 * * 5l", "2026-07-01 00:00:00", 1),
            ["2026-07-31 18:00:00 Fri"]
        );
        // The fifth Monday exists only in some months; Sunday is 0 or 7.
        assert_eq!(
            next("0 0 * * MON#5", "2026-01-01 00:00:00", 2),
            ["2026-03-30 00:00:00 Mon", "2026-06-29 00:00:00 Mon"]
        );
        assert_eq!(
            next("0 0 * * 7#1", "2026-01-01 00:00:00", 1),
            ["2026-01-04 00:00:00 Sun"]
        );
        // `#` restricts day-of-week, so with a restricted day-of-month the two OR.
        assert_eq!(
            next("0 2 1 * TUE#2", "2026-01-01 00:00:00", 3),
            [
                "2026-01-01 02:00:00 Thu",
                "2026-01-13 02:00:00 Tue",
                "2026-02-01 02:00:00 Sun"
            ]
        );
    }

    #[test]
    fn names_steps_ranges_and_macros() {
        assert_eq!(
            next("*/20 9-10 * jan-feb Mon-Fri", "2026-01-02 10:30:00", 3),
            [
                "2026-01-02 10:40:00 Fri",
                "2026-01-05 09:00:00 Mon",
                "2026-01-05 09:20:00 Mon"
            ]
        );
        assert_eq!(
            next("5/20 0 1 1 *", "2026-01-01 00:00:00", 3),
            [
                "2026-01-01 00:05:00 Thu",
                "2026-01-01 00:25:00 Thu",
                "2026-01-01 00:45:00 Thu"
            ]
        );
        assert_eq!(
            next("0 0 1-30/10 * *", "2026-01-01 00:00:00", 3),
            [
                "2026-01-11 00:00:00 Sun",
                "2026-01-21 00:00:00 Wed",
                "2026-02-01 00:00:00 Sun"
            ]
        );
        for (m, plain) in [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@MIDNIGHT", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ] {
            assert_eq!(
                CronExpr::parse(m).unwrap(),
                CronExpr::parse(plain).unwrap(),
                "{m}"
            );
        }
        // Quartz's `?` is `*`.
        assert_eq!(
            CronExpr::parse("0 0 ? * MON").unwrap(),
            CronExpr::parse("0 0 * * MON").unwrap()
        );
        assert_eq!(
            next("30 */10 * * * *", "2026-01-01 00:00:00", 2),
            ["2026-01-01 00:00:30 Thu", "2026-01-01 00:10:30 Thu"]
        );
    }

    #[test]
    fn errors_name_the_field_and_the_token() {
        let cases = [
            (
                "61 * * * *",
                ": minute field, `61`: 61 is out of range (minute takes 0-59)",
            ),
            (
                "0 3 * * MON#6",
                ": day-of-week field, `MON#6`: N after `#` must be 1 to 5",
            ),
            (
                "0 3 * * L",
                ": day-of-week field, `L`: `L` needs a day in day-of-week",
            ),
            ("0 3 LW * *", ": day-of-month field, `LW`: not supported"),
            ("0 3 15W * *", ": day-of-month field, `15W`: not supported"),
            (
                "0 3 * foo *",
                ": month field, `foo`: `foo` is not a number or a name",
            ),
            (
                "0 3 * * 1-8",
                ": day-of-week field, `1-8`: 8 is out of range",
            ),
            (
                "0 22-2 * * *",
                ": hour field, `22-2`: a range from high to low",
            ),
            ("*/0 * * * *", ": minute field, `*/0`: bad step `0`"),
            ("0 3 1,,2 * *", ": day-of-month field, ``: empty item"),
            ("0 3 30 2 *", " never fires"),
            ("0 3 * *", " has 4 fields"),
            (
                "@reboot",
                " is not a time: in crontab it runs once when cron starts",
            ),
            ("@often", " is not a macro"),
        ];
        for (expr, want) in cases {
            let e = CronExpr::parse(expr).unwrap_err().to_string();
            assert!(e.contains(want), "{expr}: {e}");
            assert!(e.starts_with(&format!("`{expr}`{want}")), "{e}");
        }
        // A huge step is one value, not an overflow.
        assert_eq!(
            next("5/4294967295 0 1 1 *", "2026-01-01 00:00:00", 2),
            ["2026-01-01 00:05:00 Thu", "2027-01-01 00:05:00 Fri"]
        );
        assert!(CronExpr::parse("5/4294967296 0 1 1 *").is_err());
        // Feb 29 with `*` in day-of-week still fires, in leap years.
        assert_eq!(
            next("0 0 29 2 *", "2026-01-01 00:00:00", 1),
            ["2028-02-29 00:00:00 Tue"]
        );
    }

    #[test]
    fn the_day_field_warning_says_which_days() {
        let w = |e: &str| CronExpr::parse(e).unwrap().both_day_fields_warning();
        assert_eq!(
            w("0 3 1,15 * 1").as_deref(),
            Some(
                "fires on the 1st and 15th of the month AND on every Monday (crontab ORs the \
                 two day fields when neither starts with `*`)"
            )
        );
        assert_eq!(
            w("0 3 1-7,L 3,6 TUE#2,FRIL,sat").as_deref(),
            Some(
                "fires on the 1st to 7th and last day of the month AND on every Saturday, \
                 the second Tuesday and the last Friday, in March and June (crontab ORs the \
                 two day fields when neither starts with `*`)"
            )
        );
        assert_eq!(w("0 3 1,15 * *"), None);
        assert_eq!(w("0 3 * * 1"), None);
        assert_eq!(w("0 3 */2 * 1"), None);
    }
}
