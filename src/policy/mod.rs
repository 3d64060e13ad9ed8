//! Pure decisions: who may start a runbook (rule 1), who must approve a run (rule 3), who may
//! approve, and what is in scope (rule 2, in [`scope`]). No I/O; the callers audit.

pub mod audit_read;
pub mod command;
pub mod matrix;
pub mod scope;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::config::{Config, Host, ReadGrant, Role, User};
use crate::runbook::plan::Plan;
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ApprovalRequirement {
    pub party: String,
    pub quorum: u32,
    /// Why: `runbook` (approval.from) and/or `owns HOST` for cross-party targets.
    pub reasons: Vec<String>,
}

/// Something in a runbook's scope that a party owns (rule 3): an API its `scope.http`
/// entries call, or a secret in `scope.secrets`. Target hosts are counted from the hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    /// What it is, as shown in approval reasons: `API defender`, `secret edr_token`.
    pub what: String,
    pub owner: String,
}

/// The APIs (each one containing a `scope.http` entry) and secrets of `rb`'s scope, with
/// their owners from `config`, in scope order, each once.
pub fn scope_owned(rb: &Runbook, config: &Config) -> Vec<Owned> {
    let mut out: Vec<Owned> = Vec::new();
    let mut push = |what: String, owner: &str| {
        if !out.iter().any(|o| o.what == what) {
            out.push(Owned {
                what,
                owner: owner.to_string(),
            });
        }
    };
    for rule in &rb.scope.http {
        for api in config.apis_containing(rule.prefix()) {
            push(format!("API {}", api.name), &api.owner);
        }
    }
    for name in &rb.scope.secrets {
        if let Some(s) = config.secrets.get(name) {
            push(format!("secret {name}"), &s.owner);
        }
    }
    out
}

/// Why one party's approval is needed (rule 3), in structured form: the reasons of an
/// [`ApprovalRequirement`] are this, worded. The responsibility matrix counts from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalNeed<'a> {
    pub party: String,
    pub quorum: u32,
    /// The runbook's `approval:` section asks for this party.
    pub runbook_asks: bool,
    /// The target hosts this party owns, when it is not the initiator's party.
    pub hosts: Vec<&'a str>,
    /// The APIs and secrets in scope ([`Owned::what`]) it owns, likewise.
    pub items: Vec<&'a str>,
}

/// Rule 3: the runbook's `approval.from` party (default: the owners of the targets, or the
/// runbook's owner when there are none), and always each party that owns a target host or
/// something in the scope ([`scope_owned`]) but is not the initiator's party. In the order
/// the parties are first named; linear in the number of targets.
pub fn approval_needs<'a>(
    rb: &Runbook,
    targets: &[&'a Host],
    owned: &'a [Owned],
    initiator_party: &str,
) -> Vec<ApprovalNeed<'a>> {
    let quorum = rb.approval.as_ref().map_or(1, |a| a.quorum);
    let mut out: Vec<ApprovalNeed<'a>> = Vec::new();
    // Parties are few; a linear find over them keeps the first-named order.
    let mut need = |party: &str| -> usize {
        match out.iter().position(|n| n.party == party) {
            Some(i) => i,
            None => {
                out.push(ApprovalNeed {
                    party: party.to_string(),
                    quorum,
                    runbook_asks: false,
                    hosts: Vec::new(),
                    items: Vec::new(),
                });
                out.len() - 1
            }
        }
    };
    let mut asks: Vec<usize> = Vec::new();
    if let Some(a) = &rb.approval {
        match &a.from {
            Some(p) => asks.push(need(p)),
            None if targets.is_empty() => asks.push(need(&rb.owner)),
            None => {
                let mut last: Option<&str> = None;
                for h in targets {
                    if last != Some(h.owner.as_str()) {
                        asks.push(need(&h.owner));
                        last = Some(h.owner.as_str());
                    }
                }
            }
        }
    }
    let mut host_of: Vec<(usize, &'a str)> = Vec::new();
    let mut last: Option<(&str, usize)> = None;
    for h in targets {
        if h.owner != initiator_party {
            let i = match last {
                Some((o, i)) if o == h.owner => i,
                _ => need(&h.owner),
            };
            last = Some((h.owner.as_str(), i));
            host_of.push((i, h.name.as_str()));
        }
    }
    let mut item_of: Vec<(usize, &'a str)> = Vec::new();
    for o in owned {
        if o.owner != initiator_party {
            item_of.push((need(&o.owner), o.what.as_str()));
        }
    }
    for i in asks {
        out[i].runbook_asks = true;
    }
    for (i, h) in host_of {
        out[i].hosts.push(h);
    }
    for (i, w) in item_of {
        if !out[i].items.contains(&w) {
            out[i].items.push(w);
        }
    }
    out
}

/// Rule 3 as stored in a plan: [`approval_needs`], each need worded as reasons
/// (`runbook asks for approval`, `owns HOST`, `owns API NAME`, `owns secret NAME`).
pub fn required_approvals(
    rb: &Runbook,
    targets: &[&Host],
    owned: &[Owned],
    initiator_party: &str,
) -> Vec<ApprovalRequirement> {
    approval_needs(rb, targets, owned, initiator_party)
        .into_iter()
        .map(|n| {
            let mut reasons = Vec::with_capacity(n.hosts.len() + n.items.len() + 1);
            if n.runbook_asks {
                reasons.push("runbook asks for approval".to_string());
            }
            reasons.extend(n.hosts.iter().map(|h| format!("owns {h}")));
            reasons.extend(n.items.iter().map(|w| format!("owns {w}")));
            ApprovalRequirement {
                party: n.party,
                quorum: n.quorum,
                reasons,
            }
        })
        .collect()
}

/// Who reviews a break-glass run after the fact: each party it asked to approve or whose
/// things it touches (`parties`, first named first), or else the runbook's owner.
pub fn break_glass_reviewers<'a>(
    runbook_owner: &str,
    parties: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in parties {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        out.push(runbook_owner.to_string());
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

/// The parties a run concerns (rule 10): the initiator's party, each party that owns
/// something the stored plan may touch (its target hosts, and the plan's `owners`: owners of
/// the APIs and secrets in its scope), and each party asked to approve it.
pub fn run_parties(initiator_party: &str, plan: &Plan) -> BTreeSet<String> {
    let mut out = BTreeSet::from([initiator_party.to_string()]);
    out.extend(run_owners(plan));
    out.extend(plan.approvals.iter().map(|a| a.party.clone()));
    out
}

/// The parties that own something a stored plan may touch (rule 11): the owners of its
/// target hosts and the plan's `owners` (owners of the APIs and secrets in its scope).
pub fn run_owners(plan: &Plan) -> BTreeSet<String> {
    plan.touched_owners()
}

/// Rule 10: whether `party` may see a run that concerns `parties` ([`run_parties`]), itself
/// or through a config grant to read another party's runs.
pub fn may_see_run(party: &str, parties: &BTreeSet<String>, grants: &[ReadGrant]) -> bool {
    parties.contains(party)
        || grants
            .iter()
            .any(|g| g.party == party && parties.contains(&g.reads))
}

/// The parties whose runs `party` may see (rule 10): itself and those a config grant lets it
/// read. A run it may see concerns one of them ([`may_see_run`]).
pub fn parties_seen_by(party: &str, grants: &[ReadGrant]) -> Vec<String> {
    let mut out = vec![party.to_string()];
    for g in grants.iter().filter(|g| g.party == party) {
        if !out.contains(&g.reads) {
            out.push(g.reads.clone());
        }
    }
    out
}

/// The parties a runbook concerns (rule 10, for `GET /api/v1/schedules` and
/// `GET /api/v1/runbooks`): its owner, the owners of its `targets`, and its `approval.from`.
/// With `may_start`, also the parties its `allowed` admits (they may start it, so they may
/// read what they would start).
pub fn runbook_parties(rb: &Runbook, targets: &[&Host], may_start: bool) -> BTreeSet<String> {
    let mut out = BTreeSet::from([rb.owner.clone()]);
    out.extend(targets.iter().map(|h| h.owner.clone()));
    out.extend(rb.approval.as_ref().and_then(|a| a.from.clone()));
    if may_start {
        out.extend(rb.allowed.parties.iter().cloned());
    }
    out
}

/// Rule 11: who may cancel a run. The initiating party's operators and admins may cancel
/// its own runs; the approvers and admins of a party owning something the run acts on
/// ([`run_owners`]) may cancel it too. Nobody else: an admin of an uninvolved party may not.
pub fn may_cancel(
    user: &User,
    initiator_party: &str,
    owners: &BTreeSet<String>,
) -> Result<(), Denied> {
    let roles_of_initiator = [Role::Operator, Role::Admin];
    let roles_of_owner = [Role::Approver, Role::Admin];
    let holds = |roles: &[Role]| roles.iter().any(|r| user.has_role(*r));
    if user.party == initiator_party && holds(&roles_of_initiator) {
        return Ok(());
    }
    if owners.contains(&user.party) && holds(&roles_of_owner) {
        return Ok(());
    }
    Err(Denied(format!(
        "{} ({}) may not cancel this run: it needs an operator or admin of `{initiator_party}`, \
         or an approver or admin of a party owning what it touches [{}]",
        user.name,
        user.party,
        owners.iter().cloned().collect::<Vec<_>>().join(", ")
    )))
}

/// Rule 11: who may freeze or unfreeze a host: an approver or admin of the party owning it.
pub fn may_freeze(user: &User, host: &Host) -> Result<(), Denied> {
    if user.party != host.owner {
        return Err(Denied(format!(
            "host {} belongs to `{}`; {} is in `{}` and may not freeze or unfreeze it",
            host.name, host.owner, user.name, user.party
        )));
    }
    if !(user.has_role(Role::Approver) || user.has_role(Role::Admin)) {
        return Err(Denied(format!(
            "freezing needs the approver or admin role; {} has neither",
            user.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::plan::{make_plan, resolve_targets, Initiator};

    const CONFIG: &str = r#"
parties: [internal, provider]
users:
  - { name: alice, party: internal, roles: [operator], token_sha256: "0000000000000000000000000000000000000000000000000000000000000000" }
  - { name: ivan,  party: internal, roles: [approver], token_sha256: "0000000000000000000000000000000000000000000000000000000000000001" }
  - { name: ian,   party: internal, roles: [operator, approver], token_sha256: "0000000000000000000000000000000000000000000000000000000000000002" }
  - { name: paula, party: provider, roles: [operator], token_sha256: "0000000000000000000000000000000000000000000000000000000000000003" }
  - { name: pete,  party: provider, roles: [approver], token_sha256: "0000000000000000000000000000000000000000000000000000000000000004" }
  - { name: aud,   party: internal, roles: [auditor], token_sha256: "0000000000000000000000000000000000000000000000000000000000000005" }
inventory:
  - { name: web1, transport: local, owner: internal, tags: [web] }
  - { name: mon1, transport: local, owner: provider, tags: [mon] }
apis:
  defender: { base_url: "https://api.securitycenter.microsoft.com", owner: internal }
  psa: { base_url: "https://psa.provider.example/api/", owner: provider }
secrets:
  edr_token: { env: T_EDR_TOKEN, owner: internal }
  psa_token: { env: T_PSA_TOKEN, owner: provider }
"#;

    fn setup(runbook: &str) -> (tempfile::TempDir, Config, Runbook) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tandem.yaml"), CONFIG).unwrap();
        std::fs::write(dir.path().join("rb.yaml"), runbook).unwrap();
        let config = Config::load(&dir.path().join("tandem.yaml")).unwrap();
        let rb = Runbook::load(&dir.path().join("rb.yaml"), &config).unwrap();
        (dir, config, rb)
    }

    fn rb(targets: &str, extra: &str) -> String {
        format!("name: t\nowner: internal\ntargets: {targets}\nscope: {{ commands: [\"true\"] }}\n{extra}\nscript: 'sh(\"true\")'\n")
    }

    #[test]
    fn rule1_who_may_start() {
        // (allowed section, user, may start)
        let table = [
            ("", "alice", true),
            ("", "ian", true),
            ("", "paula", false),
            ("", "ivan", false),
            ("", "aud", false),
            (
                "allowed: { parties: [internal, provider], roles: [operator] }",
                "paula",
                true,
            ),
            (
                "allowed: { parties: [internal, provider], roles: [operator] }",
                "pete",
                false,
            ),
            (
                "allowed: { parties: [provider], roles: [operator] }",
                "alice",
                false,
            ),
            (
                "allowed: { parties: [internal], roles: [auditor] }",
                "aud",
                true,
            ),
            (
                "allowed: { parties: [internal], roles: [auditor] }",
                "alice",
                false,
            ),
        ];
        for (allowed, user, want) in table {
            let (_d, config, rb) = setup(&rb("[web1]", allowed));
            let u = config.user(user).unwrap();
            assert_eq!(may_start(&rb, u).is_ok(), want, "{allowed:?} {user}");
        }
    }

    #[test]
    fn rule3_who_must_approve() {
        // (targets, approval section, initiator party, expected parties)
        let table: [(&str, &str, &str, &[&str]); 7] = [
            ("[web1]", "", "internal", &[]),
            ("[web1]", "", "provider", &["internal"]),
            ("[web1, mon1]", "", "internal", &["provider"]),
            ("[web1, mon1]", "", "provider", &["internal"]),
            (
                "[web1]",
                "approval: { from: provider }",
                "internal",
                &["provider"],
            ),
            (
                "[web1, mon1]",
                "approval: {}",
                "internal",
                &["internal", "provider"],
            ),
            ("[]", "approval: { quorum: 2 }", "internal", &["internal"]),
        ];
        for (targets, approval, party, want) in table {
            let (_d, config, rb) = setup(&rb(targets, approval));
            let hosts = resolve_targets(&rb, &config).unwrap();
            let owned = scope_owned(&rb, &config);
            let got: Vec<String> = required_approvals(&rb, &hosts, &owned, party)
                .into_iter()
                .map(|r| r.party)
                .collect();
            assert_eq!(
                got,
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{targets} {approval:?} {party}"
            );
        }
    }

    #[test]
    fn rule3_apis_and_secrets_have_owners_too() {
        let defender = "POST https://api.securitycenter.microsoft.com/api/machines/";
        let psa = "GET https://psa.provider.example/api/tickets";
        // (targets, scope, initiator party, expected (party, reasons), expected plan owners)
        type Row<'a> = (
            &'a str,
            String,
            &'a str,
            &'a [(&'a str, &'a [&'a str])],
            &'a [&'a str],
        );
        let table: [Row; 8] = [
            // The attack: an API-only runbook has no target hosts, yet it acts on internal's
            // devices with internal's token.
            (
                "[]",
                format!("{{ http: [\"{defender}\"], secrets: [edr_token] }}"),
                "provider",
                &[("internal", &["owns API defender", "owns secret edr_token"])],
                &["internal"],
            ),
            (
                "[]",
                format!("{{ http: [\"{defender}\"], secrets: [edr_token] }}"),
                "internal",
                &[],
                &["internal"],
            ),
            (
                "[]",
                format!("{{ http: [\"{defender}\"] }}"),
                "provider",
                &[("internal", &["owns API defender"])],
                &["internal"],
            ),
            (
                "[]",
                "{ secrets: [edr_token] }".to_string(),
                "provider",
                &[("internal", &["owns secret edr_token"])],
                &["internal"],
            ),
            (
                "[mon1]",
                format!("{{ commands: [\"true\"], http: [\"{psa}\"], secrets: [psa_token] }}"),
                "provider",
                &[],
                &["provider"],
            ),
            (
                "[mon1]",
                "{ commands: [\"true\"], secrets: [edr_token] }".to_string(),
                "provider",
                &[("internal", &["owns secret edr_token"])],
                &["internal", "provider"],
            ),
            (
                "[web1]",
                format!("{{ commands: [\"true\"], http: [\"{psa}\"], secrets: [psa_token] }}"),
                "internal",
                &[("provider", &["owns API psa", "owns secret psa_token"])],
                &["internal", "provider"],
            ),
            (
                "[web1]",
                format!("{{ commands: [\"true\"], http: [\"{psa}\"] }}"),
                "provider",
                &[("internal", &["owns web1"])],
                &["internal", "provider"],
            ),
        ];
        for (targets, scope, party, want, owners) in table {
            let text = format!(
                "name: t\nowner: internal\ntargets: {targets}\nscope: {scope}\n\
                 allowed: {{ parties: [internal, provider] }}\nscript: 'log(\"x\")'\n"
            );
            let (_d, config, rb) = setup(&text);
            let who = Initiator {
                user: "x".into(),
                party: party.into(),
            };
            let plan = make_plan(&rb, &config, &serde_json::Map::new(), who, None).unwrap();
            let got: Vec<(String, Vec<String>)> = plan
                .approvals
                .iter()
                .map(|r| (r.party.clone(), r.reasons.clone()))
                .collect();
            let want: Vec<(String, Vec<String>)> = want
                .iter()
                .map(|(p, rs)| (p.to_string(), rs.iter().map(|r| r.to_string()).collect()))
                .collect();
            assert_eq!(got, want, "{targets} {scope} {party}");
            assert_eq!(plan.owners, owners.to_vec(), "{targets} {scope} {party}");
            let seen = run_parties(party, &plan);
            for o in owners {
                assert!(seen.contains(*o), "rule 10: {o} sees {targets} {scope}");
            }
        }
    }

    #[test]
    fn a_limit_narrows_targets_and_approvals_is_digested_and_never_widens() {
        use crate::runbook::plan::{make_limited_plan, PlanError};
        let (_d, config, book) = setup(&rb("[web1, mon1]", ""));
        let paula = || Initiator {
            user: "paula".into(),
            party: "provider".into(),
        };
        let limited = |limit: &[&str]| {
            let limit: Vec<String> = limit.iter().map(|s| s.to_string()).collect();
            make_limited_plan(
                &book,
                &config,
                &serde_json::Map::new(),
                paula(),
                None,
                &limit,
            )
        };
        let all = make_plan(&book, &config, &serde_json::Map::new(), paula(), None).unwrap();
        // No limit: the very plan and digest of make_plan.
        assert_eq!(limited(&[]).unwrap().digest, all.digest);
        assert_eq!(all.approvals.len(), 1, "web1 is internal's");
        let mon = limited(&["tag:mon"]).unwrap();
        let names: Vec<&str> = mon.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["mon1"]);
        assert!(
            mon.approvals.is_empty(),
            "only the provider's own host is left"
        );
        assert_ne!(mon.digest, all.digest);
        assert_ne!(
            limited(&["mon1"]).unwrap().digest,
            mon.digest,
            "the limit as written is bound"
        );
        assert_eq!(
            limited(&["web9"]).unwrap_err(),
            PlanError::UnknownTarget("web9".into())
        );
        assert_eq!(
            limited(&["tag:db"]).unwrap_err(),
            PlanError::LimitOutside("tag:db".into())
        );
        let (_d2, config2, narrow) = setup(&rb("[web1]", ""));
        let outside = make_limited_plan(
            &narrow,
            &config2,
            &serde_json::Map::new(),
            paula(),
            None,
            &["mon1".to_string()],
        );
        assert_eq!(outside.unwrap_err(), PlanError::LimitOutside("mon1".into()));
    }

    #[test]
    fn digest_binds_the_owner_of_an_api() {
        let rb_text = "name: t\nowner: internal\ntargets: []\nscope: { http: [\"POST https://api.securitycenter.microsoft.com/api/\"] }\nscript: 'log(\"x\")'\n";
        let (_d, config, rb) = setup(rb_text);
        let who = || Initiator {
            user: "alice".into(),
            party: "internal".into(),
        };
        let before = make_plan(&rb, &config, &serde_json::Map::new(), who(), None).unwrap();
        let mut moved = config.clone();
        if let Some(a) = moved.apis.get_mut("defender") {
            a.owner = "provider".into();
        }
        let after = make_plan(&rb, &moved, &serde_json::Map::new(), who(), None).unwrap();
        assert_ne!(
            before.digest, after.digest,
            "an API changing hands needs a new approval"
        );
        assert_eq!(after.approvals.len(), 1);
        assert_eq!(after.approvals[0].party, "provider");
    }

    #[test]
    fn rule3_who_may_approve() {
        let (_d, config, _) = setup(&rb("[web1]", ""));
        // (approver, party needed, initiator, allowed)
        let table = [
            ("ivan", "internal", "paula", true),
            ("ian", "internal", "paula", true),
            ("ian", "internal", "ian", false),
            ("alice", "internal", "paula", false),
            ("pete", "internal", "paula", false),
            ("pete", "provider", "alice", true),
            ("aud", "internal", "paula", false),
        ];
        for (approver, party, initiator, want) in table {
            let u = config.user(approver).unwrap();
            assert_eq!(
                may_approve(u, party, initiator).is_ok(),
                want,
                "{approver} {party} {initiator}"
            );
        }
    }

    #[test]
    fn rule10_who_sees_a_run() {
        let plan = stored_plan(&["internal"], &[], &["internal"]);
        let parties = run_parties("provider", &plan);
        let none: &[ReadGrant] = &[];
        assert!(
            may_see_run("provider", &parties, none),
            "the initiator's party"
        );
        assert!(
            may_see_run("internal", &parties, none),
            "the owner of a target"
        );
        assert!(
            !may_see_run("auditors", &parties, none),
            "an unrelated party"
        );
        let own = run_parties("internal", &stored_plan(&[], &["internal"], &[]));
        assert!(!may_see_run("provider", &own, none), "internal's own run");
        let grant = [ReadGrant {
            party: "provider".into(),
            reads: "internal".into(),
        }];
        assert!(may_see_run("provider", &own, &grant), "granted read access");
        let api = run_parties("provider", &stored_plan(&[], &["internal"], &[]));
        assert!(
            may_see_run("internal", &api, none),
            "the owner of an API in scope"
        );
    }

    /// A plan as stored: targets owned by `target_owners`, `owners` in scope, approvals asked
    /// of `approvers`.
    fn stored_plan(target_owners: &[&str], owners: &[&str], approvers: &[&str]) -> Plan {
        Plan {
            targets: target_owners
                .iter()
                .enumerate()
                .map(|(i, o)| crate::runbook::plan::PlannedHost {
                    name: format!("web{}", i + 1),
                    owner: o.to_string(),
                    ..Default::default()
                })
                .collect(),
            owners: owners.iter().map(|o| o.to_string()).collect(),
            approvals: approvers
                .iter()
                .map(|p| ApprovalRequirement {
                    party: p.to_string(),
                    quorum: 1,
                    reasons: Vec::new(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn person(name: &str, party: &str, roles: &[Role]) -> User {
        User {
            name: name.into(),
            party: party.into(),
            roles: roles.to_vec(),
            token_sha256: "0".repeat(64),
        }
    }

    #[test]
    fn rule11_who_may_cancel() {
        // A provider run on an internal host, touching an API owned by `third`.
        let plan = stored_plan(&["internal"], &["third"], &[]);
        let owners = run_owners(&plan);
        // (party, roles, initiator party, may cancel)
        let table: [(&str, &[Role], &str, bool); 14] = [
            ("provider", &[Role::Operator], "provider", true),
            ("provider", &[Role::Admin], "provider", true),
            ("provider", &[Role::Approver], "provider", false),
            ("provider", &[Role::Auditor], "provider", false),
            ("internal", &[Role::Approver], "provider", true),
            ("internal", &[Role::Admin], "provider", true),
            ("internal", &[Role::Operator], "provider", false),
            ("internal", &[Role::Auditor], "provider", false),
            ("third", &[Role::Approver], "provider", true),
            ("third", &[Role::Operator], "provider", false),
            // internal's own run on its own host: provider's admin is nobody here.
            ("provider", &[Role::Admin], "internal", false),
            ("provider", &[Role::Operator], "internal", false),
            ("internal", &[Role::Operator], "internal", true),
            ("outsider", &[Role::Admin], "provider", false),
        ];
        for (party, roles, initiator, want) in table {
            let u = person("u", party, roles);
            let owners = if initiator == "internal" && party == "provider" {
                run_owners(&stored_plan(&["internal"], &[], &[]))
            } else {
                owners.clone()
            };
            assert_eq!(
                may_cancel(&u, initiator, &owners).is_ok(),
                want,
                "{party} {roles:?} cancelling a run of {initiator}"
            );
        }
    }

    #[test]
    fn rule11_who_may_freeze() {
        let (_d, config, _) = setup(&rb("[web1]", ""));
        let web1 = config.host("web1").unwrap();
        // (party, roles, may freeze internal's web1)
        let table: [(&str, &[Role], bool); 7] = [
            ("internal", &[Role::Approver], true),
            ("internal", &[Role::Admin], true),
            ("internal", &[Role::Operator], false),
            ("internal", &[Role::Auditor], false),
            ("provider", &[Role::Admin], false),
            ("provider", &[Role::Approver], false),
            ("provider", &[Role::Operator], false),
        ];
        for (party, roles, want) in table {
            let u = person("u", party, roles);
            assert_eq!(
                may_freeze(&u, web1).is_ok(),
                want,
                "{party} {roles:?} freezing web1"
            );
        }
    }

    #[test]
    fn digest_changes_with_every_input() {
        let base = rb("[web1]", "params: { n: { type: int, default: 1 } }");
        let (_d, config, rb0) = setup(&base);
        let who = || Initiator {
            user: "alice".into(),
            party: "internal".into(),
        };
        let params = |n: &str| {
            let mut m = serde_json::Map::new();
            m.insert("n".into(), serde_json::Value::String(n.into()));
            m
        };
        let d0 = make_plan(&rb0, &config, &params("1"), who(), None)
            .unwrap()
            .digest;
        assert_eq!(
            d0,
            make_plan(&rb0, &config, &serde_json::Map::new(), who(), None)
                .unwrap()
                .digest,
            "defaults resolve to the same plan"
        );
        let changed = [
            make_plan(&rb0, &config, &params("2"), who(), None)
                .unwrap()
                .digest,
            make_plan(
                &rb0,
                &config,
                &params("1"),
                Initiator {
                    user: "ian".into(),
                    party: "internal".into(),
                },
                None,
            )
            .unwrap()
            .digest,
            make_plan(
                &rb0,
                &config,
                &params("1"),
                who(),
                Some("2026-01-01T00:00:00Z".into()),
            )
            .unwrap()
            .digest,
            {
                let (_d, c, r) = setup(&base.replace("'sh(\"true\")'", "'sh(\"true\"); '"));
                make_plan(&r, &c, &params("1"), who(), None).unwrap().digest
            },
            {
                let (_d, c, r) = setup(&base.replace("[web1]", "[web1, mon1]"));
                make_plan(&r, &c, &params("1"), who(), None).unwrap().digest
            },
        ];
        for (i, d) in changed.iter().enumerate() {
            assert_ne!(*d, d0, "change {i} must change the digest");
        }
    }
}
