//! Reads of the whole estate for the console: the responsibility matrix, scoped to a party
//! (rule 10). What depends only on the config and catalog in force is computed once per
//! loaded pair and kept until a reload replaces it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{App, RunError};
use crate::config::{Host, User};
use crate::policy;
use crate::policy::matrix::Matrix;
use crate::runbook::plan::resolve_targets;
use crate::runbook::Catalog;
use crate::store::{FreezeRow, LastHostResult};

/// Per party, the names of the hosts it may see.
type HostsByParty = HashMap<String, Arc<HashSet<String>>>;

/// Values computed from one loaded config and catalog, dropped when they are replaced.
#[derive(Default)]
pub(super) struct EstateCache {
    matrix: Mutex<Option<(Arc<Catalog>, Arc<Matrix>)>>,
    /// Per party, the hosts it may see ([`App::hosts_for`]).
    hosts_seen: Mutex<Option<(Arc<Catalog>, HostsByParty)>>,
    /// The schedules' facts ([`App::schedule_facts`]).
    pub(super) schedules: Mutex<Option<(Arc<Catalog>, SchedulesFacts)>>,
    /// The audit chain verified so far ([`App::chain_status`]).
    chain: Mutex<Option<ChainStatus>>,
}

type SchedulesFacts = Arc<Vec<super::schedule::ScheduleFacts>>;

/// What the hosts page asks for; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct HostFilter {
    /// A part of the host's name.
    pub name: Option<String>,
    pub owner: Option<String>,
    pub tag: Option<String>,
    /// Only frozen hosts.
    pub frozen: bool,
    /// Only the targets of this runbook.
    pub runbook: Option<String>,
}

/// One host as a party sees it.
#[derive(Debug, Clone)]
pub struct HostView {
    pub host: Host,
    pub frozen: bool,
    /// The freeze's reason, author and time: only for the owning party, as
    /// `GET /api/v1/freezes` shows them.
    pub freeze: Option<FreezeRow>,
    /// The newest run on it, if the party may see that run.
    pub last: Option<LastHostResult>,
    /// Whether this user may freeze and lift it ([`policy::may_freeze`]).
    pub may_freeze: bool,
}

/// A page of hosts and the counts behind it.
#[derive(Debug, Clone)]
pub struct HostsPage {
    pub rows: Vec<HostView>,
    /// Hosts the party may see, hosts among them it owns, of those how many are frozen.
    pub seen: usize,
    pub owned: usize,
    pub frozen_owned: usize,
    /// Hosts matching the filter (all pages).
    pub matching: usize,
    pub page: usize,
    pub per_page: usize,
}

/// Hosts per page of `/hosts`.
pub const HOSTS_PER_PAGE: usize = 50;

impl App {
    /// The responsibility matrix of every runbook in force (not scoped: for the caller to
    /// scope). Computed once per loaded config and catalog.
    fn whole_matrix(&self) -> Arc<Matrix> {
        let loaded = self.loaded();
        let mut cache = match self.estate.matrix.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some((catalog, m)) = cache.as_ref() {
            if Arc::ptr_eq(catalog, &loaded.catalog) {
                return m.clone();
            }
        }
        let m = Arc::new(policy::matrix::matrix(
            &loaded.config,
            loaded.catalog.runbooks.values(),
        ));
        *cache = Some((loaded.catalog.clone(), m.clone()));
        m
    }

    /// The responsibility matrix of the runbooks `user`'s party may see (the same rule as
    /// [`App::runbooks_for`]: it owns them or their targets, approves them, or may start them).
    pub fn matrix_for(&self, user: &User) -> Matrix {
        let whole = self.whole_matrix();
        let grants = &self.config().read_grants;
        Matrix {
            parties: whole.parties.clone(),
            rows: whole
                .rows
                .iter()
                .filter(|r| policy::may_see_run(&user.party, &r.concerns, grants))
                .cloned()
                .collect(),
        }
    }
}

impl App {
    /// The hosts `user`'s party may see: those it owns and the targets of the runbooks it
    /// may see ([`App::matrix_for`]'s rule). Cached per party and loaded catalog.
    fn hosts_seen(&self, user: &User) -> Arc<HashSet<String>> {
        let loaded = self.loaded();
        let mut cache = match self.estate.hosts_seen.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if !matches!(cache.as_ref(), Some((c, _)) if Arc::ptr_eq(c, &loaded.catalog)) {
            *cache = Some((loaded.catalog.clone(), HashMap::new()));
        }
        let Some((_, by_party)) = cache.as_mut() else {
            return Arc::new(HashSet::new());
        };
        if let Some(set) = by_party.get(&user.party) {
            return set.clone();
        }
        let config = &loaded.config;
        let mut set: HashSet<String> = config
            .inventory
            .iter()
            .filter(|h| h.owner == user.party)
            .map(|h| h.name.clone())
            .collect();
        for rb in self.runbooks_for(user) {
            for h in resolve_targets(&rb, config).unwrap_or_default() {
                set.insert(h.name.clone());
            }
        }
        let set = Arc::new(set);
        by_party.insert(user.party.clone(), set.clone());
        set
    }

    /// A page (from 0) of the hosts `user`'s party may see, narrowed by `filter`, in
    /// inventory order, with freezes and each host's newest run. Blocking (reads the store).
    pub fn hosts_for(
        &self,
        user: &User,
        filter: &HostFilter,
        page: usize,
    ) -> Result<HostsPage, RunError> {
        let config = self.config();
        let seen = self.hosts_seen(user);
        let freezes: HashMap<String, FreezeRow> = self
            .store
            .freezes()?
            .into_iter()
            .map(|f| (f.host.clone(), f))
            .collect();
        let only: Option<HashSet<String>> = match &filter.runbook {
            Some(name) => {
                let catalog = self.catalog();
                let rb = catalog
                    .get(name)
                    .filter(|rb| self.runbooks_for(user).iter().any(|r| r.name == rb.name))
                    .ok_or_else(|| RunError::UnknownRunbook(name.clone()))?;
                Some(
                    resolve_targets(rb, &config)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|h| h.name.clone())
                        .collect(),
                )
            }
            None => None,
        };
        let visible: Vec<&Host> = config
            .inventory
            .iter()
            .filter(|h| seen.contains(&h.name))
            .collect();
        let owned = visible.iter().filter(|h| h.owner == user.party).count();
        let frozen_owned = visible
            .iter()
            .filter(|h| h.owner == user.party && freezes.contains_key(&h.name))
            .count();
        let name = filter.name.as_deref().map(str::to_lowercase);
        let matching: Vec<&Host> = visible
            .iter()
            .copied()
            .filter(|h| {
                name.as_deref()
                    .map_or(true, |n| h.name.to_lowercase().contains(n))
                    && filter.owner.as_deref().map_or(true, |o| h.owner == o)
                    && filter
                        .tag
                        .as_deref()
                        .map_or(true, |t| h.tags.iter().any(|x| x == t))
                    && (!filter.frozen || freezes.contains_key(&h.name))
                    && only.as_ref().map_or(true, |o| o.contains(&h.name))
            })
            .collect();
        let start = page.saturating_mul(HOSTS_PER_PAGE);
        let shown: Vec<&Host> = matching
            .iter()
            .skip(start)
            .take(HOSTS_PER_PAGE)
            .copied()
            .collect();
        let names: Vec<&str> = shown.iter().map(|h| h.name.as_str()).collect();
        let mut last: HashMap<String, LastHostResult> = self
            .store
            .last_host_results(&names)?
            .into_iter()
            .map(|r| (r.host.clone(), r))
            .collect();
        let mut rows = Vec::with_capacity(shown.len());
        // Whether the party sees each run met: hosts of one run share it, and reading a
        // run's plan (every target) is the costly part.
        let mut seen_runs: HashMap<String, bool> = HashMap::new();
        for h in shown {
            // A run on a host the party owns concerns it (rule 10); another's, only if seen.
            let last = match last.remove(&h.name) {
                Some(r) if h.owner == user.party => Some(r),
                Some(r) => {
                    let sees = match seen_runs.get(&r.run_id) {
                        Some(v) => *v,
                        None => {
                            let v = self
                                .store
                                .run(&r.run_id)?
                                .is_some_and(|run| self.sees(user, &run));
                            seen_runs.insert(r.run_id.clone(), v);
                            v
                        }
                    };
                    sees.then_some(r)
                }
                None => None,
            };
            let freeze = freezes.get(&h.name);
            rows.push(HostView {
                host: h.clone(),
                frozen: freeze.is_some(),
                freeze: freeze.filter(|f| f.party == user.party).cloned(),
                last,
                may_freeze: policy::may_freeze(user, h).is_ok(),
            });
        }
        Ok(HostsPage {
            rows,
            seen: visible.len(),
            owned,
            frozen_owned,
            matching: matching.len(),
            page,
            per_page: HOSTS_PER_PAGE,
        })
    }
}

/// One day of a schedule's month calendar.
#[derive(Debug, Clone)]
pub struct CalendarDay {
    pub date: chrono::NaiveDate,
    /// Slots starting this day (in the schedule's zone): local start, local end of the
    /// maintenance window if any, and the blackout calendar that skips it.
    pub slots: Vec<CalendarSlot>,
    /// Blackout calendars covering part of this day, with their reasons.
    pub blackouts: Vec<(String, Option<String>)>,
}

/// A slot in the month calendar.
#[derive(Debug, Clone)]
pub struct CalendarSlot {
    pub local: chrono::NaiveDateTime,
    pub window_end: Option<chrono::NaiveDateTime>,
    pub utc: chrono::DateTime<chrono::Utc>,
    pub blackout: Option<String>,
}

/// A schedule's month: its zone and each day.
#[derive(Debug, Clone)]
pub struct CalendarMonth {
    pub runbook: String,
    pub timezone: String,
    pub year: i32,
    pub month: u32,
    pub days: Vec<CalendarDay>,
}

/// At most this many slots are drawn in one month (an every-minute schedule).
const MAX_MONTH_SLOTS: usize = 400;

impl App {
    /// The month calendar of `runbook`'s schedule, if `user`'s party may see it: slots,
    /// their maintenance windows, and blackouts, by the scheduler's own arithmetic
    /// ([`crate::scheduler::Schedule::next`], `window_end`, `blackout_at`). `month` is
    /// `(year, month)`; `None`: the current month in the schedule's zone.
    pub fn schedule_month(
        &self,
        user: &User,
        runbook: &str,
        month: Option<(i32, u32)>,
    ) -> Result<CalendarMonth, RunError> {
        use chrono::{Datelike, NaiveDate, TimeZone, Utc};
        self.visible_schedule(user, runbook)?;
        let facts = self.schedule_facts();
        let f = facts
            .iter()
            .find(|f| f.runbook == runbook)
            .ok_or_else(|| RunError::UnknownRunbook(runbook.to_string()))?;
        let sch = &f.schedule;
        let tz = sch.tz;
        let today = Utc::now().with_timezone(&tz).date_naive();
        let (year, mon) = month.unwrap_or((today.year(), today.month()));
        let bad = || RunError::Invalid(format!("no such month {year}-{mon:02}"));
        let first = NaiveDate::from_ymd_opt(year, mon, 1).ok_or_else(bad)?;
        let next_first = if mon == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(year, mon + 1, 1)
        }
        .ok_or_else(bad)?;
        // Local midnight of a day as an instant; a midnight in a DST gap takes the earliest
        // instant after it.
        let start_of = |d: NaiveDate| -> chrono::DateTime<Utc> {
            let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
            tz.from_local_datetime(&midnight)
                .earliest()
                .or_else(|| {
                    tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                        .earliest()
                })
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
        };
        let (from, to) = (start_of(first), start_of(next_first));
        let config = self.config();
        let mut days: Vec<CalendarDay> = Vec::new();
        let mut d = first;
        while d < next_first {
            // A blackout is looked for at each hour of the day: periods are drawn per day.
            let mut blackouts: Vec<(String, Option<String>)> = Vec::new();
            let day_start = start_of(d);
            for h in 0..24 {
                let t = day_start + chrono::Duration::hours(h);
                if let Some((name, why)) = sch.blackout_at(&config.calendars, t) {
                    if !blackouts.iter().any(|(n, _)| n == name) {
                        blackouts.push((name.to_string(), why.map(str::to_string)));
                    }
                }
            }
            days.push(CalendarDay {
                date: d,
                slots: Vec::new(),
                blackouts,
            });
            d = d.succ_opt().ok_or_else(bad)?;
        }
        // `next` gives slots strictly after its start: begin a second earlier.
        for slot in sch.next(from - chrono::Duration::seconds(1), MAX_MONTH_SLOTS) {
            if slot >= to {
                break;
            }
            let local = slot.with_timezone(&tz).naive_local();
            if let Some(day) = days.iter_mut().find(|x| x.date == local.date()) {
                day.slots.push(CalendarSlot {
                    local,
                    window_end: sch
                        .window_end(slot)
                        .map(|e| e.with_timezone(&tz).naive_local()),
                    utc: slot,
                    blackout: sch
                        .blackout_at(&config.calendars, slot)
                        .map(|b| b.0.to_string()),
                });
            }
        }
        Ok(CalendarMonth {
            runbook: f.runbook.clone(),
            timezone: tz.name().to_string(),
            year,
            month: mon,
            days,
        })
    }
}

/// The audit chain as the console last verified it.
#[derive(Debug, Clone)]
pub struct ChainStatus {
    /// Records verified, and the head hash after them.
    pub verified: crate::audit::Verified,
    /// The first record that breaks the chain, if one does: nothing after it is verified.
    pub broken: Option<crate::audit::Broken>,
    /// When the check ran.
    pub checked_at: String,
}

/// What the audit page asks for; every field narrows (full records only).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub event: Option<String>,
    pub run_id: Option<String>,
    /// A user name (or `system`).
    pub actor: Option<String>,
    /// RFC 3339 bounds on the record's time, inclusive.
    pub from: Option<String>,
    pub to: Option<String>,
}

impl AuditFilter {
    fn is_empty(&self) -> bool {
        self.event.is_none()
            && self.run_id.is_none()
            && self.actor.is_none()
            && self.from.is_none()
            && self.to.is_none()
    }

    fn admits(&self, r: &crate::audit::Record) -> bool {
        let actor = match &r.actor {
            crate::audit::Actor::System(s) => s.as_str(),
            crate::audit::Actor::User { user, .. } => user.as_str(),
        };
        self.event.as_deref().map_or(true, |e| r.event == e)
            && self
                .run_id
                .as_deref()
                .map_or(true, |id| r.run_id.as_deref() == Some(id))
            && self.actor.as_deref().map_or(true, |a| actor == a)
            && self.from.as_deref().map_or(true, |f| r.ts.as_str() >= f)
            && self.to.as_deref().map_or(true, |t| r.ts.as_str() <= t)
    }
}

/// A page of the audit log as a party sees it.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub entries: Vec<crate::audit::Entry>,
    /// The seq to continue after, when the log goes on.
    pub next_after: Option<u64>,
    /// Records looked at for this page (a sparse filter stops after [`AUDIT_SCAN`]).
    pub scanned: u64,
}

/// Records shown per audit page.
pub const AUDIT_PER_PAGE: usize = 50;

/// At most this many records are read to fill one filtered page; the page then offers to
/// continue from where it stopped.
pub const AUDIT_SCAN: u64 = 20_000;

/// Records read from the store at a time while verifying or browsing.
const AUDIT_BATCH: usize = 2_000;

impl App {
    /// Rule 10 for the audit log, the same for `GET /api/v1/audit` and the audit page:
    /// `party`'s view of `records`, those that do not concern it redacted to their chain
    /// links. Blocking (reads runs from the store).
    pub fn audit_party_view(
        &self,
        party: &str,
        records: Vec<crate::audit::Record>,
    ) -> Result<Vec<crate::audit::Entry>, crate::store::StoreError> {
        let (config, catalog) = (self.config(), self.catalog());
        super::reads::AuditScope::new(&self.store, &config, &catalog).view(party, records)
    }

    /// Reading the audit log needs the auditor or admin role (as `GET /api/v1/audit`).
    pub fn may_read_audit(&self, user: &User) -> Result<(), RunError> {
        use crate::config::Role;
        if user.has_role(Role::Auditor) || user.has_role(Role::Admin) {
            Ok(())
        } else {
            Err(RunError::Forbidden(
                "reading the audit log needs the auditor or admin role".into(),
            ))
        }
    }

    /// The chain's verify status by [`crate::audit::verify_more`], the code of
    /// `tandem audit verify`: each call verifies only the records appended since the last
    /// one (the log is append-only), so it stays fast on a long log. Blocking.
    pub fn chain_status(&self) -> Result<ChainStatus, RunError> {
        let mut cache = match self.estate.chain.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        let mut status = cache.clone().unwrap_or_else(|| ChainStatus {
            verified: crate::audit::Verified {
                count: 0,
                head: crate::audit::GENESIS.to_string(),
                redacted: 0,
                checkpoints: 0,
            },
            broken: None,
            checked_at: String::new(),
        });
        while status.broken.is_none() {
            let batch = self
                .store
                .audit_records(status.verified.count, AUDIT_BATCH)?;
            if batch.is_empty() {
                break;
            }
            let n = batch.len();
            match crate::audit::verify_more(
                &status.verified,
                batch.into_iter().map(|r| Ok(crate::audit::Entry::Full(r))),
            ) {
                Ok(v) => status.verified = v,
                Err(b) => status.broken = Some(b),
            }
            if n < AUDIT_BATCH {
                break;
            }
        }
        status.checked_at = crate::store::now();
        *cache = Some(status.clone());
        Ok(status)
    }

    /// A page of the audit log after seq `after` as `user`'s party sees it (rule 10, as
    /// the API). With a filter only whole records that match are shown: a redacted record
    /// says nothing, not even that it matched.
    pub fn audit_page(
        &self,
        user: &User,
        filter: &AuditFilter,
        after: u64,
    ) -> Result<AuditPage, RunError> {
        self.may_read_audit(user)?;
        let mut entries = Vec::new();
        let mut cursor = after;
        let mut scanned = 0u64;
        let mut more = true;
        while entries.len() < AUDIT_PER_PAGE && scanned < AUDIT_SCAN {
            let batch = self.store.audit_records(cursor, AUDIT_BATCH)?;
            if batch.is_empty() {
                more = false;
                break;
            }
            let read = batch.len();
            for e in self.audit_party_view(&user.party, batch)? {
                let seq = e.seq();
                if entries.len() == AUDIT_PER_PAGE {
                    break;
                }
                cursor = seq;
                scanned += 1;
                let keep = match &e {
                    crate::audit::Entry::Full(r) => filter.admits(r),
                    crate::audit::Entry::Redacted(_) => filter.is_empty(),
                };
                if keep {
                    entries.push(e);
                }
            }
            if read < AUDIT_BATCH && entries.len() < AUDIT_PER_PAGE {
                more = false;
                break;
            }
        }
        Ok(AuditPage {
            entries,
            next_after: more.then_some(cursor),
            scanned,
        })
    }

    /// The newest signed checkpoints and delivery outcomes, as `user`'s party may see them.
    pub fn checkpoints_for(
        &self,
        user: &User,
        limit: usize,
    ) -> Result<(Vec<crate::audit::Record>, Vec<crate::audit::Record>), RunError> {
        use crate::audit::{Entry, Event};
        self.may_read_audit(user)?;
        let full = |records| -> Result<Vec<crate::audit::Record>, RunError> {
            Ok(self
                .audit_party_view(&user.party, records)?
                .into_iter()
                .filter_map(|e| match e {
                    Entry::Full(r) => Some(r),
                    Entry::Redacted(_) => None,
                })
                .collect())
        };
        let signed = full(
            self.store
                .audit_latest([Event::CheckpointSigned, Event::CheckpointSigned], limit)?,
        )?;
        let delivered = self.store.audit_latest(
            [Event::CheckpointDelivered, Event::CheckpointDeliveryFailed],
            limit * 4,
        )?;
        Ok((signed, full(delivered)?))
    }
}
