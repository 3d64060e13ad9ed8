//! A plan in plain words: who wants to run what, on whose hosts, and who must approve and
//! why. One function serves every page that shows a run or a preview, so the sentence a
//! starter previews is the one an approver reads.

use std::collections::BTreeMap;

use crate::config::Transport;
use crate::policy::ApprovalRequirement;
use crate::runbook::plan::{Plan, PlannedHost};
use crate::state::RunStatus;
use crate::store::RunRow;

/// How a plan reads: one sentence, then why each approval is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanWords {
    /// "paula (provider) wants to run disk-report on 2 hosts owned by internal; internal
    /// must approve, 1 approver."
    pub summary: String,
    /// One line per party asked to approve: "internal must approve because it owns web1 and
    /// web2."
    pub why: Vec<String>,
}

/// `run` in words (its status sets the tense; a break-glass run says whose approval it
/// skipped and who reviews it).
pub fn run_in_words(run: &RunRow) -> PlanWords {
    let reviewers = run
        .review
        .as_ref()
        .map(|r| r.parties.clone())
        .unwrap_or_default();
    words(
        &run.plan,
        Some(run.status),
        run.break_glass.then_some(reviewers.as_slice()),
    )
}

/// A plan not started yet (the start page's preview) in words.
pub fn plan_in_words(plan: &Plan) -> PlanWords {
    words(plan, None, None)
}

/// How many hosts a sentence names one by one before it counts them.
const NAMED_HOSTS: usize = 3;

fn words(plan: &Plan, status: Option<RunStatus>, break_glass: Option<&[String]>) -> PlanWords {
    let who = if plan.initiator.user == "system" {
        format!("the schedule of {}", plan.runbook)
    } else {
        format!("{} ({})", plan.initiator.user, plan.initiator.party)
    };
    let verb = match status {
        None | Some(RunStatus::Queued | RunStatus::AwaitingApproval) => "wants to run",
        Some(RunStatus::Running) => "is running",
        Some(RunStatus::Denied | RunStatus::Expired) => "asked to run",
        Some(_) => "ran",
    };
    let mut summary = format!(
        "{who} {verb} {} {}",
        plan.runbook,
        targets_in_words(&plan.targets)
    );
    match break_glass {
        Some(reviewers) => {
            summary.push_str(" break-glass, without approval");
            if !plan.approvals.is_empty() {
                summary.push_str(&format!(
                    " (skipped: {})",
                    approvals_in_words(&plan.approvals)
                ));
            }
            if !reviewers.is_empty() {
                summary.push_str(&format!("; {} reviews it afterwards", and_list(reviewers)));
            }
        }
        None if plan.approvals.is_empty() => summary.push_str("; no approval is needed"),
        None => {
            summary.push_str("; ");
            summary.push_str(&approvals_in_words(&plan.approvals));
        }
    }
    summary.push('.');
    let why = plan
        .approvals
        .iter()
        .map(|r| why_in_words(r, plan))
        .collect();
    PlanWords { summary, why }
}

/// "on web1 (internal)", "on 2 hosts owned by internal", "on 5 hosts: 3 owned by internal,
/// 2 by provider", "with no target host".
fn targets_in_words(targets: &[PlannedHost]) -> String {
    let mut by_owner: BTreeMap<&str, usize> = BTreeMap::new();
    for t in targets {
        *by_owner.entry(t.owner.as_str()).or_default() += 1;
    }
    let local = |t: &PlannedHost| {
        if t.transport == Transport::Local {
            " (this machine)"
        } else {
            ""
        }
    };
    match (targets, by_owner.len()) {
        ([], _) => "with no target host".into(),
        ([t], _) => format!("on {}{} owned by {}", t.name, local(t), t.owner),
        (_, 1) => format!(
            "on {} hosts{} owned by {}",
            count(targets.len()),
            named(targets),
            targets[0].owner
        ),
        _ => {
            let parts: Vec<String> = by_owner
                .iter()
                .enumerate()
                .map(|(i, (owner, n))| {
                    let by = if i == 0 { "owned by " } else { "by " };
                    format!("{} {by}{owner}", count(*n))
                })
                .collect();
            format!(
                "on {} hosts{}: {}",
                count(targets.len()),
                named(targets),
                parts.join(", ")
            )
        }
    }
}

/// " (web1, web2)" for a few hosts; nothing for many (the page lists them).
fn named(targets: &[PlannedHost]) -> String {
    if targets.len() > NAMED_HOSTS {
        return String::new();
    }
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    format!(" ({})", names.join(", "))
}

/// "internal must approve, 1 approver; provider must approve, 2 approvers".
fn approvals_in_words(reqs: &[ApprovalRequirement]) -> String {
    let parts: Vec<String> = reqs
        .iter()
        .map(|r| {
            format!(
                "{} must approve, {} approver{}",
                r.party,
                r.quorum,
                if r.quorum == 1 { "" } else { "s" }
            )
        })
        .collect();
    parts.join("; ")
}

/// Why `req.party` is asked: the runbook asks for its approval, and/or it owns targets or
/// something in the scope that the initiator's party does not.
fn why_in_words(req: &ApprovalRequirement, plan: &Plan) -> String {
    let (runbook, initiator) = (&plan.runbook, &plan.initiator.party);
    let mut hosts = Vec::new();
    let mut other = Vec::new();
    let mut asked = false;
    for reason in &req.reasons {
        match reason.strip_prefix("owns ") {
            Some(what) if plan.targets.iter().any(|h| h.name == what) => hosts.push(what),
            Some(what) => other.push(what),
            None => asked = true,
        }
    }
    let mut because = Vec::new();
    if asked {
        because.push(format!("runbook {runbook} asks for its approval"));
    }
    if !hosts.is_empty() {
        let listed = if hosts.len() > NAMED_HOSTS {
            format!("{} of the target hosts", count(hosts.len()))
        } else {
            and_list(&hosts)
        };
        because.push(format!("it owns {listed}"));
    }
    if !other.is_empty() {
        because.push(format!("it owns {}", and_list(&other)));
    }
    let mut s = format!(
        "{} must approve because {}",
        req.party,
        because.join(", and ")
    );
    if !hosts.is_empty() || !other.is_empty() {
        s.push_str(&format!(", and the run is started by {initiator}"));
    }
    s.push('.');
    s
}

/// "a", "a and b", "a, b and c".
fn and_list<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [rest @ .., last] => {
            let rest: Vec<&str> = rest.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", rest.join(", "), last.as_ref())
        }
    }
}

/// A count with thousands separators: 1,143.
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::plan::Initiator;

    fn host(name: &str, owner: &str) -> PlannedHost {
        PlannedHost {
            name: name.into(),
            owner: owner.into(),
            ..PlannedHost::default()
        }
    }

    fn req(party: &str, quorum: u32, reasons: &[&str]) -> ApprovalRequirement {
        ApprovalRequirement {
            party: party.into(),
            quorum,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn plan(targets: Vec<PlannedHost>, approvals: Vec<ApprovalRequirement>) -> Plan {
        Plan {
            runbook: "disk-report".into(),
            targets,
            approvals,
            initiator: Initiator {
                user: "paula".into(),
                party: "provider".into(),
            },
            ..Plan::default()
        }
    }

    #[test]
    fn the_issues_example_reads_as_written() {
        let p = plan(
            vec![host("web1", "internal"), host("web2", "internal")],
            vec![req("internal", 1, &["owns web1", "owns web2"])],
        );
        assert_eq!(
            plan_in_words(&p).summary,
            "paula (provider) wants to run disk-report on 2 hosts (web1, web2) owned by internal; \
             internal must approve, 1 approver."
        );
    }

    #[test]
    fn mixed_owners_are_counted_and_many_hosts_not_named() {
        let targets = (0..5)
            .map(|i| {
                host(
                    &format!("h{i}"),
                    if i < 3 { "internal" } else { "provider" },
                )
            })
            .collect();
        let p = plan(targets, vec![]);
        assert_eq!(
            plan_in_words(&p).summary,
            "paula (provider) wants to run disk-report on 5 hosts: 3 owned by internal, 2 by \
             provider; no approval is needed."
        );
    }

    #[test]
    fn a_local_host_says_so_and_a_break_glass_run_names_its_reviewers() {
        let mut h = host("box", "internal");
        h.transport = Transport::Local;
        let p = plan(vec![h], vec![req("internal", 2, &["owns box"])]);
        let w = words(
            &p,
            Some(RunStatus::Succeeded),
            Some(&["internal".to_string()]),
        );
        assert_eq!(
            w.summary,
            "paula (provider) ran disk-report on box (this machine) owned by internal \
             break-glass, without approval (skipped: internal must approve, 2 approvers); \
             internal reviews it afterwards."
        );
    }

    #[test]
    fn why_names_the_runbook_and_what_the_party_owns() {
        let p = plan(vec![host("web1", "internal")], vec![]);
        let r = req(
            "internal",
            1,
            &[
                "runbook asks for approval",
                "owns web1",
                "owns API defender",
            ],
        );
        assert_eq!(
            why_in_words(&r, &p),
            "internal must approve because runbook disk-report asks for its approval, and it \
             owns web1, and it owns API defender, and the run is started by provider."
        );
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(7), "7");
        assert_eq!(count(1143), "1,143");
        assert_eq!(count(1_000_000), "1,000,000");
    }
}
