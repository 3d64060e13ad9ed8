//! Rule 10 for the audit log: which records concern a party. A reader sees those in full
//! and every other record only as its chain links (`seq`, `prev_hash`, `hash`), so its
//! export still verifies while saying nothing of other parties' runs.

use serde_json::Value;

use crate::audit::{Actor, Record};

/// What the store knows about the things a record names.
#[derive(Debug, Clone, Copy, Default)]
pub struct Links<'a> {
    /// Whether the record's run is visible to the party ([`super::may_see_run`]); `None`
    /// when the record has no run or the run is not known.
    pub run_visible: Option<bool>,
    /// The owner of the runbook the record's detail names (`runbook`), if it is known.
    pub runbook_owner: Option<&'a str>,
}

/// Whether `record` concerns `party`. A record of a run concerns the parties that may see
/// the run. A record with no run concerns the party when the daemon wrote it (`system`), a
/// user of the party did, its detail names the party as `party`, or it is about a runbook
/// the party owns (a refused start of its runbook).
pub fn record_concerns(party: &str, record: &Record, links: Links<'_>) -> bool {
    if record.run_id.is_some() {
        return links.run_visible == Some(true);
    }
    let by = match &record.actor {
        Actor::System(_) => true,
        Actor::User { party: p, .. } => p == party,
    };
    by || record.detail.get("party").and_then(Value::as_str) == Some(party)
        || links.runbook_owner == Some(party)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(actor: Actor, run: Option<&str>, detail: Value) -> Record {
        Record {
            seq: 1,
            ts: "2026-12-02T00:00:00Z".into(),
            actor,
            run_id: run.map(str::to_string),
            event: "e".into(),
            detail,
            prev_hash: crate::audit::GENESIS.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn rule10_which_audit_records_a_party_sees() {
        let alice = || Actor::user("alice", "internal");
        let paula = || Actor::user("paula", "provider");
        let run = |v: bool| Links {
            run_visible: Some(v),
            runbook_owner: None,
        };
        let none = Links::default();
        let owned_by = |p| Links {
            run_visible: None,
            runbook_owner: Some(p),
        };
        // (record, what it links to, provider sees it)
        let table = [
            (record(alice(), Some("r1"), json!({})), run(false), false),
            (record(alice(), Some("r1"), json!({})), run(true), true),
            (record(paula(), Some("r2"), json!({})), run(false), false),
            (record(Actor::system(), Some("r3"), json!({})), none, false),
            (record(Actor::system(), None, json!({})), none, true),
            (record(paula(), None, json!({})), none, true),
            (record(alice(), None, json!({})), none, false),
            (
                record(alice(), None, json!({"party": "provider"})),
                none,
                true,
            ),
            (
                record(alice(), None, json!({"party": "internal"})),
                none,
                false,
            ),
            (
                record(alice(), None, json!({"runbook": "x"})),
                owned_by("provider"),
                true,
            ),
            (
                record(alice(), None, json!({"runbook": "x"})),
                owned_by("internal"),
                false,
            ),
        ];
        for (i, (r, links, want)) in table.into_iter().enumerate() {
            assert_eq!(
                record_concerns("provider", &r, links),
                want,
                "case {i}: {r:?}"
            );
        }
    }
}
