//! tandem: a runbook executor for co-managed IT.
//!
//! Runbooks (rhai scripts with a declared scope) run over SSH, locally or against HTTP APIs,
//! behind approval gates held by the party that owns the systems, and every action lands in a
//! hash-chained audit log. `SPEC.md` in the steering repo is the contract; this crate is one
//! package, a library plus the `tandem` binary.
//!
//! # Layout
//!
//! | module       | owns                                                                       |
//! |--------------|----------------------------------------------------------------------------|
//! | [`error`]    | the crate's error enum and the one mapping from error to exit code        |
//! | [`config`]   | typed `tandem.yaml` + inventory + secret sources; the only env reader     |
//! | [`yaml`]     | YAML → typed value with file, line, column and field path in every error  |
//! | [`runbook`]  | runbook YAML → validated model; params, targets, plan and plan digest    |
//! | [`policy`]   | pure decisions: who may start, see, cancel, freeze; who must approve;     |
//! |              | what is in scope (commands judged by a shell grammar narrower than sh)    |
//! | [`approval`] | the gate state machine: quorum, separation of duties, digest binding      |
//! | [`notify`]   | prompts and outcome notices to webhook, Slack, Teams and email targets,   |
//! |              | with retries; never blocking; outcomes come from committed audit records  |
//! | [`script`]   | the one hardened rhai engine; host functions call a [`script::HostApi`]   |
//! | [`exec`]     | run one action with a deadline: `ssh` (ssh2), `local`, `http` (reqwest)  |
//! | [`audit`]    | hash-chained records: canonical form, verify, export, signed checkpoints |
//! | [`witness`]  | the daemon's signed checkpoints of the audit log, delivered to witnesses  |
//! | [`store`]    | SQLite (WAL, migrations, group commit): runs, hosts, logs, actions, audit |
//! | [`scheduler`]| pure slot arithmetic: crontab in a zone (our own matcher: Vixie's day     |
//! |              | rule, `#`/`L`), RFC 5545 RRULE (`rrule`), offset, DST gaps and folds,    |
//! |              | jitter, windows, blackout calendars inline or from .ics (`ics`)           |
//! | [`run`]      | the orchestrator: plan → policy → gate → actions → audit; composes all;  |
//! |              | the one place reads are scoped to a party (`reads`) and freezes kept      |
//! | [`server`]   | axum router and handlers: HTTP ↔ run/store; no ssh2, no rhai             |
//! | [`cli`]      | clap arguments → calls; one file per group of subcommands; printing only |
//!
//! [`scheduler::cron`] is our own crontab matcher rather than the `cron` crate: the crate ANDs
//! day-of-month with day-of-week where crontab(5) ORs them, and has no `TUE#2` or `FRIL`.
//!
//! [`store`] is one concrete SQLite type rather than a trait: its API is "run this closure in
//! a durable transaction", which a PostgreSQL store can offer too, and the trait is best cut
//! when that second backend exists and can be tested against, not guessed at beforehand.
//!
//! Blocking work (ssh2, rhai, SQLite) never runs on a tokio worker: scripts run on
//! `spawn_blocking` threads, and the server reaches the store through `spawn_blocking`.

pub mod approval;
pub mod audit;
pub mod cli;
pub mod config;
pub mod error;
pub mod exec;
pub mod notify;
pub mod policy;
pub mod run;
pub mod runbook;
pub mod scheduler;
pub mod script;
pub mod server;
pub mod store;
pub mod witness;
pub mod yaml;

pub use error::{Error, Result};
