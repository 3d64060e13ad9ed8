//! The gate state machine (rules 3–5), as pure functions over a gate's requirements and the
//! decisions recorded on it. The orchestrator stores decisions and acts on the outcome.

use serde::{Deserialize, Serialize};

use crate::config::User;
use crate::policy::{self, ApprovalRequirement, Denied};

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote<'a> {
    pub party: &'a str,
    pub user: &'a str,
    pub approve: bool,
    pub digest: &'a str,
}

/// Where a gate stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GateState {
    /// Still waiting; `missing` lists (party, approvals still needed).
    Pending {
        missing: Vec<(String, u32)>,
    },
    Approved,
    /// Denied by `by`.
    Denied {
        by: String,
    },
}

/// Evaluates a gate. Only decisions bound to `digest` count (rule 4); one denial ends it;
/// each party needs `quorum` distinct approvers of its own (rule 3).
pub fn evaluate(
    requirements: &[ApprovalRequirement],
    votes: &[Vote<'_>],
    digest: &str,
) -> GateState {
    let bound: Vec<&Vote<'_>> = votes.iter().filter(|v| v.digest == digest).collect();
    if let Some(d) = bound.iter().find(|v| !v.approve) {
        return GateState::Denied {
            by: d.user.to_string(),
        };
    }
    let mut missing = Vec::new();
    for req in requirements {
        let mut approvers: Vec<&str> = bound
            .iter()
            .filter(|v| v.approve && v.party == req.party)
            .map(|v| v.user)
            .collect();
        approvers.sort_unstable();
        approvers.dedup();
        let have = approvers.len() as u32;
        if have < req.quorum {
            missing.push((req.party.clone(), req.quorum - have));
        }
    }
    if missing.is_empty() {
        GateState::Approved
    } else {
        GateState::Pending { missing }
    }
}

/// Which requirement `user` may decide on, if any (rule 3): their party must be one whose
/// approval is needed, they must hold `approver`, and they must not be the initiator.
pub fn decider_party<'r>(
    user: &User,
    requirements: &'r [ApprovalRequirement],
    initiator: &str,
) -> Result<&'r ApprovalRequirement, Denied> {
    let Some(req) = requirements.iter().find(|r| r.party == user.party) else {
        let parties: Vec<&str> = requirements.iter().map(|r| r.party.as_str()).collect();
        return Err(Denied(format!(
            "this run needs approval from [{}]; {} is in `{}`",
            parties.join(", "),
            user.name,
            user.party
        )));
    };
    policy::may_approve(user, &req.party, initiator)?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(party: &str, quorum: u32) -> ApprovalRequirement {
        ApprovalRequirement {
            party: party.into(),
            quorum,
            reasons: vec![],
        }
    }

    fn vote<'a>(party: &'a str, user: &'a str, approve: bool, digest: &'a str) -> Vote<'a> {
        Vote {
            party,
            user,
            approve,
            digest,
        }
    }

    #[test]
    fn quorum_counts_distinct_approvers_of_the_party() {
        let reqs = [req("internal", 2)];
        let one = [vote("internal", "ivan", true, "d")];
        assert_eq!(
            evaluate(&reqs, &one, "d"),
            GateState::Pending {
                missing: vec![("internal".into(), 1)]
            }
        );
        let twice = [
            vote("internal", "ivan", true, "d"),
            vote("internal", "ivan", true, "d"),
        ];
        assert!(matches!(
            evaluate(&reqs, &twice, "d"),
            GateState::Pending { .. }
        ));
        let other_party = [
            vote("internal", "ivan", true, "d"),
            vote("provider", "pete", true, "d"),
        ];
        assert!(matches!(
            evaluate(&reqs, &other_party, "d"),
            GateState::Pending { .. }
        ));
        let two = [
            vote("internal", "ivan", true, "d"),
            vote("internal", "ian", true, "d"),
        ];
        assert_eq!(evaluate(&reqs, &two, "d"), GateState::Approved);
    }

    #[test]
    fn every_party_must_approve_and_one_denial_ends_it() {
        let reqs = [req("internal", 1), req("provider", 1)];
        let half = [vote("internal", "ivan", true, "d")];
        assert_eq!(
            evaluate(&reqs, &half, "d"),
            GateState::Pending {
                missing: vec![("provider".into(), 1)]
            }
        );
        let denied = [
            vote("internal", "ivan", true, "d"),
            vote("provider", "pete", false, "d"),
        ];
        assert_eq!(
            evaluate(&reqs, &denied, "d"),
            GateState::Denied { by: "pete".into() }
        );
    }

    #[test]
    fn decisions_bound_to_another_digest_do_not_count() {
        let reqs = [req("internal", 1)];
        let stale = [vote("internal", "ivan", true, "old")];
        assert!(matches!(
            evaluate(&reqs, &stale, "new"),
            GateState::Pending { .. }
        ));
    }
}
