//! Rule 8: an action's intent is durably recorded before it runs. If the audit log cannot
//! be written, nothing runs (fail closed). After a crash mid-action, the run is
//! `interrupted`, its in-flight action `outcome_unknown`, and nothing is re-run.

use std::time::Duration;

use serde_json::json;

use crate::harness::{unindent, wait_for, wait_until, Daemon, Env, HostSpec, StandardConfig};
use crate::run_flow::{
    audit_events, get_run, id_of, start_run, wait_event, wait_final, KillOnDrop, RUN_TIMEOUT,
};

/// An env with local host `web1`.
fn env_with_host() -> Env {
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::local("web1", "internal"))
            .to_yaml(),
    );
    env
}

/// Writes runbook `act`, whose script runs `command` once on `web1`.
fn write_act(env: &Env, command: &str) {
    let quoted = serde_json::Value::from(command).to_string();
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
              sh({quoted});
            "
        )),
    );
}

#[test]
fn intent_that_cannot_be_audited_means_the_action_never_runs() {
    let env = env_with_host();
    let marker_path = env.path().join("MARKER");
    write_act(&env, &format!("touch {}", marker_path.display()));
    let daemon = Daemon::start(&env);

    // The audit log's storage now refuses exactly the intent records, as a full disk would.
    let db = rusqlite::Connection::open(env.path().join("state/tandem.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch(
        "CREATE TRIGGER fail_intent BEFORE INSERT ON audit WHEN NEW.event = 'action_intent' \
         BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();

    let run = start_run(&daemon, "alice", "act", json!({}));
    let id = id_of(&run);
    let run = wait_final(&daemon, &id, RUN_TIMEOUT);
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["hosts"][0]["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("fail closed"), "{run}");
    // The storage's own message stays in the daemon's log, not in what users see.
    assert!(!error.contains("disk full"), "{run}");
    assert!(
        !marker_path.exists(),
        "the action ran without its intent on record"
    );
    assert!(audit_events(&daemon, Some(&id), "action_intent").is_empty());
    assert!(audit_events(&daemon, Some(&id), "action_result").is_empty());

    // With the storage healthy again, the same runbook runs: the failure was the audit log.
    db.execute_batch("DROP TRIGGER fail_intent;").unwrap();
    let run = start_run(&daemon, "alice", "act", json!({}));
    let run = wait_final(&daemon, &id_of(&run), RUN_TIMEOUT);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(marker_path.exists());
}

/// Writes runbook `stray`, whose scope admits only `true` and whose script tries `command`
/// on `web1`.
fn write_stray(env: &Env, command: &str) {
    let quoted = serde_json::Value::from(command).to_string();
    env.write_runbook(
        "stray.yaml",
        &unindent(&format!(
            "
            name: stray
            owner: internal
            targets: [web1]
            scope:
              commands: [\"true\"]
            timeout: 60s
            script: |
              sh({quoted});
            "
        )),
    );
}

// Rule 2 with rule 8: a refusal that cannot be recorded is still a refusal. The command does
// not run, the run fails, and its error says the audit log was unavailable.
#[test]
fn scope_denial_that_cannot_be_audited_still_denies_and_fails_the_run() {
    let env = env_with_host();
    let marker_path = env.path().join("MARKER");
    write_stray(&env, &format!("touch {}", marker_path.display()));
    let daemon = Daemon::start(&env);
    let db = rusqlite::Connection::open(env.path().join("state/tandem.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();

    // First only the refusal's record is refused.
    db.execute_batch(
        "CREATE TRIGGER fail_denied BEFORE INSERT ON audit WHEN NEW.event = 'scope_denied' \
         BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();
    let run = start_run(&daemon, "alice", "stray", json!({}));
    let id = id_of(&run);
    let run = wait_final(&daemon, &id, RUN_TIMEOUT);
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["hosts"][0]["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("scope_violation"), "{run}");
    assert!(error.contains("audit log was unavailable"), "{run}");
    assert!(!error.contains("disk full"), "{run}");
    assert!(!marker_path.exists(), "the out-of-scope command ran");
    assert!(audit_events(&daemon, Some(&id), "scope_denied").is_empty());
    assert!(audit_events(&daemon, Some(&id), "action_intent").is_empty());

    // Then every record after the run starts: the run cannot even record its end, and
    // nothing may claim it succeeded.
    db.execute_batch(
        "DROP TRIGGER fail_denied; \
         CREATE TRIGGER fail_all BEFORE INSERT ON audit \
         WHEN NEW.event NOT IN ('run_requested', 'run_started') \
         BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();
    let run = start_run(&daemon, "alice", "stray", json!({}));
    let id = id_of(&run);
    let run = wait_for(RUN_TIMEOUT, "the host to end", || {
        let run = get_run(&daemon, &id);
        (run["hosts"][0]["status"] == "failed").then_some(run)
    });
    assert!(!marker_path.exists(), "the out-of-scope command ran");
    assert_ne!(run["status"], "succeeded", "{run}");
    let error = run["hosts"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("audit log was unavailable"), "{run}");
    // The daemon stays up and truthful: the run is not reported as succeeded later either.
    let run = get_run(&daemon, &id);
    assert!(
        ["running", "failed"].contains(&run["status"].as_str().unwrap_or_default()),
        "{run}"
    );
    db.execute_batch("DROP TRIGGER fail_all;").unwrap();
}

#[test]
fn kill_during_an_action_leaves_the_run_interrupted_and_nothing_rerun() {
    // Each start of the command appends its pid to STARTS, then becomes a long sleep. The
    // shell script is one quoted word: tandem admits one simple command, here `exec sh -c`.
    let env = env_with_host();
    let starts = env.path().join("STARTS");
    write_act(
        &env,
        &format!(
            "exec sh -c 'echo $$ >> {} && exec sleep 30'",
            starts.display()
        ),
    );
    let mut daemon = Daemon::start(&env);

    let run = start_run(&daemon, "alice", "act", json!({}));
    let id = id_of(&run);
    wait_event(&daemon, &id, "action_intent");
    wait_until(RUN_TIMEOUT, "the command to start", || {
        std::fs::read_to_string(&starts).is_ok_and(|s| s.ends_with('\n'))
    });
    assert_eq!(get_run(&daemon, &id)["status"], "running");
    daemon.kill9();

    // The sleep outlived the daemon; end it (it was started for this test) once checked.
    let text = std::fs::read_to_string(&starts).unwrap();
    let pid: u32 = text.trim().parse().unwrap();
    let _kill_sleep = KillOnDrop(pid);

    let daemon = Daemon::start(&env);
    let run = get_run(&daemon, &id);
    assert_eq!(run["status"], "interrupted", "{run}");
    assert_eq!(run["hosts"][0]["status"], "interrupted", "{run}");

    let results = audit_events(&daemon, Some(&id), "action_result");
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(
        results[0]["detail"]["outcome"], "outcome_unknown",
        "{results:?}"
    );
    assert_eq!(results[0]["actor"], "system", "{results:?}");
    let finished = audit_events(&daemon, Some(&id), "run_finished");
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0]["detail"]["status"], "interrupted");
    // Started once, intended once: the restart re-ran nothing.
    assert_eq!(audit_events(&daemon, Some(&id), "run_started").len(), 1);
    assert_eq!(audit_events(&daemon, Some(&id), "action_intent").len(), 1);
    assert_eq!(std::fs::read_to_string(&starts).unwrap(), text);

    env.tandem(["audit", "verify"])
        .success()
        .stdout_contains("ok: ");
}

// The state (runs, logs, the audit log) is the daemon's alone: other local users cannot read
// it, whatever the umask, and a state folder left open by hand is closed again.
#[test]
fn state_directory_and_database_files_are_private_to_the_daemon() {
    use std::os::unix::fs::PermissionsExt;
    let env = env_with_host();
    write_act(&env, "true");
    // A state folder made beforehand with a lax mode.
    let state = env.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = Daemon::start(&env);
    let run = start_run(&daemon, "alice", "act", json!({}));
    let run = wait_final(&daemon, &id_of(&run), RUN_TIMEOUT);
    assert_eq!(run["status"], "succeeded", "{run}");

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700, "state folder");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        files.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    files.sort();
    for expected in ["tandem.db", "tandem.db-shm", "tandem.db-wal"] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} missing: {files:?}"
        );
    }
}
