//! Approval gates on runs (rules 3–6): decisions, expiry, mid-run gates, break-glass
//! reviews. The pure rules are in [`crate::approval`]; this file stores and acts on them.

use std::sync::Arc;

use serde_json::json;

use super::{lifecycle, App, RunError};
use crate::approval::{decider_party, evaluate, GateState, Vote};
use crate::audit::{Actor, Event};
use crate::config::{Role, User};
use crate::notify::{Notice, NoticeEvent};
use crate::policy::ApprovalRequirement;
use crate::runbook::plan::Plan;
use crate::runbook::Runbook;
use crate::state::{Decision, GateStatus, RunStatus};
use crate::store::{GateRow, RunRow};

/// When a gate opened now expires (RFC 3339, same form as the store's timestamps, so the
/// strings compare in time order).
pub(super) fn expiry(rb: &Runbook) -> String {
    let expires = rb
        .approval
        .as_ref()
        .map_or(std::time::Duration::from_secs(24 * 3600), |a| a.expires);
    let at = chrono::Utc::now()
        + chrono::Duration::from_std(expires).unwrap_or(chrono::Duration::days(1));
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The parties that own what a run touches: those whose approval it needs, the owners of its
/// targets and of the APIs and secrets in its scope, or else the runbook's owner. They review break-glass runs and hold mid-run gates.
pub(super) fn review_parties(rb: &Runbook, plan: &Plan) -> Vec<String> {
    crate::policy::break_glass_reviewers(
        &rb.owner,
        plan.approvals
            .iter()
            .map(|a| &a.party)
            .chain(plan.targets.iter().map(|t| &t.owner))
            .chain(plan.owners.iter()),
    )
}

fn state_of(gate: &GateRow, digest: &str) -> GateState {
    let reqs = &gate.requirements;
    let votes: Vec<Vote<'_>> = gate
        .decisions
        .iter()
        .map(|d| Vote {
            party: &d.party,
            user: &d.user,
            approve: d.decision == Decision::Approve,
            digest: &d.digest,
        })
        .collect();
    evaluate(reqs, &votes, digest)
}

impl App {
    /// Asks every party the plan needs an approval from, one prompt each: how a new run
    /// (on demand, a follow-up, a scheduled slot) that waits at gate 0 is announced.
    pub(super) fn prompt_approvers(&self, id: &str, rb: &Runbook, who: &str, plan: &Plan) {
        for a in &plan.approvals {
            self.prompt(NoticeEvent::ApprovalRequested, &a.party, id, rb, who, plan);
        }
    }

    /// Sends one prompt about a run.
    pub(super) fn prompt(
        &self,
        event: NoticeEvent,
        party: &str,
        id: &str,
        rb: &Runbook,
        who: &str,
        plan: &Plan,
    ) {
        let hosts: Vec<&str> = plan.targets.iter().map(|t| t.name.as_str()).collect();
        let mut summary = if hosts.is_empty() {
            format!("{} ({})", rb.name, rb.description)
        } else {
            format!(
                "{} on {} host(s): {}",
                rb.name,
                hosts.len(),
                hosts.join(", ")
            )
        };
        // A trigger's run quotes its alert, so the approver knows why at 3 a.m.
        if let Some(alert) = &plan.trigger {
            let field = |k: &str| alert[k].as_str().map(str::to_string);
            if let Some(name) = field("alertname").or(field("summary")) {
                summary.push_str(&format!("; alert {name}"));
                if let Some(text) = field("summary").filter(|s| *s != name) {
                    summary.push_str(&format!(": {text}"));
                }
                if let Some(r) = field("ref") {
                    summary.push_str(&format!(" (ref {r})"));
                }
            }
        }
        self.notifier.send(
            &self.config(),
            Notice::prompt(event, party, id, &rb.name, who, summary, None),
        );
    }

    /// An approver's decision on a run's pending gate (rules 3 and 4). `digest`, when given,
    /// is the digest the approver was shown; a decision for any other digest is refused.
    pub fn decide(
        self: &Arc<Self>,
        user: &User,
        id: &str,
        approve: bool,
        comment: Option<&str>,
        digest: Option<&str>,
    ) -> Result<RunRow, RunError> {
        // Rule 10: a run the caller may not see is unknown to it, before any other answer.
        self.visible_run(user, id)?;
        let comment = comment.filter(|c| !c.trim().is_empty());
        if !approve && comment.is_none() {
            return Err(RunError::Invalid("a denial needs a reason".into()));
        }
        let actor = Actor::user(&user.name, &user.party);
        enum Next {
            Nothing,
            Start(String),
        }
        let next = self.store.tx(|tx| -> Result<Result<Next, RunError>, _> {
            let Some(run) = tx.run(id)? else {
                return Ok(Err(RunError::UnknownRun(id.to_string())));
            };
            let open = matches!(run.status, RunStatus::AwaitingApproval | RunStatus::Running);
            let Some(gate) = run.gates.iter().find(|g| g.status == GateStatus::Pending).filter(|_| open) else {
                return Ok(Err(RunError::Conflict(format!("run {id} is {} and has no pending approval", run.status))));
            };
            // Rule 5 holds at the instant of the decision, not only at the next sweep.
            if gate.expires_at <= crate::store::now() {
                return Ok(Err(RunError::Conflict(format!(
                    "the approval of run {id} expired at {}",
                    gate.expires_at
                ))));
            }
            if let Some(d) = digest {
                if d != run.digest {
                    tx.audit(&actor, Some(id), Event::ApprovalRefused, json!({"gate": gate.gate, "reason": "digest mismatch", "presented": d, "digest": run.digest}))?;
                    return Ok(Err(RunError::Conflict(
                        "the run is not what you were shown (plan digest mismatch); reload it and decide again".into(),
                    )));
                }
            }
            let req = match decider_party(user, &gate.requirements, &run.initiator.user) {
                Ok(r) => r,
                Err(denied) => {
                    tx.audit(&actor, Some(id), Event::ApprovalRefused, json!({"gate": gate.gate, "reason": denied.0}))?;
                    return Ok(Err(RunError::Forbidden(denied.0)));
                }
            };
            let decision = if approve { Decision::Approve } else { Decision::Deny };
            let recorded = tx.insert_decision(&crate::store::NewDecision {
                run_id: id,
                gate: gate.gate,
                party: &req.party,
                user: &user.name,
                decision,
                comment,
                digest: &run.digest,
            })?;
            if !recorded {
                return Ok(Err(RunError::Conflict(format!("{} already decided on this approval", user.name))));
            }
            let event = if approve { Event::ApprovalGranted } else { Event::ApprovalDenied };
            tx.audit(&actor, Some(id), event, json!({"gate": gate.gate, "party": req.party, "digest": run.digest, "comment": comment}))?;
            let gate = tx
                .run(id)?
                .and_then(|r| r.gates.into_iter().find(|g| g.gate == gate.gate))
                .ok_or_else(|| crate::store::StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))?;
            match state_of(&gate, &run.digest) {
                GateState::Pending { .. } => Ok(Ok(Next::Nothing)),
                GateState::Approved => {
                    tx.close_gate(id, gate.gate, GateStatus::Approved)?;
                    let detail = json!({"gate": gate.gate, "digest": run.digest});
                    if gate.gate != 0 {
                        tx.audit(&Actor::system(), Some(id), Event::ApprovalComplete, detail)?;
                        return Ok(Ok(Next::Nothing));
                    }
                    // The run was read in this transaction awaiting approval, so the move
                    // cannot be refused; if it were, nothing starts.
                    if !lifecycle::accept(tx, id, &Actor::system(), Event::ApprovalComplete, detail)? {
                        return Ok(Ok(Next::Nothing));
                    }
                    // A scheduled run approved ahead of its slot starts at the slot.
                    if run.slot.is_some() {
                        Ok(Ok(Next::Nothing))
                    } else {
                        Ok(Ok(Next::Start(run.runbook.clone())))
                    }
                }
                GateState::Denied { by } => {
                    tx.close_gate(id, gate.gate, GateStatus::Denied)?;
                    if gate.gate == 0 {
                        let why = format!("denied by {by}{}", comment.map(|c| format!(": {c}")).unwrap_or_default());
                        lifecycle::end(tx, id, &[RunStatus::AwaitingApproval], RunStatus::Denied, Some(&why), &Actor::system())?;
                    }
                    Ok(Ok(Next::Nothing))
                }
            }
        })??;
        if let Next::Start(runbook) = next {
            self.spawn(id.to_string(), &runbook);
        }
        self.changed.notify_waiters();
        // As every read: the chain links cut to what `user` may see (rule 10).
        self.visible_run(user, id)
    }

    /// Expires every pending gate whose time is up (rule 5). Runs at start, so an approval
    /// that expired while the daemon was down is expired, never run, and then periodically.
    pub fn expire_due(&self) -> Result<usize, crate::store::StoreError> {
        let now = crate::store::now();
        let catalog = self.catalog();
        let n = self.store.tx(|tx| {
            let due = tx.due_gates(&now)?;
            for (id, gate) in &due {
                tx.close_gate(id, *gate, GateStatus::Expired)?;
                let run = tx.run(id)?;
                let denies = run
                    .as_ref()
                    .and_then(|r| catalog.get(&r.runbook))
                    .and_then(|rb| rb.approval.as_ref())
                    .is_some_and(|a| a.on_expiry == crate::runbook::OnExpiry::Deny);
                tx.audit(
                    &Actor::system(),
                    Some(id),
                    Event::ApprovalExpired,
                    json!({"gate": gate, "on_expiry": if denies { "deny" } else { "expire" }}),
                )?;
                if *gate == 0 {
                    lifecycle::end(
                        tx,
                        id,
                        &[RunStatus::AwaitingApproval],
                        lifecycle::after_gate(denies, Some(GateStatus::Expired)),
                        Some("no approval before the gate expired"),
                        &Actor::system(),
                    )?;
                }
            }
            Ok(due.len())
        })?;
        if n > 0 {
            self.changed.notify_waiters();
        }
        Ok(n)
    }

    /// Runs with a pending gate that `user` may decide and has not decided yet.
    pub fn approvals_for(&self, user: &User) -> Result<Vec<RunRow>, RunError> {
        let runs = self.store.runs_with_pending_gates()?;
        runs.into_iter()
            .filter(|r| {
                let Some(g) = r.gates.iter().find(|g| g.status == GateStatus::Pending) else {
                    return false;
                };
                decider_party(user, &g.requirements, &r.initiator.user).is_ok()
                    && !g.decisions.iter().any(|d| d.user == user.name)
                    && self.sees(user, r)
            })
            .map(|r| self.chain_links_seen(user, r))
            .collect()
    }

    /// Acknowledges the after-the-fact review of a break-glass run (rule 6): an approver or
    /// admin of an owning party, not the initiator.
    pub fn review(&self, user: &User, id: &str, comment: &str) -> Result<RunRow, RunError> {
        let actor = Actor::user(&user.name, &user.party);
        let run = self.visible_run(user, id)?;
        let Some(review) = &run.review else {
            return Err(RunError::Conflict(format!(
                "run {id} was not a break-glass run; there is nothing to review"
            )));
        };
        let parties = &review.parties;
        let may = parties.contains(&user.party)
            && (user.has_role(Role::Approver) || user.has_role(Role::Admin))
            && run.initiator.user != user.name;
        if !may {
            let why = format!(
                "the review belongs to approvers of [{}] other than the initiator",
                parties.join(", ")
            );
            self.store.audit(
                &actor,
                Some(id),
                Event::ReviewRefused,
                json!({"reason": why}),
            )?;
            return Err(RunError::Forbidden(why));
        }
        if comment.trim().is_empty() {
            return Err(RunError::Invalid("a review needs a comment".into()));
        }
        let done = self.store.tx(|tx| {
            let ok = tx.acknowledge_review(id, &user.name, comment)?;
            if ok {
                tx.audit(
                    &actor,
                    Some(id),
                    Event::ReviewAcknowledged,
                    json!({"comment": comment}),
                )?;
            }
            Ok(ok)
        })?;
        if !done {
            return Err(RunError::Conflict(format!(
                "the review of run {id} was already acknowledged"
            )));
        }
        // As every read: the chain links cut to what `user` may see (rule 10).
        self.visible_run(user, id)
    }

    /// Opens (or joins) the mid-run gate `reason` of a run; returns its number. The first
    /// host to reach a gate opens it and prompts the owning parties; others wait on it too.
    pub(super) fn open_mid_run_gate(
        &self,
        id: &str,
        rb: &Runbook,
        plan: &Plan,
        host: Option<&str>,
        reason: &str,
        actor: &Actor,
    ) -> Result<i64, crate::store::StoreError> {
        let quorum = rb.approval.as_ref().map_or(1, |a| a.quorum);
        // The owners of the APIs and secrets in scope hold the gate too (rule 3).
        let mut parties: Vec<String> = Vec::new();
        for p in plan
            .approvals
            .iter()
            .map(|a| &a.party)
            .chain(plan.targets.iter().map(|t| &t.owner))
            .chain(plan.owners.iter())
        {
            if !parties.contains(p) {
                parties.push(p.clone());
            }
        }
        if parties.is_empty() {
            parties.push(rb.owner.clone());
        }
        let reqs: Vec<ApprovalRequirement> = parties
            .iter()
            .map(|p| ApprovalRequirement {
                party: p.clone(),
                quorum,
                reasons: vec![format!("gate: {reason}")],
            })
            .collect();
        let expires_at = expiry(rb);
        let (gate, opened) = self.store.tx(|tx| {
            if let Some((g, _)) = tx.gate_by_reason(id, reason)? {
                return Ok((g, false));
            }
            let g = tx.next_gate(id)?;
            tx.open_gate(id, g, reason, host, &reqs, &expires_at)?;
            tx.audit(actor, Some(id), Event::ApprovalRequested, json!({"gate": g, "reason": reason, "host": host, "from": reqs, "expires_at": expires_at}))?;
            tx.log(id, host, super::output::EVENT_STREAM, &format!("waiting for approval: {reason}"))?;
            Ok((g, true))
        })?;
        if opened {
            let who = format!("{} ({})", plan.initiator.user, plan.initiator.party);
            for p in &parties {
                self.notifier.send(
                    &self.config(),
                    Notice::prompt(
                        NoticeEvent::ApprovalRequested,
                        p,
                        id,
                        &rb.name,
                        &who,
                        format!("{}: {reason}", rb.name),
                        None,
                    ),
                );
            }
            self.changed.notify_waiters();
        }
        Ok(gate)
    }
}
