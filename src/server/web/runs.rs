//! Runs (`/runs`, `/runs/{id}`): the list a party may see, filtered and paged in the store;
//! one run in words, its hosts, its chain, its live log, Cancel and the approval form.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::approvals::{log_body, run_and_log, run_body, script_of, words_html, RunPageQuery};
use super::{blocking, esc, page, posted_by, urlencode, CsrfForm, Sessions, Signed};
use crate::config::User;
use crate::policy;
use crate::run::App;
use crate::state::RunStatus;
use crate::store::{now_at, RunFilter, RunRow};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/runs", get(list_page))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/log", get(log_feed))
        .route("/runs/{id}/cancel", post(cancel))
}

/// Runs on one page of the list.
const RUNS_PER_PAGE: usize = 50;

/// The list's filters as the form sends them: an empty field is no filter.
#[derive(Deserialize, Default, Clone)]
struct ListQuery {
    status: Option<String>,
    runbook: Option<String>,
    party: Option<String>,
    host: Option<String>,
    /// The first day (`YYYY-MM-DD`, UTC) or instant (RFC 3339) of the range.
    since: Option<String>,
    /// The last day (included) or the instant the range ends before.
    until: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    /// The page cursor: the last run of the previous page.
    before: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A day or an instant as the store's timestamps: `end` turns a day into the start of the
/// next one, so `until` includes its day.
fn parse_time(s: &str, end: bool) -> Result<String, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(now_at(t.with_timezone(&Utc)));
    }
    let day = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| "give a day as YYYY-MM-DD or a time as RFC 3339".to_string())?;
    let day = if end {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    let start = day
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .ok_or_else(|| "not a day".to_string())?;
    Ok(now_at(start))
}

/// The filters checked: the store's form of each, or a message per field.
struct Checked {
    status: Option<RunStatus>,
    since: Option<String>,
    until: Option<String>,
    errors: Vec<(&'static str, String)>,
}

fn check(q: &ListQuery) -> Checked {
    let mut errors = Vec::new();
    let status = match given(&q.status).map(str::parse::<RunStatus>) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            errors.push(("status", e.to_string()));
            None
        }
        None => None,
    };
    let mut time = |field: &'static str, v: &Option<String>, end: bool| match given(v) {
        Some(s) => match parse_time(s, end) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push((field, e));
                None
            }
        },
        None => None,
    };
    let since = time("since", &q.since, false);
    let until = time("until", &q.until, true);
    Checked {
        status,
        since,
        until,
        errors,
    }
}

async fn list_page(
    State(app): State<Arc<App>>,
    Signed { user, .. }: Signed,
    Query(q): Query<ListQuery>,
) -> Response {
    let checked = check(&q);
    let runs = if checked.errors.is_empty() {
        let (a, u, q2) = (app.clone(), user.clone(), q.clone());
        let (status, since, until) = (checked.status, checked.since.clone(), checked.until.clone());
        match blocking(move || {
            let filter = RunFilter {
                status,
                before: given(&q2.before),
                reference: given(&q2.reference),
                runbook: given(&q2.runbook),
                party: given(&q2.party),
                host: given(&q2.host),
                since: since.as_deref(),
                until: until.as_deref(),
            };
            a.visible_runs(&u, &filter, RUNS_PER_PAGE)
        })
        .await
        {
            Ok(r) => r,
            Err(r) => return r,
        }
    } else {
        Vec::new()
    };
    let mut body = filter_form(&app, &user, &q, &checked.errors);
    if !checked.errors.is_empty() {
        return page(StatusCode::UNPROCESSABLE_ENTITY, "Runs", &body);
    }
    let filtered = [
        &q.status,
        &q.runbook,
        &q.party,
        &q.host,
        &q.since,
        &q.until,
        &q.reference,
    ]
    .iter()
    .any(|v| given(v).is_some());
    if runs.is_empty() {
        body.push_str(if filtered || given(&q.before).is_some() {
            "<p id=\"none\">No run of yours matches.</p>"
        } else {
            "<p id=\"none\">No runs yet. <a href=\"/start\">Start one</a>.</p>"
        });
    } else {
        let _ = write!(
            body,
            "<p id=\"count\">{} run{}, newest first{}.</p>",
            runs.len(),
            if runs.len() == 1 { "" } else { "s" },
            if given(&q.before).is_some() {
                " (an older page)"
            } else {
                ""
            }
        );
        body.push_str(&runs_table(&runs));
    }
    let mut pager = Vec::new();
    if given(&q.before).is_some() {
        pager.push(format!(
            "<a id=\"newest\" href=\"/runs{}\">Newest runs</a>",
            esc(&query_string(&q, None))
        ));
    }
    if runs.len() == RUNS_PER_PAGE {
        if let Some(last) = runs.last() {
            pager.push(format!(
                "<a id=\"older\" href=\"/runs{}\">Older runs</a>",
                esc(&query_string(&q, Some(&last.id)))
            ));
        }
    }
    if !pager.is_empty() {
        let _ = write!(body, "<p class=\"pager\">{}</p>", pager.join(" · "));
    }
    page(StatusCode::OK, "Runs", &body)
}

/// The list's query string with the cursor `before` (none: the first page).
fn query_string(q: &ListQuery, before: Option<&str>) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("status", &q.status),
        ("runbook", &q.runbook),
        ("party", &q.party),
        ("host", &q.host),
        ("since", &q.since),
        ("until", &q.until),
        ("ref", &q.reference),
    ] {
        if let Some(v) = given(v) {
            parts.push(format!("{k}={}", urlencode(v)));
        }
    }
    if let Some(b) = before {
        parts.push(format!("before={}", urlencode(b)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// The filter form: a GET form, so a filtered list is a link one can share.
fn filter_form(app: &App, user: &User, q: &ListQuery, errors: &[(&str, String)]) -> String {
    let error_of = |field: &str| {
        errors
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, e)| {
                format!(
                    " <span class=\"field-error\" id=\"{field}-error\">{}</span>",
                    esc(e)
                )
            })
            .unwrap_or_default()
    };
    let select = |name: &str, label: &str, options: &[String], current: Option<&str>| {
        let mut s = format!("<label>{label} <select name=\"{name}\" id=\"f-{name}\"><option value=\"\">any</option>");
        for o in options {
            let _ = write!(
                s,
                "<option{}>{}</option>",
                if current == Some(o.as_str()) {
                    " selected"
                } else {
                    ""
                },
                esc(o)
            );
        }
        s.push_str("</select></label>");
        s.push_str(&error_of(name));
        s
    };
    let text = |name: &str, label: &str, value: &Option<String>, hint: &str| {
        format!(
            "<label>{label} <input name=\"{name}\" id=\"f-{name}\" value=\"{}\" placeholder=\"{hint}\"></label>{}",
            esc(value.as_deref().unwrap_or_default()),
            error_of(name)
        )
    };
    let statuses: Vec<String> = RunStatus::ALL
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    let mut runbooks: Vec<String> = app
        .runbooks_for(user)
        .into_iter()
        .map(|rb| rb.name)
        .collect();
    runbooks.sort();
    let parties = app.config().parties.clone();
    format!(
        "<form method=\"get\" action=\"/runs\" class=\"filters\" id=\"filters\">{}{}{}{}{}{}{} <button type=\"submit\" id=\"filter\">Filter</button> <a href=\"/runs\">Clear</a></form>",
        select("status", "Status", &statuses, given(&q.status)),
        select("runbook", "Runbook", &runbooks, given(&q.runbook)),
        select("party", "Started by", &parties, given(&q.party)),
        text("host", "Host", &q.host, "web1"),
        text("since", "From", &q.since, "YYYY-MM-DD"),
        text("until", "To", &q.until, "YYYY-MM-DD"),
        text("ref", "Ref", &q.reference, "INC-123"),
    )
}

/// "web1", "2 hosts", "no host".
fn hosts_in_short(run: &RunRow) -> String {
    match run.plan.targets.as_slice() {
        [] => "no host".into(),
        [one] => esc(&one.name),
        many => format!("{} hosts", crate::run::words::count(many.len())),
    }
}

fn runs_table(runs: &[RunRow]) -> String {
    let mut t = String::from(
        "<table id=\"runs\" aria-label=\"Runs\"><tr><th>Run</th><th>Runbook</th><th>Started by</th><th>Targets</th><th>Status</th><th>Requested (UTC)</th><th>Ref</th></tr>",
    );
    for r in runs {
        let _ = write!(
            t,
            "<tr><td><a class=\"run\" href=\"/runs/{id}\">{id}</a></td><td>{}</td><td>{} ({})</td><td>{}</td><td class=\"status status-{st}\">{st}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.runbook),
            esc(&r.initiator.user),
            esc(&r.initiator.party),
            hosts_in_short(r),
            esc(&r.created_at),
            esc(r.reference.as_deref().unwrap_or_default()),
            id = esc(&r.id),
            st = esc(r.status.as_str()),
        );
    }
    t.push_str("</table>");
    t
}

async fn run_page(
    State(app): State<Arc<App>>,
    Signed { user, csrf }: Signed,
    Path(id): Path<String>,
    Query(q): Query<RunPageQuery>,
) -> Response {
    let (run, log, total) = match run_and_log(&app, &user, &id, q.log_after).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let script = script_of(&app, &run);
    let mut body = words_html(&run);
    body.push_str(&links_and_cancel(&run, &user, &csrf));
    body.push_str(&hosts_table(&run));
    body.push_str(&run_body(&run, &user, &csrf, script.as_deref()));
    let follow = (!run.status.is_final()).then(|| format!("/runs/{}/log?follow=1", run.id));
    body.push_str(&log_body(
        &format!("/runs/{}", run.id),
        &log,
        total,
        follow.as_deref(),
    ));
    page(StatusCode::OK, &format!("Run {}", run.id), &body)
}

/// The run's chain (the run that started it, those it started) and, while it has not
/// ended and the user may stop it (rule 11, the same check as the API's), Cancel.
fn links_and_cancel(run: &RunRow, user: &User, csrf: &str) -> String {
    let mut b = String::new();
    if let Some(p) = &run.parent_run {
        let _ = write!(
            b,
            "<p>Started by run <a id=\"parent\" href=\"/runs/{p}\">{p}</a> (its follow-up).</p>",
            p = esc(p)
        );
    }
    if !run.children.is_empty() {
        let links: Vec<String> = run
            .children
            .iter()
            .map(|c| format!("<a class=\"child\" href=\"/runs/{c}\">{c}</a>", c = esc(c)))
            .collect();
        let _ = write!(b, "<p>Follow-up runs: {}</p>", links.join(", "));
    }
    let may_cancel =
        policy::may_cancel(user, &run.initiator.party, &policy::run_owners(&run.plan)).is_ok();
    if !run.status.is_final() && may_cancel {
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/runs/{}/cancel\" id=\"cancel-form\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<button type=\"submit\" id=\"cancel\">Cancel this run</button></form>",
            esc(&run.id),
            esc(csrf)
        );
    }
    b
}

fn hosts_table(run: &RunRow) -> String {
    if run.hosts.is_empty() {
        return String::new();
    }
    let mut t = String::from("<h2>Results per host</h2><table id=\"hosts\" aria-label=\"Results per host\"><tr><th>Host</th><th>Status</th><th>Exit code</th><th>Took</th><th>Error</th></tr>");
    for h in &run.hosts {
        let took = h
            .duration_ms
            .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
            .unwrap_or_default();
        let _ = write!(
            t,
            "<tr><td>{}</td><td class=\"status status-{st}\">{st}</td><td>{}</td><td>{took}</td><td>{}</td></tr>",
            esc(&h.host),
            h.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            esc(h.error.as_deref().unwrap_or_default()),
            st = esc(h.status.as_str()),
        );
    }
    t.push_str("</table>");
    t
}

#[derive(Deserialize)]
struct LogQuery {
    follow: Option<String>,
    after: Option<i64>,
}

/// `GET /runs/{id}/log?follow=1&after=N`: the API's live log (server-sent events, the same
/// stream and the same redaction) for a signed-in session; without `follow`, the run page.
async fn log_feed(
    State(app): State<Arc<App>>,
    Signed { user, .. }: Signed,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Response {
    if !matches!(q.follow.as_deref(), Some("1" | "true")) {
        return Redirect::to(&format!("/runs/{}", urlencode(&id))).into_response();
    }
    let (a, u, rid) = (app.clone(), user.clone(), id.clone());
    if let Err(r) = blocking(move || a.visible_run(&u, &rid)).await {
        return r;
    }
    crate::server::follow_response(
        app,
        user,
        id,
        q.after.unwrap_or(0).max(0),
        crate::server::follow::Framing::Line,
    )
}

/// `POST /runs/{id}/cancel`: the API's cancel, for a signed-in session with its CSRF token.
async fn cancel(
    State(app): State<Arc<App>>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let user = match posted_by(&app, &sessions, &headers, &f.csrf, &format!("/runs/{id}")) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let rid = id.clone();
    match blocking(move || app.cancel(&user, &rid)).await {
        Ok(_) => Redirect::to(&format!("/runs/{}", urlencode(&id))).into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_range_includes_its_last_day() {
        assert_eq!(
            parse_time("2026-12-01", false).unwrap(),
            "2026-12-01T00:00:00.000Z"
        );
        assert_eq!(
            parse_time("2026-12-01", true).unwrap(),
            "2026-12-02T00:00:00.000Z"
        );
        assert_eq!(
            parse_time("2026-12-01T10:00:00+01:00", true).unwrap(),
            "2026-12-01T09:00:00.000Z"
        );
        assert!(parse_time("yesterday", false).is_err());
    }

    #[test]
    fn bad_filters_are_named_by_field() {
        let q = ListQuery {
            status: Some("nearly".into()),
            since: Some("soon".into()),
            ..ListQuery::default()
        };
        let fields: Vec<&str> = check(&q).errors.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["status", "since"]);
    }
}
