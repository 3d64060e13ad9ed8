//! The approval pages: what I may decide, one run with Approve/Deny, break-glass reviews.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;
use serde_json::Value;

use super::{blocking, esc, page, posted_by, Sessions, Signed};
use crate::config::{Transport, User};
use crate::run::words::run_in_words;
use crate::run::App;
use crate::state::{GateStatus, ReviewStatus};
use crate::store::{LogLine, RunRow};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/approvals", get(list_page))
        .route("/approvals/{id}", get(run_page))
        .route("/approvals/{id}/{action}", post(act))
}

async fn list_page(State(app): State<Arc<App>>, Signed { user, csrf }: Signed) -> Response {
    let a = app.clone();
    let u = user.clone();
    let (pending, reviews) =
        match blocking(move || Ok((a.approvals_for(&u)?, a.reviews_for(&u)?))).await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let mut body = format!(
        "<p>Signed in as <b>{}</b> ({}). <form class=\"inline\" method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Sign out</button></form></p>",
        esc(&user.name),
        esc(&user.party),
        esc(&csrf)
    );
    body.push_str("<h2>Waiting for your decision</h2>");
    if pending.is_empty() {
        body.push_str("<p id=\"none\">Nothing is waiting for you.</p>");
    } else {
        body.push_str(&run_table("Waiting for your decision", &pending));
    }
    let mine: Vec<RunRow> = reviews
        .into_iter()
        .filter(|r| {
            r.review
                .as_ref()
                .is_some_and(|v| v.parties.contains(&user.party))
        })
        .collect();
    if !mine.is_empty() {
        body.push_str("<h2>Break-glass runs to review</h2>");
        body.push_str(&run_table("Break-glass runs to review", &mine));
    }
    page(StatusCode::OK, "Approvals", &body)
}

/// A table of runs named `label` (a table is a scroll box on a phone, which a keyboard
/// reaches and a screen reader names).
fn run_table(label: &str, runs: &[RunRow]) -> String {
    let mut t = format!("<table aria-label=\"{}\"><tr><th>Run</th><th>Runbook</th><th>Initiator</th><th>Status</th><th>Requested</th></tr>", esc(label));
    for r in runs {
        let _ = write!(
            t,
            "<tr><td><a class=\"run\" href=\"/approvals/{id}\">{id}</a></td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td></tr>",
            esc(&r.runbook),
            esc(&r.initiator.user),
            esc(&r.initiator.party),
            esc(r.status.as_str()),
            esc(&r.created_at),
            id = esc(&r.id),
        );
    }
    t.push_str("</table>");
    t
}

fn json_cell(v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

/// Lines of the log a run page shows: the last ones, or a page from `log_after`.
const PAGE_LOG_LINES: i64 = 200;

#[derive(Deserialize)]
pub(super) struct RunPageQuery {
    /// Show the log's lines after this line number instead of its last lines.
    pub log_after: Option<i64>,
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
    page(
        StatusCode::OK,
        &format!("Run {}", run.id),
        &format!(
            "{}{}{}",
            words_html(&run),
            run_body(&run, &user, &csrf, script.as_deref()),
            log_body(&format!("/approvals/{}", run.id), &log, total, None)
        ),
    )
}

/// The run `id` as `user` may see it, with a page of its log (its last lines, or those
/// after line `log_after`) and the log's length.
pub(super) async fn run_and_log(
    app: &Arc<App>,
    user: &User,
    id: &str,
    log_after: Option<i64>,
) -> Result<(RunRow, Vec<LogLine>, i64), Response> {
    let (a, u, rid) = (app.clone(), user.clone(), id.to_string());
    blocking(move || {
        // Rule 10: the log is read only after the run is known to be visible.
        let run = a.visible_run(&u, &rid)?;
        let total = a.store.log_len(&rid)?;
        let from = log_after.unwrap_or(total - PAGE_LOG_LINES).clamp(0, total);
        let log = a.store.log_lines(&rid, from, PAGE_LOG_LINES as usize)?;
        Ok((run, log, total))
    })
    .await
}

/// The script of the runbook version `run` was planned from, while the catalog holds it.
pub(super) fn script_of(app: &App, run: &RunRow) -> Option<String> {
    app.catalog()
        .get(&run.runbook)
        .filter(|rb| rb.version == run.version)
        .map(|rb| rb.script.clone())
}

/// A page of a run's log, rendered safe (control characters shown as escapes, then
/// HTML-escaped), with links to the lines before and after it.
/// `base` is the page the links page through (`/approvals/ID` or `/runs/ID`).
/// With `follow` (the URL of the run's live log) and the page at the log's end, the
/// console's script appends new lines as they come.
pub(super) fn log_body(base: &str, log: &[LogLine], total: i64, follow: Option<&str>) -> String {
    let mut b = format!("<h2>Log</h2><p id=\"log-count\">{total} lines</p>");
    let first = log.first().map_or(total + 1, |l| l.id);
    let last = log.last().map_or(total, |l| l.id);
    if first > 1 {
        let _ = write!(
            b,
            "<p><a id=\"log-earlier\" href=\"{}?log_after={}\">earlier lines</a></p>",
            esc(base),
            (first - 1 - PAGE_LOG_LINES).max(0)
        );
    }
    match follow {
        Some(url) if last >= total => {
            let _ = write!(
                b,
                "<pre id=\"log\" data-follow=\"{}&amp;after={last}\">",
                esc(url)
            );
        }
        _ => b.push_str("<pre id=\"log\">"),
    }
    for l in log {
        let host = l
            .host
            .as_deref()
            .map(|h| format!("[{h}] "))
            .unwrap_or_default();
        let mark = if l.stream == "stderr" { "! " } else { "" };
        let _ = writeln!(b, "{}{}{}", esc(&host), mark, esc(&l.line));
    }
    b.push_str("</pre>");
    if last < total {
        let _ = write!(
            b,
            "<p><a id=\"log-later\" href=\"{}?log_after={last}\">later lines</a></p>",
            esc(base)
        );
    }
    b
}

/// The run in one sentence (who wants to run what, on whose hosts, who must approve): the
/// first thing its pages say.
pub(super) fn words_html(run: &RunRow) -> String {
    format!(
        "<p id=\"plan-words\">{}</p>",
        esc(&run_in_words(run).summary)
    )
}

/// Everything an approver approves: runbook version, params, targets, scope, digest,
/// initiator, the script itself, and the decisions so far.
pub(super) fn run_body(run: &RunRow, user: &User, csrf: &str, script: Option<&str>) -> String {
    let plan = &run.plan;
    let words = run_in_words(run);
    let mut b = String::new();
    let _ = write!(
        b,
        "<table id=\"summary\" aria-label=\"Summary\"><tr><th>Runbook</th><td>{}</td></tr><tr><th>Version</th><td><code>{}</code></td></tr>\
<tr><th>Status</th><td id=\"status\">{}</td></tr><tr><th>Initiator</th><td>{} ({})</td></tr><tr><th>Requested</th><td>{}</td></tr>\
<tr><th>Plan digest</th><td><code id=\"digest\">{}</code></td></tr>",
        esc(&run.runbook),
        esc(&run.version),
        esc(run.status.as_str()),
        esc(&run.initiator.user),
        esc(&run.initiator.party),
        esc(&run.created_at),
        esc(&run.digest),
    );
    if let Some(r) = &run.reference {
        let _ = write!(b, "<tr><th>Ref</th><td id=\"ref\">{}</td></tr>", esc(r));
    }
    if run.break_glass {
        let _ = write!(
            b,
            "<tr><th>Break-glass</th><td class=\"flag\">yes: {}</td></tr>",
            esc(run.reason.as_deref().unwrap_or_default())
        );
    }
    if let Some(e) = &run.error {
        let _ = write!(b, "<tr><th>Error</th><td>{}</td></tr>", esc(e));
    }
    b.push_str("</table>");
    if let Some(alert) = plan.trigger.as_ref().filter(|a| a.is_object()) {
        b.push_str("<h2>Alert</h2><table id=\"alert\" aria-label=\"Alert\">");
        for (label, key) in [
            ("Trigger", "trigger"),
            ("Alert", "alertname"),
            ("Summary", "summary"),
            ("Status", "status"),
            ("Ref", "ref"),
            ("Fingerprint", "fingerprint"),
            ("Started", "starts_at"),
        ] {
            if !alert[key].is_null() {
                let _ = write!(
                    b,
                    "<tr><th>{label}</th><td>{}</td></tr>",
                    json_cell(&alert[key])
                );
            }
        }
        b.push_str("</table>");
    }
    if !plan.limit.is_empty() {
        let items: Vec<String> = plan.limit.iter().map(|l| esc(l)).collect();
        let _ = write!(b, "<p>Limited to: {}</p>", items.join(", "));
    }
    b.push_str("<h2>Parameters</h2><table aria-label=\"Parameters\">");
    for (k, v) in &plan.params {
        let _ = write!(b, "<tr><th>{}</th><td>{}</td></tr>", esc(k), json_cell(v));
    }
    b.push_str("</table><h2>Targets</h2><table aria-label=\"Targets\"><tr><th>Host</th><th>Address</th><th>Owner</th><th>Pinned host key</th></tr>");
    for t in &plan.targets {
        // A local host runs on this machine: there is no address, user or port to show.
        let address = match t.transport {
            Transport::Local => "local (this machine)".to_string(),
            Transport::Ssh => esc(&format!("{}@{}:{}", t.user, t.address, t.port)),
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{address}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&t.name),
            esc(&t.owner),
            t.host_key
                .as_deref()
                .map(esc)
                .unwrap_or_else(|| "local".into())
        );
    }
    b.push_str("</table><h2>Scope</h2><table aria-label=\"Scope\">");
    for key in ["commands", "http", "secrets"] {
        let items: Vec<String> = plan.scope[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| format!("<code>{}</code>", json_cell(x)))
            .collect();
        let _ = write!(
            b,
            "<tr><th>{key}</th><td>{}</td></tr>",
            if items.is_empty() {
                "none".into()
            } else {
                items.join("<br>")
            }
        );
    }
    b.push_str("</table>");
    if let Some(s) = script {
        let _ = write!(b, "<h2>Script</h2><pre>{}</pre>", esc(s));
    }
    b.push_str("<h2>Approvals</h2>");
    if !words.why.is_empty() {
        b.push_str("<ul id=\"why-approval\">");
        for w in &words.why {
            let _ = write!(b, "<li>{}</li>", esc(w));
        }
        b.push_str("</ul>");
    }
    for g in &run.gates {
        let need: Vec<String> = g
            .requirements
            .iter()
            .map(|r| format!("{} ×{}", esc(&r.party), r.quorum))
            .collect();
        let _ = write!(
            b,
            "<p>Gate {} ({}): <b class=\"gate-status\">{}</b>; needs {}; expires {}</p><ul>",
            g.gate,
            esc(&g.reason),
            esc(g.status.as_str()),
            need.join(", "),
            esc(&g.expires_at)
        );
        for d in &g.decisions {
            let _ = write!(
                b,
                "<li>{} ({}) {}: {}</li>",
                esc(&d.user),
                esc(&d.party),
                esc(d.decision.as_str()),
                esc(d.comment.as_deref().unwrap_or_default())
            );
        }
        b.push_str("</ul>");
    }
    let pending = run.gates.iter().find(|g| g.status == GateStatus::Pending);
    if let Some(g) = pending {
        let decided = g.decisions.iter().any(|d| d.user == user.name);
        if decided {
            b.push_str("<p>You have decided on this approval.</p>");
        } else {
            let _ = write!(
                b,
                "<form class=\"inline\" method=\"post\" action=\"/approvals/{id}/approve\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"digest\" value=\"{digest}\"><label>Comment <input name=\"comment\" id=\"comment\"></label> \
<button type=\"submit\" id=\"approve\">Approve</button></form>\
<form class=\"inline\" method=\"post\" action=\"/approvals/{id}/deny\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"digest\" value=\"{digest}\"><label>Reason <input name=\"reason\" id=\"reason\" required></label> \
<button type=\"submit\" id=\"deny\">Deny</button></form>",
                id = esc(&run.id),
                csrf = esc(csrf),
                digest = esc(&run.digest),
            );
        }
    }
    if let Some(r) = &run.review {
        let _ = write!(
            b,
            "<h2>Break-glass review</h2><p>Review: <b id=\"review-status\">{}</b>",
            esc(r.status.as_str())
        );
        if let Some(by) = &r.reviewed_by {
            let _ = write!(
                b,
                " by {}: {}",
                esc(by),
                esc(r.comment.as_deref().unwrap_or_default())
            );
        }
        b.push_str("</p>");
        if r.status == ReviewStatus::Open {
            let _ = write!(
                b,
                "<form method=\"post\" action=\"/approvals/{id}/review\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label>Comment <input name=\"comment\" id=\"review-comment\" required></label> <button type=\"submit\" id=\"review\">Acknowledge</button></form>",
                id = esc(&run.id),
                csrf = esc(csrf),
            );
        }
    }
    b
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    /// `home`: the decision was made from the home page, which is where it goes back to.
    #[serde(default)]
    back: Option<String>,
}

async fn act(
    State(app): State<Arc<App>>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    let user = match posted_by(
        &app,
        &sessions,
        &headers,
        &f.csrf,
        &format!("/approvals/{id}"),
    ) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let back = match f.back.as_deref() {
        Some("home") => "/".to_string(),
        _ => format!("/approvals/{id}"),
    };
    let rid = id.clone();
    let result = match action.as_str() {
        "approve" => {
            let comment = f.comment.filter(|c| !c.trim().is_empty());
            blocking(move || app.decide(&user, &rid, true, comment.as_deref(), f.digest.as_deref()))
                .await
        }
        "deny" => {
            blocking(move || {
                app.decide(&user, &rid, false, f.reason.as_deref(), f.digest.as_deref())
            })
            .await
        }
        "review" => {
            let comment = f.comment.unwrap_or_default();
            blocking(move || app.review(&user, &rid, &comment)).await
        }
        _ => {
            return page(
                StatusCode::NOT_FOUND,
                "Not found",
                "<p class=\"error\">No such action.</p>",
            )
        }
    };
    match result {
        Ok(_) => Redirect::to(&back).into_response(),
        Err(resp) => resp,
    }
}
