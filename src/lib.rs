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
//! | [`runbook`]  | runbook YAML → validated model; params, targets, plan and plan digest;   |
//! |              | `then:` follow-ups checked across the catalog (`chain`)                  |
//! | [`policy`]   | pure decisions: who may start, see, cancel, freeze; who must approve;     |
//! |              | what is in scope (commands judged by a shell grammar narrower than sh)    |
//! | [`approval`] | the gate state machine: quorum, separation of duties, digest binding      |
//! | [`notify`]   | prompts and outcome notices to webhook, Slack, Teams and email targets,   |
//! |              | with retries; never blocking; outcomes come from committed audit records  |
//! | [`script`]   | the one hardened rhai engine; host functions call a [`script::HostApi`]   |
//! | [`exec`]     | run one action with a deadline: `ssh` (ssh2), `local`, `http` (reqwest)  |
//! | [`state`]    | typed run, host, gate and action statuses, stored as their old strings   |
//! | [`audit`]    | hash-chained records: canonical form, verify, export, signed checkpoints; |
//! |              | [`audit::Event`], every event name                                        |
//! | [`witness`]  | the daemon's signed checkpoints of the audit log, delivered to witnesses  |
//! | [`store`]    | runs, hosts, logs, actions, audit on SQLite (WAL, group commit) or on a  |
//! |              | PostgreSQL shared by several nodes (leases, fencing tokens); migrations; |
//! |              | `Tx::transition`, a run's compare-and-set with its audit record           |
//! | [`scheduler`]| pure slot arithmetic: crontab in a zone (our own matcher: Vixie's day     |
//! |              | rule, `#`/`L`), RFC 5545 RRULE (`rrule`), offset, DST gaps and folds,    |
//! |              | jitter, windows, blackout calendars inline or from .ics (`ics`)           |
//! | [`run`]      | the orchestrator: plan → policy → gate → actions → audit → follow-ups;  |
//! |              | the one place reads are scoped to a party (`reads`) and freezes kept;     |
//! |              | [`run::lifecycle`] owns every move of a run's status                      |
//! | [`trigger`]  | alerts that start runs: config, HMAC/bearer auth, Alertmanager and       |
//! |              | generic payloads → run requests, replay/dedup/rate bookkeeping (pure)    |
//! | [`report`]   | the business-review report: patch compliance, restore tests, incidents,  |
//! |              | approvals, failures, activity, from audit records; HTML, CSV, JSON; pure  |
//! | [`server`]   | axum router and handlers: HTTP ↔ run/store; no ssh2, no rhai             |
//! | [`cli`]      | clap arguments → calls; one file per group of subcommands; printing only |
//!
//! [`scheduler::cron`] is our own crontab matcher rather than the `cron` crate: the crate ANDs
//! day-of-month with day-of-week where crontab(5) ORs them, and has no `TUE#2` or `FRIL`.
//!
//! [`store::RunStore`] is the seam in the domain's terms (create a run with its plan, move,
//! claim (start) or end it, record an action's intent and result, append to the audit log,
//! list what a party may see, the work to take up), each operation one transaction, and
//! `store::seam::contract` is the suite every backend must pass (run on SQLite and on a
//! throwaway PostgreSQL). What it does not cover yet (gates and decisions, schedules,
//! freezes, logs) goes through the store's closure-in-a-transaction API ([`store::Tx`]).
//!
//! SQLite and PostgreSQL are not two implementations of the seam but one [`store::Store`]
//! over two connections: every operation is written once against `store::db::Conn`
//! (execute / rows / row / one with typed parameters and rows) in SQL both databases accept,
//! and `store::db` translates the few differences (`?N` placeholders, `INSERT OR IGNORE`,
//! column types). A trait with one implementation per database would have meant two copies
//! of some 1,800 lines of queries that must agree to the letter; one set of statements and a
//! translator of a page keeps them one. The group commit serves both: on PostgreSQL each
//! group's transaction first takes one advisory lock, which serializes writes across nodes
//! as SQLite's one writer does in one process, so the audit chain stays linear.
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
pub mod report;
pub mod run;
pub mod runbook;
pub mod scheduler;
pub mod script;
pub mod server;
pub mod state;
pub mod store;
pub mod trigger;
pub mod witness;
pub mod yaml;

pub use error::{Error, Result};
