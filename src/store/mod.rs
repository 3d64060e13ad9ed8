//! The state store: SQLite on disk (WAL, foreign keys, versioned migrations), or a
//! PostgreSQL database several nodes share (`database_url`), holding runs, per-host results,
//! run logs, actions and the audit log. No business rules live here. Both databases run the
//! same statements through `db::Conn`; what differs is in `db` and `migrate`.
//!
//! On PostgreSQL the writer below is this node's: each group's transaction first takes
//! `pg_advisory_xact_lock`, so groups of all nodes commit one at a time and each reads the
//! audit head inside the lock. Runs are claimed with a lease and a fencing token
//! ([`Cluster`]).
//!
//! Every write goes through [`Store::tx`], which hands out a [`Tx`] that can append audit
//! records in the same transaction as the state change they describe: either both land or
//! neither does. One write connection behind a mutex is deliberate: SQLite has one writer
//! anyway, and serializing appends keeps the hash chain linear without retry loops.
//!
//! Writes are group-committed. A commit with `synchronous=FULL` waits for the disk (rule 8
//! needs an intent durable before its action runs), and a rollout has hundreds of hosts
//! writing at once, so one fsync per transaction would make the disk the bottleneck. Each
//! [`Store::tx`] runs its closure in a savepoint of the open group transaction; the writer
//! that finds nobody queued behind it commits the group, and every member returns only once
//! the group's commit is on disk (or with the commit's error). A closure that fails rolls
//! back its savepoint alone. Reads go through a second connection, which sees only
//! committed, durable data and never waits behind a commit.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rusqlite::Connection;
use serde::Serialize;
use serde_json::Value;

use crate::audit::{Actor, Event, Record, GENESIS};
use crate::policy::ApprovalRequirement;
use crate::runbook::plan::{Initiator, Plan};
use crate::state::{ActionStatus, Decision, GateStatus, HostStatus, ReviewStatus, RunStatus};

mod copy;
pub(crate) mod db;
mod log;
mod seam;
/// The throwaway PostgreSQL the integration tests use, shared with the unit tests.
#[cfg(test)]
#[path = "../../tests/harness/postgres.rs"]
#[allow(dead_code)]
pub(crate) mod test_postgres;
pub use copy::Copied;
use db::{p, Conn, Row};
pub use db::{state_column, Column, Dialect, Param, ToParam};
pub use log::{render, render_line, LineRef, LiveChunk, LogLine, RawChunk};
pub use seam::{Ending, Intent, Outcome, RunStore};

/// A failure of the store. Its message is for logs and the local CLI; the server turns it
/// into a plain "internal error" for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state store (PostgreSQL): {0}")]
    Postgres(#[from] postgres::Error),
    #[error("state store: bad row: {0}")]
    Row(String),
    #[error("state store: {0}")]
    Config(String),
    #[error(
        "state store: run {0} is executed by another node now (its lease was lost); write refused"
    )]
    Fenced(String),
    #[error("state store: cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("state store: the database is newer than this tandem (schema {0})")]
    TooNew(i64),
    #[error("state store: commit failed: {0}")]
    Commit(String),
    #[error("state store: cannot encode a record: {0}")]
    Encode(String),
    #[error("state store: cannot make {path} private to its owner: {source}")]
    Private {
        path: String,
        source: std::io::Error,
    },
}

/// The columns of a run row, in [`run_from_row`]'s order.
macro_rules! run_select {
    () => {
        "SELECT id, runbook, version, status, initiator_user, initiator_party, created_at, started_at, finished_at, digest, plan, error, break_glass, reason, slot, parent_run, ref FROM runs"
    };
}

const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        runbook TEXT NOT NULL,
        version TEXT NOT NULL,
        status TEXT NOT NULL,
        initiator_user TEXT NOT NULL,
        initiator_party TEXT NOT NULL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        digest TEXT NOT NULL,
        plan TEXT NOT NULL,
        error TEXT,
        break_glass INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        slot TEXT UNIQUE
    );
    CREATE INDEX runs_status ON runs(status);
    CREATE TABLE host_results (
        run_id TEXT NOT NULL REFERENCES runs(id),
        host TEXT NOT NULL,
        position INTEGER NOT NULL,
        status TEXT NOT NULL,
        exit_code INTEGER,
        started_at TEXT,
        finished_at TEXT,
        error TEXT,
        PRIMARY KEY (run_id, host)
    );
    CREATE TABLE logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs(id),
        ts TEXT NOT NULL,
        host TEXT,
        stream TEXT NOT NULL,
        line TEXT NOT NULL
    );
    CREATE INDEX logs_run ON logs(run_id, id);
    CREATE TABLE actions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs(id),
        host TEXT,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE INDEX actions_open ON actions(status);
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        actor TEXT NOT NULL,
        run_id TEXT,
        event TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_run ON audit(run_id);
    "#,
    // 2: approval gates, decisions, break-glass reviews.
    r#"
    CREATE TABLE gates (
        run_id TEXT NOT NULL REFERENCES runs(id),
        gate INTEGER NOT NULL,
        reason TEXT NOT NULL,
        host TEXT,
        requirements TEXT NOT NULL,
        status TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        decided_at TEXT,
        PRIMARY KEY (run_id, gate)
    );
    CREATE INDEX gates_pending ON gates(status, expires_at);
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        gate INTEGER NOT NULL,
        party TEXT NOT NULL,
        "user" TEXT NOT NULL,
        decision TEXT NOT NULL,
        comment TEXT,
        digest TEXT NOT NULL,
        ts TEXT NOT NULL,
        UNIQUE (run_id, gate, "user"),
        FOREIGN KEY (run_id, gate) REFERENCES gates(run_id, gate)
    );
    CREATE TABLE reviews (
        run_id TEXT PRIMARY KEY REFERENCES runs(id),
        parties TEXT NOT NULL,
        status TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        reviewed_by TEXT,
        comment TEXT,
        reviewed_at TEXT
    );
    "#,
    // 3: schedules: the last slot handled per runbook, standing approvals.
    r#"
    CREATE TABLE schedule_state (
        runbook TEXT PRIMARY KEY,
        last_slot TEXT NOT NULL
    );
    CREATE TABLE standing_approvals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        runbook TEXT NOT NULL,
        digest TEXT NOT NULL,
        party TEXT NOT NULL,
        "user" TEXT NOT NULL,
        granted_at TEXT NOT NULL,
        until TEXT NOT NULL,
        comment TEXT
    );
    CREATE INDEX standing_lookup ON standing_approvals(runbook, digest, until);
    CREATE INDEX runs_runbook_slot ON runs(runbook, slot);
    "#,
    // 4: host freezes (rule 11): one row per frozen host, removed when lifted.
    r#"
    CREATE TABLE IF NOT EXISTS freezes (
        host TEXT PRIMARY KEY,
        party TEXT NOT NULL,
        reason TEXT NOT NULL,
        frozen_by TEXT NOT NULL,
        frozen_at TEXT NOT NULL
    );
    "#,
    // 5: run logs as chunks of bytes (see `log`); the line rows of older runs become
    // one-line chunks, numbered in their order.
    r#"
    CREATE TABLE log_chunks (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        host TEXT,
        stream TEXT NOT NULL,
        first_line INTEGER NOT NULL,
        last_line INTEGER NOT NULL,
        ts TEXT NOT NULL,
        bytes BLOB NOT NULL
    );
    CREATE INDEX log_chunks_run ON log_chunks(run_id, last_line);
    INSERT INTO log_chunks (run_id, host, stream, first_line, last_line, ts, bytes)
        SELECT run_id, host, stream, n, n, ts, CAST(line || char(10) AS BLOB) FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY run_id ORDER BY id) AS n FROM logs
        ) ORDER BY id;
    DROP TABLE logs;
    "#,
    // 6 (chained runs): a follow-up run names the run whose `then:` started it.
    r#"
    ALTER TABLE runs ADD COLUMN parent_run TEXT REFERENCES runs(id);
    CREATE INDEX runs_parent ON runs(parent_run);
    "#,
    // 7 (run ref): the reference a run carries (a ticket number), from
    // `run --ref`, the API or a trigger; listed by it.
    r#"
    ALTER TABLE runs ADD COLUMN ref TEXT;
    CREATE INDEX runs_ref ON runs(ref);
    "#,
    // 8 (the console): listings walk runs newest first, a host's runs are found from the
    // host, and the home page finds the latest records of an event (checkpoint deliveries).
    r#"
    CREATE INDEX runs_created ON runs(created_at, id);
    CREATE INDEX runs_status_created ON runs(status, created_at, id);
    CREATE INDEX host_results_host ON host_results(host, run_id);
    CREATE INDEX audit_event ON audit(event, seq);
    "#,
    // 9 (several nodes): the lease of the node executing a run, and its fencing token,
    // incremented at each claim (SPEC §10). Unused on SQLite: one process owns its runs.
    r#"
    ALTER TABLE runs ADD COLUMN lease_node TEXT;
    ALTER TABLE runs ADD COLUMN lease_until TEXT;
    ALTER TABLE runs ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX runs_lease ON runs(status, lease_until);
    "#,
];

/// Now, as RFC 3339 UTC with milliseconds: the form of every timestamp in the store, so
/// timestamps compare as strings in time order.
pub fn now() -> String {
    now_at(chrono::Utc::now())
}

/// An instant in the store's timestamp form.
pub fn now_at(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The state store: SQLite in the state directory, or a PostgreSQL database shared by
/// several nodes. Both run the same operations (see [`db`]); only the connection differs.
pub struct Store {
    writer: Mutex<Writer>,
    /// Which groups are resolved, and how. Members wait for their group here rather than
    /// on the writer lock: woken, they return at once instead of queueing again for the
    /// writer, which by then the next group holds for its work and its fsync.
    resolution: Mutex<Resolution>,
    /// Signalled whenever a commit group is resolved.
    resolved: Condvar,
    /// Writers waiting for the writer lock: while there are any, the group stays open.
    queued: AtomicUsize,
    /// The read connection: it sees committed data only.
    reader: Mutex<Conn>,
    /// Log chunks handed to live followers as they are written, before their commit.
    live: log::LiveFeed,
    /// Told about committed audit records of the events it watches (see [`Store::observe`]).
    observer: OnceLock<Observer>,
    /// Set when several nodes share this store (PostgreSQL): runs are claimed with leases.
    cluster: Option<Cluster>,
}

/// This node's part in a store several nodes share (SPEC §10). A run is executed by the
/// node that claimed it: the claim sets the run's lease (node, expiry) and increments its
/// fencing token, which this node keeps in `held`. Every write of the run's results checks
/// that the token is still the run's: once a survivor has taken the run over (after the
/// lease expired), the old node's writes are refused.
pub struct Cluster {
    /// This node's id: host name, process id and a random suffix.
    pub node: String,
    /// How long a lease lasts unless renewed; renewed every third of it.
    pub lease: Duration,
    /// The fencing token of each run this node claimed.
    held: Mutex<std::collections::HashMap<String, i64>>,
    target: std::sync::Arc<db::PgTarget>,
    /// The connection holding the scheduler's session advisory lock, while this node leads.
    leader: Mutex<Option<Conn>>,
}

impl Cluster {
    fn held(&self) -> MutexGuard<'_, std::collections::HashMap<String, i64>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The most runs one query of a listing reads (see [`Store::runs_where`]).
const RUNS_PER_QUERY: usize = 256;

/// The default lease of a run's executing node. SPEC §10 wants a dead node's runs taken
/// over within 15 s by default: the lease plus the one-second sweep that finds it lapsed.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(14);

/// The session advisory lock the scheduler's leader holds.
const PG_SCHEDULER_LOCK: i64 = 0x7461_6e64_656d_0003;

/// A listener for committed audit records.
struct Observer {
    events: &'static [Event],
    tell: Box<dyn Fn(Vec<Record>) + Send + Sync>,
}

/// The write connection and its commit groups.
struct Writer {
    conn: Conn,
    /// The group whose transaction is open.
    open: Option<u64>,
    /// The last group numbered.
    numbered: u64,
    /// A member's savepoint could not be rolled back: the open group must not commit.
    poisoned: Option<String>,
}

/// Groups up to `resolved` are committed or failed.
#[derive(Default)]
struct Resolution {
    resolved: u64,
    /// The latest groups whose commit failed, with the error.
    failed: VecDeque<(u64, String)>,
}

/// The advisory lock every PostgreSQL write transaction takes first, for its whole length:
/// writes are serialized across nodes as SQLite serializes them in one process, so the
/// audit chain stays one linear chain, log lines are numbered densely, and two store
/// transactions never wait on each other's rows (no deadlocks).
const PG_WRITE_LOCK: i64 = 0x7461_6e64_656d_0001;
/// The advisory lock migrations take, so nodes starting together migrate once.
const PG_MIGRATE_LOCK: i64 = 0x7461_6e64_656d_0002;

impl Writer {
    /// Opens a group's transaction.
    fn begin(&mut self) -> Result<(), StoreError> {
        match self.conn.dialect() {
            Dialect::Sqlite => self.conn.batch("BEGIN IMMEDIATE"),
            Dialect::Postgres => {
                self.conn.reopen_if_lost()?;
                self.conn.batch(&format!(
                    "BEGIN; SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})"
                ))?;
                Ok(())
            }
        }
    }

    /// Commits the open group and wakes its members.
    fn commit(&mut self, resolution: &Mutex<Resolution>, resolved: &Condvar) {
        let Some(group) = self.open.take() else {
            return;
        };
        let failed = match self.poisoned.take() {
            Some(e) => Some(e),
            None => self.conn.batch("COMMIT").err().map(|e| e.to_string()),
        };
        if let Some(e) = &failed {
            tracing::error!(error = %e, "state store: commit failed");
            let _ = self.conn.batch("ROLLBACK");
        }
        let mut r = resolution.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = failed {
            if r.failed.len() >= 64 {
                r.failed.pop_front();
            }
            r.failed.push_back((group, e));
        }
        r.resolved = group;
        drop(r);
        resolved.notify_all();
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// A run as stored and as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub runbook: String,
    pub version: String,
    pub status: RunStatus,
    pub initiator: Initiator,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub digest: String,
    pub plan: Plan,
    pub error: Option<String>,
    pub break_glass: bool,
    pub reason: Option<String>,
    pub slot: Option<String>,
    /// The reference the run carries (a ticket number), if any.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub hosts: Vec<HostResult>,
    /// Approval gates: gate 0 is the start gate, 1.. are `gate()` calls in the script.
    pub gates: Vec<GateRow>,
    /// The after-the-fact review of a break-glass run.
    pub review: Option<ReviewRow>,
    /// The run whose `then:` follow-up this run is.
    pub parent_run: Option<String>,
    /// The follow-up runs this run started, oldest first.
    pub children: Vec<String>,
}

/// One approval gate of a run and the decisions on it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GateRow {
    pub gate: i64,
    pub reason: String,
    pub host: Option<String>,
    /// Who must approve.
    pub requirements: Vec<ApprovalRequirement>,
    pub status: GateStatus,
    pub requested_at: String,
    pub expires_at: String,
    pub decided_at: Option<String>,
    pub decisions: Vec<DecisionRow>,
}

/// One approver's decision.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecisionRow {
    pub party: String,
    pub user: String,
    pub decision: Decision,
    pub comment: Option<String>,
    pub digest: String,
    pub ts: String,
}

/// The review a break-glass run owes its owners.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReviewRow {
    pub parties: Vec<String>,
    pub status: ReviewStatus,
    pub requested_at: String,
    pub reviewed_by: Option<String>,
    pub comment: Option<String>,
    pub reviewed_at: Option<String>,
}

/// One host's part of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostResult {
    pub host: String,
    pub status: HostStatus,
    pub exit_code: Option<i64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
}

/// The fields of a new run.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub id: &'a str,
    pub runbook: &'a str,
    pub version: &'a str,
    /// `queued` or `awaiting_approval`: a run is created before anything of it starts.
    pub status: RunStatus,
    pub initiator_user: &'a str,
    pub initiator_party: &'a str,
    pub digest: &'a str,
    pub plan: &'a Plan,
    pub break_glass: bool,
    pub reason: Option<&'a str>,
    pub slot: Option<&'a str>,
    /// The run's reference (a ticket number), already validated.
    pub reference: Option<&'a str>,
    pub hosts: &'a [String],
    /// The run whose follow-up this is.
    pub parent_run: Option<&'a str>,
}

/// The audit record a [`Tx::transition`] writes with the change it describes.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub actor: &'a Actor,
    pub event: Event,
    pub detail: Value,
}

/// What a [`Tx::transition`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Transitioned {
    /// The run moved; `seq` is the audit record written with the move.
    Moved { seq: u64 },
    /// The run was not in `from` (its status now; `None`: no such run). Nothing was written.
    Refused(Option<RunStatus>),
}

impl Transitioned {
    /// Whether the run moved.
    pub fn moved(&self) -> bool {
        matches!(self, Transitioned::Moved { .. })
    }
}

/// One approver's decision on one gate, as recorded.
#[derive(Debug, Clone)]
pub struct NewDecision<'a> {
    pub run_id: &'a str,
    pub gate: i64,
    pub party: &'a str,
    pub user: &'a str,
    pub decision: Decision,
    pub comment: Option<&'a str>,
    /// The digest the decision is bound to.
    pub digest: &'a str,
}

/// A frozen host (rule 11): no action runs on it until its owner lifts the freeze.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FreezeRow {
    pub host: String,
    /// The owning party that froze it; only it lifts the freeze.
    pub party: String,
    pub reason: String,
    pub frozen_by: String,
    pub frozen_at: String,
}

/// The newest result of one host ([`Store::last_host_results`]).
#[derive(Debug, Clone)]
pub struct LastHostResult {
    pub host: String,
    pub run_id: String,
    pub status: crate::state::HostStatus,
    pub at: Option<String>,
}

/// Which runs a listing wants: all of them when every field is `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFilter<'a> {
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs older than this run id (a page cursor).
    pub before: Option<&'a str>,
    /// Only runs carrying exactly this reference.
    pub reference: Option<&'a str>,
    /// Only runs of this runbook.
    pub runbook: Option<&'a str>,
    /// Only runs started by this party.
    pub party: Option<&'a str>,
    /// Only runs with this target host.
    pub host: Option<&'a str>,
    /// Only runs created at or after this time (RFC 3339 UTC, compared as the store's
    /// timestamps are: as strings).
    pub since: Option<&'a str>,
    /// Only runs created before this time (RFC 3339 UTC).
    pub until: Option<&'a str>,
}

/// An action that was recorded as intended but never got a result.
#[derive(Debug, Clone)]
pub struct OpenAction {
    pub id: i64,
    pub run_id: String,
    pub host: Option<String>,
    pub kind: String,
    pub target: String,
}

impl Store {
    /// Opens (creating if needed) `state_dir/tandem.db` and brings its schema up to date.
    /// The state directory is made 0700 and the database 0600 (see [`private_file`]).
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Dir {
            path: state_dir.display().to_string(),
            source,
        })?;
        make_private(state_dir, 0o700)?;
        Store::open_file(&state_dir.join("tandem.db"))
    }

    /// The store a config names: its `database_url` (PostgreSQL) if set, else SQLite in its
    /// state directory. Blocking: call it off the async workers.
    pub fn for_config(config: &crate::config::Config) -> Result<Store, StoreError> {
        match &config.database_url {
            Some(url) => Store::connect_with_lease(url.expose(), config.lease_timeout),
            None => Store::open(&config.state_dir),
        }
    }

    /// Opens a database file, created 0600 (with its `-wal` and `-shm`) whatever the umask.
    pub fn open_file(path: &Path) -> Result<Store, StoreError> {
        private_file(path)?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: an action's intent must survive a power cut before the action runs (rule 8).
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(64);
        let conn = Conn::Lite(conn);
        migrate(&conn)?;
        // SQLite gives the WAL files the database file's mode; set it anyway, in case they
        // were left behind by an older tandem with a looser umask.
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            let side = std::path::PathBuf::from(side);
            if side.exists() {
                make_private(&side, 0o600)?;
            }
        }
        let reader = Connection::open(path)?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        reader.pragma_update(None, "query_only", true)?;
        reader.set_prepared_statement_cache_capacity(64);
        Ok(Store::with(conn, Conn::Lite(reader)))
    }

    /// Connects to a PostgreSQL database (`postgres://…`, TLS per its `sslmode`) and brings
    /// its schema up to date; several nodes may share it, each run executed under a lease
    /// of [`DEFAULT_LEASE`].
    pub fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with_lease(url, DEFAULT_LEASE)
    }

    /// [`Store::connect`] with runs' leases lasting `lease`.
    pub fn connect_with_lease(url: &str, lease: Duration) -> Result<Store, StoreError> {
        let target = std::sync::Arc::new(db::PgTarget::parse(url)?);
        let writer = target.connect()?;
        migrate(&writer)?;
        let reader = target.connect()?;
        let mut store = Store::with(writer, reader);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "node".into());
        let mut suffix = [0u8; 4];
        let _ = getrandom::fill(&mut suffix);
        store.cluster = Some(Cluster {
            node: format!("{host}-{}-{}", std::process::id(), hex::encode(suffix)),
            lease,
            held: Mutex::default(),
            target,
            leader: Mutex::new(None),
        });
        Ok(store)
    }

    /// This node's part in a cluster, when several nodes share the store.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// Stops renewing this node's lease on a run whose executor finished (the run ended, or
    /// could not be ended: then its lease lapses and a survivor settles it).
    pub fn release(&self, id: &str) {
        if let Some(c) = &self.cluster {
            c.held().remove(id);
        }
    }

    /// Renews the leases of the runs this node executes; returns how many are still its.
    pub fn renew_leases(&self) -> Result<usize, StoreError> {
        let Some(c) = &self.cluster else {
            return Ok(0);
        };
        let held: Vec<(String, i64)> = c.held().iter().map(|(k, v)| (k.clone(), *v)).collect();
        if held.is_empty() {
            return Ok(0);
        }
        let until = lease_until(c.lease);
        self.tx(|tx| {
            let mut kept = 0;
            for (id, token) in &held {
                kept += tx.tx.execute(
                    "UPDATE runs SET lease_until = ?3 WHERE id = ?1 AND lease_token = ?2 AND status = ?4",
                    p![id, token, until, RunStatus::Running],
                )?;
            }
            Ok(kept)
        })
    }

    /// Running runs whose lease expired (their node died, or lost the database for longer
    /// than the lease): the runs a survivor takes over.
    pub fn expired_leases(&self) -> Result<Vec<String>, StoreError> {
        self.lock()?.rows(
            "SELECT id FROM runs WHERE status = ?1 AND lease_until < ?2 ORDER BY id",
            p![RunStatus::Running, now()],
            |r| r.get(0),
        )
    }

    /// Whether this node leads the scheduler: it holds a session advisory lock on a
    /// connection of its own, so it leads until it dies or loses the database, and then
    /// another node takes over. Always `true` on SQLite (one process).
    pub fn lead_scheduler(&self) -> bool {
        let Some(c) = &self.cluster else {
            return true;
        };
        let mut leader = c.leader.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = leader.as_ref() {
            if conn.batch("SELECT 1").is_ok() {
                return true;
            }
            *leader = None;
        }
        let Ok(conn) = c.target.connect() else {
            return false;
        };
        let got: Result<bool, StoreError> = conn.one(
            "SELECT pg_try_advisory_lock(?1)",
            p![PG_SCHEDULER_LOCK],
            |r| r.get::<bool>(0),
        );
        if got.unwrap_or(false) {
            tracing::info!(node = %c.node, "this node now leads the scheduler");
            *leader = Some(conn);
            true
        } else {
            false
        }
    }

    fn with(writer: Conn, reader: Conn) -> Store {
        Store {
            writer: Mutex::new(Writer {
                conn: writer,
                open: None,
                numbered: 0,
                poisoned: None,
            }),
            resolution: Mutex::new(Resolution::default()),
            resolved: Condvar::new(),
            queued: AtomicUsize::new(0),
            reader: Mutex::new(reader),
            live: log::LiveFeed::default(),
            observer: OnceLock::new(),
            cluster: None,
        }
    }

    /// Which database this store speaks to.
    pub fn dialect(&self) -> Dialect {
        self.lock_writer().conn.dialect()
    }

    // A panic while holding either lock leaves the database consistent (an open savepoint
    // rolls back on drop, and a group left open is committed by its next member to wake),
    // so a poisoned lock is safe to keep using.
    fn lock(&self) -> Result<MutexGuard<'_, Conn>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        conn.reopen_if_lost()?;
        Ok(conn)
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_resolution(&self) -> MutexGuard<'_, Resolution> {
        self.resolution.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits up to `timeout` for `group` to resolve; whether it did.
    fn wait_resolved(&self, group: u64, timeout: Duration) -> bool {
        let r = self.lock_resolution();
        let (r, _) = self
            .resolved
            .wait_timeout_while(r, timeout, |r| r.resolved < group)
            .unwrap_or_else(|p| p.into_inner());
        r.resolved >= group
    }

    /// Runs `f` in one transaction and returns once it is durable: when `f` returns `Ok`
    /// its writes are committed, when it returns `Err` none of them are.
    pub fn tx<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let mut w = self.lock_writer();
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let group = match w.open {
            Some(g) => g,
            None => {
                w.begin()?;
                w.numbered += 1;
                w.open = Some(w.numbered);
                w.numbered
            }
        };
        let watched = self.observer.get().map_or(&[][..], |o| o.events);
        let out = in_savepoint(&mut w, &self.live, self.cluster.as_ref(), watched, f);
        // The last writer in line commits; the others wait for it. Every member blocks until
        // its group resolves, so a group grows to at most the number of writing threads. A
        // member that wakes to find its group still open with nobody queued (its committer
        // panicked) commits it.
        let mut writer = Some(w);
        loop {
            let mut w = match writer.take() {
                Some(w) => w,
                None => self.lock_writer(),
            };
            // Not open any more: committed (or failed) by another member.
            if w.open != Some(group) {
                break;
            }
            if self.queued.load(Ordering::SeqCst) == 0 {
                w.commit(&self.resolution, &self.resolved);
                break;
            }
            drop(w);
            if self.wait_resolved(group, Duration::from_millis(100)) {
                break;
            }
        }
        let (out, seen) = out?;
        let failed = self
            .lock_resolution()
            .failed
            .iter()
            .find(|(g, _)| *g == group)
            .map(|(_, e)| e.clone());
        if let Some(e) = failed {
            return Err(StoreError::Commit(e));
        }
        if let (false, Some(o)) = (seen.is_empty(), self.observer.get()) {
            (o.tell)(seen);
        }
        Ok(out)
    }

    /// Calls `tell` with the audit records of `events` each transaction appended, once that
    /// transaction is durable, on the committing thread and after the write lock is
    /// released; `tell` must return quickly (hand the work to a task). One observer per
    /// store; a second call is ignored.
    pub fn observe(
        &self,
        events: &'static [Event],
        tell: impl Fn(Vec<Record>) + Send + Sync + 'static,
    ) {
        let _ = self.observer.set(Observer {
            events,
            tell: Box::new(tell),
        });
    }

    /// Appends one audit record on its own.
    pub fn audit(
        &self,
        actor: &Actor,
        run_id: Option<&str>,
        event: Event,
        detail: Value,
    ) -> Result<Record, StoreError> {
        self.tx(|tx| tx.audit(actor, run_id, event, detail))
    }

    /// One run with its host results, gates and review.
    pub fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        run_by_id(&*self.lock()?, id)
    }

    /// How many parents a run has above it (0 for a run nobody chained), counted up to
    /// `limit`: the walk stops there, whatever the rows say.
    pub fn chain_depth(&self, id: &str, limit: usize) -> Result<usize, StoreError> {
        let conn = self.lock()?;
        let mut current = id.to_string();
        let mut depth = 0;
        while depth < limit {
            let parent: Option<String> = conn
                .row(
                    "SELECT parent_run FROM runs WHERE id = ?1",
                    p![current],
                    |r| r.get(0),
                )?
                .flatten();
            match parent {
                Some(p) => {
                    depth += 1;
                    current = p;
                }
                None => break,
            }
        }
        Ok(depth)
    }

    /// Runs, newest first, optionally only those in `status`.
    pub fn runs(&self, status: Option<RunStatus>, limit: usize) -> Result<Vec<RunRow>, StoreError> {
        let conn = self.lock()?;
        let rows = conn.rows(
            concat!(
                run_select!(),
                " WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1) ORDER BY created_at DESC, id DESC LIMIT ?2"
            ),
            p![status, limit as i64],
            run_from_row,
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for mut r in rows {
            fill(&conn, &mut r)?;
            out.push(r);
        }
        Ok(out)
    }

    /// Audit records with seq greater than `after`, at most `limit`.
    pub fn audit_records(&self, after: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.lock()?.rows(
            "SELECT seq, ts, actor, run_id, event, detail, prev_hash, hash FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            p![after as i64, limit as i64],
            record_from_row,
        )
    }

    /// The newest `limit` audit records of either event, newest first (an index on the
    /// event finds them without reading the log).
    pub fn audit_latest(
        &self,
        events: [Event; 2],
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.lock()?.rows(
            "SELECT seq, ts, actor, run_id, event, detail, prev_hash, hash FROM audit \
             WHERE event = ?1 OR event = ?2 ORDER BY seq DESC LIMIT ?3",
            p![events[0], events[1], limit as i64],
            record_from_row,
        )
    }

    /// Actions recorded as intended with no result yet, of runs in `status`.
    pub fn open_actions(&self) -> Result<Vec<OpenAction>, StoreError> {
        self.lock()?.rows(
            "SELECT id, run_id, host, kind, target FROM actions WHERE status = ?1 ORDER BY id",
            p![ActionStatus::Intent],
            |r| {
                Ok(OpenAction {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    host: r.get(2)?,
                    kind: r.get(3)?,
                    target: r.get(4)?,
                })
            },
        )
    }

    /// The status of one gate.
    pub fn gate_status(&self, run_id: &str, gate: i64) -> Result<Option<GateStatus>, StoreError> {
        self.lock()?.row(
            "SELECT status FROM gates WHERE run_id = ?1 AND gate = ?2",
            p![run_id, gate],
            |r| r.get(0),
        )
    }

    /// Runs with a pending gate, oldest first.
    pub fn runs_with_pending_gates(&self) -> Result<Vec<RunRow>, StoreError> {
        self.runs_listed(
            "SELECT run_id FROM gates WHERE status = ?1 GROUP BY run_id ORDER BY MIN(requested_at)",
            GateStatus::Pending.as_str(),
        )
    }

    /// Break-glass runs whose review is still open.
    pub fn open_reviews(&self) -> Result<Vec<RunRow>, StoreError> {
        self.runs_listed(
            "SELECT run_id FROM reviews WHERE status = ?1 ORDER BY requested_at",
            ReviewStatus::Open.as_str(),
        )
    }

    /// The whole runs whose ids `ids_sql` selects (with `status` as `?1`), in its order.
    fn runs_listed(&self, ids_sql: &'static str, status: &str) -> Result<Vec<RunRow>, StoreError> {
        let conn = self.lock()?;
        let ids: Vec<String> = conn.rows(ids_sql, p![status], |r| r.get(0))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = run_by_id(&conn, &id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// (id, status, slot) of runs in one of `statuses`.
    pub fn runs_in(
        &self,
        statuses: &[RunStatus],
    ) -> Result<Vec<(String, RunStatus, Option<String>)>, StoreError> {
        let conn = self.lock()?;
        let mut out = Vec::new();
        for s in statuses {
            out.extend(conn.rows(
                "SELECT id, status, slot FROM runs WHERE status = ?1 ORDER BY created_at",
                p![s],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?);
        }
        Ok(out)
    }
}

/// Brings a database's schema up to date; refuses one newer than this tandem. SQLite keeps
/// its version in `user_version`, PostgreSQL in a `schema_version` table, migrated under
/// an advisory lock so nodes starting together migrate once.
fn migrate(conn: &Conn) -> Result<(), StoreError> {
    let latest = MIGRATIONS.len() as i64;
    match conn.dialect() {
        Dialect::Sqlite => {
            let version: i64 = conn.one("PRAGMA user_version", p![], |r| r.get(0))?;
            if version > latest {
                return Err(StoreError::TooNew(version));
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                conn.batch("BEGIN")?;
                let applied = conn
                    .batch(sql)
                    .and_then(|()| conn.batch(&format!("PRAGMA user_version = {}", i + 1)))
                    .and_then(|()| conn.batch("COMMIT"));
                if let Err(e) = applied {
                    let _ = conn.batch("ROLLBACK");
                    return Err(e);
                }
            }
        }
        Dialect::Postgres => {
            conn.batch(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({PG_MIGRATE_LOCK});
                 CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);"
            ))?;
            let applied = (|| {
                let version: Option<i64> =
                    conn.row("SELECT version FROM schema_version", p![], |r| r.get(0))?;
                let version = match version {
                    Some(v) => v,
                    None => {
                        conn.execute("INSERT INTO schema_version (version) VALUES (0)", p![])?;
                        0
                    }
                };
                if version > latest {
                    return Err(StoreError::TooNew(version));
                }
                for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                    conn.batch(&pg_migration(i, sql))?;
                }
                conn.execute("UPDATE schema_version SET version = ?1", p![latest])?;
                conn.batch("COMMIT")
            })();
            if let Err(e) = applied {
                let _ = conn.batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
}

/// An audit row as a record. A row whose JSON was tampered with still yields a record;
/// verify then reports the hash mismatch at its seq.
fn record_from_row(r: &db::Row<'_>) -> Result<Record, StoreError> {
    let actor: String = r.get(2)?;
    let detail: String = r.get(5)?;
    Ok(Record {
        seq: r.get::<i64>(0)? as u64,
        ts: r.get(1)?,
        actor: serde_json::from_str(&actor).unwrap_or(Actor::System(actor)),
        run_id: r.get(3)?,
        event: r.get(4)?,
        detail: serde_json::from_str(&detail).unwrap_or(Value::String(detail)),
        prev_hash: r.get(6)?,
        hash: r.get(7)?,
    })
}

/// Migration `i` as PostgreSQL runs it: the same schema in its types; the one data
/// conversion SQLite needed (old line rows into chunks) has nothing to convert there.
fn pg_migration(i: usize, sql: &str) -> String {
    match i {
        4 => db::pg_ddl(
            "CREATE TABLE log_chunks (
                id INTEGER PRIMARY KEY,
                run_id TEXT NOT NULL REFERENCES runs(id),
                host TEXT,
                stream TEXT NOT NULL,
                first_line INTEGER NOT NULL,
                last_line INTEGER NOT NULL,
                ts TEXT NOT NULL,
                bytes BLOB NOT NULL
            );
            CREATE INDEX log_chunks_run ON log_chunks(run_id, last_line);
            DROP TABLE logs;",
        ),
        _ => db::pg_ddl(sql),
    }
}

fn run_from_row(r: &Row<'_>) -> Result<RunRow, StoreError> {
    Ok(RunRow {
        id: r.get(0)?,
        runbook: r.get(1)?,
        version: r.get(2)?,
        status: r.get(3)?,
        initiator: Initiator {
            user: r.get(4)?,
            party: r.get(5)?,
        },
        created_at: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
        digest: r.get(9)?,
        plan: r.json(10)?,
        error: r.get(11)?,
        break_glass: r.get(12)?,
        reason: r.get(13)?,
        slot: r.get(14)?,
        reference: r.get(16)?,
        hosts: Vec::new(),
        gates: Vec::new(),
        review: None,
        parent_run: r.get(15)?,
        children: Vec::new(),
    })
}

/// Loads a run's hosts, gates with their decisions, and review.
fn fill(conn: &Conn, r: &mut RunRow) -> Result<(), StoreError> {
    r.hosts = host_results(conn, &r.id)?;
    r.gates = gates(conn, &r.id)?;
    r.review = review(conn, &r.id)?;
    r.children = children(conn, &r.id)?;
    Ok(())
}

/// The follow-up runs a run started, oldest first.
fn children(conn: &Conn, run_id: &str) -> Result<Vec<String>, StoreError> {
    conn.rows(
        "SELECT id FROM runs WHERE parent_run = ?1 ORDER BY created_at, id",
        p![run_id],
        |r| r.get(0),
    )
}

/// The break-glass review of a run, if it has one.
fn review(conn: &Conn, run_id: &str) -> Result<Option<ReviewRow>, StoreError> {
    conn.row(
        "SELECT parties, status, requested_at, reviewed_by, comment, reviewed_at FROM reviews WHERE run_id = ?1",
        p![run_id],
        |x| {
            Ok(ReviewRow {
                parties: x.json(0)?,
                status: x.get(1)?,
                requested_at: x.get(2)?,
                reviewed_by: x.get(3)?,
                comment: x.get(4)?,
                reviewed_at: x.get(5)?,
            })
        },
    )
}

fn gates(conn: &Conn, run_id: &str) -> Result<Vec<GateRow>, StoreError> {
    let mut rows = conn.rows(
        "SELECT gate, reason, host, requirements, status, requested_at, expires_at, decided_at FROM gates WHERE run_id = ?1 ORDER BY gate",
        p![run_id],
        |r| {
            Ok(GateRow {
                gate: r.get(0)?,
                reason: r.get(1)?,
                host: r.get(2)?,
                requirements: r.json(3)?,
                status: r.get(4)?,
                requested_at: r.get(5)?,
                expires_at: r.get(6)?,
                decided_at: r.get(7)?,
                decisions: Vec::new(),
            })
        },
    )?;
    let decisions = conn.rows(
        "SELECT gate, party, \"user\", decision, comment, digest, ts FROM decisions WHERE run_id = ?1 ORDER BY id",
        p![run_id],
        |r| {
            Ok((
                r.get::<i64>(0)?,
                DecisionRow {
                    party: r.get(1)?,
                    user: r.get(2)?,
                    decision: r.get(3)?,
                    comment: r.get(4)?,
                    digest: r.get(5)?,
                    ts: r.get(6)?,
                },
            ))
        },
    )?;
    for (gate, d) in decisions {
        if let Some(g) = rows.iter_mut().find(|g| g.gate == gate) {
            g.decisions.push(d);
        }
    }
    Ok(rows)
}

fn host_results(conn: &Conn, run_id: &str) -> Result<Vec<HostResult>, StoreError> {
    conn.rows(
        "SELECT host, status, exit_code, started_at, finished_at, error FROM host_results WHERE run_id = ?1 ORDER BY position",
        p![run_id],
        |r| {
            let started_at: Option<String> = r.get(3)?;
            let finished_at: Option<String> = r.get(4)?;
            Ok(HostResult {
                host: r.get(0)?,
                status: r.get(1)?,
                exit_code: r.get(2)?,
                duration_ms: duration_ms(started_at.as_deref(), finished_at.as_deref()),
                started_at,
                finished_at,
                error: r.get(5)?,
            })
        },
    )
}

fn duration_ms(start: Option<&str>, end: Option<&str>) -> Option<i64> {
    let s = chrono::DateTime::parse_from_rfc3339(start?).ok()?;
    let e = chrono::DateTime::parse_from_rfc3339(end?).ok()?;
    Some((e - s).num_milliseconds())
}

/// A savepoint of the open group that rolls back unless released, even when its closure
/// panics.
struct Savepoint<'a> {
    conn: &'a Conn,
    released: bool,
}

impl Savepoint<'_> {
    fn rollback(mut self) -> Result<(), StoreError> {
        self.released = true;
        self.conn.batch("ROLLBACK TO tx; RELEASE tx")
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.conn.batch("ROLLBACK TO tx; RELEASE tx");
        }
    }
}

/// Runs `f` in a savepoint of the open group: kept when `f` returns `Ok`, rolled back when
/// it returns `Err` (or panics). A savepoint that cannot be rolled back poisons the group,
/// so none of its members is told it committed.
fn in_savepoint<T>(
    w: &mut Writer,
    live: &log::LiveFeed,
    cluster: Option<&Cluster>,
    watched: &'static [Event],
    f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
) -> Result<(T, Vec<Record>), StoreError> {
    if let Err(e) = w.conn.batch("SAVEPOINT tx") {
        w.poisoned = Some(e.to_string());
        return Err(e);
    }
    let sp = Savepoint {
        conn: &w.conn,
        released: false,
    };
    let tx = Tx {
        tx: &w.conn,
        live,
        cluster,
        fenced: RefCell::new(Vec::new()),
        appended: Default::default(),
        watched,
        seen: RefCell::new(Vec::new()),
    };
    let out = f(&tx);
    let appended = tx.appended.take();
    let seen = tx.seen.into_inner();
    let kept = match out {
        Ok(out) => {
            let mut sp = sp;
            sp.released = true;
            w.conn.batch("RELEASE tx").map(|()| out)
        }
        Err(e) => Err(sp.rollback().err().unwrap_or(e)),
    };
    match kept {
        Ok(out) => {
            // Still under the writer lock: followers get chunks in line order.
            live.publish(appended);
            Ok((out, seen))
        }
        Err(e) => {
            if w.conn.dialect() == Dialect::Postgres && w.conn.batch("SELECT 1").is_err() {
                // The transaction is aborted or its connection lost: nothing of the group
                // may be reported committed.
                w.poisoned = Some(e.to_string());
            }
            Err(e)
        }
    }
}

/// A run with everything the API shows.
fn run_by_id(conn: &Conn, id: &str) -> Result<Option<RunRow>, StoreError> {
    let row = conn.row(
        concat!(run_select!(), " WHERE id = ?1"),
        p![id],
        run_from_row,
    )?;
    match row {
        Some(mut r) => {
            fill(conn, &mut r)?;
            Ok(Some(r))
        }
        None => Ok(None),
    }
}

/// A write transaction (a savepoint of the open commit group). Dropped without commit, it
/// rolls back.
pub struct Tx<'a> {
    tx: &'a Conn,
    live: &'a log::LiveFeed,
    cluster: Option<&'a Cluster>,
    /// Runs whose lease this transaction checked already: the check holds to its end, as
    /// no other node writes while it holds the write lock.
    fenced: RefCell<Vec<String>>,
    /// Chunks this transaction appended to logs someone follows, published once it holds.
    appended: std::cell::RefCell<Vec<(String, std::sync::Arc<LiveChunk>)>>,
    /// The events the store's observer watches, and the records of them appended here.
    watched: &'static [Event],
    seen: RefCell<Vec<Record>>,
}

/// The end of a lease taken or renewed now.
fn lease_until(lease: Duration) -> String {
    now_at(
        chrono::Utc::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::zero()),
    )
}

impl Tx<'_> {
    /// Claims a run for this node (when several share the store): its lease, and a new
    /// fencing token that this node's later writes of the run must match.
    pub fn claim(&self, id: &str) -> Result<(), StoreError> {
        let Some(c) = self.cluster else {
            return Ok(());
        };
        let token: i64 = self.tx.one(
            "UPDATE runs SET lease_node = ?2, lease_until = ?3, lease_token = lease_token + 1 WHERE id = ?1 RETURNING lease_token",
            p![id, c.node, lease_until(c.lease)],
            |r| r.get(0),
        )?;
        c.held().insert(id.to_string(), token);
        Ok(())
    }

    /// Takes over a run whose lease expired: a new fencing token (the old node's writes are
    /// refused from now on), held by this node. `false` when the run is no longer running
    /// with an expired lease (another survivor took it, or its node renewed in time).
    pub fn take_over(&self, id: &str) -> Result<bool, StoreError> {
        let Some(c) = self.cluster else {
            return Ok(false);
        };
        let n = self.tx.execute(
            "UPDATE runs SET lease_node = ?2, lease_until = ?3, lease_token = lease_token + 1 WHERE id = ?1 AND status = ?4 AND lease_until < ?5",
            p![id, c.node, lease_until(c.lease), RunStatus::Running, now()],
        )?;
        Ok(n == 1)
    }

    /// Refuses a write of run `id`'s results when this node executes the run but no longer
    /// holds its lease (its fencing token is not the run's any more).
    pub fn fence(&self, id: &str) -> Result<(), StoreError> {
        let Some(c) = self.cluster else {
            return Ok(());
        };
        let Some(token) = c.held().get(id).copied() else {
            return Ok(());
        };
        if self.fenced.borrow().iter().any(|f| f == id) {
            return Ok(());
        }
        let current: Option<i64> =
            self.tx
                .row("SELECT lease_token FROM runs WHERE id = ?1", p![id], |r| {
                    r.get(0)
                })?;
        if current != Some(token) {
            return Err(StoreError::Fenced(id.to_string()));
        }
        self.fenced.borrow_mut().push(id.to_string());
        Ok(())
    }

    /// Forgets this node's claim of a run that ended.
    pub fn release(&self, id: &str) {
        if let Some(c) = self.cluster {
            c.held().remove(id);
        }
    }

    /// The actions of one run recorded as intended with no result yet.
    pub fn open_actions_of(&self, run_id: &str) -> Result<Vec<OpenAction>, StoreError> {
        self.tx.rows(
            "SELECT id, run_id, host, kind, target FROM actions WHERE run_id = ?1 AND status = ?2 ORDER BY id",
            p![run_id, ActionStatus::Intent],
            |r| {
                Ok(OpenAction {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    host: r.get(2)?,
                    kind: r.get(3)?,
                    target: r.get(4)?,
                })
            },
        )
    }

    /// Freezes `host` for `party`; `false` when it was frozen already (the first freeze,
    /// with its reason, stays).
    pub fn freeze_host(
        &self,
        host: &str,
        party: &str,
        reason: &str,
        by: &str,
    ) -> Result<bool, StoreError> {
        let n = self.tx.execute(
            "INSERT OR IGNORE INTO freezes (host, party, reason, frozen_by, frozen_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            p![host, party, reason, by, now()],
        )?;
        Ok(n == 1)
    }

    /// Lifts the freeze of `host`; `false` when it was not frozen.
    pub fn unfreeze_host(&self, host: &str) -> Result<bool, StoreError> {
        let n = self
            .tx
            .execute("DELETE FROM freezes WHERE host = ?1", p![host])?;
        Ok(n == 1)
    }

    /// Appends an audit record chained to the last one.
    pub fn audit(
        &self,
        actor: &Actor,
        run_id: Option<&str>,
        event: Event,
        detail: Value,
    ) -> Result<Record, StoreError> {
        // The head is read inside the write transaction, which holds the write lock (the
        // SQLite writer, or PostgreSQL's advisory lock across nodes): nobody appends between.
        let last: Option<(i64, String)> = self.tx.row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            p![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (seq, prev_hash) = match last {
            Some((s, h)) => (s as u64 + 1, h),
            None => (1, GENESIS.to_string()),
        };
        let mut rec = Record {
            seq,
            ts: now(),
            actor: actor.clone(),
            run_id: run_id.map(str::to_string),
            event: event.as_str().to_string(),
            detail,
            prev_hash,
            hash: String::new(),
        };
        rec.hash = rec.compute_hash();
        let watched = self.watched.contains(&event);
        self.tx.execute(
            "INSERT INTO audit (seq, ts, actor, run_id, event, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            p![
                rec.seq as i64,
                rec.ts,
                serde_json::to_string(&rec.actor).unwrap_or_default(),
                rec.run_id,
                rec.event,
                crate::audit::canonical_json(&rec.detail),
                rec.prev_hash,
                rec.hash
            ],
        )?;
        if watched {
            self.seen.borrow_mut().push(rec.clone());
        }
        Ok(rec)
    }

    /// Inserts a new run and its hosts as `pending`.
    pub fn insert_run(&self, run: &NewRun<'_>) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO runs (id, runbook, version, status, initiator_user, initiator_party, created_at, digest, plan, break_glass, reason, slot, parent_run, ref) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            p![
                run.id,
                run.runbook,
                run.version,
                run.status,
                run.initiator_user,
                run.initiator_party,
                now(),
                run.digest,
                serde_json::to_string(run.plan).map_err(|e| StoreError::Encode(e.to_string()))?,
                run.break_glass,
                run.reason,
                run.slot,
                run.parent_run,
                run.reference
            ],
        )?;
        for (i, h) in run.hosts.iter().enumerate() {
            self.tx.execute(
                "INSERT INTO host_results (run_id, host, position, status) VALUES (?1, ?2, ?3, ?4)",
                p![run.id, h, i as i64, HostStatus::Pending],
            )?;
        }
        Ok(())
    }

    /// The one way a run's status changes: a compare-and-set from one of `from` to `to`,
    /// with its audit record, in this transaction. `Refused` (nothing written) when the run
    /// is no longer in `from`, e.g. a cancel committed first; the caller then does nothing.
    /// Moving to `running` stamps `started_at`, to a final status `finished_at`; `error` is
    /// kept if given. Which moves are allowed is `run::lifecycle`'s business, not the store's.
    pub fn transition(
        &self,
        id: &str,
        from: &[RunStatus],
        to: RunStatus,
        error: Option<&str>,
        audit: AuditEntry<'_>,
    ) -> Result<Transitioned, StoreError> {
        // The write transaction holds the write lock, so the status read here is the one
        // the guarded update below replaces.
        let Some(now_status) = self.run_status(id)? else {
            return Ok(Transitioned::Refused(None));
        };
        if !from.contains(&now_status) {
            return Ok(Transitioned::Refused(Some(now_status)));
        }
        self.fence(id)?;
        let ts = now();
        let started = (to == RunStatus::Running).then_some(ts.as_str());
        let finished = to.is_final().then_some(ts.as_str());
        let n = self.tx.execute(
            "UPDATE runs SET status = ?2, started_at = COALESCE(started_at, ?3), finished_at = COALESCE(?4, finished_at), error = COALESCE(?5, error) WHERE id = ?1 AND status = ?6",
            p![id, to, started, finished, error, now_status],
        )?;
        if n != 1 {
            return Ok(Transitioned::Refused(Some(now_status)));
        }
        let record = self.audit(audit.actor, Some(id), audit.event, audit.detail)?;
        Ok(Transitioned::Moved { seq: record.seq })
    }

    /// The current status of a run.
    pub fn run_status(&self, id: &str) -> Result<Option<RunStatus>, StoreError> {
        self.tx
            .row("SELECT status FROM runs WHERE id = ?1", p![id], |r| {
                r.get(0)
            })
    }

    /// Updates one host's result.
    pub fn set_host(
        &self,
        run_id: &str,
        host: &str,
        status: HostStatus,
        exit_code: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.fence(run_id)?;
        let ts = now();
        let started = (status == HostStatus::Running).then_some(ts.as_str());
        let finished = status.is_final().then_some(ts.as_str());
        self.tx.execute(
            "UPDATE host_results SET status = ?3, exit_code = COALESCE(?4, exit_code), started_at = COALESCE(started_at, ?5), finished_at = COALESCE(?6, finished_at), error = COALESCE(?7, error) WHERE run_id = ?1 AND host = ?2",
            p![run_id, host, status, exit_code, started, finished, error],
        )?;
        Ok(())
    }

    /// Marks every still-pending or running host of a run with `status`.
    pub fn close_hosts(&self, run_id: &str, status: HostStatus) -> Result<(), StoreError> {
        self.fence(run_id)?;
        self.tx.execute(
            "UPDATE host_results SET status = ?2, finished_at = COALESCE(finished_at, ?3) WHERE run_id = ?1 AND status IN (?4, ?5)",
            p![run_id, status, now(), HostStatus::Pending, HostStatus::Running],
        )?;
        Ok(())
    }

    /// Records an action as intended; returns its id.
    pub fn action_intent(
        &self,
        run_id: &str,
        host: Option<&str>,
        kind: &str,
        target: &str,
    ) -> Result<i64, StoreError> {
        self.fence(run_id)?;
        self.tx.one(
            "INSERT INTO actions (run_id, host, kind, target, status, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
            p![run_id, host, kind, target, ActionStatus::Intent, now()],
            |r| r.get(0),
        )
    }

    /// A run with everything the API shows, read inside this transaction.
    pub fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        run_by_id(self.tx, id)
    }

    /// The gate of a run with this reason, if one was opened: (gate, status).
    pub fn gate_by_reason(
        &self,
        run_id: &str,
        reason: &str,
    ) -> Result<Option<(i64, GateStatus)>, StoreError> {
        self.tx.row(
            "SELECT gate, status FROM gates WHERE run_id = ?1 AND reason = ?2 AND gate > 0",
            p![run_id, reason],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// The next free gate number of a run (mid-run gates start at 1).
    pub fn next_gate(&self, run_id: &str) -> Result<i64, StoreError> {
        self.tx.one(
            "SELECT COALESCE(MAX(gate), 0) + 1 FROM gates WHERE run_id = ?1",
            p![run_id],
            |r| r.get(0),
        )
    }

    /// Marks every pending gate of a run with `status`.
    pub fn close_pending_gates(&self, run_id: &str, status: GateStatus) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE gates SET status = ?2, decided_at = ?3 WHERE run_id = ?1 AND status = ?4",
            p![run_id, status, now(), GateStatus::Pending],
        )?;
        Ok(())
    }

    /// The last slot handled for a schedule (RFC 3339), if any.
    pub fn schedule_last(&self, runbook: &str) -> Result<Option<String>, StoreError> {
        self.tx.row(
            "SELECT last_slot FROM schedule_state WHERE runbook = ?1",
            p![runbook],
            |r| r.get(0),
        )
    }

    /// Records that every slot up to `slot` was handled.
    pub fn set_schedule_last(&self, runbook: &str, slot: &str) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO schedule_state (runbook, last_slot) VALUES (?1, ?2) ON CONFLICT(runbook) DO UPDATE SET last_slot = excluded.last_slot",
            p![runbook, slot],
        )?;
        Ok(())
    }

    /// The id and status of the run recorded for a slot key, if any.
    pub fn run_for_slot(&self, slot: &str) -> Result<Option<(String, RunStatus)>, StoreError> {
        self.tx.row(
            "SELECT id, status FROM runs WHERE slot = ?1",
            p![slot],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// Whether a scheduled run of this runbook is queued or running (for `overlap`).
    pub fn scheduled_run_active(&self, runbook: &str) -> Result<bool, StoreError> {
        let n: i64 = self.tx.one(
            "SELECT COUNT(*) FROM runs WHERE runbook = ?1 AND slot IS NOT NULL AND status IN (?2, ?3)",
            p![runbook, RunStatus::Queued, RunStatus::Running],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Whether a scheduled run of this runbook is running (on any node).
    pub fn scheduled_run_running(&self, runbook: &str) -> Result<bool, StoreError> {
        let n: i64 = self.tx.one(
            "SELECT COUNT(*) FROM runs WHERE runbook = ?1 AND slot IS NOT NULL AND status = ?2",
            p![runbook, RunStatus::Running],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Queued scheduled runs, oldest slot first: (id, runbook, slot key). One query, so a
    /// daemon with thousands of schedules pays for the few runs that wait, not for them all.
    pub fn queued_slot_runs(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.tx.rows(
            "SELECT id, runbook, slot FROM runs WHERE status = ?1 AND slot IS NOT NULL ORDER BY slot",
            p![RunStatus::Queued],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }

    /// Records a standing approval of a schedule's digest until `until`.
    pub fn insert_standing(
        &self,
        runbook: &str,
        digest: &str,
        party: &str,
        user: &str,
        until: &str,
        comment: Option<&str>,
    ) -> Result<i64, StoreError> {
        self.tx.one(
            "INSERT INTO standing_approvals (runbook, digest, party, \"user\", granted_at, until, comment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
            p![runbook, digest, party, user, now(), until, comment],
            |r| r.get(0),
        )
    }

    /// (party, user) of standing approvals of this digest valid at `at`.
    pub fn standing_at(
        &self,
        runbook: &str,
        digest: &str,
        at: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.tx.rows(
            "SELECT DISTINCT party, \"user\" FROM standing_approvals WHERE runbook = ?1 AND digest = ?2 AND granted_at <= ?3 AND until > ?3",
            p![runbook, digest, at],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// The standing approvals of a schedule's `digest` in force at `at`: (party, user, until),
    /// the longest-standing of each approver.
    pub fn standing_list(
        &self,
        runbook: &str,
        digest: &str,
        at: &str,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        self.tx.rows(
            "SELECT party, \"user\", MAX(until) FROM standing_approvals WHERE runbook = ?1 AND digest = ?2 AND granted_at <= ?3 AND until > ?3 GROUP BY party, \"user\" ORDER BY party, \"user\"",
            p![runbook, digest, at],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }

    /// The newest scheduled run of a runbook: (slot, status).
    pub fn last_scheduled(&self, runbook: &str) -> Result<Option<(String, RunStatus)>, StoreError> {
        self.tx.row(
            "SELECT slot, status FROM runs WHERE runbook = ?1 AND slot IS NOT NULL ORDER BY slot DESC LIMIT 1",
            p![runbook],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// Opens gate `gate` of a run.
    pub fn open_gate(
        &self,
        run_id: &str,
        gate: i64,
        reason: &str,
        host: Option<&str>,
        requirements: &[ApprovalRequirement],
        expires_at: &str,
    ) -> Result<(), StoreError> {
        let requirements =
            serde_json::to_string(requirements).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.tx.execute(
            "INSERT INTO gates (run_id, gate, reason, host, requirements, status, requested_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            p![run_id, gate, reason, host, requirements, GateStatus::Pending, now(), expires_at],
        )?;
        Ok(())
    }

    /// Closes a pending gate with `status` (`approved`, `denied`, `expired`, …).
    pub fn close_gate(
        &self,
        run_id: &str,
        gate: i64,
        status: GateStatus,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE gates SET status = ?3, decided_at = ?4 WHERE run_id = ?1 AND gate = ?2 AND status = ?5",
            p![run_id, gate, status, now(), GateStatus::Pending],
        )?;
        Ok(())
    }

    /// Records one decision. `false` when this user already decided on this gate.
    pub fn insert_decision(&self, d: &NewDecision<'_>) -> Result<bool, StoreError> {
        let n = self.tx.execute(
            "INSERT OR IGNORE INTO decisions (run_id, gate, party, \"user\", decision, comment, digest, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            p![d.run_id, d.gate, d.party, d.user, d.decision, d.comment, d.digest, now()],
        )?;
        Ok(n == 1)
    }

    /// Pending gates whose expiry is at or before `now` (RFC 3339): (run id, gate).
    pub fn due_gates(&self, now_ts: &str) -> Result<Vec<(String, i64)>, StoreError> {
        self.tx.rows(
            "SELECT run_id, gate FROM gates WHERE status = ?2 AND expires_at <= ?1 ORDER BY expires_at",
            p![now_ts, GateStatus::Pending],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// Opens the after-the-fact review of a break-glass run.
    pub fn open_review(&self, run_id: &str, parties: &[String]) -> Result<(), StoreError> {
        let parties =
            serde_json::to_string(parties).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.tx.execute(
            "INSERT OR IGNORE INTO reviews (run_id, parties, status, requested_at) VALUES (?1, ?2, ?3, ?4)",
            p![run_id, parties, ReviewStatus::Open, now()],
        )?;
        Ok(())
    }

    /// Acknowledges a review. `false` when it was not open.
    pub fn acknowledge_review(
        &self,
        run_id: &str,
        user: &str,
        comment: &str,
    ) -> Result<bool, StoreError> {
        let n = self.tx.execute(
            "UPDATE reviews SET status = ?5, reviewed_by = ?2, comment = ?3, reviewed_at = ?4 WHERE run_id = ?1 AND status = ?6",
            p![run_id, user, comment, now(), ReviewStatus::Acknowledged, ReviewStatus::Open],
        )?;
        Ok(n == 1)
    }

    /// Closes an action with `status` (`done` or `outcome_unknown`).
    pub fn action_done(&self, id: i64, status: ActionStatus) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE actions SET status = ?2, finished_at = ?3 WHERE id = ?1",
            p![id, status, now()],
        )?;
        Ok(())
    }
}

impl Store {
    /// Up to `limit` runs that `keep` admits, newest first: optionally only in `status`,
    /// and only older than run `before` (a page cursor). `keep` sees each run with its
    /// review but before its hosts and gates are loaded, so a run it refuses costs two
    /// indexed reads. The scan reads the runs a page of at most [`RUNS_PER_QUERY`] at a time
    /// (a keyset on `(created_at, id)`), and stops as soon as `limit` runs are kept: a
    /// listing reads only what it needs, on PostgreSQL too, where a query's rows all come
    /// back at once.
    pub fn runs_where(
        &self,
        filter: &RunFilter<'_>,
        limit: usize,
        keep: impl Fn(&RunRow) -> bool,
    ) -> Result<Vec<RunRow>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let conn = self.lock()?;
        let f = filter;
        let page = limit.clamp(16, RUNS_PER_QUERY);
        // The last run read: the next page starts below it.
        let mut last: Option<(String, String)> = None;
        loop {
            let mut read = 0;
            let (after_ts, after_id) = match &last {
                Some((ts, id)) => (Some(ts.clone()), Some(id.clone())),
                None => (None, None),
            };
            conn.each(
                concat!(
                    run_select!(),
                    " WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1) AND (CAST(?2 AS TEXT) IS NULL OR (created_at, id) < \
                     (SELECT created_at, id FROM runs WHERE id = ?2)) AND (CAST(?3 AS TEXT) IS NULL OR ref = ?3) \
                     AND (CAST(?4 AS TEXT) IS NULL OR runbook = ?4) AND (CAST(?5 AS TEXT) IS NULL OR initiator_party = ?5) \
                     AND (CAST(?6 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM host_results h WHERE h.run_id = runs.id AND h.host = ?6)) \
                     AND (CAST(?7 AS TEXT) IS NULL OR created_at >= ?7) AND (CAST(?8 AS TEXT) IS NULL OR created_at < ?8) \
                     AND (CAST(?9 AS TEXT) IS NULL OR (created_at, id) < (?9, ?10)) \
                     ORDER BY created_at DESC, id DESC LIMIT ?11"
                ),
                p![
                    f.status,
                    f.before,
                    f.reference,
                    f.runbook,
                    f.party,
                    f.host,
                    f.since,
                    f.until,
                    after_ts,
                    after_id,
                    page as i64
                ],
                |row| {
                    read += 1;
                    let mut r = run_from_row(row)?;
                    last = Some((r.created_at.clone(), r.id.clone()));
                    r.review = review(&conn, &r.id)?;
                    if !keep(&r) {
                        return Ok(true);
                    }
                    r.hosts = host_results(&conn, &r.id)?;
                    r.gates = gates(&conn, &r.id)?;
                    out.push(r);
                    Ok(out.len() < limit)
                },
            )?;
            if out.len() >= limit || read < page {
                return Ok(out);
            }
        }
    }

    /// Every frozen host, by name.
    pub fn freezes(&self) -> Result<Vec<FreezeRow>, StoreError> {
        self.lock()?.rows(
            "SELECT host, party, reason, frozen_by, frozen_at FROM freezes ORDER BY host",
            p![],
            |r| {
                Ok(FreezeRow {
                    host: r.get(0)?,
                    party: r.get(1)?,
                    reason: r.get(2)?,
                    frozen_by: r.get(3)?,
                    frozen_at: r.get(4)?,
                })
            },
        )
    }

    /// The newest result of each of `hosts` (the run, its host status, when it ended or
    /// started), for the console's hosts page (a page of hosts at a time). One indexed read
    /// per host; hosts that never ran are absent.
    pub fn last_host_results(&self, hosts: &[&str]) -> Result<Vec<LastHostResult>, StoreError> {
        let conn = self.lock()?;
        let mut out = Vec::with_capacity(hosts.len());
        for host in hosts {
            out.extend(conn.row(
                "SELECT h.host, h.run_id, h.status, COALESCE(h.finished_at, h.started_at) \
                 FROM host_results h JOIN runs r ON r.id = h.run_id WHERE h.host = ?1 \
                 ORDER BY r.created_at DESC, r.id DESC LIMIT 1",
                p![*host],
                |r| {
                    Ok(LastHostResult {
                        host: r.get(0)?,
                        run_id: r.get(1)?,
                        status: r.get(2)?,
                        at: r.get(3)?,
                    })
                },
            )?);
        }
        Ok(out)
    }

    /// How many runs are in each status, for `/metrics`.
    pub fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.lock()?.rows(
            "SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status",
            p![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// The number of audit records.
    pub fn audit_len(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .lock()?
            .one("SELECT COALESCE(MAX(seq), 0) FROM audit", p![], |r| {
                r.get(0)
            })?;
        Ok(n as u64)
    }
}

/// Creates `path` 0600 if it does not exist, before SQLite opens it, so the database (runs,
/// logs, the audit log) is never readable by other local users, whatever the umask; an
/// existing file is restricted to 0600 too.
fn private_file(path: &Path) -> Result<(), StoreError> {
    let failed = |source| StoreError::Private {
        path: path.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(failed)?;
    make_private(path, 0o600)
}

/// Sets `path`'s permission bits to `mode` (unix; elsewhere a no-op).
fn make_private(path: &Path, mode: u32) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
            |source| StoreError::Private {
                path: path.display().to_string(),
                source,
            },
        )?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn state_files_are_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let store = Store::open(&state).unwrap();
        store
            .tx(|tx| tx.audit(&Actor::system(), None, Event::ConfigLoaded, Value::Null))
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        for name in ["tandem.db", "tandem.db-wal", "tandem.db-shm"] {
            assert_eq!(mode(&state.join(name)), 0o600, "{name}");
        }
    }
    use std::sync::Arc;

    fn store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, Arc::new(store))
    }

    fn actor() -> Actor {
        Actor::System("test".into())
    }

    /// Concurrent writers share commits, yet every record lands once, in one linear chain.
    #[test]
    fn concurrent_writers_keep_one_chain_and_lose_nothing() {
        let (_dir, store) = store();
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..40 {
                        let rec = store
                            .tx(|tx| {
                                tx.audit(
                                    &actor(),
                                    None,
                                    Event::ConfigLoaded,
                                    serde_json::json!({"t": t, "i": i}),
                                )
                            })
                            .unwrap();
                        // Returned means durable and visible to readers.
                        let seen = store.audit_records(rec.seq - 1, 1).unwrap();
                        assert_eq!(seen.first().map(|r| &r.hash), Some(&rec.hash));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = store.audit_records(0, 10_000).unwrap();
        assert_eq!(all.len(), 16 * 40);
        let verified = crate::audit::verify(all.into_iter().map(Ok)).unwrap();
        assert_eq!(verified.count, 16 * 40);
        let w = store.lock_writer();
        assert!(w.open.is_none() && store.lock_resolution().resolved == w.numbered);
    }

    /// A closure that fails rolls back its own writes only, even inside a shared group.
    #[test]
    fn a_failing_transaction_rolls_back_alone() {
        let (_dir, store) = store();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store.tx(|tx| {
                        tx.audit(
                            &actor(),
                            None,
                            Event::ConfigLoaded,
                            serde_json::json!({"t": t}),
                        )?;
                        if t % 2 == 1 {
                            return Err(StoreError::Commit("refused by the test".into()));
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 4);
        let all = store.audit_records(0, 100).unwrap();
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|r| r.detail["t"].as_i64().unwrap() % 2 == 0));
        crate::audit::verify(all.into_iter().map(Ok)).unwrap();
    }

    /// A follow-up's row names its parent; the parent lists it; depth counts the links up
    /// and stops at its limit.
    #[test]
    fn chained_runs_link_both_ways_and_depth_is_bounded() {
        let (_dir, store) = store();
        let mut parent: Option<String> = None;
        for i in 0..4 {
            let id = format!("c{i}");
            store
                .tx(|tx| {
                    tx.insert_run(&NewRun {
                        id: &id,
                        runbook: "rb",
                        version: "v",
                        status: RunStatus::Succeeded,
                        initiator_user: "u",
                        initiator_party: "a",
                        digest: "d",
                        plan: &Plan::default(),
                        break_glass: false,
                        reason: None,
                        slot: None,
                        hosts: &[],
                        parent_run: parent.as_deref(),
                        reference: None,
                    })
                })
                .unwrap();
            parent = Some(id);
        }
        let c1 = store.run("c1").unwrap().unwrap();
        assert_eq!(c1.parent_run.as_deref(), Some("c0"));
        assert_eq!(c1.children, ["c2"]);
        assert_eq!(store.run("c0").unwrap().unwrap().parent_run, None);
        assert_eq!(store.chain_depth("c0", 10).unwrap(), 0);
        assert_eq!(store.chain_depth("c3", 10).unwrap(), 3);
        assert_eq!(store.chain_depth("c3", 2).unwrap(), 2);
        assert_eq!(store.chain_depth("nope", 10).unwrap(), 0);
    }

    fn insert(store: &Store, id: &str, party: &str) {
        store
            .tx(|tx| {
                tx.insert_run(&NewRun {
                    id,
                    runbook: "rb",
                    version: "v",
                    status: RunStatus::Succeeded,
                    initiator_user: "u",
                    initiator_party: party,
                    digest: "d",
                    plan: &Plan::default(),
                    break_glass: false,
                    reason: None,
                    slot: None,
                    reference: (party == "a").then_some("INC-1"),
                    hosts: &[],
                    parent_run: None,
                })
            })
            .unwrap();
    }

    /// A followed run's chunks reach its live feed numbered as the store numbers them, once
    /// their transaction holds; a transaction that fails publishes nothing, and a run nobody
    /// follows is not fed.
    #[test]
    fn live_followers_get_chunks_numbered_as_stored_and_nothing_rolled_back() {
        let (_dir, store) = store();
        insert(&store, "r1", "a");
        insert(&store, "r2", "a");
        let mut rx = store.follow_live("r1");
        store
            .tx(|tx| tx.log_chunk("r1", Some("web1"), "stdout", b"one\ntwo\n"))
            .unwrap();
        let failed = store.tx(|tx| {
            tx.log_chunk("r1", Some("web1"), "stdout", b"lost\n")?;
            Err::<(), _>(StoreError::Commit("refused by the test".into()))
        });
        assert!(failed.is_err());
        store
            .tx(|tx| tx.log_chunk("r2", None, "event", b"elsewhere\n"))
            .unwrap();
        store
            .tx(|tx| tx.log_chunk("r1", None, "event", b"three"))
            .unwrap();
        let first = rx.try_recv().unwrap();
        assert_eq!((first.first_line, first.last_line), (1, 2));
        assert_eq!(first.host.as_deref(), Some("web1"));
        let second = rx.try_recv().unwrap();
        assert_eq!((second.first_line, second.last_line), (3, 3));
        assert_eq!(second.bytes, b"three");
        assert!(rx.try_recv().is_err(), "nothing else was published");
        let mut seen = Vec::new();
        second.visit_lines(0, |l| seen.push((l.id, l.bytes.to_vec())));
        assert_eq!(seen, vec![(3, b"three".to_vec())]);
        let stored: Vec<(i64, String)> = store
            .log_lines("r1", 0, 10)
            .unwrap()
            .into_iter()
            .map(|l| (l.id, l.line))
            .collect();
        assert_eq!(
            stored,
            vec![(1, "one".into()), (2, "two".into()), (3, "three".into())]
        );
        // The last follower gone, the run is forgotten at its next chunk.
        drop(rx);
        store
            .tx(|tx| tx.log_chunk("r1", None, "event", b"four\n"))
            .unwrap();
        assert!(!store.live.followed("r1"));
    }

    /// `ref` narrows a listing to the runs carrying exactly that reference.
    #[test]
    fn runs_where_filters_by_reference() {
        let (_dir, store) = store();
        for i in 0..4 {
            insert(&store, &format!("r{i}"), if i % 2 == 0 { "a" } else { "b" });
        }
        let filter = RunFilter {
            reference: Some("INC-1"),
            ..RunFilter::default()
        };
        let ids: Vec<String> = store
            .runs_where(&filter, 10, |_| true)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["r2", "r0"]);
        assert_eq!(
            store.run("r0").unwrap().unwrap().reference.as_deref(),
            Some("INC-1")
        );
        assert_eq!(store.run("r1").unwrap().unwrap().reference, None);
    }

    /// The console's filters (runbook, party, host, a time range) narrow the scan in SQL.
    #[test]
    fn runs_where_filters_by_runbook_party_host_and_time() {
        let (_dir, store) = store();
        for (id, runbook, party, host) in [
            ("r0", "disk", "a", "web1"),
            ("r1", "disk", "b", "web2"),
            ("r2", "patch", "a", "web2"),
        ] {
            let hosts = [host.to_string()];
            store
                .tx(|tx| {
                    tx.insert_run(&NewRun {
                        id,
                        runbook,
                        version: "v",
                        status: RunStatus::Succeeded,
                        initiator_user: "u",
                        initiator_party: party,
                        digest: "d",
                        plan: &Plan::default(),
                        break_glass: false,
                        reason: None,
                        slot: None,
                        reference: None,
                        hosts: &hosts,
                        parent_run: None,
                    })
                })
                .unwrap();
        }
        let ids = |filter: RunFilter<'_>| -> Vec<String> {
            let runs = store.runs_where(&filter, 10, |_| true).unwrap();
            runs.into_iter().map(|r| r.id).collect()
        };
        let all = RunFilter::default();
        let disk = RunFilter {
            runbook: Some("disk"),
            ..all
        };
        assert_eq!(ids(disk), ["r1", "r0"]);
        let a = RunFilter {
            party: Some("a"),
            ..all
        };
        assert_eq!(ids(a), ["r2", "r0"]);
        let web2 = RunFilter {
            host: Some("web2"),
            ..all
        };
        assert_eq!(ids(web2), ["r2", "r1"]);
        let created = store.run("r1").unwrap().unwrap().created_at;
        let since = RunFilter {
            since: Some(&created),
            ..all
        };
        assert!(ids(since).contains(&"r1".to_string()));
        let until = RunFilter {
            until: Some("2000-01-01T00:00:00Z"),
            ..all
        };
        assert!(ids(until).is_empty());
    }

    /// The observer hears committed records of the events it watches, and nothing of a
    /// transaction that rolled back.
    #[test]
    fn the_observer_hears_only_committed_watched_records() {
        let (_dir, store) = store();
        let heard = Arc::new(Mutex::new(Vec::<String>::new()));
        let h = heard.clone();
        store.observe(&[Event::RunFinished], move |recs| {
            h.lock()
                .unwrap()
                .extend(recs.into_iter().map(|r| r.run_id.unwrap_or_default()));
        });
        store
            .audit(&actor(), Some("one"), Event::RunFinished, Value::Null)
            .unwrap();
        store
            .audit(&actor(), Some("two"), Event::RunStarted, Value::Null)
            .unwrap();
        let failed: Result<(), StoreError> = store.tx(|tx| {
            tx.audit(&actor(), Some("three"), Event::RunFinished, Value::Null)?;
            Err(StoreError::Commit("no".into()))
        });
        assert!(failed.is_err());
        assert_eq!(*heard.lock().unwrap(), ["one"]);
    }

    /// A filtered scan pages by cursor: each page is full while kept runs remain.
    #[test]
    fn runs_where_pages_through_what_keep_admits() {
        let (_dir, store) = store();
        for i in 0..7 {
            insert(&store, &format!("r{i}"), if i % 2 == 0 { "a" } else { "b" });
        }
        let keep = |r: &RunRow| r.initiator.party == "a";
        let page = |before: Option<&str>| -> Vec<String> {
            store
                .runs_where(
                    &RunFilter {
                        before,
                        ..RunFilter::default()
                    },
                    2,
                    keep,
                )
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(page(None), ["r6", "r4"]);
        assert_eq!(page(Some("r4")), ["r2", "r0"]);
        assert!(page(Some("r0")).is_empty());
        assert!(page(Some("no-such-run")).is_empty());
    }

    /// A freeze is kept once, lifted once, and survives reopening the store.
    #[test]
    fn freezes_are_durable_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(store
                .tx(|tx| tx.freeze_host("web1", "internal", "why", "ivan"))
                .unwrap());
            assert!(!store
                .tx(|tx| tx.freeze_host("web1", "internal", "again", "ian"))
                .unwrap());
        }
        let store = Store::open(dir.path()).unwrap();
        let f = store.freezes().unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].reason.as_str(), f[0].frozen_by.as_str()),
            ("why", "ivan")
        );
        assert!(store.tx(|tx| tx.unfreeze_host("web1")).unwrap());
        assert!(!store.tx(|tx| tx.unfreeze_host("web1")).unwrap());
        assert!(store.freezes().unwrap().is_empty());
    }

    /// When a group's commit fails, every member gets the error and nothing of it persists.
    #[test]
    fn a_failed_commit_reaches_every_member_of_its_group() {
        let (_dir, store) = store();
        // Open a group by hand whose commit will fail (a deferred foreign key violation),
        // and keep the writer lock until two writers are queued to join it.
        let mut w = store.lock_writer();
        w.conn
            .batch(
                "BEGIN IMMEDIATE; PRAGMA defer_foreign_keys = ON;
                 INSERT INTO log_chunks (run_id, stream, first_line, last_line, ts, bytes) VALUES ('no-such-run', 'log', 1, 1, 'x', x'78');",
            )
            .unwrap();
        w.numbered += 1;
        w.open = Some(w.numbered);
        let members: Vec<_> = (0..2)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store.tx(|tx| {
                        tx.audit(
                            &actor(),
                            None,
                            Event::ConfigLoaded,
                            serde_json::json!({"t": t}),
                        )
                    })
                })
            })
            .collect();
        while store.queued.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now();
        }
        drop(w);
        for m in members {
            match m.join().unwrap() {
                Err(StoreError::Commit(e)) => assert!(e.contains("FOREIGN KEY"), "{e}"),
                other => panic!("expected a commit error, got {other:?}"),
            }
        }
        assert!(store.audit_records(0, 10).unwrap().is_empty());
        // The store goes on working.
        store
            .tx(|tx| tx.audit(&actor(), None, Event::ConfigLoaded, Value::Null))
            .unwrap();
        assert_eq!(store.audit_len().unwrap(), 1);
    }
}
