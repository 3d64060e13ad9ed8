//! Chained runs: what a run's script emits ([`EmitBoard`]), and the follow-ups started when
//! the run ends ([`App::start_follow_ups`]). Each follow-up is a run of its own, requested
//! as the parent's initiator: the person (or `system` for a schedule) who started the chain
//! stays accountable for all of it, and every rule applies to each child as if that
//! initiator had asked for it: rule 1 against the child runbook, its own plan, digest and
//! approvals (a child on the other party's hosts waits for that party even when the parent
//! did not), frozen hosts. Break-glass is never inherited. A follow-up that cannot start is
//! a `chain_refused` record on the parent; the parent's own outcome stands.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use super::{actor_of, approve, record_run, App, RunError};
use crate::audit::{Actor, Event};
use crate::config::{Role, User};
use crate::runbook::chain::{self, child_params, emit_limits, Emitted, ParentEnd, MAX_CHAIN_DEPTH};
use crate::runbook::plan::Initiator;
use crate::runbook::Runbook;

/// Audit event names of chained runs.
/// What the hosts of one run emitted: per key, per host, the value (`None`: withheld).
#[derive(Debug, Default)]
pub(super) struct EmitBoard {
    keys: Mutex<BTreeMap<String, BTreeMap<String, Option<Value>>>>,
}

impl EmitBoard {
    /// Records `host`'s value for `key` (a later emit by the same host replaces its value).
    /// `Err` when the run already holds [`emit_limits::MAX_KEYS`] other keys.
    pub fn put(&self, key: &str, host: &str, value: Option<Value>) -> Result<(), String> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if !keys.contains_key(key) && keys.len() >= emit_limits::MAX_KEYS {
            return Err(format!(
                "emit(): a run may publish at most {} keys",
                emit_limits::MAX_KEYS
            ));
        }
        keys.entry(key.to_string())
            .or_default()
            .insert(host.to_string(), value);
        Ok(())
    }

    /// Each key's standing once the hosts are done: withheld if any host's value held a
    /// secret, a conflict if hosts disagree, else the one value.
    pub fn settle(&self) -> BTreeMap<String, Emitted> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .map(|(k, by_host)| {
                let state = if by_host.values().any(Option::is_none) {
                    Emitted::Withheld
                } else {
                    let mut values = by_host.values().flatten();
                    match values.next() {
                        Some(first) if values.all(|v| v == first) => Emitted::Value(first.clone()),
                        _ => Emitted::Conflict(by_host.keys().cloned().collect()),
                    }
                };
                (k.clone(), state)
            })
            .collect()
    }
}

/// What a follow-up needs to know about its parent.
pub(super) struct Parent<'a> {
    pub id: &'a str,
    pub runbook: &'a Runbook,
    pub params: &'a Map<String, Value>,
    pub initiator: &'a Initiator,
    pub end: ParentEnd,
    pub emitted: BTreeMap<String, Emitted>,
    /// The parent's reference (a ticket number): its follow-ups carry it too.
    pub reference: Option<&'a str>,
}

/// The user a follow-up is requested as: the parent's initiator as configured now (a user
/// or trigger removed or moved since cannot start anything more), or `system` acting for
/// its party as an operator of it, as a schedule does.
fn chain_user(config: &crate::config::Config, i: &Initiator) -> Result<User, String> {
    if let Some(name) = i.user.strip_prefix("trigger:") {
        return match config.trigger(name) {
            Some(t) if t.party == i.party => Ok(super::trigger::trigger_user(t)),
            Some(t) => Err(format!(
                "the trigger {name} now acts for party `{}`, not `{}`",
                t.party, i.party
            )),
            None => Err(format!("the trigger {name} is no longer configured")),
        };
    }
    if i.user == "system" {
        return Ok(User {
            name: "system".into(),
            party: i.party.clone(),
            roles: vec![Role::Operator],
            token_sha256: String::new(),
        });
    }
    match config.users.iter().find(|u| u.name == i.user) {
        Some(u) if u.party == i.party => Ok(u.clone()),
        Some(u) => Err(format!(
            "the initiator {} is now in party `{}`, not `{}`",
            i.user, u.party, i.party
        )),
        None => Err(format!(
            "the initiator {} is no longer a configured user",
            i.user
        )),
    }
}

impl App {
    /// Starts the follow-ups of a run that just ended (one call site: the end of
    /// `execute`). Never fails the parent: every follow-up that cannot start is audited on
    /// it as `chain_refused`; `Err` only when the audit log itself cannot be written.
    pub(super) fn start_follow_ups(
        self: &Arc<Self>,
        parent: Parent<'_>,
    ) -> Result<(), crate::store::StoreError> {
        let due: Vec<&chain::FollowUp> = parent
            .runbook
            .then
            .iter()
            .filter(|f| f.when.fires(parent.end))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let actor = actor_of(parent.initiator);
        let depth = self.store.chain_depth(parent.id, MAX_CHAIN_DEPTH + 1)? + 1;
        for f in due {
            let refused = |reason: String, extra: Value| {
                let mut detail = json!({"runbook": f.runbook, "when": f.when, "reason": reason});
                if let (Some(d), Value::Object(x)) = (detail.as_object_mut(), extra) {
                    d.extend(x);
                }
                self.store
                    .audit(&actor, Some(parent.id), Event::ChainRefused, detail)
                    .map(|_| ())
            };
            if depth > MAX_CHAIN_DEPTH {
                refused(
                    format!("chain depth limit ({MAX_CHAIN_DEPTH}) reached; no further follow-up starts"),
                    json!({"depth_limit": MAX_CHAIN_DEPTH}),
                )?;
                continue;
            }
            match self.start_child(&parent, f, &actor, depth) {
                Ok(child) => {
                    self.store.audit(
                        &actor,
                        Some(parent.id),
                        Event::ChainStarted,
                        json!({"parent": parent.id, "child": child, "runbook": f.runbook, "when": f.when, "depth": depth}),
                    )?;
                }
                Err(RunError::Store(e)) => return Err(e),
                Err(e) => refused(e.to_string(), json!({}))?,
            }
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Requests one follow-up as the parent's initiator; the child's id.
    fn start_child(
        self: &Arc<Self>,
        parent: &Parent<'_>,
        f: &chain::FollowUp,
        actor: &Actor,
        depth: usize,
    ) -> Result<String, RunError> {
        if self.shutting_down() {
            return Err(RunError::ShuttingDown);
        }
        let catalog = self.catalog();
        let rb = catalog
            .get(&f.runbook)
            .ok_or_else(|| RunError::UnknownRunbook(f.runbook.clone()))?;
        let user = chain_user(&self.config(), parent.initiator).map_err(RunError::Forbidden)?;
        crate::policy::may_start(rb, &user).map_err(|d| RunError::Forbidden(d.0))?;
        let params = child_params(f, parent.params, &parent.emitted).map_err(RunError::Invalid)?;
        let plan = self.plan(rb, &params, parent.initiator.clone(), None)?;
        self.refuse_frozen_targets(actor, &plan)?;
        let id = super::new_run_id();
        let needs_approval = !plan.approvals.is_empty();
        let expires_at = needs_approval.then(|| approve::expiry(rb));
        let link = super::ChainLink {
            parent: parent.id,
            depth,
        };
        self.store.tx(|tx| {
            record_run(
                tx,
                &id,
                rb,
                &plan,
                actor,
                expires_at.as_deref(),
                None,
                Some(&link),
                parent.reference,
            )
        })?;
        let who = format!(
            "{} ({}), follow-up of {}",
            parent.initiator.user, parent.initiator.party, parent.runbook.name
        );
        if needs_approval {
            self.prompt_approvers(&id, rb, &who, &plan);
        } else {
            self.spawn(id.clone(), &rb.name);
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_board_settles_values_conflicts_and_withheld_keys() {
        let b = EmitBoard::default();
        b.put("host", "web1", Some(Value::from("web1"))).unwrap();
        b.put("case", "web1", Some(Value::from("A"))).unwrap();
        b.put("case", "web2", Some(Value::from("A"))).unwrap();
        b.put("who", "web1", Some(Value::from("x"))).unwrap();
        b.put("who", "web2", Some(Value::from("y"))).unwrap();
        b.put("token", "web1", Some(Value::from("ok"))).unwrap();
        b.put("token", "web2", None).unwrap();
        // A host's later emit replaces its own earlier one.
        b.put("host", "web1", Some(Value::from("web1b"))).unwrap();
        let s = b.settle();
        assert_eq!(s["host"], Emitted::Value(Value::from("web1b")));
        assert_eq!(s["case"], Emitted::Value(Value::from("A")));
        assert_eq!(
            s["who"],
            Emitted::Conflict(vec!["web1".into(), "web2".into()])
        );
        assert_eq!(s["token"], Emitted::Withheld);
    }

    #[test]
    fn emit_board_caps_its_keys() {
        let b = EmitBoard::default();
        for i in 0..emit_limits::MAX_KEYS {
            b.put(&format!("k{i}"), "h", Some(Value::from(1))).unwrap();
        }
        assert!(b.put("one_more", "h", Some(Value::from(1))).is_err());
        // An existing key may still be updated.
        assert!(b.put("k0", "h", Some(Value::from(2))).is_ok());
    }
}
