//! Stopping: SIGTERM makes the daemon refuse new runs, let the active ones finish and exit
//! 0 (SPEC §6); a cancelled run stops its command at once and ends `cancelled`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{token, unindent, wait_until, Daemon, Env, HostSpec, StandardConfig};
use crate::run_flow::{
    audit_events, audit_records, get_run, id_of, process_gone, start_run, wait_event, wait_final,
    KillOnDrop, RUN_TIMEOUT,
};

/// An env with local host `web1` and runbook `act` that runs `command` on it.
fn env_running(command_for: impl FnOnce(&Env) -> String) -> Env {
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::local("web1", "internal"))
            .to_yaml(),
    );
    let quoted = serde_json::Value::from(command_for(&env)).to_string();
    env.write_runbook(
        "act.yaml",
        &unindent(&format!(
            "
            name: act
            owner: internal
            targets: [web1]
            scope:
              commands: [{quoted}]
            timeout: 60s
            script: |
              let r = sh({quoted});
              if r.code != 0 {{ fail(`exit ${{r.code}}`); }}
            "
        )),
    );
    env
}

#[test]
fn sigterm_refuses_new_runs_lets_the_active_run_finish_and_exits_zero() {
    let env = env_running(|_| "sleep 3".to_string());
    let mut daemon = Daemon::start(&env);

    let run = start_run(&daemon, "alice", "act", json!({}));
    let id = id_of(&run);
    wait_event(&daemon, &id, "action_intent");
    daemon.sigterm();
    wait_until(RUN_TIMEOUT, "the daemon to start draining", || {
        daemon.stderr().contains("stopping")
    });

    // Draining: no new run is accepted, while the active one is still going.
    let (status, body) = daemon.post("/api/v1/runs", &token("alice"), &json!({"runbook": "act"}));
    assert_eq!(status, 503, "a run was accepted while draining: {body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert_eq!(get_run(&daemon, &id)["status"], "running");

    assert_eq!(
        daemon.wait_exit(RUN_TIMEOUT),
        Some(0),
        "{}",
        daemon.stderr()
    );

    // The store, read by a fresh daemon, has the run finished, not interrupted.
    let daemon = Daemon::start(&env);
    let run = get_run(&daemon, &id);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["hosts"][0]["exit_code"], 0, "{run}");
    let finished = audit_events(&daemon, Some(&id), "run_finished");
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0]["detail"]["status"], "succeeded");
    let (_, runs) = daemon.get("/api/v1/runs", &token("alice"));
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
}

#[test]
fn cancel_stops_a_running_command_promptly() {
    let env = env_running(|env| {
        format!(
            "exec sh -c 'echo $$ > {} && exec sleep 30'",
            env.path().join("PID").display()
        )
    });
    let daemon = Daemon::start(&env);

    let run = start_run(&daemon, "alice", "act", json!({}));
    let id = id_of(&run);
    let pid_file = env.path().join("PID");
    wait_until(RUN_TIMEOUT, "the command to start", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!process_gone(pid));
    let _sleep = KillOnDrop(pid);

    let cancelled_at = Instant::now();
    let (status, body) = daemon.post(
        &format!("/api/v1/runs/{id}/cancel"),
        &token("alice"),
        &json!({}),
    );
    assert_eq!(status, 200, "{body}");
    let run = wait_final(&daemon, &id, Duration::from_secs(10));
    assert!(cancelled_at.elapsed() < Duration::from_secs(10));
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(run["hosts"][0]["status"], "cancelled", "{run}");
    wait_until(
        Duration::from_secs(10),
        "the cancelled command to end",
        || process_gone(pid),
    );
    assert_eq!(
        audit_events(&daemon, Some(&id), "cancel_requested").len(),
        1
    );
    let finished = audit_events(&daemon, Some(&id), "run_finished");
    assert_eq!(finished[0]["detail"]["status"], "cancelled", "{finished:?}");

    // A run that ended cannot be cancelled again.
    let (status, body) = daemon.post(
        &format!("/api/v1/runs/{id}/cancel"),
        &token("alice"),
        &json!({}),
    );
    assert_eq!(status, 409, "{body}");
}

/// SIGTERM: an approval recorded while the daemon drains is kept, but the run does not start
/// on the stopping daemon; it stays `queued` and the next daemon starts it.
#[test]
fn an_approval_while_draining_starts_the_run_at_the_next_start() {
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::local("web1", "internal"))
            .to_yaml(),
    );
    let hold = env.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let ran = env.path().join("asks-ran");
    // `holder` keeps the daemon draining until the hold file goes.
    env.write_runbook(
        "holder.yaml",
        &unindent(&format!(
            "
            name: holder
            owner: internal
            targets: [web1]
            scope:
              commands: [\"test -e *\"]
            timeout: 60s
            script: |
              while sh(\"test -e \" + quote({hold:?})).code == 0 {{ sleep(0.05); }}
            "
        )),
    );
    env.write_runbook(
        "asks.yaml",
        &unindent(&format!(
            "
            name: asks
            owner: internal
            targets: [web1]
            approval: {{ from: internal }}
            scope:
              commands: [\"touch *\"]
            script: |
              sh_ok(\"touch \" + quote({ran:?}));
            "
        )),
    );
    let mut daemon = Daemon::start(&env);
    let holder = id_of(&start_run(&daemon, "alice", "holder", json!({})));
    wait_event(&daemon, &holder, "action_intent");
    let asks = start_run(&daemon, "alice", "asks", json!({}));
    assert_eq!(asks["status"], "awaiting_approval", "{asks}");
    let id = id_of(&asks);

    daemon.sigterm();
    wait_until(RUN_TIMEOUT, "the daemon to start draining", || {
        daemon.stderr().contains("stopping")
    });
    let (status, body) = daemon.post(
        &format!("/api/v1/runs/{id}/approve"),
        &token("ivan"),
        &json!({"digest": asks["digest"]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "queued", "{body}");

    // The holder ends, the daemon exits, and the approved run never started on it.
    std::fs::remove_file(&hold).unwrap();
    assert_eq!(
        daemon.wait_exit(RUN_TIMEOUT),
        Some(0),
        "{}",
        daemon.stderr()
    );
    assert!(!ran.exists(), "the run started on a draining daemon");

    let daemon = Daemon::start(&env);
    let run = wait_final(&daemon, &id, RUN_TIMEOUT);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(ran.exists());
    // Started by the second daemon: after its `config_loaded`, once.
    let records = audit_records(&daemon);
    let seq_of = |pred: &dyn Fn(&serde_json::Value) -> bool| -> Vec<u64> {
        records
            .iter()
            .filter(|r| pred(r))
            .filter_map(|r| r["seq"].as_u64())
            .collect()
    };
    let loaded = seq_of(&|r| r["event"] == "config_loaded");
    let started = seq_of(&|r| r["event"] == "run_started" && r["run_id"] == id.as_str());
    assert_eq!(loaded.len(), 2, "{loaded:?}");
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(
        started[0] > loaded[1],
        "started before the restart: {started:?} {loaded:?}"
    );
}
