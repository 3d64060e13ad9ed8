//! Rule 9: a secret's value never appears in the audit log, run logs, API responses or
//! error messages. A planted value is used every way a script can use it (a command, its
//! output, `log()`, an HTTP query and header, a caught error, `fail()`, a scope
//! violation), and then looked for everywhere tandem stores or shows anything, down to the
//! raw bytes of the database.

use serde_json::{json, Value};

use crate::harness::{token, unindent, Daemon, Env, HostSpec, HttpStub, StandardConfig};
use crate::run_flow::{client, id_of, run_to_end, start_run, wait_final, RUN_TIMEOUT};

/// The planted value: distinctive enough that any occurrence is the leak.
const SECRET: &str = "Sekr1t-4f9a0c7e-planted";

/// The environment variable the config reads it from.
const SECRET_VAR: &str = "REDACT_TEST_API_TOKEN";

/// An env with local host `web1`, secret `api_token`, and the runbooks:
/// - `use-secret`: uses the secret every way it can, then fails mentioning it;
/// - `leak-scope`: puts the secret into an out-of-scope command;
/// - `env-probe`: a command that prints the daemon's environment variable, with no secret
///   in scope.
fn env_with_secret(stub: &HttpStub) -> Env {
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::local("web1", "internal"))
            .api("stub", &stub.url(), "internal")
            .extra(&format!(
                "secrets:\n  api_token: {{ env: {SECRET_VAR}, owner: internal }}\n"
            ))
            .to_yaml(),
    );
    let base = stub.url();
    env.write_runbook(
        "use-secret.yaml",
        &unindent(&format!(
            r#"
            name: use-secret
            owner: internal
            targets: [web1]
            scope:
              commands: ["echo *", "false *"]
              http: ["GET {base}/api/"]
              secrets: [api_token]
            timeout: 30s
            script: |
              let t = secret("api_token");
              let r = sh("echo token=" + t);
              log("stdout was " + r.stdout);
              log("the token is " + t);
              try {{ sh_ok("false " + t); }} catch (e) {{ log("caught: " + e); }}
              let h = http("GET", "{base}/api/check?key=" + t, (), #{{"Authorization": "Bearer " + t, "X-Token": t}});
              log(`http status ${{h.status}}`);
              fail("giving up with token " + t);
            "#
        )),
    );
    env.write_runbook(
        "leak-scope.yaml",
        &unindent(
            r#"
            name: leak-scope
            owner: internal
            targets: [web1]
            scope:
              commands: ["echo *"]
              secrets: [api_token]
            timeout: 30s
            script: |
              let t = secret("api_token");
              sh("cat " + t);
            "#,
        ),
    );
    env.write_runbook(
        "env-probe.yaml",
        &unindent(&format!(
            r#"
            name: env-probe
            owner: internal
            targets: [web1]
            scope:
              commands: ["printenv {SECRET_VAR}"]
            timeout: 30s
            script: |
              sh("printenv {SECRET_VAR}");
            "#
        )),
    );
    env
}

/// Asserts that `text` (from `place`) does not hold the secret.
fn assert_clean(place: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "the secret value leaked into {place}:\n{text}"
    );
}

/// Asserts that no file of the state folder holds the secret's bytes.
fn assert_state_clean(env: &Env) {
    let state = env.path().join("state");
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let found = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
        assert!(
            !found,
            "the secret value is in the raw bytes of {}",
            path.display()
        );
    }
}

/// Everything about a run that the API and the CLI show.
fn shown(env: &Env, daemon: &Daemon, id: &str) -> Vec<(String, String)> {
    let mut places = Vec::new();
    for path in [
        format!("/api/v1/runs/{id}"),
        format!("/api/v1/runs/{id}/log"),
        "/api/v1/runs".to_string(),
    ] {
        let (status, body) = daemon.get(&path, &token("alice"));
        assert_eq!(status, 200, "{path}: {body}");
        places.push((format!("GET {path}"), body.to_string()));
    }
    for args in [
        vec!["show", id, "--json"],
        vec!["show", id],
        vec!["logs", id],
        vec!["logs", id, "--json"],
        vec!["runs", "--json"],
    ] {
        let out = client(env, daemon, "alice", &args);
        out.success();
        places.push((
            format!("tandem {}", args.join(" ")),
            out.stdout + &out.stderr,
        ));
    }
    places
}

#[test]
fn secret_value_never_appears_in_logs_api_audit_errors_or_the_database() {
    let stub = HttpStub::start();
    let env = env_with_secret(&stub);
    let mut daemon = Daemon::start_with(&env, &[(SECRET_VAR, SECRET), ("TANDEM_LOG", "debug")]);

    // Through the CLI, which prints the log as it follows the run, and its final error.
    let out = client(&env, &daemon, "alice", &["run", "use-secret", "--wait"]);
    out.status(1);
    assert_clean(
        "the output of `tandem run --wait`",
        &(out.stdout.clone() + &out.stderr),
    );
    out.stdout_contains("[redacted]");
    let id = out.stdout.split_whitespace().nth(1).unwrap().to_string();

    let run = wait_final(&daemon, &id, RUN_TIMEOUT);
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("giving up with token [redacted]"), "{run}");

    // The secret was really used: the command echoed it and the server received it.
    let requests = stub.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].path, format!("/api/check?key={SECRET}"));
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert_eq!(requests[0].header("x-token"), Some(SECRET));
    let lines: Vec<Value> =
        serde_json::from_str(&client(&env, &daemon, "alice", &["logs", &id, "--json"]).stdout)
            .unwrap();
    let texts: Vec<&str> = lines.iter().filter_map(|l| l["line"].as_str()).collect();
    assert!(texts.contains(&"token=[redacted]"), "{texts:?}");
    assert!(texts.contains(&"the token is [redacted]"), "{texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("caught: ")), "{texts:?}");

    // A scope violation whose command holds the secret: the refusal is redacted too.
    let leak = run_to_end(&daemon, "alice", "leak-scope", json!({}));
    assert_eq!(leak["status"], "failed", "{leak}");
    assert!(leak["error"]
        .as_str()
        .unwrap_or_default()
        .starts_with("scope_violation"));

    for run_id in [id.clone(), id_of(&leak)] {
        for (place, text) in shown(&env, &daemon, &run_id) {
            assert_clean(&place, &text);
        }
    }
    let (status, audit) = daemon.get("/api/v1/audit", &token("audrey"));
    assert_eq!(status, 200);
    assert_clean("GET /api/v1/audit", &audit.to_string());
    let export = env.tandem(["audit", "export"]);
    export.success();
    assert!(export.stdout.contains("scope_denied"), "{}", export.stdout);
    assert_clean("tandem audit export", &export.stdout);
    assert_state_clean(&env);

    daemon.sigterm();
    assert_eq!(
        daemon.wait_exit(std::time::Duration::from_secs(20)),
        Some(0)
    );
    assert_clean("the daemon's standard error", &daemon.stderr());
    assert_clean("the daemon's standard output", &daemon.stdout());
    // After the daemon checkpointed and closed the database.
    assert_state_clean(&env);
}

#[test]
fn secret_source_in_the_daemon_environment_does_not_reach_run_logs() {
    let stub = HttpStub::start();
    let env = env_with_secret(&stub);
    let daemon = Daemon::start_with(&env, &[(SECRET_VAR, SECRET)]);

    // `env-probe` has no secret in scope; the variable that holds the secret's value is the
    // daemon's, not the runbook's.
    let run = start_run(&daemon, "alice", "env-probe", json!({}));
    let id = id_of(&run);
    let run = wait_final(&daemon, &id, RUN_TIMEOUT);
    for (place, text) in shown(&env, &daemon, &id) {
        assert_clean(&place, &text);
    }
    assert_clean("the run", &run.to_string());
    assert_state_clean(&env);
}
