//! Approval gates (SPEC §3 rules 3–6, §4, §5 `gate`): who may approve, quorum, digest-bound
//! decisions, expiry, denial, break-glass with its review, mid-run gates. Every test drives
//! the real daemon over HTTP (and the CLI where a person would use it), and proves that a
//! run that must not start never ran: its script touches a marker file `ran/<run id>`.
//!
//! The helpers here are shared with the other approval test modules (durability,
//! notifications, web pages).

use std::path::PathBuf;
use std::sync::Barrier;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{token, unindent, wait_for, Daemon, Env, HostSpec, StandardConfig};

/// How long a run may take to reach the status a test waits for.
pub(crate) const SETTLE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Fixtures and helpers shared by the approval test modules.

/// The standard config with `web1` (internal) and `mon1` (provider), both local, and three
/// more users: `ines` (internal approver), `iona` (internal operator and approver) and `pam`
/// (provider operator and approver).
pub(crate) fn site_config() -> StandardConfig {
    StandardConfig::new()
        .host(HostSpec::local("web1", "internal"))
        .host(HostSpec::local("mon1", "provider"))
        .user("ines", "internal", &["approver"])
        .user("iona", "internal", &["operator", "approver"])
        .user("pam", "provider", &["operator", "approver"])
}

/// An env holding `config` and an empty `ran/` folder for markers.
pub(crate) fn site_env(config: &StandardConfig) -> Env {
    let env = Env::new();
    env.write_config(&config.to_yaml());
    std::fs::create_dir_all(env.path().join("ran")).expect("create ran/");
    env
}

/// Where the script of run `id` leaves its marker (`suffix` tells steps apart).
pub(crate) fn marker(env: &Env, id: &str, suffix: &str) -> PathBuf {
    env.path().join("ran").join(format!("{id}{suffix}"))
}

/// Whether run `id` reached the step that touches `ran/<id><suffix>`.
pub(crate) fn ran(env: &Env, id: &str, suffix: &str) -> bool {
    marker(env, id, suffix).exists()
}

/// A rhai statement that touches `ran/<run id><suffix>` on the target.
pub(crate) fn touch(env: &Env, suffix: &str) -> String {
    let dir = env.path().join("ran");
    format!(
        "sh_ok(\"touch \" + quote({:?} + \"/\" + run_id + {suffix:?}));",
        dir.to_string_lossy()
    )
}

/// Writes `runbooks/<name>.yaml`: owner `internal`, targets `targets` (YAML list), startable
/// by the operators of both parties, scope `touch *`, the `extra` top-level YAML (approval,
/// emergency), and `script` (rhai; [`touch`] makes the markers).
pub(crate) fn write_runbook(env: &Env, name: &str, targets: &str, extra: &str, script: &str) {
    let mut yaml = format!(
        "name: {name}\ndescription: approval test runbook {name}\nowner: internal\n\
         targets: {targets}\nscope:\n  commands: [\"touch *\"]\n\
         allowed: {{ parties: [internal, provider], roles: [operator] }}\n"
    );
    for line in unindent(extra).lines() {
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml.push_str("script: |\n");
    for line in script.lines() {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    env.write_runbook(&format!("{name}.yaml"), &yaml);
}

/// Like [`write_runbook`] with the script that touches `ran/<run id>`.
pub(crate) fn write_marker_runbook(env: &Env, name: &str, targets: &str, extra: &str) {
    write_runbook(env, name, targets, extra, &touch(env, ""));
}

/// `POST /api/v1/runs` as `user`; asserts 201 and returns the run.
pub(crate) fn request(daemon: &Daemon, user: &str, runbook: &str) -> Value {
    let (status, run) = daemon.post("/api/v1/runs", &token(user), &json!({"runbook": runbook}));
    assert_eq!(status, 201, "{user} requesting {runbook}: {run}");
    run
}

/// [`request`], asserting that the run waits for approval; returns its id.
pub(crate) fn request_pending(daemon: &Daemon, user: &str, runbook: &str) -> String {
    let run = request(daemon, user, runbook);
    assert_eq!(run["status"], "awaiting_approval", "{run}");
    id_of(&run)
}

/// A run's id.
pub(crate) fn id_of(run: &Value) -> String {
    run["id"]
        .as_str()
        .unwrap_or_else(|| panic!("run without id: {run}"))
        .to_string()
}

/// `GET /api/v1/runs/{id}`.
pub(crate) fn get_run(daemon: &Daemon, id: &str) -> Value {
    let (status, run) = daemon.get(&format!("/api/v1/runs/{id}"), &token("alice"));
    assert_eq!(status, 200, "GET run {id}: {run}");
    run
}

/// `POST /api/v1/runs/{id}/approve` as `user` with `body`.
pub(crate) fn approve_with(daemon: &Daemon, user: &str, id: &str, body: Value) -> (u16, Value) {
    daemon.post(&format!("/api/v1/runs/{id}/approve"), &token(user), &body)
}

/// Approves as `user` with the digest the run shows now.
pub(crate) fn approve(daemon: &Daemon, user: &str, id: &str) -> (u16, Value) {
    let digest = get_run(daemon, id)["digest"].clone();
    approve_with(
        daemon,
        user,
        id,
        json!({"comment": format!("ok from {user}"), "digest": digest}),
    )
}

/// `POST /api/v1/runs/{id}/deny` as `user` with `reason`.
pub(crate) fn deny(daemon: &Daemon, user: &str, id: &str, reason: &str) -> (u16, Value) {
    daemon.post(
        &format!("/api/v1/runs/{id}/deny"),
        &token(user),
        &json!({"reason": reason}),
    )
}

/// Waits until run `id` has status `want` and returns it; panics at once when the run ends
/// with another status.
pub(crate) fn wait_status(daemon: &Daemon, id: &str, want: &str) -> Value {
    wait_status_as(daemon, "alice", id, want)
}

/// [`wait_status`], reading the run as `user` (rule 10: only a party it concerns sees it).
pub(crate) fn wait_status_as(daemon: &Daemon, user: &str, id: &str, want: &str) -> Value {
    wait_for(SETTLE, &format!("run {id} to be {want}"), || {
        let (code, run) = daemon.get(&format!("/api/v1/runs/{id}"), &token(user));
        assert_eq!(code, 200, "GET run {id} as {user}: {run}");
        let status = run["status"].as_str().unwrap_or_default().to_string();
        if status == want {
            return Some(run);
        }
        assert!(
            !crate::run_flow::FINAL.contains(&status.as_str()),
            "run {id} ended {status}, not {want}: {run}\n{}",
            daemon.stderr()
        );
        None
    })
}

/// The gate `n` of a run.
pub(crate) fn gate(run: &Value, n: i64) -> Value {
    run["gates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["gate"] == n)
        .cloned()
        .unwrap_or_else(|| panic!("run has no gate {n}: {run}"))
}

/// Approves `id` as `user` with the digest it shows, then waits for the run to succeed and
/// checks that its script ran. Returns the finished run.
pub(crate) fn approve_and_see_it_run(env: &Env, daemon: &Daemon, user: &str, id: &str) -> Value {
    let (status, body) = approve(daemon, user, id);
    assert_eq!(status, 200, "{body}");
    let run = wait_status(daemon, id, "succeeded");
    assert!(ran(env, id, ""), "the approved run's script did not run");
    run
}

/// Stops the daemon gracefully and starts another on the same site, which reads the config
/// and the runbooks afresh.
pub(crate) fn restart(env: &Env, mut daemon: Daemon) -> Daemon {
    daemon.sigterm();
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(0));
    Daemon::start(env)
}

/// Approves `id` with `body` and checks that the executor refused it because what would run
/// is no longer what was approved: the run fails with `digest_mismatch`, the requested script
/// never ran, and the run never started. Returns the run's audit records.
fn approve_expecting_digest_mismatch(
    env: &Env,
    daemon: &Daemon,
    id: &str,
    body: Value,
) -> Vec<Value> {
    let (status, body) = approve_with(daemon, "ivan", id, body);
    assert_eq!(status, 200, "{body}");
    let run = wait_status(daemon, id, "failed");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("digest_mismatch"), "{run}");
    assert!(!ran(env, id, ""), "the requested script ran");
    let records = audit_of(daemon, id);
    assert!(
        events(&records, "run_started").is_empty(),
        "{:?}",
        event_names(&records)
    );
    records
}

/// The audit records about run `id`, read by the auditor.
pub(crate) fn audit_of(daemon: &Daemon, id: &str) -> Vec<Value> {
    let (status, records) = daemon.get("/api/v1/audit?after=0&limit=10000", &token("audrey"));
    assert_eq!(status, 200, "{records}");
    records
        .as_array()
        .unwrap_or_else(|| panic!("audit is not a list: {records}"))
        .iter()
        .filter(|r| r["run_id"] == id)
        .cloned()
        .collect()
}

/// The records of `event` among `records`.
pub(crate) fn events<'r>(records: &'r [Value], event: &str) -> Vec<&'r Value> {
    records.iter().filter(|r| r["event"] == event).collect()
}

/// The event names of `records`, in order (for failure messages and order checks).
pub(crate) fn event_names(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["event"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The user an audit record names as its actor (`system` for the daemon).
pub(crate) fn actor(record: &Value) -> String {
    match &record["actor"] {
        Value::String(s) => s.clone(),
        a => a["user"].as_str().unwrap_or_default().to_string(),
    }
}

/// Every decision recorded on run `id` has its own audit record (`approval_granted` or
/// `approval_denied` by that user on that gate), and there are no others.
pub(crate) fn assert_decisions_audited(daemon: &Daemon, id: &str) {
    let run = get_run(daemon, id);
    let records = audit_of(daemon, id);
    let mut decisions = 0;
    for g in run["gates"].as_array().into_iter().flatten() {
        for d in g["decisions"].as_array().into_iter().flatten() {
            decisions += 1;
            let event = if d["decision"] == "approve" {
                "approval_granted"
            } else {
                "approval_denied"
            };
            let found = events(&records, event)
                .into_iter()
                .filter(|r| actor(r) == d["user"] && r["detail"]["gate"] == g["gate"])
                .count();
            assert_eq!(
                found,
                1,
                "decision {d} on gate {} has {found} `{event}` records: {:?}",
                g["gate"],
                event_names(&records)
            );
        }
    }
    let decided =
        events(&records, "approval_granted").len() + events(&records, "approval_denied").len();
    assert_eq!(
        decided,
        decisions,
        "audit has {decided} decision records for {decisions} decisions: {:?}",
        event_names(&records)
    );
}

/// `tandem audit verify` on the env's state exits 0 and says `ok:`.
pub(crate) fn assert_audit_verifies(env: &Env) {
    env.tandem(["audit", "verify"])
        .success()
        .stdout_contains("ok: ");
}

/// A client command run as `user` against `daemon`.
pub(crate) fn cli<'e>(env: &'e Env, daemon: &Daemon, user: &str) -> crate::harness::Tandem<'e> {
    env.command()
        .env("TANDEM_SERVER", daemon.url())
        .env("TANDEM_TOKEN", token(user))
}

// ---------------------------------------------------------------------------------------
// Rule 3: who may approve.

/// One combination of who started a run and who tries to approve it.
struct Row {
    /// `asks`: web1 (internal), the runbook asks `internal`; `cross`: web1, no approval
    /// section (only the cross-party rule); `cross-mon`: mon1 (provider), no approval section.
    runbook: &'static str,
    initiator: &'static str,
    approver: &'static str,
    /// Whether SPEC admits the approval, so the run starts.
    starts: bool,
}

/// The party of a user of [`site_config`].
fn party_of(user: &str) -> &'static str {
    match user {
        "paula" | "pete" | "pam" => "provider",
        _ => "internal",
    }
}

/// Whether a run of `r` concerns the approver's party (rule 10): it started the run or owns
/// its target (`asks` also asks internal, which owns web1).
fn concerns(r: &Row) -> bool {
    let owner = if r.runbook == "cross-mon" {
        "provider"
    } else {
        "internal"
    };
    party_of(r.approver) == party_of(r.initiator) || party_of(r.approver) == owner
}

const fn row(
    runbook: &'static str,
    initiator: &'static str,
    approver: &'static str,
    starts: bool,
) -> Row {
    Row {
        runbook,
        initiator,
        approver,
        starts,
    }
}

/// Users: alice (internal operator), ivan (internal approver), iona (internal operator +
/// approver), audrey (internal auditor), paula (provider operator), pete (provider
/// approver), pam (provider operator + approver).
const MATRIX: [Row; 38] = [
    // The owner asks internal; an internal initiator.
    row("asks", "alice", "ivan", true),    // internal approver
    row("asks", "alice", "iona", true),    // internal operator+approver, not the initiator
    row("asks", "alice", "alice", false),  // the initiator, no approver role
    row("asks", "alice", "audrey", false), // internal, auditor only
    row("asks", "alice", "pete", false),   // approver of the wrong party
    row("asks", "alice", "pam", false),    // operator+approver of the wrong party
    row("asks", "alice", "paula", false),  // wrong party, no approver role
    row("asks", "iona", "iona", false),    // right party and role, but the initiator
    row("asks", "iona", "ivan", true),
    // The owner asks internal; a provider initiator (also cross-party).
    row("asks", "paula", "ivan", true),
    row("asks", "paula", "iona", true),
    row("asks", "paula", "pete", false), // the initiator's own party may not approve
    row("asks", "paula", "pam", false),
    row("asks", "paula", "paula", false),
    row("asks", "paula", "alice", false), // right party, no approver role
    row("asks", "paula", "audrey", false),
    row("asks", "pam", "pam", false), // the initiator, and the wrong party
    row("asks", "pam", "ivan", true),
    // No approval section: a provider initiator on an internal host needs internal.
    row("cross", "paula", "ivan", true),
    row("cross", "paula", "iona", true),
    row("cross", "paula", "pete", false),
    row("cross", "paula", "pam", false),
    row("cross", "paula", "paula", false),
    row("cross", "paula", "alice", false),
    row("cross", "paula", "audrey", false),
    row("cross", "pam", "pam", false),
    row("cross", "pam", "ivan", true),
    // No approval section: an internal initiator on a provider host needs provider.
    row("cross-mon", "alice", "pete", true),
    row("cross-mon", "alice", "pam", true),
    row("cross-mon", "alice", "ivan", false), // the initiator's own party
    row("cross-mon", "alice", "iona", false),
    row("cross-mon", "alice", "alice", false),
    row("cross-mon", "alice", "paula", false), // right party, no approver role
    row("cross-mon", "alice", "audrey", false),
    row("cross-mon", "iona", "iona", false),
    row("cross-mon", "iona", "pete", true),
    row("cross-mon", "iona", "pam", true),
    row("cross-mon", "iona", "ivan", false),
];

#[test]
fn rule3_only_the_combinations_spec_allows_start_the_run() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "asks", "[web1]", "approval: { from: internal }");
    write_marker_runbook(&env, "cross", "[web1]", "");
    write_marker_runbook(&env, "cross-mon", "[mon1]", "");
    let daemon = Daemon::start(&env);

    // Within its own party and without an approval section, a run needs nobody.
    for (runbook, initiator) in [("cross", "alice"), ("cross-mon", "paula")] {
        let run = request(&daemon, initiator, runbook);
        assert_ne!(run["status"], "awaiting_approval", "{run}");
        assert_eq!(run["gates"], json!([]), "{run}");
        let id = id_of(&run);
        wait_status_as(&daemon, initiator, &id, "succeeded");
        assert!(ran(&env, &id, ""));
    }

    let mut started = Vec::new();
    for r in &MATRIX {
        let what = format!(
            "{} started by {}, approved by {}",
            r.runbook, r.initiator, r.approver
        );
        let id = request_pending(&daemon, r.initiator, r.runbook);
        let (status, body) = approve(&daemon, r.approver, &id);
        let run = get_run(&daemon, &id);
        if r.starts {
            assert_eq!(status, 200, "{what}: {body}");
            assert_ne!(run["status"], "awaiting_approval", "{what}: {run}");
            assert_eq!(gate(&run, 0)["status"], "approved", "{what}: {run}");
            started.push((what, id));
        } else if !concerns(r) {
            // Rule 10: the approver's party has nothing to do with the run: it is unknown.
            assert_eq!(status, 404, "{what}: {body}");
            assert_eq!(body["error"]["code"], "not_found", "{what}: {body}");
            assert_eq!(run["status"], "awaiting_approval", "{what}: {run}");
            assert_eq!(gate(&run, 0)["decisions"], json!([]), "{what}: {run}");
            assert!(!ran(&env, &id, ""), "{what}: the run ran");
        } else {
            assert_eq!(status, 403, "{what}: {body}");
            assert_eq!(body["error"]["code"], "forbidden", "{what}: {body}");
            assert_eq!(run["status"], "awaiting_approval", "{what}: {run}");
            let g = gate(&run, 0);
            assert_eq!(g["status"], "pending", "{what}: {run}");
            assert_eq!(
                g["decisions"],
                json!([]),
                "{what}: a refused decision was kept"
            );
            let records = audit_of(&daemon, &id);
            let refused = events(&records, "approval_refused");
            assert_eq!(refused.len(), 1, "{what}: {:?}", event_names(&records));
            assert_eq!(actor(refused[0]), r.approver, "{what}: {}", refused[0]);
            assert!(events(&records, "approval_granted").is_empty(), "{what}");
            assert!(!ran(&env, &id, ""), "{what}: the run ran");
        }
    }
    for (what, id) in &started {
        wait_status(&daemon, id, "succeeded");
        assert!(ran(&env, id, ""), "{what}: succeeded without running");
        let records = audit_of(&daemon, id);
        let names = event_names(&records);
        let granted = names.iter().position(|e| e == "approval_granted");
        let started_at = names.iter().position(|e| e == "run_started");
        assert!(
            granted.is_some() && granted < started_at,
            "{what}: approval must be audited before the run starts: {names:?}"
        );
    }
}

#[test]
fn a_run_on_hosts_of_both_parties_needs_each_party() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "both", "[web1, mon1]", "approval: { from: internal }");
    let daemon = Daemon::start(&env);

    let id = request_pending(&daemon, "alice", "both");
    let run = get_run(&daemon, &id);
    let g = gate(&run, 0);
    assert_eq!(g["reason"], "start", "{run}");
    let mut parties: Vec<&str> = g["requirements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["party"].as_str())
        .collect();
    parties.sort_unstable();
    assert_eq!(parties, ["internal", "provider"], "{run}");

    let (status, body) = approve(&daemon, "ivan", &id);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["status"], "awaiting_approval",
        "one party's approval must not start it: {body}"
    );
    approve_and_see_it_run(&env, &daemon, "pete", &id);
    let records = audit_of(&daemon, &id);
    let names = event_names(&records);
    let requested = events(&records, "approval_requested");
    assert_eq!(requested.len(), 1, "{names:?}");
    assert_eq!(requested[0]["detail"]["digest"], run["digest"], "{names:?}");
    assert_eq!(events(&records, "approval_complete").len(), 1, "{names:?}");
    let pos = |e: &str| names.iter().position(|n| n == e);
    assert!(
        pos("run_requested") < pos("approval_requested")
            && pos("approval_requested") < pos("approval_granted")
            && pos("approval_complete") < pos("run_started"),
        "{names:?}"
    );
    assert_decisions_audited(&daemon, &id);
}

// ---------------------------------------------------------------------------------------
// Quorum: distinct approvers.

#[test]
fn approving_twice_counts_once_toward_quorum() {
    let env = site_env(&site_config());
    write_marker_runbook(
        &env,
        "two",
        "[web1]",
        "approval: { from: internal, quorum: 2 }",
    );
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "alice", "two");

    let (status, body) = approve(&daemon, "ivan", &id);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "awaiting_approval", "{body}");
    let (status, body) = approve(&daemon, "ivan", &id);
    assert_eq!(status, 409, "a second approval by ivan: {body}");
    assert_eq!(body["error"]["code"], "conflict", "{body}");

    let run = get_run(&daemon, &id);
    assert_eq!(run["status"], "awaiting_approval", "{run}");
    let decisions = gate(&run, 0)["decisions"].as_array().cloned().unwrap();
    assert_eq!(decisions.len(), 1, "{run}");
    assert!(!ran(&env, &id, ""));

    approve_and_see_it_run(&env, &daemon, "ines", &id);
    assert_decisions_audited(&daemon, &id);
}

#[test]
fn fifty_concurrent_approvals_by_one_user_count_once() {
    let env = site_env(&site_config());
    write_marker_runbook(
        &env,
        "two",
        "[web1]",
        "approval: { from: internal, quorum: 2 }",
    );
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "paula", "two");
    let digest = get_run(&daemon, &id)["digest"].clone();

    const CALLERS: usize = 50;
    let barrier = Barrier::new(CALLERS);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    approve_with(&daemon, "ivan", &id, json!({"digest": digest})).0
                })
            })
            .collect();
        callers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let conflict = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!(
        (ok, conflict),
        (1, CALLERS - 1),
        "exactly one approval may count: {statuses:?}"
    );

    let run = get_run(&daemon, &id);
    assert_eq!(run["status"], "awaiting_approval", "{run}");
    assert_eq!(
        gate(&run, 0)["decisions"].as_array().unwrap().len(),
        1,
        "{run}"
    );
    let records = audit_of(&daemon, &id);
    assert_eq!(events(&records, "approval_granted").len(), 1);
    assert!(!ran(&env, &id, ""));

    approve_and_see_it_run(&env, &daemon, "iona", &id);
    assert_decisions_audited(&daemon, &id);
}

#[test]
fn racing_approvers_start_the_run_once() {
    let (env, _daemon, _id) = racing_approvers_start_the_run_once_on(&site_config());
    assert_audit_verifies(&env);
}

/// Three approvers decide at once on `config` (the PostgreSQL tests pass one with a
/// `database_url`): one approval counts, the run starts once and succeeds, and every
/// decision is audited. Returns the env, the daemon and the run's id.
pub(crate) fn racing_approvers_start_the_run_once_on(
    config: &StandardConfig,
) -> (Env, Daemon, String) {
    let env = site_env(config);
    write_marker_runbook(&env, "asks", "[web1]", "approval: { from: internal }");
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "paula", "asks");
    let digest = get_run(&daemon, &id)["digest"].clone();

    let approvers = ["ivan", "ines", "iona"];
    let barrier = Barrier::new(approvers.len());
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let callers: Vec<_> = approvers
            .iter()
            .map(|user| {
                let (barrier, digest, daemon, id) = (&barrier, &digest, &daemon, &id);
                s.spawn(move || {
                    barrier.wait();
                    approve_with(daemon, user, id, json!({"digest": digest})).0
                })
            })
            .collect();
        callers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    // Quorum 1: the first approval completes the gate; the others find nothing pending.
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    wait_status(&daemon, &id, "succeeded");
    let records = audit_of(&daemon, &id);
    let names = event_names(&records);
    assert_eq!(events(&records, "approval_complete").len(), 1, "{names:?}");
    assert_eq!(events(&records, "run_started").len(), 1, "{names:?}");
    assert_eq!(events(&records, "run_finished").len(), 1, "{names:?}");
    assert_decisions_audited(&daemon, &id);
    assert!(ran(&env, &id, ""), "the approved run did not run");
    (env, daemon, id)
}

// ---------------------------------------------------------------------------------------
// Forged and replayed decisions.

#[test]
fn a_decision_for_another_digest_is_refused() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "asks", "[web1]", "approval: { from: internal }");
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "alice", "asks");
    let real = get_run(&daemon, &id)["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let forged = format!("{:0>64}", "f");
    assert_ne!(forged, real);

    let (status, body) = approve_with(&daemon, "ivan", &id, json!({"digest": forged}));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict", "{body}");
    let (status, body) = daemon.post(
        &format!("/api/v1/runs/{id}/deny"),
        &token("ines"),
        &json!({"reason": "stale page", "digest": forged}),
    );
    assert_eq!(status, 409, "a denial for another digest: {body}");

    let run = get_run(&daemon, &id);
    assert_eq!(run["status"], "awaiting_approval", "{run}");
    assert_eq!(gate(&run, 0)["decisions"], json!([]), "{run}");
    let records = audit_of(&daemon, &id);
    let refused = events(&records, "approval_refused");
    assert_eq!(refused.len(), 2, "{:?}", event_names(&records));
    assert_eq!(actor(refused[0]), "ivan");
    assert_eq!(actor(refused[1]), "ines");

    // The real digest still works: the forgery left the run approvable.
    let (status, body) = approve_with(&daemon, "ivan", &id, json!({"digest": real}));
    assert_eq!(status, 200, "{body}");
    wait_status(&daemon, &id, "succeeded");
    assert!(ran(&env, &id, ""));
    assert_decisions_audited(&daemon, &id);
    assert_audit_verifies(&env);
}

#[test]
fn a_denial_without_a_reason_is_refused_and_decides_nothing() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "asks", "[web1]", "approval: { from: internal }");
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "alice", "asks");
    for body in [
        json!({}),
        json!({"reason": ""}),
        json!({"reason": "  \t"}),
        json!({"comment": " "}),
    ] {
        let (status, answer) =
            daemon.post(&format!("/api/v1/runs/{id}/deny"), &token("ivan"), &body);
        assert_eq!(status, 422, "a denial with {body}: {answer}");
        assert_eq!(
            answer["error"]["message"], "a denial needs a reason",
            "{answer}"
        );
    }
    let run = get_run(&daemon, &id);
    assert_eq!(run["status"], "awaiting_approval", "{run}");
    assert_eq!(gate(&run, 0)["decisions"], json!([]), "{run}");
    // A reason given as `comment` is a reason.
    let (status, answer) = daemon.post(
        &format!("/api/v1/runs/{id}/deny"),
        &token("ivan"),
        &json!({"comment": "not today"}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "denied", "{answer}");
    assert!(!ran(&env, &id, ""));
}

#[test]
fn deciding_on_a_run_already_decided_is_a_conflict() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "asks", "[web1]", "approval: { from: internal }");
    let daemon = Daemon::start(&env);

    let denied = request_pending(&daemon, "alice", "asks");
    let (status, body) = deny(&daemon, "ivan", &denied, "not today");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "denied", "{body}");
    // A replay of an approval after the denial, by another approver and by the denier.
    for user in ["ines", "iona", "ivan"] {
        let (status, body) = approve(&daemon, user, &denied);
        assert_eq!(status, 409, "{user} approving a denied run: {body}");
    }
    let (status, body) = deny(&daemon, "ines", &denied, "me too");
    assert_eq!(status, 409, "denying a denied run: {body}");
    let run = get_run(&daemon, &denied);
    assert_eq!(run["status"], "denied", "{run}");
    assert_eq!(gate(&run, 0)["decisions"].as_array().unwrap().len(), 1);
    assert!(!ran(&env, &denied, ""));

    let done = request_pending(&daemon, "alice", "asks");
    let (status, body) = approve(&daemon, "ivan", &done);
    assert_eq!(status, 200, "{body}");
    wait_status(&daemon, &done, "succeeded");
    let (status, body) = approve(&daemon, "ines", &done);
    assert_eq!(status, 409, "approving a succeeded run: {body}");
    let (status, body) = deny(&daemon, "ines", &done, "too late");
    assert_eq!(status, 409, "denying a succeeded run: {body}");
    let run = get_run(&daemon, &done);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(gate(&run, 0)["decisions"].as_array().unwrap().len(), 1);
    assert_decisions_audited(&daemon, &denied);
    assert_decisions_audited(&daemon, &done);
}

#[test]
fn an_approver_of_the_wrong_party_is_refused_and_audited() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "cross", "[web1]", "");
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "paula", "cross");

    // pete is an approver, but of the initiator's own party; the host is internal's.
    let (status, body) = approve(&daemon, "pete", &id);
    assert_eq!(status, 403, "{body}");
    let (status, body) = deny(&daemon, "pete", &id, "provider says no");
    assert_eq!(
        status, 403,
        "a wrong-party denial must not end the run: {body}"
    );
    let run = get_run(&daemon, &id);
    assert_eq!(run["status"], "awaiting_approval", "{run}");
    assert_eq!(gate(&run, 0)["decisions"], json!([]), "{run}");

    let records = audit_of(&daemon, &id);
    let refused = events(&records, "approval_refused");
    assert_eq!(refused.len(), 2, "{:?}", event_names(&records));
    for r in refused {
        assert_eq!(actor(r), "pete", "{r}");
        assert_eq!(r["actor"]["party"], "provider", "{r}");
    }
    assert!(events(&records, "approval_granted").is_empty());
    assert!(events(&records, "approval_denied").is_empty());
    assert!(!ran(&env, &id, ""));
}

#[test]
fn approvals_lists_only_what_the_caller_may_decide() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "asks", "[web1]", "approval: { from: internal }");
    write_marker_runbook(&env, "cross-mon", "[mon1]", "");
    let daemon = Daemon::start(&env);
    let internal = request_pending(&daemon, "iona", "asks");
    let provider = request_pending(&daemon, "alice", "cross-mon");

    let listed = |user: &str| -> Vec<String> {
        let (status, runs) = daemon.get("/api/v1/approvals", &token(user));
        assert_eq!(status, 200, "{runs}");
        let mut ids: Vec<String> = runs
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {runs}"))
            .iter()
            .map(id_of)
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(listed("ivan"), vec![internal.clone()]);
    assert_eq!(listed("pete"), vec![provider.clone()]);
    assert_eq!(listed("pam"), vec![provider.clone()]);
    // iona may approve internal runs, but not the one she started.
    assert_eq!(listed("iona"), Vec::<String>::new());
    assert_eq!(listed("alice"), Vec::<String>::new());
    assert_eq!(listed("audrey"), Vec::<String>::new());

    // Once decided, a run leaves the decider's list; the CLI shows the same list.
    let (status, body) = approve(&daemon, "pete", &provider);
    assert_eq!(status, 200, "{body}");
    assert_eq!(listed("pam"), Vec::<String>::new());
    let out = cli(&env, &daemon, "ivan")
        .args(["--json", "approvals"])
        .run();
    out.success();
    let ids: Vec<String> = out.json().as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(ids, [internal]);
}

#[test]
fn cli_run_left_awaiting_exits_3_and_cli_approve_starts_it() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "asks", "[web1]", "approval: { from: internal }");
    let daemon = Daemon::start(&env);

    let out = cli(&env, &daemon, "alice")
        .args(["--json", "run", "asks"])
        .run();
    out.status(3);
    let id = id_of(&out.json());
    assert_eq!(get_run(&daemon, &id)["status"], "awaiting_approval");

    // The initiator may not approve their own run, on the CLI either.
    cli(&env, &daemon, "alice")
        .args(["approve", &id])
        .run()
        .status(1)
        .stderr_contains("403");
    cli(&env, &daemon, "ivan")
        .args(["approve", &id, "--comment", "go ahead"])
        .run()
        .success();
    let run = wait_status(&daemon, &id, "succeeded");
    let decisions = &gate(&run, 0)["decisions"];
    assert_eq!(decisions[0]["user"], "ivan", "{run}");
    assert_eq!(decisions[0]["comment"], "go ahead", "{run}");
    assert_eq!(decisions[0]["digest"], run["digest"], "{run}");
    assert!(ran(&env, &id, ""));
}

// ---------------------------------------------------------------------------------------
// Rule 4: an approval binds to the digest.

#[test]
fn a_runbook_edited_between_request_and_approval_does_not_run() {
    let env = site_env(&site_config());
    let extra = "approval: { from: internal }";
    write_marker_runbook(&env, "patch", "[web1]", extra);
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "paula", "patch");
    let requested = get_run(&daemon, &id);

    // The runbook changes under the pending approval: same name, another script. The
    // daemon reads runbooks at start, so it is restarted to pick the edit up.
    let edited = format!("{}\n{}", touch(&env, ""), touch(&env, ".edited"));
    write_runbook(&env, "patch", "[web1]", extra, &edited);
    let daemon = restart(&env, daemon);

    let before = get_run(&daemon, &id);
    assert_eq!(before["status"], "awaiting_approval", "{before}");
    assert_eq!(before["digest"], requested["digest"], "{before}");
    // The approver approves what they were shown when the run was requested.
    let digest = json!({"digest": requested["digest"]});
    let records = approve_expecting_digest_mismatch(&env, &daemon, &id, digest);
    assert!(
        !ran(&env, &id, ".edited"),
        "the edited script ran unapproved"
    );
    let finished = events(&records, "run_finished");
    assert_eq!(finished.len(), 1, "{:?}", event_names(&records));
    assert_eq!(finished[0]["detail"]["status"], "failed");
    assert_audit_verifies(&env);
}

#[test]
fn an_inventory_edit_between_request_and_approval_does_not_run() {
    let config = site_config();
    let env = site_env(&config);
    write_marker_runbook(&env, "patch", "[web1]", "approval: { from: internal }");
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "paula", "patch");

    // web1 gains a tag: the planned target is no longer what was requested.
    let edited = config.to_yaml().replace(
        "  - name: \"web1\"\n",
        "  - name: \"web1\"\n    tags: [\"db\"]\n",
    );
    assert_ne!(edited, config.to_yaml(), "the edit did not apply");
    env.write_config(&edited);
    let daemon = restart(&env, daemon);

    let digest_now = json!({"digest": get_run(&daemon, &id)["digest"]});
    approve_expecting_digest_mismatch(&env, &daemon, &id, digest_now);
}

// ---------------------------------------------------------------------------------------
// Rule 5: expiry.

#[test]
fn a_pending_approval_expires() {
    let env = site_env(&site_config());
    write_marker_runbook(
        &env,
        "short",
        "[web1]",
        "approval: { from: internal, expires: 1s }",
    );
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "alice", "short");
    assert!(gate(&get_run(&daemon, &id), 0)["expires_at"].is_string());

    let run = wait_status(&daemon, &id, "expired");
    assert_eq!(gate(&run, 0)["status"], "expired", "{run}");
    let (status, body) = approve(&daemon, "ivan", &id);
    assert_eq!(status, 409, "approving an expired run: {body}");
    assert!(!ran(&env, &id, ""));
    let records = audit_of(&daemon, &id);
    let expired = events(&records, "approval_expired");
    assert_eq!(expired.len(), 1, "{:?}", event_names(&records));
    assert_eq!(actor(expired[0]), "system");
    assert_eq!(expired[0]["detail"]["on_expiry"], "expire");
    assert_eq!(
        events(&records, "run_finished")[0]["detail"]["status"],
        "expired"
    );
    assert!(events(&records, "run_started").is_empty());
    assert_decisions_audited(&daemon, &id);
    assert_audit_verifies(&env);
}

#[test]
fn on_expiry_deny_ends_the_run_denied() {
    let env = site_env(&site_config());
    write_marker_runbook(
        &env,
        "strict",
        "[web1]",
        "approval: { from: internal, quorum: 2, expires: 1s, on_expiry: deny }",
    );
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "alice", "strict");
    // One of two approvals is not enough; the gate still expires.
    let (status, body) = approve(&daemon, "ivan", &id);
    assert_eq!(status, 200, "{body}");

    let run = wait_status(&daemon, &id, "denied");
    assert_eq!(gate(&run, 0)["status"], "expired", "{run}");
    assert!(!ran(&env, &id, ""));
    let records = audit_of(&daemon, &id);
    let expired = events(&records, "approval_expired");
    assert_eq!(expired.len(), 1, "{:?}", event_names(&records));
    assert_eq!(expired[0]["detail"]["on_expiry"], "deny");
    assert_eq!(
        events(&records, "run_finished")[0]["detail"]["status"],
        "denied"
    );
    assert_decisions_audited(&daemon, &id);
    assert_audit_verifies(&env);
}

// ---------------------------------------------------------------------------------------
// Denial.

#[test]
fn a_denial_ends_the_run_denied_with_the_reason() {
    let env = site_env(&site_config());
    write_marker_runbook(
        &env,
        "two",
        "[web1]",
        "approval: { from: internal, quorum: 2 }",
    );
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "alice", "two");

    let (status, body) = daemon.post(
        &format!("/api/v1/runs/{id}/deny"),
        &token("ivan"),
        &json!({}),
    );
    assert_eq!(status, 422, "a denial without a reason: {body}");
    let (status, body) = deny(&daemon, "ivan", &id, "   ");
    assert_eq!(status, 422, "a blank reason: {body}");
    assert_eq!(get_run(&daemon, &id)["status"], "awaiting_approval");

    // One approval, then one denial: the denial wins, quorum or not.
    let (status, body) = approve(&daemon, "ines", &id);
    assert_eq!(status, 200, "{body}");
    cli(&env, &daemon, "ivan")
        .args(["deny", &id, "--reason", "change freeze until Monday"])
        .run()
        .success();
    let run = get_run(&daemon, &id);
    assert_eq!(run["status"], "denied", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("change freeze until Monday"), "{run}");
    assert!(error.contains("ivan"), "{run}");
    let g = gate(&run, 0);
    assert_eq!(g["status"], "denied", "{run}");
    let denial = g["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["decision"] == "deny")
        .cloned()
        .unwrap_or_else(|| panic!("no denial recorded: {run}"));
    assert_eq!(denial["user"], "ivan");
    assert_eq!(denial["comment"], "change freeze until Monday");
    assert!(!ran(&env, &id, ""));

    let records = audit_of(&daemon, &id);
    let denied = events(&records, "approval_denied");
    assert_eq!(denied.len(), 1, "{:?}", event_names(&records));
    assert_eq!(denied[0]["detail"]["comment"], "change freeze until Monday");
    assert_eq!(
        events(&records, "run_finished")[0]["detail"]["status"],
        "denied"
    );
    assert!(events(&records, "run_started").is_empty());
    assert_decisions_audited(&daemon, &id);
    assert_audit_verifies(&env);
}

// ---------------------------------------------------------------------------------------
// Rule 6: break-glass.

#[test]
fn break_glass_runs_at_once_flagged_and_owes_a_review() {
    let env = site_env(&site_config());
    write_marker_runbook(
        &env,
        "isolate",
        "[web1]",
        "emergency: true\napproval: { from: internal }",
    );
    let daemon = Daemon::start(&env);

    // paula (provider) on an internal host: normally internal must approve first.
    let out = cli(&env, &daemon, "paula")
        .args([
            "--json",
            "run",
            "isolate",
            "--break-glass",
            "--reason",
            "ransomware spreading from web1",
        ])
        .run();
    out.success();
    let started = out.json();
    assert_ne!(started["status"], "awaiting_approval", "{started}");
    assert_eq!(started["break_glass"], true, "{started}");
    let id = id_of(&started);
    let run = wait_status(&daemon, &id, "succeeded");
    assert!(ran(&env, &id, ""));
    assert_eq!(run["break_glass"], true, "{run}");
    assert_eq!(run["reason"], "ransomware spreading from web1", "{run}");
    assert_eq!(run["review"]["status"], "open", "{run}");
    assert_eq!(run["review"]["parties"], json!(["internal"]), "{run}");
    assert!(
        run["gates"].as_array().map_or(true, |g| g.is_empty()),
        "{run}"
    );

    let records = audit_of(&daemon, &id);
    let names = event_names(&records);
    for e in [
        "break_glass",
        "review_requested",
        "run_started",
        "run_finished",
    ] {
        assert_eq!(events(&records, e).len(), 1, "{e}: {names:?}");
    }
    assert!(
        events(&records, "approval_requested").is_empty(),
        "{names:?}"
    );
    let bg = events(&records, "break_glass")[0];
    assert_eq!(actor(bg), "paula");
    assert_eq!(bg["detail"]["reason"], "ransomware spreading from web1");
    let pos = |e: &str| names.iter().position(|n| n == e);
    assert!(pos("break_glass") < pos("run_started"), "{names:?}");

    let reviews = |user: &str| -> Vec<String> {
        let (status, runs) = daemon.get("/api/v1/reviews", &token(user));
        assert_eq!(status, 200, "{runs}");
        runs.as_array().unwrap().iter().map(id_of).collect()
    };
    assert_eq!(reviews("ivan"), vec![id.clone()]);

    // Only an approver of the owning party, not the initiator, acknowledges it.
    for user in ["paula", "pete", "alice"] {
        let (status, body) = daemon.post(
            &format!("/api/v1/runs/{id}/review"),
            &token(user),
            &json!({"comment": "seen"}),
        );
        assert_eq!(status, 403, "{user} reviewing: {body}");
    }
    let (status, body) = daemon.post(
        &format!("/api/v1/runs/{id}/review"),
        &token("ivan"),
        &json!({"comment": ""}),
    );
    assert_eq!(status, 422, "a review without a comment: {body}");
    assert_eq!(get_run(&daemon, &id)["review"]["status"], "open");

    cli(&env, &daemon, "ivan")
        .args(["review", &id, "--comment", "justified; web1 reimaged"])
        .run()
        .success();
    let run = get_run(&daemon, &id);
    assert_eq!(run["review"]["status"], "acknowledged", "{run}");
    assert_eq!(run["review"]["reviewed_by"], "ivan", "{run}");
    assert_eq!(reviews("ivan"), Vec::<String>::new());
    let out = cli(&env, &daemon, "ivan").args(["--json", "reviews"]).run();
    out.success();
    assert_eq!(out.json(), json!([]), "{}", out.dump());
    let (status, body) = daemon.post(
        &format!("/api/v1/runs/{id}/review"),
        &token("ines"),
        &json!({"comment": "again"}),
    );
    assert_eq!(status, 409, "a second acknowledgement: {body}");

    let records = audit_of(&daemon, &id);
    let acks = events(&records, "review_acknowledged");
    assert_eq!(acks.len(), 1, "{:?}", event_names(&records));
    assert_eq!(actor(acks[0]), "ivan");
    assert_audit_verifies(&env);
}

#[test]
fn break_glass_needs_an_emergency_runbook_and_a_reason() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "routine", "[web1]", "approval: { from: internal }");
    write_marker_runbook(&env, "isolate", "[web1]", "emergency: true");
    let daemon = Daemon::start(&env);
    let runs_before = daemon.get("/api/v1/runs", &token("alice")).1;

    let (status, body) = daemon.post(
        "/api/v1/runs",
        &token("paula"),
        &json!({"runbook": "routine", "break_glass": true, "reason": "urgent"}),
    );
    assert_eq!(status, 403, "break-glass on a routine runbook: {body}");
    for reason in [json!(null), json!(""), json!("  ")] {
        let (status, body) = daemon.post(
            "/api/v1/runs",
            &token("paula"),
            &json!({"runbook": "isolate", "break_glass": true, "reason": reason}),
        );
        assert_eq!(status, 422, "break-glass with reason {reason}: {body}");
    }
    cli(&env, &daemon, "paula")
        .args(["run", "isolate", "--break-glass"])
        .run()
        .status(2);
    assert_eq!(
        daemon.get("/api/v1/runs", &token("alice")).1,
        runs_before,
        "a refused break-glass created a run"
    );
    assert_eq!(
        std::fs::read_dir(env.path().join("ran")).unwrap().count(),
        0
    );
}

// ---------------------------------------------------------------------------------------
// Mid-run gates.

/// Writes runbook `name` on web1 that touches `.before`, waits at
/// `gate("restart the database")`, then touches `.after`; `extra` as in [`write_runbook`].
fn write_gated_runbook(env: &Env, name: &str, extra: &str) {
    let script = format!(
        "{}\ngate(\"restart the database\");\n{}",
        touch(env, ".before"),
        touch(env, ".after")
    );
    write_runbook(env, name, "[web1]", extra, &script);
}

/// Starts the runbook `gated` (written with no approval section) as alice (internal, own host: no start
/// approval) and waits for it to stop at its gate; returns the run id.
fn run_to_gate(env: &Env, daemon: &Daemon) -> String {
    let id = id_of(&request(daemon, "alice", "gated"));
    wait_at_gate(env, daemon, &id);
    id
}

/// Waits for run `id` to stop at its mid-run gate, and checks that it stopped there.
fn wait_at_gate(env: &Env, daemon: &Daemon, id: &str) {
    let at_gate = wait_for(SETTLE, "the run to wait at its gate", || {
        let run = get_run(daemon, id);
        assert!(
            run["status"] == "running" || run["status"] == "queued",
            "{run}"
        );
        let waiting = run["gates"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|g| g["gate"] == 1 && g["status"] == "pending");
        waiting.then_some(run)
    });
    assert_eq!(at_gate["status"], "running", "{at_gate}");
    let g = gate(&at_gate, 1);
    assert_eq!(g["reason"], "restart the database", "{at_gate}");
    assert_eq!(g["requirements"][0]["party"], "internal", "{at_gate}");
    assert!(ran(env, id, ".before"));
    assert!(
        !ran(env, id, ".after"),
        "the script passed its gate unapproved"
    );
    // Still at the gate after another look: nothing moves it but a decision.
    assert_eq!(get_run(daemon, id)["status"], "running");
}

#[test]
fn a_mid_run_gate_approved_resumes_the_run() {
    let env = site_env(&site_config());
    write_gated_runbook(&env, "gated", "");
    let daemon = Daemon::start(&env);
    let id = run_to_gate(&env, &daemon);

    // The initiator may not pass their own gate.
    let (status, body) = approve(&daemon, "alice", &id);
    assert_eq!(status, 403, "{body}");
    let (status, body) = approve(&daemon, "ivan", &id);
    assert_eq!(status, 200, "{body}");
    let run = wait_status(&daemon, &id, "succeeded");
    assert_eq!(gate(&run, 1)["status"], "approved", "{run}");
    assert!(ran(&env, &id, ".after"));

    let records = audit_of(&daemon, &id);
    let requested = events(&records, "approval_requested");
    assert_eq!(requested.len(), 1, "{:?}", event_names(&records));
    assert_eq!(requested[0]["detail"]["gate"], 1);
    assert_eq!(events(&records, "approval_refused").len(), 1);
    assert_decisions_audited(&daemon, &id);
    assert_audit_verifies(&env);
}

#[test]
fn a_mid_run_gate_denied_ends_the_run_denied() {
    let env = site_env(&site_config());
    write_gated_runbook(&env, "gated", "");
    let daemon = Daemon::start(&env);
    let id = run_to_gate(&env, &daemon);

    let (status, body) = deny(&daemon, "ivan", &id, "not during the sale");
    assert_eq!(status, 200, "{body}");
    let run = wait_status(&daemon, &id, "denied");
    assert_eq!(gate(&run, 1)["status"], "denied", "{run}");
    assert!(
        !ran(&env, &id, ".after"),
        "the script went on after a denial"
    );
    let records = audit_of(&daemon, &id);
    assert_eq!(
        events(&records, "run_finished")[0]["detail"]["status"],
        "denied"
    );
    assert_decisions_audited(&daemon, &id);
    assert_audit_verifies(&env);
}

#[test]
fn a_mid_run_gate_that_expires_ends_the_run_as_on_expiry_says() {
    let env = site_env(&site_config());
    // The start gate needs ivan too; both gates expire after 2 s.
    write_gated_runbook(
        &env,
        "gated-expire",
        "approval: { from: internal, expires: 2s }",
    );
    write_gated_runbook(
        &env,
        "gated-deny",
        "approval: { from: internal, expires: 2s, on_expiry: deny }",
    );
    let daemon = Daemon::start(&env);
    let cases = [
        ("gated-expire", "expired", "expire"),
        ("gated-deny", "denied", "deny"),
    ];
    let mut ids = Vec::new();
    for (runbook, _, _) in cases {
        let id = request_pending(&daemon, "alice", runbook);
        let (status, body) = approve(&daemon, "ivan", &id);
        assert_eq!(status, 200, "{body}");
        ids.push(id);
    }
    for id in &ids {
        wait_at_gate(&env, &daemon, id);
    }
    for ((runbook, ends, on_expiry), id) in cases.iter().zip(&ids) {
        let run = wait_for(SETTLE, "the gated run to end", || {
            let run = get_run(&daemon, id);
            (run["finished_at"].is_string()).then_some(run)
        });
        assert_eq!(
            run["status"], *ends,
            "{runbook}: a mid-run gate that expired must end the run {ends}: {run}"
        );
        assert_eq!(gate(&run, 1)["status"], "expired", "{run}");
        assert!(!ran(&env, id, ".after"), "{runbook} went on unapproved");
        let records = audit_of(&daemon, id);
        let expired = events(&records, "approval_expired");
        assert_eq!(expired.len(), 1, "{:?}", event_names(&records));
        assert_eq!(expired[0]["detail"]["gate"], 1);
        assert_eq!(expired[0]["detail"]["on_expiry"], *on_expiry);
    }
}

#[test]
fn an_approval_after_the_expiry_time_is_refused() {
    let env = site_env(&site_config());
    write_marker_runbook(
        &env,
        "short",
        "[web1]",
        "approval: { from: internal, expires: 1s }",
    );
    let daemon = Daemon::start(&env);
    // The daemon sweeps expired gates every half second; an approval that arrives after
    // the expiry time but before the sweep must be refused all the same. Two rounds, so the
    // approval lands at different points of the sweep's period.
    for round in 1..=2 {
        let id = request_pending(&daemon, "alice", "short");
        let expires_at = gate(&get_run(&daemon, &id), 0)["expires_at"]
            .as_str()
            .map(str::to_string)
            .unwrap();
        let expires_at = chrono::DateTime::parse_from_rfc3339(&expires_at).unwrap();
        crate::harness::wait_until(SETTLE, "the expiry time to pass", || {
            chrono::Utc::now() > expires_at
        });
        let (status, body) = approve(&daemon, "ivan", &id);
        let run = get_run(&daemon, &id);
        assert_eq!(
            status, 409,
            "round {round}: an approval after expires_at was accepted: {run}"
        );
        wait_status(&daemon, &id, "expired");
        assert!(!ran(&env, &id, ""), "round {round}: {body}");
    }
}

#[test]
fn a_cancelled_run_cannot_be_approved_and_leaves_the_approvals_list() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "asks", "[web1]", "approval: { from: internal }");
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "alice", "asks");

    let (status, body) = daemon.post(
        &format!("/api/v1/runs/{id}/cancel"),
        &token("alice"),
        &json!({}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled", "{body}");

    // An approver who still has the old prompt approves it: nothing may start.
    let (status, body) = approve(&daemon, "ivan", &id);
    let run = get_run(&daemon, &id);
    assert_eq!(
        (status, run["status"].as_str()),
        (409, Some("cancelled")),
        "approving a cancelled run: {body}\n{run}"
    );
    let (status, body) = deny(&daemon, "ines", &id, "never mind");
    assert_eq!(status, 409, "denying a cancelled run: {body}");
    assert_eq!(get_run(&daemon, &id)["status"], "cancelled");
    assert_ne!(
        gate(&run, 0)["status"],
        "pending",
        "a cancelled run still waits for approval: {run}"
    );
    let (_, listed) = daemon.get("/api/v1/approvals", &token("ivan"));
    assert_eq!(listed, json!([]), "a cancelled run is offered for approval");
    assert!(!ran(&env, &id, ""), "a cancelled run ran");
    let records = audit_of(&daemon, &id);
    assert!(
        events(&records, "run_started").is_empty(),
        "{:?}",
        event_names(&records)
    );
}

#[test]
fn a_run_cancelled_at_its_mid_run_gate_leaves_the_approvals_list() {
    let env = site_env(&site_config());
    write_gated_runbook(&env, "gated", "");
    let daemon = Daemon::start(&env);
    let id = run_to_gate(&env, &daemon);
    let (_, listed) = daemon.get("/api/v1/approvals", &token("ivan"));
    assert_eq!(listed[0]["id"], json!(id), "{listed}");

    let (status, body) = daemon.post(
        &format!("/api/v1/runs/{id}/cancel"),
        &token("alice"),
        &json!({}),
    );
    assert_eq!(status, 200, "{body}");
    let run = wait_status(&daemon, &id, "cancelled");
    assert!(!ran(&env, &id, ".after"));
    assert_ne!(
        gate(&run, 1)["status"],
        "pending",
        "the gate of a cancelled run is still pending: {run}"
    );
    let (_, listed) = daemon.get("/api/v1/approvals", &token("ivan"));
    assert_eq!(listed, json!([]), "a cancelled run is offered for approval");
    let (status, body) = approve(&daemon, "ivan", &id);
    assert_eq!(status, 409, "approving the gate of a cancelled run: {body}");
}

#[test]
fn a_runbook_removed_before_approval_does_not_run() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "patch", "[web1]", "approval: { from: internal }");
    write_marker_runbook(&env, "other", "[web1]", "");
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "paula", "patch");

    std::fs::remove_file(env.path().join("runbooks/patch.yaml")).unwrap();
    let daemon = restart(&env, daemon);

    let digest_now = json!({"digest": get_run(&daemon, &id)["digest"]});
    approve_expecting_digest_mismatch(&env, &daemon, &id, digest_now);
}

/// Cancel racing an approval through the real daemon's API (the in-process race test in the
/// library runs 1,000 rounds of the same): a run the cancel ended never starts, and every
/// run's trail has exactly one `run_finished` with nothing started after it.
#[test]
fn cancel_racing_approval_through_the_api_never_starts_a_cancelled_run() {
    const ROUNDS: usize = 30;
    let env = site_env(&site_config());
    write_marker_runbook(&env, "raced", "[web1]", "approval: { from: internal }");
    let daemon = Daemon::start(&env);
    let (mut before_start, mut started) = (0, 0);
    for round in 0..ROUNDS {
        let id = request_pending(&daemon, "alice", "raced");
        let digest = get_run(&daemon, &id)["digest"].clone();
        let barrier = Barrier::new(2);
        let (approved, cancelled) = std::thread::scope(|s| {
            let approver = s.spawn(|| {
                barrier.wait();
                approve_with(&daemon, "ivan", &id, json!({"digest": digest}))
            });
            let canceller = s.spawn(|| {
                barrier.wait();
                daemon.post(
                    &format!("/api/v1/runs/{id}/cancel"),
                    &token("alice"),
                    &json!({}),
                )
            });
            (approver.join().unwrap(), canceller.join().unwrap())
        });
        let run = wait_for(SETTLE, &format!("run {id} to end"), || {
            let run = get_run(&daemon, &id);
            let status = run["status"].as_str().unwrap_or_default().to_string();
            crate::run_flow::FINAL
                .contains(&status.as_str())
                .then_some(run)
        });
        let records = audit_of(&daemon, &id);
        let names = event_names(&records);
        assert_eq!(
            events(&records, "run_finished").len(),
            1,
            "round {round}: {names:?}"
        );
        let end = names.iter().position(|n| n == "run_finished").unwrap();
        assert!(
            names[end + 1..].iter().all(|n| n == "cancel_requested"),
            "round {round}: {names:?}"
        );
        let has_start = names.iter().any(|n| n == "run_started");
        if has_start {
            started += 1;
            assert!(approved.0 == 200, "round {round}: {approved:?}");
        } else {
            before_start += 1;
            assert_eq!(run["status"], "cancelled", "round {round}: {run}");
            assert!(!ran(&env, &id, ""), "round {round}: a cancelled run ran");
            assert!(
                !names.iter().any(|n| n.starts_with("action_")),
                "round {round}: {names:?}"
            );
        }
        // The cancel answered either the run's end or that it had already ended.
        assert!(
            cancelled.0 == 200 || cancelled.0 == 409,
            "round {round}: {cancelled:?}"
        );
    }
    assert_eq!(before_start + started, ROUNDS);
    assert_audit_verifies(&env);
}
