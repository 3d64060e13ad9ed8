//! Triggers (SPEC §9): Alertmanager and generic payloads posted by a real HTTP client to the
//! real daemon, signed (HMAC-SHA256 over `timestamp.body`) or not; refusals, repeated alerts, the
//! rate limit, cross-party approval and break-glass; `trigger test` offline; `run --limit`.
//! A real Alertmanager delivering to a trigger is in `trigger_alertmanager`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::approvals::{approve, ran, site_env, write_marker_runbook, SETTLE};
use crate::harness::{token, wait_for, Daemon, Env, HostSpec, StandardConfig};
use crate::run_flow::{audit_records, wait_final_as};

const INTERNAL_SECRET: &str = "int-hmac-secret-0123456789";
const PROVIDER_SECRET: &str = "prov-hmac-secret-9876543210";

/// HMAC-SHA256 (RFC 2104), written here independently of the daemon's.
fn hmac(key: &[u8], msg: &[u8]) -> String {
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let inner = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x36))
        .chain_update(msg)
        .finalize();
    let outer = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize();
    hex::encode(outer)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Posts `body` to trigger `name`, signed with `secret` at `ts` (signature overridable).
fn post_signed(
    daemon: &Daemon,
    name: &str,
    secret: &str,
    ts: i64,
    body: &[u8],
    signature: Option<&str>,
) -> (u16, Value) {
    let mut msg = ts.to_string().into_bytes();
    msg.push(b'.');
    msg.extend_from_slice(body);
    let sig = signature
        .map(str::to_string)
        .unwrap_or_else(|| format!("sha256={}", hmac(secret.as_bytes(), &msg)));
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/triggers/{name}", daemon.url()))
        .header("content-type", "application/json")
        .header("X-Tandem-Timestamp", ts.to_string())
        .header("X-Tandem-Signature", sig)
        .body(body.to_vec())
        .send()
        .expect("POST trigger");
    let status = response.status().as_u16();
    let text = response.text().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn fire(daemon: &Daemon, name: &str, secret: &str, body: &Value) -> (u16, Value) {
    post_signed(
        daemon,
        name,
        secret,
        now(),
        body.to_string().as_bytes(),
        None,
    )
}

/// One Alertmanager alert on `host`.
fn alert(host: &str, status: &str, fingerprint: &str) -> Value {
    json!({"status": status,
           "labels": {"alertname": "Ransomware", "instance": host, "severity": "critical",
                      "ticket": "INC-4242"},
           "annotations": {"summary": format!("ransomware behaviour on {host}")},
           "startsAt": "2026-12-02T03:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
           "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint})
}

/// An Alertmanager webhook (version 4) notification carrying `alerts`.
fn notification(status: &str, alerts: Vec<Value>) -> Value {
    json!({"version": "4", "groupKey": "{}:{alertname=\"Ransomware\"}", "truncatedAlerts": 0,
           "status": status, "receiver": "tandem", "groupLabels": {"alertname": "Ransomware"},
           "commonLabels": {"alertname": "Ransomware"}, "commonAnnotations": {},
           "externalURL": "http://alertmanager:9093", "alerts": alerts})
}

/// The site: internal hosts web1, web2, db1 (tag db); provider host mon1; an `isolate`
/// runbook on web1/web2/db1 startable by both parties, an emergency twin, and triggers.
fn site() -> (Env, Daemon) {
    site_with("")
}

/// [`site`] with more top-level YAML (a `notify:` target).
fn site_with(extra: &str) -> (Env, Daemon) {
    let config = StandardConfig::new()
        .host(HostSpec::local("web1", "internal"))
        .host(HostSpec::local("web2", "internal"))
        .host(HostSpec::local("db1", "internal").tags(&["db"]))
        .host(HostSpec::local("mon1", "provider"))
        .user("ines", "internal", &["approver"])
        .extra(&format!(
            "secrets:\n  int_hmac: {{file: int.secret, owner: internal}}\n  prov_hmac: {{file: prov.secret, owner: provider}}\n\
             triggers:\n\
             \x20 - name: iso\n    party: internal\n    runbook: isolate\n    auth: {{hmac: {{secret: int_hmac}}}}\n\
             \x20   match: {{labels: {{alertname: Ransomware}}}}\n    params: {{reason: 'annotation:summary'}}\n\
             \x20   targets: 'label:instance'\n    ref: 'label:ticket'\n    rate_limit: {{runs: 50, per: 1h}}\n\
             \x20 - name: iso-provider\n    party: provider\n    runbook: isolate\n    auth: {{hmac: {{secret: prov_hmac}}}}\n\
             \x20   params: {{reason: 'annotation:summary'}}\n    targets: 'label:instance'\n    ref: 'label:ticket'\n\
             \x20 - name: iso-glass\n    party: provider\n    runbook: isolate-now\n    auth: {{hmac: {{secret: prov_hmac}}}}\n\
             \x20   targets: 'label:instance'\n    break_glass: true\n\
             \x20 - name: iso-chain\n    party: internal\n    runbook: isolate-chained\n    auth: {{hmac: {{secret: int_hmac}}}}\n\
             \x20   targets: 'label:instance'\n    ref: 'label:ticket'\n\
             \x20 - name: burst\n    party: internal\n    runbook: isolate\n    format: generic\n\
             \x20   auth: {{bearer: {{token_sha256: {}}}}}\n    match: {{pointers: {{/kind: test}}}}\n\
             \x20   targets: /host\n    dedup: {{key: /id}}\n    rate_limit: {{runs: 2, per: 1h}}\n",
            crate::harness::token_sha256("burst-token")
        ))
        .extra(extra);
    let env = site_env(&config);
    env.write("int.secret", format!("{INTERNAL_SECRET}\n"));
    env.write("prov.secret", format!("{PROVIDER_SECRET}\n"));
    let params = "params:\n  reason: {type: string, default: none}\n";
    write_marker_runbook(&env, "isolate", "[web1, web2, tag:db]", params);
    write_marker_runbook(
        &env,
        "isolate-chained",
        "[web1, web2, tag:db]",
        "then:\n  - { runbook: isolate, when: succeeded }\n",
    );
    write_marker_runbook(
        &env,
        "isolate-now",
        "[web1, web2, tag:db]",
        "emergency: true\n",
    );
    let daemon = Daemon::start(&env);
    (env, daemon)
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().expect("id").to_string())
        .collect()
}

fn refusals(daemon: &Daemon) -> Vec<String> {
    audit_records(daemon)
        .into_iter()
        .filter(|r| r["event"] == "trigger_refused")
        .map(|r| {
            r["detail"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn a_firing_group_of_three_starts_three_runs_then_repeats_and_resolved_start_none() {
    let (env, daemon) = site();
    let body = notification(
        "firing",
        vec![
            alert("web1", "firing", "f1"),
            alert("web2", "firing", "f2"),
            alert("db1", "firing", "f3"),
        ],
    );
    let (status, out) = fire(&daemon, "iso", INTERNAL_SECRET, &body);
    assert_eq!(status, 202, "{out}");
    let started = ids(&out["started"]);
    assert_eq!(started.len(), 3, "{out}");
    for (id, host) in started.iter().zip(["web1", "web2", "db1"]) {
        let run = wait_final_as(&daemon, "alice", id, SETTLE);
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["initiator"]["user"], "trigger:iso", "{run}");
        assert_eq!(run["plan"]["limit"], json!([host]), "{run}");
        assert_eq!(run["hosts"].as_array().map(Vec::len), Some(1), "{run}");
        assert_eq!(
            run["plan"]["params"]["reason"],
            format!("ransomware behaviour on {host}")
        );
        assert_eq!(run["plan"]["trigger"]["ref"], "INC-4242");
        assert!(ran(&env, id, ""), "run {id} did not act on {host}");
    }

    // The same alerts again (a later timestamp, so a fresh signature): the existing runs,
    // 200, audited.
    let later = now() + 1;
    let (status, again) = post_signed(
        &daemon,
        "iso",
        INTERNAL_SECRET,
        later,
        body.to_string().as_bytes(),
        None,
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(ids(&again["runs"]), started);
    assert_eq!(ids(&again["started"]), Vec::<String>::new());
    let dedups: Vec<Value> = audit_records(&daemon)
        .into_iter()
        .filter(|r| r["event"] == "trigger_deduplicated")
        .collect();
    assert_eq!(dedups.len(), 3, "{dedups:?}");
    assert_eq!(dedups[0]["detail"]["key"], "f1");

    // Resolved: nothing matches `status: firing`; 200, nothing started, audited.
    let resolved = notification("resolved", vec![alert("web3", "resolved", "f9")]);
    let (status, out) = fire(&daemon, "iso", INTERNAL_SECRET, &resolved);
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["matched"], 0);
    assert!(refusals(&daemon).contains(&"no_match".to_string()));
    let accepted = audit_records(&daemon)
        .into_iter()
        .filter(|r| r["event"] == "trigger_accepted")
        .count();
    assert_eq!(accepted, 3);
}

#[test]
fn bad_signature_stale_timestamp_replay_and_unknown_trigger_are_refused_and_audited() {
    let (_env, daemon) = site();
    let mut a = alert("web1", "firing", "s1");
    // A secret-looking label in the body must not reach the audit log.
    a["labels"]["api_password"] = json!("hunter2-in-body");
    let body = notification("firing", vec![a]).to_string();
    let t = now();

    let (status, bad) = post_signed(
        &daemon,
        "iso",
        INTERNAL_SECRET,
        t,
        body.as_bytes(),
        Some(&format!("sha256={}", "0".repeat(64))),
    );
    assert_eq!(status, 401, "{bad}");
    // An unknown trigger answers exactly like a bad signature.
    let (status, unknown) = post_signed(&daemon, "nope", INTERNAL_SECRET, t, body.as_bytes(), None);
    assert_eq!(status, 401);
    assert_eq!(unknown, bad);
    // Signed with the other party's secret: also just a bad signature.
    let (status, _) = post_signed(&daemon, "iso", PROVIDER_SECRET, t, body.as_bytes(), None);
    assert_eq!(status, 401);

    let old = t - 301;
    let (status, stale) = post_signed(&daemon, "iso", INTERNAL_SECRET, old, body.as_bytes(), None);
    assert_eq!(status, 401, "{stale}");
    assert!(
        stale["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tolerance"),
        "{stale}"
    );

    let (status, ok) = post_signed(&daemon, "iso", INTERNAL_SECRET, t, body.as_bytes(), None);
    assert_eq!(status, 202, "{ok}");
    let (status, replay) = post_signed(&daemon, "iso", INTERNAL_SECRET, t, body.as_bytes(), None);
    assert_eq!(status, 409, "{replay}");

    // Not JSON, with a good signature: 400 naming the body.
    let (status, notjson) = post_signed(&daemon, "iso", INTERNAL_SECRET, t, b"{oops", None);
    assert_eq!(status, 400, "{notjson}");
    assert_eq!(notjson["error"]["field"], "");

    let reasons = refusals(&daemon);
    for want in [
        "bad_signature",
        "unknown_trigger",
        "stale_timestamp",
        "replayed",
        "bad_body",
    ] {
        assert!(
            reasons.contains(&want.to_string()),
            "{want} not in {reasons:?}"
        );
    }
    let log = serde_json::to_string(&audit_records(&daemon)).unwrap();
    assert!(!log.contains("hunter2-in-body"));
    assert!(!log.contains(INTERNAL_SECRET));
}

#[test]
fn an_unknown_host_label_is_refused_naming_the_field_and_nothing_starts() {
    let (_env, daemon) = site();
    // The second alert names a host that does not exist: the whole request is refused.
    let body = notification(
        "firing",
        vec![alert("web1", "firing", "u1"), alert("web9", "firing", "u2")],
    );
    let (status, out) = fire(&daemon, "iso", INTERNAL_SECRET, &body);
    assert_eq!(status, 422, "{out}");
    assert_eq!(out["error"]["field"], "/alerts/1/labels/instance", "{out}");
    assert!(out["error"]["message"].as_str().unwrap().contains("web9"));
    // A host that exists but is not among the runbook's targets: refused, not added.
    let body = notification("firing", vec![alert("mon1", "firing", "u3")]);
    let (status, out) = fire(&daemon, "iso", INTERNAL_SECRET, &body);
    assert_eq!(status, 422, "{out}");
    assert!(out["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not among"));
    let (_, runs) = daemon.get("/api/v1/runs", &token("alice"));
    assert_eq!(runs, json!([]));
    assert_eq!(
        refusals(&daemon)
            .iter()
            .filter(|r| *r == "bad_params")
            .count(),
        2
    );
}

#[test]
fn a_burst_past_the_rate_limit_is_429_and_audited() {
    let (_env, daemon) = site();
    let post = |id: &str| {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/api/v1/triggers/burst", daemon.url()))
            .bearer_auth("burst-token")
            .json(&json!({"kind": "test", "id": id, "host": "web1"}))
            .send()
            .expect("POST");
        r.status().as_u16()
    };
    let statuses: Vec<u16> = ["a", "b", "c", "d"].iter().map(|id| post(id)).collect();
    assert_eq!(statuses, vec![202, 202, 429, 429]);
    // A wrong token is refused like any bad credential.
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/triggers/burst", daemon.url()))
        .bearer_auth("tok-alice")
        .json(&json!({"kind": "test", "id": "e", "host": "web1"}))
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 401);
    let limited = audit_records(&daemon)
        .into_iter()
        .filter(|r| r["event"] == "trigger_rate_limited")
        .count();
    assert_eq!(limited, 2);
}

#[test]
fn a_provider_trigger_on_an_internal_host_waits_for_internal_approval_quoting_the_alert() {
    let hook = crate::harness::HttpStub::start();
    let (env, daemon) = site_with(&format!(
        "notify:\n  - name: hook\n    kind: webhook\n    url: \"{}/hook\"\n    events: [approval_requested]\n    parties: [internal]\n",
        hook.url()
    ));
    let body = notification("firing", vec![alert("web2", "firing", "p1")]);
    let payload = env.write("alert.json", body.to_string());

    // Offline first: what would it start?
    let offline = env.tandem([
        "trigger",
        "test",
        "iso-provider",
        "--payload",
        payload.to_str().unwrap(),
    ]);
    offline
        .success()
        .stdout_contains("web2 (owner internal)")
        .stdout_contains("waits for internal x1")
        .stdout_contains("INC-4242")
        .stdout_contains("reason = \"ransomware behaviour on web2\"");
    let json_out = env
        .command()
        .args(["--json", "trigger", "test", "iso-provider", "--payload"])
        .arg(&payload)
        .run();
    let planned = json_out.success().json();
    let offline_digest = planned["runs"][0]["digest"].as_str().unwrap().to_string();
    let bad = env.write(
        "bad.json",
        notification("firing", vec![alert("web9", "firing", "p0")]).to_string(),
    );
    env.tandem([
        "trigger",
        "test",
        "iso-provider",
        "--payload",
        bad.to_str().unwrap(),
    ])
    .status(2)
    .stderr_contains("field /alerts/0/labels/instance: target `web9` is not in the inventory");

    let (status, out) = fire(&daemon, "iso-provider", PROVIDER_SECRET, &body);
    assert_eq!(status, 202, "{out}");
    let id = ids(&out["started"]).remove(0);
    let run = crate::approvals::get_run(&daemon, &id);
    assert_eq!(run["status"], "awaiting_approval", "{run}");
    assert_eq!(run["initiator"]["user"], "trigger:iso-provider");
    assert_eq!(run["initiator"]["party"], "provider");
    assert_eq!(run["digest"], offline_digest.as_str());
    assert_eq!(run["plan"]["trigger"]["alertname"], "Ransomware");
    assert_eq!(
        run["plan"]["trigger"]["summary"],
        "ransomware behaviour on web2"
    );
    // Internal approvers are asked; the provider's are not.
    let (_, pending) = daemon.get("/api/v1/approvals", &token("ivan"));
    assert!(pending.to_string().contains(&id), "{pending}");
    let (_, theirs) = daemon.get("/api/v1/approvals", &token("pete"));
    assert!(!theirs.to_string().contains(&id), "{theirs}");
    // `show` quotes the alert for the approver.
    let show = crate::run_flow::client(&env, &daemon, "ivan", &["show", &id]);
    show.success()
        .stdout_contains("alert:      Ransomware (firing) via trigger iso-provider")
        .stdout_contains("summary:    ransomware behaviour on web2")
        .stdout_contains("ref:        INC-4242");
    // The internal approvers' prompt quotes the alert.
    let prompts = hook.wait_for_requests("/hook", 1, SETTLE);
    assert!(
        prompts[0]
            .text()
            .contains("alert Ransomware: ransomware behaviour on web2 (ref INC-4242)"),
        "{}",
        prompts[0].text()
    );
    // So does the approval page an approver opens from the prompt.
    let client = crate::web::page_client();
    let here = format!("/approvals/{id}");
    let (_, cookie) = crate::web::sign_in(&client, &daemon, "ivan", &here);
    let page = client
        .get(format!("{}{here}", daemon.url()))
        .header("cookie", cookie)
        .send()
        .expect("GET approval page")
        .text()
        .expect("page");
    for want in [
        "<h2>Alert</h2>",
        "Ransomware",
        "ransomware behaviour on web2",
        "INC-4242",
        "iso-provider",
    ] {
        assert!(
            page.contains(want),
            "{want:?} missing from the approval page"
        );
    }
    assert!(!ran(&env, &id, ""));
    let (status, decided) = approve(&daemon, "ivan", &id);
    assert_eq!(status, 200, "{decided}");
    let done = wait_final_as(&daemon, "ivan", &id, SETTLE);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(ran(&env, &id, ""));
}

#[test]
fn a_break_glass_trigger_runs_at_once_and_opens_the_owners_review() {
    let (env, daemon) = site();
    let body = notification("firing", vec![alert("db1", "firing", "g1")]);
    let (status, out) = fire(&daemon, "iso-glass", PROVIDER_SECRET, &body);
    assert_eq!(status, 202, "{out}");
    let id = ids(&out["started"]).remove(0);
    let run = wait_final_as(&daemon, "ivan", &id, SETTLE);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["break_glass"], true);
    assert!(
        run["reason"].as_str().unwrap().contains("iso-glass"),
        "{run}"
    );
    assert_eq!(run["review"]["status"], "open", "{run}");
    assert!(ran(&env, &id, ""));
    let (_, reviews) = daemon.get("/api/v1/reviews", &token("ivan"));
    assert!(reviews.to_string().contains(&id), "{reviews}");
    // The same runbook through a trigger without break_glass waits instead.
    let (status, out) = fire(
        &daemon,
        "iso-provider",
        PROVIDER_SECRET,
        &notification("firing", vec![alert("db1", "firing", "g2")]),
    );
    assert_eq!(status, 202, "{out}");
    let other = crate::approvals::get_run(&daemon, &ids(&out["started"])[0]);
    assert_eq!(other["status"], "awaiting_approval");
}

/// An alert's run chains into its follow-up: requested as the same trigger (so rule 1 and
/// the approvals are the trigger's party's), linked to its parent, carrying the alert's ref.
#[test]
fn a_triggered_run_starts_its_follow_up_as_the_trigger_with_the_alerts_ref() {
    let (env, daemon) = site();
    let body = notification("firing", vec![alert("web1", "firing", "c1")]);
    let (status, out) = fire(&daemon, "iso-chain", INTERNAL_SECRET, &body);
    assert_eq!(status, 202, "{out}");
    let id = ids(&out["started"]).remove(0);
    let parent = wait_final_as(&daemon, "ivan", &id, SETTLE);
    assert_eq!(parent["status"], "succeeded", "{parent}");
    assert_eq!(parent["ref"], "INC-4242", "{parent}");
    let child_id = wait_for(SETTLE, "the follow-up of the alert's run", || {
        let run = crate::run_flow::get_run_as(&daemon, "ivan", &id);
        run["children"][0].as_str().map(str::to_string)
    });
    let child = wait_final_as(&daemon, "ivan", &child_id, SETTLE);
    assert_eq!(child["status"], "succeeded", "{child}");
    assert_eq!(child["runbook"], "isolate", "{child}");
    assert_eq!(child["parent_run"], id.as_str(), "{child}");
    assert_eq!(child["initiator"]["user"], "trigger:iso-chain", "{child}");
    assert_eq!(child["ref"], "INC-4242", "{child}");
    assert!(ran(&env, &child_id, ""));
    let refused: Vec<Value> = audit_records(&daemon)
        .into_iter()
        .filter(|r| r["event"] == "chain_refused")
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
}

#[test]
fn trigger_config_mistakes_name_file_line_and_field() {
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::local("web1", "internal"))
            .extra(
                "secrets:\n  s: {file: s.secret, owner: internal}\ntriggers:\n  - name: t1\n    party: internal\n    runbook: missing\n    auth: {hmac: {secret: s}}\n  - name: t2\n    party: internal\n    runbook: missing\n    auth: {hmac: {secret: nope}}\n",
            )
            .to_yaml(),
    );
    std::fs::create_dir_all(env.path().join("runbooks")).unwrap();
    let out = env.tandem(["validate"]);
    out.status(2)
        .stderr_contains("triggers[1].auth.hmac.secret")
        .stderr_contains("unknown secret `nope`");
    assert!(out.stderr.contains("tandem.yaml:"), "{}", out.dump());
    // Once the config itself is sound, the runbook a trigger names must exist.
    env.write_config(
        &StandardConfig::new()
            .extra(
                "secrets:\n  s: {file: s.secret, owner: internal}\ntriggers:\n  - name: t1\n    party: internal\n    runbook: missing\n    auth: {hmac: {secret: s}}\n",
            )
            .to_yaml(),
    );
    env.tandem(["validate"])
        .status(2)
        .stderr_contains("triggers[0].runbook")
        .stderr_contains("unknown runbook `missing`");
    // A provider trigger on a runbook only internal's operators may start could never run.
    env.write_config(
        &StandardConfig::new()
            .extra(
                "secrets:\n  s: {file: s.secret, owner: provider}\ntriggers:\n  - name: t1\n    party: provider\n    runbook: mine\n    auth: {hmac: {secret: s}}\n    break_glass: true\n",
            )
            .to_yaml(),
    );
    env.write_runbook(
        "mine.yaml",
        "name: mine\nowner: internal\ntargets: []\nscope: {commands: []}\nscript: 'log(\"x\")'\n",
    );
    env.tandem(["validate"])
        .status(2)
        .stderr_contains("triggers[0].party")
        .stderr_contains("does not let operators of `provider` start it")
        .stderr_contains("triggers[0].break_glass");
}

#[test]
fn a_limit_narrows_the_run_changes_the_digest_and_cannot_widen_it() {
    let (env, daemon) = site();
    let start = |limit: Value| {
        daemon.post(
            "/api/v1/runs",
            &token("alice"),
            &json!({"runbook": "isolate", "limit": limit}),
        )
    };
    let (status, all) = start(json!([]));
    assert_eq!(status, 201, "{all}");
    let (status, db) = start(json!(["tag:db"]));
    assert_eq!(status, 201, "{db}");
    assert_ne!(all["digest"], db["digest"]);
    let hosts: Vec<&str> = db["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(hosts, vec!["db1"], "{db}");
    let (status, out) = start(json!(["mon1"]));
    assert_eq!(status, 422, "{out}");
    let (status, out) = start(json!(["nohost"]));
    assert_eq!(status, 422, "{out}");
    // The CLI flag.
    let cli = crate::run_flow::client(
        &env,
        &daemon,
        "alice",
        &["run", "isolate", "--limit", "web1,tag:db", "--json"],
    );
    let run = cli.success().json();
    assert_eq!(run["plan"]["limit"], json!(["web1", "tag:db"]), "{run}");
    wait_for(SETTLE, "the db-limited run to end", || {
        let r = crate::approvals::get_run(&daemon, db["id"].as_str().unwrap());
        (r["status"] == "succeeded").then_some(())
    });
}
