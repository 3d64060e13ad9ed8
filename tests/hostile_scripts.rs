//! Hostile scripts through the daemon: an endless loop, unbounded recursion, a string that
//! doubles forever and an array that grows forever each end their run `failed` with a clear
//! limit error, in bounded time, and the daemon stays healthy and runs the next run.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{unindent, Daemon, Env, StandardConfig};
use crate::run_flow::{id_of, run_to_end, start_run, wait_final};

/// How long hostile runs may take to hit their limits on a loaded 2-core machine. The
/// runbooks' own timeout is far longer, so only the engine's limits can stop them in time.
const LIMIT_TIMEOUT: Duration = Duration::from_secs(20);

/// A hostile runbook: its name, its script, and a fragment its error must contain.
type Hostile = (&'static str, &'static str, &'static str);

/// An env with the standard config, the `hostile` runbooks (no targets: the script runs
/// once, on the daemon) and `benign`, all with a 5 minute timeout.
fn env_with(hostile: &[Hostile]) -> Env {
    let env = Env::new();
    env.write_config(&StandardConfig::new().to_yaml());
    let write = |name: &str, script: &str| {
        let body: String = script.lines().map(|l| format!("  {l}\n")).collect();
        let yaml = unindent(&format!(
            "
            name: {name}
            owner: internal
            timeout: 5m
            script: |
            "
        ));
        env.write_runbook(&format!("{name}.yaml"), &(yaml + &body));
    };
    for (name, script, _) in hostile {
        write(name, script);
    }
    write("benign", "log(`fine ${40 + 2}`);");
    env
}

/// Starts every hostile runbook at once, as an attacker would, and asserts that each ends
/// `failed` on its own limit within [`LIMIT_TIMEOUT`]; then that the daemon still answers
/// and runs a benign runbook.
fn assert_stopped_at_limits(hostile: &[Hostile]) {
    let env = env_with(hostile);
    let daemon = Daemon::start(&env);

    let started = Instant::now();
    let runs: Vec<String> = hostile
        .iter()
        .map(|(name, _, _)| id_of(&start_run(&daemon, "alice", name, json!({}))))
        .collect();
    for ((name, _, want), id) in hostile.iter().zip(&runs) {
        let left = LIMIT_TIMEOUT.saturating_sub(started.elapsed());
        let run = wait_final(&daemon, id, left);
        assert_eq!(run["status"], "failed", "{name}: {run}");
        let error = run["error"].as_str().unwrap_or_default();
        assert!(error.contains(want), "{name}: error lacks {want:?}: {run}");
        assert!(!error.contains("wall-clock"), "{name}: {run}");
    }

    let (status, body) = daemon.get("/healthz", "");
    assert_eq!(status, 200, "{body}");
    let run = run_to_end(&daemon, "alice", "benign", json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
}

#[test]
fn hostile_loop_recursion_and_string_doubling_fail_at_their_limits() {
    assert_stopped_at_limits(&[
        ("spin", "loop { }", "operations"),
        ("recurse", "fn f(x) { f(x + 1) }\nf(0);", "call depth"),
        (
            "double",
            "let s = \"xx\";\nloop { s += s; }",
            "over its limit",
        ),
    ]);
}

#[test]
fn hostile_array_push_loop_fails_at_its_size_limit_in_bounded_time() {
    assert_stopped_at_limits(&[(
        "hoard",
        "let a = [];\nloop { a.push(\"item\"); }",
        "over its limit",
    )]);
}
