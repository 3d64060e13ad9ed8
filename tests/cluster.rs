//! Several nodes on one PostgreSQL (SPEC §10): three real `tandem serve` processes share a
//! throwaway PostgreSQL. A decision taken on any node starts the run once; a node killed
//! mid-run loses its lease and a survivor marks the run `interrupted` and its in-flight
//! action `outcome_unknown` without re-running anything; a schedule fires each slot once
//! and outlives its leader; a follower on one node sees another node's output as it is
//! written; with PostgreSQL down nothing starts
//! and no action runs without its intent, and the nodes recover by themselves when it
//! returns; the shared audit chain verifies.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::approvals::{
    approve_with, assert_audit_verifies, assert_decisions_audited, audit_of, event_names, events,
    get_run, ran, request_pending, site_config, site_env, touch, write_marker_runbook, SETTLE,
};
use crate::harness::{token, wait_for, wait_until, Daemon, Env, HostSpec, Postgres};
use crate::run_flow::{id_of, start_run};

/// The lease of the tests' nodes: short, so a takeover is quick to see.
const LEASE: &str = "2s";

/// How long a survivor may take to take a dead node's run over: the lease, plus a sweep
/// interval, with room for a loaded machine.
const TAKEOVER: Duration = Duration::from_secs(30);

/// Hosts of the rollout a killed node leaves behind: `fleet0`..`fleet19` (internal, local,
/// tag `fleet`).
const FLEET: usize = 20;

/// An env whose config points at a fresh database of `pg`, with `web1` and the fleet.
fn cluster_env(pg: &Postgres) -> Env {
    let mut config = site_config()
        .database_url(&pg.database())
        .extra(&format!("lease_timeout: {LEASE}\n"));
    for i in 0..FLEET {
        config = config.host(HostSpec::local(&format!("fleet{i}"), "internal").tags(&["fleet"]));
    }
    site_env(&config)
}

/// Three nodes on the env's database, started one after the other.
fn three_nodes(env: &Env) -> Vec<Daemon> {
    (0..3).map(|_| Daemon::start(env)).collect()
}

/// A runbook `name` on web1 that needs no approval: it touches `ran/<id>-1`, sleeps
/// `seconds`, then touches `ran/<id>-2`.
fn write_slow_runbook(env: &Env, name: &str, seconds: u32) {
    let yaml = format!(
        "name: {name}\ndescription: a slow run\nowner: internal\ntargets: [web1]\n\
         scope:\n  commands: [\"touch *\", \"sleep *\"]\n\
         allowed: {{ parties: [internal], roles: [operator] }}\n\
         script: |\n  {}\n  sh_ok(\"sleep {seconds}\");\n  {}\n",
        touch(env, "-1"),
        touch(env, "-2"),
    );
    env.write_runbook(&format!("{name}.yaml"), &yaml);
}

/// A run's audit records of `event`, read through `daemon`.
fn count(daemon: &Daemon, id: &str, event: &str) -> usize {
    events(&audit_of(daemon, id), event).len()
}

/// Three rounds: a run requested on one node, approved at once by three approvers through
/// the three nodes. Each time exactly one approval counts and the run starts once.
#[test]
fn concurrent_approvals_through_different_nodes_start_the_run_once() {
    let pg = Postgres::start();
    let env = cluster_env(&pg);
    write_marker_runbook(&env, "asks", "[web1]", "approval: { from: internal }");
    let nodes = three_nodes(&env);
    for round in 0..3 {
        let id = request_pending(&nodes[round], "paula", "asks");
        let digest = get_run(&nodes[(round + 1) % 3], &id)["digest"].clone();
        let approvers = ["ivan", "ines", "iona"];
        let barrier = Barrier::new(approvers.len());
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let callers: Vec<_> = approvers
                .iter()
                .zip(&nodes)
                .map(|(user, node)| {
                    let (barrier, digest, id) = (&barrier, &digest, &id);
                    s.spawn(move || {
                        barrier.wait();
                        approve_with(node, user, id, json!({"digest": digest})).0
                    })
                })
                .collect();
            callers.into_iter().map(|c| c.join().unwrap()).collect()
        });
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        let last = &nodes[(round + 2) % 3];
        let run = wait_for(SETTLE, "the approved run to end", || {
            let run = get_run(last, &id);
            (run["status"] != "awaiting_approval"
                && run["status"] != "queued"
                && run["status"] != "running")
                .then_some(run)
        });
        assert_eq!(run["status"], "succeeded", "{run}");
        assert!(ran(&env, &id, ""), "round {round}: the run did not run");
        let names = event_names(&audit_of(last, &id));
        assert_eq!(count(last, &id, "approval_complete"), 1, "{names:?}");
        assert_eq!(count(last, &id, "run_started"), 1, "{names:?}");
        assert_eq!(count(last, &id, "run_finished"), 1, "{names:?}");
        assert_decisions_audited(last, &id);
    }
    drop(nodes);
    assert_audit_verifies(&env);
}

/// The node executing a 20-host rollout (5 hosts at a time) is killed with SIGKILL while
/// its first hosts sleep. Within the lease (plus a sweep), a survivor marks the run
/// `interrupted` and every action in flight `outcome_unknown`; no action after them runs,
/// no host is started twice, and the chain verifies.
#[test]
fn a_killed_nodes_rollout_is_interrupted_by_a_survivor_and_nothing_runs_twice() {
    let pg = Postgres::start();
    let env = cluster_env(&pg);
    let yaml = format!(
        "name: slow\ndescription: a slow rollout\nowner: internal\ntargets: [\"tag:fleet\"]\n\
         scope:\n  commands: [\"touch *\", \"sleep *\"]\n\
         allowed: {{ parties: [internal], roles: [operator] }}\n\
         rollout: {{ parallel: 5 }}\n\
         script: |\n  sh_ok(\"sleep 20\");\n  {}\n",
        touch(&env, "-2"),
    );
    env.write_runbook("slow.yaml", &yaml);
    write_slow_runbook(&env, "quick", 0);
    let mut nodes = three_nodes(&env);
    let id = id_of(&start_run(&nodes[0], "alice", "slow", json!({})));
    wait_until(SETTLE, "the first five hosts' sleeps", || {
        count(&nodes[1], &id, "action_intent") == 5
    });
    nodes[0].kill9();
    let killed = Instant::now();
    let run = wait_for(TAKEOVER, "a survivor to interrupt the run", || {
        let run = get_run(&nodes[1], &id);
        (run["status"] != "running").then_some(run)
    });
    eprintln!("takeover after {:?}", killed.elapsed());
    assert_eq!(run["status"], "interrupted", "{run}");
    let records = audit_of(&nodes[2], &id);
    let names = event_names(&records);
    assert_eq!(events(&records, "run_started").len(), 1, "{names:?}");
    let intents = events(&records, "action_intent");
    assert_eq!(intents.len(), 5, "{names:?}");
    let mut hosts: Vec<String> = intents
        .iter()
        .map(|r| r["detail"]["host"].as_str().unwrap_or_default().to_string())
        .collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), 5, "a host was started twice: {names:?}");
    let unknown: Vec<&Value> = events(&records, "action_result")
        .into_iter()
        .filter(|r| r["detail"]["outcome"] == "outcome_unknown")
        .collect();
    assert_eq!(unknown.len(), 5, "{names:?}");
    assert!(
        unknown.iter().all(|r| r["detail"]["target"] == "sleep 20"),
        "{names:?}"
    );
    assert!(!ran(&env, &id, "-2"), "an action ran after its node died");
    let hosts_now = run["hosts"].as_array().cloned().unwrap_or_default();
    assert!(
        hosts_now
            .iter()
            .all(|h| h["status"] != "running" && h["status"] != "pending"),
        "hosts left open: {run}"
    );
    // The survivors go on running runs.
    let next = id_of(&start_run(&nodes[2], "alice", "quick", json!({})));
    wait_until(SETTLE, "a survivor's run to finish", || {
        get_run(&nodes[1], &next)["status"] == "succeeded"
    });
    drop(nodes);
    assert_audit_verifies(&env);
}

/// PostgreSQL is stopped while a run sleeps between two actions: the sleep's result cannot
/// be recorded, so the run stops there and the next action never runs (fail closed), and a
/// new run cannot start. When
/// PostgreSQL returns, the nodes recover without a restart: the run whose lease lapsed is
/// interrupted, and new runs run again.
#[test]
fn with_postgres_down_nothing_runs_and_the_nodes_recover_when_it_returns() {
    let pg = Postgres::start();
    let env = cluster_env(&pg);
    write_slow_runbook(&env, "slow", 3);
    write_slow_runbook(&env, "quick", 0);
    let nodes: Vec<Daemon> = (0..2).map(|_| Daemon::start(&env)).collect();
    let id = id_of(&start_run(&nodes[0], "alice", "slow", json!({})));
    wait_until(SETTLE, "the run's first action", || ran(&env, &id, "-1"));
    pg.stop();
    let refused = crate::harness::poll(SETTLE, || {
        nodes[0]
            .stderr()
            .contains("run could not be carried out")
            .then_some(())
    });
    assert!(
        refused.is_some(),
        "the node did not stop the run after the sleep:\n{}",
        nodes[0].stderr()
    );
    assert!(!ran(&env, &id, "-2"), "an action ran without its intent");
    let (status, body) = nodes[1].post(
        "/api/v1/runs",
        &token("alice"),
        &json!({"runbook": "quick"}),
    );
    assert!(
        status >= 500,
        "a run was accepted with the store down: {status} {body}"
    );
    pg.start_server();
    let run = wait_for(TAKEOVER, "the run to be settled after the outage", || {
        let (status, run) = nodes[1].get(&format!("/api/v1/runs/{id}"), &token("alice"));
        (status == 200 && run["status"] != "running").then_some(run)
    });
    assert!(
        run["status"] == "interrupted" || run["status"] == "failed",
        "{run}"
    );
    assert!(!ran(&env, &id, "-2"), "an action ran without its intent");
    let again = wait_for(SETTLE, "a run to be accepted again", || {
        let (status, run) = nodes[1].post(
            "/api/v1/runs",
            &token("alice"),
            &json!({"runbook": "quick"}),
        );
        (status == 201).then_some(run)
    });
    let again = id_of(&again);
    wait_until(SETTLE, "the new run to finish", || {
        get_run(&nodes[0], &again)["status"] == "succeeded"
    });
    assert!(ran(&env, &again, "-2"));
    drop(nodes);
    assert_audit_verifies(&env);
}

/// Every scheduled run of `runbook` known to `daemon`, ordered by slot.
fn scheduled_runs(daemon: &Daemon, runbook: &str) -> Vec<Value> {
    let (status, runs) = daemon.get("/api/v1/runs?limit=1000", &token("alice"));
    assert_eq!(status, 200, "GET runs: {runs}");
    let mut runs: Vec<Value> = runs
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["runbook"] == runbook)
        .collect();
    runs.sort_by_key(|r| r["slot"].as_str().unwrap_or_default().to_string());
    runs
}

/// A schedule firing every second on three nodes: one node leads the scheduler, each slot
/// is fired once across the cluster (one run per slot, each run started once, no pass
/// failing on a slot another node took), and when the leader is killed another node takes
/// the schedule over.
#[test]
fn a_schedule_fires_each_slot_once_across_nodes_and_survives_its_leader() {
    let pg = Postgres::start();
    let env = cluster_env(&pg);
    let yaml = format!(
        "name: tick\ndescription: a schedule across nodes\nowner: internal\ntargets: [web1]\n\
         scope:\n  commands: [\"touch *\"]\nschedule: {{ cron: \"* * * * * *\" }}\n\
         script: |\n  {}\n",
        touch(&env, "")
    );
    env.write_runbook("tick.yaml", &yaml);
    // At `info` the node that takes the scheduler's lock says so.
    let mut nodes: Vec<Daemon> = (0..3)
        .map(|_| Daemon::start_with(&env, &[("TANDEM_LOG", "info")]))
        .collect();
    let finished = |node: &Daemon, n: usize| {
        let runs = scheduled_runs(node, "tick");
        runs.iter().filter(|r| r["status"] == "succeeded").count() >= n
    };
    let five = crate::harness::poll(SETTLE, || finished(&nodes[1], 5).then_some(()));
    assert!(
        five.is_some(),
        "five slots did not run: {:?}\n{}",
        scheduled_runs(&nodes[1], "tick"),
        nodes[1].stderr()
    );
    // The leader names itself (host-PID-suffix); it dies, and another node leads on.
    let leads = |node: &Daemon| {
        node.stderr()
            .lines()
            .any(|l| l.contains("leads the scheduler") && l.contains(&format!("-{}-", node.pid())))
    };
    let leader = nodes
        .iter()
        .position(leads)
        .expect("no node says it leads the scheduler");
    nodes[leader].kill9();
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    let before = scheduled_runs(&nodes[a], "tick").len();
    wait_until(TAKEOVER, "five more slots after the leader died", || {
        finished(&nodes[b], before + 5)
    });
    assert!(
        leads(&nodes[a]) || leads(&nodes[b]),
        "no survivor took the scheduler over"
    );
    let runs = scheduled_runs(&nodes[b], "tick");
    let mut slots: Vec<&str> = runs.iter().filter_map(|r| r["slot"].as_str()).collect();
    let fired = slots.len();
    slots.dedup();
    assert_eq!(slots.len(), fired, "a slot has two runs: {runs:?}");
    for run in runs.iter().filter(|r| r["status"] == "succeeded") {
        let id = id_of(run);
        assert!(ran(&env, &id, ""), "{run}");
        assert_eq!(count(&nodes[b], &id, "run_started"), 1, "{run}");
    }
    let log = nodes[b].stderr();
    assert!(
        !log.contains("could not be recorded"),
        "a scheduler pass failed on a slot another node fired:\n{log}"
    );
    drop(nodes);
    assert_audit_verifies(&env);
}

/// A follower on one node sees the output a run executed by another node writes, while the
/// run still runs: the command prints a line, then waits for a file the test creates only
/// after the line arrived over server-sent events from the other node.
#[test]
fn a_follower_on_one_node_sees_output_written_by_another() {
    use std::io::BufRead;
    let pg = Postgres::start();
    let env = cluster_env(&pg);
    let go_on = env.path().join("go-on");
    let script = format!(
        "echo first-line; while [ ! -e {} ]; do sleep 0.02; done; echo second-line",
        go_on.display()
    );
    let yaml = format!(
        "name: wait\ndescription: output across nodes\nowner: internal\ntargets: [web1]\n\
         scope:\n  commands: [\"sh -c *\"]\n\
         allowed: {{ parties: [internal], roles: [operator] }}\n\
         script: |\n  sh(\"sh -c '{script}'\");\n"
    );
    env.write_runbook("wait.yaml", &yaml);
    let nodes: Vec<Daemon> = (0..2).map(|_| Daemon::start(&env)).collect();
    let id = id_of(&start_run(&nodes[0], "alice", "wait", json!({})));
    let response = reqwest::blocking::Client::builder()
        .timeout(TAKEOVER)
        .build()
        .unwrap()
        .get(format!("{}/api/v1/runs/{id}/log?follow=1", nodes[1].url()))
        .bearer_auth(token("alice"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut events = std::io::BufReader::new(response).lines();
    let mut next = |want: &str| -> Value {
        loop {
            let line = events.next().expect("the stream ended").unwrap();
            if let Some(data) = line.strip_prefix("data:") {
                let v: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                if v["line"] == want || (want == "end" && v["status"].is_string()) {
                    return v;
                }
            }
        }
    };
    assert_eq!(next("first-line")["host"], "web1");
    assert!(!go_on.exists());
    assert_eq!(get_run(&nodes[1], &id)["status"], "running");
    std::fs::write(&go_on, b"").unwrap();
    next("second-line");
    assert_eq!(next("end")["status"], "succeeded");
}

/// A run approved through a node that is draining (SIGTERM, a run still under way) is
/// recorded and left queued there, and a live node takes it up and runs it once, while the
/// draining node still waits for its own run.
#[test]
fn a_run_approved_while_one_node_drains_is_run_by_another_node() {
    let pg = Postgres::start();
    let env = cluster_env(&pg);
    write_marker_runbook(&env, "asks", "[web1]", "approval: { from: internal }");
    let go_on = env.path().join("go-on");
    let yaml = format!(
        "name: hold\ndescription: keeps its node draining\nowner: internal\ntargets: [web1]\n\
         scope:\n  commands: [\"sh -c *\"]\n\
         allowed: {{ parties: [internal], roles: [operator] }}\n\
         script: |\n  sh_ok(\"sh -c 'while [ ! -e {} ]; do sleep 0.05; done'\");\n",
        go_on.display()
    );
    env.write_runbook("hold.yaml", &yaml);
    let mut nodes: Vec<Daemon> = (0..2)
        .map(|_| Daemon::start_with(&env, &[("TANDEM_LOG", "info")]))
        .collect();
    let id = request_pending(&nodes[0], "paula", "asks");
    let hold = id_of(&start_run(&nodes[0], "alice", "hold", json!({})));
    wait_until(SETTLE, "the holding run to run", || {
        count(&nodes[1], &hold, "action_intent") == 1
    });
    nodes[0].sigterm();
    wait_until(SETTLE, "node 0 to drain", || {
        nodes[0].stderr().contains("stopping: no new runs")
    });
    let digest = get_run(&nodes[0], &id)["digest"].clone();
    let (status, body) = approve_with(&nodes[0], "ivan", &id, json!({"digest": digest}));
    assert_eq!(status, 200, "{body}");
    let run = wait_for(TAKEOVER, "another node to run the approved run", || {
        let run = get_run(&nodes[1], &id);
        (run["status"] != "queued" && run["status"] != "running").then_some(run)
    });
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(ran(&env, &id, ""), "the approved run did not run");
    assert_eq!(count(&nodes[1], &id, "run_started"), 1);
    // Node 0 was draining all along: it still waits for its own run.
    assert_eq!(get_run(&nodes[1], &hold)["status"], "running");
    std::fs::write(&go_on, b"").unwrap();
    assert_eq!(nodes[0].wait_exit(SETTLE), Some(0), "{}", nodes[0].stderr());
    assert_eq!(get_run(&nodes[1], &hold)["status"], "succeeded");
    drop(nodes);
    assert_audit_verifies(&env);
}
