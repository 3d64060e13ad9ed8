//! Audit (`/audit`): browse and filter the records a party may see (rule 10, as
//! `GET /api/v1/audit`), the chain's verify status (the code of `tandem audit verify`, run
//! incrementally), the latest signed checkpoints and where they were delivered.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::{blocking, esc, page, urlencode, Signed};
use crate::audit::{Actor, Entry, Event};
use crate::policy::matrix::thousands;
use crate::run::estate::{AuditFilter, AUDIT_SCAN};
use crate::run::{App, RunError};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/audit", get(audit_page))
}

/// Checkpoints shown.
const CHECKPOINTS_SHOWN: usize = 5;

#[derive(Deserialize, Default)]
struct AuditQuery {
    event: Option<String>,
    run: Option<String>,
    actor: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after: Option<u64>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl AuditQuery {
    fn filter(&self) -> Result<AuditFilter, RunError> {
        let event = nonempty(&self.event);
        if let Some(e) = &event {
            e.parse::<Event>()
                .map_err(|_| RunError::Invalid(format!("`{e}` is not an audit event")))?;
        }
        let time = |v: &Option<String>, name: &str| -> Result<Option<String>, RunError> {
            match nonempty(v) {
                None => Ok(None),
                Some(t) => {
                    // A date alone means the whole day.
                    let full = if t.len() == 10 {
                        format!(
                            "{t}T{}",
                            if name == "from" {
                                "00:00:00Z"
                            } else {
                                "23:59:59.999Z"
                            }
                        )
                    } else {
                        t
                    };
                    chrono::DateTime::parse_from_rfc3339(&full)
                        .map(|d| Some(crate::store::now_at(d.with_timezone(&chrono::Utc))))
                        .map_err(|_| {
                            RunError::Invalid(format!(
                                "`{name}` is a date (2026-12-01) or an RFC 3339 time"
                            ))
                        })
                }
            }
        };
        Ok(AuditFilter {
            event,
            run_id: nonempty(&self.run),
            actor: nonempty(&self.actor),
            from: time(&self.from, "from")?,
            to: time(&self.to, "to")?,
        })
    }

    /// This query continued after `seq`.
    fn after(&self, seq: u64) -> String {
        let mut q = Vec::new();
        for (k, v) in [
            ("event", &self.event),
            ("run", &self.run),
            ("actor", &self.actor),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(v) = nonempty(v) {
                q.push(format!("{k}={}", urlencode(&v)));
            }
        }
        q.push(format!("after={seq}"));
        format!("/audit?{}", q.join("&amp;"))
    }
}

fn actor_words(a: &Actor) -> String {
    match a {
        Actor::User { user, party } => format!("{} ({})", esc(user), esc(party)),
        Actor::System(s) => esc(s),
    }
}

async fn audit_page(
    State(app): State<Arc<App>>,
    Signed { user, .. }: Signed,
    Query(q): Query<AuditQuery>,
) -> Response {
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => return super::error_page(&e),
    };
    let after = q.after.unwrap_or(0);
    let a = app.clone();
    let u = user.clone();
    let loaded = blocking(move || {
        a.may_read_audit(&u)?;
        Ok((
            a.chain_status()?,
            a.audit_page(&u, &filter, after)?,
            a.checkpoints_for(&u, CHECKPOINTS_SHOWN)?,
        ))
    })
    .await;
    let (chain, recs, (signed, delivered)) = match loaded {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut body = match &chain.broken {
        None => format!(
            "<p id=\"chain-status\"><span class=\"ok\">The chain verifies</span>: {} records, head <code>{}</code> (checked {}).</p>",
            thousands(chain.verified.count as usize),
            esc(&chain.verified.head),
            esc(&chain.checked_at)
        ),
        Some(b) => format!(
            "<p id=\"chain-status\" class=\"error\">The chain is broken at record {}: {}. {} records before it verify. Run <code>tandem audit verify</code>.</p>",
            b.seq,
            esc(&b.reason),
            thousands(chain.verified.count as usize)
        ),
    };
    body.push_str("<h2>Signed checkpoints</h2>");
    if signed.is_empty() {
        body.push_str("<p id=\"checkpoints\" class=\"muted\">No checkpoint signed yet.</p>");
    } else {
        body.push_str("<div class=\"scroll\" role=\"region\" aria-label=\"Signed checkpoints\"><table id=\"checkpoints\" aria-label=\"Signed checkpoints\"><thead><tr><th scope=\"col\">Signed</th><th scope=\"col\">Covers records to</th><th scope=\"col\">Head</th><th scope=\"col\">Why</th><th scope=\"col\">Delivered to</th></tr></thead><tbody>");
        for c in &signed {
            let seq = c.detail["seq"].as_u64().unwrap_or_default();
            let head = c.detail["head"].as_str().unwrap_or_default();
            let outcomes: Vec<String> = delivered
                .iter()
                .filter(|d| d.detail["seq"].as_u64() == Some(seq) && d.detail["head"] == head)
                .map(|d| {
                    let ok = d.event == Event::CheckpointDelivered.as_str();
                    format!(
                        "{} {} ({}, {} attempt{}){}",
                        if ok {
                            "<span class=\"ok\">delivered</span>"
                        } else {
                            "<span class=\"flag\">not delivered</span>"
                        },
                        esc(d.detail["party"].as_str().unwrap_or_default()),
                        esc(d.detail["kind"].as_str().unwrap_or_default()),
                        d.detail["attempts"].as_u64().unwrap_or_default(),
                        if d.detail["attempts"].as_u64() == Some(1) {
                            ""
                        } else {
                            "s"
                        },
                        d.detail["error"]
                            .as_str()
                            .map(|e| format!(": {}", esc(e)))
                            .unwrap_or_default()
                    )
                })
                .collect();
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&c.ts),
                seq,
                esc(head),
                esc(c.detail["reason"].as_str().unwrap_or_default()),
                if outcomes.is_empty() {
                    "<span class=\"muted\">no witness yet</span>".to_string()
                } else {
                    outcomes.join("<br>")
                }
            );
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("<h2>Records</h2>");
    let mut events = String::from("<option value=\"\">any</option>");
    for e in Event::ALL {
        let _ = write!(
            events,
            "<option{}>{}</option>",
            if q.event.as_deref() == Some(e.as_str()) {
                " selected"
            } else {
                ""
            },
            e.as_str()
        );
    }
    let _ = write!(
        body,
        "<form class=\"filter\" method=\"get\" action=\"/audit\">\
<label>Event <select name=\"event\" id=\"f-event\">{events}</select></label>\
<label>Run <input name=\"run\" id=\"f-run\" value=\"{}\"></label>\
<label>Actor <input name=\"actor\" id=\"f-actor\" value=\"{}\"></label>\
<label>From <input name=\"from\" id=\"f-from\" placeholder=\"2026-12-01\" value=\"{}\"></label>\
<label>To <input name=\"to\" id=\"f-to\" placeholder=\"2026-12-31\" value=\"{}\"></label>\
<button type=\"submit\" id=\"f-apply\">Filter</button> <a href=\"/audit\">Clear</a></form>",
        esc(q.run.as_deref().unwrap_or_default()),
        esc(q.actor.as_deref().unwrap_or_default()),
        esc(q.from.as_deref().unwrap_or_default()),
        esc(q.to.as_deref().unwrap_or_default()),
    );
    if recs.entries.is_empty() {
        body.push_str("<p id=\"no-records\">No records here.</p>");
    } else {
        body.push_str("<div class=\"scroll\" role=\"region\" aria-label=\"Audit records\"><table id=\"records\" aria-label=\"Audit records\"><thead><tr><th scope=\"col\">Seq</th><th scope=\"col\">Time</th><th scope=\"col\">Event</th><th scope=\"col\">Actor</th><th scope=\"col\">Run</th><th scope=\"col\">Detail</th></tr></thead><tbody>");
        for e in &recs.entries {
            match e {
                Entry::Full(r) => {
                    let detail = serde_json::to_string(&r.detail).unwrap_or_default();
                    let _ = write!(
                        body,
                        "<tr id=\"rec-{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                        r.seq,
                        r.seq,
                        esc(&r.ts),
                        esc(&r.event),
                        actor_words(&r.actor),
                        r.run_id
                            .as_deref()
                            .map(|id| format!("<a href=\"/runs/{}\">{}</a>", urlencode(id), esc(id)))
                            .unwrap_or_default(),
                        esc(&detail)
                    );
                }
                Entry::Redacted(r) => {
                    let _ = write!(
                        body,
                        "<tr id=\"rec-{}\" class=\"muted\"><td>{}</td><td colspan=\"5\">another party's record (only its chain link is shown)</td></tr>",
                        r.seq, r.seq
                    );
                }
            }
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("<p class=\"pager\">");
    if after > 0 {
        body.push_str("<a href=\"/audit\">From the start</a>");
    }
    if let Some(n) = recs.next_after {
        let _ = write!(
            body,
            "<a rel=\"next\" id=\"next-page\" href=\"{}\">{}</a>",
            q.after(n),
            if recs.scanned >= AUDIT_SCAN && recs.entries.is_empty() {
                format!("Nothing in {AUDIT_SCAN} records; look further")
            } else {
                "Next records".to_string()
            }
        );
    }
    body.push_str("</p>");
    page(StatusCode::OK, "Audit", &body)
}
