use std::collections::BTreeSet;

use super::*;
use crate::config::SecretSource;

fn secrets() -> BTreeMap<String, SecretSource> {
    let mut m = BTreeMap::new();
    m.insert(
        "am".to_string(),
        SecretSource {
            env: Some("AM".into()),
            file: None,
            owner: "provider".into(),
        },
    );
    m
}

fn load(yaml: &str) -> (Vec<Trigger>, Vec<String>) {
    let raw: Vec<RawTrigger> = serde_yaml::from_str(yaml).unwrap();
    let parties: BTreeSet<&str> = ["internal", "provider"].into_iter().collect();
    let mut errors = Vec::new();
    let t = validate(raw, &parties, &secrets(), &mut |f, _, m| {
        errors.push(format!("{f}: {m}"))
    });
    (t, errors)
}

fn trigger(extra: &str) -> Trigger {
    let (mut t, e) = load(&format!(
        "- name: iso\n  party: provider\n  runbook: isolate\n  auth: {{hmac: {{secret: am}}}}\n{extra}"
    ));
    assert!(e.is_empty(), "{e:?}");
    t.remove(0)
}

fn payload() -> Value {
    let alert = |host: &str, status: &str, fp: &str| {
        json!({"status": status, "labels": {"alertname": "Ransomware", "instance": host, "severity": "critical"},
               "annotations": {"summary": format!("ransomware on {host}")}, "fingerprint": fp,
               "startsAt": "2026-01-01T03:00:00Z"})
    };
    json!({"version": "4", "status": "firing", "groupKey": "{}:{alertname=\"Ransomware\"}",
           "commonLabels": {"alertname": "Ransomware", "severity": "critical"},
           "commonAnnotations": {},
           "alerts": [alert("web1", "firing", "f1"), alert("web2", "firing", "f2"),
                      alert("db1", "firing", "f3"), alert("web3", "resolved", "f4")]})
}

#[test]
fn hmac_matches_rfc_4231() {
    // Test cases 1 and 2 of RFC 4231.
    assert_eq!(
        hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // Case 6: a key longer than the block is hashed first.
    assert_eq!(
        hex::encode(hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn signed_requests_are_checked_for_signature_time_and_form() {
    let t = trigger("");
    let body = br#"{"alerts":[]}"#;
    let secret = |_: &str| Some(crate::config::SecretValue::for_test("s3cret"));
    let now = 1_800_000_000;
    let check = |ts: &str, sig: &str| {
        let (ts, sig) = (ts.to_string(), sig.to_string());
        authenticate(
            &t,
            &move |h: &str| match h {
                "X-Tandem-Timestamp" => Some(ts.clone()),
                "X-Tandem-Signature" => Some(sig.clone()),
                _ => None,
            },
            body,
            &secret,
            now,
        )
    };
    let good = sign(b"s3cret", &now.to_string(), body);
    assert!(check(&now.to_string(), &good).is_ok());
    // Tampered body, wrong key, wrong timestamp under the signature: one answer.
    let wrong = sign(b"other", &now.to_string(), body);
    assert_eq!(
        check(&now.to_string(), &wrong),
        Err(AuthFailure::Denied("bad_signature"))
    );
    assert_eq!(
        check(&(now + 1).to_string(), &good),
        Err(AuthFailure::Denied("bad_signature"))
    );
    assert_eq!(
        check(&now.to_string(), "nothex"),
        Err(AuthFailure::Denied("missing_signature"))
    );
    // A good signature over an old timestamp is stale.
    let old = (now - 301).to_string();
    assert_eq!(
        check(&old, &sign(b"s3cret", &old, body)),
        Err(AuthFailure::Stale)
    );
    let edge = (now - 300).to_string();
    assert!(check(&edge, &sign(b"s3cret", &edge, body)).is_ok());
}

#[test]
fn bearer_tokens_compare_hashes() {
    let hash = crate::audit::sha256_hex(b"tok");
    let (mut t, e) = load(&format!(
        "- name: b\n  party: internal\n  runbook: r\n  auth: {{bearer: {{token_sha256: {hash}}}}}\n"
    ));
    assert!(e.is_empty(), "{e:?}");
    let t = t.remove(0);
    let none = |_: &str| None;
    let with = |v: &'static str| move |h: &str| (h == "authorization").then(|| v.to_string());
    assert!(authenticate(&t, &with("Bearer tok"), b"", &none, 0).is_ok());
    assert_eq!(
        authenticate(&t, &with("Bearer nope"), b"", &none, 0),
        Err(AuthFailure::Denied("bad_token"))
    );
    assert_eq!(
        authenticate(&t, &|_: &str| None, b"", &none, 0),
        Err(AuthFailure::Denied("missing_token"))
    );
}

#[test]
fn one_run_per_firing_alert_with_labels_as_params_and_targets() {
    let t = trigger(
        "  match: {labels: {alertname: Ransomware}}\n  params: {reason: 'annotation:summary', severity: 'label:severity'}\n  targets: 'label:instance'\n  ref: 'label:alertname'\n",
    );
    let runs = evaluate(&t, &payload()).unwrap();
    // The resolved alert does not match `status: firing`.
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].limit, vec!["web1"]);
    assert_eq!(runs[0].limit_field, "/alerts/0/labels/instance");
    assert_eq!(runs[0].key, "f1");
    assert_eq!(runs[2].params["reason"], "ransomware on db1");
    assert_eq!(runs[2].params["severity"], "critical");
    assert_eq!(runs[1].context["alertname"], "Ransomware");
    assert_eq!(runs[1].context["summary"], "ransomware on web2");
    assert_eq!(runs[1].context["ref"], "Ransomware");
}

#[test]
fn one_run_per_group_targets_every_matching_alert() {
    let t = trigger(
        "  per: group\n  params: {severity: 'label:severity'}\n  targets: 'label:instance'\n",
    );
    let runs = evaluate(&t, &payload()).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].limit, vec!["web1", "web2", "db1"]);
    assert_eq!(runs[0].params["severity"], "critical");
    assert_eq!(runs[0].key, "{}:{alertname=\"Ransomware\"}");
}

#[test]
fn a_resolved_notification_matches_nothing_and_a_missing_label_is_named() {
    let t = trigger("  targets: 'label:instance'\n");
    let mut p = payload();
    p["alerts"] = json!([p["alerts"][3].clone()]);
    assert!(evaluate(&t, &p).unwrap().is_empty());
    let t = trigger("  params: {reason: 'label:nope'}\n");
    let e = evaluate(&t, &payload()).unwrap_err();
    assert_eq!(e.field, "/alerts/0/labels/nope");
    let e = evaluate(&t, &json!({"alerts": 3})).unwrap_err();
    assert_eq!(e.field, "/alerts");
}

#[test]
fn generic_payloads_match_and_map_by_pointer() {
    let (mut t, e) = load(
        "- name: g\n  party: provider\n  runbook: r\n  format: generic\n  auth: {hmac: {secret: am}}\n  match: {pointers: {/kind: ransomware, /score: 9}}\n  params: {reason: /detail/title}\n  targets: /detail/hosts\n  dedup: {key: /id}\n",
    );
    assert!(e.is_empty(), "{e:?}");
    let t = t.remove(0);
    let body = json!({"kind": "ransomware", "score": 9, "id": "A-1", "detail": {"title": "bad", "hosts": ["web1", "tag:db"]}});
    let runs = evaluate(&t, &body).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].limit, vec!["web1", "tag:db"]);
    assert_eq!(runs[0].key, "A-1");
    assert_eq!(runs[0].params["reason"], "bad");
    assert!(evaluate(&t, &json!({"kind": "phish"})).unwrap().is_empty());
    let e = evaluate(
        &t,
        &json!({"kind": "ransomware", "score": "9", "detail": {"title": "x", "hosts": 5}}),
    )
    .unwrap_err();
    assert_eq!(e.field, "/detail/hosts");
}

#[test]
fn config_mistakes_are_named_by_field_path() {
    let (_, e) = load(
        "- name: 'a b'\n  party: nobody\n  runbook: r\n  auth: {hmac: {secret: missing, tolerance: soon}}\n  params: {x: 'instance'}\n  rate_limit: {runs: 0}\n\
         - name: c\n  party: internal\n  runbook: r\n  auth: {hmac: {secret: am}}\n\
         - name: d\n  party: internal\n  runbook: r\n  format: generic\n  auth: {bearer: {token_sha256: xyz}}\n  params: {x: 'label:a'}\n\
         - name: e\n  party: internal\n  runbook: r\n  auth: {}\n",
    );
    let e = e.join("\n");
    for want in [
        "triggers[0].name: a trigger name is",
        "triggers[0].party: unknown party `nobody`",
        "triggers[0].auth.hmac.secret: unknown secret `missing`",
        "triggers[0].auth.hmac.tolerance: `soon` is not a duration",
        "triggers[0].params.x: `instance` is not `label:NAME`",
        "triggers[0].rate_limit.runs: must be at least 1",
        "triggers[1].auth.hmac.secret: secret `am` is owned by `provider`",
        "triggers[2].auth.bearer.token_sha256: must be 64 hex digits",
        "triggers[2].params.x: a generic trigger reads JSON pointers",
        "triggers[3].auth: give exactly one of `hmac` or `bearer`",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
}

#[test]
fn guard_refuses_replays_remembers_alerts_and_limits_rate() {
    let t = trigger("  rate_limit: {runs: 2, per: 1m}\n  dedup: {window: 10m}\n");
    let mut g = Guard::default();
    let t0 = Instant::now();
    assert!(g.fresh_signature("iso", b"sig", Duration::from_secs(300), t0));
    assert!(!g.fresh_signature(
        "iso",
        b"sig",
        Duration::from_secs(300),
        t0 + Duration::from_secs(10)
    ));
    assert!(g.fresh_signature("other", b"sig", Duration::from_secs(300), t0));
    // After the window the cache forgets it; the timestamp check refuses it by then.
    assert!(g.fresh_signature(
        "iso",
        b"sig",
        Duration::from_secs(300),
        t0 + Duration::from_secs(601)
    ));

    assert_eq!(g.duplicate_of("iso", "f1", t0), None);
    assert!(g.within_rate(&t, t0));
    g.started(&t, "f1", "run1", t0);
    assert_eq!(
        g.duplicate_of("iso", "f1", t0 + Duration::from_secs(599)),
        Some(vec!["run1".into()])
    );
    assert!(g.within_rate(&t, t0));
    g.started(&t, "f2", "run2", t0);
    assert!(!g.within_rate(&t, t0 + Duration::from_secs(59)));
    assert!(g.within_rate(&t, t0 + Duration::from_secs(60)));
    assert_eq!(
        g.duplicate_of("iso", "f1", t0 + Duration::from_secs(600)),
        None
    );
}
