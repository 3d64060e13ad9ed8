//! Fan-out (issue 5): batches and `max_failures` halt a rollout before it spreads, cancel
//! stops a rollout in flight, and a host that accepts connections but never answers fails
//! by its timeout while the others finish.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{token, unindent, wait_until, Daemon, Env, HostSpec, Sshd, StandardConfig};
use crate::run_flow::{get_run, id_of, start_run, wait_final, RUN_TIMEOUT};

fn hosts_env(names: &[&str]) -> Env {
    let env = Env::new();
    let config = names.iter().fold(StandardConfig::new(), |c, n| {
        c.host(HostSpec::local(n, "internal").tags(&["fleet"]))
    });
    env.write_config(&config.to_yaml());
    std::fs::create_dir_all(env.path().join("touched")).unwrap();
    env
}

fn host_status(run: &serde_json::Value, host: &str) -> String {
    run["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .map(|h| h["status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn max_failures_halts_the_rollout_and_later_hosts_are_never_contacted() {
    let names = ["h1", "h2", "h3", "h4", "h5", "h6"];
    let env = hosts_env(&names);
    let touched = env.path().join("touched");
    env.write_runbook(
        "roll.yaml",
        &unindent(&format!(
            r#"
            name: roll
            owner: internal
            targets: ["tag:fleet"]
            scope: {{ commands: ["touch {dir}/*"] }}
            rollout: {{ parallel: 1, batch: 2, max_failures: 1 }}
            script: |
              sh(`touch {dir}/${{host.name}}`);
              if host.name == "h1" || host.name == "h3" {{ fail("broken host"); }}
            "#,
            dir = touched.display()
        )),
    );
    let daemon = Daemon::start(&env);
    let run = wait_final(
        &daemon,
        &id_of(&start_run(&daemon, "alice", "roll", json!({}))),
        RUN_TIMEOUT,
    );
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("max_failures"),
        "{run}"
    );
    // Batch 1 (h1, h2): one failure, not over the threshold. Batch 2: h3 fails, which
    // exceeds it, so h4 (same batch, after h3 with parallel 1) and everything after never start.
    for h in ["h1", "h2", "h3"] {
        assert!(touched.join(h).exists(), "{h} should have run");
    }
    for h in ["h4", "h5", "h6"] {
        assert!(!touched.join(h).exists(), "{h} must never be contacted");
        assert_eq!(host_status(&run, h), "not_started", "{run}");
    }
    assert_eq!(host_status(&run, "h1"), "failed");
    assert_eq!(host_status(&run, "h2"), "succeeded");
}

#[test]
fn batches_run_one_after_another() {
    let names = ["b1", "b2", "b3", "b4"];
    let env = hosts_env(&names);
    let touched = env.path().join("touched");
    // Each host records when it started and ended; with batch 2 and parallel 4, no host of
    // the second batch starts before every host of the first has ended.
    env.write_runbook(
        "batches.yaml",
        &unindent(&format!(
            r#"
            name: batches
            owner: internal
            targets: ["tag:fleet"]
            scope: {{ commands: ["sh -c *"] }}
            rollout: {{ parallel: 4, batch: "50%" }}
            script: |
              sh(`sh -c ${{quote("date +%s%N > " + "{dir}/" + host.name + ".start; sleep 0.3; date +%s%N > " + "{dir}/" + host.name + ".end")}}`);
            "#,
            dir = touched.display()
        )),
    );
    let daemon = Daemon::start(&env);
    let run = wait_final(
        &daemon,
        &id_of(&start_run(&daemon, "alice", "batches", json!({}))),
        RUN_TIMEOUT,
    );
    assert_eq!(run["status"], "succeeded", "{run}");
    let read = |f: &str| -> u128 {
        std::fs::read_to_string(touched.join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let first_end = read("b1.end").max(read("b2.end"));
    let second_start = read("b3.start").min(read("b4.start"));
    assert!(
        second_start >= first_end,
        "batch 2 started before batch 1 ended"
    );
}

#[test]
fn cancel_stops_a_rollout_in_flight() {
    let names = ["c1", "c2", "c3", "c4"];
    let env = hosts_env(&names);
    env.write_runbook(
        "slow.yaml",
        &unindent(
            r#"
            name: slow
            owner: internal
            targets: ["tag:fleet"]
            scope: { commands: ["sleep 20"] }
            rollout: { parallel: 1 }
            script: sh("sleep 20");
            "#,
        ),
    );
    let daemon = Daemon::start(&env);
    let id = id_of(&start_run(&daemon, "alice", "slow", json!({})));
    wait_until(RUN_TIMEOUT, "the first host to be running", || {
        host_status(&get_run(&daemon, &id), "c1") == "running"
    });
    let asked = Instant::now();
    let (status, _) = daemon.post(
        &format!("/api/v1/runs/{id}/cancel"),
        &token("alice"),
        &json!({}),
    );
    assert_eq!(status, 200);
    let run = wait_final(&daemon, &id, RUN_TIMEOUT);
    assert_eq!(run["status"], "cancelled", "{run}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "cancel took {:?}",
        asked.elapsed()
    );
    for h in ["c2", "c3", "c4"] {
        assert_eq!(host_status(&run, h), "not_started", "{run}");
    }
}

#[test]
fn a_hung_host_fails_by_its_timeout_while_the_others_finish() {
    // A server that accepts TCP connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in silent.incoming().take(4) {
            conns.push(c);
        }
        conns
    });
    let sshd = Sshd::start();
    let env = Env::new();
    let config = StandardConfig::new()
        .host(
            HostSpec::ssh("hung", "internal", &sshd)
                .port(port)
                .tags(&["fleet"]),
        )
        .host(HostSpec::local("ok1", "internal").tags(&["fleet"]))
        .host(HostSpec::local("ok2", "internal").tags(&["fleet"]));
    env.write_config(&config.to_yaml());
    env.write_runbook(
        "hang.yaml",
        &unindent(
            r#"
            name: hang
            owner: internal
            targets: ["tag:fleet"]
            scope: { commands: ["true"] }
            action_timeout: 2s
            rollout: { parallel: 3 }
            script: sh("true");
            "#,
        ),
    );
    let daemon = Daemon::start(&env);
    let started = Instant::now();
    let run = wait_final(
        &daemon,
        &id_of(&start_run(&daemon, "alice", "hang", json!({}))),
        RUN_TIMEOUT,
    );
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(host_status(&run, "ok1"), "succeeded", "{run}");
    assert_eq!(host_status(&run, "ok2"), "succeeded", "{run}");
    assert_eq!(host_status(&run, "hung"), "failed", "{run}");
    let hung = run["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "hung")
        .unwrap();
    let why = hung["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        why.contains("timed out") || why.contains("timeout"),
        "{hung}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    drop(held);
}
