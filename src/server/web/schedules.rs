//! Schedules (`/schedules`): each scheduled runbook's next slots in its zone and UTC,
//! whether the next slot will run or skip for lack of approval, the standing approvals in
//! force, the last outcome; and one schedule's month calendar with its slots, maintenance
//! windows and blackouts drawn.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::{Datelike, Timelike};
use serde::Deserialize;

use super::{blocking, esc, page, urlencode, Signed};
use crate::policy::matrix::thousands;
use crate::run::estate::CalendarMonth;
use crate::run::schedule::ScheduleView;
use crate::run::{App, RunError};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/schedules", get(schedules_page))
}

/// Schedules per page.
const PER_PAGE: usize = 50;

/// Coming slots shown per schedule.
const SLOTS_SHOWN: usize = 3;

#[derive(Deserialize, Default)]
struct SchedulesQuery {
    page: Option<usize>,
    /// The schedule whose month calendar is drawn.
    runbook: Option<String>,
    /// `YYYY-MM`.
    month: Option<String>,
}

fn parse_month(m: &str) -> Option<(i32, u32)> {
    let (y, mo) = m.split_once('-')?;
    let y: i32 = y.parse().ok()?;
    let mo: u32 = mo.parse().ok()?;
    ((1..=12).contains(&mo) && (1970..=9999).contains(&y)).then_some((y, mo))
}

/// `2026-12-06T02:00:00.000Z` → `Sun 6 Dec 2026 02:00 UTC`, in a `<time>` element.
fn utc_words(ts: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => format!(
            "<time datetime=\"{}\">{}</time>",
            esc(ts),
            t.with_timezone(&chrono::Utc)
                .format("%a %-d %b %Y %H:%M UTC")
        ),
        Err(_) => esc(ts),
    }
}

/// A slot in the schedule's zone and in UTC: `Sun 6 Dec 2026 03:00 (UTC+01:00) · 02:00 UTC`.
fn slot_words(local: &str, utc: &str) -> String {
    let (Ok(l), Ok(u)) = (
        chrono::DateTime::parse_from_rfc3339(local),
        chrono::DateTime::parse_from_rfc3339(utc),
    ) else {
        return format!("{} · {}", esc(local), esc(utc));
    };
    let u = u.with_timezone(&chrono::Utc);
    let utc_part = if u.date_naive() == l.date_naive() {
        u.format("%H:%M UTC").to_string()
    } else {
        u.format("%a %-d %b %H:%M UTC").to_string()
    };
    format!(
        "<time datetime=\"{}\">{}</time> · {utc_part}",
        esc(utc),
        l.format("%a %-d %b %Y %H:%M (UTC%:z)")
    )
}

/// The approval status of a schedule's next slot, in words.
fn approval_words(s: &ScheduleView) -> String {
    let standing = if s.standing.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = s
            .standing
            .iter()
            .map(|g| {
                format!(
                    "{} ({}) until {}",
                    esc(&g.user),
                    esc(&g.party),
                    utc_words(&g.until)
                )
            })
            .collect();
        format!(
            "<br><small>standing approval by {}</small>",
            list.join(", ")
        )
    };
    let word = match s.next_slot_approved {
        None => "<span class=\"muted\">no coming slot</span>".to_string(),
        Some(true) if s.approval_needed_from.is_empty() => "no approval needed".to_string(),
        Some(true) => format!(
            "<span class=\"ok\">approved</span> (needs {})",
            esc(&s.approval_needed_from.join(", "))
        ),
        Some(false) => format!(
            "<span class=\"flag skip\">will skip</span>: needs approval from {}",
            esc(&s.approval_needed_from.join(", "))
        ),
    };
    format!("{word}{standing}")
}

fn schedule_words(s: &ScheduleView) -> String {
    let rule = match (&s.cron, &s.rrule) {
        (Some(c), _) => format!("cron <code>{}</code>", esc(c)),
        (None, Some(r)) => format!("rrule <code>{}</code>", esc(r)),
        _ => String::new(),
    };
    let mut out = format!("{rule} in {}", esc(&s.timezone));
    if let Some(o) = &s.offset {
        let _ = write!(out, ", offset {}", esc(o));
    }
    if let Some(w) = &s.window {
        let _ = write!(out, ", window {}", esc(w));
    }
    out
}

async fn schedules_page(
    State(app): State<Arc<App>>,
    Signed { user, .. }: Signed,
    Query(q): Query<SchedulesQuery>,
) -> Response {
    let a = app.clone();
    let u = user.clone();
    let month = q.month.as_deref().and_then(parse_month);
    if q.month.is_some() && month.is_none() {
        return super::error_page(&RunError::Invalid(
            "`month` is YYYY-MM, e.g. 2026-12".into(),
        ));
    }
    let cal_of = q.runbook.clone().filter(|r| !r.is_empty());
    let loaded = blocking(move || {
        let list = a.schedules_for(&u, SLOTS_SHOWN)?;
        let cal = match cal_of {
            Some(r) => Some(a.schedule_month(&u, &r, month)?),
            None => None,
        };
        Ok((list, cal))
    })
    .await;
    let (list, cal) = match loaded {
        Ok(v) => v,
        Err(r) => return r,
    };
    let skipping = list
        .iter()
        .filter(|s| s.next_slot_approved == Some(false))
        .count();
    let mut body = format!(
        "<p id=\"schedules-summary\">{} schedules concern {}{}.</p>",
        thousands(list.len()),
        esc(&user.party),
        if skipping > 0 {
            format!(
                "; <span class=\"flag\">{} will skip their next slot for lack of approval</span>",
                thousands(skipping)
            )
        } else {
            String::new()
        }
    );
    if let Some(c) = &cal {
        body.push_str(&calendar(c));
    }
    let page_no = q.page.unwrap_or(0);
    let first = page_no.saturating_mul(PER_PAGE);
    body.push_str("<div class=\"scroll\" role=\"region\" aria-label=\"Schedules\"><table id=\"schedules\" aria-label=\"Schedules\"><thead><tr><th scope=\"col\">Runbook</th><th scope=\"col\">When</th><th scope=\"col\">Next slots (local · UTC)</th><th scope=\"col\">Next slot's approval</th><th scope=\"col\">Last outcome</th></tr></thead><tbody>");
    for s in list.iter().skip(first).take(PER_PAGE) {
        let slots: Vec<String> = s
            .next
            .iter()
            .map(|n| {
                format!(
                    "{}{}",
                    slot_words(&n.local, &n.utc),
                    n.blackout
                        .as_ref()
                        .map(|b| format!(
                            " <span class=\"flag\">skipped: blackout {}</span>",
                            esc(b)
                        ))
                        .unwrap_or_default()
                )
            })
            .collect();
        let last = match &s.last {
            Some(l) => format!(
                "{} (slot of {})",
                esc(l.status.as_str()),
                crate::run::schedule::slot_time(&l.slot)
                    .map(|t| utc_words(&crate::run::schedule::ts(t)))
                    .unwrap_or_else(|| esc(&l.slot))
            ),
            None => "<span class=\"muted\">never ran</span>".into(),
        };
        let _ = write!(
            body,
            "<tr id=\"sch-{id}\"><th scope=\"row\">{id}<br><a href=\"/schedules?runbook={u}#calendar\">month calendar</a></th><td>{}</td><td>{}</td><td class=\"approval\">{}</td><td>{last}</td></tr>",
            schedule_words(s),
            slots.join("<br>"),
            approval_words(s),
            id = esc(&s.runbook),
            u = urlencode(&s.runbook),
        );
    }
    body.push_str("</tbody></table></div><p class=\"pager\">");
    if page_no > 0 {
        let _ = write!(
            body,
            "<a rel=\"prev\" href=\"/schedules?page={}\">Previous {PER_PAGE}</a>",
            page_no - 1
        );
    }
    if first + PER_PAGE < list.len() {
        let _ = write!(
            body,
            "<a rel=\"next\" href=\"/schedules?page={}\">Next {PER_PAGE}</a>",
            page_no + 1
        );
    }
    body.push_str("</p>");
    page(StatusCode::OK, "Schedules", &body)
}

/// The month as a table, Monday first: each day's slots (with their windows) and blackouts.
fn calendar(c: &CalendarMonth) -> String {
    let name = |m: u32| {
        crate::scheduler::cron::MONTH_NAMES
            .get(m as usize - 1)
            .copied()
            .unwrap_or("?")
    };
    let (py, pm) = if c.month == 1 {
        (c.year - 1, 12)
    } else {
        (c.year, c.month - 1)
    };
    let (ny, nm) = if c.month == 12 {
        (c.year + 1, 1)
    } else {
        (c.year, c.month + 1)
    };
    let link = |y: i32, m: u32, label: &str, id: &str| {
        format!(
            "<a id=\"{id}\" href=\"/schedules?runbook={}&amp;month={y}-{m:02}#calendar\">{label}</a>",
            urlencode(&c.runbook)
        )
    };
    let mut out = format!(
        "<section id=\"calendar\" aria-label=\"month calendar\"><h2>{} — {} {} ({})</h2><p class=\"pager\">{}{}</p>\
<p><span class=\"slot\">slot</span> <span class=\"window\">maintenance window</span> <span class=\"blackout\">blackout</span></p>\
<div class=\"scroll\" role=\"region\" aria-label=\"Month calendar\"><table class=\"cal\" aria-label=\"Month calendar\"><thead><tr>",
        esc(&c.runbook),
        name(c.month),
        c.year,
        esc(&c.timezone),
        link(py, pm, "← previous month", "cal-prev"),
        link(ny, nm, "next month →", "cal-next"),
    );
    for d in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"] {
        let _ = write!(out, "<th scope=\"col\">{d}</th>");
    }
    out.push_str("</tr></thead><tbody><tr>");
    let lead = c
        .days
        .first()
        .map_or(0, |d| d.date.weekday().num_days_from_monday());
    for _ in 0..lead {
        out.push_str("<td class=\"out\"></td>");
    }
    let mut col = lead;
    for d in &c.days {
        if col == 7 {
            out.push_str("</tr><tr>");
            col = 0;
        }
        let _ = write!(
            out,
            "<td id=\"day-{}\"><b>{}</b>",
            d.date.format("%Y-%m-%d"),
            d.date.day()
        );
        for (cal, why) in &d.blackouts {
            let _ = write!(
                out,
                "<span class=\"blackout\" title=\"{}\">blackout {}</span>",
                esc(why.as_deref().unwrap_or_default()),
                esc(cal)
            );
        }
        for s in &d.slots {
            let _ = write!(
                out,
                "<span class=\"slot\" title=\"{}\">{:02}:{:02}{}</span>",
                esc(&crate::run::schedule::ts(s.utc)),
                s.local.hour(),
                s.local.minute(),
                if s.blackout.is_some() { " skipped" } else { "" },
            );
            if let Some(e) = s.window_end {
                let _ = write!(
                    out,
                    "<span class=\"window\">window to {}{:02}:{:02}</span>",
                    if e.date() != s.local.date() {
                        format!("{} ", e.format("%b %-d"))
                    } else {
                        String::new()
                    },
                    e.hour(),
                    e.minute()
                );
            }
        }
        out.push_str("</td>");
        col += 1;
    }
    for _ in col..7 {
        out.push_str("<td class=\"out\"></td>");
    }
    out.push_str("</tr></tbody></table></div></section>");
    out
}
