//! Driving runs through a live daemon, shared by the tests of the rules: start a run over
//! the API, wait until it ends, read the audit log as the auditor, drive the CLI against
//! the daemon.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{token, wait_for, Daemon, Env, Outcome};

/// How long a run that should end quickly may take on a loaded 2-core machine.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Statuses a run ends in (SPEC §4).
pub(crate) const FINAL: [&str; 6] = [
    "succeeded",
    "failed",
    "cancelled",
    "interrupted",
    "denied",
    "expired",
];

/// `POST /api/v1/runs` as `user`; asserts 201 and returns the new run.
pub fn start_run(daemon: &Daemon, user: &str, runbook: &str, params: Value) -> Value {
    let (status, run) = daemon.post(
        "/api/v1/runs",
        &token(user),
        &json!({"runbook": runbook, "params": params}),
    );
    assert_eq!(status, 201, "starting {runbook} as {user}: {run}");
    assert!(run["id"].is_string(), "{run}");
    run
}

/// The run's id as a string.
pub fn id_of(run: &Value) -> String {
    run["id"].as_str().expect("run id").to_string()
}

/// `GET /api/v1/runs/{id}` as alice; asserts 200.
pub fn get_run(daemon: &Daemon, id: &str) -> Value {
    get_run_as(daemon, "alice", id)
}

/// `GET /api/v1/runs/{id}` as `user`, who must be able to see the run (rule 10); asserts 200.
pub fn get_run_as(daemon: &Daemon, user: &str, id: &str) -> Value {
    let (status, run) = daemon.get(&format!("/api/v1/runs/{id}"), &token(user));
    assert_eq!(status, 200, "GET run {id} as {user}: {run}");
    run
}

/// Waits until the run is in a final status and returns it (read as alice).
pub fn wait_final(daemon: &Daemon, id: &str, timeout: Duration) -> Value {
    wait_final_as(daemon, "alice", id, timeout)
}

/// Waits until the run, read as `user`, is in a final status and returns it.
pub fn wait_final_as(daemon: &Daemon, user: &str, id: &str, timeout: Duration) -> Value {
    wait_for(timeout, &format!("run {id} to end"), || {
        let run = get_run_as(daemon, user, id);
        FINAL
            .contains(&run["status"].as_str().unwrap_or_default())
            .then_some(run)
    })
}

/// Starts a run and waits for its end, reading it as the user who started it.
pub fn run_to_end(daemon: &Daemon, user: &str, runbook: &str, params: Value) -> Value {
    let run = start_run(daemon, user, runbook, params);
    wait_final_as(daemon, user, &id_of(&run), RUN_TIMEOUT)
}

/// The whole audit log as the auditor reads it over the API.
pub fn audit_records(daemon: &Daemon) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    loop {
        let after = out.last().map_or(0, |r| r["seq"].as_u64().expect("seq"));
        let (status, page) = daemon.get(&format!("/api/v1/audit?after={after}"), &token("audrey"));
        assert_eq!(status, 200, "GET audit: {page}");
        let page = page.as_array().expect("audit page is an array").clone();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// The audit records of `run_id` (or of no run, for `None`) with this event.
pub fn audit_events(daemon: &Daemon, run_id: Option<&str>, event: &str) -> Vec<Value> {
    audit_records(daemon)
        .into_iter()
        .filter(|r| r["event"] == event && r["run_id"].as_str() == run_id)
        .collect()
}

/// Waits until the audit log holds a record of `event` for `run_id`; returns it.
pub fn wait_event(daemon: &Daemon, run_id: &str, event: &str) -> Value {
    wait_for(
        RUN_TIMEOUT,
        &format!("audit event {event} for run {run_id}"),
        || audit_events(daemon, Some(run_id), event).into_iter().next(),
    )
}

/// The run's log lines over the API.
pub fn log_lines(daemon: &Daemon, id: &str) -> Vec<Value> {
    let (status, lines) = daemon.get(&format!("/api/v1/runs/{id}/log"), &token("alice"));
    assert_eq!(status, 200, "GET log of {id}: {lines}");
    lines.as_array().expect("log is an array").clone()
}

/// A client command against the daemon as `user`: `tandem ARGS --server URL --token T`.
pub fn client(env: &Env, daemon: &Daemon, user: &str, args: &[&str]) -> Outcome {
    env.command()
        .args(args)
        .args(["--server", daemon.url(), "--token", &token(user)])
        .run()
}

/// Whether process `pid` is gone (or a zombie waiting to be reaped: it runs no more).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name in parentheses: `PID (comm) S …`.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Kills a process the test caused to run (a command a run started) when the test ends,
/// should it still be running.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !process_gone(self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}
