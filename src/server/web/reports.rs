//! Reports (`/reports`): the business-review report over a period, as the signed-in user's
//! party may see it (rule 10), inline, with its CSV and JSON as downloads. The report is
//! computed by [`crate::report`] from what `App::report` reads; nothing here decides what
//! a party may see.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::{blocking, esc, page, urlencode, Signed};
use crate::report::render::{csv, html_document, html_fragment, json, Format};
use crate::report::{Period, Report};
use crate::run::App;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/reports", get(report_page))
        .route("/reports/report.csv", get(report_csv))
        .route("/reports/report.json", get(report_json))
}

/// The form's fields (and `GET /api/v1/report`'s); all optional (the last 30 days,
/// everything the party may see).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ReportQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub party: Option<String>,
}

impl ReportQuery {
    /// The period asked for: the last 30 days by default.
    pub(crate) fn period(&self) -> Result<Period, String> {
        let today = chrono::Utc::now().date_naive();
        let to = match self.to.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(t) => t.to_string(),
            None => today.to_string(),
        };
        let from = match self.from.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(f) => f.to_string(),
            None => chrono::NaiveDate::parse_from_str(&to, "%Y-%m-%d")
                .unwrap_or(today)
                .checked_sub_days(chrono::Days::new(29))
                .unwrap_or(today)
                .to_string(),
        };
        Period::parse(&from, &to)
    }

    pub(crate) fn party(&self) -> Option<String> {
        self.party
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
    }

    /// The query string of this report's downloads.
    fn query(&self, period: Period) -> String {
        let mut q = format!("from={}&to={}", period.from, period.to);
        if let Some(p) = self.party() {
            let _ = write!(q, "&party={}", urlencode(&p));
        }
        q
    }
}

/// Computes the report `q` asks for, as `user`'s party may see it.
async fn compute(
    app: Arc<App>,
    user: crate::config::User,
    q: &ReportQuery,
) -> Result<Result<Report, String>, Response> {
    let period = match q.period() {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let party = q.party();
    blocking(move || app.report(&user, party.as_deref(), period))
        .await
        .map(Ok)
}

fn form(app: &App, user: &crate::config::User, q: &ReportQuery, period: Option<Period>) -> String {
    let (from, to) = match period {
        Some(p) => (p.from.to_string(), p.to.to_string()),
        None => (
            q.from.clone().unwrap_or_default(),
            q.to.clone().unwrap_or_default(),
        ),
    };
    let chosen = q.party();
    let mut options = format!(
        "<option value=\"\">everything {} may see</option>",
        esc(&user.party)
    );
    for p in &app.config().parties {
        let _ = write!(
            options,
            "<option value=\"{v}\"{}>what concerns {v}</option>",
            if chosen.as_deref() == Some(p) {
                " selected"
            } else {
                ""
            },
            v = esc(p)
        );
    }
    format!(
        "<form method=\"get\" action=\"/reports\" class=\"report-form\">\
<label for=\"from\">From</label> <input type=\"date\" id=\"from\" name=\"from\" value=\"{}\" required> \
<label for=\"to\">To</label> <input type=\"date\" id=\"to\" name=\"to\" value=\"{}\" required> \
<label for=\"party\">Party</label> <select id=\"party\" name=\"party\">{options}</select> \
<button type=\"submit\" id=\"show-report\">Show report</button></form>",
        esc(&from),
        esc(&to)
    )
}

async fn report_page(
    State(app): State<Arc<App>>,
    Signed { user, .. }: Signed,
    Query(q): Query<ReportQuery>,
) -> Response {
    let report = match compute(app.clone(), user.clone(), &q).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut body = format!(
        "<p>What was done, and how it went, over a period: as <b>{}</b> may see it. \
Every figure is computed from the audit log, whose head and latest signed checkpoint the report names.</p>",
        esc(&user.party)
    );
    match report {
        Ok(r) => {
            body.push_str(&form(&app, &user, &q, Some(r.period)));
            let qs = q.query(r.period);
            let _ = write!(
                body,
                "<p class=\"downloads\">Download: <a id=\"csv-link\" href=\"/reports/report.csv?{qs}\" download>CSV</a> · \
<a id=\"json-link\" href=\"/reports/report.json?{qs}\" download>JSON</a> · print this page for an A4 copy \
(<code>tandem report --format html</code> writes a standalone file).</p>",
                qs = esc(&qs)
            );
            body.push_str(&html_fragment(&r, true));
            page(StatusCode::OK, "Reports", &body)
        }
        Err(e) => {
            body.push_str(&form(&app, &user, &q, None));
            let _ = write!(body, "<p class=\"error\" id=\"error\">{}</p>", esc(&e));
            page(StatusCode::UNPROCESSABLE_ENTITY, "Reports", &body)
        }
    }
}

/// The CSP of a standalone HTML report: its own inline stylesheet and SVG charts, no
/// script, nothing fetched.
const STANDALONE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; sandbox";

/// A report as a download in `format` (HTML: the standalone file `tandem report` writes),
/// named after its period. The page's downloads and `GET /api/v1/report` both answer with it.
pub(crate) fn download(r: &Report, format: Format) -> Response {
    let (body, kind, ext) = match format {
        Format::Csv => (csv(r), "text/csv; charset=utf-8", "csv"),
        Format::Json => (json(r), "application/json", "json"),
        Format::Html => (html_document(r), "text/html; charset=utf-8", "html"),
    };
    let name = format!(
        "attachment; filename=\"tandem-report-{}-{}.{ext}\"",
        r.period.from, r.period.to
    );
    let mut resp = (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if format == Format::Html {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(STANDALONE_CSP),
        );
    }
    resp
}

async fn report_download(
    app: Arc<App>,
    user: crate::config::User,
    q: ReportQuery,
    csv_format: bool,
) -> Response {
    match compute(app, user, &q).await {
        Err(resp) => resp,
        Ok(Err(e)) => (StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n")).into_response(),
        Ok(Ok(r)) if csv_format => download(&r, Format::Csv),
        Ok(Ok(r)) => download(&r, Format::Json),
    }
}

async fn report_csv(
    State(app): State<Arc<App>>,
    Signed { user, .. }: Signed,
    Query(q): Query<ReportQuery>,
) -> Response {
    report_download(app, user, q, true).await
}

async fn report_json(
    State(app): State<Arc<App>>,
    Signed { user, .. }: Signed,
    Query(q): Query<ReportQuery>,
) -> Response {
    report_download(app, user, q, false).await
}
