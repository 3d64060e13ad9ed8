//! The approval pages: plain server-rendered HTML that works without JavaScript.
//!
//! Sign-in takes a token and sets an HttpOnly, SameSite=Strict session cookie. Every state
//! change is a POST carrying the session's CSRF token, checked in constant time. Decisions
//! carry the plan digest the page showed, so an approver approves exactly what they saw.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{Config, User};
use crate::run::{App, RunError};
use crate::state::{GateStatus, ReviewStatus};
use crate::store::{LogLine, RunRow};

const COOKIE: &str = "tandem_session";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

struct Session {
    user: String,
    /// The user's `token_sha256` at sign-in: when the config gives the user another token,
    /// the session ends with the old one.
    token_sha256: String,
    csrf: String,
    expires: Instant,
}

/// Signed-in browser sessions. In memory: a restart signs everyone out, which is safe.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

fn random_hex(bytes: usize) -> Option<String> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).ok()?;
    Some(hex::encode(b))
}

impl Sessions {
    fn create(&self, user: &User) -> Option<(String, String)> {
        let id = random_hex(32)?;
        let csrf = random_hex(32)?;
        let mut map = self.map.lock().ok()?;
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(
            id.clone(),
            Session {
                user: user.name.clone(),
                token_sha256: user.token_sha256.to_ascii_lowercase(),
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        Some((id, csrf))
    }

    /// (user, csrf token) of the session in the request's cookie, if it is live and its user
    /// still exists with the token it signed in with. A session that no longer holds is
    /// removed.
    fn get(&self, config: &Config, headers: &HeaderMap) -> Option<(User, String)> {
        let id = cookie(headers)?;
        let mut map = self.map.lock().ok()?;
        let s = map.get(&id)?;
        let user = config
            .user(&s.user)
            .filter(|u| u.token_sha256.eq_ignore_ascii_case(&s.token_sha256));
        match user {
            Some(u) if s.expires > Instant::now() => Some((u.clone(), s.csrf.clone())),
            _ => {
                map.remove(&id);
                None
            }
        }
    }

    fn remove(&self, headers: &HeaderMap) {
        if let (Some(id), Ok(mut map)) = (cookie(headers), self.map.lock()) {
            map.remove(&id);
        }
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The pages' routes; merged into the API router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/approvals") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/approvals", get(list_page))
        .route("/approvals/{id}", get(run_page))
        .route("/approvals/{id}/{action}", post(act))
        .layer(Extension(Arc::new(Sessions::default())))
        .with_state(app)
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · tandem</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}\
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}}\
pre,code{{background:#f4f4f4;padding:.2rem .4rem;overflow-x:auto}}form.inline{{display:inline-block;margin-right:2rem}}\
.error{{color:#a00;font-weight:bold}}.flag{{color:#a00}}</style></head><body>\
<p><a href=\"/approvals\">Approvals</a></p><h1>{}</h1>{}</body></html>",
        esc(title),
        esc(title),
        body
    );
    let mut resp = (status, Html(html)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only local approval paths may be redirected to after sign-in.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/approvals") && !n.contains("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/approvals".to_string(),
    }
}

fn login_form(next: &str, error: Option<&str>) -> String {
    format!(
        "{}<form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"next\" value=\"{}\">\
<label>Token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\" required></label> \
<button type=\"submit\" id=\"sign-in\">Sign in</button></form>",
        error.map(|e| format!("<p class=\"error\">{}</p>", esc(e))).unwrap_or_default(),
        esc(next)
    )
}

async fn login_page(Query(q): Query<NextQuery>) -> Response {
    page(
        StatusCode::OK,
        "Sign in",
        &login_form(&safe_next(q.next.as_deref()), None),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(
    State(app): State<Arc<App>>,
    Extension(sessions): Extension<Arc<Sessions>>,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let config = app.config();
    let Some(user) = config.user_by_token(f.token.trim()) else {
        return page(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            &login_form(&next, Some("That token is not valid.")),
        );
    };
    let Some((id, _)) = sessions.create(user) else {
        return page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign in",
            "<p class=\"error\">internal error</p>",
        );
    };
    let secure = app.notifier.link("").starts_with("https://");
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    let mut resp = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(app): State<Arc<App>>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some((_, csrf)) = sessions.get(&app.config(), &headers) {
        if csrf_ok(&csrf, &f.csrf) {
            sessions.remove(&headers);
        }
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("tandem_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    resp
}

fn csrf_ok(expected: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// The signed-in user, or a redirect to sign in and come back to `here`.
fn signed_in(
    app: &App,
    sessions: &Sessions,
    headers: &HeaderMap,
    here: &str,
) -> Result<(User, String), Redirect> {
    sessions
        .get(&app.config(), headers)
        .ok_or_else(|| Redirect::to(&format!("/login?next={here}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RunError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error_page(&e)),
        Err(_) => Err(page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            "<p class=\"error\">internal error</p>",
        )),
    }
}

fn error_page(e: &RunError) -> Response {
    let status = match e {
        RunError::UnknownRun(_) | RunError::UnknownRunbook(_) => StatusCode::NOT_FOUND,
        RunError::Forbidden(_) => StatusCode::FORBIDDEN,
        RunError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        RunError::Conflict(_) => StatusCode::CONFLICT,
        RunError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        RunError::Store(detail) => {
            tracing::error!(%detail, "internal error");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error",
                "<p class=\"error\">internal error</p>",
            );
        }
    };
    page(
        status,
        "Not done",
        &format!(
            "<p class=\"error\" id=\"error\">{}</p>",
            esc(&e.to_string())
        ),
    )
}

async fn list_page(
    State(app): State<Arc<App>>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
) -> Response {
    let (user, csrf) = match signed_in(&app, &sessions, &headers, "/approvals") {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
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
        body.push_str(&run_table(&pending));
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
        body.push_str(&run_table(&mine));
    }
    page(StatusCode::OK, "Approvals", &body)
}

fn run_table(runs: &[RunRow]) -> String {
    let mut t = String::from("<table><tr><th>Run</th><th>Runbook</th><th>Initiator</th><th>Status</th><th>Requested</th></tr>");
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
struct RunPageQuery {
    /// Show the log's lines after this line number instead of its last lines.
    log_after: Option<i64>,
}

async fn run_page(
    State(app): State<Arc<App>>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<RunPageQuery>,
) -> Response {
    let (user, csrf) = match signed_in(
        &app,
        &sessions,
        &headers,
        &format!("/approvals/{}", esc(&id)),
    ) {
        Ok(u) => u,
        Err(r) => return r.into_response(),
    };
    let (a, u) = (app.clone(), user.clone());
    let rid = id.clone();
    let (run, log, total) = match blocking(move || {
        // Rule 10: the log is read only after the run is known to be visible.
        let run = a.visible_run(&u, &rid)?;
        let total = a.store.log_len(&rid)?;
        let from = q
            .log_after
            .unwrap_or(total - PAGE_LOG_LINES)
            .clamp(0, total);
        let log = a.store.log_lines(&rid, from, PAGE_LOG_LINES as usize)?;
        Ok((run, log, total))
    })
    .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let script = app
        .catalog()
        .get(&run.runbook)
        .filter(|rb| rb.version == run.version)
        .map(|rb| rb.script.clone());
    page(
        StatusCode::OK,
        &format!("Run {}", run.id),
        &format!(
            "{}{}",
            run_body(&run, &user, &csrf, script.as_deref()),
            log_body(&run.id, &log, total)
        ),
    )
}

/// A page of a run's log, rendered safe (control characters shown as escapes, then
/// HTML-escaped), with links to the lines before and after it.
fn log_body(id: &str, log: &[LogLine], total: i64) -> String {
    let mut b = format!("<h2>Log</h2><p id=\"log-count\">{total} lines</p>");
    let first = log.first().map_or(total + 1, |l| l.id);
    let last = log.last().map_or(total, |l| l.id);
    if first > 1 {
        let _ = write!(
            b,
            "<p><a id=\"log-earlier\" href=\"/approvals/{}?log_after={}\">earlier lines</a></p>",
            esc(id),
            (first - 1 - PAGE_LOG_LINES).max(0)
        );
    }
    b.push_str("<pre id=\"log\">");
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
            "<p><a id=\"log-later\" href=\"/approvals/{}?log_after={last}\">later lines</a></p>",
            esc(id)
        );
    }
    b
}

/// Everything an approver approves: runbook version, params, targets, scope, digest,
/// initiator, the script itself, and the decisions so far.
fn run_body(run: &RunRow, user: &User, csrf: &str, script: Option<&str>) -> String {
    let plan = &run.plan;
    let mut b = String::new();
    let _ = write!(
        b,
        "<table id=\"summary\"><tr><th>Runbook</th><td>{}</td></tr><tr><th>Version</th><td><code>{}</code></td></tr>\
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
        b.push_str("<h2>Alert</h2><table id=\"alert\">");
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
    b.push_str("<h2>Parameters</h2><table>");
    for (k, v) in &plan.params {
        let _ = write!(b, "<tr><th>{}</th><td>{}</td></tr>", esc(k), json_cell(v));
    }
    b.push_str("</table><h2>Targets</h2><table><tr><th>Host</th><th>Address</th><th>Owner</th><th>Pinned host key</th></tr>");
    for t in &plan.targets {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}@{}:{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&t.name),
            esc(&t.user),
            esc(&t.address),
            t.port,
            esc(&t.owner),
            t.host_key
                .as_deref()
                .map(esc)
                .unwrap_or_else(|| "local".into())
        );
    }
    b.push_str("</table><h2>Scope</h2><table>");
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
}

async fn act(
    State(app): State<Arc<App>>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    let Some((user, csrf)) = sessions.get(&app.config(), &headers) else {
        return page(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            &login_form(
                &format!("/approvals/{id}"),
                Some("Your session ended; sign in again."),
            ),
        );
    };
    if !csrf_ok(&csrf, &f.csrf) {
        return page(StatusCode::FORBIDDEN, "Refused", "<p class=\"error\">The form's CSRF token is not valid. Reload the page and try again.</p>");
    }
    let rid = id.clone();
    let result = match action.as_str() {
        "approve" => {
            let comment = f.comment.filter(|c| !c.trim().is_empty());
            blocking(move || app.decide(&user, &rid, true, comment.as_deref(), f.digest.as_deref()))
                .await
        }
        "deny" => {
            let Some(reason) = f.reason.filter(|r| !r.trim().is_empty()) else {
                return page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Not done",
                    "<p class=\"error\" id=\"error\">A denial needs a reason.</p>",
                );
            };
            blocking(move || app.decide(&user, &rid, false, Some(&reason), f.digest.as_deref()))
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
        Ok(_) => Redirect::to(&format!("/approvals/{id}")).into_response(),
        Err(resp) => resp,
    }
}
