//! Runs over a real OpenSSH server on loopback: a command runs end to end, and a host that
//! presents another key than the pinned one is dropped before authentication (rule 7).

use std::time::Duration;

use crate::harness::{
    fresh_ed25519_key_line, unindent, wait_until, Daemon, Env, HostSpec, Sshd, StandardConfig,
};
use crate::run_flow::{audit_events, client, id_of, start_run, wait_final, RUN_TIMEOUT};

/// A runbook on host `web1` that may run `echo *` and `touch *`, with this script.
fn ssh_runbook(name: &str, script: &str) -> String {
    let mut yaml = unindent(&format!(
        "
        name: {name}
        owner: internal
        targets: [web1]
        scope:
          commands: [\"echo *\", \"touch *\"]
        timeout: 30s
        script: |
        "
    ));
    for line in script.lines() {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

#[test]
fn ssh_run_end_to_end_succeeds_shows_output_and_audit_verifies() {
    let sshd = Sshd::start();
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::ssh("web1", "internal", &sshd))
            .to_yaml(),
    );
    env.write_runbook(
        "hello.yaml",
        &ssh_runbook(
            "hello",
            "let r = sh(\"echo hello-over-ssh\");\nif r.code != 0 { fail(\"echo failed\"); }",
        ),
    );
    let daemon = Daemon::start(&env);

    let out = client(&env, &daemon, "alice", &["run", "hello", "--wait"]);
    out.success()
        .stdout_contains("hello-over-ssh")
        .stdout_contains("succeeded");
    let id = out
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("`run ID STATUS` first line")
        .to_string();

    let shown = client(&env, &daemon, "alice", &["show", &id, "--json"]);
    let run = shown.success().json();
    assert_eq!(run["status"], "succeeded", "{run}");
    let hosts = run["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 1, "{run}");
    assert_eq!(hosts[0]["host"], "web1", "{run}");
    assert_eq!(hosts[0]["status"], "succeeded", "{run}");
    assert_eq!(hosts[0]["exit_code"], 0, "{run}");

    // The command really went over SSH, logged in with the client key.
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    let intents = audit_events(&daemon, Some(&id), "action_intent");
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(intents[0]["detail"]["command"], "echo hello-over-ssh");
    assert_eq!(audit_events(&daemon, Some(&id), "action_result").len(), 1);

    let verified = env.tandem(["audit", "verify"]);
    verified.success().stdout_contains("ok: ");
}

#[test]
fn ssh_wrong_pinned_host_key_stops_before_authentication() {
    let sshd = Sshd::start();
    let env = Env::new();
    let wrong = fresh_ed25519_key_line();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::ssh("web1", "internal", &sshd).host_key(&wrong))
            .to_yaml(),
    );
    let marker = env.path().join("MARKER");
    env.write_runbook(
        "touch.yaml",
        &ssh_runbook("touch", &format!("sh(\"touch {}\");", marker.display())),
    );
    let daemon = Daemon::start(&env);

    let run = start_run(&daemon, "alice", "touch", serde_json::json!({}));
    let id = id_of(&run);
    let run = wait_final(&daemon, &id, RUN_TIMEOUT);
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["hosts"][0]["status"], "failed", "{run}");
    let host_error = run["hosts"][0]["error"].as_str().unwrap_or_default();
    assert!(host_error.contains("hostkey_mismatch"), "{run}");

    let mismatches = audit_events(&daemon, Some(&id), "hostkey_mismatch");
    assert_eq!(mismatches.len(), 1, "{mismatches:?}");
    assert_eq!(mismatches[0]["detail"]["host"], "web1", "{mismatches:?}");

    // sshd saw the connection end before any authentication: not one public key offered.
    wait_until(
        Duration::from_secs(10),
        "sshd to log the end of tandem's connection",
        || sshd.log().contains("Connection from") && sshd.log().contains("[preauth]"),
    );
    let log = sshd.log();
    assert!(
        !log.contains("publickey"),
        "sshd saw an authentication attempt:\n{log}"
    );
    assert!(!log.contains("Accepted"), "{log}");
    assert!(
        !marker.exists(),
        "the command ran despite the wrong host key"
    );
}

/// A host whose login key is a secret (`identity_secret`) rather than a file: the key is
/// handed to libssh2 from memory, with its public half read from the key itself.
#[test]
fn ssh_key_held_in_a_secret_logs_in() {
    let sshd = Sshd::start();
    let env = Env::new();
    let yaml = StandardConfig::new()
        .host(HostSpec::ssh("web1", "internal", &sshd))
        .extra("secrets:\n  login_key: {env: TEST_LOGIN_KEY, owner: internal}\n")
        .to_yaml();
    let identity = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("identity_file:"))
        .expect("an identity_file line");
    let yaml = yaml.replace(identity, "    identity_secret: login_key");
    env.write_config(&yaml);
    env.write_runbook(
        "hello.yaml",
        &ssh_runbook("hello", "sh_ok(\"echo key-from-a-secret\");"),
    );
    let pem = std::fs::read_to_string(sshd.client_key_path()).unwrap();
    let daemon = Daemon::start_with(&env, &[("TEST_LOGIN_KEY", pem.as_str())]);
    client(&env, &daemon, "alice", &["run", "hello", "--wait"])
        .success()
        .stdout_contains("key-from-a-secret")
        .stdout_contains("succeeded");
}
