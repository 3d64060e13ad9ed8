//! Rule 1: a user may start a runbook only if `allowed` admits their party and role.
//! Otherwise 403, nothing runs, and the refusal is audited as `start_denied`. Without a
//! valid token there is no user at all: 401.

use serde_json::json;

use crate::harness::{token, unindent, Daemon, Env, HostSpec, StandardConfig};
use crate::run_flow::{audit_events, client, run_to_end, start_run};

/// An env whose runbooks touch `MARKER` on local host `web1` (internal): `touch-default`
/// (default `allowed`: internal operators) and `touch-operators` (operators of both
/// parties, so a provider operator may start it but an internal approver may not).
fn env_with_runbooks() -> Env {
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::local("web1", "internal"))
            .to_yaml(),
    );
    let marker = env.path().join("MARKER");
    for (name, allowed) in [
        ("touch-default", ""),
        (
            "touch-operators",
            "allowed: { parties: [internal, provider], roles: [operator] }\n",
        ),
    ] {
        let yaml = unindent(&format!(
            "
            name: {name}
            owner: internal
            targets: [web1]
            scope:
              commands: [\"touch {marker}\"]
            timeout: 30s
            script: |
              sh(\"touch {marker}\");
            ",
            marker = marker.display()
        ));
        env.write_runbook(&format!("{name}.yaml"), &(yaml + allowed));
    }
    env
}

#[test]
fn start_by_a_party_or_role_not_allowed_is_forbidden_and_audited() {
    let env = env_with_runbooks();
    let daemon = Daemon::start(&env);
    let marker = env.path().join("MARKER");

    let refused = [
        ("paula", "touch-default"),  // provider operator: wrong party
        ("pete", "touch-default"),   // provider approver: wrong party and role
        ("ivan", "touch-default"),   // internal approver: wrong role
        ("audrey", "touch-default"), // internal auditor: wrong role
        ("ivan", "touch-operators"), // party admitted, role not
    ];
    for (user, runbook) in refused {
        let (status, body) =
            daemon.post("/api/v1/runs", &token(user), &json!({"runbook": runbook}));
        assert_eq!(status, 403, "{user} started {runbook}: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
        let denied: Vec<_> = audit_events(&daemon, None, "start_denied")
            .into_iter()
            .filter(|r| r["actor"]["user"] == user && r["detail"]["runbook"] == runbook)
            .collect();
        assert_eq!(denied.len(), 1, "{user} {runbook}: {denied:?}");
    }

    // The command line says no too, with a non-zero exit.
    let out = client(&env, &daemon, "paula", &["run", "touch-default", "--wait"]);
    assert!(out.code.is_some() && out.code != Some(0), "{}", out.dump());
    out.stderr_contains("forbidden");

    // Nothing ran and no run exists.
    let (_, runs) = daemon.get("/api/v1/runs", &token("alice"));
    assert_eq!(runs, json!([]), "a refused start left a run");
    assert!(audit_events(&daemon, None, "run_requested").is_empty());
    assert!(!marker.exists(), "a refused start ran the script");

    // The runbooks do run for users they admit: the refusals above were about the user.
    let run = run_to_end(&daemon, "alice", "touch-default", json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();
    let run = start_run(&daemon, "paula", "touch-operators", json!({}));
    // Paula is of the provider, web1 of internal: a cross-party run waits for internal.
    assert_eq!(run["status"], "awaiting_approval", "{run}");
    assert!(!marker.exists());
}

#[test]
fn start_without_a_valid_token_is_unauthorized() {
    let env = env_with_runbooks();
    let daemon = Daemon::start(&env);
    let marker = env.path().join("MARKER");
    for bad in ["", "tok-nobody", "tok-alicex"] {
        let (status, body) = daemon.post("/api/v1/runs", bad, &json!({"runbook": "touch-default"}));
        assert_eq!(status, 401, "token {bad:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }
    let (status, body) = daemon.get("/api/v1/runs", "");
    assert_eq!(status, 401, "{body}");
    let (_, runs) = daemon.get("/api/v1/runs", &token("alice"));
    assert_eq!(runs, json!([]));
    assert!(!marker.exists());
}
