//! A real Alertmanager (the Debian package `prometheus-alertmanager`) delivers an alert to a
//! tandem trigger: its receiver posts the webhook with a bearer token via `http_config`, and
//! the alert pushed to Alertmanager's API v2 becomes a run that acts on the labelled host.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::approvals::{ran, site_env, write_marker_runbook};
use crate::harness::{token, token_sha256, wait_for, wait_until, Daemon, HostSpec, StandardConfig};
use crate::run_flow::wait_final_as;

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// Alertmanager, killed when dropped.
struct Alertmanager {
    child: Child,
    url: String,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn a_real_alertmanager_alert_starts_a_run_on_the_labelled_host() {
    let trigger_token = "am-bearer-token-1234";
    let config = StandardConfig::new()
        .host(HostSpec::local("web1", "internal"))
        .host(HostSpec::local("web2", "internal"))
        .extra(&format!(
            "triggers:\n  - name: am\n    party: internal\n    runbook: isolate\n    \
             auth: {{bearer: {{token_sha256: {}}}}}\n    match: {{labels: {{alertname: Ransomware}}}}\n    \
             params: {{reason: 'annotation:summary'}}\n    targets: 'label:instance'\n    ref: 'label:ticket'\n",
            token_sha256(trigger_token)
        ));
    let env = site_env(&config);
    write_marker_runbook(
        &env,
        "isolate",
        "[web1, web2]",
        "params:\n  reason: {type: string, default: none}\n",
    );
    let daemon = Daemon::start(&env);

    let port = free_port();
    let am_config = format!(
        "route:\n  receiver: tandem\n  group_by: [alertname, instance]\n  group_wait: 50ms\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: tandem\n    webhook_configs:\n      - url: {}/api/v1/triggers/am\n        send_resolved: false\n\
         \x20       http_config:\n          authorization:\n            type: Bearer\n            credentials: {trigger_token}\n",
        daemon.url()
    );
    let am_file = env.write("alertmanager.yml", am_config);
    std::fs::create_dir_all(env.path().join("am-data")).expect("am data dir");
    let log = std::fs::File::create(env.path().join("alertmanager.log")).expect("am log");
    let child = Command::new(ALERTMANAGER)
        .arg(format!("--config.file={}", am_file.display()))
        .arg(format!(
            "--storage.path={}",
            env.path().join("am-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // No cluster: a single instance that does not wait for peers before sending.
        .arg("--cluster.listen-address=")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {ALERTMANAGER} (scripts/test installs it): {e}"));
    let am = Alertmanager {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::blocking::Client::new();
    wait_until(Duration::from_secs(30), "alertmanager to be ready", || {
        http.get(format!("{}/-/ready", am.url))
            .send()
            .is_ok_and(|r| r.status().is_success())
    });

    let alerts = json!([{
        "labels": {"alertname": "Ransomware", "instance": "web2", "ticket": "INC-77"},
        "annotations": {"summary": "encryption burst on web2"},
        "generatorURL": "http://prometheus.example/graph"
    }]);
    let pushed = http
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&alerts)
        .send()
        .expect("push the alert");
    assert!(pushed.status().is_success(), "{:?}", pushed.text());

    let run: Value = wait_for(Duration::from_secs(30), "the alert's run to exist", || {
        let (_, runs) = daemon.get("/api/v1/runs", &token("alice"));
        runs.as_array().and_then(|r| r.first().cloned())
    });
    let id = run["id"].as_str().expect("id").to_string();
    let done = wait_final_as(&daemon, "alice", &id, Duration::from_secs(30));
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["initiator"]["user"], "trigger:am");
    assert_eq!(done["plan"]["limit"], json!(["web2"]));
    assert_eq!(done["plan"]["params"]["reason"], "encryption burst on web2");
    assert_eq!(done["plan"]["trigger"]["ref"], "INC-77");
    assert!(done["plan"]["trigger"]["fingerprint"].is_string(), "{done}");
    assert!(ran(&env, &id, ""));
}
