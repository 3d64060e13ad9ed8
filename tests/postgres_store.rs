//! The store on PostgreSQL (SPEC §10): the real daemon keeps its whole state in a throwaway
//! PostgreSQL server (tests/harness/postgres.rs) instead of SQLite, and behaves the same.

use crate::approvals::{
    assert_audit_verifies, racing_approvers_start_the_run_once_on, site_config,
};
use crate::harness::{token, Postgres};

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
