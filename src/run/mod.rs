//! The orchestrator: plan → policy → gate → actions → audit. The one place that composes
//! config, runbooks, policy, the script engine, the executors and the store.
//!
//! [`App`] is the daemon's shared state. [`App::submit`] turns a request into a run (or a
//! refusal); [`App::execute`] carries a run out host by host on blocking threads, each
//! action going through [`host::HostContext`], which checks scope and records intent before
//! acting.

mod approve;
pub mod chain;
pub mod estate;
pub mod freeze;
mod host;
pub mod lifecycle;
#[cfg(test)]
mod lifecycle_tests;
pub mod output;
pub mod reads;
pub mod schedule;
pub mod trigger;
pub mod words;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::{Notify, Semaphore};

use crate::audit::{Actor, Event};
use crate::config::{Config, User};
use crate::policy;
use crate::runbook::plan::{make_limited_plan, make_plan, Initiator, Plan, PlanError};
use crate::runbook::{Catalog, Runbook};
use crate::state::RunStatus;
use crate::store::{AuditEntry, NewRun, RunRow, Store, StoreError};

/// Why a request was not turned into a run. Each maps to one HTTP status in the server.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("unknown runbook `{0}`")]
    UnknownRunbook(String),
    #[error("unknown run `{0}`")]
    UnknownRun(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the daemon is shutting down and accepts no new runs")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<PlanError> for RunError {
    fn from(e: PlanError) -> Self {
        RunError::Invalid(e.to_string())
    }
}

/// A request to start a runbook.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    pub runbook: String,
    pub params: Map<String, Value>,
    pub break_glass: bool,
    pub reason: Option<String>,
    /// Narrows the run to these hosts / `tag:NAME` among the runbook's targets.
    pub limit: Vec<String>,
    /// The alert a trigger started the run from, shown to approvers.
    pub trigger: Option<Value>,
    /// A reference carried through the run into its audit records and notices (a ticket
    /// number); checked by [`check_ref`].
    pub reference: Option<String>,
    /// The plan digest the starter was shown (the console's preview, or an API client that
    /// binds its request); a run whose plan now has another digest is refused, not started.
    pub digest: Option<String>,
}

/// The longest reference a run may carry, in characters.
pub const MAX_REF_CHARS: usize = 128;

/// Checks a run's reference: 1 to [`MAX_REF_CHARS`] printable characters, no control or
/// invisible formatting characters (which could hide text in a notice), not blank.
pub fn check_ref(r: &str) -> Result<(), String> {
    if r.trim().is_empty() {
        return Err("`ref` is empty".into());
    }
    let n = r.chars().count();
    if n > MAX_REF_CHARS {
        return Err(format!(
            "`ref` is {n} characters long; at most {MAX_REF_CHARS} are allowed"
        ));
    }
    let invisible = |c: char| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
    };
    if let Some((i, c)) = r.chars().enumerate().find(|(_, c)| invisible(*c)) {
        return Err(format!(
            "`ref` has a control or invisible character (U+{:04X}) at position {}; only printable text is allowed",
            c as u32,
            i + 1
        ));
    }
    Ok(())
}

/// A config and the catalog validated against it.
#[derive(Clone)]
struct Loaded {
    config: Arc<Config>,
    catalog: Arc<Catalog>,
}

/// What a live run can be told from outside.
#[derive(Debug, Default)]
struct RunControl {
    cancel: AtomicBool,
    runbook: String,
}

/// The daemon's shared state.
pub struct App {
    /// The config and runbooks in force; swapped whole on reload, so a reader always sees
    /// a config and a catalog that were validated together.
    loaded: RwLock<Loaded>,
    pub store: Arc<Store>,
    http: reqwest::Client,
    pub notifier: Arc<crate::notify::Notifier>,
    active: Mutex<HashMap<String, Arc<RunControl>>>,
    shutting_down: AtomicBool,
    /// Woken whenever a run's log or status changes, for followers of `logs --follow`.
    pub changed: Notify,
    /// Woken when the last active run ends, for a draining shutdown.
    idle: Notify,
    /// Wakes the scheduler early: a run ended, a standing approval arrived, a reload.
    pub schedule_wake: Notify,
    generation: std::sync::atomic::AtomicU64,
    /// Frozen hosts (rule 11), mirrored from the store; see [`freeze`].
    frozen: RwLock<HashSet<String>>,
    /// Recent trigger signatures, alerts and starts (replays, dedup, rate limits). A std
    /// mutex: held only on blocking threads, across one request's starts.
    trigger_guard: Mutex<crate::trigger::Guard>,
    /// The console's estate-wide reads, computed once per loaded config (see [`estate`]).
    estate: estate::EstateCache,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

/// A follow-up's link to the run that started it.
struct ChainLink<'a> {
    parent: &'a str,
    /// 1 for a follow-up of a run nobody chained, and so on.
    depth: usize,
}

/// Writes a new run with its hosts and its `run_requested` record; when `gate_expires` is
/// given, the run waits for approval behind gate 0 until then; `break_glass` (reason and
/// review parties) flags it and opens its review. Status, initiator and slot come from the
/// plan, so a scheduled and an on-demand run are recorded the same way. A follow-up names
/// its parent (`chain`) in its row and its `run_requested` record.
#[allow(clippy::too_many_arguments)]
fn record_run(
    tx: &crate::store::Tx<'_>,
    id: &str,
    rb: &Runbook,
    plan: &Plan,
    actor: &Actor,
    gate_expires: Option<&str>,
    break_glass: Option<(&str, &[String])>,
    chain: Option<&ChainLink<'_>>,
    reference: Option<&str>,
) -> Result<(), StoreError> {
    let hosts: Vec<String> = plan.targets.iter().map(|t| t.name.clone()).collect();
    let run = NewRun {
        id,
        runbook: &rb.name,
        version: &rb.version,
        status: if gate_expires.is_some() {
            RunStatus::AwaitingApproval
        } else {
            RunStatus::Queued
        },
        initiator_user: &plan.initiator.user,
        initiator_party: &plan.initiator.party,
        digest: &plan.digest,
        plan,
        break_glass: break_glass.is_some(),
        reason: break_glass.map(|b| b.0),
        slot: plan.slot.as_deref(),
        reference,
        hosts: &hosts,
        parent_run: chain.map(|c| c.parent),
    };
    let mut requested = json!({"runbook": rb.name, "version": rb.version, "params": plan.params, "targets": hosts, "digest": plan.digest, "slot": plan.slot});
    if let (Some(c), Some(d)) = (chain, requested.as_object_mut()) {
        d.insert("parent_run".into(), json!(c.parent));
        d.insert("chain_depth".into(), json!(c.depth));
    }
    if !plan.limit.is_empty() {
        requested["limit"] = json!(plan.limit);
    }
    if let Some(t) = &plan.trigger {
        requested["trigger"] = t.clone();
    }
    if let Some(r) = reference {
        requested["ref"] = json!(r);
    }
    tx.create_run(
        &run,
        &AuditEntry {
            actor,
            event: Event::RunRequested,
            detail: requested,
        },
    )?;
    if let Some(expires_at) = gate_expires {
        tx.open_gate(id, 0, "start", None, &plan.approvals, expires_at)?;
        tx.audit(
            actor,
            Some(id),
            Event::ApprovalRequested,
            json!({"gate": 0, "digest": plan.digest, "from": plan.approvals, "expires_at": expires_at}),
        )?;
    }
    if let Some((reason, parties)) = break_glass {
        tx.audit(
            actor,
            Some(id),
            Event::BreakGlass,
            json!({"reason": reason, "approvals_skipped": plan.approvals, "digest": plan.digest}),
        )?;
        tx.open_review(id, parties)?;
        tx.audit(
            actor,
            Some(id),
            Event::ReviewRequested,
            json!({"parties": parties}),
        )?;
    }
    Ok(())
}

/// Why a start request is refused before any plan is made; `denied` is the reason a
/// `start_denied` record gives, when the refusal is one the audit log keeps.
struct Refusal {
    error: RunError,
    denied: Option<String>,
}

/// Rule 1 and the break-glass and reference rules for `req` by `user`: the checks a start
/// and its preview share.
fn start_refusal(rb: &Runbook, user: &User, req: &StartRequest) -> Result<(), Refusal> {
    let denied = |why: String| Refusal {
        error: RunError::Forbidden(why.clone()),
        denied: Some(why),
    };
    if let Err(d) = policy::may_start(rb, user) {
        return Err(denied(d.0));
    }
    if req.break_glass {
        if !rb.emergency {
            return Err(denied(format!(
                "runbook `{}` is not an emergency runbook; break-glass is refused",
                rb.name
            )));
        }
        if req
            .reason
            .as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .is_empty()
        {
            return Err(Refusal {
                error: RunError::Invalid("a break-glass start needs a reason (--reason)".into()),
                denied: None,
            });
        }
    }
    if let Some(r) = &req.reference {
        check_ref(r).map_err(|e| Refusal {
            error: RunError::Invalid(e),
            denied: None,
        })?;
    }
    Ok(())
}

/// A fresh run id: 16 hex digits from the OS random source.
fn new_run_id() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: fall back to the clock; ids need to be unique, not secret.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = (n as u64).to_be_bytes();
    }
    hex::encode(b)
}

fn actor_of(i: &Initiator) -> Actor {
    if i.user == "system" {
        Actor::system()
    } else {
        Actor::user(&i.user, &i.party)
    }
}

impl App {
    /// Builds the daemon state from a loaded config and catalog and an open store.
    /// `public_url` is where people reach the daemon (links in prompts). Call from inside
    /// the tokio runtime.
    pub fn new(
        config: Config,
        catalog: Catalog,
        store: Store,
        public_url: &str,
    ) -> Result<Arc<App>, crate::Error> {
        let http = crate::exec::http::client().map_err(|e| crate::Error::Usage(e.to_string()))?;
        let store = Arc::new(store);
        let notifier = Arc::new(crate::notify::Notifier::new(
            http.clone(),
            config
                .public_url
                .clone()
                .unwrap_or_else(|| public_url.to_string()),
            store.clone(),
            tokio::runtime::Handle::current(),
        ));
        let frozen: HashSet<String> = store.freezes()?.into_iter().map(|f| f.host).collect();
        let app = Arc::new(App {
            loaded: RwLock::new(Loaded {
                config: Arc::new(config),
                catalog: Arc::new(catalog),
            }),
            store,
            http,
            notifier,
            active: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            changed: Notify::new(),
            idle: Notify::new(),
            schedule_wake: Notify::new(),
            generation: std::sync::atomic::AtomicU64::new(0),
            frozen: RwLock::new(frozen),
            trigger_guard: Mutex::new(crate::trigger::Guard::default()),
            estate: estate::EstateCache::default(),
        });
        // Outcome notices: every committed record of a watched event (a run ended, a slot
        // skipped, a host frozen, ...) reaches `audited`. Weak: the store lives in the app.
        let weak = Arc::downgrade(&app);
        app.store.observe(crate::notify::WATCHED, move |records| {
            if let Some(app) = weak.upgrade() {
                app.audited(records);
            }
        });
        Ok(app)
    }

    /// The one hook for outcome notices: committed audit records of
    /// [`crate::notify::WATCHED`] events become notices to the targets that want them.
    /// Returns at once; nothing here can hold up or fail a run.
    fn audited(&self, records: Vec<crate::audit::Record>) {
        let catalog = self.catalog();
        let owner_of = |rb: &str| catalog.get(rb).map(|r| r.owner.clone());
        self.notifier.observed(self.config(), &owner_of, records);
    }

    fn loaded(&self) -> Loaded {
        // A poisoned lock still holds a whole, validated pair: keep serving it.
        self.loaded
            .read()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The current runbooks.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.loaded().catalog
    }

    /// The current config.
    pub fn config(&self) -> Arc<Config> {
        self.loaded().config
    }

    /// How many times the config and catalog were replaced: the scheduler rebuilds its
    /// plan when this changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Puts a newly loaded and validated config and catalog in force. Runs already under
    /// way keep the config they started with.
    pub fn replace_loaded(&self, config: Config, catalog: Catalog) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let new = Loaded {
            config: Arc::new(config),
            catalog: Arc::new(catalog),
        };
        match self.loaded.write() {
            Ok(mut l) => *l = new,
            Err(p) => *p.into_inner() = new,
        }
    }

    /// Rule 8 after a stop: runs left `running` become `interrupted`, their in-flight
    /// actions `outcome_unknown`. Nothing is re-run. A run accepted but not started (its
    /// approval came while the daemon drained, or just before a crash) never ran anything:
    /// it stays `queued`, and [`App::start_held`] starts it. A scheduled run queued for a
    /// slot long past (beyond the scheduler's grace) is interrupted: its slot is over.
    pub fn recover(&self) -> Result<usize, StoreError> {
        if self.store.cluster().is_some() {
            // Other nodes may be executing runs right now: only the runs whose lease
            // expired are over, and the sweep takes them (see `take_over_expired`).
            return Ok(self.take_over_expired()? + self.settle_missed_slot_runs()?);
        }
        let open = self.store.open_actions()?;
        let now = chrono::Utc::now();
        let runs: Vec<(String, RunStatus)> =
            self.store
                .runs_in(&[RunStatus::Running, RunStatus::Queued])?
                .into_iter()
                .filter(|(_, st, slot)| match (st, slot.as_deref()) {
                    (RunStatus::Queued, None) => false,
                    (RunStatus::Queued, Some(slot)) => !schedule::slot_time(slot)
                        .is_some_and(|t| t >= now - schedule::MISFIRE_GRACE),
                    _ => true,
                })
                .map(|(id, st, _)| (id, st))
                .collect();
        let mut interrupted = 0;
        self.store.tx(|tx| {
            for a in &open {
                outcome_unknown(tx, a, "the daemon stopped while the action was in flight")?;
            }
            for (id, st) in &runs {
                let why = match st {
                    RunStatus::Running => {
                        "interrupted: the daemon stopped during the run; nothing was re-run"
                    }
                    _ => "interrupted: the daemon was down at the run's slot; it never started",
                };
                if lifecycle::end(
                    tx,
                    id,
                    &[*st],
                    RunStatus::Interrupted,
                    Some(why),
                    &Actor::system(),
                )? {
                    interrupted += 1;
                }
            }
            Ok(())
        })?;
        Ok(interrupted)
    }

    /// Several nodes (SPEC §10): the runs whose executing node stopped renewing its lease
    /// (it died, or lost the database for longer than the lease) become `interrupted` and
    /// their in-flight actions `outcome_unknown`, each run in one transaction that first
    /// takes the run's lease over, so the old node's writes are refused from then on.
    /// Nothing is re-run (rule 8). Returns how many runs were taken over.
    pub fn take_over_expired(&self) -> Result<usize, StoreError> {
        let mut interrupted = 0;
        for id in self.store.expired_leases()? {
            let ended = self.store.tx(|tx| {
                if !tx.take_over(&id)? {
                    return Ok(false);
                }
                for a in tx.open_actions_of(&id)? {
                    outcome_unknown(tx, &a, "the node running the action stopped while it was in flight")?;
                }
                let ended = lifecycle::end(
                    tx,
                    &id,
                    &[RunStatus::Running],
                    RunStatus::Interrupted,
                    Some("interrupted: the node running it stopped renewing its lease; nothing was re-run"),
                    &Actor::system(),
                )?;
                tx.release(&id);
                Ok(ended)
            })?;
            if ended {
                tracing::warn!(run = %id, "took over a run whose node lost its lease: interrupted");
                interrupted += 1;
            }
        }
        Ok(interrupted)
    }

    /// Several nodes, at a node's start: a scheduled run still queued for a slot long past
    /// (beyond the scheduler's grace) is interrupted, as after a restart on SQLite: no node
    /// started it at its slot (its leader died or drained between queueing and starting
    /// it). Left alone while a scheduled run of the same runbook is running somewhere: then
    /// it waits its turn (`overlap: queue`) and the leader starts it. Returns how many.
    fn settle_missed_slot_runs(&self) -> Result<usize, StoreError> {
        let now = chrono::Utc::now();
        self.store.tx(|tx| {
            let mut interrupted = 0;
            for (id, runbook, slot) in tx.queued_slot_runs()? {
                let passed =
                    !schedule::slot_time(&slot).is_some_and(|t| t >= now - schedule::MISFIRE_GRACE);
                if !passed || tx.scheduled_run_running(&runbook)? {
                    continue;
                }
                if lifecycle::end(
                    tx,
                    &id,
                    &[RunStatus::Queued],
                    RunStatus::Interrupted,
                    Some("interrupted: no node started it at its slot; it never started"),
                    &Actor::system(),
                )? {
                    interrupted += 1;
                }
            }
            Ok(interrupted)
        })
    }

    /// Several nodes, at each lease sweep: runs accepted but not started that wait for no
    /// slot and were already waiting at the previous sweep (`seen`) start here. The node
    /// that accepts a run starts it at once, unless it is draining, so a run still queued a
    /// sweep later was left by a node that drained (or died); the start is a
    /// compare-and-set, so it runs once whichever nodes try. A draining node takes up
    /// nothing. Returns how many runs this node started.
    pub fn take_up_held(
        self: &Arc<Self>,
        seen: &mut std::collections::HashSet<String>,
    ) -> Result<usize, StoreError> {
        if self.draining() {
            seen.clear();
            return Ok(0);
        }
        let held = crate::store::RunStore::startable_runs(self.store.as_ref())?;
        let mut waiting = std::collections::HashSet::new();
        let mut started = 0;
        for (id, runbook) in held {
            if seen.contains(&id) && !self.is_active(&id) {
                if self.spawn(id.clone(), &runbook) {
                    started += 1;
                }
            } else {
                waiting.insert(id);
            }
        }
        *seen = waiting;
        Ok(started)
    }

    /// Starts the runs accepted but not started by the last daemon (approved while it was
    /// draining): queued runs that wait for no slot. Call after [`App::recover`].
    pub fn start_held(self: &Arc<Self>) -> Result<usize, StoreError> {
        let held = crate::store::RunStore::startable_runs(self.store.as_ref())?;
        for (id, runbook) in &held {
            // A runbook removed meanwhile still gets its run started: `execute` fails it on
            // the digest check (rule 4), on record.
            self.spawn(id.clone(), runbook);
        }
        Ok(held.len())
    }

    /// Makes the plan for `rb` as `initiator` would run it now.
    pub fn plan(
        &self,
        rb: &Runbook,
        params: &Map<String, Value>,
        initiator: Initiator,
        slot: Option<String>,
    ) -> Result<Plan, PlanError> {
        make_plan(rb, &self.config(), params, initiator, slot)
    }

    /// Turns a request into a run: rule 1, params, plan, then either waits for approval
    /// (rule 3) or starts at once.
    pub fn submit(self: &Arc<Self>, user: &User, req: StartRequest) -> Result<RunRow, RunError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(RunError::ShuttingDown);
        }
        let actor = Actor::user(&user.name, &user.party);
        let catalog = self.catalog();
        let rb = catalog
            .get(&req.runbook)
            .ok_or_else(|| RunError::UnknownRunbook(req.runbook.clone()))?;
        if let Err(refused) = start_refusal(rb, user, &req) {
            if let Some(reason) = &refused.denied {
                self.store.audit(
                    &actor,
                    None,
                    Event::StartDenied,
                    json!({"runbook": rb.name, "reason": reason}),
                )?;
            }
            return Err(refused.error);
        }
        let mut plan = self.request_plan(rb, user, &req)?;
        self.refuse_frozen_targets(&actor, &plan)?;
        if let Some(shown) = req.digest.as_deref().filter(|d| *d != plan.digest) {
            return Err(RunError::Conflict(format!(
                "the plan changed since it was shown (digest {shown}, now {}); nothing was \
                 started: look at it again",
                plan.digest
            )));
        }
        plan.trigger = req.trigger.clone();
        let id = new_run_id();
        let needs_approval = !plan.approvals.is_empty() && !req.break_glass;
        let review_parties = approve::review_parties(rb, &plan);
        let expires_at = needs_approval.then(|| approve::expiry(rb));
        let break_glass = req.break_glass.then(|| {
            (
                req.reason.as_deref().unwrap_or_default(),
                review_parties.as_slice(),
            )
        });
        self.store.tx(|tx| {
            record_run(
                tx,
                &id,
                rb,
                &plan,
                &actor,
                expires_at.as_deref(),
                break_glass,
                None,
                req.reference.as_deref(),
            )
        })?;
        let who = format!("{} ({})", user.name, user.party);
        if needs_approval {
            self.prompt_approvers(&id, rb, &who, &plan);
        } else {
            if req.break_glass {
                for p in &review_parties {
                    self.prompt(
                        crate::notify::NoticeEvent::ReviewRequested,
                        p,
                        &id,
                        rb,
                        &who,
                        &plan,
                    );
                }
            }
            self.spawn(id.clone(), &rb.name);
        }
        self.store.run(&id)?.ok_or(RunError::UnknownRun(id))
    }

    /// The plan `req` would start now, checked as [`App::submit`] checks it (rule 1, a
    /// break-glass start, the reference, the params, the limit) but recording nothing: the
    /// console's preview. Frozen targets are not refused here; the plan shows them.
    pub fn preview(&self, user: &User, req: &StartRequest) -> Result<Plan, RunError> {
        let catalog = self.catalog();
        let rb = catalog
            .get(&req.runbook)
            .ok_or_else(|| RunError::UnknownRunbook(req.runbook.clone()))?;
        start_refusal(rb, user, req).map_err(|r| r.error)?;
        self.request_plan(rb, user, req)
    }

    /// The plan of a request by `user`.
    fn request_plan(
        &self,
        rb: &Runbook,
        user: &User,
        req: &StartRequest,
    ) -> Result<Plan, RunError> {
        let initiator = Initiator {
            user: user.name.clone(),
            party: user.party.clone(),
        };
        Ok(make_limited_plan(
            rb,
            &self.config(),
            &req.params,
            initiator,
            None,
            &req.limit,
        )?)
    }

    /// The runbooks `user` may start (rule 1, [`policy::may_start`]), by name.
    pub fn startable_runbooks(&self, user: &User) -> Vec<Runbook> {
        self.catalog()
            .runbooks
            .values()
            .filter(|rb| policy::may_start(rb, user).is_ok())
            .cloned()
            .collect()
    }

    /// Whether the daemon is draining and accepts no new runs.
    fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Starts carrying out a queued run in the background, unless the daemon is draining:
    /// then the run stays queued and the next daemon starts it ([`App::start_held`]).
    /// `false` when it was held back.
    fn spawn(self: &Arc<Self>, id: String, runbook: &str) -> bool {
        let control = Arc::new(RunControl {
            cancel: AtomicBool::new(false),
            runbook: runbook.to_string(),
        });
        {
            // The drain flag is read under the lock `drain` sets it under, so a run is
            // either in `active` before the drain looks, or never started by this daemon.
            let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            if self.shutting_down.load(Ordering::SeqCst) {
                tracing::info!(run = %id, "draining: the run stays queued for the next start");
                return false;
            }
            active.insert(id.clone(), control.clone());
        }
        let app = self.clone();
        tokio::spawn(async move {
            if let Err(e) = app.execute(&id, control).await {
                tracing::error!(run = %id, error = %e, "run could not be carried out");
            }
            // The executor is gone: its lease is no longer renewed. A run it could not end
            // (the store was unreachable) is taken over once the lease lapses.
            app.store.release(&id);
            let now_idle = match app.active.lock() {
                Ok(mut active) => {
                    active.remove(&id);
                    active.is_empty()
                }
                Err(_) => false,
            };
            app.changed.notify_waiters();
            app.schedule_wake.notify_one();
            if now_idle {
                app.idle.notify_waiters();
            }
        });
        true
    }

    /// Whether the daemon is draining (SIGTERM): nothing new starts.
    pub fn draining(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Whether this run is being carried out now: its final status is not recorded yet, or
    /// was recorded only just now (a change is announced on [`App::changed`] once it is
    /// no longer active).
    pub fn is_active(&self, id: &str) -> bool {
        self.active
            .lock()
            .map(|a| a.contains_key(id))
            .unwrap_or(false)
    }

    /// Whether any run of this runbook is being carried out now.
    fn runbook_active(&self, runbook: &str) -> bool {
        self.active
            .lock()
            .map(|a| a.values().any(|c| c.runbook == runbook))
            .unwrap_or(false)
    }

    /// Cancels a run that has not finished (rule 11: [`policy::may_cancel`]). A run the
    /// caller may not see is unknown to it (rule 10).
    pub fn cancel(&self, user: &User, id: &str) -> Result<RunRow, RunError> {
        let run = self.visible_run(user, id)?;
        let actor = Actor::user(&user.name, &user.party);
        if let Err(denied) =
            policy::may_cancel(user, &run.initiator.party, &policy::run_owners(&run.plan))
        {
            self.store.audit(
                &actor,
                Some(id),
                Event::CancelDenied,
                json!({"reason": denied.0}),
            )?;
            return Err(RunError::Forbidden(denied.0));
        }
        // Not started yet (awaiting approval, or approved and queued): it ends here, and the
        // executor's start, should one be on its way, is refused.
        let ended = self.store.tx(|tx| {
            let why = "cancelled before it started";
            let ended = lifecycle::end(
                tx,
                id,
                RunStatus::NOT_STARTED,
                RunStatus::Cancelled,
                Some(why),
                &actor,
            )?;
            Ok(ended.then_some(()).ok_or(tx.run_status(id)?))
        })?;
        match ended {
            Ok(()) => {}
            Err(Some(RunStatus::Running)) => {
                // Under way: the executor stops at its next check and ends it `cancelled`.
                let control = self.active.lock().ok().and_then(|a| a.get(id).cloned());
                match control {
                    Some(c) => {
                        c.cancel.store(true, Ordering::SeqCst);
                        self.store
                            .audit(&actor, Some(id), Event::CancelRequested, json!({}))?;
                    }
                    // It ended between the two looks.
                    None => {
                        let now = self.store.run(id)?.map(|r| r.status);
                        return Err(RunError::Conflict(format!(
                            "run {id} already ended {}",
                            now.map_or("(unknown)", RunStatus::as_str)
                        )));
                    }
                }
            }
            Err(now) => {
                return Err(RunError::Conflict(format!(
                    "run {id} already ended {}",
                    now.map_or("(unknown)", RunStatus::as_str)
                )))
            }
        }
        self.changed.notify_waiters();
        // As every read: the chain links cut to what `user` may see (rule 10).
        self.visible_run(user, id)
    }

    /// Stops accepting runs and waits for active ones to end (SIGTERM).
    pub async fn drain(&self) {
        {
            // Under the lock `spawn` reads it under (see there).
            let _active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            self.shutting_down.store(true, Ordering::SeqCst);
        }
        // The scheduler stops at its next look.
        self.schedule_wake.notify_one();
        loop {
            let idle = self.idle.notified();
            if self.active.lock().map(|a| a.is_empty()).unwrap_or(true) {
                return;
            }
            // Re-check at least every second in case a notification raced the check.
            let _ = tokio::time::timeout(Duration::from_secs(1), idle).await;
        }
    }

    /// Carries out a run: rule 4 digest check, then the hosts per the rollout.
    async fn execute(self: &Arc<Self>, id: &str, control: Arc<RunControl>) -> Result<(), RunError> {
        let store = self.store.clone();
        let rid = id.to_string();
        let run = tokio::task::spawn_blocking(move || store.run(&rid))
            .await
            .map_err(|e| RunError::Invalid(e.to_string()))??
            .ok_or_else(|| RunError::UnknownRun(id.to_string()))?;
        let initiator = run.initiator.clone();
        let actor = actor_of(&initiator);
        let catalog = self.catalog();

        // Rule 4: recompute the digest from what would run now; any difference, no run.
        let recomputed = catalog
            .get(&run.runbook)
            .ok_or_else(|| RunError::UnknownRunbook(run.runbook.clone()))
            .and_then(|rb| {
                let params: Map<String, Value> = run.plan.params.clone().into_iter().collect();
                let limit = run.plan.limit.clone();
                Ok((
                    rb,
                    make_limited_plan(
                        rb,
                        &self.config(),
                        &params,
                        initiator.clone(),
                        run.slot.clone(),
                        &limit,
                    )?,
                ))
            });
        let (rb, plan) = match recomputed {
            Ok((rb, plan)) if plan.digest == run.digest => (rb, plan),
            other => {
                let why = match other {
                    Ok((_, p)) => format!("plan digest changed since the request ({} → {}): the runbook, targets or host keys were edited", short(&run.digest), short(&p.digest)),
                    Err(e) => e.to_string(),
                };
                // Refused at the start: ends only a run still queued (a cancel may have
                // ended it first).
                self.finish(
                    id,
                    &actor,
                    &[RunStatus::Queued],
                    RunStatus::Failed,
                    Some(&format!("digest_mismatch: {why}")),
                )?;
                return Ok(());
            }
        };

        // Starting is a move of its own, taken before the first action: a run cancelled
        // (or otherwise ended) before this point never starts.
        // The store blocks (fsync): let tokio move this worker's other tasks elsewhere.
        let started = tokio::task::block_in_place(|| {
            self.store.tx(|tx| {
                let mut detail = json!({"digest": plan.digest, "version": rb.version});
                if let (Some(r), Value::Object(d)) = (&run.reference, &mut detail) {
                    d.insert("ref".into(), json!(r));
                }
                lifecycle::start(
                    tx,
                    id,
                    &actor,
                    detail,
                    &format!("run started: {} ({} hosts)", rb.name, plan.targets.len()),
                )
            })
        })?;
        self.changed.notify_waiters();
        if !started {
            return Ok(());
        }

        let ast = match crate::script::compile(&rb.script) {
            Ok(ast) => Arc::new(ast),
            Err(e) => {
                self.finish(
                    id,
                    &actor,
                    &[RunStatus::Running],
                    RunStatus::Failed,
                    Some(&format!("script does not compile: {e}")),
                )?;
                return Ok(());
            }
        };
        let shared = Arc::new(host::RunShared {
            app: self.clone(),
            config: self.config(),
            run_id: id.to_string(),
            runbook: rb.clone(),
            params: serde_json::to_value(&plan.params).unwrap_or(Value::Null),
            actor,
            deadline: Instant::now() + rb.timeout,
            cancel: control,
            violation: Mutex::new(None),
            frozen: Mutex::new(None),
            gate_end: Mutex::new(None),
            plan: run.plan,
            window_end: schedule::window_end(rb, run.slot.as_deref()),
            redactor: {
                let config = self.config();
                let mut r = crate::audit::Redactor::default();
                for name in config.secrets.keys() {
                    if let Ok(v) = config.read_secret(name) {
                        r.add(v.expose());
                    }
                }
                r
            },
            output: output::RunBudget::default(),
            emitted: chain::EmitBoard::default(),
            rt: tokio::runtime::Handle::current(),
        });
        let outcome = self.rollout(shared.clone(), ast, &plan).await;
        let (final_status, error) = match (&outcome, shared.violation()) {
            (_, Some(v)) => (RunStatus::Failed, Some(format!("scope_violation: {v}"))),
            (_, None) if shared.frozen().is_some() => (
                RunStatus::Failed,
                shared.frozen().map(|f| format!("{}: {f}", freeze::FROZEN)),
            ),
            (_, None) if shared.gate_end().is_some() => {
                let end = shared.gate_end().unwrap_or(RunStatus::Failed);
                (end, Some(format!("a mid-run approval gate was {end}")))
            }
            (_, None) if shared.cancelled() => {
                (RunStatus::Cancelled, Some("cancelled".to_string()))
            }
            (Ok(()), None) => (RunStatus::Succeeded, None),
            (Err(e), None) => (RunStatus::Failed, Some(e.clone())),
        };
        self.finish(
            id,
            &shared.actor,
            &[RunStatus::Running],
            final_status,
            error.as_deref(),
        )?;
        // The one place a run's end starts its follow-ups (`then:`).
        let end = match final_status {
            RunStatus::Succeeded => crate::runbook::chain::ParentEnd::Succeeded,
            RunStatus::Failed => crate::runbook::chain::ParentEnd::Failed,
            _ => crate::runbook::chain::ParentEnd::Stopped,
        };
        let parent_params: Map<String, Value> = plan.params.clone().into_iter().collect();
        tokio::task::block_in_place(|| {
            self.start_follow_ups(chain::Parent {
                id,
                runbook: rb,
                params: &parent_params,
                initiator: &initiator,
                end,
                emitted: shared.emitted.settle(),
                reference: run.reference.as_deref(),
            })
        })?;
        Ok(())
    }

    /// Runs the script on every target in batches, `parallel` at a time, stopping new hosts
    /// once `max_failures` is exceeded or the run is cancelled. `Err` summarizes failures.
    async fn rollout(
        &self,
        shared: Arc<host::RunShared>,
        ast: Arc<rhai::AST>,
        plan: &Plan,
    ) -> Result<(), String> {
        let rb = &shared.runbook;
        if plan.targets.is_empty() {
            let s = shared.clone();
            return tokio::task::spawn_blocking(move || host::run_host(&s, &ast, None))
                .await
                .map_err(|e| format!("script thread failed: {e}"))?;
        }
        let total = plan.targets.len();
        let batch = rb.rollout.batch.map_or(total, |b| b.of(total).max(1));
        let max_failures = rb.rollout.max_failures.map(|m| m.of(total));
        let permits = Arc::new(Semaphore::new(rb.rollout.parallel));
        // Counted as hosts finish, before their permit is released, so the next host
        // waiting for a permit sees every failure that came before it.
        let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut failures: Vec<String> = Vec::new();
        let mut halted: Option<String> = None;
        'batches: for chunk in plan.targets.chunks(batch) {
            let mut tasks = Vec::with_capacity(chunk.len());
            for target in chunk {
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| e.to_string())?;
                if shared.stop_reason().is_some() {
                    break;
                }
                if let Some(m) = max_failures.filter(|m| failed.load(Ordering::SeqCst) > *m) {
                    halted = Some(format!(
                        "max_failures ({m}) exceeded; remaining hosts not started"
                    ));
                    break;
                }
                if shared
                    .window_end
                    .is_some_and(|end| chrono::Utc::now() >= end)
                {
                    halted =
                        Some("the maintenance window closed; remaining hosts not started".into());
                    break;
                }
                let (s, ast, t, failed) =
                    (shared.clone(), ast.clone(), target.clone(), failed.clone());
                tasks.push((
                    target.name.clone(),
                    tokio::task::spawn_blocking(move || {
                        let r = host::run_host(&s, &ast, Some(&t));
                        if r.is_err() {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                        drop(permit);
                        r
                    }),
                ));
            }
            for (name, task) in tasks {
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push(format!("{name}: {e}")),
                    Err(e) => failures.push(format!("{name}: script thread failed: {e}")),
                }
            }
            if halted.is_some() || shared.stop_reason().is_some() {
                break 'batches;
            }
        }
        if failures.is_empty() && halted.is_none() {
            Ok(())
        } else {
            let mut msg = format!("{} of {} hosts failed", failures.len(), total);
            if let Some(first) = failures.first() {
                msg.push_str(&format!(" (first: {first})"));
            }
            if let Some(h) = halted {
                msg.push_str(&format!("; {h}"));
            }
            Err(msg)
        }
    }

    /// Ends a run the executor holds (see [`lifecycle::end`]). A refusal means someone
    /// else ended it first; it is logged and left alone.
    fn finish(
        &self,
        id: &str,
        actor: &Actor,
        from: &[RunStatus],
        to: RunStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        // Called from the async orchestrator; the store blocks (fsync).
        let ended = tokio::task::block_in_place(|| {
            self.store
                .tx(|tx| lifecycle::end(tx, id, from, to, error, actor))
        })?;
        if !ended {
            tracing::warn!(run = %id, status = %to, "the run had already left {from:?}; not ended again");
        }
        self.changed.notify_waiters();
        Ok(())
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// Rule 8 for an action whose result will never be known (its daemon or node stopped while
/// it was in flight): recorded `outcome_unknown` with why, never re-run.
fn outcome_unknown(
    tx: &crate::store::Tx<'_>,
    a: &crate::store::OpenAction,
    why: &str,
) -> Result<(), StoreError> {
    let unknown = crate::state::ActionStatus::OutcomeUnknown;
    tx.action_done(a.id, unknown)?;
    tx.audit(
        &Actor::system(),
        Some(&a.run_id),
        Event::ActionResult,
        json!({"host": a.host, "kind": a.kind, "target": a.target, "outcome": unknown, "reason": why}),
    )?;
    Ok(())
}

#[cfg(test)]
mod ref_tests {
    use super::check_ref;

    #[test]
    fn a_ref_is_short_printable_text() {
        assert!(check_ref("TICKET-123").is_ok());
        assert!(check_ref("INC 42 / Müller").is_ok());
        assert!(check_ref(&"x".repeat(128)).is_ok());
        assert!(check_ref(&"x".repeat(129)).unwrap_err().contains("129"));
        assert!(check_ref("").is_err());
        assert!(check_ref("   ").is_err());
        assert!(check_ref("a\nb").unwrap_err().contains("U+000A"));
        assert!(check_ref("a\u{1b}[31mb").is_err());
        assert!(check_ref("evil\u{202E}txt").is_err());
    }
}
