//! Rule 10: a party sees what concerns it. Every read of a run, a review, a schedule or a
//! runbook goes through these methods, so no handler can forget the rule. A run the caller
//! may not see is [`RunError::UnknownRun`], the same answer as an id that does not exist,
//! so its existence is not revealed.

use std::collections::BTreeSet;

use super::{App, RunError};
use crate::audit::{Event, Record};
use crate::config::User;
use crate::policy;
use crate::runbook::plan::resolve_targets;
use crate::runbook::Runbook;
use crate::store::{RunFilter, RunRow};

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
