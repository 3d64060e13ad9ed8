//! Triggers (SPEC §9): an alert starts a run. This module is pure: the `triggers:` config
//! shape and its validation, request authentication (HMAC-SHA256 or a bearer token), the
//! reading of an Alertmanager (webhook v4) or generic JSON payload into run requests, and
//! the bookkeeping of replays, repeated alerts and rate limits with an injected clock. The
//! orchestration (plan, submit, audit) is in `run::trigger`, the endpoint in `server`.
//!
//! # The signed request
//!
//! `X-Tandem-Timestamp: UNIX-SECONDS` and `X-Tandem-Signature: sha256=HEX`, where HEX is
//! HMAC-SHA256 with the trigger's secret over the bytes `TIMESTAMP + "." + RAW-BODY`. A
//! timestamp more than `tolerance` (default 300 s) away from the daemon's clock is refused,
//! and so is a signature already seen within the tolerance window (a replay).
//!
//! # What a refusal reveals
//!
//! An unknown trigger name, a missing or wrong signature or token all answer the same 401
//! `trigger authentication failed`, so a caller without the secret learns nothing about
//! which names exist. Only a caller that proved it holds the secret is told more (a stale
//! timestamp, a replay, a field at fault).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Which payload a trigger reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Alertmanager's webhook payload, version 4.
    #[default]
    Alertmanager,
    /// Any JSON object, read by JSON pointers.
    Generic,
}

/// One run per matching alert, or one per notification (group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    #[default]
    Alert,
    Group,
}

/// Where a value is read from: `label:NAME`, `annotation:NAME` (Alertmanager) or a JSON
/// pointer (`/a/b`), relative to the alert (per alert) or the whole payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Label(String),
    Annotation(String),
    Pointer(String),
}

impl Source {
    fn parse(text: &str, format: Format) -> Result<Source, String> {
        if let Some(n) = text.strip_prefix("label:") {
            if format == Format::Generic {
                return Err("a generic trigger reads JSON pointers (`/a/b`), not labels".into());
            }
            return Ok(Source::Label(n.to_string()));
        }
        if let Some(n) = text.strip_prefix("annotation:") {
            if format == Format::Generic {
                return Err(
                    "a generic trigger reads JSON pointers (`/a/b`), not annotations".into(),
                );
            }
            return Ok(Source::Annotation(n.to_string()));
        }
        if text.is_empty() || text.starts_with('/') {
            return Ok(Source::Pointer(text.to_string()));
        }
        Err(format!(
            "`{text}` is not `label:NAME`, `annotation:NAME` or a JSON pointer like `/alert/host`"
        ))
    }
}

/// How a sender proves it may fire the trigger.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// HMAC-SHA256 over `timestamp + "." + body` with the secret named in `secrets`.
    Hmac {
        secret: String,
        timestamp_header: String,
        signature_header: String,
        tolerance: Duration,
    },
    /// `Authorization: Bearer TOKEN`, the token's SHA-256 in hex (as for users).
    Bearer { token_sha256: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Hmac {
                secret, tolerance, ..
            } => f
                .debug_struct("Hmac")
                .field("secret", secret)
                .field("tolerance", tolerance)
                .finish_non_exhaustive(),
            Auth::Bearer { .. } => f.write_str("Bearer"),
        }
    }
}

/// A validated trigger.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub name: String,
    /// The party the trigger acts for: its runs are started as `trigger:NAME` of it.
    pub party: String,
    pub runbook: String,
    pub format: Format,
    pub auth: Auth,
    /// Alertmanager: the alert's `status` that matches (default `firing`).
    pub match_status: Option<String>,
    pub match_labels: BTreeMap<String, String>,
    /// JSON pointer → the value it must equal.
    pub match_pointers: BTreeMap<String, Value>,
    /// Runbook param → where its value is read.
    pub params: BTreeMap<String, Source>,
    /// Where the host (or `tag:NAME`) the run is limited to is read.
    pub targets: Option<Source>,
    pub per: Per,
    pub dedup_window: Duration,
    /// The dedup key (default: the alert's fingerprint, the group key, or the body's hash).
    pub dedup_key: Option<Source>,
    pub rate_runs: u32,
    pub rate_window: Duration,
    /// Whether a run that needs approval may go break-glass (the runbook must allow it too).
    pub break_glass: bool,
    /// Where the reference (a ticket number) is read.
    pub reference: Option<Source>,
}

impl Trigger {
    /// The initiator name of the trigger's runs.
    pub fn initiator(&self) -> String {
        format!("trigger:{}", self.name)
    }
}

/// Default dedup window.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(600);
/// Default rate limit: runs per window.
pub const DEFAULT_RATE_RUNS: u32 = 20;
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(60);
/// Default timestamp tolerance of a signed request.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
pub const DEFAULT_TIMESTAMP_HEADER: &str = "X-Tandem-Timestamp";
pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Tandem-Signature";

/// `triggers[i]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    name: String,
    party: String,
    runbook: String,
    #[serde(default)]
    format: Format,
    auth: RawAuth,
    #[serde(default, rename = "match")]
    matches: RawMatch,
    #[serde(default)]
    params: BTreeMap<String, String>,
    targets: Option<String>,
    #[serde(default)]
    per: Per,
    #[serde(default)]
    dedup: RawDedup,
    #[serde(default)]
    rate_limit: RawRate,
    #[serde(default)]
    break_glass: bool,
    #[serde(rename = "ref")]
    reference: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    hmac: Option<RawHmac>,
    bearer: Option<RawBearer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHmac {
    secret: String,
    timestamp_header: Option<String>,
    signature_header: Option<String>,
    tolerance: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBearer {
    token_sha256: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    status: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    pointers: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDedup {
    window: Option<String>,
    key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    runs: Option<u32>,
    per: Option<String>,
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration like 30s, 10m, 4h: {e}"))
}

/// Validates `triggers:`, reporting each problem by field path through `error` (field,
/// text to locate, message). Runbook names and params are checked against the catalog by
/// [`check_catalog`].
pub fn validate(
    raw: Vec<RawTrigger>,
    parties: &std::collections::BTreeSet<&str>,
    secrets: &BTreeMap<String, crate::config::SecretSource>,
    error: &mut dyn FnMut(String, &str, String),
) -> Vec<Trigger> {
    let mut out: Vec<Trigger> = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        let field = format!("triggers[{i}]");
        let mut ok = true;
        let mut fail = |f: String, needle: &str, m: String| {
            ok = false;
            error(f, needle, m);
        };
        let name_ok = !t.name.is_empty()
            && t.name.len() <= 64
            && t.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            fail(
                format!("{field}.name"),
                &t.name,
                "a trigger name is 1-64 letters, digits, `-`, `_` or `.` (it is a URL path segment)"
                    .into(),
            );
        }
        if out.iter().any(|o| o.name == t.name) {
            fail(
                format!("{field}.name"),
                &t.name,
                format!("trigger `{}` is declared twice", t.name),
            );
        }
        if !parties.contains(t.party.as_str()) {
            fail(
                format!("{field}.party"),
                &t.party,
                format!("unknown party `{}`", t.party),
            );
        }
        let auth = match (t.auth.hmac, t.auth.bearer) {
            (Some(h), None) => {
                match secrets.get(&h.secret) {
                    None => fail(
                        format!("{field}.auth.hmac.secret"),
                        &h.secret,
                        format!("unknown secret `{}` (declare it under `secrets`)", h.secret),
                    ),
                    Some(s) if s.owner != t.party => fail(
                        format!("{field}.auth.hmac.secret"),
                        &h.secret,
                        format!(
                            "secret `{}` is owned by `{}`, not by the trigger's party `{}`",
                            h.secret, s.owner, t.party
                        ),
                    ),
                    Some(_) => {}
                }
                let tolerance = match h.tolerance.as_deref().map(duration) {
                    None => DEFAULT_TOLERANCE,
                    Some(Ok(d)) if d >= Duration::from_secs(1) => d,
                    Some(Ok(_)) => {
                        fail(
                            format!("{field}.auth.hmac.tolerance"),
                            "tolerance",
                            "must be at least 1s".into(),
                        );
                        DEFAULT_TOLERANCE
                    }
                    Some(Err(m)) => {
                        fail(format!("{field}.auth.hmac.tolerance"), "tolerance", m);
                        DEFAULT_TOLERANCE
                    }
                };
                Auth::Hmac {
                    secret: h.secret,
                    timestamp_header: h
                        .timestamp_header
                        .unwrap_or_else(|| DEFAULT_TIMESTAMP_HEADER.into()),
                    signature_header: h
                        .signature_header
                        .unwrap_or_else(|| DEFAULT_SIGNATURE_HEADER.into()),
                    tolerance,
                }
            }
            (None, Some(b)) => {
                if b.token_sha256.len() != 64 || hex::decode(&b.token_sha256).is_err() {
                    fail(
                        format!("{field}.auth.bearer.token_sha256"),
                        "token_sha256",
                        "must be 64 hex digits (see `tandem token new NAME`)".into(),
                    );
                }
                Auth::Bearer {
                    token_sha256: b.token_sha256.to_ascii_lowercase(),
                }
            }
            _ => {
                fail(
                    format!("{field}.auth"),
                    "auth",
                    "give exactly one of `hmac` or `bearer`".into(),
                );
                continue;
            }
        };
        if t.format == Format::Generic
            && (t.matches.status.is_some() || !t.matches.labels.is_empty())
        {
            fail(
                format!("{field}.match"),
                "match",
                "a generic trigger matches by `pointers` only".into(),
            );
        }
        for p in t.matches.pointers.keys() {
            if !p.starts_with('/') {
                fail(
                    format!("{field}.match.pointers"),
                    p,
                    format!("`{p}` is not a JSON pointer (it starts with `/`)"),
                );
            }
        }
        let mut source = |f: String, text: &str| match Source::parse(text, t.format) {
            Ok(s) => Some(s),
            Err(m) => {
                fail(f, text, m);
                None
            }
        };
        let mut params = BTreeMap::new();
        for (p, text) in &t.params {
            if let Some(s) = source(format!("{field}.params.{p}"), text) {
                params.insert(p.clone(), s);
            }
        }
        let targets = t
            .targets
            .as_deref()
            .and_then(|x| source(format!("{field}.targets"), x));
        let dedup_key = t
            .dedup
            .key
            .as_deref()
            .and_then(|x| source(format!("{field}.dedup.key"), x));
        let reference = t
            .reference
            .as_deref()
            .and_then(|x| source(format!("{field}.ref"), x));
        let dedup_window = match t.dedup.window.as_deref().map(duration) {
            None => DEFAULT_DEDUP_WINDOW,
            Some(Ok(d)) => d,
            Some(Err(m)) => {
                fail(format!("{field}.dedup.window"), "window", m);
                DEFAULT_DEDUP_WINDOW
            }
        };
        let rate_window = match t.rate_limit.per.as_deref().map(duration) {
            None => DEFAULT_RATE_WINDOW,
            Some(Ok(d)) if d >= Duration::from_secs(1) => d,
            Some(Ok(_)) => {
                fail(
                    format!("{field}.rate_limit.per"),
                    "per",
                    "must be at least 1s".into(),
                );
                DEFAULT_RATE_WINDOW
            }
            Some(Err(m)) => {
                fail(format!("{field}.rate_limit.per"), "per", m);
                DEFAULT_RATE_WINDOW
            }
        };
        let rate_runs = match t.rate_limit.runs {
            Some(0) => {
                fail(
                    format!("{field}.rate_limit.runs"),
                    "runs",
                    "must be at least 1 (remove the trigger to stop it)".into(),
                );
                1
            }
            Some(n) => n,
            None => DEFAULT_RATE_RUNS,
        };
        if !ok {
            continue;
        }
        out.push(Trigger {
            name: t.name,
            party: t.party,
            runbook: t.runbook,
            format: t.format,
            auth,
            match_status: match t.format {
                Format::Alertmanager => Some(t.matches.status.unwrap_or_else(|| "firing".into())),
                Format::Generic => None,
            },
            match_labels: t.matches.labels,
            match_pointers: t.matches.pointers,
            params,
            targets,
            per: t.per,
            dedup_window,
            dedup_key,
            rate_runs,
            rate_window,
            break_glass: t.break_glass,
            reference,
        });
    }
    out
}

/// Checks each trigger's runbook and mapped params against the catalog. Returns (field,
/// text to locate, message) for each problem.
pub fn check_catalog(
    triggers: &[Trigger],
    catalog: &crate::runbook::Catalog,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (i, t) in triggers.iter().enumerate() {
        let Some(rb) = catalog.get(&t.runbook) else {
            out.push((
                format!("triggers[{i}].runbook"),
                t.runbook.clone(),
                format!("unknown runbook `{}`", t.runbook),
            ));
            continue;
        };
        for p in t.params.keys() {
            if !rb.params.contains_key(p) {
                out.push((
                    format!("triggers[{i}].params.{p}"),
                    p.clone(),
                    format!("runbook `{}` has no parameter `{p}`", rb.name),
                ));
            }
        }
        // A trigger starts runs as an operator of its party: rule 1 must admit that.
        if !rb.allowed.parties.contains(&t.party)
            || !rb.allowed.roles.contains(&crate::config::Role::Operator)
        {
            out.push((
                format!("triggers[{i}].party"),
                t.party.clone(),
                format!(
                    "runbook `{}` does not let operators of `{}` start it (its `allowed`), so                      this trigger could never start a run",
                    rb.name, t.party
                ),
            ));
        }
        if t.break_glass && !rb.emergency {
            out.push((
                format!("triggers[{i}].break_glass"),
                "break_glass".into(),
                format!(
                    "runbook `{}` is not an emergency runbook, so its runs cannot go break-glass",
                    rb.name
                ),
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Authentication

/// HMAC-SHA256 (RFC 2104) with sha2; small enough not to need another crate.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// The header value a sender puts in the signature header: `sha256=HEX`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut msg = Vec::with_capacity(timestamp.len() + 1 + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    format!("sha256={}", hex::encode(hmac_sha256(secret, &msg)))
}

/// Why a request was not authenticated. Only [`AuthFailure::public`] is told to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No such trigger, no or a wrong signature or token: one answer for all.
    Denied(&'static str),
    /// A good signature over a timestamp outside the tolerance.
    Stale,
    /// A good signature already seen within the tolerance.
    Replayed,
    /// The secret cannot be read on the daemon (the sender is not at fault).
    SecretUnavailable,
}

impl AuthFailure {
    /// The reason recorded in the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Denied(r) => r,
            AuthFailure::Stale => "stale_timestamp",
            AuthFailure::Replayed => "replayed",
            AuthFailure::SecretUnavailable => "secret_unavailable",
        }
    }
}

/// What a verified request carries for the replay cache: the signature bytes (HMAC only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub signature: Option<Vec<u8>>,
}

/// Checks a request against the trigger's auth. `header` reads a request header by name
/// (case-insensitive); `secret` reads the named secret's value; `now` is Unix seconds.
pub fn authenticate(
    trigger: &Trigger,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    secret: &dyn Fn(&str) -> Option<crate::config::SecretValue>,
    now: i64,
) -> Result<Authenticated, AuthFailure> {
    use subtle::ConstantTimeEq;
    match &trigger.auth {
        Auth::Bearer { token_sha256 } => {
            let token = header("authorization")
                .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_string()))
                .filter(|t| !t.is_empty())
                .ok_or(AuthFailure::Denied("missing_token"))?;
            let presented = crate::audit::sha256_hex(token.as_bytes()).into_bytes();
            if bool::from(presented.ct_eq(token_sha256.as_bytes())) {
                Ok(Authenticated { signature: None })
            } else {
                Err(AuthFailure::Denied("bad_token"))
            }
        }
        Auth::Hmac {
            secret: name,
            timestamp_header,
            signature_header,
            tolerance,
        } => {
            let ts = header(timestamp_header).ok_or(AuthFailure::Denied("missing_timestamp"))?;
            let sig = header(signature_header)
                .and_then(|s| s.trim().strip_prefix("sha256=").map(str::to_string))
                .and_then(|h| hex::decode(h).ok())
                .ok_or(AuthFailure::Denied("missing_signature"))?;
            let key = secret(name).ok_or(AuthFailure::SecretUnavailable)?;
            let expected = sign(key.expose().as_bytes(), ts.trim(), body);
            let expected = expected
                .strip_prefix("sha256=")
                .and_then(|h| hex::decode(h).ok())
                .unwrap_or_default();
            if !bool::from(expected.ct_eq(&sig)) {
                return Err(AuthFailure::Denied("bad_signature"));
            }
            let ts: i64 = ts
                .trim()
                .parse()
                .map_err(|_| AuthFailure::Denied("bad_timestamp"))?;
            if now.abs_diff(ts) > tolerance.as_secs() {
                return Err(AuthFailure::Stale);
            }
            Ok(Authenticated {
                signature: Some(sig),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// Payloads

/// One run a payload asks for, before it is planned.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub params: Map<String, Value>,
    /// Hosts or `tag:NAME` the run is limited to (empty: the runbook's targets).
    pub limit: Vec<String>,
    /// Where the limit was read, a JSON pointer into the body, for errors.
    pub limit_field: String,
    /// Param name → the JSON pointer it was read from, for errors.
    pub param_fields: BTreeMap<String, String>,
    /// The dedup key, without the trigger name.
    pub key: String,
    /// What the approver is shown: alertname, summary, status, ref (and, per alert, the
    /// fingerprint and start); never the whole alert.
    pub context: Value,
}

impl Instance {
    /// The JSON pointer in the body a plan error is about (the param's or the target's).
    pub fn field_of(&self, e: &crate::runbook::plan::PlanError) -> String {
        use crate::runbook::plan::PlanError;
        match e {
            PlanError::UnknownParam(n)
            | PlanError::MissingParam(n)
            | PlanError::BadParam { name: n, .. } => {
                self.param_fields.get(n).cloned().unwrap_or_default()
            }
            PlanError::UnknownTarget(_) | PlanError::LimitOutside(_) => self.limit_field.clone(),
        }
    }
}

/// A payload field at fault: a JSON pointer into the body and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Escapes one JSON pointer token (RFC 6901).
fn token(t: &str) -> String {
    t.replace('~', "~0").replace('/', "~1")
}

/// Reads `source` from an alert (or group) object `obj` found at `base` in the body.
/// `labels`/`annotations` name the keys holding them (`labels` in an alert,
/// `commonLabels` in a group). Returns the value and its pointer in the body.
fn read(
    source: &Source,
    obj: &Value,
    base: &str,
    labels: &str,
    annotations: &str,
) -> (Option<Value>, String) {
    match source {
        Source::Label(n) => (
            obj.get(labels).and_then(|l| l.get(n)).cloned(),
            format!("{base}/{labels}/{}", token(n)),
        ),
        Source::Annotation(n) => (
            obj.get(annotations).and_then(|l| l.get(n)).cloned(),
            format!("{base}/{annotations}/{}", token(n)),
        ),
        Source::Pointer(p) => (obj.pointer(p).cloned(), format!("{base}{p}")),
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether an alert (or the generic body) matches the trigger's `match`.
fn matches(t: &Trigger, obj: &Value) -> bool {
    if let Some(status) = &t.match_status {
        if obj.get("status").and_then(Value::as_str) != Some(status.as_str()) {
            return false;
        }
    }
    let labels_ok = t.match_labels.iter().all(|(k, v)| {
        obj.get("labels")
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            == Some(v)
    });
    let pointers_ok = t.match_pointers.iter().all(|(p, want)| {
        obj.pointer(p).is_some_and(|got| match (got, want) {
            // A YAML `5` and a JSON `"5"` are the same to a person writing a match.
            (Value::String(a), b) | (b, Value::String(a)) if !b.is_string() => *a == as_text(b),
            _ => got == want,
        })
    });
    labels_ok && pointers_ok
}

/// Reads the params, limit and reference of one run from `obj` at `base`.
fn fill(
    t: &Trigger,
    obj: &Value,
    base: &str,
    keys: (&str, &str),
    limit_from: &[(&Value, String)],
) -> Result<Instance, FieldError> {
    let mut params = Map::new();
    let mut param_fields = BTreeMap::new();
    for (name, source) in &t.params {
        let (v, field) = read(source, obj, base, keys.0, keys.1);
        let v = v.ok_or_else(|| {
            FieldError::new(
                &field,
                format!("missing: parameter `{name}` is read from here"),
            )
        })?;
        params.insert(name.clone(), v);
        param_fields.insert(name.clone(), field);
    }
    let mut limit = Vec::new();
    let mut limit_field = String::new();
    if let Some(source) = &t.targets {
        for (o, b) in limit_from {
            let (v, field) = read(source, o, b, "labels", "annotations");
            if limit_field.is_empty() {
                limit_field = field.clone();
            }
            let names: Vec<String> = match v {
                Some(Value::String(s)) => vec![s],
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                    items.iter().map(as_text).collect()
                }
                Some(_) => {
                    return Err(FieldError::new(
                        field,
                        "a target is a host name, `tag:NAME`, or a list of them",
                    ))
                }
                None => {
                    return Err(FieldError::new(
                        field,
                        "missing: the target is read from here",
                    ))
                }
            };
            for n in names {
                let n = n.trim().to_string();
                if n.is_empty() {
                    return Err(FieldError::new(field, "an empty target name"));
                }
                if !limit.contains(&n) {
                    limit.push(n);
                }
            }
        }
    }
    let reference = t
        .reference
        .as_ref()
        .and_then(|s| read(s, obj, base, keys.0, keys.1).0)
        .map(|v| as_text(&v));
    let label = |k: &str| {
        obj.get(keys.0)
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let annotation = |k: &str| {
        obj.get(keys.1)
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    // Only these fields, never the whole alert: labels may carry anything, and the
    // context is kept in the run's plan and the audit log.
    let context = json!({
        "trigger": t.name,
        "alertname": label("alertname"),
        "summary": annotation("summary").or_else(|| annotation("description")),
        "status": obj.get("status").and_then(Value::as_str),
        "ref": reference,
    });
    Ok(Instance {
        params,
        limit,
        limit_field,
        param_fields,
        key: String::new(),
        context,
    })
}

/// Reads a payload into the runs it asks for. An empty list: nothing matched.
pub fn evaluate(t: &Trigger, body: &Value) -> Result<Vec<Instance>, FieldError> {
    if !body.is_object() {
        return Err(FieldError::new("", "the body must be a JSON object"));
    }
    let keyed = |mut i: Instance, obj: &Value, base: &str, default: String| {
        i.key = match &t.dedup_key {
            Some(s) => read(s, obj, base, "labels", "annotations")
                .0
                .map(|v| as_text(&v))
                .unwrap_or(default),
            None => default,
        };
        i
    };
    match t.format {
        Format::Generic => {
            if !matches(t, body) {
                return Ok(Vec::new());
            }
            let i = fill(
                t,
                body,
                "",
                ("labels", "annotations"),
                &[(body, String::new())],
            )?;
            let default = crate::audit::sha256_hex(crate::audit::canonical_json(body).as_bytes());
            Ok(vec![keyed(i, body, "", default)])
        }
        Format::Alertmanager => {
            let alerts = body
                .get("alerts")
                .and_then(Value::as_array)
                .ok_or_else(|| FieldError::new("/alerts", "expected an array of alerts"))?;
            let mut hits = Vec::new();
            for (n, a) in alerts.iter().enumerate() {
                if !a.is_object() {
                    return Err(FieldError::new(
                        format!("/alerts/{n}"),
                        "an alert is an object",
                    ));
                }
                if matches(t, a) {
                    hits.push((a, format!("/alerts/{n}")));
                }
            }
            if hits.is_empty() {
                return Ok(Vec::new());
            }
            match t.per {
                Per::Alert => hits
                    .iter()
                    .map(|(a, base)| {
                        let i = fill(t, a, base, ("labels", "annotations"), &[(*a, base.clone())])?;
                        let default = a
                            .get("fingerprint")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .unwrap_or_else(|| {
                                crate::audit::sha256_hex(
                                    crate::audit::canonical_json(&a["labels"]).as_bytes(),
                                )
                            });
                        let mut i = keyed(i, a, base, default);
                        i.context["fingerprint"] =
                            a.get("fingerprint").cloned().unwrap_or(Value::Null);
                        i.context["starts_at"] = a.get("startsAt").cloned().unwrap_or(Value::Null);
                        Ok(i)
                    })
                    .collect(),
                Per::Group => {
                    let from: Vec<(&Value, String)> =
                        hits.iter().map(|(a, b)| (*a, b.clone())).collect();
                    let i = fill(t, body, "", ("commonLabels", "commonAnnotations"), &from)?;
                    let default = body
                        .get("groupKey")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| {
                            crate::audit::sha256_hex(crate::audit::canonical_json(body).as_bytes())
                        });
                    let mut i = keyed(i, body, "", default);
                    i.context["alerts"] = json!(hits.len());
                    Ok(vec![i])
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Replays, repeated alerts, rate limits

/// The daemon's memory of recent trigger requests. Held in memory: after a restart the
/// windows start empty (a replay is still refused by its timestamp once the tolerance has
/// passed; a duplicate within the window after a restart starts a second run).
#[derive(Debug, Default)]
pub struct Guard {
    /// Signatures seen, per trigger, until they expire.
    signatures: HashMap<(String, Vec<u8>), Instant>,
    /// (trigger, key) → the runs it started and when the window closes.
    dedup: HashMap<(String, String), (Vec<String>, Instant)>,
    /// Per trigger: when its recent runs started.
    starts: HashMap<String, VecDeque<Instant>>,
}

impl Guard {
    /// Records a signature; false when it was already seen within `window` (a replay).
    pub fn fresh_signature(
        &mut self,
        trigger: &str,
        sig: &[u8],
        window: Duration,
        now: Instant,
    ) -> bool {
        self.signatures.retain(|_, until| *until > now);
        // Twice the tolerance: a timestamp may be `tolerance` ahead as well as behind.
        let key = (trigger.to_string(), sig.to_vec());
        if self.signatures.contains_key(&key) {
            return false;
        }
        self.signatures.insert(key, now + window * 2);
        true
    }

    /// The runs already started for this key within the window.
    pub fn duplicate_of(&mut self, trigger: &str, key: &str, now: Instant) -> Option<Vec<String>> {
        self.dedup.retain(|_, (_, until)| *until > now);
        self.dedup
            .get(&(trigger.to_string(), key.to_string()))
            .map(|(ids, _)| ids.clone())
    }

    /// Whether one more run fits the trigger's rate limit now.
    pub fn within_rate(&mut self, t: &Trigger, now: Instant) -> bool {
        let q = self.starts.entry(t.name.clone()).or_default();
        while q
            .front()
            .is_some_and(|s| now.saturating_duration_since(*s) >= t.rate_window)
        {
            q.pop_front();
        }
        q.len() < t.rate_runs as usize
    }

    /// Records a run started for `key`.
    pub fn started(&mut self, t: &Trigger, key: &str, run_id: &str, now: Instant) {
        self.starts
            .entry(t.name.clone())
            .or_default()
            .push_back(now);
        let entry = self
            .dedup
            .entry((t.name.clone(), key.to_string()))
            .or_insert_with(|| (Vec::new(), now + t.dedup_window));
        entry.0.push(run_id.to_string());
    }
}

#[cfg(test)]
mod tests;
