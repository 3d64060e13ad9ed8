//! Rule 11, the owner's stop: freezing hosts. While a host is frozen every further action
//! on it (`sh`, and `http` and `secret` calls made in its script) is refused before it
//! happens, also in runs already going; new runs that target it are refused at submit.
//!
//! Freezes live in the store (they survive restarts) and in an in-memory set in [`App`],
//! replaced whole from the store after every change, so the check before each action is a
//! read lock and a hash lookup.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::{App, RunError};
use crate::audit::{Actor, Event};
use crate::config::{Host, User};
use crate::policy;
use crate::runbook::plan::Plan;
use crate::store::{FreezeRow, StoreError};

/// The prefix of every refusal caused by a freeze, in run errors and API messages.
pub const FROZEN: &str = "frozen";

/// What a freeze or unfreeze names: `all` (every host of the caller's party), `tag:NAME`
/// (the caller's party's hosts with that tag) or one host.
fn resolve<'c>(
    config: &'c crate::config::Config,
    user: &User,
    target: &str,
) -> Result<Vec<&'c Host>, RunError> {
    let own = |h: &&Host| h.owner == user.party;
    let hosts: Vec<&Host> = match target.strip_prefix("tag:") {
        _ if target == "all" => config.inventory.iter().filter(own).collect(),
        Some(tag) => config
            .inventory
            .iter()
            .filter(own)
            .filter(|h| h.tags.iter().any(|t| t == tag))
            .collect(),
        None => vec![config.host(target).ok_or_else(|| {
            RunError::Invalid(format!("host `{target}` is not in the inventory"))
        })?],
    };
    if hosts.is_empty() {
        return Err(RunError::Invalid(format!(
            "`{target}` names no host that `{}` owns",
            user.party
        )));
    }
    Ok(hosts)
}

impl App {
    /// Whether `host` is frozen now.
    pub fn is_frozen(&self, host: &str) -> bool {
        self.frozen
            .read()
            .map(|f| f.contains(host))
            // A poisoned lock is treated as "everything frozen": the safe side of a stop.
            .unwrap_or(true)
    }

    /// Replaces the in-memory set of frozen hosts with the store's.
    pub(super) fn reload_frozen(&self) -> Result<(), StoreError> {
        let set: HashSet<String> = self.store.freezes()?.into_iter().map(|f| f.host).collect();
        match self.frozen.write() {
            Ok(mut f) => *f = set,
            Err(p) => *p.into_inner() = set,
        }
        Ok(())
    }

    /// The freezes on hosts `user`'s party owns.
    pub fn freezes_for(&self, user: &User) -> Result<Vec<FreezeRow>, RunError> {
        Ok(self
            .store
            .freezes()?
            .into_iter()
            .filter(|f| f.party == user.party)
            .collect())
    }

    /// Resolves `targets` for a freeze or unfreeze by `user`, refusing (and auditing) the
    /// whole request if any host is not the caller's to freeze.
    fn freezable(
        &self,
        user: &User,
        targets: &[String],
        verb: &str,
    ) -> Result<Vec<String>, RunError> {
        if targets.is_empty() {
            return Err(RunError::Invalid(format!(
                "{verb} needs at least one target"
            )));
        }
        let config = self.config();
        let mut hosts: Vec<String> = Vec::new();
        for t in targets {
            for h in resolve(&config, user, t)? {
                if let Err(denied) = policy::may_freeze(user, h) {
                    // `party` names the host's owner: the attempt concerns it (rule 10).
                    self.store.audit(
                        &Actor::user(&user.name, &user.party),
                        None,
                        Event::FreezeDenied,
                        json!({"action": verb, "host": h.name, "party": h.owner, "reason": denied.0}),
                    )?;
                    return Err(RunError::Forbidden(denied.0));
                }
                if !hosts.contains(&h.name) {
                    hosts.push(h.name.clone());
                }
            }
        }
        Ok(hosts)
    }

    /// Freezes `targets` for `user`'s party (rule 11). Returns the hosts newly frozen and
    /// those that were frozen already.
    pub fn freeze(&self, user: &User, targets: &[String], reason: &str) -> Result<Value, RunError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(RunError::Invalid("a freeze needs a reason".into()));
        }
        let hosts = self.freezable(user, targets, "freeze")?;
        let actor = Actor::user(&user.name, &user.party);
        let newly = self.store.tx(|tx| {
            let mut newly = Vec::new();
            for h in &hosts {
                if tx.freeze_host(h, &user.party, reason, &user.name)? {
                    tx.audit(
                        &actor,
                        None,
                        Event::HostFrozen,
                        json!({"host": h, "reason": reason}),
                    )?;
                    newly.push(h.clone());
                }
            }
            Ok(newly)
        });
        // Reload even after a failed write: the set must match the store either way.
        let reloaded = self.reload_frozen();
        let newly = newly?;
        reloaded?;
        let already: Vec<&String> = hosts.iter().filter(|h| !newly.contains(h)).collect();
        Ok(json!({"frozen": newly, "already_frozen": already, "reason": reason}))
    }

    /// Lifts the freezes of `targets`; only the owning party may.
    pub fn unfreeze(&self, user: &User, targets: &[String]) -> Result<Value, RunError> {
        let hosts = self.freezable(user, targets, "unfreeze")?;
        let actor = Actor::user(&user.name, &user.party);
        let lifted = self.store.tx(|tx| {
            let mut lifted = Vec::new();
            for h in &hosts {
                if tx.unfreeze_host(h)? {
                    tx.audit(&actor, None, Event::HostUnfrozen, json!({"host": h}))?;
                    lifted.push(h.clone());
                }
            }
            Ok(lifted)
        });
        let reloaded = self.reload_frozen();
        let lifted = lifted?;
        reloaded?;
        let not_frozen: Vec<&String> = hosts.iter().filter(|h| !lifted.contains(h)).collect();
        Ok(json!({"unfrozen": lifted, "not_frozen": not_frozen}))
    }

    /// Refuses (and audits) a new run that targets a frozen host.
    pub(super) fn refuse_frozen_targets(&self, actor: &Actor, plan: &Plan) -> Result<(), RunError> {
        let frozen: Vec<&str> = plan
            .targets
            .iter()
            .map(|t| t.name.as_str())
            .filter(|h| self.is_frozen(h))
            .collect();
        if frozen.is_empty() {
            return Ok(());
        }
        let why = format!(
            "{FROZEN}: target host(s) {} frozen by their owner; no run was started",
            frozen.join(", ")
        );
        self.store.audit(
            actor,
            None,
            Event::StartDenied,
            json!({"runbook": plan.runbook, "reason": why, "frozen": frozen}),
        )?;
        Err(RunError::Conflict(why))
    }
}
