//! Differential test of the schedule arithmetic against a reference written only for it.
//!
//! The reference follows crontab(5)'s text and the way a cron daemon works, not the
//! scheduler's code: every minute (every second for six fields) it looks at the local clock
//! and fires when minute, hour and month match and the day fields match, where "if both
//! fields are restricted (i.e., do not start with `*`), the command will be run when either
//! field matches the current time". Each field item is a predicate over one value (`*`, `N`,
//! `A-B`, `/STEP`, names, 0 and 7 for Sunday), plus `L`, `DAY#N`, `DAYL` as their names say.
//! A day whose date does not match is skipped an hour at a time.
//!
//! Generated expressions are compared in UTC and in zones with daylight saving, away from
//! the transitions (where the scheduler's documented gap and fold rules apply instead; the
//! unit tests in the parent module cover those). `TANDEM_CRON_FUZZ=N` runs N expressions
//! instead of the default; `TANDEM_CRON_SEED` changes the seed.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::Schedule;
use crate::runbook::ScheduleSpec;

const DEFAULT_EXPRESSIONS: usize = 3000;
const DEFAULT_SEED: u64 = 0x7a4d_e11a_c40e_2026;
/// Slots compared per expression and zone.
const SLOTS: usize = 6;
/// How far the reference looks for those slots.
const HORIZON_DAYS: i64 = 800;
/// Slots this close to a daylight saving transition are not compared.
const NEAR_TRANSITION: Duration = Duration::hours(3);

const ZONES: [&str; 5] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "America/Santiago",
    "Asia/Kolkata",
];

// ---------------------------------------------------------------------------------------
// The reference.

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A crontab line as crontab(5) reads it: the field texts, interpreted on demand.
struct Reference {
    seconds: Option<String>,
    minute: String,
    hour: String,
    dom: String,
    month: String,
    dow: String,
}

impl Reference {
    fn new(expr: &str) -> Reference {
        let expanded = match expr {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let mut f: Vec<String> = expanded.split_whitespace().map(String::from).collect();
        let seconds = if f.len() == 6 {
            Some(f.remove(0))
        } else {
            None
        };
        assert_eq!(f.len(), 5, "{expr}");
        Reference {
            seconds,
            minute: f[0].clone(),
            hour: f[1].clone(),
            dom: f[2].clone(),
            month: f[3].clone(),
            dow: f[4].clone(),
        }
    }

    fn day_ok(&self, date: NaiveDate) -> bool {
        if !list_has(&self.month, date.month(), 1, 12, &MONTH_NAMES, 1) {
            return false;
        }
        let last_day = (date + Duration::days(1)).month() != date.month();
        let dom_ok = self.dom.split(',').any(|item| {
            if item.eq_ignore_ascii_case("L") {
                last_day
            } else {
                item_has(item, date.day(), 1, 31, &[], 0)
            }
        });
        let wd = date.weekday().num_days_from_sunday();
        let dow_ok = self.dow.split(',').any(|item| {
            if let Some((d, n)) = item.split_once('#') {
                let nth = date.day().div_ceil(7);
                day_number(d) % 7 == wd && n.parse::<u32>() == Ok(nth)
            } else if item.len() > 1 && item.to_ascii_uppercase().ends_with('L') {
                let last_of_kind = (date + Duration::days(7)).month() != date.month();
                day_number(&item[..item.len() - 1]) % 7 == wd && last_of_kind
            } else {
                // Sunday is 0 or 7.
                item_has(item, wd, 0, 7, &DAY_NAMES, 0)
                    || (wd == 0 && item_has(item, 7, 0, 7, &DAY_NAMES, 0))
            }
        });
        let restricted = |f: &str| !f.starts_with('*');
        if restricted(&self.dom) && restricted(&self.dow) {
            dom_ok || dow_ok
        } else {
            dom_ok && dow_ok
        }
    }

    fn hour_ok(&self, h: u32) -> bool {
        list_has(&self.hour, h, 0, 23, &[], 0)
    }

    fn minute_ok(&self, m: u32) -> bool {
        list_has(&self.minute, m, 0, 59, &[], 0)
    }

    fn second_ok(&self, s: u32) -> bool {
        match &self.seconds {
            Some(f) => list_has(f, s, 0, 59, &[], 0),
            None => s == 0,
        }
    }

    /// Slots strictly after `after`, up to `count` of them and `until`: the daemon's view,
    /// one tick per minute (per second with six fields), reading the local clock each time.
    fn slots(
        &self,
        tz: Tz,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        count: usize,
    ) -> Vec<DateTime<Utc>> {
        let tick = if self.seconds.is_some() { 1 } else { 60 };
        // The first tick after `after`.
        let mut t = after + Duration::seconds(tick - after.timestamp().rem_euclid(tick));
        let mut out = Vec::new();
        while t <= until && out.len() < count {
            let local = t.with_timezone(&tz).naive_local();
            let to_next_hour =
                Duration::seconds(3600 - i64::from(local.minute() * 60 + local.second()));
            if !self.day_ok(local.date()) || !self.hour_ok(local.hour()) {
                t += to_next_hour;
                continue;
            }
            if !self.minute_ok(local.minute()) {
                t += Duration::seconds(60 - i64::from(local.second()));
                continue;
            }
            if self.second_ok(local.second()) {
                out.push(t);
            }
            t += Duration::seconds(tick);
        }
        out
    }
}

/// A weekday by number or name.
fn day_number(text: &str) -> u32 {
    DAY_NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
        .map(|i| i as u32)
        .unwrap_or_else(|| text.parse().unwrap())
}

/// Whether a comma list of crontab items includes `v`.
fn list_has(field: &str, v: u32, lo: u32, hi: u32, names: &[&str], first_name: u32) -> bool {
    field
        .split(',')
        .any(|item| item_has(item, v, lo, hi, names, first_name))
}

/// Whether one item (`*`, `N`, `A-B`, `*/S`, `A-B/S`, `N/S`) includes `v`.
fn item_has(item: &str, v: u32, lo: u32, hi: u32, names: &[&str], first_name: u32) -> bool {
    let number = |s: &str| -> u32 {
        match names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            Some(i) => first_name + i as u32,
            None => s.parse().unwrap(),
        }
    };
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => (r, s.parse::<u32>().unwrap()),
        None => (item, 1),
    };
    let (from, to) = if range == "*" || range == "?" {
        (lo, hi)
    } else if let Some((a, b)) = range.split_once('-') {
        (number(a), number(b))
    } else if item.contains('/') {
        (number(range), hi)
    } else {
        (number(range), number(range))
    };
    from <= v && v <= to && (v - from) % step == 0
}

// ---------------------------------------------------------------------------------------
// Generated expressions.

/// SplitMix64: a fixed seed gives the same expressions on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }

    fn between(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent
    }
}

/// A value, sometimes as a name in random case.
fn token(rng: &mut Rng, v: u32, names: &[&str], first_name: u32) -> String {
    let i = v.wrapping_sub(first_name) as usize;
    if i < names.len() && rng.chance(40) {
        let name = names[i];
        match rng.below(3) {
            0 => name.to_string(),
            1 => name.to_ascii_lowercase(),
            _ => format!("{}{}", &name[..1], name[1..].to_ascii_lowercase()),
        }
    } else {
        v.to_string()
    }
}

/// One list item of a field with bounds lo..=hi.
fn gen_item(rng: &mut Rng, lo: u32, hi: u32, names: &[&str], first_name: u32) -> String {
    let a = rng.between(lo, hi);
    let b = rng.between(a, hi);
    let step = rng.between(2, (hi - lo).clamp(2, 12));
    match rng.below(10) {
        0 => format!("*/{step}"),
        1 => format!("{}-{}/{step}", a, b),
        2 => format!("{a}/{step}"),
        3 | 4 => format!(
            "{}-{}",
            token(rng, a, names, first_name),
            token(rng, b, names, first_name)
        ),
        _ => token(rng, a, names, first_name),
    }
}

/// A whole field: `*` with probability `star`, else a list of 1-3 items.
fn gen_field(
    rng: &mut Rng,
    star: u32,
    lo: u32,
    hi: u32,
    names: &[&str],
    first_name: u32,
) -> String {
    if rng.chance(star) {
        return if rng.chance(20) {
            format!("*/{}", rng.between(1, 5))
        } else {
            "*".into()
        };
    }
    let n = rng.between(1, 3);
    (0..n)
        .map(|_| gen_item(rng, lo, hi, names, first_name))
        .collect::<Vec<_>>()
        .join(",")
}

fn gen_expr(rng: &mut Rng) -> String {
    let mut fields = Vec::new();
    if rng.chance(8) {
        fields.push(gen_field(rng, 30, 0, 59, &[], 0));
    }
    fields.push(gen_field(rng, 20, 0, 59, &[], 0));
    fields.push(gen_field(rng, 30, 0, 23, &[], 0));
    let mut dom = gen_field(rng, 45, 1, 31, &[], 0);
    if !dom.starts_with('*') && rng.chance(15) {
        dom.push_str(",L");
    } else if rng.chance(3) {
        dom = "L".into();
    }
    fields.push(dom);
    fields.push(gen_field(rng, 60, 1, 12, &MONTH_NAMES, 1));
    let mut dow = gen_field(rng, 45, 0, 7, &DAY_NAMES, 0);
    if rng.chance(25) {
        let day = rng.below(8);
        let special = if rng.chance(60) {
            format!("{}#{}", token(rng, day, &DAY_NAMES, 0), rng.between(1, 5))
        } else {
            format!("{}L", token(rng, day, &DAY_NAMES, 0))
        };
        dow = if dow.starts_with('*') || rng.chance(50) {
            special
        } else {
            format!("{dow},{special}")
        };
    }
    fields.push(dow);
    fields.join(" ")
}

// ---------------------------------------------------------------------------------------
// The comparison.

fn schedule(expr: &str, tz: &str) -> Result<Schedule, String> {
    Schedule::parse(&ScheduleSpec {
        cron: Some(expr.into()),
        timezone: Some(tz.into()),
        ..ScheduleSpec::default()
    })
}

/// Whether the zone's UTC offset changes within [`NEAR_TRANSITION`] of `t`.
fn near_transition(tz: Tz, t: DateTime<Utc>) -> bool {
    let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    offset(t - NEAR_TRANSITION) != offset(t + NEAR_TRANSITION)
}

/// Compares the scheduler with the reference for `expr` in `zone` after `after`; the
/// message of a disagreement says everything needed to reproduce it.
fn compare(expr: &str, zone: &str, after: DateTime<Utc>) -> Result<(), String> {
    let tz: Tz = zone.parse().map_err(|_| format!("zone {zone}"))?;
    let reference = Reference::new(expr);
    let sch = match schedule(expr, zone) {
        Ok(s) => s,
        Err(e) if e.contains("never fires") => {
            // Then no day of a whole 400-year cycle may match.
            let start = NaiveDate::from_ymd_opt(2000, 1, 1).ok_or("date")?;
            return match (0..146_097)
                .map(|d| start + Duration::days(d))
                .find(|d| reference.day_ok(*d))
            {
                Some(d) => Err(format!(
                    "`{expr}`: rejected as never firing, but {d} matches"
                )),
                None => Ok(()),
            };
        }
        Err(e) => return Err(format!("`{expr}` does not parse: {e}")),
    };
    let want = reference.slots(tz, after, after + Duration::days(HORIZON_DAYS), SLOTS);
    let until = if want.len() == SLOTS {
        want[SLOTS - 1]
    } else {
        after + Duration::days(HORIZON_DAYS)
    };
    let got: Vec<DateTime<Utc>> = sch
        .slots_after(after)
        .take_while(|t| *t <= until)
        .take(SLOTS + 4)
        .collect();
    let away = |v: &[DateTime<Utc>]| -> Vec<String> {
        v.iter()
            .filter(|t| !near_transition(tz, **t))
            .map(|t| {
                t.with_timezone(&tz)
                    .format("%Y-%m-%d %H:%M:%S %a %:z")
                    .to_string()
            })
            .collect()
    };
    let (want, got) = (away(&want), away(&got));
    if want == got {
        Ok(())
    } else {
        Err(format!(
            "`{expr}` in {zone} after {after}:\n  crontab(5): {want:?}\n  scheduler:  {got:?}"
        ))
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn generated_expressions_agree_with_the_crontab_reference() {
    let count = env_number("TANDEM_CRON_FUZZ").map_or(DEFAULT_EXPRESSIONS, |n| n as usize);
    let seed = env_number("TANDEM_CRON_SEED").unwrap_or(DEFAULT_SEED);
    let mut rng = Rng(seed);
    let base = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    let mut failures = Vec::new();
    let mut both_restricted = 0;
    for _ in 0..count {
        let expr = gen_expr(&mut rng);
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let n = fields.len();
        if !fields[n - 3].starts_with('*') && !fields[n - 1].starts_with('*') {
            both_restricted += 1;
        }
        // Somewhere in 2020-2035, at any second.
        let after = base + Duration::seconds(rng.next() as i64 % (16 * 365 * 86_400)).abs();
        let zone = ZONES[rng.below(ZONES.len() as u32) as usize];
        for z in ["UTC", zone] {
            if let Err(e) = compare(&expr, z, after) {
                failures.push(e);
            }
        }
    }
    assert!(
        both_restricted > count / 10,
        "the generator must exercise the OR rule: {both_restricted} of {count}"
    );
    assert!(
        failures.is_empty(),
        "{} of {count} expressions disagree (seed {seed:#x}); first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_crontab5_examples_fire_when_the_manual_says() {
    // From the EXAMPLE CRON FILE and the day-field note of crontab(5).
    // 2026-12-01 is a Tuesday.
    let after = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let cases: [(&str, &[&str]); 9] = [
        // "run five minutes after midnight, every day"
        (
            "5 0 * * *",
            &["2026-12-01 00:05", "2026-12-02 00:05", "2026-12-03 00:05"],
        ),
        // "run at 2:15pm on the first of every month"
        (
            "15 14 1 * *",
            &["2026-12-01 14:15", "2027-01-01 14:15", "2027-02-01 14:15"],
        ),
        // "run at 10 pm on weekdays"
        (
            "0 22 * * 1-5",
            &[
                "2026-12-01 22:00",
                "2026-12-02 22:00",
                "2026-12-03 22:00",
                "2026-12-04 22:00",
                "2026-12-07 22:00",
            ],
        ),
        // "run 23 minutes after midn, 2am, 4am ..., everyday"
        (
            "23 0-23/2 * * *",
            &["2026-12-01 00:23", "2026-12-01 02:23", "2026-12-01 04:23"],
        ),
        // "run at 5 after 4 every sunday"
        ("5 4 * * sun", &["2026-12-06 04:05", "2026-12-13 04:05"]),
        // "30 4 1,15 * 5 would cause a command to be run at 4:30 am on the 1st and 15th of
        // each month, plus every Friday"
        (
            "30 4 1,15 * 5",
            &[
                "2026-12-01 04:30",
                "2026-12-04 04:30",
                "2026-12-11 04:30",
                "2026-12-15 04:30",
                "2026-12-18 04:30",
            ],
        ),
        // "0-23/2 ... every other hour"; "*/2" is the same.
        (
            "0 */2 * * *",
            &["2026-12-01 02:00", "2026-12-01 04:00", "2026-12-01 06:00"],
        ),
        // "1-9/2" is "1,3,5,7,9".
        (
            "1-9/2 0 * * *",
            &[
                "2026-12-01 00:01",
                "2026-12-01 00:03",
                "2026-12-01 00:05",
                "2026-12-01 00:07",
                "2026-12-01 00:09",
                "2026-12-02 00:01",
            ],
        ),
        // "@weekly: Run once a week, 0 0 * * 0".
        ("@weekly", &["2026-12-06 00:00", "2026-12-13 00:00"]),
    ];
    for (expr, want) in cases {
        let got: Vec<String> = schedule(expr, "UTC")
            .unwrap()
            .next(after, want.len())
            .iter()
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .collect();
        assert_eq!(got, want, "{expr}");
        compare(expr, "UTC", after).unwrap();
        compare(expr, "Europe/Berlin", after).unwrap();
    }
}
