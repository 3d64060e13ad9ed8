//! Blackout calendars from iCalendar files (RFC 5545), as Outlook, Exchange and Google
//! Calendar export them: every VEVENT is a blackout period.
//!
//! - A period is DTSTART..DTEND, or DTSTART + DURATION; without either, a date-time event
//!   is the instant DTSTART itself (it blocks a slot at exactly that time) and an all-day
//!   event is that one day (RFC 5545 §3.6.1).
//! - All-day events (`VALUE=DATE`) and floating times (no `Z`, no TZID) are in the
//!   calendar's `timezone` (default UTC); all-day days are calendar days, 23 or 25 hours
//!   long on a DST change.
//! - TZID is read by name: an IANA name (also behind a `/mozilla.org/...` style prefix), or
//!   one of the Windows names Outlook writes ("W. Europe Standard Time"), mapped to IANA by
//!   [`WINDOWS_ZONES`] (from Unicode CLDR's windowsZones table). The VTIMEZONE blocks are not
//!   evaluated: the IANA rules of the named zone are used, which is what the exporting
//!   calendar meant for every zone in that table. An unknown TZID is an error, never a guess.
//! - Recurring events are expanded with RRULE, RDATE and EXDATE; an instance moved or
//!   cancelled with RECURRENCE-ID replaces the instance it names. `STATUS:CANCELLED`
//!   events block nothing.
//! - Expansion is bounded: the periods of a horizon ([`HORIZON_BACK`] before to
//!   [`HORIZON_AHEAD`] after the instant asked about) are computed once and cached, and
//!   computed again when an instant outside it is asked about, so a weekly freeze with no
//!   end costs a few hundred periods, not an endless list.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use ::rrule::{RRule, RRuleSet, Tz as RTz, Unvalidated};
use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::rrule::{parse_until, Until};

/// How far before the instant asked about periods are computed.
pub const HORIZON_BACK: chrono::Duration = chrono::Duration::days(1);
/// How far after the instant asked about periods are computed.
pub const HORIZON_AHEAD: chrono::Duration = chrono::Duration::days(2 * 366);
/// Occurrences one event may have from its DTSTART to the end of a horizon: an event
/// recurring more often than that (every minute for years) is refused, not truncated.
const MAX_OCCURRENCES: usize = 200_000;

/// Windows time zone names (as Outlook and Exchange write them in TZID) → IANA names, from
/// Unicode CLDR's windowsZones.xml (territory 001).
pub const WINDOWS_ZONES: &[(&str, &str)] = &[
    ("Dateline Standard Time", "Etc/GMT+12"),
    ("UTC-11", "Etc/GMT+11"),
    ("Hawaiian Standard Time", "Pacific/Honolulu"),
    ("Alaskan Standard Time", "America/Anchorage"),
    ("Pacific Standard Time (Mexico)", "America/Tijuana"),
    ("Pacific Standard Time", "America/Los_Angeles"),
    ("US Mountain Standard Time", "America/Phoenix"),
    ("Mountain Standard Time (Mexico)", "America/Mazatlan"),
    ("Mountain Standard Time", "America/Denver"),
    ("Central America Standard Time", "America/Guatemala"),
    ("Central Standard Time", "America/Chicago"),
    ("Central Standard Time (Mexico)", "America/Mexico_City"),
    ("Canada Central Standard Time", "America/Regina"),
    ("SA Pacific Standard Time", "America/Bogota"),
    ("Eastern Standard Time", "America/New_York"),
    ("Eastern Standard Time (Mexico)", "America/Cancun"),
    ("US Eastern Standard Time", "America/Indiana/Indianapolis"),
    ("Venezuela Standard Time", "America/Caracas"),
    ("Atlantic Standard Time", "America/Halifax"),
    ("SA Western Standard Time", "America/La_Paz"),
    ("Pacific SA Standard Time", "America/Santiago"),
    ("Newfoundland Standard Time", "America/St_Johns"),
    ("E. South America Standard Time", "America/Sao_Paulo"),
    ("Argentina Standard Time", "America/Argentina/Buenos_Aires"),
    ("SA Eastern Standard Time", "America/Cayenne"),
    ("Greenland Standard Time", "America/Nuuk"),
    ("UTC-02", "Etc/GMT+2"),
    ("Azores Standard Time", "Atlantic/Azores"),
    ("Cape Verde Standard Time", "Atlantic/Cape_Verde"),
    ("UTC", "Etc/UTC"),
    ("GMT Standard Time", "Europe/London"),
    ("Greenwich Standard Time", "Atlantic/Reykjavik"),
    ("Morocco Standard Time", "Africa/Casablanca"),
    ("W. Europe Standard Time", "Europe/Berlin"),
    ("Central Europe Standard Time", "Europe/Budapest"),
    ("Romance Standard Time", "Europe/Paris"),
    ("Central European Standard Time", "Europe/Warsaw"),
    ("W. Central Africa Standard Time", "Africa/Lagos"),
    ("Jordan Standard Time", "Asia/Amman"),
    ("GTB Standard Time", "Europe/Bucharest"),
    ("Middle East Standard Time", "Asia/Beirut"),
    ("Egypt Standard Time", "Africa/Cairo"),
    ("E. Europe Standard Time", "Europe/Chisinau"),
    ("Syria Standard Time", "Asia/Damascus"),
    ("South Africa Standard Time", "Africa/Johannesburg"),
    ("FLE Standard Time", "Europe/Kiev"),
    ("Israel Standard Time", "Asia/Jerusalem"),
    ("Kaliningrad Standard Time", "Europe/Kaliningrad"),
    ("Namibia Standard Time", "Africa/Windhoek"),
    ("Arabic Standard Time", "Asia/Baghdad"),
    ("Turkey Standard Time", "Europe/Istanbul"),
    ("Arab Standard Time", "Asia/Riyadh"),
    ("Belarus Standard Time", "Europe/Minsk"),
    ("Russian Standard Time", "Europe/Moscow"),
    ("E. Africa Standard Time", "Africa/Nairobi"),
    ("Iran Standard Time", "Asia/Tehran"),
    ("Arabian Standard Time", "Asia/Dubai"),
    ("Russia Time Zone 3", "Europe/Samara"),
    ("Azerbaijan Standard Time", "Asia/Baku"),
    ("Georgian Standard Time", "Asia/Tbilisi"),
    ("Caucasus Standard Time", "Asia/Yerevan"),
    ("Mauritius Standard Time", "Indian/Mauritius"),
    ("Afghanistan Standard Time", "Asia/Kabul"),
    ("West Asia Standard Time", "Asia/Tashkent"),
    ("Ekaterinburg Standard Time", "Asia/Yekaterinburg"),
    ("Pakistan Standard Time", "Asia/Karachi"),
    ("India Standard Time", "Asia/Kolkata"),
    ("Sri Lanka Standard Time", "Asia/Colombo"),
    ("Nepal Standard Time", "Asia/Kathmandu"),
    ("Central Asia Standard Time", "Asia/Almaty"),
    ("Bangladesh Standard Time", "Asia/Dhaka"),
    ("Myanmar Standard Time", "Asia/Yangon"),
    ("SE Asia Standard Time", "Asia/Bangkok"),
    ("N. Central Asia Standard Time", "Asia/Novosibirsk"),
    ("China Standard Time", "Asia/Shanghai"),
    ("North Asia Standard Time", "Asia/Krasnoyarsk"),
    ("Singapore Standard Time", "Asia/Singapore"),
    ("W. Australia Standard Time", "Australia/Perth"),
    ("Taipei Standard Time", "Asia/Taipei"),
    ("Tokyo Standard Time", "Asia/Tokyo"),
    ("Korea Standard Time", "Asia/Seoul"),
    ("Cen. Australia Standard Time", "Australia/Adelaide"),
    ("AUS Central Standard Time", "Australia/Darwin"),
    ("E. Australia Standard Time", "Australia/Brisbane"),
    ("AUS Eastern Standard Time", "Australia/Sydney"),
    ("West Pacific Standard Time", "Pacific/Port_Moresby"),
    ("Tasmania Standard Time", "Australia/Hobart"),
    ("Vladivostok Standard Time", "Asia/Vladivostok"),
    ("New Zealand Standard Time", "Pacific/Auckland"),
    ("UTC+12", "Etc/GMT-12"),
    ("Fiji Standard Time", "Pacific/Fiji"),
    ("Tonga Standard Time", "Pacific/Tongatapu"),
    ("Samoa Standard Time", "Pacific/Apia"),
];

/// What is wrong with a calendar file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcsError {
    /// 1-based line in the file, where known.
    pub line: Option<usize>,
    pub message: String,
}

/// A parsed `.ics` file: its events, and the periods of the current horizon.
#[derive(Debug)]
pub struct IcsCalendar {
    events: Vec<Event>,
    cache: Mutex<Option<Expanded>>,
}

/// Periods as (start, end, index of the event), by start.
type Periods = Vec<(DateTime<Utc>, DateTime<Utc>, usize)>;

/// The periods of one horizon.
#[derive(Debug)]
struct Expanded {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    periods: Result<Periods, String>,
}

/// How long one instance lasts: calendar days in the event's zone, then an exact time.
#[derive(Debug, Clone, Copy)]
struct Length {
    days: u64,
    exact: chrono::Duration,
}

#[derive(Debug)]
struct Event {
    summary: Option<String>,
    /// The first instance, in the zone its times are read in.
    start: DateTime<RTz>,
    length: Length,
    rules: Vec<RRule>,
    until: Option<DateTime<Utc>>,
    rdates: Vec<DateTime<RTz>>,
    /// Instances taken out: EXDATE, and instances that a RECURRENCE-ID event replaces.
    excluded: BTreeSet<i64>,
}

/// One property of a VEVENT as the parser gives it.
type Prop = ical::property::Property;

impl IcsCalendar {
    /// Parses an `.ics` file's text; `zone` is the calendar's zone for all-day events and
    /// floating times. The horizon around `now` is expanded once, so an event that recurs
    /// too often is refused here rather than at a slot.
    pub fn parse(text: &str, zone: Tz, now: DateTime<Utc>) -> Result<IcsCalendar, IcsError> {
        // Some Windows tools start the file with a byte-order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines = PropertyLines::scan(text);
        let mut raw_events = Vec::new();
        let mut calendars = 0;
        for cal in ical::IcalParser::new(text.as_bytes()) {
            let cal = cal.map_err(|e| IcsError {
                line: line_of_parser_error(&e.to_string()),
                message: format!("not a valid iCalendar file: {e}"),
            })?;
            calendars += 1;
            raw_events.extend(cal.events.into_iter().map(|e| e.properties));
        }
        if calendars == 0 {
            return Err(IcsError {
                line: Some(1),
                message: "not an iCalendar file (no BEGIN:VCALENDAR)".into(),
            });
        }

        // RECURRENCE-ID: the instances of a recurring event that another VEVENT replaces.
        let mut replaced: HashMap<String, Vec<i64>> = HashMap::new();
        for (i, props) in raw_events.iter().enumerate() {
            if let (Some(uid), Some(rid)) = (value(props, "UID"), find(props, "RECURRENCE-ID")) {
                let (t, _) =
                    parse_time(rid, zone).map_err(|m| lines.error(i, "RECURRENCE-ID", m))?;
                replaced
                    .entry(uid.to_string())
                    .or_default()
                    .push(t.timestamp());
            }
        }

        let mut events = Vec::new();
        for (i, props) in raw_events.iter().enumerate() {
            let cancelled =
                value(props, "STATUS").is_some_and(|s| s.eq_ignore_ascii_case("CANCELLED"));
            if cancelled {
                continue;
            }
            let mut event = Event::parse(props, zone).map_err(|(p, m)| lines.error(i, p, m))?;
            if find(props, "RECURRENCE-ID").is_none() {
                if let Some(ids) = value(props, "UID").and_then(|u| replaced.get(u)) {
                    event.excluded.extend(ids);
                }
            }
            events.push(event);
        }
        let cal = IcsCalendar {
            events,
            cache: Mutex::new(None),
        };
        if let Err(m) = cal.expand(now - HORIZON_BACK, now + HORIZON_AHEAD) {
            return Err(IcsError {
                line: None,
                message: m,
            });
        }
        Ok(cal)
    }

    /// Whether `t` falls in one of the calendar's periods, and then the event's SUMMARY.
    /// An event that cannot be expanded (see [`MAX_OCCURRENCES`]) blocks everything: a
    /// freeze that cannot be read is kept, not ignored.
    pub fn blocked_at(&self, t: DateTime<Utc>) -> Option<Option<&str>> {
        let found = {
            // A poisoned lock holds a whole cache or none: keep using it.
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if !cache.as_ref().is_some_and(|c| c.from <= t && t < c.to) {
                let (from, to) = (t - HORIZON_BACK, t + HORIZON_AHEAD);
                *cache = Some(Expanded {
                    from,
                    to,
                    periods: self.expand(from, to),
                });
            }
            match cache.as_ref().map(|c| &c.periods) {
                Some(Ok(periods)) => periods
                    .iter()
                    .find(|(s, e, _)| (*s <= t && t < *e) || (*s == *e && *s == t))
                    .map(|p| Some(p.2)),
                Some(Err(m)) => {
                    tracing::error!(error = %m, "a blackout calendar cannot be expanded; it blocks every slot");
                    Some(None)
                }
                None => None,
            }
        };
        found.map(|i| i.and_then(|i| self.events.get(i)?.summary.as_deref()))
    }

    /// The periods that overlap `from..to`, by start.
    fn expand(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Periods, String> {
        let mut out = Vec::new();
        for (i, e) in self.events.iter().enumerate() {
            e.periods(from, to, &mut |s, end| out.push((s, end, i)))?;
        }
        out.sort();
        Ok(out)
    }
}

impl Event {
    /// An event from its properties; an error names the property that is wrong.
    fn parse(props: &[Prop], zone: Tz) -> Result<Event, (&'static str, String)> {
        let start_prop =
            find(props, "DTSTART").ok_or(("DTSTART", "a VEVENT needs DTSTART".to_string()))?;
        let (start, all_day) = parse_time(start_prop, zone).map_err(|m| ("DTSTART", m))?;
        let length = if let Some(end) = find(props, "DTEND") {
            let (end, end_all_day) = parse_time(end, zone).map_err(|m| ("DTEND", m))?;
            if end < start {
                return Err(("DTEND", "DTEND is before DTSTART".into()));
            }
            if all_day && end_all_day {
                let days = (end.date_naive() - start.date_naive()).num_days();
                Length {
                    days: u64::try_from(days).unwrap_or(0),
                    exact: chrono::Duration::zero(),
                }
            } else {
                Length {
                    days: 0,
                    exact: end.with_timezone(&Utc) - start.with_timezone(&Utc),
                }
            }
        } else if let Some(d) = value(props, "DURATION") {
            parse_duration(d).map_err(|m| ("DURATION", m))?
        } else {
            Length {
                days: u64::from(all_day),
                exact: chrono::Duration::zero(),
            }
        };

        let mut rules = Vec::new();
        let mut until = None;
        for p in props.iter().filter(|p| p.name == "RRULE") {
            let text = p.value.as_deref().unwrap_or_default();
            let mut parts = Vec::new();
            for part in text.split(';').filter(|s| !s.is_empty()) {
                match part.split_once('=') {
                    Some((k, v)) if k.eq_ignore_ascii_case("UNTIL") => {
                        let bound = match parse_until(v).map_err(|m| ("RRULE", m))? {
                            Until::Instant(t) => t,
                            Until::WallClock(t) => instant_in(start.timezone(), t),
                        };
                        until = Some(until.map_or(bound, |u: DateTime<Utc>| u.max(bound)));
                    }
                    _ => parts.push(part),
                }
            }
            let rule: RRule<Unvalidated> = parts
                .join(";")
                .parse()
                .map_err(|e| ("RRULE", format!("`{text}` is not a recurrence rule: {e}")))?;
            rules.push(
                rule.validate(start)
                    .map_err(|e| ("RRULE", format!("`{text}`: {e}")))?,
            );
        }
        let mut rdates = Vec::new();
        for p in props.iter().filter(|p| p.name == "RDATE") {
            for t in parse_times(p, zone).map_err(|m| ("RDATE", m))? {
                rdates.push(t);
            }
        }
        let mut excluded = BTreeSet::new();
        for p in props.iter().filter(|p| p.name == "EXDATE") {
            for t in parse_times(p, zone).map_err(|m| ("EXDATE", m))? {
                excluded.insert(t.timestamp());
            }
        }
        Ok(Event {
            summary: value(props, "SUMMARY").map(unescape),
            start,
            length,
            rules,
            until,
            rdates,
            excluded,
        })
    }

    /// Calls `push` with each instance's (start, end) that overlaps `from..to`.
    fn periods(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        push: &mut dyn FnMut(DateTime<Utc>, DateTime<Utc>),
    ) -> Result<(), String> {
        let mut emit = |s: DateTime<RTz>| {
            if self.excluded.contains(&s.timestamp()) {
                return;
            }
            let start = s.with_timezone(&Utc);
            let end = self.end_of(s);
            if start < to && (end > from || (start == end && start >= from)) {
                push(start, end);
            }
        };
        // DTSTART is the first instance (RFC 5545 §3.8.5.3), whether the rule matches it
        // or not; the rule's instances follow, without DTSTART a second time.
        emit(self.start);
        if !self.rules.is_empty() {
            let set = RRuleSet::new(self.start)
                .set_rrules(self.rules.clone())
                .limit();
            for (n, s) in (&set).into_iter().enumerate() {
                if n >= MAX_OCCURRENCES {
                    return Err(format!(
                        "an event recurs more than {MAX_OCCURRENCES} times before {to}; \
                         a blackout calendar is for freezes, not every minute"
                    ));
                }
                let utc = s.with_timezone(&Utc);
                if utc >= to || self.until.is_some_and(|u| utc > u) {
                    break;
                }
                if s != self.start {
                    emit(s);
                }
            }
        }
        for r in &self.rdates {
            if *r != self.start {
                emit(*r);
            }
        }
        Ok(())
    }

    /// When an instance that starts at `s` ends.
    fn end_of(&self, s: DateTime<RTz>) -> DateTime<Utc> {
        let base = if self.length.days > 0 {
            let local = s.naive_local();
            local
                .checked_add_days(Days::new(self.length.days))
                .map_or(s.with_timezone(&Utc), |l| instant_in(s.timezone(), l))
        } else {
            s.with_timezone(&Utc)
        };
        base + self.length.exact
    }
}

/// The physical line of each property of each VEVENT, for errors (the parser does not
/// keep them).
struct PropertyLines {
    /// Per VEVENT: its BEGIN line, and (property name, line) of each property.
    events: Vec<(usize, Vec<(String, usize)>)>,
}

impl PropertyLines {
    fn scan(text: &str) -> PropertyLines {
        let mut events: Vec<(usize, Vec<(String, usize)>)> = Vec::new();
        let mut inside = false;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.starts_with([' ', '\t']) {
                continue;
            }
            if line.eq_ignore_ascii_case("BEGIN:VEVENT") {
                events.push((n + 1, Vec::new()));
                inside = true;
            } else if line.eq_ignore_ascii_case("END:VEVENT") {
                inside = false;
            } else if inside {
                let name = line.split([';', ':']).next().unwrap_or_default();
                if let Some(e) = events.last_mut() {
                    e.1.push((name.to_ascii_uppercase(), n + 1));
                }
            }
        }
        PropertyLines { events }
    }

    /// An error in VEVENT number `event` (from 0), at its property `prop` where found.
    fn error(&self, event: usize, prop: &str, message: String) -> IcsError {
        let line = self.events.get(event).map(|(begin, props)| {
            props
                .iter()
                .find(|(name, _)| name == prop)
                .map_or(*begin, |p| p.1)
        });
        IcsError { line, message }
    }
}

/// The line number in the parser's "Line N: ..." messages.
fn line_of_parser_error(message: &str) -> Option<usize> {
    let rest = &message[message.find("Line ")? + 5..];
    rest.split(':').next()?.trim().parse().ok()
}

fn find<'p>(props: &'p [Prop], name: &str) -> Option<&'p Prop> {
    props.iter().find(|p| p.name == name)
}

fn value<'p>(props: &'p [Prop], name: &str) -> Option<&'p str> {
    find(props, name).and_then(|p| p.value.as_deref())
}

fn param<'p>(p: &'p Prop, name: &str) -> Option<&'p str> {
    p.params
        .as_ref()?
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.first())
        .map(|v| v.trim_matches('"'))
}

/// TEXT values: `\,` `\;` `\\` and `\n` escapes.
fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push(' '),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The zone a TZID names: IANA, IANA behind a `/prefix/`, or a Windows name.
pub fn zone_of_tzid(tzid: &str) -> Option<Tz> {
    let tzid = tzid.trim().trim_matches('"');
    if let Ok(tz) = tzid.parse::<Tz>() {
        return Some(tz);
    }
    if let Some((_, iana)) = WINDOWS_ZONES
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(tzid))
    {
        return iana.parse().ok();
    }
    // `/mozilla.org/20050126_1/Europe/Berlin`, `/freeassociation.sourceforge.net/Europe/Berlin`.
    let mut rest = tzid.trim_start_matches('/');
    while let Some((_, tail)) = rest.split_once('/') {
        if let Ok(tz) = tail.parse::<Tz>() {
            return Some(tz);
        }
        rest = tail;
    }
    None
}

/// A DATE or DATE-TIME property value: the instant, in the zone it is read in, and whether
/// it is a date (all day).
fn parse_time(p: &Prop, zone: Tz) -> Result<(DateTime<RTz>, bool), String> {
    let v = p.value.as_deref().unwrap_or_default().trim();
    let first = v.split(',').next().unwrap_or_default();
    parse_one(first, p, zone)
}

/// A list of DATE or DATE-TIME values (EXDATE, RDATE; an RDATE PERIOD counts by its start).
fn parse_times(p: &Prop, zone: Tz) -> Result<Vec<DateTime<RTz>>, String> {
    let v = p.value.as_deref().unwrap_or_default();
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_one(s.split('/').next().unwrap_or_default(), p, zone).map(|t| t.0))
        .collect()
}

fn parse_one(v: &str, p: &Prop, zone: Tz) -> Result<(DateTime<RTz>, bool), String> {
    let v = v.trim();
    let is_date = param(p, "VALUE").is_some_and(|t| t.eq_ignore_ascii_case("DATE")) || v.len() == 8;
    if is_date {
        let d = NaiveDate::parse_from_str(v, "%Y%m%d")
            .map_err(|_| format!("`{v}` is not a date like 20261224"))?;
        let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        let tz = RTz::Tz(zone);
        return Ok((instant_in(tz, midnight).with_timezone(&tz), true));
    }
    if let Some(utc) = v.strip_suffix('Z') {
        let t = NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S")
            .map_err(|_| format!("`{v}` is not a date-time like 20261224T220000Z"))?;
        return Ok((RTz::UTC.from_utc_datetime(&t), false));
    }
    let t = NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%S")
        .map_err(|_| format!("`{v}` is not a date-time like 20261224T220000"))?;
    let tz = match param(p, "TZID") {
        Some(id) => zone_of_tzid(id).ok_or_else(|| {
            format!(
                "TZID `{id}` is neither an IANA zone nor a Windows zone name tandem knows \
                 (export the calendar with IANA zone names, or set the event in UTC)"
            )
        })?,
        None => zone,
    };
    let tz = RTz::Tz(tz);
    Ok((instant_in(tz, t).with_timezone(&tz), false))
}

/// The instant of a local time in `tz`: the first of a repeated time; a time in a gap is
/// read with the offset before the gap (RFC 5545 §3.3.5), i.e. moved forward by the gap.
fn instant_in(tz: RTz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        chrono::LocalResult::None => {
            use chrono::Offset;
            let before = tz
                .offset_from_utc_datetime(&(local - chrono::Duration::days(1)))
                .fix();
            Utc.from_utc_datetime(&(local - before))
        }
    }
}

/// A DURATION value (RFC 5545 §3.3.6): `P1D`, `PT2H30M`, `P1W`; days and weeks are
/// calendar days, hours, minutes and seconds exact time.
fn parse_duration(v: &str) -> Result<Length, String> {
    let bad = || format!("`{v}` is not a duration like PT2H, P1D or P1W");
    let body = v.trim().strip_prefix('+').unwrap_or(v.trim());
    if body.starts_with('-') {
        return Err(format!("`{v}`: a negative duration blocks nothing"));
    }
    let body = body.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = match body.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let mut days = 0u64;
    let mut exact = 0i64;
    let mut num = String::new();
    for c in date.chars() {
        match c {
            '0'..='9' => num.push(c),
            'W' | 'D' => {
                let n: u64 = num.parse().map_err(|_| bad())?;
                days += if c == 'W' { n * 7 } else { n };
                num.clear();
            }
            _ => return Err(bad()),
        }
    }
    for c in time.unwrap_or_default().chars() {
        match c {
            '0'..='9' => num.push(c),
            'H' | 'M' | 'S' => {
                let n: i64 = num.parse().map_err(|_| bad())?;
                exact += n * match c {
                    'H' => 3600,
                    'M' => 60,
                    _ => 1,
                };
                num.clear();
            }
            _ => return Err(bad()),
        }
    }
    if !num.is_empty() || (days == 0 && exact == 0 && time.is_none() && date.is_empty()) {
        return Err(bad());
    }
    Ok(Length {
        days,
        exact: chrono::Duration::seconds(exact),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cal(body: &str, zone: Tz) -> Result<IcsCalendar, IcsError> {
        let text = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{}END:VCALENDAR\r\n",
            body.replace('\n', "\r\n")
        );
        IcsCalendar::parse(&text, zone, utc("2026-12-01T00:00:00Z"))
    }

    #[test]
    fn every_windows_zone_in_the_table_is_a_zone() {
        for (windows, iana) in WINDOWS_ZONES {
            assert!(iana.parse::<Tz>().is_ok(), "{windows} → {iana}");
        }
        assert_eq!(
            zone_of_tzid("W. Europe Standard Time"),
            Some(Tz::Europe__Berlin)
        );
        assert_eq!(
            zone_of_tzid("/mozilla.org/20050126_1/Europe/Berlin"),
            Some(Tz::Europe__Berlin)
        );
        assert_eq!(zone_of_tzid("Europe/Berlin"), Some(Tz::Europe__Berlin));
        assert_eq!(zone_of_tzid("Customized Time Zone"), None);
    }

    #[test]
    fn durations_and_missing_ends_follow_rfc_5545() {
        let c = cal(
            "BEGIN:VEVENT\nUID:a\nDTSTART:20261210T100000Z\nDURATION:PT1H30M\nSUMMARY:one\nEND:VEVENT\n\
             BEGIN:VEVENT\nUID:b\nDTSTART:20261211T100000Z\nSUMMARY:instant\nEND:VEVENT\n\
             BEGIN:VEVENT\nUID:c\nDTSTART;VALUE=DATE:20261224\nSUMMARY:Christmas Eve\\, frozen\nEND:VEVENT\n",
            Tz::Europe__Berlin,
        )
        .unwrap();
        assert_eq!(cal_reason(&c, "2026-12-10T11:29:59Z"), Some(Some("one")));
        assert_eq!(cal_reason(&c, "2026-12-10T11:30:00Z"), None);
        assert_eq!(
            cal_reason(&c, "2026-12-11T10:00:00Z"),
            Some(Some("instant"))
        );
        assert_eq!(cal_reason(&c, "2026-12-11T10:00:01Z"), None);
        // An all-day event without DTEND is that day in the calendar's zone (CET).
        assert_eq!(cal_reason(&c, "2026-12-23T22:59:59Z"), None);
        assert_eq!(
            cal_reason(&c, "2026-12-23T23:00:00Z"),
            Some(Some("Christmas Eve, frozen"))
        );
        assert!(cal_reason(&c, "2026-12-24T22:59:59Z").is_some());
        assert_eq!(cal_reason(&c, "2026-12-24T23:00:00Z"), None);
    }

    fn cal_reason<'c>(c: &'c IcsCalendar, t: &str) -> Option<Option<&'c str>> {
        c.blocked_at(utc(t))
    }

    #[test]
    fn recurring_events_honour_exdate_rdate_until_and_recurrence_id() {
        let c = cal(
            "BEGIN:VEVENT\nUID:w\nDTSTART;TZID=W. Europe Standard Time:20261204T180000\n\
             DTEND;TZID=W. Europe Standard Time:20261207T060000\n\
             RRULE:FREQ=WEEKLY;BYDAY=FR;UNTIL=20270101T000000Z\n\
             EXDATE;TZID=W. Europe Standard Time:20261211T180000\n\
             RDATE;TZID=W. Europe Standard Time:20261215T180000\n\
             SUMMARY:weekend freeze\nEND:VEVENT\n\
             BEGIN:VEVENT\nUID:w\nRECURRENCE-ID;TZID=W. Europe Standard Time:20261218T180000\n\
             DTSTART;TZID=W. Europe Standard Time:20261218T200000\n\
             DTEND;TZID=W. Europe Standard Time:20261219T060000\nSUMMARY:short one\nEND:VEVENT\n",
            Tz::UTC,
        )
        .unwrap();
        // Saturday of the first week (CET = UTC+1).
        assert_eq!(
            cal_reason(&c, "2026-12-05T12:00:00Z"),
            Some(Some("weekend freeze"))
        );
        assert_eq!(cal_reason(&c, "2026-12-04T16:59:59Z"), None);
        // EXDATE: the second weekend is open.
        assert_eq!(cal_reason(&c, "2026-12-12T12:00:00Z"), None);
        // RDATE: an extra instance on Tuesday the 15th.
        assert!(cal_reason(&c, "2026-12-16T12:00:00Z").is_some());
        // RECURRENCE-ID: the 18th starts at 20:00 and ends Saturday 06:00.
        assert_eq!(cal_reason(&c, "2026-12-18T18:00:00Z"), None);
        assert_eq!(
            cal_reason(&c, "2026-12-18T19:00:00Z"),
            Some(Some("short one"))
        );
        assert_eq!(cal_reason(&c, "2026-12-19T12:00:00Z"), None);
        // The 25th is in, the 1st of January is after UNTIL.
        assert!(cal_reason(&c, "2026-12-26T12:00:00Z").is_some());
        assert_eq!(cal_reason(&c, "2027-01-02T12:00:00Z"), None);
    }

    #[test]
    fn a_google_export_with_a_byte_order_mark_reads_too() {
        let text = "\u{feff}BEGIN:VCALENDAR\r\nPRODID:-//Google Inc//Google Calendar 70.9054//EN\r\n\
            VERSION:2.0\r\nCALSCALE:GREGORIAN\r\nX-WR-CALNAME:Freeze\r\nX-WR-TIMEZONE:Europe/Berlin\r\n\
            BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nX-LIC-LOCATION:Europe/Berlin\r\n\
            BEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST\r\n\
            DTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\n\
            BEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\n\
            DTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\n\
            END:VTIMEZONE\r\n\
            BEGIN:VEVENT\r\nDTSTART;TZID=Europe/Berlin:20261201T220000\r\n\
            DTEND;TZID=Europe/Berlin:20261202T020000\r\nRRULE:FREQ=DAILY;COUNT=5\r\n\
            EXDATE;TZID=Europe/Berlin:20261202T220000,20261203T220000\r\n\
            DTSTAMP:20261120T100000Z\r\nUID:abc@google.com\r\nSTATUS:CONFIRMED\r\n\
            SUMMARY:nightly batch\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let c = IcsCalendar::parse(text, Tz::UTC, utc("2026-12-01T00:00:00Z")).unwrap();
        assert_eq!(
            cal_reason(&c, "2026-12-01T22:00:00Z"),
            Some(Some("nightly batch"))
        );
        assert_eq!(cal_reason(&c, "2026-12-02T22:00:00Z"), None);
        assert_eq!(cal_reason(&c, "2026-12-03T22:00:00Z"), None);
        assert!(cal_reason(&c, "2026-12-04T22:00:00Z").is_some());
        assert!(cal_reason(&c, "2026-12-05T22:00:00Z").is_some());
        // COUNT=5: the 1st to the 5th, nothing on the 6th.
        assert_eq!(cal_reason(&c, "2026-12-06T22:00:00Z"), None);
    }

    #[test]
    fn an_endless_weekly_event_is_expanded_within_the_horizon_only() {
        let c = cal(
            "BEGIN:VEVENT\nUID:x\nDTSTART:20200106T000000Z\nDTEND:20200106T010000Z\n\
             RRULE:FREQ=WEEKLY\nSUMMARY:monday\nEND:VEVENT\n",
            Tz::UTC,
        )
        .unwrap();
        assert!(cal_reason(&c, "2026-12-07T00:30:00Z").is_some());
        // Years later: the horizon moves with the instant asked about.
        assert!(cal_reason(&c, "2031-12-01T00:30:00Z").is_some());
        assert!(cal_reason(&c, "2031-12-02T00:30:00Z").is_none());
        let cache = c.cache.lock().unwrap();
        let periods = cache.as_ref().unwrap().periods.as_ref().unwrap();
        assert!(periods.len() <= 110, "{}", periods.len());
    }

    #[test]
    fn mistakes_name_the_line() {
        let e = cal(
            "BEGIN:VEVENT\nUID:a\nSUMMARY:x\nDTSTART;TZID=Mars Standard Time:20261210T100000\nEND:VEVENT\n",
            Tz::UTC,
        )
        .unwrap_err();
        assert_eq!(e.line, Some(7), "{e:?}");
        assert!(e.message.contains("TZID `Mars Standard Time`"), "{e:?}");
        let e = cal("BEGIN:VEVENT\nUID:a\nSUMMARY:x\nEND:VEVENT\n", Tz::UTC).unwrap_err();
        assert_eq!(e.line, Some(4), "{e:?}");
        let e = cal(
            "BEGIN:VEVENT\nDTSTART:20261210T100000Z\nRRULE:FREQ=SOMETIMES\nEND:VEVENT\n",
            Tz::UTC,
        )
        .unwrap_err();
        assert_eq!(e.line, Some(6), "{e:?}");
        let e = IcsCalendar::parse("hello", Tz::UTC, utc("2026-12-01T00:00:00Z")).unwrap_err();
        assert!(e.message.contains("iCalendar"), "{e:?}");
        let e = cal(
            "BEGIN:VEVENT\nDTSTART:20200101T000000Z\nRRULE:FREQ=MINUTELY\nEND:VEVENT\n",
            Tz::UTC,
        )
        .unwrap_err();
        assert!(e.message.contains("recurs more than"), "{e:?}");
    }
}
