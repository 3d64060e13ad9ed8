//! What needs me (`/`): what the signed-in user's party owes or should know today, each as
//! a short summary with links; when nothing does, a page that says all is well.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::Utc;

use super::{blocking, esc, page, Signed};
use crate::audit::Record;
use crate::run::words::{count, run_in_words};
use crate::run::App;
use crate::state::RunStatus;
use crate::store::{now_at, FreezeRow, RunFilter, RunRow};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/", get(home))
}

/// How far back "my runs that failed" looks.
const RECENT_DAYS: i64 = 7;
/// How many failed runs of each kind the page lists.
const RECENT_FAILED: usize = 10;

/// Everything the home page shows, read in one blocking call.
struct Needs {
    approvals: Vec<RunRow>,
    reviews: Vec<RunRow>,
    failed: Vec<RunRow>,
    frozen: Vec<FreezeRow>,
    skipping: Vec<crate::run::schedule::ScheduleView>,
    undelivered: Vec<Record>,
}

impl Needs {
    fn nothing(&self) -> bool {
        self.approvals.is_empty()
            && self.reviews.is_empty()
            && self.failed.is_empty()
            && self.frozen.is_empty()
            && self.skipping.is_empty()
            && self.undelivered.is_empty()
    }
}

fn read(app: &App, user: &crate::config::User) -> Result<Needs, crate::run::RunError> {
    let since = now_at(Utc::now() - chrono::Duration::days(RECENT_DAYS));
    let mut failed = Vec::new();
    for status in [RunStatus::Failed, RunStatus::Interrupted] {
        let filter = RunFilter {
            status: Some(status),
            party: Some(&user.party),
            since: Some(&since),
            ..RunFilter::default()
        };
        failed.extend(app.visible_runs(user, &filter, RECENT_FAILED)?);
    }
    failed.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    let reviews = app
        .reviews_for(user)?
        .into_iter()
        .filter(|r| {
            r.review
                .as_ref()
                .is_some_and(|v| v.parties.contains(&user.party))
        })
        .collect();
    let skipping = app
        .schedules_for(user, 1)?
        .into_iter()
        .filter(|s| s.next_slot_approved == Some(false))
        .collect();
    Ok(Needs {
        approvals: app.approvals_for(user)?,
        reviews,
        failed,
        frozen: app.freezes_for(user)?,
        skipping,
        undelivered: app.undelivered_checkpoints(user)?,
    })
}

async fn home(State(app): State<Arc<App>>, Signed { user, csrf }: Signed) -> Response {
    let (a, u) = (app.clone(), user.clone());
    let needs = match blocking(move || read(&a, &u)).await {
        Ok(n) => n,
        Err(r) => return r,
    };
    let mut b = format!(
        "<p>Signed in as <b id=\"me\">{}</b> ({}). <form class=\"inline\" method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Sign out</button></form></p><div class=\"needs\">",
        esc(&user.name),
        esc(&user.party),
        esc(&csrf)
    );
    if needs.nothing() {
        b.push_str(
            "<p class=\"all-well\" id=\"all-well\">All is well: nothing needs you. \
             <a href=\"/runs\">Recent runs</a> · <a href=\"/start\">Start a run</a></p>",
        );
    }
    if !needs.approvals.is_empty() {
        let _ = write!(
            b,
            "<section id=\"need-approvals\"><h2>{} waiting for your decision</h2><ul>",
            plural(needs.approvals.len(), "run", "runs")
        );
        for r in &needs.approvals {
            let _ = write!(
                b,
                "<li><a class=\"run\" href=\"/runs/{id}\">{id}</a>: {}\
<form class=\"inline\" method=\"post\" action=\"/approvals/{id}/approve\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"digest\" value=\"{digest}\"><input type=\"hidden\" name=\"back\" value=\"home\">\
<button type=\"submit\" class=\"approve\" id=\"approve-{id}\">Approve</button></form> \
<a href=\"/runs/{id}\">details, or deny</a></li>",
                esc(&run_in_words(r).summary),
                id = esc(&r.id),
                csrf = esc(&csrf),
                digest = esc(&r.digest),
            );
        }
        b.push_str("</ul></section>");
    }
    if !needs.reviews.is_empty() {
        let _ = write!(
            b,
            "<section id=\"need-reviews\"><h2>{} your party must review</h2><ul>",
            plural(needs.reviews.len(), "break-glass run", "break-glass runs")
        );
        for r in &needs.reviews {
            let _ = write!(
                b,
                "<li><a class=\"run\" href=\"/runs/{id}\">{id}</a>: {} Reason given: {}</li>",
                esc(&run_in_words(r).summary),
                esc(r.reason.as_deref().unwrap_or_default()),
                id = esc(&r.id),
            );
        }
        b.push_str("</ul></section>");
    }
    if !needs.failed.is_empty() {
        let _ = write!(
            b,
            "<section id=\"need-failed\"><h2>{} of your party's runs failed or were interrupted in the last {RECENT_DAYS} days</h2><ul>",
            count(needs.failed.len())
        );
        for r in &needs.failed {
            let _ = write!(
                b,
                "<li><a class=\"run\" href=\"/runs/{id}\">{id}</a> {} <span class=\"status status-{st}\">{st}</span> at {}{}</li>",
                esc(&r.runbook),
                esc(r.finished_at.as_deref().unwrap_or(&r.created_at)),
                r.error
                    .as_deref()
                    .map(|e| format!(": {}", esc(e)))
                    .unwrap_or_default(),
                id = esc(&r.id),
                st = esc(r.status.as_str()),
            );
        }
        let _ = write!(
            b,
            "</ul><p><a href=\"/runs?status=failed&amp;party={}\">all failed runs</a></p></section>",
            esc(&super::urlencode(&user.party))
        );
    }
    if !needs.frozen.is_empty() {
        let _ =
            write!(
            b,
            "<section id=\"need-frozen\"><h2>{} of your party frozen: nothing runs on {}</h2><ul>",
            plural(needs.frozen.len(), "host", "hosts"),
            if needs.frozen.len() == 1 { "it" } else { "them" }
        );
        for f in &needs.frozen {
            let _ = write!(
                b,
                "<li>{} by {} at {}: {}</li>",
                esc(&f.host),
                esc(&f.frozen_by),
                esc(&f.frozen_at),
                esc(&f.reason)
            );
        }
        b.push_str("</ul><p><a href=\"/hosts\">hosts</a></p></section>");
    }
    if !needs.skipping.is_empty() {
        let _ = write!(
            b,
            "<section id=\"need-schedules\"><h2>{} will skip the next slot: not approved</h2><ul>",
            plural(needs.skipping.len(), "schedule", "schedules")
        );
        for s in &needs.skipping {
            let next = s.next.first();
            let _ = write!(
                b,
                "<li>{} at {} (UTC; local {}) needs the approval of {}</li>",
                esc(&s.runbook),
                esc(next.map_or("", |n| n.utc.as_str())),
                esc(next.map_or("", |n| n.local.as_str())),
                esc(&s.approval_needed_from.join(", ")),
            );
        }
        b.push_str("</ul><p><a href=\"/schedules\">schedules</a></p></section>");
    }
    if !needs.undelivered.is_empty() {
        let _ = write!(
            b,
            "<section id=\"need-checkpoints\"><h2>{} of your party did not get the latest checkpoint</h2><ul>",
            plural(needs.undelivered.len(), "witness", "witnesses")
        );
        for r in &needs.undelivered {
            let _ = write!(
                b,
                "<li>{} at {} (checkpoint seq {}): {}</li>",
                esc(r.detail["witness"].as_str().unwrap_or_default()),
                esc(&r.ts),
                esc(&r.detail["seq"].to_string()),
                esc(r.detail["error"].as_str().unwrap_or_default()),
            );
        }
        b.push_str("</ul><p><a href=\"/audit\">audit</a></p></section>");
    }
    b.push_str("</div>");
    page(StatusCode::OK, "What needs me", &b)
}

/// "1 run", "3 runs".
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}
