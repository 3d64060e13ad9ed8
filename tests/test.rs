// Tests panic by design: `unwrap` and `expect` are how a test says "this cannot fail here".
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_errors;
mod approval_restart;
mod approvals;
mod audit_anchor;
mod audit_tamper;
mod crash_safety;
mod harness;
mod hostile_scripts;
mod mission;
mod notify;
mod output;
mod output_secrets;
mod party_reads;
mod rollout;
mod run_flow;
mod schedules;
mod scope_rule;
mod secret_redaction;
mod shell_grammar;
mod ssh_runs;
mod start_rule;
mod stopping_runs;
mod triggers;
mod validate;
mod web;
