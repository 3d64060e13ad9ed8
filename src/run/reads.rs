//! Rule 10: a party sees what concerns it. Every read of a run, a review, a schedule or a
//! runbook goes through these methods, so no handler can forget the rule. A run the caller
//! may not see is [`RunError::UnknownRun`], the same answer as an id that does not exist,
//! so its existence is not revealed.

use std::collections::{BTreeSet, HashMap};

use super::{App, RunError};
use crate::audit::{Entry, Event, Record};
use crate::config::{Config, User};
use crate::policy;
use crate::policy::audit_read::{record_concerns, Links};
use crate::report::{Period, Source};
use crate::runbook::plan::resolve_targets;
use crate::runbook::{Catalog, ReportAs, Runbook};
use crate::state::HostStatus;
use crate::store::{RunFilter, RunRow, Store, StoreError};

impl App {
    /// Whether `user`'s party may see `run`: it started it, owns something it touches, is
    /// asked to decide it (an approval, or the review of a break-glass run), or holds a read
    /// grant for a party that does.
    pub fn sees(&self, user: &User, run: &RunRow) -> bool {
        let mut parties = policy::run_parties(&run.initiator.party, &run.plan);
        // The review is not in the plan: it is opened when the run starts break-glass.
        if let Some(review) = &run.review {
            parties.extend(review.parties.iter().cloned());
        }
        policy::may_see_run(&user.party, &parties, &self.config().read_grants)
    }

    /// The run `id` as `user` may see it; unknown when it does not exist or is another
    /// party's business.
    pub fn visible_run(&self, user: &User, id: &str) -> Result<RunRow, RunError> {
        match self.store.run(id)? {
            Some(run) if self.sees(user, &run) => self.chain_links_seen(user, run),
            _ => Err(RunError::UnknownRun(id.to_string())),
        }
    }

    /// `run` with its chain links (`parent_run`, `children`) cut to the runs `user` may
    /// see: a follow-up on another party's hosts is that party's business too, but the
    /// rest of the chain may not be (rule 10).
    pub(super) fn chain_links_seen(
        &self,
        user: &User,
        mut run: RunRow,
    ) -> Result<RunRow, RunError> {
        let seen = |id: &str| -> Result<bool, RunError> {
            Ok(self.store.run(id)?.is_some_and(|r| self.sees(user, &r)))
        };
        if let Some(p) = run.parent_run.clone() {
            if !seen(&p)? {
                run.parent_run = None;
            }
        }
        let mut children = Vec::with_capacity(run.children.len());
        for c in std::mem::take(&mut run.children) {
            if seen(&c)? {
                children.push(c);
            }
        }
        run.children = children;
        Ok(run)
    }

    /// Up to `limit` runs `user` may see, newest first, narrowed by `filter` (status, a
    /// page cursor `before`: the last id of the previous page, a reference). The visibility
    /// check runs inside the store's scan, so a page is full whenever more visible runs exist.
    pub fn visible_runs(
        &self,
        user: &User,
        filter: &RunFilter<'_>,
        limit: usize,
    ) -> Result<Vec<RunRow>, RunError> {
        // A cursor names a run: one the caller may not see is unknown, as everywhere.
        if let Some(b) = filter.before {
            self.visible_run(user, b)?;
        }
        let may_see = |run: &RunRow| self.sees(user, run);
        crate::store::RunStore::runs_visible(self.store.as_ref(), filter, limit, &may_see)?
            .into_iter()
            .map(|run| self.chain_links_seen(user, run))
            .collect()
    }

    /// Break-glass runs whose review is open and that concern `user`'s party.
    pub fn reviews_for(&self, user: &User) -> Result<Vec<RunRow>, RunError> {
        Ok(self
            .store
            .open_reviews()?
            .into_iter()
            .filter(|r| self.sees(user, r))
            .collect())
    }

    /// Whether `user`'s party may see runbook `rb`: it owns it or its targets, is asked to
    /// approve it, or (when `startable_counts`) may start it; or holds a read grant for a
    /// party that does.
    fn sees_runbook(&self, user: &User, rb: &Runbook, startable_counts: bool) -> bool {
        let config = self.config();
        let targets = resolve_targets(rb, &config).unwrap_or_default();
        let parties: BTreeSet<String> = policy::runbook_parties(rb, &targets, startable_counts);
        policy::may_see_run(&user.party, &parties, &config.read_grants)
    }

    /// The runbooks `user`'s party may see: those it owns, whose targets it owns, whose
    /// approval it gives, or that it may start.
    pub fn runbooks_for(&self, user: &User) -> Vec<Runbook> {
        self.catalog()
            .runbooks
            .values()
            .filter(|rb| self.sees_runbook(user, rb, true))
            .cloned()
            .collect()
    }

    /// Runbook `name`, if it has a schedule `user`'s party may see; unknown otherwise (a
    /// standing approval names a schedule).
    pub fn visible_schedule(&self, user: &User, name: &str) -> Result<(), RunError> {
        match self.catalog().get(name) {
            Some(rb) if self.sees_runbook(user, rb, false) => Ok(()),
            _ => Err(RunError::UnknownRunbook(name.to_string())),
        }
    }

    /// The schedules of runbooks `user`'s party owns, whose targets it owns or whose
    /// approval it gives (`GET /api/v1/schedules`, the schedules page).
    pub fn schedules_for(
        &self,
        user: &User,
        count: usize,
    ) -> Result<Vec<super::schedule::ScheduleView>, RunError> {
        let grants = self.config().read_grants.clone();
        Ok(self.schedules_view(count, &|f| {
            policy::may_see_run(&user.party, &f.concerns, &grants)
        })?)
    }

    /// The witnesses of `user`'s party whose latest checkpoint delivery failed (the
    /// failure's record each): the party's own copy of the audit head is behind.
    pub fn undelivered_checkpoints(&self, user: &User) -> Result<Vec<Record>, RunError> {
        let records = self.store.audit_latest(
            [Event::CheckpointDelivered, Event::CheckpointDeliveryFailed],
            RECENT_DELIVERIES,
        )?;
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for r in records {
            let witness = r.detail["witness"].as_str().unwrap_or_default().to_string();
            // Newest first: the first record of a witness is its latest delivery.
            if !seen.insert(witness) {
                continue;
            }
            let failed = r.event == Event::CheckpointDeliveryFailed.as_str();
            if failed && r.detail["party"].as_str() == Some(user.party.as_str()) {
                out.push(r);
            }
        }
        Ok(out)
    }
}

/// How many of the latest checkpoint deliveries the home page looks through.
const RECENT_DELIVERIES: usize = 200;

/// What the audit scope remembers of one run.
struct RunFacts {
    /// The parties the run concerns ([`policy::run_parties`]).
    parties: BTreeSet<String>,
    hosts: Vec<(String, HostStatus)>,
}

/// Rule 10 for the audit log: which records concern a party, with the runs they name read
/// from the store once each. Blocking (reads runs). One scope serves the audit API's party
/// view and the business-review report.
pub struct AuditScope<'a> {
    store: &'a Store,
    config: &'a Config,
    catalog: &'a Catalog,
    /// `None`: no such run.
    runs: HashMap<String, Option<RunFacts>>,
}

impl<'a> AuditScope<'a> {
    pub fn new(store: &'a Store, config: &'a Config, catalog: &'a Catalog) -> AuditScope<'a> {
        AuditScope {
            store,
            config,
            catalog,
            runs: HashMap::new(),
        }
    }

    fn facts(&mut self, id: &str) -> Result<Option<&RunFacts>, StoreError> {
        if !self.runs.contains_key(id) {
            let facts = self.store.run(id)?.map(|run| RunFacts {
                parties: policy::run_parties(&run.initiator.party, &run.plan),
                hosts: run
                    .hosts
                    .iter()
                    .map(|h| (h.host.clone(), h.status))
                    .collect(),
            });
            self.runs.insert(id.to_string(), facts);
        }
        Ok(self.runs.get(id).and_then(Option::as_ref))
    }

    /// Whether `record` concerns `party` ([`record_concerns`]).
    pub fn concerns(&mut self, party: &str, record: &Record) -> Result<bool, StoreError> {
        let grants = &self.config.read_grants;
        let run_visible = match &record.run_id {
            Some(id) => self
                .facts(id)?
                .map(|f| policy::may_see_run(party, &f.parties, grants)),
            None => None,
        };
        let runbook_owner = record.detail["runbook"]
            .as_str()
            .and_then(|name| self.catalog.get(name))
            .map(|rb| rb.owner.as_str());
        let links = Links {
            run_visible,
            runbook_owner,
        };
        Ok(record_concerns(party, record, links))
    }

    /// `party`'s view of `records`: those that do not concern it redacted to their links.
    pub fn view(&mut self, party: &str, records: Vec<Record>) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            out.push(if self.concerns(party, &r)? {
                Entry::Full(r)
            } else {
                Entry::Redacted(r.redacted())
            });
        }
        Ok(out)
    }

    /// The per-host outcome of run `id`, if it exists.
    fn hosts(&mut self, id: &str) -> Result<Option<Vec<(String, HostStatus)>>, StoreError> {
        Ok(self.facts(id)?.map(|f| f.hosts.clone()))
    }
}

/// How a business-review report is scoped.
#[derive(Debug, Clone, Default)]
pub struct ReportScope<'s> {
    /// The reader's party: the report covers only what it may see (rule 10). `None`: the
    /// whole log (the local `tandem report`, which reads the store itself).
    pub viewer: Option<&'s str>,
    /// Narrow further to what concerns this party too.
    pub party: Option<&'s str>,
}

/// Reads what a business-review report over `period` is computed from: the whole audit log
/// (cut to what the scope may see), the per-host outcomes of the runs that ended in the
/// period, and the hosts patch runbooks target. Blocking (SQLite). Shared by `tandem
/// report` and the console's `/reports`.
pub fn report_source(
    store: &Store,
    config: &Config,
    catalog: &Catalog,
    scope: &ReportScope<'_>,
    period: Period,
) -> Result<Source, StoreError> {
    let parties: Vec<&str> = scope.viewer.into_iter().chain(scope.party).collect();
    let mut audit = AuditScope::new(store, config, catalog);
    let end = crate::store::now_at(period.end());
    let start = crate::store::now_at(period.start());
    let mut source = Source {
        kinds: catalog
            .runbooks
            .values()
            .filter_map(|rb| rb.report.map(|k| (rb.name.clone(), k)))
            .collect(),
        viewer: scope.viewer.map(str::to_string),
        party: scope.party.map(str::to_string),
        generated_at: crate::store::now(),
        ..Source::default()
    };
    let mut after = 0u64;
    loop {
        let page = store.audit_records(after, 5000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in page {
            let mut shown = true;
            for p in &parties {
                shown = shown && audit.concerns(p, &r)?;
            }
            if !shown {
                source.entries.push(Entry::Redacted(r.redacted()));
                continue;
            }
            // Store timestamps sort as text (one fixed RFC 3339 form).
            let finished_in_period = r.event == Event::RunFinished.as_str()
                && r.ts.as_str() >= start.as_str()
                && r.ts.as_str() < end.as_str();
            if let (true, Some(id)) = (finished_in_period, &r.run_id) {
                if let Some(hosts) = audit.hosts(id)? {
                    source.hosts.insert(id.clone(), hosts);
                }
            }
            source.entries.push(Entry::Full(r));
        }
    }
    // Patch compliance lists the hosts the patch runbooks target, as far as they are the
    // reader's: owned by the viewer (and the party narrowed to), or all of them.
    let mut seen = BTreeSet::new();
    for rb in catalog
        .runbooks
        .values()
        .filter(|rb| rb.report == Some(ReportAs::Patch))
    {
        for h in resolve_targets(rb, config).unwrap_or_default() {
            if parties.iter().all(|p| h.owner == *p) && seen.insert(h.name.clone()) {
                source.patch_hosts.push(h.name.clone());
            }
        }
    }
    Ok(source)
}

impl App {
    /// The business-review report over `period` as `user`'s party may see it (rule 10),
    /// narrowed to what concerns `party` too when given.
    pub fn report(
        &self,
        user: &User,
        party: Option<&str>,
        period: Period,
    ) -> Result<crate::report::Report, RunError> {
        let config = self.config();
        if let Some(p) = party {
            if !config.parties.iter().any(|x| x == p) {
                return Err(RunError::Invalid(format!("unknown party `{p}`")));
            }
        }
        let scope = ReportScope {
            viewer: Some(&user.party),
            party,
        };
        let source = report_source(&self.store, &config, &self.catalog(), &scope, period)?;
        Ok(crate::report::compute(period, &source))
    }
}
