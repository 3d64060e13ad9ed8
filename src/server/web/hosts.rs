//! Hosts and the responsibility matrix (`/hosts`, `/matrix`, `/matrix.csv`).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{blocking, esc, page, urlencode, Signed};
use crate::config::Role;
use crate::policy::matrix::{owns_of, thousands, MatrixRow};
use crate::run::App;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/matrix", get(matrix_page))
        .route("/matrix.csv", get(matrix_csv))
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
    body.push_str("<div class=\"scroll\"><table id=\"matrix\" class=\"matrix\"><thead><tr><th scope=\"col\">Runbook</th><th scope=\"col\">Owner</th><th scope=\"col\">May start</th><th scope=\"col\">Touches</th>");
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
