//! The console: plain server-rendered HTML pages for both parties, usable without
//! JavaScript (a small script of our own from `/static` adds live updates where they help).
//!
//! Sign-in takes a token and sets an HttpOnly, SameSite=Strict session cookie. Every state
//! change is a POST carrying the session's CSRF token, checked in constant time. Decisions
//! carry the plan digest the page showed, so an approver approves exactly what they saw.
//! Every page is rendered by [`page`] under one strict CSP (no inline style or script), and
//! every page reads through `App`, which scopes what a party may see (rule 10).
//!
//! | page module   | paths                                                           |
//! |---------------|-----------------------------------------------------------------|
//! | [`approvals`] | `/approvals`, `/approvals/{id}`: decide and review              |
//! | [`home`]      | `/`: what needs me                                              |
//! | [`runs`]      | `/runs`, `/runs/{id}`: list, one run, its live log, cancel      |
//! | [`start`]     | `/start`, `/start/{runbook}`: the form, the preview, Start       |
//! | [`schedules`] | `/schedules`: next slots, approvals ahead, the month calendar   |
//! | [`hosts`]     | `/hosts`, `/matrix`: hosts and freezes, the responsibility matrix|
//! | [`audit`]     | `/audit`: records, the chain's verify status, checkpoints       |
//! | [`reports`]   | `/reports`: the business-review report                          |

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;

use crate::config::{Config, User};
use crate::run::{App, RunError};

mod approvals;
mod audit;
mod home;
mod hosts;
pub(crate) mod reports;
mod runs;
mod schedules;
mod start;

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
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/static/{file}", get(asset))
        .merge(approvals::routes())
        .merge(home::routes())
        .merge(runs::routes())
        .merge(start::routes())
        .merge(schedules::routes())
        .merge(hosts::routes())
        .merge(audit::routes())
        .merge(reports::routes())
        .layer(Extension(Arc::new(Sessions::default())))
        .with_state(app)
}

/// The console's own stylesheet and script, compiled in: the CSP allows nothing else.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "tandem.css",
        "text/css; charset=utf-8",
        include_str!("static/tandem.css"),
    ),
    (
        "tandem.js",
        "text/javascript; charset=utf-8",
        include_str!("static/tandem.js"),
    ),
];

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "public, max-age=300"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
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

/// The console's sections, in the order of its navigation bar.
const NAV: &[(&str, &str)] = &[
    ("/", "What needs me"),
    ("/runs", "Runs"),
    ("/start", "Start a run"),
    ("/approvals", "Approvals"),
    ("/schedules", "Schedules"),
    ("/hosts", "Hosts"),
    ("/matrix", "Responsibilities"),
    ("/audit", "Audit"),
    ("/reports", "Reports"),
];

/// The CSP of every page: our own stylesheet and script only, no inline code, forms post
/// only here, no framing.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A page of the console: the layout around `body` (already HTML), with the security
/// headers every page carries.
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let mut nav = String::new();
    for (href, label) in NAV {
        // A section's own page is titled with its label: say "you are here" to a reader.
        let here = if *label == title {
            " aria-current=\"page\""
        } else {
            ""
        };
        nav.push_str(&format!("<a href=\"{href}\"{here}>{label}</a> "));
    }
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · tandem</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/static/tandem.css\"><script src=\"/static/tandem.js\" defer></script></head><body>\
<a class=\"skip\" href=\"#main\">Skip to the page</a>\
<nav aria-label=\"sections\">{nav}</nav><main id=\"main\" tabindex=\"-1\"><h1>{title}</h1>{body}</main></body></html>",
        title = esc(title),
    );
    let mut resp = (status, Html(html)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only local paths may be redirected to after sign-in: one leading `/`, no scheme, host or
/// backslash, and only visible ASCII (a control character would not make a header).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.contains("//")
                && !n.contains('\\')
                && !n.contains(':')
                && n.chars().all(|c| c.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

pub(crate) fn login_form(next: &str, error: Option<&str>) -> String {
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
pub(crate) struct CsrfForm {
    pub csrf: String,
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

pub(crate) fn csrf_ok(expected: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// The signed-in user of a page request and the session's CSRF token. Without a live
/// session the request is sent to sign in and come back.
pub(crate) struct Signed {
    pub user: User,
    pub csrf: String,
}

impl FromRequestParts<Arc<App>> for Signed {
    type Rejection = Redirect;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Redirect> {
        let here = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let back = Redirect::to(&format!("/login?next={}", urlencode(&here)));
        let Some(sessions) = parts.extensions.get::<Arc<Sessions>>() else {
            return Err(back);
        };
        match sessions.get(&app.config(), &parts.headers) {
            Some((user, csrf)) => Ok(Signed { user, csrf }),
            None => Err(back),
        }
    }
}

/// The user of a form POST: a live session whose CSRF token the form carries. Otherwise
/// the page to answer with: sign in again (coming back to `back`), or the refusal.
pub(crate) fn posted_by(
    app: &App,
    sessions: &Sessions,
    headers: &HeaderMap,
    presented_csrf: &str,
    back: &str,
) -> Result<User, Box<Response>> {
    let Some((user, csrf)) = sessions.get(&app.config(), headers) else {
        return Err(Box::new(page(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            &login_form(back, Some("Your session ended; sign in again.")),
        )));
    };
    if !csrf_ok(&csrf, presented_csrf) {
        return Err(Box::new(page(
            StatusCode::FORBIDDEN,
            "Refused",
            "<p class=\"error\">The form's CSRF token is not valid. Reload the page and try again.</p>",
        )));
    }
    Ok(user)
}

/// Percent-encodes a query value.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub(crate) async fn blocking<T: Send + 'static>(
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

pub(crate) fn error_page(e: &RunError) -> Response {
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
