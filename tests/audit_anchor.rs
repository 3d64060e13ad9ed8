//! Anchored audit (SPEC §8): signed checkpoints delivered to each party's witnesses make a
//! cut tail, an edit, a deletion, an insertion, a reordering or a recomputed chain visible,
//! even to someone who could rewrite the whole database. And an auditor's export holds only
//! what concerns its party (rule 10), yet verifies on its own.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{
    token, unindent, wait_for, Daemon, Env, HostSpec, HttpStub, Outcome, StandardConfig,
};
use crate::run_flow::run_to_end;

/// How long a checkpoint may take to reach a witness.
const DELIVERY: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// A sample of the tamper campaign through the binary. (The whole campaign, a thousand
// tamperings, runs against the same verifier in `src/audit/campaign.rs`.) Logs and
// checkpoints are made here from the documented formats alone, as another party's tool
// would make them.

/// The bytes an Ed25519 checkpoint signature covers (README, "Audit anchoring").
fn checkpoint_message(seq: u64, head: &str, ts: &str) -> Vec<u8> {
    let mut out = b"tandem audit checkpoint v1\n".to_vec();
    out.extend_from_slice(canonical(&json!({"seq": seq, "head": head, "ts": ts})).as_bytes());
    out
}

/// JSON with keys sorted at every level, no white space (SPEC §8's canonical form).
fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let ordered: std::collections::BTreeMap<_, _> =
                    m.iter().map(|(k, x)| (k.clone(), sorted(x))).collect();
                Value::Object(ordered.into_iter().collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// A signing key from a fixed seed, and its public key in the `ed25519 BASE64` form.
fn signer(seed: u8) -> (ed25519_dalek::SigningKey, String) {
    use base64::Engine as _;
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let public = format!(
        "ed25519 {}",
        base64::engine::general_purpose::STANDARD.encode(key.verifying_key().to_bytes())
    );
    (key, public)
}

/// A checkpoint document for `seq`/`head`, signed by `key`.
fn checkpoint(key: &ed25519_dalek::SigningKey, public: &str, seq: u64, head: &str) -> Value {
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;
    let ts = "2026-12-02T12:00:00Z";
    let signature = key.sign(&checkpoint_message(seq, head, ts));
    json!({
        "seq": seq,
        "head": head,
        "ts": ts,
        "key": public,
        "signature": base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
    })
}

/// Sets seq, prev_hash and hash of `log[from..]`: SHA-256(prev_hash ‖ canonical record
/// without hash).
fn rechain(log: &mut [Value], from: usize) {
    for i in from..log.len() {
        let prev = if i == 0 {
            "0".repeat(64)
        } else {
            log[i - 1]["hash"].as_str().unwrap().to_string()
        };
        let r = log[i].as_object_mut().unwrap();
        r.insert("seq".into(), json!(i + 1));
        r.insert("prev_hash".into(), json!(prev));
        r.remove("hash");
        let body = canonical(&Value::Object(r.clone()));
        let hash = hex::encode(sha2::Sha256::digest(format!("{prev}{body}").as_bytes()));
        r.insert("hash".into(), json!(hash));
    }
}

use sha2::Digest as _;

fn honest_log(n: usize) -> Vec<Value> {
    let mut log: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "ts": format!("2026-12-02T00:{:02}:{:02}Z", i / 60 % 60, i % 60),
                "actor": {"user": "alice", "party": "internal"},
                "run_id": format!("run{}", i / 4),
                "event": "action_intent",
                "detail": {"cmd": format!("echo {i}")},
            })
        })
        .collect();
    rechain(&mut log, 0);
    log
}

#[test]
fn tamper_campaign_sample_through_the_binary_is_all_caught() {
    const RECORDS: usize = 1000;
    const SAMPLE: usize = 20;
    let env = Env::new();
    let (key, public) = signer(7);
    let log = honest_log(RECORDS);
    let lines = |log: &[Value]| -> String { log.iter().map(|r| format!("{r}\n")).collect() };
    let verify = |name: &str, log: &[Value], cp: &Value| -> Outcome {
        let file = env.write(format!("{name}.jsonl"), lines(log));
        let cp_file = env.write(format!("{name}.checkpoint.json"), cp.to_string());
        env.command()
            .args(["audit", "verify", "--file"])
            .arg(&file)
            .arg("--checkpoint")
            .arg(&cp_file)
            .args(["--key", &public])
            .run()
    };
    let head = |log: &[Value], seq: usize| log[seq - 1]["hash"].as_str().unwrap().to_string();

    // The untouched log verifies against a checkpoint at its end: the tool says yes too.
    let cp = checkpoint(&key, &public, RECORDS as u64, &head(&log, RECORDS));
    verify("honest", &log, &cp)
        .success()
        .stdout_contains(&format!(
            "ok: {RECORDS} records, head {}",
            head(&log, RECORDS)
        ));

    let mut caught = 0;
    for i in 0..SAMPLE {
        // Spread over the log; the checkpoint is taken after the tampered point.
        let k = 17 + i * 47;
        let recompute = i % 2 == 1;
        let mut t = log.clone();
        let what = match i % 5 {
            0 => {
                t[k]["detail"]["cmd"] = json!("rm -rf /");
                "edit"
            }
            1 => {
                t.remove(k);
                "delete"
            }
            2 => {
                let forged = t[k].clone();
                t.insert(k, forged);
                "insert"
            }
            3 => {
                t.swap(k, k + 1);
                "reorder"
            }
            _ => {
                t.truncate(k);
                "cut"
            }
        };
        if recompute && what != "cut" {
            rechain(&mut t, k);
        }
        let at = (k + 1 + i * 3).min(RECORDS);
        let cp = checkpoint(&key, &public, at as u64, &head(&log, at));
        let out = verify(&format!("tampered-{i}"), &t, &cp);
        let refused = out.code == Some(1);
        assert!(
            refused,
            "{what} at {} (recomputed: {recompute}) not caught:\n{}",
            k + 1,
            out.dump()
        );
        out.stdout_lacks("ok:").stderr_contains("seq");
        caught += usize::from(refused);
    }
    println!("tamper sample through the binary: {caught} of {SAMPLE} caught");
}

// ---------------------------------------------------------------------------------------
// The daemon: checkpoints to witnesses, on shutdown, and a cut tail caught.

fn hello_runbook(env: &Env, name: &str, owner: &str, host: &str, word: &str) {
    let allowed = if owner == "provider" {
        "allowed: { parties: [provider], roles: [operator] }\n"
    } else {
        ""
    };
    env.write_runbook(
        &format!("{name}.yaml"),
        &(unindent(&format!(
            r#"
            name: {name}
            owner: {owner}
            targets: [{host}]
            scope:
              commands: ["echo *"]
            timeout: 30s
            script: |
              sh("echo {word}");
            "#
        )) + allowed),
    );
}

/// A checkpoint as witnesses receive it (README, "Audit anchoring").
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Checkpoint {
    seq: u64,
    head: String,
    ts: String,
    key: String,
    signature: String,
}

/// The checkpoints a file witness holds.
fn witnessed(env: &Env, file: &str) -> Vec<Checkpoint> {
    std::fs::read_to_string(env.path().join(file))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The audit records of `event` as `user` reads them over the API.
fn events_seen_by(daemon: &Daemon, user: &str, event: &str) -> Vec<Value> {
    let (status, page) = daemon.get("/api/v1/audit?after=0&limit=10000", &token(user));
    assert_eq!(status, 200, "{page}");
    page.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"] == event)
        .cloned()
        .collect()
}

fn verify_with_checkpoints(env: &Env, files: &[&str]) -> Outcome {
    let mut command = env.command().args(["audit", "verify"]);
    for f in files {
        command = command.arg("--checkpoint").arg(env.path().join(f));
    }
    command.run()
}

#[test]
fn the_daemon_hands_checkpoints_to_file_and_http_witnesses_and_a_cut_tail_is_caught() {
    let receiver = HttpStub::start();
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::local("web1", "internal"))
            .extra(&format!(
                "audit:\n  checkpoint_records: 5\n  checkpoint_interval: 1h\n  witnesses:\n    \
                 - {{ party: internal, file: internal-witness.jsonl }}\n    \
                 - {{ party: provider, url: \"{}/witness\" }}\n",
                receiver.url()
            ))
            .to_yaml(),
    );
    hello_runbook(&env, "hello", "internal", "web1", "hello");
    let mut daemon = Daemon::start(&env);
    for _ in 0..3 {
        let run = run_to_end(&daemon, "alice", "hello", json!({}));
        assert_eq!(run["status"], "succeeded", "{run}");
    }

    // Every 5 records a checkpoint reaches both witnesses, the same document to each.
    let in_file = wait_for(DELIVERY, "a checkpoint in the file witness", || {
        let cps = witnessed(&env, "internal-witness.jsonl");
        (!cps.is_empty()).then_some(cps)
    });
    let posted = receiver.wait_for_requests("/witness", 1, DELIVERY);
    assert_eq!(posted[0].method, "POST");
    let first: Checkpoint = serde_json::from_value(posted[0].json()).unwrap();
    assert!(in_file.contains(&first), "{first:?} not in {in_file:?}");
    assert!(first.seq >= 5, "{first:?}");

    // `audit key` prints the key that signed them.
    let key = env.tandem(["audit", "key"]);
    key.success();
    assert_eq!(key.stdout.trim(), first.key);
    assert!(first.key.starts_with("ed25519 "), "{}", first.key);
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&env.path().join("state/audit-signing.key")), 0o600);
    assert_eq!(mode(&env.path().join("state")), 0o700);

    // Signing and each delivery are audited, each delivery under the witness's party.
    let signed = events_seen_by(&daemon, "audrey", "checkpoint_signed");
    assert!(
        signed.iter().any(|r| r["detail"]["seq"] == first.seq),
        "{signed:?}"
    );
    wait_for(DELIVERY, "both deliveries audited", || {
        let delivered = events_seen_by(&daemon, "audrey", "checkpoint_delivered");
        let parties: Vec<&str> = delivered
            .iter()
            .filter(|r| r["detail"]["seq"] == first.seq)
            .filter_map(|r| r["detail"]["party"].as_str())
            .collect();
        (parties.contains(&"internal") && parties.contains(&"provider")).then_some(())
    });

    // SIGTERM: the daemon drains and signs a last checkpoint over its final head, and both
    // witnesses have it before the daemon exits.
    daemon.sigterm();
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)), Some(0));
    let db = rusqlite::Connection::open(env.path().join("state/tandem.db")).unwrap();
    let last_signed: String = db
        .query_row(
            "SELECT detail FROM audit WHERE event = 'checkpoint_signed' ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let last_signed: Value = serde_json::from_str(&last_signed).unwrap();
    assert_eq!(last_signed["reason"], "shutdown", "{last_signed}");
    let all = witnessed(&env, "internal-witness.jsonl");
    let last = all
        .iter()
        .find(|c| last_signed["seq"] == c.seq)
        .unwrap_or_else(|| panic!("no shutdown checkpoint in the file: {all:?}"))
        .clone();
    assert_eq!(last_signed["head"], last.head);
    assert!(
        receiver
            .requests_to("/witness")
            .iter()
            .any(|r| serde_json::from_value::<Checkpoint>(r.json()).unwrap() == last),
        "the HTTP witness lacks the shutdown checkpoint"
    );
    let finished: u64 = db
        .query_row(
            "SELECT max(seq) FROM audit WHERE event = 'run_finished'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        last.seq > finished,
        "{last:?} does not cover run_finished {finished}"
    );

    // The log extends every checkpoint the witnesses hold, with the state_dir key or with
    // the key given on the command line against an export, offline.
    verify_with_checkpoints(&env, &["internal-witness.jsonl"])
        .success()
        .stdout_contains("ok: ")
        .stdout_contains(&format!("extends {} checkpoint(s)", all.len()));
    let exported = env.tandem(["audit", "export"]);
    exported.success();
    let export_file = env.write("export.jsonl", &exported.stdout);
    env.command()
        .args(["audit", "verify", "--file"])
        .arg(&export_file)
        .arg("--checkpoint")
        .arg(env.path().join("internal-witness.jsonl"))
        .args(["--key", &first.key])
        .run()
        .success();

    // With the daemon stopped, the command line signs a checkpoint over the current head.
    let offline = env.tandem(["audit", "checkpoint"]);
    offline.success();
    let offline_cp: Checkpoint = serde_json::from_str(offline.stdout.trim()).unwrap();
    assert_eq!(offline_cp.key, first.key);
    assert!(offline_cp.seq > last.seq, "{offline_cp:?}");
    env.write("offline.json", &offline.stdout);
    verify_with_checkpoints(&env, &["internal-witness.jsonl", "offline.json"]).success();

    // A checkpoint signed by another key proves nothing and fails.
    let (stranger, stranger_public) = signer(9);
    let forged = checkpoint(&stranger, &stranger_public, last.seq, &last.head);
    env.write("stranger.json", forged.to_string());
    verify_with_checkpoints(&env, &["stranger.json"])
        .status(1)
        .stdout_lacks("ok:")
        .stderr_contains("not by the trusted key");

    // Someone deletes the last records. The chain alone still looks whole...
    let cut_to = last.seq - 2;
    let deleted = db
        .execute("DELETE FROM audit WHERE seq > ?1", [cut_to])
        .unwrap();
    assert!(deleted >= 3, "{deleted}");
    drop(db);
    env.tandem(["audit", "verify"])
        .success()
        .stdout_contains(&format!("ok: {cut_to} records"));
    // ...but not against the witness's checkpoints.
    verify_with_checkpoints(&env, &["internal-witness.jsonl"])
        .status(1)
        .stdout_lacks("ok:")
        .stderr_contains(&format!(
            "log ends at seq {cut_to} but checkpoint covers {}",
            last.seq
        ));
}

#[test]
fn a_provider_auditors_export_holds_no_internal_run_and_verifies_against_a_checkpoint() {
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::local("web1", "internal"))
            .host(HostSpec::local("mon1", "provider"))
            .user("petra", "provider", &["auditor"])
            .to_yaml(),
    );
    hello_runbook(&env, "inside", "internal", "web1", "internal-only-word");
    hello_runbook(&env, "outside", "provider", "mon1", "provider-word");
    let daemon = Daemon::start(&env);
    let inside = run_to_end(&daemon, "alice", "inside", json!({}));
    assert_eq!(inside["status"], "succeeded", "{inside}");
    let outside = run_to_end(&daemon, "paula", "outside", json!({}));
    assert_eq!(outside["status"], "succeeded", "{outside}");
    let inside_id = inside["id"].as_str().unwrap();

    // A checkpoint signed now, while the daemon runs, by the command line.
    let cp = env.tandem(["audit", "checkpoint"]);
    cp.success();
    let cp_file = env.write("checkpoint.json", &cp.stdout);
    let checkpoint: Checkpoint = serde_json::from_str(cp.stdout.trim()).unwrap();
    let key = env.tandem(["audit", "key"]);
    assert_eq!(key.stdout.trim(), checkpoint.key);

    // The provider's auditor fetches its view over the API.
    let export = env
        .command()
        .args(["audit", "export", "--server", daemon.url(), "--token"])
        .arg(token("petra"))
        .run();
    export.success();
    let text = &export.stdout;
    assert!(!text.contains("internal-only-word"), "{text}");
    assert!(
        !text.contains(inside_id),
        "the internal run's id leaked:\n{text}"
    );
    assert!(text.contains("provider-word"), "{text}");
    assert!(text.contains(r#""redacted":true"#), "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for r in lines.iter().filter(|r| r["redacted"] == true) {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["hash", "prev_hash", "redacted", "seq"], "{r}");
    }
    let redacted = lines.iter().filter(|r| r["redacted"] == true).count();
    assert!(redacted >= 3, "{text}");
    assert!(checkpoint.seq as usize <= lines.len());

    // It verifies offline against the checkpoint and the published key.
    let file = env.write("provider-view.jsonl", text);
    env.command()
        .args(["audit", "verify", "--file"])
        .arg(&file)
        .arg("--checkpoint")
        .arg(&cp_file)
        .args(["--key", &checkpoint.key])
        .run()
        .success()
        .stdout_contains(&format!(
            "ok: {} records ({redacted} redacted), head ",
            lines.len()
        ));

    // The internal auditor sees the internal run in full and the provider's run redacted.
    let (status, view) = daemon.get("/api/v1/audit?after=0&limit=10000", &token("audrey"));
    assert_eq!(status, 200, "{view}");
    let view = view.to_string();
    assert!(view.contains("internal-only-word"), "{view}");
    assert!(!view.contains("provider-word"), "{view}");
}

#[test]
fn a_failing_witness_is_retried_with_backoff_audited_and_never_holds_up_a_run() {
    let flaky = HttpStub::with_statuses(&[503, 200]);
    let down = HttpStub::with_statuses(&[500]);
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::local("web1", "internal"))
            .extra(&format!(
                "audit:\n  checkpoint_records: 1000\n  checkpoint_interval: 1s\n  witnesses:\n    \
                 - {{ party: internal, url: \"{}/flaky\" }}\n    \
                 - {{ party: provider, url: \"{}/down\" }}\n",
                flaky.url(),
                down.url()
            ))
            .to_yaml(),
    );
    hello_runbook(&env, "hello", "internal", "web1", "hello");
    let daemon = Daemon::start(&env);

    // Far fewer than 1000 records: the interval signs the checkpoint (over config_loaded).
    let first = wait_for(DELIVERY, "a checkpoint signed", || {
        events_seen_by(&daemon, "audrey", "checkpoint_signed")
            .into_iter()
            .next()
    });
    let first_seq = first["detail"]["seq"].clone();

    // While its deliveries are being retried, a run goes through at full speed.
    let started = std::time::Instant::now();
    let run = run_to_end(&daemon, "alice", "hello", json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the run waited for a witness"
    );

    // The receiver that is down got 5 attempts with doubling waits, then the failure was
    // audited; the flaky one took the second attempt.
    let failures = |daemon: &Daemon| events_seen_by(daemon, "audrey", "checkpoint_delivery_failed");
    let failed = wait_for(DELIVERY, "a failed delivery audited", || {
        failures(&daemon)
            .into_iter()
            .find(|r| r["detail"]["seq"] == first_seq)
    });
    assert_eq!(failed["detail"]["party"], "provider", "{failed}");
    assert_eq!(failed["detail"]["attempts"], 5, "{failed}");
    assert_eq!(failed["detail"]["error"], "HTTP 500", "{failed}");
    let tries: Vec<_> = down
        .requests_to("/down")
        .into_iter()
        .filter(|r| r.json()["seq"] == first_seq)
        .collect();
    assert_eq!(tries.len(), 5);
    for (pair, least) in tries.windows(2).zip([500u64, 1000, 2000, 4000]) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(least),
            "backoff {gap:?} < {least} ms"
        );
    }
    let delivered = events_seen_by(&daemon, "audrey", "checkpoint_delivered");
    let delivered = delivered
        .iter()
        .find(|r| r["detail"]["seq"] == first_seq)
        .unwrap_or_else(|| panic!("no delivery of the first checkpoint: {delivered:?}"));
    assert_eq!(delivered["detail"]["party"], "internal", "{delivered}");
    assert_eq!(delivered["detail"]["attempts"], 2, "{delivered}");

    // The run's records get their own checkpoint; the checkpoint records themselves do not
    // count towards another: once its deliveries have ended (over 7 s of 1 s intervals),
    // each checkpoint covers some record that is not about checkpoints.
    let finished = events_seen_by(&daemon, "audrey", "run_finished")[0]["seq"]
        .as_u64()
        .unwrap();
    let second = wait_for(DELIVERY, "a checkpoint over the run", || {
        events_seen_by(&daemon, "audrey", "checkpoint_signed")
            .into_iter()
            .find(|r| r["detail"]["seq"].as_u64() >= Some(finished))
    });
    wait_for(DELIVERY, "the second checkpoint's failure audited", || {
        failures(&daemon)
            .into_iter()
            .find(|r| r["detail"]["seq"] == second["detail"]["seq"])
    });
    let (status, all) = daemon.get("/api/v1/audit?after=0&limit=10000", &token("audrey"));
    assert_eq!(status, 200, "{all}");
    let all = all.as_array().unwrap().clone();
    let about_checkpoints = |r: &Value| r["event"].as_str().unwrap().starts_with("checkpoint_");
    let covered: Vec<u64> = all
        .iter()
        .filter(|r| r["event"] == "checkpoint_signed")
        .map(|r| r["detail"]["seq"].as_u64().unwrap())
        .collect();
    assert!(covered.len() >= 2, "{covered:?}");
    for pair in covered.windows(2) {
        assert!(
            all.iter().any(|r| {
                let seq = r["seq"].as_u64().unwrap();
                seq > pair[0] && seq <= pair[1] && !about_checkpoints(r)
            }),
            "checkpoint {} covers only checkpoint records: checkpoints begot checkpoints",
            pair[1]
        );
    }
}
