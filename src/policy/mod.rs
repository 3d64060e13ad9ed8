//! Pure decisions: who may start a runbook (rule 1), who must approve a run (rule 3), who may
//! approve, and what is in scope (rule 2, in [`scope`]). No I/O; the callers audit.

pub mod scope;

use serde::Serialize;

use crate::config::{Host, Role, User};
use crate::runbook::Runbook;

/// A refusal, with the reason shown to the user and written to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Rule 1: `allowed` must admit both the user's party and one of their roles.
pub fn may_start(rb: &Runbook, user: &User) -> Result<(), Denied> {
    if !rb.allowed.parties.contains(&user.party) {
        return Err(Denied(format!(
            "runbook `{}` may be started by parties [{}]; {} is in `{}`",
            rb.name,
            rb.allowed.parties.join(", "),
            user.name,
            user.party
        )));
    }
    if !rb.allowed.roles.iter().any(|r| user.has_role(*r)) {
        let roles: Vec<String> = rb.allowed.roles.iter().map(Role::to_string).collect();
        return Err(Denied(format!(
            "runbook `{}` needs one of the roles [{}]; {} has none of them",
            rb.name,
            roles.join(", "),
            user.name
        )));
    }
    Ok(())
}

/// One party whose approval a run needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalRequirement {
    pub party: String,
    pub quorum: u32,
    /// Why: `runbook` (approval.from) and/or `owns HOST` for cross-party targets.
    pub reasons: Vec<String>,
}

/// Rule 3: the runbook's `approval.from` party (default: the owners of the targets, or the
/// runbook's owner when there are none), and always each party that owns a target host but
/// is not the initiator's party.
pub fn required_approvals(
    rb: &Runbook,
    targets: &[&Host],
    initiator_party: &str,
) -> Vec<ApprovalRequirement> {
    let quorum = rb.approval.as_ref().map_or(1, |a| a.quorum);
    let mut out: Vec<ApprovalRequirement> = Vec::new();
    let mut add = |party: &str, reason: String| match out.iter_mut().find(|r| r.party == party) {
        Some(r) => {
            if !r.reasons.contains(&reason) {
                r.reasons.push(reason)
            }
        }
        None => out.push(ApprovalRequirement {
            party: party.to_string(),
            quorum,
            reasons: vec![reason],
        }),
    };
    if let Some(a) = &rb.approval {
        match &a.from {
            Some(p) => add(p, "runbook asks for approval".into()),
            None if targets.is_empty() => add(&rb.owner, "runbook asks for approval".into()),
            None => {
                for h in targets {
                    add(&h.owner, "runbook asks for approval".into());
                }
            }
        }
    }
    for h in targets {
        if h.owner != initiator_party {
            add(&h.owner, format!("owns {}", h.name));
        }
    }
    out
}

/// Rule 3: an approver belongs to the party whose approval is needed, holds `approver`,
/// and is not the initiator.
pub fn may_approve(user: &User, party: &str, initiator: &str) -> Result<(), Denied> {
    if user.name == initiator {
        return Err(Denied(format!(
            "{} started this run and cannot approve it",
            user.name
        )));
    }
    if user.party != party {
        return Err(Denied(format!(
            "approval is needed from `{party}`; {} is in `{}`",
            user.name, user.party
        )));
    }
    if !user.has_role(Role::Approver) {
        return Err(Denied(format!(
            "{} does not hold the approver role",
            user.name
        )));
    }
    Ok(())
}
