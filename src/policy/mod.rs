//! Pure decisions: who may start a runbook (rule 1), who must approve a run (rule 3), who may
//! approve, and what is in scope (rule 2, in [`scope`]). No I/O; the callers audit.

pub mod command;
pub mod scope;

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::config::{Host, ReadGrant, Role, User};
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

/// The parties a run concerns (rule 10): the initiator's party, each party that owns
/// something the stored plan may touch (its target hosts, and the plan's `owners`: owners of
/// the APIs and secrets in its scope), and each party asked to approve it.
pub fn run_parties(initiator_party: &str, plan: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::from([initiator_party.to_string()]);
    let listed = |key: &str, field: Option<&str>| -> Vec<String> {
        plan[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| match field {
                        Some(f) => i[f].as_str(),
                        None => i.as_str(),
                    })
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    out.extend(listed("targets", Some("owner")));
    out.extend(listed("approvals", Some("party")));
    out.extend(listed("owners", None));
    out
}

/// Rule 10: whether `party` may see a run that concerns `parties` ([`run_parties`]), itself
/// or through a config grant to read another party's runs.
pub fn may_see_run(party: &str, parties: &BTreeSet<String>, grants: &[ReadGrant]) -> bool {
    parties.contains(party)
        || grants
            .iter()
            .any(|g| g.party == party && parties.contains(&g.reads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
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
            let got: Vec<String> = required_approvals(&rb, &hosts, party)
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
        let plan = serde_json::json!({
            "targets": [{"name": "web1", "owner": "internal"}],
            "approvals": [{"party": "internal", "quorum": 1}],
        });
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
        let own = run_parties(
            "internal",
            &serde_json::json!({"targets": [], "owners": ["internal"]}),
        );
        assert!(!may_see_run("provider", &own, none), "internal's own run");
        let grant = [ReadGrant {
            party: "provider".into(),
            reads: "internal".into(),
        }];
        assert!(may_see_run("provider", &own, &grant), "granted read access");
        let api = run_parties(
            "provider",
            &serde_json::json!({"targets": [], "owners": ["internal"]}),
        );
        assert!(
            may_see_run("internal", &api, none),
            "the owner of an API in scope"
        );
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
