//! API errors (SPEC §7): every refusal is `{"error": {"code", "message"}}` with the status
//! that says why (400 bad body, 401 no caller, 403 not allowed, 404 unknown, 422 bad
//! params), and no message carries internals: no SQL, no panic, no path of the state.

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::harness::{token, unindent, Daemon, Env, StandardConfig};

/// A raw `POST` with `body` as is, for bodies that are not JSON.
fn post_raw(daemon: &Daemon, path: &str, user: &str, body: &str) -> (u16, Value) {
    let response = Client::new()
        .post(format!("{}{path}", daemon.url()))
        .bearer_auth(token(user))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Asserts the shape of an error answer and that its message reveals nothing internal.
fn assert_error(env: &Env, what: &str, got: (u16, Value), status: u16, code: &str) {
    let (got_status, body) = got;
    assert_eq!(got_status, status, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: {body}");
    let text = body.to_string();
    let state = env.path().join("state");
    for internal in [
        "rusqlite",
        "SQL",
        "sqlite",
        "panicked",
        "tandem.db",
        &state.display().to_string(),
        &env.path().display().to_string(),
    ] {
        assert!(
            !text.contains(internal),
            "{what}: the answer reveals {internal:?}: {body}"
        );
    }
}

#[test]
fn api_errors_have_the_right_status_and_reveal_no_internals() {
    let env = Env::new();
    env.write_config(&StandardConfig::new().to_yaml());
    env.write_runbook(
        "count.yaml",
        &unindent(
            r#"
            name: count
            owner: internal
            params:
              n: { type: int, default: 1 }
            timeout: 30s
            script: |
              log(`n is ${params.n}`);
            "#,
        ),
    );
    let daemon = Daemon::start(&env);
    let alice = token("alice");

    let cases: Vec<(&str, (u16, Value), u16, &str)> = vec![
        (
            "bad JSON body",
            post_raw(&daemon, "/api/v1/runs", "alice", "{\"runbook\": \"count\""),
            400,
            "bad_request",
        ),
        (
            "not an object",
            post_raw(&daemon, "/api/v1/runs", "alice", "[1, 2]"),
            400,
            "bad_request",
        ),
        (
            "unknown field",
            daemon.post(
                "/api/v1/runs",
                &alice,
                &json!({"runbook": "count", "bogus": true}),
            ),
            400,
            "bad_request",
        ),
        (
            "bad param type",
            daemon.post(
                "/api/v1/runs",
                &alice,
                &json!({"runbook": "count", "params": {"n": "abc"}}),
            ),
            422,
            "invalid",
        ),
        (
            "unknown param",
            daemon.post(
                "/api/v1/runs",
                &alice,
                &json!({"runbook": "count", "params": {"m": 1}}),
            ),
            422,
            "invalid",
        ),
        (
            "unknown runbook",
            daemon.post("/api/v1/runs", &alice, &json!({"runbook": "nosuch"})),
            404,
            "not_found",
        ),
        (
            "unknown run",
            daemon.get("/api/v1/runs/0123456789abcdef", &alice),
            404,
            "not_found",
        ),
        (
            "unknown run's log",
            daemon.get("/api/v1/runs/0123456789abcdef/log", &alice),
            404,
            "not_found",
        ),
        (
            "cancel of an unknown run",
            daemon.post("/api/v1/runs/0123456789abcdef/cancel", &alice, &json!({})),
            404,
            "not_found",
        ),
        (
            "run id with SQL in it",
            daemon.get("/api/v1/runs/x'%20OR%20'1'='1", &alice),
            404,
            "not_found",
        ),
        (
            "no token",
            daemon.post("/api/v1/runs", "", &json!({"runbook": "count"})),
            401,
            "unauthorized",
        ),
        (
            "unknown token",
            daemon.get("/api/v1/runs", "tok-mallory"),
            401,
            "unauthorized",
        ),
        (
            "audit log for an operator",
            daemon.get("/api/v1/audit", &alice),
            403,
            "forbidden",
        ),
        (
            "report over a date that is not one",
            daemon.get("/api/v1/report?from=2026-02-30&to=2026-03-01", &alice),
            400,
            "bad_request",
        ),
        (
            "report for no token",
            daemon.get("/api/v1/report", ""),
            401,
            "unauthorized",
        ),
    ];
    for (what, got, status, code) in cases {
        assert_error(&env, what, got, status, code);
    }

    // None of the refusals made a run.
    let (_, runs) = daemon.get("/api/v1/runs", &alice);
    assert_eq!(runs, json!([]));
    // And a well-formed request still works.
    let (status, run) = daemon.post(
        "/api/v1/runs",
        &alice,
        &json!({"runbook": "count", "params": {"n": 3}}),
    );
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["plan"]["params"]["n"], 3, "{run}");
}
