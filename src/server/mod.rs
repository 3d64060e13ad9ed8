//! The HTTP API (SPEC §7): axum router and handlers, HTTP ↔ run/store. No ssh2, no rhai;
//! store calls go through `spawn_blocking` so no handler blocks a tokio worker. The
//! approval pages for people are in [`web`].

pub(crate) mod follow;
pub mod web;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::config::{Role, User};
use crate::run::{App, RunError, StartRequest};
use crate::state::RunStatus;
use crate::store::{RunFilter, StoreError};

/// An API error. Every variant has one status; internal details are logged, never sent.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    MethodNotAllowed,
    Forbidden(String),
    NotFound(String),
    BadRequest(String),
    Conflict(String),
    Unprocessable(String),
    Unavailable(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required".to_string(),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method".to_string(),
            ),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_string(),
                )
            }
        };
        (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::UnknownRunbook(_) | RunError::UnknownRun(_) => {
                ApiError::NotFound(e.to_string())
            }
            RunError::Forbidden(m) => ApiError::Forbidden(m),
            RunError::Invalid(m) => ApiError::Unprocessable(m),
            RunError::Conflict(m) => ApiError::Conflict(m),
            RunError::ShuttingDown => ApiError::Unavailable(e.to_string()),
            RunError::Store(s) => ApiError::Internal(s.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The query-string extractor of every API handler: axum's, with its rejection turned into
/// the API's JSON error (400), so `?limit=abc` or `?after=-1` answers like any other error.
struct Query<T>(T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// The path-parameter extractor of every API handler, with the same JSON rejection (a run
/// id that is not UTF-8, say).
struct Path<T>(T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// Runs blocking work (the store, the orchestrator's bookkeeping) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("blocking task: {e}")))?
}

/// The caller, from `Authorization: Bearer TOKEN`.
fn caller(app: &App, headers: &HeaderMap) -> ApiResult<User> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    app.config()
        .user_by_token(token)
        .cloned()
        .ok_or(ApiError::Unauthorized)
}

/// The router of the whole API.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/runs", post(create_run).get(list_runs))
        .route("/api/v1/runs/{id}", get(show_run))
        .route("/api/v1/runs/{id}/log", get(run_log))
        .route("/api/v1/runs/{id}/cancel", post(cancel_run))
        .route("/api/v1/runs/{id}/approve", post(approve))
        .route("/api/v1/runs/{id}/deny", post(deny))
        .route("/api/v1/runs/{id}/review", post(review))
        .route("/api/v1/approvals", get(approvals))
        .route("/api/v1/reviews", get(reviews))
        .route("/api/v1/runbooks", get(runbooks))
        .route("/api/v1/schedules", get(schedules))
        .route("/api/v1/schedules/{runbook}/standing", post(standing))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/report", get(report))
        .route("/api/v1/freezes", post(freeze).get(freezes))
        .route("/api/v1/freezes/lift", post(unfreeze))
        .route("/api/v1/triggers/{name}", post(fire_trigger))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(app.clone())
        .merge(web::router(app))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRun {
    runbook: String,
    #[serde(default)]
    params: Map<String, Value>,
    #[serde(default)]
    break_glass: bool,
    #[serde(default)]
    reason: Option<String>,
    /// Hosts or `tag:NAME` to narrow the run to.
    #[serde(default)]
    limit: Vec<String>,
    /// A reference carried through the run (a ticket number).
    #[serde(default, rename = "ref")]
    reference: Option<String>,
    /// The plan digest the client expects: the run is refused (409) if the plan now differs.
    #[serde(default)]
    digest: Option<String>,
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("request body: {e}")))
}

async fn create_run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let req: CreateRun = parse_body(&body)?;
    let run = blocking(move || {
        app.submit(
            &user,
            StartRequest {
                runbook: req.runbook,
                params: req.params,
                break_glass: req.break_glass,
                reason: req.reason,
                limit: req.limit,
                trigger: None,
                reference: req.reference,
                digest: req.digest,
            },
        )
        .map_err(ApiError::from)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(run)).into_response())
}

/// `POST /api/v1/triggers/{name}`: authenticated by the trigger's own HMAC or bearer
/// token, not a user's. 202 with the runs started; 200 when nothing new started (all
/// repeats within the dedup window, or no alert matched); errors carry `field`, the JSON pointer at fault.
async fn fire_trigger(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use crate::run::trigger::TriggerError;
    let fired = tokio::task::spawn_blocking(move || {
        let header = |h: &str| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        app.fire_trigger(&name, &header, &body)
    })
    .await;
    let fired = match fired {
        Ok(f) => f,
        Err(e) => return ApiError::Internal(format!("blocking task: {e}")).into_response(),
    };
    let with_field = |status: StatusCode, code: &str, field: String, message: String| {
        (
            status,
            Json(json!({"error": {"code": code, "message": message, "field": field}})),
        )
            .into_response()
    };
    match fired {
        Ok(f) => {
            let status = if f.started.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            let runs: Vec<&String> = f.started.iter().chain(&f.deduplicated).collect();
            (
                status,
                Json(
                    json!({"trigger": f.trigger, "runs": runs, "started": f.started,
                            "deduplicated": f.deduplicated, "rate_limited": f.rate_limited,
                            "matched": f.matched}),
                ),
            )
                .into_response()
        }
        Err(e) => match e {
            TriggerError::Unauthorized | TriggerError::Stale => (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {"code": "unauthorized", "message": e.to_string()}})),
            )
                .into_response(),
            TriggerError::Replayed => ApiError::Conflict(e.to_string()).into_response(),
            TriggerError::BadRequest { field, message } => {
                with_field(StatusCode::BAD_REQUEST, "bad_request", field, message)
            }
            TriggerError::Invalid { field, message } => {
                with_field(StatusCode::UNPROCESSABLE_ENTITY, "invalid", field, message)
            }
            TriggerError::RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"error": {"code": "rate_limited", "message": e.to_string()}})),
            )
                .into_response(),
            TriggerError::SecretUnavailable => ApiError::Unavailable(e.to_string()).into_response(),
            TriggerError::Run(r) => ApiError::from(r).into_response(),
        },
    }
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
    /// Paging: runs older than this run id (the last id of the previous page).
    before: Option<String>,
    /// Only runs carrying this reference.
    #[serde(rename = "ref")]
    reference: Option<String>,
    /// Only runs of this runbook.
    runbook: Option<String>,
    /// Only runs started by this party.
    party: Option<String>,
    /// Only runs with this target host.
    host: Option<String>,
    /// Only runs created at or after this time (RFC 3339 UTC).
    since: Option<String>,
    /// Only runs created before this time (RFC 3339 UTC).
    until: Option<String>,
}

async fn list_runs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    let status = q
        .status
        .as_deref()
        .map(str::parse::<RunStatus>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("status: {e}")))?;
    let runs = blocking(move || {
        let filter = RunFilter {
            status,
            before: q.before.as_deref(),
            reference: q.reference.as_deref(),
            runbook: q.runbook.as_deref(),
            party: q.party.as_deref(),
            host: q.host.as_deref(),
            since: q.since.as_deref(),
            until: q.until.as_deref(),
        };
        Ok(app.visible_runs(&user, &filter, limit)?)
    })
    .await?;
    Ok(Json(runs).into_response())
}

async fn show_run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let run = blocking(move || Ok(app.visible_run(&user, &id)?)).await?;
    Ok(Json(run).into_response())
}

async fn cancel_run(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let run = blocking(move || Ok(app.cancel(&user, &id)?)).await?;
    Ok(Json(run).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    /// The plan digest the approver was shown; a decision for another digest is refused.
    #[serde(default)]
    digest: Option<String>,
}

fn parse_optional_body<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_body(body)
    }
}

async fn approve(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let b: DecisionBody = parse_optional_body(&body)?;
    let comment = b.comment.or(b.reason);
    let run = blocking(move || {
        Ok(app.decide(&user, &id, true, comment.as_deref(), b.digest.as_deref())?)
    })
    .await?;
    Ok(Json(run).into_response())
}

async fn deny(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let b: DecisionBody = parse_optional_body(&body)?;
    let reason = b.reason.or(b.comment);
    let run = blocking(move || {
        Ok(app.decide(&user, &id, false, reason.as_deref(), b.digest.as_deref())?)
    })
    .await?;
    Ok(Json(run).into_response())
}

async fn review(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let b: DecisionBody = parse_optional_body(&body)?;
    let comment = b.comment.or(b.reason).unwrap_or_default();
    let run = blocking(move || Ok(app.review(&user, &id, &comment)?)).await?;
    Ok(Json(run).into_response())
}

async fn approvals(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let runs = blocking(move || Ok(app.approvals_for(&user)?)).await?;
    Ok(Json(runs).into_response())
}

async fn reviews(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let runs = blocking(move || Ok(app.reviews_for(&user)?)).await?;
    Ok(Json(runs).into_response())
}

#[derive(Deserialize)]
struct SchedulesQuery {
    count: Option<usize>,
}

async fn schedules(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<SchedulesQuery>,
) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let count = q.count.unwrap_or(5).clamp(1, 100);
    let list = blocking(move || Ok(app.schedules_for(&user, count)?)).await?;
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StandingBody {
    /// How long the approval stands, e.g. `30d`.
    #[serde(rename = "for")]
    period: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

async fn standing(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(runbook): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let b: StandingBody = parse_body(&body)?;
    let period = crate::runbook::parse_duration(&b.period).map_err(ApiError::Unprocessable)?;
    let granted = blocking(move || {
        app.visible_schedule(&user, &runbook)?;
        Ok(app.grant_standing(
            &user,
            &runbook,
            period,
            b.digest.as_deref(),
            b.comment.as_deref(),
        )?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(granted)).into_response())
}

async fn runbooks(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let list: Vec<Value> = app
        .runbooks_for(&user)
        .iter()
        .map(|rb| {
            json!({
                "name": rb.name,
                "description": rb.description,
                "owner": rb.owner,
                "version": rb.version,
                "params": rb.params,
                "targets": rb.targets,
                "scope": rb.scope.to_json(),
                "emergency": rb.emergency,
                "schedule": rb.schedule,
                "then": rb.then,
            })
        })
        .collect();
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn audit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    if !user.has_role(Role::Auditor) && !user.has_role(Role::Admin) {
        return Err(ApiError::Forbidden(
            "reading the audit log needs the auditor or admin role".into(),
        ));
    }
    let entries = blocking(move || {
        let records = app
            .store
            .audit_records(q.after.unwrap_or(0), q.limit.unwrap_or(1000).min(10_000))?;
        Ok(party_view(&app, &user.party, records)?)
    })
    .await?;
    Ok(Json(entries).into_response())
}

#[derive(Deserialize)]
struct ReportApiQuery {
    from: Option<String>,
    to: Option<String>,
    party: Option<String>,
    format: Option<crate::report::render::Format>,
}

/// `GET /api/v1/report`: the business-review report of `tandem report`, as the caller's
/// party may see it (rule 10), by the same code as the console's `/reports` (the same
/// default period, the same narrowing to `party`), in `format` (JSON by default).
async fn report(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ReportApiQuery>,
) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let format = q.format.unwrap_or(crate::report::render::Format::Json);
    let q = web::reports::ReportQuery {
        from: q.from,
        to: q.to,
        party: q.party,
    };
    // The period's errors name their parameter (`from ... is not a date`).
    let period = q.period().map_err(ApiError::BadRequest)?;
    let party = q.party();
    let report = blocking(move || {
        app.report(&user, party.as_deref(), period)
            .map_err(|e| match e {
                // The only invalid input `report` finds is an unknown party.
                RunError::Invalid(m) => ApiError::BadRequest(format!("party: {m}")),
                e => e.into(),
            })
    })
    .await?;
    Ok(web::reports::download(&report, format))
}

/// Rule 10 for the audit log: `party`'s view of `records` ([`App::audit_party_view`]).
fn party_view(
    app: &App,
    party: &str,
    records: Vec<crate::audit::Record>,
) -> Result<Vec<crate::audit::Entry>, StoreError> {
    app.audit_party_view(party, records)
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    caller(&app, &headers)?;
    let (counts, audit_len) =
        blocking(move || Ok((app.store.count_by_status()?, app.store.audit_len()?))).await?;
    let mut out = String::from("# HELP tandem_runs Runs by status.\n# TYPE tandem_runs gauge\n");
    for (s, n) in counts {
        out.push_str(&format!("tandem_runs{{status=\"{s}\"}} {n}\n"));
    }
    out.push_str("# HELP tandem_audit_records Records in the audit log.\n# TYPE tandem_audit_records gauge\n");
    out.push_str(&format!("tandem_audit_records {audit_len}\n"));
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response())
}

#[derive(Deserialize)]
struct LogQuery {
    follow: Option<String>,
    /// Lines after this line number (JSON and follow).
    after: Option<i64>,
    /// Lines in one page (JSON).
    limit: Option<usize>,
    /// The exact stored bytes instead of rendered lines.
    raw: Option<String>,
    /// With `raw`: only this host's chunks.
    host: Option<String>,
    /// With `raw`: only this stream (`stdout`, `stderr`, `log`, `event`).
    stream: Option<String>,
    /// With `follow`: one `lines` event per batch of lines instead of a `line` event each.
    batch: Option<String>,
}

/// Lines in a page of `GET /runs/{id}/log` when the caller does not say.
const LOG_PAGE: usize = 5000;
/// The most lines in one page.
const LOG_PAGE_MAX: usize = 10_000;
/// Chunks read at once while sending raw bytes: at most a few MiB in memory.
const RAW_CHUNKS_AT_ONCE: usize = 32;

fn flag(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1" | "true"))
}

async fn run_log(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let (a, u, rid) = (app.clone(), user.clone(), id.clone());
    blocking(move || Ok(a.visible_run(&u, &rid)?)).await?;
    let after = q.after.unwrap_or(0);
    if flag(&q.raw) {
        if flag(&q.follow) {
            return Err(ApiError::BadRequest(
                "`raw` and `follow` do not go together: follow renders lines".into(),
            ));
        }
        return Ok(raw_log(app, id, q.host, q.stream));
    }
    if !flag(&q.follow) {
        let limit = q.limit.unwrap_or(LOG_PAGE).clamp(1, LOG_PAGE_MAX);
        let lines = blocking(move || Ok(app.store.log_lines(&id, after, limit)?)).await?;
        return Ok(Json(lines).into_response());
    }
    let framing = if flag(&q.batch) {
        follow::Framing::Batch
    } else {
        follow::Framing::Line
    };
    Ok(follow_response(app, user, id, after, framing))
}

/// A run's log as server-sent events from line `after` on (see [`follow`]); the API and the
/// console's run page serve the same stream. The caller has checked that the run is visible
/// to `user`.
pub(crate) fn follow_response(
    app: Arc<App>,
    user: User,
    id: String,
    after: i64,
    framing: follow::Framing,
) -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/event-stream"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(follow::follow(app, user, id, after, framing)),
    )
        .into_response()
}

/// A run's log as the exact bytes stored (already redacted), chunk by chunk, so a large log
/// is never held whole.
fn raw_log(app: Arc<App>, id: String, host: Option<String>, stream: Option<String>) -> Response {
    let state = (app, id, host, stream, 0i64, false);
    let body =
        futures_util::stream::unfold(state, |(app, id, host, stream, after, done)| async move {
            if done {
                return None;
            }
            let (a, i, h, s) = (app.clone(), id.clone(), host.clone(), stream.clone());
            let read = tokio::task::spawn_blocking(move || {
                a.store
                    .log_chunks(&i, after, h.as_deref(), s.as_deref(), RAW_CHUNKS_AT_ONCE)
            })
            .await;
            match read {
                Ok(Ok(chunks)) if chunks.is_empty() => None,
                Ok(Ok(chunks)) => {
                    let next = chunks.last().map_or(after, |c| c.id);
                    let last = chunks.len() < RAW_CHUNKS_AT_ONCE;
                    let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.bytes).collect();
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from(bytes)),
                        (app, id, host, stream, next, last),
                    ))
                }
                // The status line is sent already: end the body short, and say why in the log.
                Ok(Err(e)) => {
                    tracing::error!(run = %id, error = %e, "raw log read failed");
                    Some((
                        Err(std::io::Error::other("state store unavailable")),
                        (app, id, host, stream, after, true),
                    ))
                }
                Err(e) => {
                    tracing::error!(run = %id, error = %e, "raw log read failed");
                    Some((
                        Err(std::io::Error::other("internal error")),
                        (app, id, host, stream, after, true),
                    ))
                }
            }
        });
    (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeBody {
    targets: Vec<String>,
    #[serde(default)]
    reason: String,
}

async fn freeze(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let b: FreezeBody = parse_body(&body)?;
    let out = blocking(move || Ok(app.freeze(&user, &b.targets, &b.reason)?)).await?;
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnfreezeBody {
    targets: Vec<String>,
}

async fn unfreeze(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let b: UnfreezeBody = parse_body(&body)?;
    let out = blocking(move || Ok(app.unfreeze(&user, &b.targets)?)).await?;
    Ok(Json(out).into_response())
}

async fn freezes(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Response> {
    let user = caller(&app, &headers)?;
    let list = blocking(move || Ok(app.freezes_for(&user)?)).await?;
    Ok(Json(list).into_response())
}
