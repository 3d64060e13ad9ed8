//! One host's part of a run: the [`HostApi`] the script calls. Every action is checked
//! against the run's scope (rule 2), its intent is committed to the store and the audit
//! log before it runs (rule 8, fail closed), and every text that leaves goes through the
//! run's redactor (rule 9).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::output::{self, ActionOutput, RunBudget};
use super::{App, RunControl};
use crate::audit::{Actor, Event, Redactor, StreamRedactor};
use crate::config::{Identity, Transport};
use crate::exec::ssh::{Credential, SshSession, Target};
use crate::exec::{ExecError, OutputSink, Stop};
use crate::policy::command::requote;
use crate::policy::scope::check_command;
use crate::runbook::plan::{Plan, PlannedHost};
use crate::runbook::Runbook;
use crate::script::{self, ActionError, HostApi, HttpOutput, ScriptInput, ShOutput};
use crate::state::{GateStatus, HostStatus, RunStatus};
use crate::store::{Intent, Outcome, RunStore, StoreError};

/// What all hosts of one run share.
pub(super) struct RunShared {
    pub app: Arc<App>,
    /// The config in force when the run started.
    pub config: Arc<crate::config::Config>,
    pub run_id: String,
    pub runbook: Runbook,
    pub params: Value,
    pub actor: Actor,
    pub deadline: Instant,
    pub cancel: Arc<RunControl>,
    pub violation: Mutex<Option<String>>,
    /// Set when an action was refused because its host is frozen (rule 11): the run stops.
    pub frozen: Mutex<Option<String>>,
    /// Set when a mid-run gate was denied or expired: the run ends with that status.
    pub gate_end: Mutex<Option<RunStatus>>,
    /// The run's stored plan (approvals, targets, initiator), for mid-run gates.
    pub plan: Plan,
    /// When the maintenance window of a scheduled run closes.
    pub window_end: Option<chrono::DateTime<chrono::Utc>>,
    /// Every configured secret value, hidden from all output whether or not the script
    /// reads it: a value can reach output by other paths (a file on the host, an echo).
    pub redactor: Redactor,
    /// The output the run has stored, against `output.run_max`.
    pub output: RunBudget,
    /// What the hosts published with `emit()`, for the follow-ups.
    pub emitted: super::chain::EmitBoard,
    pub rt: tokio::runtime::Handle,
}

impl RunShared {
    pub fn cancelled(&self) -> bool {
        self.cancel.cancel.load(Ordering::SeqCst)
    }

    pub fn violation(&self) -> Option<String> {
        self.violation.lock().ok().and_then(|v| v.clone())
    }

    /// When an action starting now must be done: the runbook's `action_timeout` from now,
    /// but never past the run's own deadline.
    pub fn action_deadline(&self) -> Instant {
        match self.runbook.action_timeout {
            Some(t) => (Instant::now() + t).min(self.deadline),
            None => self.deadline,
        }
    }

    pub fn frozen(&self) -> Option<String> {
        self.frozen.lock().ok().and_then(|f| f.clone())
    }

    pub fn gate_end(&self) -> Option<RunStatus> {
        self.gate_end.lock().ok().and_then(|g| *g)
    }

    /// Why no more work may start: a scope violation anywhere in the run, a gate that was
    /// denied or expired, or cancellation.
    pub fn stop_reason(&self) -> Option<String> {
        if let Some(v) = self.violation() {
            return Some(format!("scope_violation: {v}"));
        }
        if let Some(f) = self.frozen() {
            return Some(format!("{}: {f}", super::freeze::FROZEN));
        }
        if let Some(g) = self.gate_end() {
            return Some(format!("approval gate {g}"));
        }
        self.cancelled().then(|| "cancelled".to_string())
    }
}

/// Runs the script for one host (or once, with no host) and records the host's outcome.
pub(super) fn run_host(
    shared: &Arc<RunShared>,
    ast: &rhai::AST,
    target: Option<&PlannedHost>,
) -> Result<(), String> {
    let host_name = target.map(|t| t.name.clone());
    let ctx = Arc::new(HostContext {
        shared: shared.clone(),
        target: target.cloned(),
        ssh: Mutex::new(None),
        redactor: Mutex::new(shared.redactor.clone()),
        last_code: Mutex::new(None),
    });
    let store = &shared.app.store;
    if let Some(h) = &host_name {
        if let Err(e) =
            store.tx(|tx| tx.set_host(&shared.run_id, h, HostStatus::Running, None, None))
        {
            return Err(format!("cannot record host start: {e}"));
        }
    }
    let input = ScriptInput {
        host: target.map(
            |t| json!({"name": t.name, "address": t.address, "tags": t.tags, "owner": t.owner}),
        ),
        params: shared.params.clone(),
        run_id: shared.run_id.clone(),
        deadline: shared.deadline,
    };
    let result = script::run(ast, ctx.clone(), input);
    // Close the SSH session now rather than when the last Arc goes.
    if let Ok(mut s) = ctx.ssh.lock() {
        s.take();
    }
    let outcome = result.map_err(|e| ctx.redact(&e.to_string()));
    if let Some(h) = &host_name {
        let (st, err) = match &outcome {
            Ok(()) => (HostStatus::Succeeded, None),
            Err(_) if shared.cancelled() => {
                (HostStatus::Cancelled, outcome.as_ref().err().cloned())
            }
            Err(e) => (HostStatus::Failed, Some(e.clone())),
        };
        let code = ctx.last_code.lock().ok().and_then(|c| *c);
        let recorded = store.tx(|tx| {
            tx.set_host(&shared.run_id, h, st, code, err.as_deref())?;
            tx.log(
                &shared.run_id,
                Some(h),
                output::EVENT_STREAM,
                &format!(
                    "host {h} {st}{}",
                    err.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                ),
            )
        });
        shared.app.changed.notify_waiters();
        // A host whose outcome is not on record did not succeed, as far as anyone can tell.
        if let Err(e) = recorded {
            tracing::error!(run = %shared.run_id, host = %h, error = %e, "cannot record host outcome");
            return Err(match outcome {
                Ok(()) => {
                    "the host's outcome could not be recorded (state store unavailable)".into()
                }
                Err(e) => e,
            });
        }
    }
    outcome
}

/// Appended to a refusal that the audit log could not record.
const AUDIT_UNAVAILABLE_REFUSAL: &str =
    " (and the audit log was unavailable: the refusal is not on record; fail closed)";

/// The capabilities a script has on one host.
pub(super) struct HostContext {
    pub(super) shared: Arc<RunShared>,
    target: Option<PlannedHost>,
    ssh: Mutex<Option<SshSession>>,
    redactor: Mutex<Redactor>,
    last_code: Mutex<Option<i64>>,
}

impl HostContext {
    fn redact(&self, text: &str) -> String {
        self.redactor
            .lock()
            .map(|r| r.redact(text))
            .unwrap_or_else(|_| "[redacted]".into())
    }

    fn redact_json(&self, v: &Value) -> Value {
        self.redactor
            .lock()
            .map(|r| r.redact_json(v))
            .unwrap_or(Value::Null)
    }

    fn host_name(&self) -> Option<&str> {
        self.target.as_ref().map(|t| t.name.as_str())
    }

    /// A redactor for one output stream, hiding every secret known now.
    pub(super) fn stream_redactor(&self) -> StreamRedactor {
        match self.redactor.lock() {
            Ok(r) => r.stream(),
            // Never without one: the run's own redactor has every configured secret.
            Err(_) => self.shared.redactor.stream(),
        }
    }

    /// Stores one chunk of redacted output and wakes followers.
    pub(super) fn store_chunk(&self, stream: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let run_id = &self.shared.run_id;
        self.shared
            .app
            .store
            .tx(|tx| tx.log_chunk(run_id, self.host_name(), stream, bytes))?;
        self.shared.app.changed.notify_waiters();
        Ok(())
    }

    /// Records that output of an action (`shown`, redacted) was cut at `limit`: one marker
    /// line in the log and one audit record, together.
    pub(super) fn truncated(
        &self,
        kind: &str,
        shown: &str,
        limit: output::Limit,
    ) -> Result<(), StoreError> {
        let run_id = &self.shared.run_id;
        let (marker, detail) = output::truncation(
            self.host_name(),
            kind,
            shown,
            limit,
            &self.shared.runbook.output,
        );
        self.shared.app.store.tx(|tx| {
            tx.log(run_id, self.host_name(), output::EVENT_STREAM, &marker)?;
            tx.audit(
                &self.shared.actor,
                Some(run_id),
                Event::OutputTruncated,
                detail.clone(),
            )?;
            Ok(())
        })?;
        self.shared.app.changed.notify_waiters();
        Ok(())
    }

    /// Rule 2: the action does not happen, the run fails, the refusal is audited. A refusal
    /// that cannot be recorded still refuses, and the run's error says the record is missing.
    fn violation(&self, kind: &str, what: &str) -> ActionError {
        self.violation_because(kind, what, None)
    }

    /// [`Self::violation`] with the reason the check gave (a command's grammar refusal).
    fn violation_because(&self, kind: &str, what: &str, reason: Option<&str>) -> ActionError {
        let what = self.redact(what);
        let reason = reason.map(|r| self.redact(r));
        let mut message = format!(
            "{kind} `{what}` is not in the scope of runbook `{}`{}",
            self.shared.runbook.name,
            reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        // Set before the audit write, so the run's other hosts stop as soon as possible.
        if let Ok(mut v) = self.shared.violation.lock() {
            v.get_or_insert_with(|| message.clone());
        }
        if let Err(e) = self.shared.app.store.audit(
            &self.shared.actor,
            Some(&self.shared.run_id),
            Event::ScopeDenied,
            json!({"host": self.host_name(), "kind": kind, "target": what, "reason": reason}),
        ) {
            tracing::error!(run = %self.shared.run_id, error = %e, "audit log unavailable; scope_denied not recorded");
            let first = message.clone();
            message.push_str(AUDIT_UNAVAILABLE_REFUSAL);
            if let Ok(mut v) = self.shared.violation.lock() {
                if v.as_deref() == Some(first.as_str()) {
                    *v = Some(message.clone());
                }
            }
        }
        ActionError::Fatal(format!("scope_violation: {message}"))
    }

    /// Rule 11: an action on a frozen host does not happen, the run stops and fails with
    /// `frozen: …`, and the refusal is audited.
    fn refuse_frozen(&self, kind: &str, what: &str) -> Result<(), ActionError> {
        let Some(host) = self.host_name().filter(|h| self.shared.app.is_frozen(h)) else {
            return Ok(());
        };
        let what = self.redact(what);
        let message = format!("host {host} is frozen by its owner; {kind} `{what}` was not run");
        if let Ok(mut f) = self.shared.frozen.lock() {
            f.get_or_insert_with(|| message.clone());
        }
        self.shared
            .app
            .store
            .audit(
                &self.shared.actor,
                Some(&self.shared.run_id),
                Event::ActionFrozen,
                json!({"host": host, "kind": kind, "target": what}),
            )
            .map_err(|_| {
                ActionError::Fatal(
                    "audit log unavailable: the action was not run (fail closed)".into(),
                )
            })?;
        Err(ActionError::Fatal(format!(
            "{}: {message}",
            super::freeze::FROZEN
        )))
    }

    /// Rule 8: the intent is committed before the action; if it cannot be, nothing runs.
    /// Rule 11 first: nothing is intended on a frozen host.
    fn intent(&self, kind: &str, target: &str, detail: Value) -> Result<i64, ActionError> {
        self.refuse_frozen(kind, target)?;
        if let Some(reason) = self.should_stop() {
            return Err(ActionError::Fatal(reason));
        }
        let run_id = &self.shared.run_id;
        let mut d = self.redact_json(&detail);
        if let Value::Object(m) = &mut d {
            m.insert("host".into(), json!(self.host_name()));
            m.insert("kind".into(), json!(kind));
        }
        self.shared
            .app
            .store
            .record_intent(&Intent {
                run_id,
                host: self.host_name(),
                kind,
                target: &self.redact(target),
                actor: &self.shared.actor,
                detail: d,
            })
            .map_err(|e| {
                tracing::error!(run = %run_id, error = %e, "audit log unavailable; action not run");
                ActionError::Fatal(
                    "audit log unavailable: the action was not run (fail closed)".into(),
                )
            })
    }

    /// Records the result of an action that ran, with a line for the log (an error) if any.
    fn result(
        &self,
        action_id: i64,
        kind: &str,
        detail: Value,
        line: Option<(&str, &str)>,
    ) -> Result<(), ActionError> {
        self.result_with_output(action_id, kind, detail, line, &[])
    }

    /// [`Self::result`] that also stores the action's last chunks of output, in the same
    /// transaction: a command with short output costs no durable write of its own.
    fn result_with_output(
        &self,
        action_id: i64,
        kind: &str,
        detail: Value,
        line: Option<(&str, &str)>,
        tail: &[(&'static str, Vec<u8>)],
    ) -> Result<(), ActionError> {
        let run_id = &self.shared.run_id;
        let mut d = self.redact_json(&detail);
        if let Value::Object(m) = &mut d {
            m.insert("host".into(), json!(self.host_name()));
            m.insert("kind".into(), json!(kind));
        }
        let redacted_line = line.map(|(stream, text)| (stream, self.redact(text)));
        let r = self.shared.app.store.record_result(&Outcome {
            action_id,
            run_id,
            host: self.host_name(),
            actor: &self.shared.actor,
            detail: d,
            tail,
            line: redacted_line.as_ref().map(|(s, t)| (*s, t.as_str())),
        });
        self.shared.app.changed.notify_waiters();
        r.map_err(|_| {
            ActionError::Fatal(
                "audit log unavailable after the action: stopping (fail closed)".into(),
            )
        })
    }

    fn ssh_exec(
        &self,
        target: &PlannedHost,
        command: &str,
        sink: &mut dyn OutputSink,
    ) -> Result<i64, ExecError> {
        let shared = &self.shared;
        let cancelled = || shared.cancelled();
        let stop = Stop {
            deadline: shared.action_deadline(),
            cancelled: &cancelled,
        };
        let mut guard = self
            .ssh
            .lock()
            .map_err(|_| ExecError::Io("session lock poisoned".into()))?;
        if guard.is_none() {
            let host = shared.config.host(&target.name).ok_or_else(|| {
                ExecError::Connect(format!("host {} left the inventory", target.name))
            })?;
            let key = host.host_key.as_ref().ok_or_else(|| {
                ExecError::Connect(format!("host {} has no pinned key", target.name))
            })?;
            let pem;
            let credential = match &host.identity {
                Some(Identity::File(p)) => Credential::File(p),
                Some(Identity::Secret(name)) => {
                    pem = shared.config.read_secret(name).map_err(ExecError::Auth)?;
                    if let Ok(mut r) = self.redactor.lock() {
                        r.add(pem.expose());
                    }
                    Credential::Pem(pem.expose())
                }
                None => {
                    return Err(ExecError::Auth(format!(
                        "host {} has no identity",
                        target.name
                    )))
                }
            };
            let t = Target {
                address: &target.address,
                port: target.port,
                user: &target.user,
                host_key: key,
                credential,
            };
            *guard = Some(SshSession::connect(&t, &stop)?);
        }
        let result = match guard.as_mut() {
            Some(session) => session.exec(command, &stop, sink),
            None => Err(ExecError::Connect("no session".into())),
        };
        // A session that failed (the host rebooted, the network dropped) is not reused:
        // the next action connects again, with the same host key check.
        if matches!(
            result,
            Err(ExecError::Io(_) | ExecError::Connect(_) | ExecError::Timeout(_))
        ) {
            *guard = None;
        }
        result
    }
}

fn exec_to_action(e: ExecError) -> ActionError {
    match e {
        ExecError::Cancelled => ActionError::Fatal("cancelled".into()),
        ExecError::HostKeyMismatch { .. } => ActionError::Fatal(format!("hostkey_mismatch: {e}")),
        other => ActionError::Failed(other.to_string()),
    }
}

impl HostApi for HostContext {
    fn sh(&self, command: &str) -> Result<ShOutput, ActionError> {
        let Some(target) = self.target.clone() else {
            return Err(ActionError::Failed(
                "sh() needs a target host; this runbook has no targets".into(),
            ));
        };
        // Rule 2: judged as the shell parses it; what is sent is the words judged, re-quoted.
        let checked = match check_command(&self.shared.runbook.scope.commands, command) {
            Ok(c) => c,
            Err(denied) => {
                return Err(self.violation_because("command", command, Some(&denied.to_string())))
            }
        };
        let command = checked.line.as_str();
        // The audit shows the line as sent, with secrets hidden inside each word (where a
        // secret stands verbatim) before the words are quoted, then in the line as a whole.
        let shown = self.redact(&requote(
            &checked
                .words
                .iter()
                .map(|w| self.redact(w))
                .collect::<Vec<_>>(),
        ));
        let action = self.intent("sh", &shown, json!({"command": shown}))?;
        let started = Instant::now();
        let mut sink = ActionOutput::new(self, &shown);
        let result = match target.transport {
            Transport::Ssh => self.ssh_exec(&target, command, &mut sink),
            Transport::Local => {
                let shared = &self.shared;
                let cancelled = || shared.cancelled();
                let stop = Stop {
                    deadline: shared.action_deadline(),
                    cancelled: &cancelled,
                };
                crate::exec::local::run(
                    &shared.rt,
                    command,
                    &shared.config.secret_env_vars(),
                    &stop,
                    &mut sink,
                )
            }
        };
        let out = sink.finish();
        let ms = started.elapsed().as_millis() as u64;
        if let Some(e) = &out.failed {
            tracing::error!(run = %self.shared.run_id, error = %e, "cannot store output; stopping");
            return Err(ActionError::Fatal(
                "run log unavailable: the action's output could not be stored (fail closed)".into(),
            ));
        }
        match result {
            Ok(code) => {
                if let Ok(mut c) = self.last_code.lock() {
                    *c = Some(code);
                }
                self.result_with_output(
                    action,
                    "sh",
                    json!({"command": shown, "code": code, "duration_ms": ms, "stdout_bytes": out.stdout_bytes, "stderr_bytes": out.stderr_bytes, "output_cut": out.cut.is_some()}),
                    None,
                    &out.tail,
                )?;
                Ok(ShOutput {
                    code,
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                    truncated: out.script_truncated,
                })
            }
            Err(e) => {
                if let ExecError::HostKeyMismatch {
                    expected,
                    presented,
                } = &e
                {
                    // The connection was refused either way; an unrecorded refusal stops the run.
                    if let Err(err) = self.shared.app.store.audit(
                        &self.shared.actor,
                        Some(&self.shared.run_id),
                        Event::HostkeyMismatch,
                        json!({"host": target.name, "address": format!("{}:{}", target.address, target.port), "expected": expected, "presented": presented}),
                    ) {
                        tracing::error!(run = %self.shared.run_id, error = %err, "audit log unavailable; hostkey_mismatch not recorded");
                        return Err(ActionError::Fatal(format!(
                            "hostkey_mismatch: {e}{AUDIT_UNAVAILABLE_REFUSAL}"
                        )));
                    }
                }
                self.result_with_output(
                    action,
                    "sh",
                    json!({"command": shown, "error": e.to_string(), "duration_ms": ms}),
                    Some(("stderr", &e.to_string())),
                    &out.tail,
                )?;
                Err(exec_to_action(e))
            }
        }
    }

    fn http(
        &self,
        method: &str,
        url: &str,
        body: Option<String>,
        headers: Vec<(String, String)>,
    ) -> Result<HttpOutput, ActionError> {
        let parsed = url::Url::parse(url).map_err(|e| {
            ActionError::Failed(format!("http(): `{}` is not a URL: {e}", self.redact(url)))
        })?;
        let what = format!("{} {}", method.to_ascii_uppercase(), url);
        if !self
            .shared
            .runbook
            .scope
            .http
            .iter()
            .any(|r| r.allows(method, &parsed))
        {
            return Err(self.violation("http", &what));
        }
        // Rule 2: a header must not redirect, re-frame or re-purpose the checked request.
        for (name, value) in &headers {
            if crate::policy::scope::check_header(name, value).is_err() {
                return Err(self.violation("header", &name.escape_debug().to_string()));
            }
        }
        let action = self.intent(
            "http",
            &what,
            json!({"method": method.to_ascii_uppercase(), "url": url}),
        )?;
        let started = Instant::now();
        let shared = &self.shared;
        let cancelled = || shared.cancelled();
        let stop = Stop {
            deadline: shared.action_deadline(),
            cancelled: &cancelled,
        };
        let r = crate::exec::http::request(
            &shared.rt,
            &shared.app.http,
            method,
            parsed,
            body,
            &headers,
            &stop,
        );
        let ms = started.elapsed().as_millis() as u64;
        match r {
            Ok(out) => {
                self.result(action, "http", json!({"method": method.to_ascii_uppercase(), "url": url, "status": out.status, "duration_ms": ms}), None)?;
                Ok(out)
            }
            Err(e) => {
                self.result(action, "http", json!({"method": method.to_ascii_uppercase(), "url": url, "error": e.to_string(), "duration_ms": ms}), None)?;
                Err(exec_to_action(e))
            }
        }
    }

    fn secret(&self, name: &str) -> Result<String, ActionError> {
        if !self.shared.runbook.scope.secrets.iter().any(|s| s == name) {
            return Err(self.violation("secret", name));
        }
        let action = self.intent("secret", name, json!({"secret": name}))?;
        match self.shared.config.read_secret(name) {
            Ok(v) => {
                if let Ok(mut r) = self.redactor.lock() {
                    r.add(v.expose());
                }
                self.result(
                    action,
                    "secret",
                    json!({"secret": name, "outcome": "read"}),
                    None,
                )?;
                Ok(v.expose().to_string())
            }
            Err(e) => {
                self.result(action, "secret", json!({"secret": name, "error": e}), None)?;
                Err(ActionError::Failed(e))
            }
        }
    }

    fn log(&self, message: &str) -> Result<(), ActionError> {
        // Redacted whole, then cut: a cut cannot leave the start of a secret behind.
        let redacted = match self.redactor.lock() {
            Ok(r) => r.redact_bytes(message.as_bytes()),
            Err(_) => self.shared.redactor.redact_bytes(message.as_bytes()),
        };
        let limits = &self.shared.runbook.output;
        let (bytes, cut) = output::bound_message(redacted, limits, &self.shared.output);
        let run_id = &self.shared.run_id;
        let unavailable = |_| ActionError::Fatal("run log unavailable".into());
        self.shared
            .app
            .store
            .tx(|tx| {
                for chunk in output::chunks(&bytes) {
                    tx.log_chunk(run_id, self.host_name(), output::LOG_STREAM, chunk)?;
                }
                Ok(())
            })
            .map_err(unavailable)?;
        self.shared.app.changed.notify_waiters();
        if let Some(limit) = cut {
            self.truncated("log", "log()", limit).map_err(unavailable)?;
        }
        Ok(())
    }

    fn sleep(&self, seconds: f64) -> Result<(), ActionError> {
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(ActionError::Failed(format!(
                "sleep({seconds}): seconds must be zero or more"
            )));
        }
        let until = Instant::now() + Duration::from_secs_f64(seconds.min(1e7));
        loop {
            if let Some(reason) = self.should_stop() {
                return Err(ActionError::Fatal(reason));
            }
            let now = Instant::now();
            if now >= self.shared.deadline {
                return Err(ActionError::Fatal(
                    "wall-clock limit reached (runbook timeout)".into(),
                ));
            }
            if now >= until {
                return Ok(());
            }
            std::thread::sleep(
                (until - now)
                    .min(self.shared.deadline - now)
                    .min(Duration::from_millis(50)),
            );
        }
    }

    fn gate(&self, reason: &str) -> Result<(), ActionError> {
        let shared = &self.shared;
        let reason = self.redact(reason);
        let gate = shared
            .app
            .open_mid_run_gate(
                &shared.run_id,
                &shared.runbook,
                &shared.plan,
                self.host_name(),
                &reason,
                &shared.actor,
            )
            .map_err(|_| {
                ActionError::Fatal(
                    "audit log unavailable: cannot open the gate (fail closed)".into(),
                )
            })?;
        loop {
            if let Some(stop) = self.should_stop() {
                return Err(ActionError::Fatal(stop));
            }
            if Instant::now() >= shared.deadline {
                return Err(ActionError::Fatal(
                    "wall-clock limit reached while waiting for approval".into(),
                ));
            }
            let status = shared
                .app
                .store
                .gate_status(&shared.run_id, gate)
                .map_err(|_| {
                    ActionError::Fatal("state store unavailable while waiting for approval".into())
                })?;
            match status {
                Some(GateStatus::Approved) => return Ok(()),
                // Decisions arrive through the API in another thread; a short poll of
                // one indexed row keeps this independent of which thread decides.
                Some(GateStatus::Pending) => std::thread::sleep(Duration::from_millis(100)),
                other => {
                    let expiry_denies = shared
                        .runbook
                        .approval
                        .as_ref()
                        .is_some_and(|a| a.on_expiry == crate::runbook::OnExpiry::Deny);
                    let end = super::lifecycle::after_gate(expiry_denies, other);
                    if let Ok(mut g) = shared.gate_end.lock() {
                        g.get_or_insert(end);
                    }
                    return Err(ActionError::Fatal(format!(
                        "gate `{reason}` {}",
                        other.map_or("vanished", GateStatus::as_str)
                    )));
                }
            }
        }
    }

    fn emit(&self, key: &str, value: Value) -> Result<(), ActionError> {
        crate::runbook::chain::check_emit(key, &value).map_err(ActionError::Failed)?;
        let text = match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        // A value holding a secret (or a form of one) is never kept: no follow-up may carry
        // it into its params, where it would be stored, shown and audited in the clear.
        let clean = self.redact(&text) == text;
        let host = self.host_name().unwrap_or_default();
        self.shared
            .emitted
            .put(key, host, clean.then(|| value.clone()))
            .map_err(ActionError::Failed)?;
        let shared = &self.shared;
        let unavailable = |_| {
            ActionError::Fatal("audit log unavailable: emit() not recorded (fail closed)".into())
        };
        if clean {
            shared
                .app
                .store
                .audit(
                    &shared.actor,
                    Some(&shared.run_id),
                    Event::Emitted,
                    json!({"host": self.host_name(), "key": key, "value": value}),
                )
                .map_err(unavailable)?;
        } else {
            shared
                .app
                .store
                .audit(
                    &shared.actor,
                    Some(&shared.run_id),
                    Event::EmitWithheld,
                    json!({"host": self.host_name(), "key": key, "reason": "the value holds a secret"}),
                )
                .map_err(unavailable)?;
            self.log(&format!(
                "emit `{key}` withheld: its value holds a secret; no follow-up can use it"
            ))?;
        }
        Ok(())
    }

    fn window_left(&self) -> i64 {
        match self.shared.window_end {
            Some(end) => (end - chrono::Utc::now()).num_seconds().max(0),
            None => i64::MAX,
        }
    }

    fn should_stop(&self) -> Option<String> {
        self.shared.stop_reason()
    }
}
