//! Approvals across a daemon restart (rule 5): pending approvals and the decisions on them
//! survive a crash; an approval that expired while the daemon was down is expired at start
//! and its run never runs.

use std::time::Duration;

use serde_json::json;

use crate::approvals::{
    approve, approve_and_see_it_run, assert_audit_verifies, assert_decisions_audited, audit_of,
    event_names, events, gate, get_run, ran, request_pending, site_config, site_env,
    write_marker_runbook,
};
use crate::harness::{wait_until, Daemon};

#[test]
fn a_pending_approval_and_its_decisions_survive_a_crash() {
    let env = site_env(&site_config());
    write_marker_runbook(
        &env,
        "two",
        "[web1]",
        "approval: { from: internal, quorum: 2 }",
    );
    let mut daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "paula", "two");
    let (status, body) = approve(&daemon, "ivan", &id);
    assert_eq!(status, 200, "{body}");
    let before = get_run(&daemon, &id);

    daemon.kill9();
    let daemon = Daemon::start(&env);

    let after = get_run(&daemon, &id);
    assert_eq!(after["status"], "awaiting_approval", "{after}");
    assert_eq!(after["digest"], before["digest"], "{after}");
    assert_eq!(gate(&after, 0), gate(&before, 0), "the gate changed");
    let (status, runs) = daemon.get("/api/v1/approvals", &crate::harness::token("ines"));
    assert_eq!(status, 200, "{runs}");
    assert_eq!(runs[0]["id"], json!(id), "{runs}");

    // ivan's decision still counts, once.
    let (status, body) = approve(&daemon, "ivan", &id);
    assert_eq!(
        status, 409,
        "ivan approving again after the restart: {body}"
    );
    assert!(!ran(&env, &id, ""));
    approve_and_see_it_run(&env, &daemon, "ines", &id);
    assert_decisions_audited(&daemon, &id);
    assert_audit_verifies(&env);
}

#[test]
fn a_pending_approval_survives_a_graceful_restart() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "asks", "[web1]", "approval: { from: internal }");
    let mut daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "alice", "asks");

    daemon.sigterm();
    assert_eq!(
        daemon.wait_exit(Duration::from_secs(20)),
        Some(0),
        "a daemon with only pending approvals must drain at once\n{}",
        daemon.stderr()
    );
    let daemon = Daemon::start(&env);
    assert_eq!(get_run(&daemon, &id)["status"], "awaiting_approval");
    approve_and_see_it_run(&env, &daemon, "ivan", &id);
}

#[test]
fn an_approval_that_expired_while_the_daemon_was_down_is_expired_at_start() {
    let env = site_env(&site_config());
    write_marker_runbook(
        &env,
        "short",
        "[web1]",
        "approval: { from: internal, expires: 2s }",
    );
    let mut daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "alice", "short");
    let expires_at = gate(&get_run(&daemon, &id), 0)["expires_at"]
        .as_str()
        .map(str::to_string)
        .unwrap();
    let expires_at = chrono::DateTime::parse_from_rfc3339(&expires_at)
        .unwrap_or_else(|e| panic!("expires_at {expires_at:?}: {e}"));

    daemon.kill9();
    wait_until(
        Duration::from_secs(10),
        "the approval's expiry to pass",
        || chrono::Utc::now() > expires_at,
    );
    let daemon = Daemon::start(&env);

    // Settled before the daemon said it was listening: no waiting here.
    let run = get_run(&daemon, &id);
    assert_eq!(run["status"], "expired", "{run}");
    assert_eq!(gate(&run, 0)["status"], "expired", "{run}");
    let (status, body) = approve(&daemon, "ivan", &id);
    assert_eq!(status, 409, "approving after the restart: {body}");
    assert_eq!(get_run(&daemon, &id)["status"], "expired");
    assert!(!ran(&env, &id, ""), "an expired approval ran");

    let records = audit_of(&daemon, &id);
    let names = event_names(&records);
    assert_eq!(events(&records, "approval_expired").len(), 1, "{names:?}");
    assert!(events(&records, "run_started").is_empty(), "{names:?}");
    assert_eq!(
        events(&records, "run_finished")[0]["detail"]["status"],
        "expired",
        "{names:?}"
    );
    assert_audit_verifies(&env);
}
