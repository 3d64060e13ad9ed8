//! The responsibility matrix: for each runbook, who owns it, who may start it, what it may
//! touch and whose that is, who must approve when each party starts it, and whether it may go
//! break-glass. Computed from the config and catalog by the same rules the engine enforces
//! ([`may_start`], [`approval_needs`], [`break_glass_reviewers`]), so the page cannot disagree
//! with what happens. Pure: no I/O.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{
    approval_needs, break_glass_reviewers, may_start, runbook_parties, scope_owned, Owned,
};
use crate::config::{Config, Role};
use crate::runbook::plan::resolve_targets;
use crate::runbook::Runbook;

/// The matrix over a set of runbooks.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    /// The config's parties, in config order: the columns of each row's [`PartyStart`]s.
    pub parties: Vec<String>,
    pub rows: Vec<MatrixRow>,
}

/// One runbook's line of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixRow {
    pub runbook: String,
    pub description: String,
    pub owner: String,
    /// `allowed.parties` and `allowed.roles` (rule 1).
    pub allowed_parties: Vec<String>,
    pub allowed_roles: Vec<Role>,
    /// The runbook's `targets` as written (host names and `tag:NAME`).
    pub selectors: Vec<String>,
    /// How many hosts the targets resolve to.
    pub target_count: usize,
    /// (party, hosts it owns among the targets), most first.
    pub target_owners: Vec<(String, usize)>,
    /// APIs and secrets in scope with their owners.
    pub owned: Vec<OwnedItem>,
    pub scheduled: bool,
    /// An emergency runbook may be started break-glass (without waiting for approval).
    pub emergency: bool,
    /// One per party of the config, in config order.
    pub starts: Vec<PartyStart>,
    /// Why the targets could not be resolved, if they could not.
    pub error: Option<String>,
    /// The parties the runbook concerns ([`runbook_parties`], rule 10): who may see the row.
    #[serde(skip)]
    pub concerns: BTreeSet<String>,
}

/// An API or secret in a runbook's scope.
#[derive(Debug, Clone, Serialize)]
pub struct OwnedItem {
    pub what: String,
    pub owner: String,
}

/// What happens when `party` starts a runbook.
#[derive(Debug, Clone, Serialize)]
pub struct PartyStart {
    pub party: String,
    /// The roles with which this party's users may start it; empty when it may not.
    pub roles: Vec<Role>,
    /// The party's users who may start it ([`may_start`]).
    pub users: Vec<String>,
    /// Whose approval a start by this party needs (rule 3), in plan order.
    pub approvals: Vec<MatrixApproval>,
    /// Who reviews a break-glass start by this party (emergency runbooks only).
    pub reviewers: Vec<String>,
}

/// One party's approval in the matrix: an [`super::ApprovalRequirement`], counted.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixApproval {
    pub party: String,
    pub quorum: u32,
    pub runbook_asks: bool,
    /// How many of the targets this party owns and the starter does not.
    pub hosts: usize,
    /// APIs and secrets it owns (`API defender`, `secret edr_token`).
    pub items: Vec<String>,
}

impl MatrixApproval {
    /// Why, in words: `runbook asks; owns 2 of 3 targets; owns API defender`.
    pub fn why(&self, target_count: usize) -> String {
        let mut out = Vec::new();
        if self.runbook_asks {
            out.push("runbook asks for approval".to_string());
        }
        if self.hosts > 0 {
            out.push(owns_of(self.hosts, target_count));
        }
        out.extend(self.items.iter().map(|w| format!("owns {w}")));
        out.join("; ")
    }
}

impl PartyStart {
    /// Whether this party may start the runbook at all.
    pub fn may_start(&self) -> bool {
        !self.roles.is_empty()
    }
}

/// `owns 2 of 3 targets`, `owns 1 of 1 target`: a count of an estate's targets in words.
pub fn owns_of(n: usize, total: usize) -> String {
    format!(
        "owns {} of {} target{}",
        thousands(n),
        thousands(total),
        if total == 1 { "" } else { "s" }
    )
}

/// `1143` → `1,143`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The matrix of `runbooks` under `config`.
pub fn matrix<'a>(config: &Config, runbooks: impl IntoIterator<Item = &'a Runbook>) -> Matrix {
    Matrix {
        parties: config.parties.clone(),
        rows: runbooks.into_iter().map(|rb| row(config, rb)).collect(),
    }
}

fn row(config: &Config, rb: &Runbook) -> MatrixRow {
    let (targets, error) = match resolve_targets(rb, config) {
        Ok(t) => (t, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let owned: Vec<Owned> = scope_owned(rb, config);
    let mut target_owners: Vec<(String, usize)> = Vec::new();
    for h in &targets {
        match target_owners.iter_mut().find(|(p, _)| *p == h.owner) {
            Some((_, n)) => *n += 1,
            None => target_owners.push((h.owner.clone(), 1)),
        }
    }
    target_owners.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let starts = config
        .parties
        .iter()
        .map(|party| {
            let roles: Vec<Role> = if rb.allowed.parties.contains(party) {
                rb.allowed.roles.clone()
            } else {
                Vec::new()
            };
            let users = config
                .users
                .iter()
                .filter(|u| &u.party == party && may_start(rb, u).is_ok())
                .map(|u| u.name.clone())
                .collect();
            let needs = approval_needs(rb, &targets, &owned, party);
            let reviewers = if rb.emergency {
                let approving: Vec<&String> = needs.iter().map(|n| &n.party).collect();
                // As the run's plan holds them: target owners, then every owner sorted.
                let all: std::collections::BTreeSet<&String> = targets
                    .iter()
                    .map(|h| &h.owner)
                    .chain(owned.iter().map(|o| &o.owner))
                    .collect();
                let touched = targets.iter().map(|h| &h.owner).chain(all);
                break_glass_reviewers(&rb.owner, approving.into_iter().chain(touched))
            } else {
                Vec::new()
            };
            let approvals = needs
                .into_iter()
                .map(|n| MatrixApproval {
                    party: n.party,
                    quorum: n.quorum,
                    runbook_asks: n.runbook_asks,
                    hosts: n.hosts.len(),
                    items: n.items.iter().map(|s| s.to_string()).collect(),
                })
                .collect();
            PartyStart {
                party: party.clone(),
                roles,
                users,
                approvals,
                reviewers,
            }
        })
        .collect();
    MatrixRow {
        runbook: rb.name.clone(),
        description: rb.description.clone(),
        owner: rb.owner.clone(),
        allowed_parties: rb.allowed.parties.clone(),
        allowed_roles: rb.allowed.roles.clone(),
        selectors: rb.targets.clone(),
        target_count: targets.len(),
        target_owners,
        owned: owned
            .into_iter()
            .map(|o| OwnedItem {
                what: o.what,
                owner: o.owner,
            })
            .collect(),
        scheduled: rb.schedule.is_some(),
        emergency: rb.emergency,
        starts,
        error,
        concerns: runbook_parties(rb, &targets, true),
    }
}

impl Matrix {
    /// The header of [`Matrix::to_csv`].
    pub const CSV_HEADER: &'static str = "runbook,owner,description,targets,target_owners,apis_and_secrets,starting_party,may_start_roles,may_start_users,must_approve,break_glass,break_glass_review";

    /// One line per runbook × party: the sign-off sheet.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(Self::CSV_HEADER);
        out.push_str("\r\n");
        for r in &self.rows {
            let owners = r
                .target_owners
                .iter()
                .map(|(p, n)| format!("{p} {}", owns_of(*n, r.target_count)))
                .collect::<Vec<_>>()
                .join("; ");
            let items = r
                .owned
                .iter()
                .map(|o| format!("{} ({})", o.what, o.owner))
                .collect::<Vec<_>>()
                .join("; ");
            for s in &r.starts {
                let roles = s.roles.iter().map(Role::to_string).collect::<Vec<_>>();
                let approve = if !s.may_start() {
                    String::new()
                } else if s.approvals.is_empty() {
                    "none".to_string()
                } else {
                    s.approvals
                        .iter()
                        .map(|a| format!("{} x{} ({})", a.party, a.quorum, a.why(r.target_count)))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                let fields = [
                    r.runbook.clone(),
                    r.owner.clone(),
                    r.description.clone(),
                    r.target_count.to_string(),
                    owners.clone(),
                    items.clone(),
                    s.party.clone(),
                    roles.join(" "),
                    s.users.join(" "),
                    approve,
                    if r.emergency && s.may_start() {
                        "yes"
                    } else {
                        "no"
                    }
                    .to_string(),
                    if r.emergency && s.may_start() {
                        s.reviewers.join(" ")
                    } else {
                        String::new()
                    },
                ];
                let line: Vec<String> = fields
                    .iter()
                    .map(|f| crate::report::render::csv_field(f))
                    .collect();
                out.push_str(&line.join(","));
                out.push_str("\r\n");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1143, "1,143"),
            (1234567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), want);
        }
        assert_eq!(owns_of(1, 1), "owns 1 of 1 target");
        assert_eq!(owns_of(238, 1143), "owns 238 of 1,143 targets");
    }
}
