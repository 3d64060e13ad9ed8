//! Tests of the harness itself: each part does what the tests built on it assume.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;

use super::*;

#[test]
fn unindent_strips_common_indentation() {
    assert_eq!(
        unindent("\n    a:\n      b: 1\n\n    c: 2\n    "),
        "a:\n  b: 1\n\nc: 2\n"
    );
    assert_eq!(unindent("x:\n\ty\n"), "x:\n\ty\n");
}

#[test]
fn standard_config_validates() {
    let env = Env::new();
    let config = StandardConfig::new()
        .host(HostSpec::local("web1", "internal").tags(&["web"]))
        .user("olga", "provider", &["operator", "approver"]);
    env.write_config(&config.to_yaml());
    env.tandem(["validate"]).success();
    // The same hash `sha256sum` gives for the token.
    assert_eq!(token("alice"), "tok-alice");
    assert_eq!(
        token_sha256("tok-alice"),
        "dde96f5b27b2298476b272c037dfd2cb5438e3495510c51035db1ef55f2994a4"
    );
}

/// Runs the OpenSSH client against `sshd` with only `known_hosts` trusted.
fn ssh(sshd: &Sshd, known_hosts: &Path, command: &str) -> Output {
    Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-i")
        .arg(sshd.client_key_path())
        .arg("-p")
        .arg(sshd.port().to_string())
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

#[test]
fn sshd_admits_the_client_key_under_the_pinned_host_key() {
    let sshd = Sshd::start();
    assert!(sshd.host_key_line().starts_with("ssh-ed25519 AAAA"));
    assert_eq!(sshd.host_key_line().split_whitespace().count(), 2);
    // The readiness probe is the harness's own traffic and not in the log.
    assert!(!sshd.log().contains("Connection from"), "{}", sshd.log());

    let dir = tempfile::tempdir().expect("temp dir");
    let known_hosts = dir.path().join("known_hosts");
    let pin = |key: &str| format!("[127.0.0.1]:{} {key}\n", sshd.port());
    std::fs::write(&known_hosts, pin(sshd.host_key_line())).expect("write known_hosts");
    let out = ssh(&sshd, &known_hosts, "echo ready");
    assert!(
        out.status.success(),
        "ssh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ready");
    wait_until(Duration::from_secs(10), "sshd to log the login", || {
        sshd.log().contains("Accepted publickey")
    });

    // A wrong pin stops the client before it authenticates; sshd sees no key at all.
    let other = fresh_ed25519_key_line();
    assert_ne!(other, sshd.host_key_line());
    std::fs::write(&known_hosts, pin(&other)).expect("write known_hosts");
    let before = sshd.log().matches("Connection from").count();
    let out = ssh(&sshd, &known_hosts, "echo ready");
    assert!(!out.status.success(), "ssh accepted a wrong pin");
    wait_until(
        Duration::from_secs(10),
        "sshd to log the rejected connection",
        || {
            sshd.log().contains("[preauth]")
                && sshd.log().matches("Connection from").count() > before
        },
    );
    assert_eq!(
        sshd.log().matches("publickey for").count(),
        2,
        "{}",
        sshd.log()
    );
}

#[test]
fn daemon_serves_and_drains_on_sigterm() {
    let env = Env::new();
    env.write_config(&config_yaml(&[HostSpec::local("web1", "internal")]));
    let mut daemon = Daemon::start(&env);
    assert!(
        daemon.url().starts_with("http://127.0.0.1:"),
        "{}",
        daemon.url()
    );

    let (status, _) = daemon.get("/healthz", "");
    assert_eq!(status, 200);
    let (status, body) = daemon.get("/api/v1/runs", "");
    assert_eq!(status, 401, "{body}");
    let (status, body) = daemon.get("/api/v1/runs", &token("alice"));
    assert_eq!(status, 200, "{body}");
    assert!(body.is_array(), "{body}");
    let (status, body) = daemon.post(
        "/api/v1/runs",
        &token("alice"),
        &json!({"runbook": "nosuch"}),
    );
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(body["error"]["code"].is_string(), "{body}");

    daemon.sigterm();
    assert_eq!(
        daemon.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        daemon.stderr()
    );
}
