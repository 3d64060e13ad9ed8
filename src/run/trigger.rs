//! A trigger request turned into runs (SPEC §9): authenticate, read the payload, plan every
//! run it asks for (all or nothing), then de-duplicate, rate-limit and start each through
//! [`App::submit`] as `trigger:NAME` of the trigger's party, so rules 1–11 apply unchanged.
//! Every outcome is audited with a [`crate::audit::Event`]; the body itself never is.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};

use super::{App, RunError, StartRequest};
use crate::audit::{Actor, Event};
use crate::config::{Role, User};
use crate::runbook::plan::{make_limited_plan, Initiator};
use crate::store::StoreError;
use crate::trigger::{self, AuthFailure, Trigger};

/// What an accepted request did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Fired {
    pub trigger: String,
    /// Runs this request started.
    pub started: Vec<String>,
    /// Runs started earlier for the same alert within the dedup window.
    pub deduplicated: Vec<String>,
    /// Runs refused by the rate limit.
    pub rate_limited: usize,
    /// Alerts (or groups) that matched.
    pub matched: usize,
}

/// Why a request started nothing. Each maps to one HTTP status in the server.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// 401, one message for an unknown trigger and bad credentials.
    #[error("trigger authentication failed")]
    Unauthorized,
    /// 401 after a good signature: the caller holds the secret, so it may know why.
    #[error("the timestamp is outside the trigger's tolerance window")]
    Stale,
    /// 409: a signature already received.
    #[error("this signed request was already received (replay)")]
    Replayed,
    /// 400: the body is not JSON.
    #[error("{message}")]
    BadRequest { field: String, message: String },
    /// 422: a field of the body does not fit the trigger or the runbook.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// 429: every run the request asked for was over the trigger's rate limit.
    #[error("trigger `{0}` reached its rate limit; no run was started")]
    RateLimited(String),
    /// 503: the trigger's secret cannot be read on this daemon.
    #[error("the trigger cannot check signatures now (its secret is unavailable)")]
    SecretUnavailable,
    #[error(transparent)]
    Run(#[from] RunError),
}

impl From<StoreError> for TriggerError {
    fn from(e: StoreError) -> Self {
        TriggerError::Run(RunError::Store(e))
    }
}

/// A trigger name as recorded: clipped, so a caller cannot fill the log with long names.
fn clip(name: &str) -> String {
    name.chars().take(64).collect()
}

/// The user a trigger's runs are started as: `trigger:NAME`, an operator of its party.
/// It has no token, so no request can authenticate as it.
pub(super) fn trigger_user(t: &Trigger) -> User {
    User {
        name: t.initiator(),
        party: t.party.clone(),
        roles: vec![Role::Operator],
        token_sha256: String::new(),
    }
}

impl App {
    /// Handles `POST /api/v1/triggers/{name}`. `header` reads a request header by name.
    /// Blocking (the store): call from `spawn_blocking`.
    pub fn fire_trigger(
        self: &Arc<Self>,
        name: &str,
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Result<Fired, TriggerError> {
        let config = self.config();
        let refused = Event::TriggerRefused;
        let Some(t) = config.trigger(name) else {
            // About the work of checking a signature, so the time taken does not tell an
            // unknown name from a bad signature.
            std::hint::black_box(trigger::hmac_sha256(name.as_bytes(), body));
            self.store.audit(
                &Actor::system(),
                None,
                refused,
                json!({"trigger": clip(name), "reason": "unknown_trigger"}),
            )?;
            return Err(TriggerError::Unauthorized);
        };
        let actor = Actor::user(&t.initiator(), &t.party);
        let refuse = |reason: &str, extra: Value| -> Result<(), StoreError> {
            let mut detail = json!({"trigger": t.name, "runbook": t.runbook, "reason": reason});
            if let (Some(d), Value::Object(m)) = (detail.as_object_mut(), extra) {
                d.extend(m);
            }
            self.store.audit(&actor, None, refused, detail).map(|_| ())
        };
        let now = chrono::Utc::now().timestamp();
        let secret = |s: &str| config.read_secret(s).ok();
        let auth = match trigger::authenticate(t, header, body, &secret, now) {
            Ok(a) => a,
            Err(f) => {
                refuse(f.reason(), json!({}))?;
                return Err(match f {
                    AuthFailure::Denied(_) => TriggerError::Unauthorized,
                    AuthFailure::Stale => TriggerError::Stale,
                    AuthFailure::Replayed => TriggerError::Replayed,
                    AuthFailure::SecretUnavailable => TriggerError::SecretUnavailable,
                });
            }
        };
        if let (Some(sig), trigger::Auth::Hmac { tolerance, .. }) = (&auth.signature, &t.auth) {
            let fresh =
                self.trigger_guard()
                    .fresh_signature(&t.name, sig, *tolerance, Instant::now());
            if !fresh {
                refuse(AuthFailure::Replayed.reason(), json!({}))?;
                return Err(TriggerError::Replayed);
            }
        }
        let payload: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let message = format!("the body is not JSON: {e}");
                refuse("bad_body", json!({"field": "", "message": message}))?;
                return Err(TriggerError::BadRequest {
                    field: String::new(),
                    message,
                });
            }
        };
        let instances = match trigger::evaluate(t, &payload) {
            Ok(i) => i,
            Err(e) => {
                refuse(
                    "bad_payload",
                    json!({"field": e.field, "message": e.message}),
                )?;
                return Err(TriggerError::Invalid {
                    field: e.field,
                    message: e.message,
                });
            }
        };
        let mut fired = Fired {
            trigger: t.name.clone(),
            matched: instances.len(),
            ..Fired::default()
        };
        if instances.is_empty() {
            // A resolved notification or another alert: not an error for the sender.
            refuse("no_match", json!({}))?;
            return Ok(fired);
        }
        let catalog = self.catalog();
        let rb = catalog
            .get(&t.runbook)
            .ok_or_else(|| RunError::UnknownRunbook(t.runbook.clone()))?;
        let user = trigger_user(t);
        let initiator = Initiator {
            user: user.name.clone(),
            party: user.party.clone(),
        };
        // All or nothing: every run the payload asks for is planned before any starts.
        let mut planned = Vec::with_capacity(instances.len());
        for inst in instances {
            match make_limited_plan(
                rb,
                &config,
                &inst.params,
                initiator.clone(),
                None,
                &inst.limit,
            ) {
                Ok(plan) => planned.push((inst, !plan.approvals.is_empty())),
                Err(e) => {
                    let field = inst.field_of(&e);
                    let message = e.to_string();
                    refuse("bad_params", json!({"field": field, "message": message}))?;
                    return Err(TriggerError::Invalid { field, message });
                }
            }
        }
        // One request at a time past this point, so a duplicate arriving in parallel sees
        // the first one's run.
        let mut guard = self.trigger_guard();
        let now = Instant::now();
        for (inst, needs_approval) in planned {
            if let Some(ids) = guard.duplicate_of(&t.name, &inst.key, now) {
                self.store.audit(
                    &actor,
                    ids.first().map(String::as_str),
                    Event::TriggerDeduplicated,
                    json!({"trigger": t.name, "key": inst.key, "runs": ids, "ref": inst.context["ref"]}),
                )?;
                fired.deduplicated.extend(ids);
                continue;
            }
            if !guard.within_rate(t, now) {
                self.store.audit(
                    &actor,
                    None,
                    Event::TriggerRateLimited,
                    json!({"trigger": t.name, "key": inst.key, "runs": t.rate_runs,
                           "per_seconds": t.rate_window.as_secs()}),
                )?;
                fired.rate_limited += 1;
                continue;
            }
            // Rule 6 via the trigger: only where both it and the runbook allow it, and only
            // when an approval would otherwise be waited for.
            let break_glass = t.break_glass && rb.emergency && needs_approval;
            let reason = break_glass.then(|| {
                let what = inst.context["alertname"]
                    .as_str()
                    .or(inst.context["summary"].as_str())
                    .unwrap_or("an alert");
                format!("trigger {}: {what}", t.name)
            });
            let run = self.submit(
                &user,
                StartRequest {
                    runbook: rb.name.clone(),
                    params: inst.params.clone(),
                    break_glass,
                    reason,
                    limit: inst.limit.clone(),
                    trigger: Some(inst.context.clone()),
                    // The alert's ticket reference, when it is one a run may carry.
                    reference: inst.context["ref"]
                        .as_str()
                        .filter(|r| super::check_ref(r).is_ok())
                        .map(str::to_string),
                    digest: None,
                },
            )?;
            guard.started(t, &inst.key, &run.id, now);
            self.store.audit(
                &actor,
                Some(&run.id),
                Event::TriggerAccepted,
                json!({"trigger": t.name, "key": inst.key, "ref": inst.context["ref"],
                       "alertname": inst.context["alertname"], "break_glass": break_glass}),
            )?;
            fired.started.push(run.id);
        }
        if fired.started.is_empty() && fired.deduplicated.is_empty() && fired.rate_limited > 0 {
            return Err(TriggerError::RateLimited(t.name.clone()));
        }
        Ok(fired)
    }

    fn trigger_guard(&self) -> std::sync::MutexGuard<'_, trigger::Guard> {
        // A poisoned guard still holds consistent windows: keep using it.
        self.trigger_guard.lock().unwrap_or_else(|p| p.into_inner())
    }
}
