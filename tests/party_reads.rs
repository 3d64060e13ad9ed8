//! Rules 10 and 11 against the real daemon and a real sshd: each party sees only the runs
//! that concern it (every read endpoint and page, for three parties), the owner's approvers
//! and admins may cancel runs on what they own while another party's admin may not, and
//! the owner may freeze its hosts, which stops even a run already going. Also the API's
//! hygiene: `/metrics` needs a token, a bad query string is a JSON 400, and a browser
//! session ends when the user's token changes.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{
    token, token_sha256, unindent, wait_for, wait_until, Daemon, Env, HostSpec, Sshd,
    StandardConfig,
};
use crate::run_flow::{audit_events, audit_records, client, id_of, RUN_TIMEOUT};
use crate::web::{page_client, sign_in};

/// The third party of these tests: another vendor, with no hosts and no runbooks.
const THIRD: &str = "msp2";

/// Users besides the standard five: one admin per party, and the third party's people.
fn config(sshd: &Sshd) -> StandardConfig {
    StandardConfig::new()
        .party(THIRD)
        .host(HostSpec::ssh("web1", "internal", sshd).tags(&["web"]))
        .host(HostSpec::ssh("web2", "internal", sshd).tags(&["web"]))
        .host(HostSpec::ssh("mon1", "provider", sshd).tags(&["web"]))
        .user("ina", "internal", &["admin"])
        .user("pax", "provider", &["admin"])
        .user("tara", THIRD, &["operator"])
        .user("tom", THIRD, &["approver"])
        .user("tadmin", THIRD, &["admin"])
}

/// A runbook file: `owner`, `targets` (YAML list), the `extra` top-level YAML, and the rhai
/// `script`; scope `echo *`, `test *`, `touch *`.
fn runbook(env: &Env, name: &str, owner: &str, targets: &str, extra: &str, script: &str) {
    let mut yaml = unindent(&format!(
        "
        name: {name}
        owner: {owner}
        targets: {targets}
        scope:
          commands: [\"echo *\", \"test *\", \"touch *\"]
        timeout: 60s
        "
    ));
    for line in extra.lines() {
        yaml.push_str(line.trim());
        yaml.push('\n');
    }
    yaml.push_str("script: |\n");
    for line in script.lines() {
        yaml.push_str("  ");
        yaml.push_str(line.trim());
        yaml.push('\n');
    }
    env.write_runbook(&format!("{name}.yaml"), &yaml);
}

/// `POST /api/v1/runs` as `user`; asserts 201.
fn start(daemon: &Daemon, user: &str, body: Value) -> String {
    let (status, run) = daemon.post("/api/v1/runs", &token(user), &body);
    assert_eq!(status, 201, "{user} starting {body}: {run}");
    id_of(&run)
}

/// Waits until run `id`, read as `user`, has status `want`.
fn wait_status(daemon: &Daemon, user: &str, id: &str, want: &str) -> Value {
    wait_for(RUN_TIMEOUT, &format!("run {id} to be {want}"), || {
        let (status, run) = daemon.get(&format!("/api/v1/runs/{id}"), &token(user));
        assert_eq!(status, 200, "{user} reading {id}: {run}");
        (run["status"] == want).then_some(run)
    })
}

/// The error body of an unknown run: what any hidden run must answer too.
fn unknown(id: &str) -> Value {
    json!({"error": {"code": "not_found", "message": format!("unknown run `{id}`")}})
}

/// The ids of a JSON array of runs.
fn ids(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(id_of)
        .collect()
}

/// The `field` strings of a JSON array.
fn names(list: &Value, field: &str) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .filter_map(|x| x[field].as_str().map(str::to_string))
        .collect()
}

/// What one user's party should see.
struct Sees {
    user: &'static str,
    runs: BTreeSet<String>,
    approvals: BTreeSet<String>,
    reviews: BTreeSet<String>,
    schedules: BTreeSet<String>,
    runbooks: BTreeSet<String>,
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn rule10_each_party_sees_only_what_concerns_it_on_every_read() {
    let sshd = Sshd::start();
    let env = Env::new();
    env.write_config(&config(&sshd).to_yaml());
    let yearly = "schedule: { cron: \"0 3 1 1 *\" }";
    runbook(
        &env,
        "int-job",
        "internal",
        "[web1]",
        yearly,
        "// INT-SCRIPT-MARK\nlog(\"INT-LOG-MARK\");\nsh_ok(\"echo INT-OUT-MARK\");",
    );
    runbook(
        &env,
        "prov-job",
        "provider",
        "[mon1]",
        yearly,
        "// PROV-SCRIPT-MARK\nlog(\"PROV-LOG-MARK\");\nsh_ok(\"echo PROV-OUT-MARK\");",
    );
    runbook(
        &env,
        "cross",
        "provider",
        "[web1]",
        "",
        "// CROSS-SCRIPT-MARK\nsh_ok(\"echo CROSS-OUT-MARK\");",
    );
    runbook(
        &env,
        "prov-bg",
        "provider",
        "[mon1]",
        "emergency: true",
        "// BG-SCRIPT-MARK\nlog(\"BG-LOG-MARK\");",
    );
    let daemon = Daemon::start(&env);

    let int = start(&daemon, "alice", json!({"runbook": "int-job"}));
    wait_status(&daemon, "alice", &int, "succeeded");
    let prov = start(&daemon, "paula", json!({"runbook": "prov-job"}));
    wait_status(&daemon, "paula", &prov, "succeeded");
    let cross = start(&daemon, "paula", json!({"runbook": "cross"}));
    wait_status(&daemon, "paula", &cross, "awaiting_approval");
    let bg = start(
        &daemon,
        "paula",
        json!({"runbook": "prov-bg", "break_glass": true, "reason": "BG-REASON-MARK"}),
    );
    wait_status(&daemon, "paula", &bg, "succeeded");

    // What each run holds that only its parties may read.
    let secrets_of = |id: &str| -> Vec<String> {
        let marks: &[&str] = if id == int {
            &["INT-SCRIPT-MARK", "INT-LOG-MARK", "INT-OUT-MARK"]
        } else if id == prov {
            &["PROV-SCRIPT-MARK", "PROV-LOG-MARK", "PROV-OUT-MARK"]
        } else if id == cross {
            &["CROSS-SCRIPT-MARK"]
        } else {
            &["BG-SCRIPT-MARK", "BG-LOG-MARK", "BG-REASON-MARK"]
        };
        std::iter::once(id.to_string())
            .chain(marks.iter().map(|m| m.to_string()))
            .collect()
    };
    let all = [int.clone(), prov.clone(), cross.clone(), bg.clone()];
    let internal_runs = set(&[&int, &cross]);
    let provider_runs = set(&[&prov, &cross, &bg]);
    let internal = |user: &'static str, approvals: &[&str]| Sees {
        user,
        runs: internal_runs.clone(),
        approvals: set(approvals),
        reviews: BTreeSet::new(),
        schedules: set(&["int-job"]),
        runbooks: set(&["int-job", "cross"]),
    };
    let provider = |user: &'static str| Sees {
        user,
        runs: provider_runs.clone(),
        approvals: BTreeSet::new(),
        reviews: set(&[&bg]),
        schedules: set(&["prov-job"]),
        runbooks: set(&["prov-job", "cross", "prov-bg"]),
    };
    let third = |user: &'static str| Sees {
        user,
        runs: BTreeSet::new(),
        approvals: BTreeSet::new(),
        reviews: BTreeSet::new(),
        schedules: BTreeSet::new(),
        runbooks: BTreeSet::new(),
    };
    let cases = [
        internal("alice", &[]),
        internal("ivan", &[&cross]),
        internal("ina", &[]),
        provider("paula"),
        provider("pete"),
        provider("pax"),
        third("tara"),
        third("tadmin"),
    ];
    let pages = page_client();
    let mut leaks_checked = 0;
    for case in &cases {
        let (user, sees) = (case.user, &case.runs);
        let tok = token(user);
        // Bodies that name no run on request: they may hold only what the party sees.
        let mut bodies: Vec<String> = Vec::new();
        let mut get = |path: &str| -> Value {
            let (status, body) = daemon.get(path, &tok);
            assert_eq!(status, 200, "{user} GET {path}: {body}");
            bodies.push(body.to_string());
            body
        };
        assert_eq!(&ids(&get("/api/v1/runs")), sees, "{user}: runs");
        assert_eq!(
            ids(&get("/api/v1/approvals")),
            case.approvals,
            "{user}: approvals"
        );
        assert_eq!(
            ids(&get("/api/v1/reviews")),
            case.reviews,
            "{user}: reviews"
        );
        assert_eq!(
            names(&get("/api/v1/schedules"), "runbook"),
            case.schedules,
            "{user}: schedules"
        );
        assert_eq!(
            names(&get("/api/v1/runbooks"), "name"),
            case.runbooks,
            "{user}: runbooks"
        );
        for id in &all {
            if sees.contains(id) {
                get(&format!("/api/v1/runs/{id}"));
                get(&format!("/api/v1/runs/{id}/log"));
                if id != &cross {
                    let follow = get(&format!("/api/v1/runs/{id}/log?follow=1"));
                    assert!(
                        follow.to_string().contains("event: end"),
                        "{user}: {follow}"
                    );
                }
                continue;
            }
            // Hidden: every read and every decision answers as for an id that never existed.
            for path in [
                format!("/api/v1/runs/{id}"),
                format!("/api/v1/runs/{id}/log"),
                format!("/api/v1/runs/{id}/log?follow=1"),
            ] {
                let (status, body) = daemon.get(&path, &tok);
                assert_eq!((status, &body), (404, &unknown(id)), "{user} GET {path}");
            }
            for (action, body) in [
                ("approve", json!({})),
                ("deny", json!({"reason": "no"})),
                ("cancel", json!({})),
                ("review", json!({"comment": "seen"})),
            ] {
                let (status, body) =
                    daemon.post(&format!("/api/v1/runs/{id}/{action}"), &tok, &body);
                assert_eq!(
                    (status, &body),
                    (404, &unknown(id)),
                    "{user} POST {action} {id}"
                );
            }
        }

        // The web pages: the list, and each run page (404 for a hidden run).
        let (_, cookie) = sign_in(&pages, &daemon, user, "/approvals");
        let page = |path: &str| {
            let r = pages
                .get(format!("{}{path}", daemon.url()))
                .header("cookie", &cookie)
                .send()
                .expect("GET page");
            (r.status().as_u16(), r.text().expect("page text"))
        };
        let (status, list) = page("/approvals");
        assert_eq!(status, 200, "{user}: {list}");
        bodies.push(list);
        for id in &all {
            let (status, html) = page(&format!("/approvals/{id}"));
            if sees.contains(id) {
                assert_eq!(status, 200, "{user} page of {id}");
                bodies.push(html);
            } else {
                assert_eq!(status, 404, "{user} page of {id}: {html}");
                for s in secrets_of(id).iter().skip(1) {
                    assert!(!html.contains(s.as_str()), "{user} page of {id} shows {s}");
                }
            }
        }

        // Zero leaks: no body holds another party's run id, script, log or reason.
        for id in all.iter().filter(|id| !sees.contains(*id)) {
            for secret in secrets_of(id) {
                for body in &bodies {
                    assert!(
                        !body.contains(&secret),
                        "{user} saw `{secret}` of run {id}: {body}"
                    );
                    leaks_checked += 1;
                }
            }
        }
    }
    assert!(leaks_checked > 100, "{leaks_checked}");

    // An unknown id answers the same.
    let (status, body) = daemon.get("/api/v1/runs/00000000deadbeef", &token("alice"));
    assert_eq!((status, body), (404, unknown("00000000deadbeef")));

    // Paging a filtered list: pages are full, and a hidden cursor is unknown.
    let page_of = |user: &str, query: &str| -> Vec<String> {
        let (status, list) = daemon.get(&format!("/api/v1/runs?{query}"), &token(user));
        assert_eq!(status, 200, "{list}");
        list.as_array().unwrap().iter().map(id_of).collect()
    };
    assert_eq!(page_of("alice", "limit=1"), [cross.as_str()]);
    assert_eq!(
        page_of("alice", &format!("limit=1&before={cross}")),
        [int.as_str()]
    );
    assert!(page_of("alice", &format!("limit=1&before={int}")).is_empty());
    let (status, body) = daemon.get(&format!("/api/v1/runs?before={int}"), &token("pax"));
    assert_eq!((status, body), (404, unknown(&int)));

    // The CLI goes through the same API.
    client(&env, &daemon, "tara", &["--json", "runs"])
        .success()
        .stdout_lacks(&int)
        .stdout_lacks(&prov);
    client(&env, &daemon, "paula", &["show", &int])
        .status(1)
        .stderr_contains("unknown run");
}

#[test]
fn rule11_the_owner_and_the_initiator_cancel_nobody_else_does() {
    let sshd = Sshd::start();
    let env = Env::new();
    env.write_config(&config(&sshd).to_yaml());
    let script = "sh_ok(\"echo hi\");";
    // The provider's run on internal's host: it waits for internal's approval.
    runbook(&env, "cross", "provider", "[web1]", "", script);
    // The same, once approved, polling web1 over ssh until cancelled.
    runbook(
        &env,
        "cross-poll",
        "provider",
        "[web1]",
        "",
        "loop { sh(\"test -e /nonexistent-tandem-marker\"); sleep(0.2); }",
    );
    // Internal's run that asks the provider to approve: the provider sees it, owns nothing.
    runbook(
        &env,
        "asks-provider",
        "internal",
        "[web1]",
        "approval: { from: provider }",
        script,
    );
    // Internal's run on its own host, gated by itself: none of the provider's business.
    runbook(&env, "gated", "internal", "[web1]", "approval: {}", script);
    let daemon = Daemon::start(&env);
    let cancel = |user: &str, id: &str| -> (u16, Value) {
        daemon.post(
            &format!("/api/v1/runs/{id}/cancel"),
            &token(user),
            &json!({}),
        )
    };
    let denied_by = |id: &str| -> Vec<String> {
        audit_events(&daemon, Some(id), "cancel_denied")
            .iter()
            .map(|r| r["actor"]["user"].as_str().unwrap_or_default().to_string())
            .collect()
    };

    // The provider's run on internal's host.
    let cross = start(&daemon, "paula", json!({"runbook": "cross"}));
    let (status, body) = cancel("pete", &cross);
    assert_eq!(
        status, 403,
        "the initiating party's approver is no operator: {body}"
    );
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    let (status, body) = cancel("alice", &cross);
    assert_eq!(status, 403, "the owner's operator is no approver: {body}");
    let (status, body) = cancel("tadmin", &cross);
    assert_eq!(
        (status, body),
        (404, unknown(&cross)),
        "a third party's admin"
    );
    let (status, body) = cancel("ivan", &cross);
    assert_eq!(
        status, 200,
        "the owner's approver stops the provider's run: {body}"
    );
    assert_eq!(body["status"], "cancelled", "{body}");
    assert_eq!(denied_by(&cross), ["pete", "alice"]);
    let cross2 = start(&daemon, "paula", json!({"runbook": "cross"}));
    let (status, body) = cancel("pax", &cross2);
    assert_eq!(status, 200, "the initiating party's admin: {body}");

    // Internal's run the provider is asked to approve: visible to it, not its to stop.
    let asks = start(&daemon, "alice", json!({"runbook": "asks-provider"}));
    let (status, body) = cancel("pax", &asks);
    assert_eq!(status, 403, "the provider's admin: {body}");
    let (status, body) = cancel("pete", &asks);
    assert_eq!(status, 403, "the provider's approver: {body}");
    assert_eq!(denied_by(&asks), ["pax", "pete"]);
    let (status, body) = cancel("alice", &asks);
    assert_eq!(status, 200, "its own operator: {body}");

    // A provider run going on internal's host: internal's approver stops it mid-run.
    let poll = start(&daemon, "paula", json!({"runbook": "cross-poll"}));
    let (status, body) = daemon.post(
        &format!("/api/v1/runs/{poll}/approve"),
        &token("ivan"),
        &json!({}),
    );
    assert_eq!(status, 200, "{body}");
    wait_until(RUN_TIMEOUT, "the run to poll web1", || {
        !audit_events(&daemon, Some(&poll), "action_result").is_empty()
    });
    let (status, body) = cancel("pete", &poll);
    assert_eq!(status, 403, "{body}");
    let (status, body) = cancel("ina", &poll);
    assert_eq!(status, 200, "the owner's admin: {body}");
    wait_status(&daemon, "paula", &poll, "cancelled");

    // Internal's own business: the provider's admin does not even see it.
    let gated = start(&daemon, "alice", json!({"runbook": "gated"}));
    for user in ["pax", "pete", "tadmin"] {
        let (status, body) = cancel(user, &gated);
        assert_eq!((status, body), (404, unknown(&gated)), "{user}");
    }
    assert!(
        denied_by(&gated).is_empty(),
        "a hidden run leaves no trace of the probe"
    );
    let (status, body) = cancel("ina", &gated);
    assert_eq!(status, 200, "internal's admin: {body}");
}

#[test]
fn rule11_a_freeze_stops_a_running_run_survives_a_restart_and_only_the_owner_lifts_it() {
    let sshd = Sshd::start();
    let env = Env::new();
    env.write_config(&config(&sshd).to_yaml());
    let dir = env.path().join("marks");
    std::fs::create_dir_all(&dir).unwrap();
    let go = dir.join("go");
    // Polls for `go` over ssh, then leaves `done-<run id>`.
    runbook(
        &env,
        "cross-loop",
        "provider",
        "[web1]",
        "",
        &format!(
            "let dir = {dir:?};\n\
             loop {{ if sh(\"test -e \" + quote(dir + \"/go\")).code == 0 {{ break; }} sleep(0.2); }}\n\
             sh_ok(\"touch \" + quote(dir + \"/done-\" + run_id));",
            dir = dir.to_string_lossy()
        ),
    );
    let mut daemon = Daemon::start(&env);
    let freeze = |daemon: &Daemon, user: &str, targets: Value| {
        daemon.post(
            "/api/v1/freezes",
            &token(user),
            &json!({"targets": targets, "reason": "incident 42"}),
        )
    };
    let lift = |daemon: &Daemon, user: &str, targets: Value| {
        daemon.post(
            "/api/v1/freezes/lift",
            &token(user),
            &json!({"targets": targets}),
        )
    };
    let frozen_hosts = |daemon: &Daemon, user: &str| -> BTreeSet<String> {
        let (status, list) = daemon.get("/api/v1/freezes", &token(user));
        assert_eq!(status, 200, "{list}");
        names(&list, "host")
    };
    let approved_run = |daemon: &Daemon| -> String {
        let id = start(daemon, "paula", json!({"runbook": "cross-loop"}));
        let (status, body) = daemon.post(
            &format!("/api/v1/runs/{id}/approve"),
            &token("ivan"),
            &json!({}),
        );
        assert_eq!(status, 200, "{body}");
        id
    };

    // A provider run on internal's web1, polling.
    let id = approved_run(&daemon);
    wait_until(RUN_TIMEOUT, "the run to poll web1 twice", || {
        audit_events(&daemon, Some(&id), "action_result").len() >= 2
    });

    // Nobody but internal's approvers and admins freezes web1.
    for user in ["pete", "pax", "paula", "alice", "tom"] {
        let (status, body) = freeze(&daemon, user, json!(["web1"]));
        assert_eq!(status, 403, "{user}: {body}");
    }
    let (status, body) = freeze(&daemon, "tadmin", json!(["all"]));
    assert_eq!(status, 422, "msp2 owns nothing to freeze: {body}");
    let refusals = audit_events(&daemon, None, "freeze_denied");
    assert_eq!(refusals.len(), 5, "{refusals:?}");
    assert!(frozen_hosts(&daemon, "ivan").is_empty());

    // Internal freezes web1: the running run's next action is refused.
    let (status, body) = freeze(&daemon, "ivan", json!(["web1"]));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["frozen"], json!(["web1"]), "{body}");
    std::fs::write(&go, "").unwrap();
    let run = wait_status(&daemon, "paula", &id, "failed");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("frozen:"), "{run}");
    assert!(
        !dir.join(format!("done-{id}")).exists(),
        "the command after the freeze ran"
    );
    let refused = audit_events(&daemon, Some(&id), "action_frozen");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["detail"]["host"], "web1");
    let records = audit_records(&daemon);
    let frozen_at = records
        .iter()
        .position(|r| r["event"] == "host_frozen")
        .expect("host_frozen audited");
    assert!(
        !records[frozen_at..]
            .iter()
            .any(|r| r["run_id"] == id.as_str() && r["event"] == "action_intent"),
        "an action was intended on web1 after the freeze"
    );

    // A new run on web1 is refused at once; the provider may not lift the freeze.
    let (status, body) = daemon.post(
        "/api/v1/runs",
        &token("paula"),
        &json!({"runbook": "cross-loop"}),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("frozen:"),
        "{body}"
    );
    for user in ["pete", "pax"] {
        let (status, body) = lift(&daemon, user, json!(["web1"]));
        assert_eq!(status, 403, "{user}: {body}");
    }
    assert!(
        frozen_hosts(&daemon, "pete").is_empty(),
        "the provider lists only its own freezes"
    );

    // The freeze survives a restart, in the list and in force.
    daemon.sigterm();
    assert_eq!(
        daemon.wait_exit(RUN_TIMEOUT),
        Some(0),
        "{}",
        daemon.stderr()
    );
    daemon = Daemon::start(&env);
    assert_eq!(frozen_hosts(&daemon, "ivan"), set(&["web1"]));
    let (status, body) = daemon.post(
        "/api/v1/runs",
        &token("paula"),
        &json!({"runbook": "cross-loop"}),
    );
    assert_eq!(status, 409, "{body}");

    // The CLI: a tag freezes internal's hosts with it, never the provider's mon1.
    let out = client(
        &env,
        &daemon,
        "ina",
        &["freeze", "tag:web", "--reason", "patch freeze"],
    );
    out.success()
        .stdout_contains("frozen: web2")
        .stdout_contains("already frozen: web1");
    client(&env, &daemon, "ivan", &["frozen"])
        .success()
        .stdout_contains("web1")
        .stdout_contains("web2")
        .stdout_lacks("mon1");
    client(&env, &daemon, "pete", &["unfreeze", "web2"])
        .status(1)
        .stderr_contains("403");
    client(&env, &daemon, "ivan", &["unfreeze", "all"])
        .success()
        .stdout_contains("unfrozen: web1")
        .stdout_contains("unfrozen: web2");
    assert!(frozen_hosts(&daemon, "ivan").is_empty());
    assert_eq!(audit_events(&daemon, None, "host_unfrozen").len(), 2);

    // Unfrozen, a run goes through.
    let id = approved_run(&daemon);
    wait_status(&daemon, "paula", &id, "succeeded");
    assert!(dir.join(format!("done-{id}")).exists());
}

#[test]
fn api_hygiene_metrics_need_a_token_query_errors_are_json_sessions_follow_the_token() {
    let env = Env::new();
    let standard = StandardConfig::new().host(HostSpec::local("web1", "internal"));
    env.write_config(&standard.to_yaml());
    let daemon = Daemon::start(&env);

    let (status, body) = daemon.get("/metrics", "");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let (status, body) = daemon.get("/metrics", &token("alice"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.as_str()
            .unwrap_or_default()
            .contains("tandem_audit_records"),
        "{body}"
    );

    for (path, user) in [
        ("/api/v1/runs?limit=abc", "alice"),
        ("/api/v1/audit?after=-1", "audrey"),
        ("/api/v1/schedules?count=many", "alice"),
        ("/api/v1/runs/x/log?after=soon", "alice"),
    ] {
        let (status, body) = daemon.get(path, &token(user));
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
    }

    let (status, body) = daemon.get("/api/v1/runs/%FF/log", &token("alice"));
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("bad_request")),
        "{body}"
    );
    let (status, body) = daemon.post("/api/v1/runbooks", &token("alice"), &json!({}));
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");

    // Sessions: alice's ends when the config gives her another token; ivan's goes on.
    let pages = page_client();
    let (_, alice) = sign_in(&pages, &daemon, "alice", "/approvals");
    let (_, ivan) = sign_in(&pages, &daemon, "ivan", "/approvals");
    let status_of = |cookie: &str| {
        pages
            .get(format!("{}/approvals", daemon.url()))
            .header("cookie", cookie)
            .send()
            .expect("GET /approvals")
            .status()
            .as_u16()
    };
    assert_eq!((status_of(&alice), status_of(&ivan)), (200, 200));
    let old = token_sha256(&token("alice"));
    let rotated = standard
        .to_yaml()
        .replace(&old, &token_sha256("tok-alice-rotated"));
    assert_ne!(rotated, standard.to_yaml());
    env.write_config(&rotated);
    std::process::Command::new("kill")
        .args(["-HUP", &daemon.pid().to_string()])
        .status()
        .expect("send SIGHUP");
    wait_until(Duration::from_secs(30), "alice's session to end", || {
        status_of(&alice) == 303
    });
    assert_eq!(
        status_of(&ivan),
        200,
        "an unchanged token keeps its session"
    );
}

#[test]
fn rule10_a_read_grant_lets_a_party_read_never_decide_or_cancel() {
    let sshd = Sshd::start();
    let env = Env::new();
    env.write_config(
        &config(&sshd)
            .extra("read_grants:\n  - { party: msp2, reads: provider }\n")
            .to_yaml(),
    );
    let yearly = "schedule: { cron: \"0 3 1 1 *\" }";
    runbook(
        &env,
        "int-job",
        "internal",
        "[web1]",
        yearly,
        "sh_ok(\"echo INT-OUT-MARK\");",
    );
    runbook(
        &env,
        "prov-job",
        "provider",
        "[mon1]",
        yearly,
        "sh_ok(\"echo PROV-OUT-MARK\");",
    );
    runbook(
        &env,
        "cross",
        "provider",
        "[web1]",
        "",
        "sh_ok(\"echo hi\");",
    );
    let daemon = Daemon::start(&env);
    let int = start(&daemon, "alice", json!({"runbook": "int-job"}));
    wait_status(&daemon, "alice", &int, "succeeded");
    let prov = start(&daemon, "paula", json!({"runbook": "prov-job"}));
    wait_status(&daemon, "paula", &prov, "succeeded");
    let cross = start(&daemon, "paula", json!({"runbook": "cross"}));

    // msp2 reads the provider's runs (and the cross run, which concerns the provider)...
    let (status, list) = daemon.get("/api/v1/runs", &token("tara"));
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list), set(&[&prov, &cross]));
    let (status, log) = daemon.get(&format!("/api/v1/runs/{prov}/log"), &token("tara"));
    assert_eq!(status, 200, "{log}");
    assert!(log.to_string().contains("PROV-OUT-MARK"), "{log}");
    let (status, body) = daemon.get(&format!("/api/v1/runs/{int}"), &token("tara"));
    assert_eq!((status, body), (404, unknown(&int)), "internal's own run");
    let (status, list) = daemon.get("/api/v1/schedules", &token("tara"));
    assert_eq!(
        names(&list, "runbook"),
        set(&["prov-job"]),
        "{status} {list}"
    );

    // ...but decides and stops nothing.
    let (status, body) = daemon.post(
        &format!("/api/v1/runs/{cross}/cancel"),
        &token("tadmin"),
        &json!({}),
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = daemon.post(
        &format!("/api/v1/runs/{cross}/approve"),
        &token("tom"),
        &json!({}),
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = daemon.post(
        "/api/v1/freezes",
        &token("tadmin"),
        &json!({"targets": ["mon1"], "reason": "no"}),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        wait_status(&daemon, "paula", &cross, "awaiting_approval")["status"],
        "awaiting_approval"
    );

    // A schedule the caller may not see is unknown to a standing approval too.
    for user in ["tom", "pete"] {
        let (status, body) = daemon.post(
            "/api/v1/schedules/int-job/standing",
            &token(user),
            &json!({"for": "1d"}),
        );
        assert_eq!(status, 404, "{user}: {body}");
    }
}
