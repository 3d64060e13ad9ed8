//! The store on PostgreSQL (SPEC §10): the real daemon keeps its whole state in a throwaway
//! PostgreSQL server (tests/harness/postgres.rs) instead of SQLite, and behaves the same.

use crate::approvals::{
    approve_and_see_it_run, assert_audit_verifies, get_run, racing_approvers_start_the_run_once_on,
    request_pending, site_config, site_env, write_marker_runbook,
};
use crate::harness::{token, Daemon, Postgres};

/// A run requested, raced by three approvers, run and finished with the daemon on
/// PostgreSQL: one approval counts, the run starts once, its log is read back, nothing is
/// written to SQLite, and `tandem audit verify` (reading PostgreSQL too) passes.
#[test]
fn an_approved_run_goes_end_to_end_on_postgres_and_its_chain_verifies() {
    let pg = Postgres::start();
    let config = site_config().database_url(&pg.database());
    let (env, daemon, id) = racing_approvers_start_the_run_once_on(&config);
    let (status, log) = daemon.get(&format!("/api/v1/runs/{id}/log"), &token("alice"));
    assert_eq!(status, 200, "{log}");
    assert!(
        log.to_string().contains("host web1 succeeded"),
        "the run's log is read back from PostgreSQL: {log}"
    );
    assert!(
        !env.path().join("state").join("tandem.db").exists(),
        "a PostgreSQL daemon wrote a SQLite store"
    );
    drop(daemon);
    assert_audit_verifies(&env);
}

/// An SQLite state with an approved run and a signed checkpoint is moved to PostgreSQL with
/// `tandem store migrate --to URL`: the copy is checked, a second copy into the now full
/// database is refused, the moved chain verifies and still extends the checkpoint, and a
/// daemon on PostgreSQL shows the old run and carries out new ones.
#[test]
fn an_sqlite_state_moves_to_postgres_with_its_chain_and_checkpoints() {
    let pg = Postgres::start();
    let url = pg.database();
    let env = site_env(&site_config());
    write_marker_runbook(&env, "asks", "[web1]", "approval: { from: internal }");
    let daemon = Daemon::start(&env);
    let old = request_pending(&daemon, "paula", "asks");
    approve_and_see_it_run(&env, &daemon, "ivan", &old);
    let old_run = get_run(&daemon, &old);
    drop(daemon);
    let checkpoint = env.tandem(["audit", "checkpoint"]);
    checkpoint.success();
    env.write("checkpoint.json", &checkpoint.stdout);

    env.tandem(["store", "migrate", "--to", &url])
        .success()
        .stdout_contains("ok: audit chain of ")
        .stdout_contains("runs: 1 rows");
    env.tandem(["store", "migrate", "--to", &url])
        .status(1)
        .stderr_contains("not empty");

    env.write_config(&site_config().database_url(&url).to_yaml());
    env.tandem(["audit", "verify", "--checkpoint", "checkpoint.json"])
        .success()
        .stdout_contains("extends 1 checkpoint");
    let daemon = Daemon::start(&env);
    let moved = get_run(&daemon, &old);
    assert_eq!(moved["status"], "succeeded", "{moved}");
    assert_eq!(moved["gates"], old_run["gates"], "{moved}");
    assert_eq!(moved["hosts"], old_run["hosts"], "{moved}");
    let new = request_pending(&daemon, "paula", "asks");
    approve_and_see_it_run(&env, &daemon, "ivan", &new);
    drop(daemon);
    assert_audit_verifies(&env);
}
