//! The audit log is tamper-evident (SPEC §8): an export verifies on its own, offline, and
//! any edit to it (one flipped byte, a deleted record, two records swapped) or to the
//! store's rows makes `audit verify` exit 1 naming the first bad `seq`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{unindent, Daemon, Env, HostSpec, Outcome, StandardConfig};
use crate::run_flow::run_to_end;

/// An env whose audit log holds a few runs' worth of records, with the daemon stopped.
fn env_with_history() -> Env {
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::local("web1", "internal"))
            .to_yaml(),
    );
    env.write_runbook(
        "hello.yaml",
        &unindent(
            r#"
            name: hello
            owner: internal
            targets: [web1]
            scope:
              commands: ["echo *"]
            timeout: 30s
            script: |
              sh("echo hello");
            "#,
        ),
    );
    let mut daemon = Daemon::start(&env);
    for _ in 0..2 {
        let run = run_to_end(&daemon, "alice", "hello", json!({}));
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    daemon.sigterm();
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(0));
    env
}

/// `tandem audit verify --file` on `text`, written next to the config.
fn verify_export(env: &Env, name: &str, text: &str) -> Outcome {
    let path = env.write(name, text);
    env.command()
        .args(["audit", "verify", "--file"])
        .arg(&path)
        .run()
}

/// Asserts the verification failed and named `seq`.
fn assert_broken_at(outcome: &Outcome, seq: u64) {
    outcome.status(1).stdout_lacks("ok:");
    outcome.stderr_contains(&format!("seq {seq}"));
}

#[test]
fn audit_export_verifies_and_every_tampering_is_named_by_seq() {
    let env = env_with_history();
    let export = env.tandem(["audit", "export"]);
    export.success();
    let lines: Vec<&str> = export.stdout.lines().collect();
    assert!(
        lines.len() >= 8,
        "too short a log to tamper with:\n{}",
        export.stdout
    );
    let records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1, "{r}");
    }
    let head = records.last().unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string();

    // Untouched: verifies, offline, with the same count and head as the store.
    let clean = verify_export(&env, "clean.jsonl", &export.stdout);
    clean
        .success()
        .stdout_contains(&format!("ok: {} records, head {head}", lines.len()));
    env.tandem(["audit", "verify"])
        .success()
        .stdout_contains(&format!("ok: {} records, head {head}", lines.len()));

    let join = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();

    // One byte flipped inside record 4: a digit of its timestamp.
    let target = lines[3];
    let ts = records[3]["ts"].as_str().unwrap();
    let digit_at = target.find(ts).unwrap() + ts.find(|c: char| c.is_ascii_digit()).unwrap();
    let mut bytes = target.as_bytes().to_vec();
    bytes[digit_at] = if bytes[digit_at] == b'1' { b'2' } else { b'1' };
    let flipped_line = String::from_utf8(bytes).unwrap();
    assert_ne!(flipped_line, target);
    let mut flipped = lines.clone();
    flipped[3] = &flipped_line;
    assert_broken_at(&verify_export(&env, "flipped.jsonl", &join(&flipped)), 4);

    // Record 5 with its event renamed.
    let event = records[4]["event"].as_str().unwrap();
    let edited_line = lines[4].replacen(
        &format!("\"event\":\"{event}\""),
        &format!("\"event\":\"{event}x\""),
        1,
    );
    assert_ne!(edited_line, lines[4]);
    let mut edited = lines.clone();
    edited[4] = &edited_line;
    assert_broken_at(&verify_export(&env, "edited.jsonl", &join(&edited)), 5);

    // Record 3 deleted: record 4 is where 3 should be.
    let mut deleted = lines.clone();
    deleted.remove(2);
    let outcome = verify_export(&env, "deleted.jsonl", &join(&deleted));
    assert_broken_at(&outcome, 4);
    outcome.stderr_contains("seq 3");

    // Records 5 and 6 swapped.
    let mut swapped = lines.clone();
    swapped.swap(4, 5);
    assert_broken_at(&verify_export(&env, "swapped.jsonl", &join(&swapped)), 6);

    // The store itself is untouched by all this.
    env.tandem(["audit", "verify"]).success();
}

#[test]
fn audit_verify_names_the_row_edited_in_the_store() {
    let env = env_with_history();
    let before = env.tandem(["audit", "verify"]);
    before.success();

    let db = rusqlite::Connection::open(env.path().join("state/tandem.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE audit SET detail = replace(detail, 'echo hello', 'echo hellO') WHERE seq = \
             (SELECT min(seq) FROM audit WHERE event = 'action_intent')",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let seq: u64 = db
        .query_row(
            "SELECT min(seq) FROM audit WHERE event = 'action_intent'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(db);

    let after = env.tandem(["audit", "verify"]);
    assert_broken_at(&after, seq);
}
