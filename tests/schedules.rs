//! Schedules (SPEC §3b, §6 `next`, §7 `/api/v1/schedules`): the offline `next` command across
//! daylight saving changes, and the live daemon firing seconds-level schedules: on time,
//! blackouts, overlap, misfire across a stop, a crash in the middle of a slot, approvals of
//! cross-party slots (per slot and standing), maintenance windows and reloads.
//!
//! The live tests use 6-field crons with seconds, so a test sees several slots in a few
//! seconds, and wait for conditions (or for the clock), never for a fixed time. A scheduled
//! run's script touches `ran/<run id>`, so a slot that must not run is proven not to have run.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde_json::{json, Value};

use crate::harness::{token, wait_for, wait_until, Daemon, Env, HostSpec, StandardConfig};

/// How long a condition may take before the test fails.
const SETTLE: Duration = Duration::from_secs(20);

/// How late a slot must be to count as missed rather than fired late (the daemon's grace).
const MISFIRE_GRACE_SECS: i64 = 30;

// ---------------------------------------------------------------------------------------
// Fixtures and helpers.

/// An env holding `config` plus `box` (a local host of `internal` that scheduled runs
/// target unless told otherwise) and an empty `ran/` folder for markers.
fn site(config: StandardConfig) -> Env {
    let env = Env::new();
    env.write_config(&config.host(HostSpec::local("box", "internal")).to_yaml());
    std::fs::create_dir_all(env.path().join("ran")).expect("create ran/");
    env
}

/// A rhai statement that touches `ran/<run id><suffix>`; `suffix` is a rhai expression.
fn touch(env: &Env, suffix: &str) -> String {
    let dir = env.path().join("ran");
    format!(
        "sh_ok(\"touch \" + quote({:?} + \"/\" + run_id + {suffix}));",
        dir.to_string_lossy()
    )
}

/// Where run `id` leaves its marker.
fn marker(env: &Env, id: &str) -> PathBuf {
    env.path().join("ran").join(id)
}

/// A scheduled runbook to write into `runbooks/`: owner `internal`, target `box`, scope
/// `touch *` and `test -e *`, and a script that touches `ran/<run id>` unless told otherwise.
struct Scheduled {
    name: String,
    owner: String,
    targets: String,
    schedule: String,
    extra: Vec<String>,
    script: Option<String>,
}

impl Scheduled {
    /// `schedule` is the YAML flow mapping of the `schedule:` key.
    fn new(name: &str, schedule: &str) -> Scheduled {
        Scheduled {
            name: name.to_string(),
            owner: "internal".to_string(),
            targets: "[box]".to_string(),
            schedule: schedule.to_string(),
            extra: Vec::new(),
            script: None,
        }
    }

    fn owner(mut self, owner: &str) -> Scheduled {
        self.owner = owner.to_string();
        self
    }

    fn targets(mut self, targets: &str) -> Scheduled {
        self.targets = targets.to_string();
        self
    }

    /// Adds one top-level YAML line (`approval: ...`, `rollout: ...`).
    fn line(mut self, yaml: &str) -> Scheduled {
        self.extra.push(yaml.to_string());
        self
    }

    /// The rhai script, one statement a line.
    fn script(mut self, script: &str) -> Scheduled {
        self.script = Some(script.to_string());
        self
    }

    fn yaml(&self, env: &Env) -> String {
        let mut yaml = format!(
            "name: {}\ndescription: schedule test {}\nowner: {}\ntargets: {}\n\
             scope:\n  commands: [\"touch *\", \"test -e *\"]\ntimeout: 2m\nschedule: {}\n",
            self.name, self.name, self.owner, self.targets, self.schedule
        );
        for line in &self.extra {
            yaml.push_str(line);
            yaml.push('\n');
        }
        yaml.push_str("script: |\n");
        let script = self.script.clone().unwrap_or_else(|| touch(env, "\"\""));
        for line in script.lines() {
            yaml.push_str("  ");
            yaml.push_str(line);
            yaml.push('\n');
        }
        yaml
    }

    fn write(&self, env: &Env) {
        env.write_runbook(&format!("{}.yaml", self.name), &self.yaml(env));
    }
}

/// An instant from RFC 3339 text.
fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// RFC 3339 in UTC with seconds, the form slots are shown in.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The slot time of a scheduled run (`"<runbook>@<RFC 3339>"`).
fn slot_of(run: &Value) -> DateTime<Utc> {
    let key = run["slot"]
        .as_str()
        .unwrap_or_else(|| panic!("run without slot: {run}"));
    let (_, t) = key
        .rsplit_once('@')
        .unwrap_or_else(|| panic!("slot {key:?} is not <runbook>@<time>"));
    at(t)
}

/// A run's `field` (e.g. `started_at`) as an instant.
fn time_of(run: &Value, field: &str) -> DateTime<Utc> {
    at(run[field]
        .as_str()
        .unwrap_or_else(|| panic!("run without {field}: {run}")))
}

/// Whether a run has ended (SPEC §4).
fn is_final(run: &Value) -> bool {
    matches!(
        run["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled" | "interrupted" | "denied" | "expired")
    )
}

/// Every run of `runbook`, by slot.
fn runs_of(daemon: &Daemon, runbook: &str) -> Vec<Value> {
    let (status, runs) = daemon.get("/api/v1/runs?limit=1000", &token("alice"));
    assert_eq!(status, 200, "GET runs: {runs}");
    let mut runs: Vec<Value> = runs
        .as_array()
        .unwrap_or_else(|| panic!("runs are not an array: {runs}"))
        .iter()
        .filter(|r| r["runbook"] == runbook)
        .cloned()
        .collect();
    runs.sort_by_key(|r| r["slot"].as_str().unwrap_or_default().to_string());
    runs
}

/// Waits until `runbook` has at least `n` runs, the first `n` of them (by slot) ended.
fn wait_finished(daemon: &Daemon, runbook: &str, n: usize, timeout: Duration) -> Vec<Value> {
    wait_for(timeout, &format!("{n} ended runs of {runbook}"), || {
        let runs = runs_of(daemon, runbook);
        (runs.len() >= n && runs[..n].iter().all(is_final)).then(|| runs[..n].to_vec())
    })
}

/// The whole audit log, read as the auditor.
fn audit(daemon: &Daemon) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let after = all.last().map_or(0, |r| r["seq"].as_u64().unwrap_or(0));
        let (status, page) = daemon.get(&format!("/api/v1/audit?after={after}"), &token("audrey"));
        assert_eq!(status, 200, "GET audit: {page}");
        let page = page.as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Audit records of `event` whose detail names `runbook`.
fn slot_records(daemon: &Daemon, event: &str, runbook: &str) -> Vec<Value> {
    audit(daemon)
        .into_iter()
        .filter(|r| r["event"] == event && r["detail"]["runbook"] == runbook)
        .collect()
}

/// The `slot_skipped` records of `runbook` with this reason.
fn skipped(daemon: &Daemon, runbook: &str, reason: &str) -> Vec<Value> {
    slot_records(daemon, "slot_skipped", runbook)
        .into_iter()
        .filter(|r| r["detail"]["reason"] == reason)
        .collect()
}

/// `GET /api/v1/schedules` as alice: the entry of `runbook`.
fn schedule_view(daemon: &Daemon, runbook: &str) -> Value {
    let (status, list) = daemon.get("/api/v1/schedules", &token("alice"));
    assert_eq!(status, 200, "GET schedules: {list}");
    list.as_array()
        .and_then(|l| l.iter().find(|s| s["runbook"] == runbook).cloned())
        .unwrap_or_else(|| panic!("no schedule for {runbook}: {list}"))
}

/// A run's log as (host, line) pairs.
fn log_lines(daemon: &Daemon, id: &str) -> Vec<(Option<String>, String)> {
    let (status, lines) = daemon.get(&format!("/api/v1/runs/{id}/log"), &token("alice"));
    assert_eq!(status, 200, "GET log: {lines}");
    lines
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| {
            (
                l["host"].as_str().map(str::to_string),
                l["line"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A run's id.
fn id(run: &Value) -> String {
    run["id"]
        .as_str()
        .unwrap_or_else(|| panic!("run without id: {run}"))
        .to_string()
}

// ---------------------------------------------------------------------------------------
// `next`, offline, across daylight saving changes.

#[test]
fn next_fires_once_at_the_end_of_a_spring_gap_and_once_at_the_first_of_a_repeated_hour() {
    let env = site(StandardConfig::new());
    let schedules = [
        ("berlin-0230", "30 2 * * *", "Europe/Berlin"),
        ("berlin-hourly", "0 * * * *", "Europe/Berlin"),
        ("berlin-quarters", "0 */15 2 * * *", "Europe/Berlin"),
        ("ny-0230", "30 2 * * *", "America/New_York"),
        ("ny-0130", "30 1 * * *", "America/New_York"),
    ];
    for (name, cron, tz) in schedules {
        Scheduled::new(name, &format!("{{ cron: \"{cron}\", timezone: {tz} }}")).write(&env);
    }
    let cases: [(&str, &str, &str, &[&str]); 7] = [
        // 2026-03-29: Berlin jumps from 02:00 CET to 03:00 CEST; 02:30 does not exist.
        (
            "berlin-0230",
            "2026-03-28T00:00:00Z",
            "3",
            &[
                "2026-03-28T01:30:00Z  2026-03-28T02:30:00+01:00 (Europe/Berlin)",
                "2026-03-29T01:00:00Z  2026-03-29T03:00:00+02:00 (Europe/Berlin)",
                "2026-03-30T00:30:00Z  2026-03-30T02:30:00+02:00 (Europe/Berlin)",
            ],
        ),
        // Four times inside the gap fire once, at its end.
        (
            "berlin-quarters",
            "2026-03-29T00:00:00Z",
            "2",
            &[
                "2026-03-29T01:00:00Z  2026-03-29T03:00:00+02:00 (Europe/Berlin)",
                "2026-03-30T00:00:00Z  2026-03-30T02:00:00+02:00 (Europe/Berlin)",
            ],
        ),
        // 2026-10-25: Berlin falls back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
        (
            "berlin-0230",
            "2026-10-24T12:00:00Z",
            "2",
            &[
                "2026-10-25T00:30:00Z  2026-10-25T02:30:00+02:00 (Europe/Berlin)",
                "2026-10-26T01:30:00Z  2026-10-26T02:30:00+01:00 (Europe/Berlin)",
            ],
        ),
        // Hourly: the repeated 02:00 fires once, at its first occurrence.
        (
            "berlin-hourly",
            "2026-10-24T23:30:00Z",
            "4",
            &[
                "2026-10-25T00:00:00Z  2026-10-25T02:00:00+02:00 (Europe/Berlin)",
                "2026-10-25T02:00:00Z  2026-10-25T03:00:00+01:00 (Europe/Berlin)",
                "2026-10-25T03:00:00Z  2026-10-25T04:00:00+01:00 (Europe/Berlin)",
                "2026-10-25T04:00:00Z  2026-10-25T05:00:00+01:00 (Europe/Berlin)",
            ],
        ),
        // 2026-03-08: New York jumps from 02:00 EST to 03:00 EDT.
        (
            "ny-0230",
            "2026-03-07T00:00:00Z",
            "3",
            &[
                "2026-03-07T07:30:00Z  2026-03-07T02:30:00-05:00 (America/New_York)",
                "2026-03-08T07:00:00Z  2026-03-08T03:00:00-04:00 (America/New_York)",
                "2026-03-09T06:30:00Z  2026-03-09T02:30:00-04:00 (America/New_York)",
            ],
        ),
        // 2026-11-01: New York falls back from 02:00 EDT to 01:00 EST; 01:30 happens twice.
        (
            "ny-0130",
            "2026-10-31T12:00:00Z",
            "2",
            &[
                "2026-11-01T05:30:00Z  2026-11-01T01:30:00-04:00 (America/New_York)",
                "2026-11-02T06:30:00Z  2026-11-02T01:30:00-05:00 (America/New_York)",
            ],
        ),
        // A --from with an offset means the same instant as in UTC.
        (
            "ny-0130",
            "2026-10-31T08:00:00-04:00",
            "1",
            &["2026-11-01T05:30:00Z  2026-11-01T01:30:00-04:00 (America/New_York)"],
        ),
    ];
    for (runbook, from, count, want) in cases {
        let out = env.tandem(["next", runbook, "--from", from, "--count", count]);
        out.success();
        let got: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(got, want, "next {runbook} --from {from}\n{}", out.dump());
    }

    let out = env.tandem([
        "next",
        "ny-0230",
        "--from",
        "2026-03-08T00:00:00Z",
        "--count",
        "2",
        "--json",
    ]);
    out.success();
    assert_eq!(
        out.json(),
        json!([
            {"utc": "2026-03-08T07:00:00Z", "local": "2026-03-08T03:00:00-04:00", "timezone": "America/New_York", "blackout": null},
            {"utc": "2026-03-09T06:30:00Z", "local": "2026-03-09T02:30:00-04:00", "timezone": "America/New_York", "blackout": null},
        ]),
        "{}",
        out.dump()
    );
}

/// The Saturday after Patch Tuesday for a year in Berlin: `TUE#2` plus `offset: 4d`, as
/// `tandem next` shows it. Each slot is checked against the calendar here as well as listed.
#[test]
fn next_shows_the_saturday_after_patch_tuesday_for_a_year_across_dst() {
    use chrono::{Datelike, NaiveDate, Weekday};
    let env = site(StandardConfig::new());
    Scheduled::new(
        "patch-saturday",
        "{ cron: \"0 2 * * TUE#2\", offset: 4d, timezone: Europe/Berlin }",
    )
    .write(&env);
    let out = env.tandem([
        "next",
        "patch-saturday",
        "--from",
        "2026-01-01T00:00:00Z",
        "--count",
        "12",
    ]);
    out.success();
    let got: Vec<&str> = out.stdout.lines().collect();
    // Summer time (from 29 March to 25 October) moves the same local 02:00 an hour earlier
    // in UTC.
    let want = [
        "2026-01-17T01:00:00Z  2026-01-17T02:00:00+01:00 (Europe/Berlin)",
        "2026-02-14T01:00:00Z  2026-02-14T02:00:00+01:00 (Europe/Berlin)",
        "2026-03-14T01:00:00Z  2026-03-14T02:00:00+01:00 (Europe/Berlin)",
        "2026-04-18T00:00:00Z  2026-04-18T02:00:00+02:00 (Europe/Berlin)",
        "2026-05-16T00:00:00Z  2026-05-16T02:00:00+02:00 (Europe/Berlin)",
        "2026-06-13T00:00:00Z  2026-06-13T02:00:00+02:00 (Europe/Berlin)",
        "2026-07-18T00:00:00Z  2026-07-18T02:00:00+02:00 (Europe/Berlin)",
        "2026-08-15T00:00:00Z  2026-08-15T02:00:00+02:00 (Europe/Berlin)",
        "2026-09-12T00:00:00Z  2026-09-12T02:00:00+02:00 (Europe/Berlin)",
        "2026-10-17T00:00:00Z  2026-10-17T02:00:00+02:00 (Europe/Berlin)",
        "2026-11-14T01:00:00Z  2026-11-14T02:00:00+01:00 (Europe/Berlin)",
        "2026-12-12T01:00:00Z  2026-12-12T02:00:00+01:00 (Europe/Berlin)",
    ];
    assert_eq!(got, want, "{}", out.dump());
    for (month, line) in (1..=12).zip(got) {
        // The second Tuesday is the first Tuesday on or after the 8th.
        let mut tuesday = NaiveDate::from_ymd_opt(2026, month, 8).unwrap();
        while tuesday.weekday() != Weekday::Tue {
            tuesday = tuesday.succ_opt().unwrap();
        }
        let saturday = tuesday + chrono::Duration::days(4);
        let local = line.split("  ").nth(1).unwrap();
        assert!(
            local.starts_with(&format!("{saturday}T02:00:00+0")),
            "{month}: {line} is not 02:00 on {saturday}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// RRULE schedules and .ics blackout calendars, offline.

#[test]
fn next_shows_an_rrule_schedule_like_the_cron_line_it_stands_for() {
    let env = site(StandardConfig::new());
    let schedules = [
        ("cron-0230", "cron: \"30 2 * * *\""),
        ("rrule-0230", "rrule: \"FREQ=DAILY;BYHOUR=2;BYMINUTE=30\""),
        ("cron-weekdays", "cron: \"0 9 * * 1-5\""),
        (
            "rrule-weekdays",
            "rrule: \"RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9\"",
        ),
        (
            "patch-tuesday",
            "rrule: \"FREQ=MONTHLY;BYDAY=2TU;BYHOUR=22;BYMINUTE=0\"",
        ),
    ];
    for (name, recurrence) in schedules {
        Scheduled::new(
            name,
            &format!("{{ {recurrence}, timezone: Europe/Berlin }}"),
        )
        .write(&env);
    }
    // Across both DST changes of 2026 (29 March, 25 October) and a plain week.
    for from in [
        "2026-03-26T00:00:00Z",
        "2026-10-22T00:00:00Z",
        "2026-12-02T00:00:00Z",
    ] {
        for (cron, rrule) in [
            ("cron-0230", "rrule-0230"),
            ("cron-weekdays", "rrule-weekdays"),
        ] {
            let want = env.tandem(["next", cron, "--from", from, "--count", "8"]);
            want.success();
            let got = env.tandem(["next", rrule, "--from", from, "--count", "8"]);
            got.success();
            assert_eq!(got.stdout, want.stdout, "{rrule} vs {cron} from {from}");
            assert_eq!(got.stdout.lines().count(), 8, "{}", got.dump());
        }
    }
    let out = env.tandem([
        "next",
        "patch-tuesday",
        "--from",
        "2026-12-31T00:00:00Z",
        "--count",
        "4",
    ]);
    out.success();
    let got: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        got,
        [
            "2027-01-12T21:00:00Z  2027-01-12T22:00:00+01:00 (Europe/Berlin)",
            "2027-02-09T21:00:00Z  2027-02-09T22:00:00+01:00 (Europe/Berlin)",
            "2027-03-09T21:00:00Z  2027-03-09T22:00:00+01:00 (Europe/Berlin)",
            "2027-04-13T20:00:00Z  2027-04-13T22:00:00+02:00 (Europe/Berlin)",
        ],
        "{}",
        out.dump()
    );
}

/// A change-freeze calendar as Outlook exports it: a VTIMEZONE with a Windows zone name, a
/// weekly Wednesday 08:00-12:00 freeze from 4 November 2026 with one EXDATE (the 18th), and
/// an all-day freeze from 24 to 26 December.
const OUTLOOK_FREEZE: &str = include_str!("fixtures/outlook-freeze.ics");

fn freeze_calendar() -> String {
    "calendars:\n  freeze:\n    description: change freeze\n    ics: freeze.ics\n    \
     timezone: Europe/Berlin\n"
        .to_string()
}

#[test]
fn an_outlook_ics_freeze_blocks_exactly_its_slots_in_next() {
    use chrono::{Datelike, NaiveDate, Weekday};
    let env = site(StandardConfig::new().extra(&freeze_calendar()));
    env.write("freeze.ics", OUTLOOK_FREEZE);
    Scheduled::new(
        "twice-daily",
        "{ rrule: \"FREQ=DAILY;BYHOUR=9,13\", timezone: Europe/Berlin, blackout: [freeze] }",
    )
    .write(&env);

    // From 20 October 2026 (summer time until the 25th) to the end of the year.
    let first = NaiveDate::from_ymd_opt(2026, 10, 20).expect("a date");
    let last = NaiveDate::from_ymd_opt(2026, 12, 31).expect("a date");
    let mut want = Vec::new();
    let mut day = first;
    while day <= last {
        let offset = if day < NaiveDate::from_ymd_opt(2026, 10, 25).expect("a date") {
            2
        } else {
            1
        };
        for hour in [9, 13] {
            let weekly = day.weekday() == Weekday::Wed
                && hour == 9
                && day >= NaiveDate::from_ymd_opt(2026, 11, 4).expect("a date")
                && day != NaiveDate::from_ymd_opt(2026, 11, 18).expect("a date");
            let christmas = day.month() == 12 && (24..=26).contains(&day.day());
            let skipped = if christmas {
                "  skipped: freeze (Christmas freeze)"
            } else if weekly {
                "  skipped: freeze (Weekly review freeze)"
            } else {
                ""
            };
            want.push(format!(
                "{day}T{:02}:00:00Z  {day}T{hour:02}:00:00+0{offset}:00 (Europe/Berlin){skipped}",
                hour - offset
            ));
        }
        day = day.succ_opt().expect("a date");
    }
    let count = want.len().to_string();
    let out = env.tandem([
        "next",
        "twice-daily",
        "--from",
        "2026-10-19T23:00:00Z",
        "--count",
        &count,
    ]);
    out.success();
    let got: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(got, want, "{}", out.dump());
    assert_eq!(
        want.iter().filter(|l| l.contains("skipped")).count(),
        8 + 6,
        "eight Wednesdays (the 18th of November excepted) and three whole days"
    );

    let out = env.tandem([
        "next",
        "twice-daily",
        "--from",
        "2026-12-24T00:00:00Z",
        "--count",
        "1",
        "--json",
    ]);
    out.success();
    assert_eq!(
        out.json()[0]["blackout"],
        json!({"calendar": "freeze", "reason": "Christmas freeze"}),
        "{}",
        out.dump()
    );
}

#[test]
fn a_broken_ics_file_is_a_load_error_naming_the_file_and_line() {
    let env = site(StandardConfig::new().extra(&freeze_calendar()));
    Scheduled::new("nightly", "{ cron: \"0 3 * * *\", blackout: [freeze] }").write(&env);

    // Outlook's "Customized Time Zone" is no zone tandem can name.
    let broken = OUTLOOK_FREEZE.replace(
        "DTSTART;TZID=\"W. Europe Standard Time\"",
        "DTSTART;TZID=\"Customized Time Zone\"",
    );
    let line = broken
        .lines()
        .position(|l| l.contains("Customized Time Zone"))
        .expect("the edited line")
        + 1;
    env.write("freeze.ics", &broken);
    let out = env.tandem(["validate"]);
    out.status(2)
        .stderr_contains(&format!(
            "freeze.ics:{line}: calendars.freeze.ics: TZID `Customized Time Zone`"
        ))
        .output_lacks("panicked");

    env.write("freeze.ics", "this is a login page, not a calendar\n");
    env.tandem(["validate"])
        .status(2)
        .stderr_contains("freeze.ics")
        .stderr_contains("iCalendar")
        .output_lacks("panicked");

    std::fs::remove_file(env.path().join("freeze.ics")).expect("remove freeze.ics");
    env.tandem(["next", "nightly"])
        .status(2)
        .stderr_contains("freeze.ics: calendars.freeze.ics: cannot read the calendar file")
        .output_lacks("panicked");

    env.write("freeze.ics", OUTLOOK_FREEZE);
    env.tandem(["validate"]).success();
}

// ---------------------------------------------------------------------------------------
// The live daemon fires on time.

#[test]
fn a_seconds_schedule_fires_every_slot_on_time_as_system_for_the_owner() {
    let env = site(StandardConfig::new());
    Scheduled::new("tick", "{ cron: \"*/2 * * * * *\" }").write(&env);
    let daemon = Daemon::start(&env);

    let runs = wait_finished(&daemon, "tick", 3, SETTLE);
    for pair in runs.windows(2) {
        assert_eq!(
            slot_of(&pair[1]) - slot_of(&pair[0]),
            chrono::Duration::seconds(2),
            "slots are not consecutive: {} then {}",
            pair[0]["slot"],
            pair[1]["slot"]
        );
    }
    for run in &runs {
        let slot = slot_of(run);
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["slot"], format!("tick@{}", ts(slot)), "{run}");
        assert_eq!(slot.second() % 2, 0, "{run}");
        assert_eq!(
            run["initiator"],
            json!({"user": "system", "party": "internal"}),
            "{run}"
        );
        let late = time_of(run, "started_at") - slot;
        assert!(
            late >= chrono::Duration::zero() && late < chrono::Duration::seconds(1),
            "run {} started {late} after its slot {}",
            run["id"],
            ts(slot)
        );
        assert!(
            marker(&env, &id(run)).exists(),
            "{run} did not run its script"
        );
    }
    let missed = slot_records(&daemon, "slot_missed", "tick");
    assert!(missed.is_empty(), "{missed:?}");

    let view = schedule_view(&daemon, "tick");
    let last = view["last"]["slot"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let known = runs_of(&daemon, "tick");
    assert!(
        known.iter().any(|r| r["slot"] == last.as_str()),
        "last slot {last:?} is not a run's slot: {view}"
    );
}

/// An `offset` moves the slot itself: the daemon fires at the shifted time and keys the run
/// (at most once per slot) by it, and the schedules view lists shifted slots.
#[test]
fn an_offset_schedule_fires_and_keys_runs_at_the_shifted_slot() {
    let env = site(StandardConfig::new());
    Scheduled::new("shifted", "{ cron: \"*/4 * * * * *\", offset: 2s }").write(&env);
    let daemon = Daemon::start(&env);

    let runs = wait_finished(&daemon, "shifted", 2, SETTLE);
    for run in &runs {
        let slot = slot_of(run);
        assert_eq!(slot.second() % 4, 2, "not a shifted slot: {run}");
        assert_eq!(run["slot"], format!("shifted@{}", ts(slot)), "{run}");
        assert_eq!(run["status"], "succeeded", "{run}");
        let late = time_of(run, "started_at") - slot;
        assert!(
            late >= chrono::Duration::zero() && late < chrono::Duration::seconds(1),
            "run {} started {late} after its slot {}",
            run["id"],
            ts(slot)
        );
    }
    assert_eq!(
        slot_of(&runs[1]) - slot_of(&runs[0]),
        chrono::Duration::seconds(4)
    );
    let view = schedule_view(&daemon, "shifted");
    assert_eq!(view["offset"], "2s", "{view}");
    let next = view["next"]
        .as_array()
        .unwrap_or_else(|| panic!("no next slots: {view}"));
    assert!(!next.is_empty(), "{view}");
    for slot in next {
        let t = at(slot["utc"].as_str().unwrap_or_default());
        assert_eq!(t.second() % 4, 2, "{view}");
    }
}

#[test]
fn an_rrule_schedule_fires_its_slots_in_the_daemon_like_a_cron_one_and_its_blackouts_skip() {
    // Every 2 s from the implied DTSTART (a whole minute): the even seconds, like `*/2`.
    let now = Utc::now();
    let calendars = format!(
        "calendars:\n  freeze:\n    periods:\n      - {{ from: \"{}\", to: \"{}\", reason: \"drill\" }}\n",
        ts(now - chrono::Duration::minutes(1)),
        ts(now + chrono::Duration::hours(1)),
    );
    let env = site(StandardConfig::new().extra(&calendars));
    Scheduled::new("rtick", "{ rrule: \"FREQ=SECONDLY;INTERVAL=2\" }").write(&env);
    Scheduled::new(
        "rfrozen",
        "{ rrule: \"FREQ=SECONDLY;INTERVAL=2\", blackout: [freeze] }",
    )
    .write(&env);
    let daemon = Daemon::start(&env);

    let runs = wait_finished(&daemon, "rtick", 3, SETTLE);
    for pair in runs.windows(2) {
        assert_eq!(
            slot_of(&pair[1]) - slot_of(&pair[0]),
            chrono::Duration::seconds(2),
            "{} then {}",
            pair[0]["slot"],
            pair[1]["slot"]
        );
    }
    for run in &runs {
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(slot_of(run).second() % 2, 0, "{run}");
        assert!(marker(&env, &id(run)).exists(), "{run} did not run");
    }
    let skips = wait_for(SETTLE, "two blackout skips of rfrozen", || {
        let s = skipped(&daemon, "rfrozen", "blackout");
        (s.len() >= 2).then_some(s)
    });
    assert_eq!(skips[0]["detail"]["why"], "drill", "{:?}", skips[0]);
    assert!(runs_of(&daemon, "rfrozen").is_empty());

    let view = schedule_view(&daemon, "rtick");
    assert_eq!(view["rrule"], "FREQ=SECONDLY;INTERVAL=2", "{view}");
    assert!(view["cron"].is_null(), "{view}");
    assert_eq!(view["next"].as_array().map(Vec::len), Some(5), "{view}");
}

// ---------------------------------------------------------------------------------------
// Blackout calendars.

#[test]
fn a_blackout_calendar_suppresses_slots_and_audits_each_one() {
    let now = Utc::now();
    let calendars = format!(
        "calendars:\n  freeze:\n    description: change freeze\n    periods:\n      \
         - {{ from: \"{}\", to: \"{}\", reason: \"quarter-end close\" }}\n",
        ts(now - chrono::Duration::minutes(1)),
        ts(now + chrono::Duration::hours(1)),
    );
    let env = site(StandardConfig::new().extra(&calendars));
    Scheduled::new("frozen", "{ cron: \"*/2 * * * * *\", blackout: [freeze] }").write(&env);
    Scheduled::new("control", "{ cron: \"*/2 * * * * *\" }").write(&env);
    let daemon = Daemon::start(&env);

    let skips = wait_for(SETTLE, "two blackout skips of frozen", || {
        let s = skipped(&daemon, "frozen", "blackout");
        (s.len() >= 2).then_some(s)
    });
    // The same slots fired for the schedule outside the calendar.
    let control = wait_finished(&daemon, "control", 2, SETTLE);
    let skipped_slots: Vec<String> = skips
        .iter()
        .map(|s| s["detail"]["slot"].as_str().unwrap_or_default().to_string())
        .collect();
    let fired_slots: Vec<String> = control.iter().map(|r| ts(slot_of(r))).collect();
    assert_eq!(skipped_slots[..2], fired_slots[..2], "{skips:?}");

    for s in &skips {
        assert_eq!(s["detail"]["calendar"], "freeze", "{s}");
        assert_eq!(s["detail"]["why"], "quarter-end close", "{s}");
        assert!(s["run_id"].is_null(), "{s}");
    }
    let frozen_runs = runs_of(&daemon, "frozen");
    assert!(
        frozen_runs.is_empty(),
        "a slot in a blackout ran: {frozen_runs:?}"
    );
    assert!(
        audit(&daemon)
            .iter()
            .all(|r| r["detail"]["runbook"] != "frozen" || r["event"] == "slot_skipped"),
        "a blackout slot left a record other than slot_skipped"
    );

    let frozen = schedule_view(&daemon, "frozen");
    for slot in frozen["next"].as_array().expect("next slots") {
        assert_eq!(slot["blackout"], "freeze", "{frozen}");
    }
    let control = schedule_view(&daemon, "control");
    for slot in control["next"].as_array().expect("next slots") {
        assert!(slot["blackout"].is_null(), "{control}");
    }
}

// ---------------------------------------------------------------------------------------
// Overlap.

#[test]
fn overlap_skip_skips_slots_while_a_run_is_active_and_queue_runs_them_one_after_another() {
    let env = site(StandardConfig::new());
    let slow = format!("{}\nsleep(3);", touch(&env, "\"\""));
    Scheduled::new("skipper", "{ cron: \"*/2 * * * * *\", overlap: skip }")
        .script(&slow)
        .write(&env);
    Scheduled::new("queuer", "{ cron: \"*/2 * * * * *\", overlap: queue }")
        .script(&slow)
        .write(&env);
    let daemon = Daemon::start(&env);

    let queued = wait_finished(&daemon, "queuer", 3, Duration::from_secs(30));
    let skips = wait_for(SETTLE, "an overlap skip of skipper", || {
        let s = skipped(&daemon, "skipper", "overlap");
        (!s.is_empty()).then_some(s)
    });
    let done = wait_finished(&daemon, "skipper", 2, SETTLE);

    // skip: the slot that came while a run was active has no run, and runs never overlap.
    let run_slots: Vec<String> = runs_of(&daemon, "skipper")
        .iter()
        .map(|r| ts(slot_of(r)))
        .collect();
    for s in &skips {
        let slot = s["detail"]["slot"].as_str().unwrap_or_default().to_string();
        assert!(!run_slots.contains(&slot), "skipped slot {slot} has a run");
    }
    for pair in done.windows(2) {
        assert!(
            time_of(&pair[1], "started_at") >= time_of(&pair[0], "finished_at"),
            "skipper runs overlap: {} and {}",
            pair[0],
            pair[1]
        );
    }
    for run in &done {
        assert_eq!(run["status"], "succeeded", "{run}");
    }

    // queue: every slot has its run; each starts when the one before it ended.
    for pair in queued.windows(2) {
        assert_eq!(
            slot_of(&pair[1]) - slot_of(&pair[0]),
            chrono::Duration::seconds(2),
            "a queued slot is missing between {} and {}",
            pair[0]["slot"],
            pair[1]["slot"]
        );
        assert!(
            time_of(&pair[1], "started_at") >= time_of(&pair[0], "finished_at"),
            "queued runs overlap: {} and {}",
            pair[0],
            pair[1]
        );
    }
    for run in &queued {
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    let third_waited = time_of(&queued[2], "started_at") - slot_of(&queued[2]);
    assert!(
        third_waited >= chrono::Duration::milliseconds(1500),
        "the third queued run did not wait for the ones before it: {}",
        queued[2]
    );
    assert!(slot_records(&daemon, "slot_skipped", "queuer").is_empty());
}

// ---------------------------------------------------------------------------------------
// Misfire across a stop.

#[test]
fn slots_missed_while_the_daemon_was_down_are_audited_and_run_once_catches_up_once() {
    // Three slots two seconds apart inside one minute, then none until tomorrow: the first
    // fires live, the daemon is killed, and the other two are missed.
    let start = Utc::now().with_nanosecond(0).expect("whole second") + chrono::Duration::seconds(5);
    let first = if start.second() > 55 {
        start + chrono::Duration::seconds(60 - i64::from(start.second()))
    } else {
        start
    };
    let slots = [
        first,
        first + chrono::Duration::seconds(2),
        first + chrono::Duration::seconds(4),
    ];
    let cron = format!(
        "{},{},{} {} {} * * *",
        slots[0].second(),
        slots[1].second(),
        slots[2].second(),
        first.minute(),
        first.hour()
    );
    let env = site(StandardConfig::new());
    Scheduled::new("dropper", &format!("{{ cron: \"{cron}\", misfire: skip }}")).write(&env);
    Scheduled::new(
        "catcher",
        &format!("{{ cron: \"{cron}\", misfire: run_once }}"),
    )
    .write(&env);
    let mut daemon = Daemon::start(&env);
    assert!(
        Utc::now() < slots[0] - chrono::Duration::seconds(1),
        "the daemon took too long to start for this test's slots"
    );

    for runbook in ["dropper", "catcher"] {
        let runs = wait_finished(&daemon, runbook, 1, SETTLE);
        assert_eq!(slot_of(&runs[0]), slots[0], "{runs:?}");
        assert_eq!(runs[0]["status"], "succeeded", "{runs:?}");
    }
    assert!(
        Utc::now() < slots[1],
        "the first slot's runs took too long for this test"
    );
    daemon.kill9();
    wait_until(
        Duration::from_secs(60),
        "the last slot to be missed by more than the grace",
        || Utc::now() > slots[2] + chrono::Duration::seconds(MISFIRE_GRACE_SECS + 1),
    );
    let daemon = Daemon::start(&env);

    let catch_up = wait_finished(&daemon, "catcher", 2, SETTLE);
    assert_eq!(
        catch_up.iter().map(slot_of).collect::<Vec<_>>(),
        [slots[0], slots[2]],
        "run_once runs the newest missed slot once: {catch_up:?}"
    );
    assert_eq!(catch_up[1]["status"], "succeeded", "{}", catch_up[1]);
    assert!(marker(&env, &id(&catch_up[1])).exists());

    let dropped = runs_of(&daemon, "dropper");
    assert_eq!(
        dropped.iter().map(slot_of).collect::<Vec<_>>(),
        [slots[0]],
        "misfire skip ran a missed slot: {dropped:?}"
    );
    let missed = |runbook: &str| -> Vec<(String, String)> {
        slot_records(&daemon, "slot_missed", runbook)
            .iter()
            .map(|r| {
                (
                    r["detail"]["slot"].as_str().unwrap_or_default().to_string(),
                    r["detail"]["misfire"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    };
    let dropper_missed = missed("dropper");
    assert_eq!(
        dropper_missed
            .iter()
            .map(|m| m.0.clone())
            .collect::<Vec<_>>(),
        [ts(slots[1]), ts(slots[2])],
        "{dropper_missed:?}"
    );
    assert!(
        dropper_missed.iter().all(|m| m.1 == "skip"),
        "{dropper_missed:?}"
    );
    let catcher_missed = missed("catcher");
    assert_eq!(
        catcher_missed
            .iter()
            .map(|m| m.0.clone())
            .collect::<Vec<_>>(),
        [ts(slots[1])],
        "{catcher_missed:?}"
    );
    // The audit record names the policy as the runbook spells it.
    assert!(
        catcher_missed.iter().all(|m| m.1 == "run_once"),
        "slot_missed detail.misfire should read `run_once`: {catcher_missed:?}"
    );
}

// ---------------------------------------------------------------------------------------
// A crash in the middle of a slot.

#[test]
fn a_crash_during_a_scheduled_run_never_runs_its_slot_twice() {
    let env = site(StandardConfig::new());
    let hold = env.path().join("hold");
    std::fs::write(&hold, "").expect("write hold");
    let script = format!(
        "{}\nif sh(\"test -e \" + quote({:?})).code == 0 {{ sleep(60); }}",
        touch(&env, "\"\""),
        hold.to_string_lossy()
    );
    Scheduled::new("crashy", "{ cron: \"*/2 * * * * *\" }")
        .script(&script)
        .write(&env);
    let mut daemon = Daemon::start(&env);

    let held = wait_for(SETTLE, "a scheduled run holding in its script", || {
        runs_of(&daemon, "crashy")
            .into_iter()
            .find(|r| r["status"] == "running" && marker(&env, &id(r)).exists())
    });
    daemon.kill9();
    std::fs::remove_file(&hold).expect("remove hold");
    let daemon = Daemon::start(&env);

    let slot = slot_of(&held);
    let later = wait_for(SETTLE, "a later slot to run after the restart", || {
        runs_of(&daemon, "crashy")
            .into_iter()
            .find(|r| slot_of(r) > slot && r["status"] == "succeeded")
    });
    assert!(marker(&env, &id(&later)).exists());

    let runs = runs_of(&daemon, "crashy");
    let of_slot: Vec<&Value> = runs.iter().filter(|r| slot_of(r) == slot).collect();
    assert_eq!(
        of_slot.len(),
        1,
        "slot {} has several runs: {of_slot:?}",
        ts(slot)
    );
    assert_eq!(of_slot[0]["id"], held["id"]);
    assert_eq!(of_slot[0]["status"], "interrupted", "{}", of_slot[0]);
    let mut all_slots: Vec<String> = runs.iter().map(|r| ts(slot_of(r))).collect();
    all_slots.dedup();
    assert_eq!(all_slots.len(), runs.len(), "a slot ran twice: {runs:?}");
    let requested = audit(&daemon)
        .into_iter()
        .filter(|r| r["event"] == "run_requested" && r["detail"]["slot"] == held["slot"])
        .count();
    assert_eq!(
        requested,
        1,
        "slot {} was requested {requested} times",
        ts(slot)
    );
}

// ---------------------------------------------------------------------------------------
// Cross-party slots need approval: per slot ahead of it, or standing.

/// The standard config with `web1`, owned by `internal`.
fn web1_site() -> Env {
    site(StandardConfig::new().host(HostSpec::local("web1", "internal")))
}

/// `provider`'s schedule on `internal`'s web1: every slot needs internal's approval, asked
/// for `lead` ahead of the slot.
fn cross(lead: &str) -> Scheduled {
    Scheduled::new("cross", "{ cron: \"*/2 * * * * *\" }")
        .owner("provider")
        .targets("[web1]")
        .line(&format!("approval: {{ lead: {lead} }}"))
}

/// Waits for a slot of `cross` requested for approval at least `ahead` before it, and
/// approves it as ivan; returns the run's id and slot.
fn approve_ahead(daemon: &Daemon, ahead: chrono::Duration) -> (String, DateTime<Utc>) {
    let pending = wait_for(SETTLE, &format!("a requested slot {ahead} ahead"), || {
        let (status, list) = daemon.get("/api/v1/approvals", &token("ivan"));
        assert_eq!(status, 200, "{list}");
        list.as_array()?
            .iter()
            .filter(|r| r["runbook"] == "cross")
            .max_by_key(|r| slot_of(r))
            .filter(|r| slot_of(r) - Utc::now() >= ahead)
            .cloned()
    });
    let run_id = id(&pending);
    let (status, approved) = daemon.post(
        &format!("/api/v1/runs/{run_id}/approve"),
        &token("ivan"),
        &json!({"digest": pending["digest"], "comment": "fine for that slot"}),
    );
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "queued", "{approved}");
    assert!(
        approved["started_at"].is_null(),
        "started before its slot: {approved}"
    );
    (run_id, slot_of(&pending))
}

/// Waits for run `id` to end and returns it.
fn wait_end(daemon: &Daemon, id: &str) -> Value {
    wait_for(SETTLE, &format!("run {id} to end"), || {
        let (_, run) = daemon.get(&format!("/api/v1/runs/{id}"), &token("alice"));
        is_final(&run).then_some(run)
    })
}

#[test]
fn an_unapproved_cross_party_slot_is_skipped_and_a_standing_approval_lets_slots_run() {
    let env = web1_site();
    cross("1h").write(&env);
    let daemon = Daemon::start(&env);

    let skips = wait_for(SETTLE, "two unapproved skips of cross", || {
        let s = skipped(&daemon, "cross", "unapproved");
        (s.len() >= 2).then_some(s)
    });
    for s in &skips {
        let run_id = s["detail"]["run_id"]
            .as_str()
            .unwrap_or_else(|| panic!("skip without the requested run: {s}"));
        let (status, run) = daemon.get(&format!("/api/v1/runs/{run_id}"), &token("alice"));
        assert_eq!(status, 200, "{run}");
        assert_eq!(run["status"], "expired", "{run}");
        assert_eq!(ts(slot_of(&run)), s["detail"]["slot"], "{run}");
        let gate = &run["gates"][0];
        assert_eq!(
            at(gate["expires_at"].as_str().unwrap_or_default()),
            slot_of(&run),
            "{run}"
        );
        assert_eq!(
            run["initiator"],
            json!({"user": "system", "party": "provider"}),
            "{run}"
        );
        assert!(
            !marker(&env, run_id).exists(),
            "an unapproved slot ran: {run}"
        );
    }
    let cross_ids: Vec<String> = runs_of(&daemon, "cross").iter().map(id).collect();
    assert!(
        audit(&daemon).iter().all(|r| r["event"] != "run_started"
            || !cross_ids.contains(&r["run_id"].as_str().unwrap_or_default().to_string())),
        "an unapproved scheduled run started"
    );
    let view = schedule_view(&daemon, "cross");
    assert_eq!(view["approval_needed_from"], json!(["internal"]), "{view}");
    assert_eq!(view["next_slot_approved"], false, "{view}");

    // Only the party whose approval is needed may give it.
    let body = json!({"for": "1h"});
    let (status, refused) = daemon.post("/api/v1/schedules/cross/standing", &token("pete"), &body);
    assert_eq!(
        status, 403,
        "pete (provider) gave internal's standing approval: {refused}"
    );
    let (status, granted) = daemon.post("/api/v1/schedules/cross/standing", &token("ivan"), &body);
    assert_eq!(status, 201, "{granted}");
    assert_eq!(granted["digest"], view["schedule_digest"], "{granted}");
    assert_eq!(granted["party"], "internal", "{granted}");

    let view = schedule_view(&daemon, "cross");
    assert_eq!(view["next_slot_approved"], true, "{view}");
    let promised = view["next"][0]["utc"]
        .as_str()
        .unwrap_or_else(|| panic!("no next slot: {view}"))
        .to_string();

    let covered = wait_for(
        Duration::from_secs(30),
        "a slot to run under the standing approval",
        || {
            runs_of(&daemon, "cross")
                .into_iter()
                .find(|r| r["status"] == "succeeded")
        },
    );
    assert!(marker(&env, &id(&covered)).exists(), "{covered}");
    let standing_records = audit(&daemon)
        .into_iter()
        .filter(|r| r["event"] == "approval_standing" && r["run_id"] == covered["id"])
        .count();
    assert_eq!(
        standing_records, 1,
        "the run does not name its standing approval"
    );

    // The slot GET /api/v1/schedules called approved must run, not be skipped as unapproved.
    let at_promise = wait_for(SETTLE, &format!("slot {promised} to be handled"), || {
        runs_of(&daemon, "cross")
            .into_iter()
            .find(|r| ts(slot_of(r)) == promised && is_final(r))
    });
    assert_eq!(
        at_promise["status"],
        "succeeded",
        "slot {promised} was shown as next_slot_approved after the standing approval, but \
         did not run; skips: {:?}",
        skipped(&daemon, "cross", "unapproved")
            .iter()
            .map(|s| s["detail"]["slot"].clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn an_approval_given_ahead_of_a_slot_runs_it_at_its_slot_not_before() {
    let env = web1_site();
    cross("1h").write(&env);
    let daemon = Daemon::start(&env);

    let (run_id, slot) = approve_ahead(&daemon, chrono::Duration::seconds(4));
    let run = wait_end(&daemon, &run_id);
    assert_eq!(run["status"], "succeeded", "{run}");
    let late = time_of(&run, "started_at") - slot;
    assert!(
        late >= chrono::Duration::zero() && late < chrono::Duration::seconds(2),
        "the approved run started {late} after its slot {}",
        ts(slot)
    );
    assert!(marker(&env, &run_id).exists());
    // The slots before it, not approved, were skipped.
    let before = skipped(&daemon, "cross", "unapproved");
    assert!(
        before
            .iter()
            .any(|s| at(s["detail"]["slot"].as_str().unwrap_or_default()) < slot),
        "no earlier slot was skipped as unapproved"
    );
    assert_eq!(
        runs_of(&daemon, "cross")
            .iter()
            .filter(|r| r["status"] == "succeeded")
            .count(),
        1,
        "only the approved slot may run"
    );
}

#[test]
fn an_approval_given_ahead_of_a_slot_survives_a_graceful_restart() {
    let env = web1_site();
    cross("1h").write(&env);
    let mut daemon = Daemon::start(&env);
    let (run_id, slot) = approve_ahead(&daemon, chrono::Duration::seconds(6));

    daemon.sigterm();
    assert_eq!(
        daemon.wait_exit(SETTLE),
        Some(0),
        "a daemon with nothing running must drain at once\n{}",
        daemon.stderr()
    );
    let daemon = Daemon::start(&env);
    assert!(
        Utc::now() < slot,
        "the restart took too long for this test's slot {}",
        ts(slot)
    );

    let run = wait_end(&daemon, &run_id);
    // Its slot has come and gone, so the audit log tells how the slot was handled.
    wait_until(SETTLE, "the slot to pass", || {
        Utc::now() > slot + chrono::Duration::seconds(1)
    });
    assert_eq!(
        run["status"],
        "succeeded",
        "the slot approved before the restart did not run at {}: {run}\nits slot's records: {:?}",
        ts(slot),
        audit(&daemon)
            .iter()
            .filter(|r| r["run_id"] == run_id.as_str() || r["detail"]["slot"] == ts(slot))
            .map(|r| (r["event"].clone(), r["detail"].clone()))
            .collect::<Vec<_>>()
    );
    assert!(time_of(&run, "started_at") >= slot, "{run}");
    assert!(marker(&env, &run_id).exists());
}

#[test]
fn a_standing_approval_covers_one_schedule_digest_and_an_edit_needs_a_new_one() {
    let env = web1_site();
    // Asked for 1 s ahead, so few slots are requested one by one.
    cross("1s").write(&env);
    let daemon = Daemon::start(&env);
    let (status, granted) = daemon.post(
        "/api/v1/schedules/cross/standing",
        &token("ivan"),
        &json!({"for": "1h", "comment": "routine"}),
    );
    assert_eq!(status, 201, "{granted}");
    let before = wait_for(SETTLE, "a slot run under the standing approval", || {
        runs_of(&daemon, "cross")
            .into_iter()
            .find(|r| r["status"] == "succeeded")
    });

    cross("1s").script(&touch(&env, "\".edited\"")).write(&env);
    let reloaded = wait_for(SETTLE, "the edit to be loaded", || {
        audit(&daemon)
            .into_iter()
            .find(|r| r["event"] == "config_loaded" && r["detail"]["reload"] == true)
    });
    let reloaded_at = at(reloaded["ts"].as_str().unwrap_or_default());
    let skips = wait_for(SETTLE, "two slots after the edit skipped", || {
        let s: Vec<Value> = skipped(&daemon, "cross", "unapproved")
            .into_iter()
            .filter(|s| at(s["detail"]["slot"].as_str().unwrap_or_default()) > reloaded_at)
            .collect();
        (s.len() >= 2).then_some(s)
    });
    let edited_ran: Vec<Value> = runs_of(&daemon, "cross")
        .into_iter()
        .filter(|r| r["version"] != before["version"] && r["started_at"].is_string())
        .collect();
    assert!(
        edited_ran.is_empty(),
        "the edited schedule ran under the old standing approval: {edited_ran:?}"
    );
    let view = schedule_view(&daemon, "cross");
    assert_ne!(view["schedule_digest"], granted["digest"], "{view}");
    assert_eq!(view["next_slot_approved"], false, "{view}");
    assert!(!skips.is_empty());
}

// ---------------------------------------------------------------------------------------
// Maintenance windows.

#[test]
fn hosts_not_started_before_the_window_closed_are_left_not_started() {
    let config = ["web1", "web2", "web3"]
        .iter()
        .fold(StandardConfig::new(), |c, h| {
            c.host(HostSpec::local(h, "internal"))
        });
    let env = site(config);
    let script = format!(
        "log(\"left \" + window_left());\nsleep(2);\n{}",
        touch(&env, "\"-\" + host.name")
    );
    Scheduled::new("patch", "{ cron: \"*/5 * * * * *\", window: 3s }")
        .targets("[web1, web2, web3]")
        .line("rollout: { parallel: 1 }")
        .script(&script)
        .write(&env);
    let daemon = Daemon::start(&env);

    let run = wait_finished(&daemon, "patch", 1, SETTLE).remove(0);
    let run_id = id(&run);
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("window"),
        "error does not mention the window: {run}"
    );
    // Each host takes 2 s, so web1 always starts inside the 3 s window and web3 never
    // does; web2 starts when web1 is done, just inside the window unless the machine is
    // slow. Whatever the timing, no host starts after the window closed.
    let window_end = slot_of(&run) + chrono::Duration::seconds(3);
    let hosts = run["hosts"].as_array().expect("hosts").clone();
    let names: Vec<&str> = hosts.iter().filter_map(|h| h["host"].as_str()).collect();
    assert_eq!(names, ["web1", "web2", "web3"], "{run}");
    assert_eq!(hosts[0]["status"], "succeeded", "{run}");
    assert_eq!(hosts[2]["status"], "not_started", "{run}");
    for (i, host) in hosts.iter().enumerate() {
        let name = names[i];
        if host["status"] == "not_started" {
            assert!(host["started_at"].is_null(), "{run}");
            // (Give or take the moment between the host before ending and the check.)
            assert!(
                hosts[i - 1]["status"] == "not_started"
                    || time_of(&hosts[i - 1], "finished_at")
                        >= window_end - chrono::Duration::milliseconds(250),
                "{name} was left out although the window was still open: {run}"
            );
            assert!(
                !marker(&env, &format!("{run_id}-{name}")).exists(),
                "{name} ran"
            );
        } else {
            assert_eq!(host["status"], "succeeded", "{run}");
            assert!(
                time_of(host, "started_at") < window_end,
                "{name} started after the window closed: {run}"
            );
            assert!(marker(&env, &format!("{run_id}-{name}")).exists(), "{name}");
        }
    }

    let left = |host: &str| -> Option<i64> {
        log_lines(&daemon, &run_id)
            .iter()
            .find(|(h, l)| h.as_deref() == Some(host) && l.starts_with("left "))
            .and_then(|(_, l)| l["left ".len()..].parse().ok())
    };
    let first = left("web1").expect("web1 logged window_left()");
    assert!(
        (0..=3).contains(&first),
        "web1 saw {first} s left of a 3 s window"
    );
    if let Some(second) = left("web2") {
        assert!(second < first && second <= 1, "web2 saw {second} s left");
    }
}

// ---------------------------------------------------------------------------------------
// Reload.

#[test]
fn a_broken_edit_keeps_the_schedule_running_and_a_good_edit_takes_effect() {
    let env = site(StandardConfig::new());
    let v1 = Scheduled::new("pulse", "{ cron: \"*/2 * * * * *\" }").script(&touch(&env, "\".v1\""));
    v1.write(&env);
    let daemon = Daemon::start(&env);
    let first = wait_finished(&daemon, "pulse", 1, SETTLE).remove(0);
    let v1_version = first["version"].clone();
    assert!(marker(&env, &format!("{}.v1", id(&first))).exists());

    env.write_runbook(
        "pulse.yaml",
        &v1.yaml(&env).replace("*/2 * * * * *", "*/2 * * * * * *"),
    );
    let failed = wait_for(SETTLE, "config_reload_failed", || {
        audit(&daemon)
            .into_iter()
            .find(|r| r["event"] == "config_reload_failed")
    });
    let errors = failed["detail"]["errors"].to_string();
    assert!(
        errors.contains("pulse.yaml") && errors.contains("cron"),
        "{failed}"
    );
    let failed_at = at(failed["ts"].as_str().unwrap_or_default());
    let kept = wait_for(SETTLE, "a slot after the broken edit", || {
        runs_of(&daemon, "pulse")
            .into_iter()
            .find(|r| slot_of(r) > failed_at && is_final(r))
    });
    assert_eq!(kept["status"], "succeeded", "{kept}");
    assert_eq!(kept["version"], v1_version, "{kept}");
    assert!(marker(&env, &format!("{}.v1", id(&kept))).exists());
    assert_eq!(schedule_view(&daemon, "pulse")["cron"], "*/2 * * * * *");

    Scheduled::new("pulse", "{ cron: \"*/3 * * * * *\" }")
        .script(&touch(&env, "\".v2\""))
        .write(&env);
    let hup = Command::new("kill")
        .args(["-HUP", &daemon.pid().to_string()])
        .status()
        .expect("run kill -HUP");
    assert!(hup.success());
    wait_for(SETTLE, "config_loaded after the good edit", || {
        audit(&daemon).into_iter().find(|r| {
            r["event"] == "config_loaded"
                && r["detail"]["reload"] == true
                && r["seq"].as_u64() > failed["seq"].as_u64()
        })
    });
    let edited = wait_for(SETTLE, "a run of the edited runbook", || {
        runs_of(&daemon, "pulse")
            .into_iter()
            .find(|r| r["version"] != v1_version && r["status"] == "succeeded")
    });
    assert_eq!(slot_of(&edited).second() % 3, 0, "{edited}");
    assert!(marker(&env, &format!("{}.v2", id(&edited))).exists());
    assert!(!marker(&env, &format!("{}.v1", id(&edited))).exists());
    assert_eq!(schedule_view(&daemon, "pulse")["cron"], "*/3 * * * * *");
}

/// An `.ics` calendar with one event from `from` to `to` (UTC).
fn ics_with(summary: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let f = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Google Inc//Google Calendar 70.9054//EN\r\n\
         BEGIN:VEVENT\r\nUID:freeze-1@example.com\r\nDTSTART:{}\r\nDTEND:{}\r\n\
         SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        f(from),
        f(to)
    )
}

#[test]
fn a_broken_ics_at_reload_keeps_its_last_good_version_on_record_and_a_fix_takes_effect() {
    let now = Utc::now();
    let calendars = "calendars:\n  freeze:\n    ics: freeze.ics\n";
    let env = site(StandardConfig::new().extra(calendars));
    env.write(
        "freeze.ics",
        ics_with(
            "emergency freeze",
            now - chrono::Duration::minutes(1),
            now + chrono::Duration::hours(1),
        ),
    );
    Scheduled::new("frozen", "{ cron: \"*/2 * * * * *\", blackout: [freeze] }").write(&env);
    let daemon = Daemon::start(&env);

    let first = wait_for(SETTLE, "a blackout skip", || {
        skipped(&daemon, "frozen", "blackout").into_iter().next()
    });
    assert_eq!(first["detail"]["calendar"], "freeze", "{first}");
    assert_eq!(first["detail"]["why"], "emergency freeze", "{first}");

    env.write(
        "freeze.ics",
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:soon\r\n",
    );
    let failed = wait_for(SETTLE, "calendar_reload_failed", || {
        audit(&daemon)
            .into_iter()
            .find(|r| r["event"] == "calendar_reload_failed")
    });
    assert_eq!(failed["detail"]["calendar"], "freeze", "{failed}");
    assert!(
        failed["detail"]["errors"]
            .as_str()
            .is_some_and(|e| e.contains("freeze.ics")),
        "{failed}"
    );
    // The freeze stays in force: slots after the failure are still skipped, none run.
    let failed_at = at(failed["ts"].as_str().unwrap_or_default());
    let still = wait_for(SETTLE, "a blackout skip after the broken edit", || {
        skipped(&daemon, "frozen", "blackout")
            .into_iter()
            .find(|s| {
                at(s["detail"]["slot"].as_str().unwrap_or_default())
                    > failed_at + chrono::Duration::seconds(2)
            })
    });
    assert_eq!(still["detail"]["why"], "emergency freeze", "{still}");
    assert!(runs_of(&daemon, "frozen").is_empty());

    // Lifted: the next version has its event in the past; slots run again.
    env.write(
        "freeze.ics",
        ics_with(
            "over",
            now - chrono::Duration::hours(3),
            now - chrono::Duration::hours(2),
        ),
    );
    wait_for(SETTLE, "config_loaded after the fix", || {
        audit(&daemon).into_iter().find(|r| {
            r["event"] == "config_loaded"
                && r["detail"]["reload"] == true
                && r["seq"].as_u64() > failed["seq"].as_u64()
                && r["detail"]["calendars"]["freeze"].is_string()
        })
    });
    let ran = wait_finished(&daemon, "frozen", 1, SETTLE);
    assert_eq!(ran[0]["status"], "succeeded", "{:?}", ran[0]);
}

// ---------------------------------------------------------------------------------------
// GET /api/v1/schedules.

#[test]
fn the_schedules_api_shows_next_slots_in_utc_and_local_time_and_the_approval_state() {
    let env = web1_site();
    Scheduled::new(
        "nightly",
        "{ cron: \"30 2 * * *\", timezone: Europe/Berlin, window: 1h, overlap: queue, \
         misfire: run_once }",
    )
    .targets("[web1]")
    .write(&env);
    Scheduled::new("crossnight", "{ cron: \"0 3 * * *\" }")
        .owner("provider")
        .targets("[web1]")
        .write(&env);
    Scheduled::new("jittery", "{ cron: \"0 4 * * *\", jitter: 10m }").write(&env);
    env.write_runbook(
        "manual.yaml",
        "name: manual\ndescription: on demand only\nowner: internal\ntargets: []\n\
         scope:\n  commands: []\nscript: |\n  log(\"hi\");\n",
    );
    let daemon = Daemon::start(&env);

    let (status, body) = daemon.get("/api/v1/schedules", "");
    assert_eq!(status, 401, "{body}");
    let (status, list) = daemon.get("/api/v1/schedules", &token("alice"));
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|s| s["runbook"].as_str())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["crossnight", "jittery", "nightly"], "{list}");

    let nightly = schedule_view(&daemon, "nightly");
    assert_eq!(nightly["cron"], "30 2 * * *", "{nightly}");
    assert_eq!(nightly["timezone"], "Europe/Berlin", "{nightly}");
    assert_eq!(nightly["window"], "1h", "{nightly}");
    assert_eq!(nightly["overlap"], "queue", "{nightly}");
    assert_eq!(nightly["approval_needed_from"], json!([]), "{nightly}");
    assert_eq!(nightly["next_slot_approved"], true, "{nightly}");
    assert!(nightly["last"].is_null(), "{nightly}");
    let digest = nightly["schedule_digest"].as_str().unwrap_or_default();
    assert!(
        digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
        "{nightly}"
    );
    let next = nightly["next"].as_array().expect("next slots");
    assert_eq!(next.len(), 5, "five slots by default: {nightly}");
    let mut previous = Utc::now();
    for slot in next {
        let utc = slot["utc"].as_str().unwrap_or_default();
        let local = slot["local"].as_str().unwrap_or_default();
        assert!(utc.ends_with('Z'), "{slot}");
        assert_eq!(at(utc), at(local), "{slot}");
        assert!(local.contains("T02:30:00+0"), "{slot}");
        assert_eq!(slot["fires_at"], utc, "{slot}");
        assert!(slot["blackout"].is_null(), "{slot}");
        assert!(at(utc) > previous, "{slot} is not after {previous}");
        previous = at(utc);
    }
    let out = env.tandem(["next", "nightly", "--count", "5", "--json"]);
    out.success();
    let offline: Vec<Value> = out
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|s| s["utc"].clone())
        .collect();
    let online: Vec<Value> = next.iter().map(|s| s["utc"].clone()).collect();
    assert_eq!(offline, online, "`next` and the API disagree");

    let (status, two) = daemon.get("/api/v1/schedules?count=2", &token("alice"));
    assert_eq!(status, 200, "{two}");
    assert!(
        two.as_array()
            .expect("an array")
            .iter()
            .all(|s| s["next"].as_array().map(Vec::len) == Some(2)),
        "{two}"
    );

    // Jitter delays each slot by a stable amount below the bound.
    let jittery = schedule_view(&daemon, "jittery");
    for slot in jittery["next"].as_array().expect("next slots") {
        let utc = at(slot["utc"].as_str().unwrap_or_default());
        let delay = at(slot["fires_at"].as_str().unwrap_or_default()) - utc;
        assert!(
            delay >= chrono::Duration::zero() && delay < chrono::Duration::minutes(10),
            "{slot}"
        );
    }
    assert_eq!(schedule_view(&daemon, "jittery")["next"], jittery["next"]);

    let body = json!({"for": "1h"});
    let (status, refused) = daemon.post("/api/v1/schedules/manual/standing", &token("ivan"), &body);
    assert_eq!(status, 409, "a standing approval of no schedule: {refused}");
    let (status, refused) = daemon.post("/api/v1/schedules/nope/standing", &token("ivan"), &body);
    assert_eq!(status, 404, "{refused}");

    let cross = schedule_view(&daemon, "crossnight");
    assert_eq!(cross["timezone"], "UTC", "{cross}");
    assert_eq!(
        cross["approval_needed_from"],
        json!(["internal"]),
        "{cross}"
    );
    assert_eq!(cross["next_slot_approved"], false, "{cross}");
    let (status, granted) = daemon.post(
        "/api/v1/schedules/crossnight/standing",
        &token("ivan"),
        &json!({"for": "30d", "digest": cross["schedule_digest"]}),
    );
    assert_eq!(status, 201, "{granted}");
    let cross = schedule_view(&daemon, "crossnight");
    assert_eq!(cross["next_slot_approved"], true, "{cross}");
    assert_eq!(cross["schedule_digest"], granted["digest"], "{cross}");

    // The policy as the runbook spells it.
    assert_eq!(nightly["misfire"], "run_once", "{nightly}");
}
