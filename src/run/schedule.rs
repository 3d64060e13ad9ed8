//! The daemon's scheduler (SPEC §3b): turns due slots into runs, at most once per slot, also
//! across restarts and crashes (the slot is a unique key of the run, and the last handled
//! slot is stored in the same transaction as the run it created).
//!
//! The loop keeps a heap of each schedule's next event and sleeps until the earliest one,
//! so 10,000 idle schedules cost nothing between slots.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::{lifecycle, new_run_id, record_run, App};
use crate::audit::{Actor, Event};
use crate::runbook::plan::{Initiator, Plan};
use crate::runbook::Runbook;
use crate::scheduler::{Misfire, Overlap, Schedule};
use crate::state::{GateStatus, RunStatus};
use crate::store::{StoreError, Tx};

/// A slot whose fire time passed more than this long ago was missed (the daemon was down),
/// rather than merely reached a little late.
pub(super) const MISFIRE_GRACE: chrono::Duration = chrono::Duration::seconds(30);

/// How soon a schedule whose pass could not be recorded is tried again.
pub(super) const RETRY_AFTER_FAILURE: chrono::Duration = chrono::Duration::seconds(5);

/// At most this many missed slots are handled (and audited) per schedule after downtime.
const MAX_MISSED: usize = 1000;

/// Slots of one schedule that may wait for approval at once.
const MAX_REQUESTED_AHEAD: usize = 5;

/// RFC 3339 in UTC, seconds precision: the form slots are stored and compared in.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The unique key of one slot of one runbook.
pub fn slot_key(runbook: &str, slot: DateTime<Utc>) -> String {
    format!("{runbook}@{}", ts(slot))
}

/// The slot time of a slot key.
pub fn slot_time(key: &str) -> Option<DateTime<Utc>> {
    let (_, t) = key.rsplit_once('@')?;
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Who a scheduled run acts as: `system`, on behalf of the runbook's owner.
pub fn system_initiator(rb: &Runbook) -> Initiator {
    Initiator {
        user: "system".into(),
        party: rb.owner.clone(),
    }
}

/// Whether standing approvals cover `digest` of `runbook`'s schedule at `at` for every
/// party in `approvals` (quorum distinct approvers each).
fn standing_covers(
    tx: &Tx<'_>,
    runbook: &str,
    digest: &str,
    approvals: &[crate::policy::ApprovalRequirement],
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    if approvals.is_empty() {
        return Ok(true);
    }
    let granted = tx.standing_at(runbook, digest, &crate::store::now_at(at))?;
    Ok(approvals.iter().all(|req| {
        granted
            .iter()
            .filter(|(party, _)| *party == req.party)
            .count() as u32
            >= req.quorum
    }))
}

/// A schedule's facts that depend only on the config and catalog in force
/// ([`App::schedule_facts`]).
#[derive(Debug)]
pub struct ScheduleFacts {
    pub runbook: String,
    pub spec: crate::runbook::ScheduleSpec,
    pub schedule: Schedule,
    /// The whole schedule's plan digest and the approvals it needs (reasons left out);
    /// `None` when no plan can be made.
    pub whole: Option<(String, Vec<crate::policy::ApprovalRequirement>)>,
    /// The parties it concerns (rule 10, [`crate::policy::runbook_parties`]).
    pub concerns: std::collections::BTreeSet<String>,
}

/// One schedule as `GET /api/v1/schedules` and the schedules page show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScheduleView {
    pub runbook: String,
    pub cron: Option<String>,
    pub rrule: Option<String>,
    pub timezone: String,
    pub offset: Option<String>,
    pub window: Option<String>,
    pub overlap: &'static str,
    pub misfire: &'static str,
    pub next: Vec<SlotView>,
    pub approval_needed_from: Vec<String>,
    pub schedule_digest: Option<String>,
    /// Whether the next slot is approved (a standing approval, or a run queued for it);
    /// `None` when there is no next slot.
    pub next_slot_approved: Option<bool>,
    /// Standing approvals of the schedule's digest in force now.
    pub standing: Vec<StandingView>,
    pub last: Option<LastSlot>,
}

/// A coming slot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotView {
    pub utc: String,
    /// In the schedule's zone.
    pub local: String,
    /// The slot plus its jitter.
    pub fires_at: String,
    /// The blackout calendar that skips it.
    pub blackout: Option<String>,
}

/// A standing approval in force: who gave it and until when.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StandingView {
    pub party: String,
    pub user: String,
    pub until: String,
}

/// The newest scheduled run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastSlot {
    pub slot: String,
    pub status: RunStatus,
}

/// Each handled schedule's next event time (none: nothing more to do).
type NextEvents = Vec<(String, Option<DateTime<Utc>>)>;

/// Work to do after a scheduler transaction commits.
enum After {
    Spawn(String, String),
    Prompt(String, String, Box<Plan>),
}

impl App {
    /// The plan of a schedule as a whole (no slot): what a standing approval approves.
    pub fn schedule_plan(&self, rb: &Runbook) -> Result<Plan, crate::runbook::plan::PlanError> {
        self.plan(rb, &Map::new(), system_initiator(rb), None)
    }

    /// Whether standing approvals cover the schedule's digest at `at` for every party whose
    /// approval the schedule needs (quorum distinct approvers each).
    fn standing_covers(
        &self,
        tx: &Tx<'_>,
        rb: &Runbook,
        whole: &Plan,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        standing_covers(tx, &rb.name, &whole.digest, &whole.approvals, at)
    }

    /// Handles every schedule whose next event is due at `now`: fires slots, audits skipped
    /// and missed ones, requests approvals `approval.lead` ahead. Returns each handled
    /// schedule's next event time. Each schedule is handled in a transaction of its own: one
    /// that cannot be recorded is logged, audited as `slot_failed` where the audit log
    /// still takes it, left unfired (its last handled slot is not advanced) and tried again
    /// shortly, without holding back the others. A draining daemon handles none: its slots
    /// wait for the next start.
    pub(super) fn schedule_pass(
        self: &Arc<Self>,
        names: &[String],
        now: DateTime<Utc>,
    ) -> NextEvents {
        let catalog = self.catalog();
        let config = self.config();
        let mut next = Vec::new();
        for name in names {
            if self.draining() {
                break;
            }
            let Some(rb) = catalog.get(name) else {
                continue;
            };
            let Some(spec) = &rb.schedule else { continue };
            let Ok(sch) = Schedule::parse(spec) else {
                continue;
            };
            let mut after = Vec::new();
            let handled = self
                .store
                .tx(|tx| self.schedule_one(tx, rb, &sch, &config, now, &mut after));
            match handled {
                Ok(at) => {
                    next.push((name.clone(), at));
                    self.after_schedule(&catalog, after);
                }
                Err(e) => {
                    tracing::error!(runbook = %name, error = %e, "scheduler: the pass could not be recorded; its slots are not fired and are tried again");
                    let detail = json!({"runbook": name, "at": ts(now), "error": e.to_string()});
                    if let Err(e2) =
                        self.store
                            .audit(&Actor::system(), None, Event::SlotFailed, detail)
                    {
                        tracing::error!(runbook = %name, error = %e2, "scheduler: slot_failed could not be audited either");
                    }
                    next.push((name.clone(), Some(now + RETRY_AFTER_FAILURE)));
                }
            }
        }
        next
    }

    /// Starts and prompts what a committed scheduler transaction decided.
    fn after_schedule(self: &Arc<Self>, catalog: &crate::runbook::Catalog, after: Vec<After>) {
        for a in after {
            match a {
                After::Spawn(id, runbook) => {
                    self.spawn(id, &runbook);
                }
                After::Prompt(id, party, plan) => {
                    if let Some(rb) = catalog.get(&plan.runbook) {
                        self.prompt(
                            crate::notify::NoticeEvent::ApprovalRequested,
                            &party,
                            &id,
                            rb,
                            &format!("system ({})", rb.owner),
                            &plan,
                        );
                    }
                }
            }
        }
    }

    fn schedule_one(
        self: &Arc<Self>,
        tx: &Tx<'_>,
        rb: &Runbook,
        sch: &Schedule,
        config: &crate::config::Config,
        now: DateTime<Utc>,
        after: &mut Vec<After>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let system = Actor::system();
        let last = match tx.schedule_last(&rb.name)? {
            Some(l) => match DateTime::parse_from_rfc3339(&l) {
                Ok(t) => t.with_timezone(&Utc),
                Err(e) => {
                    // A bad row: start over from now rather than never fire again; said aloud.
                    tracing::error!(runbook = %rb.name, last = %l, error = %e, "scheduler: the stored last slot is not a time; counting from now");
                    now
                }
            },
            None => {
                // A new schedule starts from now: nothing before it counts as missed.
                tx.set_schedule_last(&rb.name, &ts(now))?;
                now
            }
        };
        let due: Vec<DateTime<Utc>> = sch
            .slots_after(last)
            .take_while(|s| sch.fire_time(&rb.name, *s) <= now)
            .take(MAX_MISSED)
            .collect();
        let missed = |s: &DateTime<Utc>| now - sch.fire_time(&rb.name, *s) > MISFIRE_GRACE;
        // misfire: run_once runs the newest missed slot, unless a slot is due on time anyway.
        let catch_up = match sch.misfire {
            Misfire::RunOnce if due.iter().all(missed) => due.last().copied(),
            _ => None,
        };
        let whole = self.schedule_plan(rb).ok();
        for slot in &due {
            if missed(slot) && Some(*slot) != catch_up {
                tx.audit(
                    &system,
                    None,
                    Event::SlotMissed,
                    json!({"runbook": rb.name, "slot": ts(*slot), "misfire": sch.misfire.name()}),
                )?;
                continue;
            }
            self.fire(tx, rb, sch, config, *slot, whole.as_ref(), after)?;
        }
        if let Some(last_due) = due.last() {
            tx.set_schedule_last(&rb.name, &ts(*last_due))?;
        }

        // Ask for approval `approval.lead` ahead of coming slots that no standing approval
        // covers.
        let lead = rb
            .approval
            .as_ref()
            .map_or(Duration::from_secs(24 * 3600), |a| a.lead);
        let lead = chrono::Duration::from_std(lead).unwrap_or(chrono::Duration::days(1));
        let needs_approval = whole.as_ref().is_some_and(|w| !w.approvals.is_empty());
        let mut next_request = None;
        if let (true, Some(whole)) = (needs_approval, whole.as_ref()) {
            // The next few slots at most: a fast schedule must not flood approvers.
            for slot in sch.slots_after(now).take(MAX_REQUESTED_AHEAD) {
                if slot - lead > now {
                    next_request = Some(slot - lead);
                    break;
                }
                if sch.blackout_at(&config.calendars, slot).is_some()
                    || self.standing_covers(tx, rb, whole, slot)?
                {
                    continue;
                }
                let key = slot_key(&rb.name, slot);
                if tx.run_for_slot(&key)?.is_some() {
                    continue;
                }
                let Ok(plan) = self.plan(rb, &Map::new(), system_initiator(rb), Some(key.clone()))
                else {
                    continue;
                };
                let id = new_run_id();
                record_run(
                    tx,
                    &id,
                    rb,
                    &plan,
                    &system,
                    Some(&crate::store::now_at(slot)),
                    None,
                    None,
                    None,
                )?;
                for a in &plan.approvals {
                    after.push(After::Prompt(
                        id.clone(),
                        a.party.clone(),
                        Box::new(plan.clone()),
                    ));
                }
            }
        }
        let next_fire = sch
            .slots_after(due.last().copied().unwrap_or(last).max(now - MISFIRE_GRACE))
            .next()
            .map(|s| sch.fire_time(&rb.name, s));
        Ok(match (next_fire, next_request) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// One slot reached its fire time.
    #[allow(clippy::too_many_arguments)]
    fn fire(
        self: &Arc<Self>,
        tx: &Tx<'_>,
        rb: &Runbook,
        sch: &Schedule,
        config: &crate::config::Config,
        slot: DateTime<Utc>,
        whole: Option<&Plan>,
        after: &mut Vec<After>,
    ) -> Result<(), StoreError> {
        let system = Actor::system();
        let key = slot_key(&rb.name, slot);
        let skip = |reason: &str, extra: Value| -> Result<(), StoreError> {
            let mut detail = json!({"runbook": rb.name, "slot": ts(slot), "reason": reason});
            if let (Value::Object(d), Value::Object(e)) = (&mut detail, extra) {
                d.extend(e);
            }
            tx.audit(&system, None, Event::SlotSkipped, detail)?;
            Ok(())
        };
        if let Some((calendar, why)) = sch.blackout_at(&config.calendars, slot) {
            return skip("blackout", json!({"calendar": calendar, "why": why}));
        }
        // A run requested ahead for approval, or an earlier pass's run for this slot.
        if let Some((id, st)) = tx.run_for_slot(&key)? {
            return match st {
                RunStatus::Queued if !self.is_active(&id) => {
                    after.push(After::Spawn(id, rb.name.clone()));
                    Ok(())
                }
                RunStatus::AwaitingApproval => {
                    // A standing approval given after the request covers the slot too.
                    let covered = match whole {
                        Some(w) => self.standing_covers(tx, rb, w, slot)?,
                        None => false,
                    };
                    if covered {
                        tx.close_pending_gates(&id, GateStatus::Superseded)?;
                        let detail = json!({"digest": whole.map(|w| w.digest.clone()), "superseded_gate": 0});
                        if lifecycle::accept(tx, &id, &system, Event::ApprovalStanding, detail)? {
                            after.push(After::Spawn(id, rb.name.clone()));
                        }
                        return Ok(());
                    }
                    lifecycle::end(
                        tx,
                        &id,
                        &[RunStatus::AwaitingApproval],
                        RunStatus::Expired,
                        Some("the slot was reached without approval"),
                        &system,
                    )?;
                    skip("unapproved", json!({"run_id": id}))
                }
                RunStatus::Expired | RunStatus::Denied => skip("unapproved", json!({"run_id": id})),
                RunStatus::Cancelled | RunStatus::Interrupted => {
                    skip(st.as_str(), json!({"run_id": id}))
                }
                _ => Ok(()),
            };
        }
        let Some(whole) = whole else {
            return skip("no plan", json!({}));
        };
        if !self.standing_covers(tx, rb, whole, slot)? {
            return skip("unapproved", json!({"needs": whole.approvals}));
        }
        let busy = tx.scheduled_run_active(&rb.name)?;
        if busy && sch.overlap == Overlap::Skip {
            return skip("overlap", json!({}));
        }
        let Ok(plan) = self.plan(rb, &Map::new(), system_initiator(rb), Some(key)) else {
            return skip("no plan", json!({}));
        };
        let id = new_run_id();
        record_run(tx, &id, rb, &plan, &system, None, None, None, None)?;
        if !whole.approvals.is_empty() {
            tx.audit(
                &system,
                Some(&id),
                Event::ApprovalStanding,
                json!({"digest": whole.digest, "parties": whole.approvals}),
            )?;
        }
        if !busy {
            after.push(After::Spawn(id, rb.name.clone()));
        }
        // With overlap: queue, a busy schedule's run waits; `start_queued` starts it.
        Ok(())
    }

    /// Starts the oldest queued scheduled run of each runbook with nothing active.
    pub(super) fn start_queued(self: &Arc<Self>, now: DateTime<Utc>) -> Result<(), StoreError> {
        let queued = self.store.tx(|tx| tx.queued_slot_runs())?;
        let mut seen = std::collections::HashSet::new();
        for (id, runbook, slot) in queued {
            // Only the oldest waiting run of each runbook, once its slot has come.
            if !seen.insert(runbook.clone()) || !slot_time(&slot).is_some_and(|t| t <= now) {
                continue;
            }
            if !self.is_active(&id) && !self.runbook_active(&runbook) {
                self.spawn(id, &runbook);
            }
        }
        Ok(())
    }

    /// The scheduler loop: runs until the process ends.
    pub async fn scheduler_loop(self: Arc<Self>) {
        let mut heap: BinaryHeap<Reverse<(DateTime<Utc>, String)>> = BinaryHeap::new();
        let mut generation = u64::MAX;
        loop {
            // A draining daemon starts nothing: the slots wait for the next start, which
            // handles them as due or missed (`misfire`).
            if self.draining() {
                tracing::info!("scheduler stopped: the daemon is draining");
                return;
            }
            // Several nodes: one leads the scheduler (a session advisory lock); the others
            // wait to take over, and then rebuild the heap, which handles what the last
            // leader missed. Each slot's key is unique, so a slot fires once regardless.
            let app = self.clone();
            let leads = tokio::task::spawn_blocking(move || app.store.lead_scheduler())
                .await
                .unwrap_or(false);
            if !leads {
                generation = u64::MAX;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // (Re)build the heap when the catalog changed: every schedule is due now, which
            // also handles slots missed while the daemon was down.
            let catalog = self.catalog();
            let gen = self.generation();
            if gen != generation {
                generation = gen;
                heap.clear();
                let now = Utc::now();
                for rb in catalog.runbooks.values().filter(|r| r.schedule.is_some()) {
                    heap.push(Reverse((now, rb.name.clone())));
                }
            }
            let now = Utc::now();
            let mut due = Vec::new();
            while let Some(Reverse((at, _))) = heap.peek() {
                if *at > now {
                    break;
                }
                if let Some(Reverse((_, name))) = heap.pop() {
                    due.push(name);
                }
            }
            if !due.is_empty() {
                let app = self.clone();
                let names = due.clone();
                match tokio::task::spawn_blocking(move || app.schedule_pass(&names, now)).await {
                    Ok(next) => {
                        // A schedule that failed to parse or vanished is dropped.
                        for (name, at) in next {
                            if let Some(at) = at {
                                heap.push(Reverse((at, name)));
                            }
                        }
                    }
                    Err(e) => {
                        // Nothing of the pass is known to be recorded: every schedule in it
                        // is tried again, never dropped.
                        tracing::error!(error = %e, "scheduler task failed; retrying in 5 s");
                        for name in due {
                            heap.push(Reverse((now + RETRY_AFTER_FAILURE, name)));
                        }
                    }
                }
            }
            let app = self.clone();
            match tokio::task::spawn_blocking(move || app.start_queued(Utc::now())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "starting queued scheduled runs failed; retrying")
                }
                Err(e) => tracing::error!(error = %e, "scheduler task failed"),
            }

            let wait = heap
                .peek()
                .map(|Reverse((at, _))| (*at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(60))
                .min(Duration::from_secs(60));
            let woken = self.schedule_wake.notified();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = woken => {}
            }
        }
    }

    /// What the view of every schedule needs that depends only on the config and catalog in
    /// force: parsed schedules, the whole-schedule plan's digest and approvals, and who each
    /// concerns. Making a schedule's plan resolves and hashes every target, which at
    /// thousands of hosts and hundreds of schedules took seconds per request: it is made
    /// once per loaded config and catalog instead.
    pub(super) fn schedule_facts(&self) -> Arc<Vec<ScheduleFacts>> {
        let loaded = self.loaded();
        let mut cache = match self.estate.schedules.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some((catalog, facts)) = cache.as_ref() {
            if Arc::ptr_eq(catalog, &loaded.catalog) {
                return facts.clone();
            }
        }
        let mut facts = Vec::new();
        for rb in loaded.catalog.runbooks.values() {
            let Some(spec) = &rb.schedule else { continue };
            let Ok(schedule) = Schedule::parse(spec) else {
                continue;
            };
            let targets =
                crate::runbook::plan::resolve_targets(rb, &loaded.config).unwrap_or_default();
            let whole = crate::runbook::plan::make_plan(
                rb,
                &loaded.config,
                &Map::new(),
                system_initiator(rb),
                None,
            )
            .ok()
            .map(|w| {
                // Only who and how many are kept: the reasons name every host.
                let approvals = w
                    .approvals
                    .into_iter()
                    .map(|a| crate::policy::ApprovalRequirement {
                        reasons: Vec::new(),
                        ..a
                    })
                    .collect();
                (w.digest, approvals)
            });
            facts.push(ScheduleFacts {
                runbook: rb.name.clone(),
                spec: spec.clone(),
                schedule,
                whole,
                concerns: crate::policy::runbook_parties(rb, &targets, false),
            });
        }
        let facts = Arc::new(facts);
        *cache = Some((loaded.catalog.clone(), facts.clone()));
        facts
    }

    /// The next `count` slots of each schedule `wanted` admits, with approval status
    /// (`GET /api/v1/schedules`, the console's schedules page).
    pub fn schedules_view(
        &self,
        count: usize,
        wanted: &dyn Fn(&ScheduleFacts) -> bool,
    ) -> Result<Vec<ScheduleView>, StoreError> {
        let facts = self.schedule_facts();
        let config = self.config();
        let now = Utc::now();
        let now_s = crate::store::now_at(now);
        let mut out = Vec::new();
        self.store.tx(|tx| {
            for f in facts.iter().filter(|f| wanted(f)) {
                let sch = &f.schedule;
                let next = sch.next(now, count);
                let approved = match (next.first(), &f.whole) {
                    (None, _) => None,
                    (Some(_), Some((_, approvals))) if approvals.is_empty() => Some(true),
                    (Some(slot), Some((digest, approvals))) => {
                        let pre = tx
                            .run_for_slot(&slot_key(&f.runbook, *slot))?
                            .is_some_and(|(_, s)| s == RunStatus::Queued);
                        Some(pre || standing_covers(tx, &f.runbook, digest, approvals, *slot)?)
                    }
                    (Some(_), None) => Some(false),
                };
                let standing = match &f.whole {
                    Some((digest, approvals)) if !approvals.is_empty() => tx
                        .standing_list(&f.runbook, digest, &now_s)?
                        .into_iter()
                        .map(|(party, user, until)| StandingView { party, user, until })
                        .collect(),
                    _ => Vec::new(),
                };
                let last = tx.last_scheduled(&f.runbook)?;
                out.push(ScheduleView {
                    runbook: f.runbook.clone(),
                    cron: f.spec.cron.clone(),
                    rrule: f.spec.rrule.clone(),
                    timezone: sch.tz.name().to_string(),
                    offset: f.spec.offset.clone(),
                    window: f.spec.window.clone(),
                    overlap: sch.overlap.name(),
                    misfire: sch.misfire.name(),
                    next: next
                        .iter()
                        .map(|t| SlotView {
                            utc: ts(*t),
                            local: t
                                .with_timezone(&sch.tz)
                                .to_rfc3339_opts(SecondsFormat::Secs, false),
                            fires_at: ts(sch.fire_time(&f.runbook, *t)),
                            blackout: sch
                                .blackout_at(&config.calendars, *t)
                                .map(|b| b.0.to_string()),
                        })
                        .collect(),
                    approval_needed_from: f
                        .whole
                        .iter()
                        .flat_map(|(_, a)| a.iter().map(|a| a.party.clone()))
                        .collect(),
                    schedule_digest: f.whole.as_ref().map(|(d, _)| d.clone()),
                    next_slot_approved: approved,
                    standing,
                    last: last.map(|(slot, status)| LastSlot { slot, status }),
                });
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// A standing approval of a schedule's digest for `period` (SPEC §3b), by an approver of
    /// a party whose approval the schedule needs.
    pub fn grant_standing(
        &self,
        user: &crate::config::User,
        runbook: &str,
        period: Duration,
        digest: Option<&str>,
        comment: Option<&str>,
    ) -> Result<Value, super::RunError> {
        use super::RunError;
        let catalog = self.catalog();
        let rb = catalog
            .get(runbook)
            .ok_or_else(|| RunError::UnknownRunbook(runbook.into()))?;
        if rb.schedule.is_none() {
            return Err(RunError::Conflict(format!(
                "runbook `{runbook}` has no schedule"
            )));
        }
        let whole = self.schedule_plan(rb)?;
        if let Some(d) = digest {
            if d != whole.digest {
                return Err(RunError::Conflict(
                    "the schedule is not what you were shown (digest mismatch)".into(),
                ));
            }
        }
        let actor = Actor::user(&user.name, &user.party);
        let req = match crate::approval::decider_party(user, &whole.approvals, "system") {
            Ok(r) => r.party.clone(),
            Err(d) => {
                self.store.audit(
                    &actor,
                    None,
                    Event::ApprovalRefused,
                    json!({"runbook": runbook, "standing": true, "reason": d.0}),
                )?;
                return Err(RunError::Forbidden(d.0));
            }
        };
        let until =
            Utc::now() + chrono::Duration::from_std(period).unwrap_or(chrono::Duration::days(1));
        let until_s = crate::store::now_at(until);
        self.store.tx(|tx| {
            let id = tx.insert_standing(runbook, &whole.digest, &req, &user.name, &until_s, comment)?;
            tx.audit(&actor, None, Event::ApprovalStandingGranted, json!({"runbook": runbook, "digest": whole.digest, "party": req, "until": until_s, "id": id}))
        })?;
        self.schedule_wake.notify_one();
        Ok(
            json!({"runbook": runbook, "digest": whole.digest, "party": req, "user": user.name, "until": until_s}),
        )
    }
}

/// When a run's maintenance window closes: its slot plus the schedule's `window`.
pub(super) fn window_end(rb: &Runbook, slot: Option<&str>) -> Option<DateTime<Utc>> {
    let slot = slot_time(slot?)?;
    Schedule::parse(rb.schedule.as_ref()?)
        .ok()?
        .window_end(slot)
}
