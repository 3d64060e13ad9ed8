//! Rule 8: an action's intent is durably recorded before it runs. If the audit log cannot
//! be written, nothing runs (fail closed). After a crash mid-action, the run is
//! `interrupted`, its in-flight action `outcome_unknown`, and nothing is re-run.

use std::time::Duration;

use serde_json::json;

use crate::harness::{unindent, wait_until, Daemon, Env, HostSpec, StandardConfig};
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
