//! Hosts and the responsibility matrix (`/hosts`, `/matrix`, `/matrix.csv`).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::{blocking, csrf_ok, esc, page, urlencode, Signed};
use crate::config::{Role, Transport};
use crate::policy::matrix::{owns_of, thousands, MatrixRow};
use crate::run::estate::HostFilter;
use crate::run::App;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/hosts", get(hosts_page))
        .route("/hosts/freeze", post(freeze))
        .route("/hosts/lift", post(lift))
        .route("/matrix", get(matrix_page))
        .route("/matrix.csv", get(matrix_csv))
}

#[derive(Deserialize, Default)]
struct HostsQuery {
    name: Option<String>,
    owner: Option<String>,
    tag: Option<String>,
    frozen: Option<String>,
    runbook: Option<String>,
    page: Option<usize>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl HostsQuery {
    fn filter(&self) -> HostFilter {
        HostFilter {
            name: nonempty(&self.name),
            owner: nonempty(&self.owner),
            tag: nonempty(&self.tag),
            frozen: self.frozen.as_deref() == Some("yes"),
            runbook: nonempty(&self.runbook),
        }
    }

    /// The query string of this filter at another page.
    fn at_page(&self, page: usize) -> String {
        let f = self.filter();
        let mut q: Vec<String> = Vec::new();
        for (k, v) in [
            ("name", f.name),
            ("owner", f.owner),
            ("tag", f.tag),
            ("runbook", f.runbook),
        ] {
            if let Some(v) = v {
                q.push(format!("{k}={}", urlencode(&v)));
            }
        }
        if f.frozen {
            q.push("frozen=yes".into());
        }
        if page > 0 {
            q.push(format!("page={page}"));
        }
        if q.is_empty() {
            "/hosts".into()
        } else {
            format!("/hosts?{}", q.join("&amp;"))
        }
    }
}

async fn hosts_page(
    State(app): State<Arc<App>>,
    Signed { user, csrf }: Signed,
    Query(q): Query<HostsQuery>,
) -> Response {
    let a = app.clone();
    let u = user.clone();
    let filter = q.filter();
    let page_no = q.page.unwrap_or(0);
    let p = match blocking(move || a.hosts_for(&u, &filter, page_no)).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let f = q.filter();
    let mut body = format!(
        "<p id=\"hosts-summary\">{party} owns {owned} of the {seen} hosts it can see{frozen}.</p>",
        party = esc(&user.party),
        owned = thousands(p.owned),
        seen = thousands(p.seen),
        frozen = if p.frozen_owned > 0 {
            format!(
                "; <a href=\"/hosts?frozen=yes\" class=\"frozen\">{} frozen</a>",
                thousands(p.frozen_owned)
            )
        } else {
            String::new()
        },
    );
    let _ = write!(
        body,
        "<form class=\"filter\" method=\"get\" action=\"/hosts\">\
<label>Name <input name=\"name\" id=\"f-name\" value=\"{}\"></label>\
<label>Owner <input name=\"owner\" id=\"f-owner\" value=\"{}\"></label>\
<label>Tag <input name=\"tag\" id=\"f-tag\" value=\"{}\"></label>\
<label>Runbook <input name=\"runbook\" id=\"f-runbook\" value=\"{}\"></label>\
<label><span>Frozen only</span><input type=\"checkbox\" name=\"frozen\" value=\"yes\" id=\"f-frozen\"{}></label>\
<button type=\"submit\" id=\"f-apply\">Filter</button> <a href=\"/hosts\">Clear</a></form>",
        esc(f.name.as_deref().unwrap_or_default()),
        esc(f.owner.as_deref().unwrap_or_default()),
        esc(f.tag.as_deref().unwrap_or_default()),
        esc(f.runbook.as_deref().unwrap_or_default()),
        if f.frozen { " checked" } else { "" },
    );
    let first = p.page * p.per_page;
    let _ = write!(
        body,
        "<p id=\"hosts-matching\">{} host{} match{}{}.</p>",
        thousands(p.matching),
        if p.matching == 1 { "" } else { "s" },
        if p.matching == 1 { "es" } else { "" },
        if p.matching > p.per_page {
            format!(
                "; showing {}–{}",
                thousands(first + 1),
                thousands(first + p.rows.len())
            )
        } else {
            String::new()
        }
    );
    let back = q.at_page(p.page).replace("&amp;", "&");
    body.push_str("<div class=\"scroll\" role=\"region\" aria-label=\"Hosts\"><table id=\"hosts\" aria-label=\"Hosts\"><thead><tr><th scope=\"col\">Host</th><th scope=\"col\">Owner</th><th scope=\"col\">Tags</th><th scope=\"col\">Reached by</th><th scope=\"col\">Freeze</th><th scope=\"col\">Last run</th></tr></thead><tbody>");
    for v in &p.rows {
        let h = &v.host;
        let reached = match h.transport {
            Transport::Local => "local (on the daemon's machine)".to_string(),
            Transport::Ssh => format!("ssh {}@{}:{}", h.user, h.address, h.port),
        };
        let mut freeze = match (&v.freeze, v.frozen) {
            (Some(fr), _) => format!(
                "<span class=\"frozen\">frozen</span> by {} at {}: {}",
                esc(&fr.frozen_by),
                esc(&fr.frozen_at),
                esc(&fr.reason)
            ),
            (None, true) => "<span class=\"frozen\">frozen</span> by its owner".to_string(),
            (None, false) => "not frozen".to_string(),
        };
        if v.may_freeze {
            let id = esc(&h.name);
            if v.frozen {
                let _ = write!(
                    freeze,
                    "<form method=\"post\" action=\"/hosts/lift\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"host\" value=\"{id}\"><input type=\"hidden\" name=\"back\" value=\"{b}\">\
<button type=\"submit\" id=\"lift-{id}\">Lift the freeze</button></form>",
                    csrf = esc(&csrf),
                    b = esc(&back),
                );
            } else {
                let _ = write!(
                    freeze,
                    "<form method=\"post\" action=\"/hosts/freeze\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"host\" value=\"{id}\"><input type=\"hidden\" name=\"back\" value=\"{b}\">\
<label>Reason <input name=\"reason\" id=\"reason-{id}\" required></label> \
<button type=\"submit\" id=\"freeze-{id}\">Freeze</button></form>",
                    csrf = esc(&csrf),
                    b = esc(&back),
                );
            }
        }
        let last = match &v.last {
            Some(r) => format!(
                "<a href=\"/runs/{id}\">{id}</a> {}{}",
                esc(r.status.as_str()),
                r.at.as_deref()
                    .map(|t| format!(" at {}", esc(t)))
                    .unwrap_or_default(),
                id = esc(&r.run_id),
            ),
            None => "<span class=\"muted\">none</span>".to_string(),
        };
        let _ = write!(
            body,
            "<tr id=\"host-{id}\"><th scope=\"row\">{id}</th><td>{}</td><td>{}</td><td>{}</td><td class=\"freeze\">{freeze}</td><td>{last}</td></tr>",
            esc(&h.owner),
            esc(&h.tags.join(", ")),
            esc(&reached),
            id = esc(&h.name),
        );
    }
    body.push_str("</tbody></table></div><p class=\"pager\">");
    if p.page > 0 {
        let _ = write!(
            body,
            "<a rel=\"prev\" href=\"{}\">Previous {}</a>",
            q.at_page(p.page - 1),
            p.per_page
        );
    }
    if first + p.rows.len() < p.matching {
        let _ = write!(
            body,
            "<a rel=\"next\" id=\"next-page\" href=\"{}\">Next {}</a>",
            q.at_page(p.page + 1),
            p.per_page
        );
    }
    body.push_str("</p>");
    page(StatusCode::OK, "Hosts", &body)
}

#[derive(Deserialize)]
struct FreezeForm {
    csrf: String,
    host: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    back: String,
}

/// Where to go after a freeze or lift: back to the hosts page the form was on.
fn back_to(back: &str, host: &str) -> String {
    let ok = back.starts_with("/hosts") && !back.contains("//") && !back.contains('\\');
    let base = if ok { back } else { "/hosts" };
    format!("{base}#host-{}", urlencode(host))
}

fn csrf_refused() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Not done",
        "<p class=\"error\" id=\"error\">The form is out of date (CSRF check failed); reload the page and try again.</p>",
    )
}

/// Freezes one host: the same `App::freeze` as `POST /api/v1/freezes` (rule 11: only an
/// approver or admin of the owning party).
async fn freeze(
    State(app): State<Arc<App>>,
    Signed { user, csrf }: Signed,
    Form(f): Form<FreezeForm>,
) -> Response {
    if !csrf_ok(&csrf, &f.csrf) {
        return csrf_refused();
    }
    let to = back_to(&f.back, &f.host);
    let targets = vec![f.host];
    match blocking(move || app.freeze(&user, &targets, &f.reason)).await {
        Ok(_) => Redirect::to(&to).into_response(),
        Err(r) => r,
    }
}

/// Lifts one host's freeze: the same `App::unfreeze` as `POST /api/v1/freezes/lift`.
async fn lift(
    State(app): State<Arc<App>>,
    Signed { user, csrf }: Signed,
    Form(f): Form<FreezeForm>,
) -> Response {
    if !csrf_ok(&csrf, &f.csrf) {
        return csrf_refused();
    }
    let to = back_to(&f.back, &f.host);
    let targets = vec![f.host];
    match blocking(move || app.unfreeze(&user, &targets)).await {
        Ok(_) => Redirect::to(&to).into_response(),
        Err(r) => r,
    }
}

fn roles(r: &[Role]) -> String {
    r.iter().map(Role::to_string).collect::<Vec<_>>().join(", ")
}

/// "internal owns 238 of 1,143 targets; provider owns 905 of 1,143 targets".
fn targets_summary(r: &MatrixRow) -> String {
    if r.target_count == 0 {
        return "no hosts (the script runs once)".into();
    }
    r.target_owners
        .iter()
        .map(|(p, n)| format!("{} {}", esc(p), owns_of(*n, r.target_count)))
        .collect::<Vec<_>>()
        .join("<br>")
}

async fn matrix_page(State(app): State<Arc<App>>, Signed { user, .. }: Signed) -> Response {
    let a = app.clone();
    let u = user.clone();
    let m = match blocking(move || Ok(a.matrix_for(&u))).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut body = format!(
        "<p id=\"matrix-summary\">{} runbooks concern {} ({}). For each: who owns it, who may start it, \
what it may touch and whose that is, who must approve when each party starts it, and whether it may go \
break-glass — computed by the rules the engine enforces. <a id=\"matrix-csv\" href=\"/matrix.csv\" download>Download as CSV</a> \
for the quarterly sign-off.</p>",
        thousands(m.rows.len()),
        esc(&user.party),
        esc(&user.name),
    );
    body.push_str("<div class=\"scroll\" role=\"region\" aria-label=\"Responsibility matrix\"><table id=\"matrix\" class=\"matrix\" aria-label=\"Responsibility matrix\"><thead><tr><th scope=\"col\">Runbook</th><th scope=\"col\">Owner</th><th scope=\"col\">May start</th><th scope=\"col\">Touches</th>");
    for p in &m.parties {
        let _ = write!(body, "<th scope=\"col\">When {} starts it</th>", esc(p));
    }
    body.push_str("<th scope=\"col\">Break-glass</th></tr></thead><tbody>");
    for r in &m.rows {
        let _ = write!(
            body,
            "<tr id=\"rb-{id}\"><th scope=\"row\">{name}{desc}{sched}</th><td>{owner}</td><td>{start}</td><td>{touch}{items}{list}{err}</td>",
            id = esc(&r.runbook),
            name = esc(&r.runbook),
            desc = if r.description.is_empty() {
                String::new()
            } else {
                format!("<br><small>{}</small>", esc(&r.description))
            },
            sched = if r.scheduled { "<br><small>scheduled</small>" } else { "" },
            owner = esc(&r.owner),
            start = if r.allowed_parties.is_empty() {
                "nobody".to_string()
            } else {
                format!(
                    "{} with role {}",
                    esc(&r.allowed_parties.join(", ")),
                    esc(&roles(&r.allowed_roles))
                )
            },
            touch = targets_summary(r),
            items = r
                .owned
                .iter()
                .map(|o| format!("<br>{} ({})", esc(&o.what), esc(&o.owner)))
                .collect::<String>(),
            list = if r.target_count > 0 {
                format!(
                    "<br><a href=\"/hosts?runbook={}\">list {}</a>",
                    urlencode(&r.runbook),
                    if r.target_count == 1 {
                        "the host".to_string()
                    } else {
                        format!("the {} hosts", thousands(r.target_count))
                    }
                )
            } else {
                String::new()
            },
            err = r
                .error
                .as_ref()
                .map(|e| format!("<br><span class=\"error\">{}</span>", esc(e)))
                .unwrap_or_default(),
        );
        for s in &r.starts {
            let cell = if !s.may_start() {
                "<span class=\"muted\">may not start it</span>".to_string()
            } else if s.approvals.is_empty() {
                format!(
                    "starts at once, no approval<br><small>{} may start it</small>",
                    esc(&s.users.join(", "))
                )
            } else {
                let mut c = String::new();
                for a in &s.approvals {
                    let _ = write!(
                        c,
                        "<b>{}</b> must approve ({} approver{}): {}<br>",
                        esc(&a.party),
                        a.quorum,
                        if a.quorum == 1 { "" } else { "s" },
                        esc(&a.why(r.target_count))
                    );
                }
                let _ = write!(
                    c,
                    "<small>{} may start it</small>",
                    esc(&s.users.join(", "))
                );
                c
            };
            let _ = write!(
                body,
                "<td class=\"start\" data-party=\"{}\">{cell}</td>",
                esc(&s.party)
            );
        }
        let bg = if r.emergency {
            let reviewers: Vec<String> = r
                .starts
                .iter()
                .filter(|s| s.may_start())
                .map(|s| {
                    format!(
                        "started by {}: reviewed by {}",
                        s.party,
                        s.reviewers.join(", ")
                    )
                })
                .collect();
            format!("yes<br><small>{}</small>", esc(&reviewers.join("; ")))
        } else {
            "no".to_string()
        };
        let _ = write!(body, "<td>{bg}</td></tr>");
    }
    body.push_str("</tbody></table></div>");
    page(StatusCode::OK, "Responsibilities", &body)
}

async fn matrix_csv(State(app): State<Arc<App>>, Signed { user, .. }: Signed) -> Response {
    let m = match blocking(move || Ok(app.matrix_for(&user))).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut resp = (StatusCode::OK, m.to_csv()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"tandem-responsibilities.csv\""),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}
