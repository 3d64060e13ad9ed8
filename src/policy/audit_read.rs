//! Rule 10 for the audit log: which records concern a party. A reader sees those in full
//! and every other record only as its chain links (`seq`, `prev_hash`, `hash`), so its
//! export still verifies while saying nothing of other parties' runs.

use serde_json::Value;

use crate::audit::{Actor, Record};

/// Whether `record` concerns `party`. `run_visible` says whether the record's run is visible
/// to the party ([`super::may_see_run`]); `None` when that run is not known. A record with
/// no run concerns the party when the daemon wrote it (`system`), a user of the party did,
/// or its detail names the party as `party`.
pub fn record_concerns(party: &str, record: &Record, run_visible: Option<bool>) -> bool {
    if record.run_id.is_some() {
        return run_visible == Some(true);
    }
    let by = match &record.actor {
        Actor::System(_) => true,
        Actor::User { party: p, .. } => p == party,
    };
    by || record.detail.get("party").and_then(Value::as_str) == Some(party)
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
        // (record, run visible to provider, provider sees it)
        let table = [
            (record(alice(), Some("r1"), json!({})), Some(false), false),
            (record(alice(), Some("r1"), json!({})), Some(true), true),
            (record(paula(), Some("r2"), json!({})), Some(false), false),
            (record(Actor::system(), Some("r3"), json!({})), None, false),
            (record(Actor::system(), None, json!({})), None, true),
            (record(paula(), None, json!({})), None, true),
            (record(alice(), None, json!({})), None, false),
            (
                record(alice(), None, json!({"party": "provider"})),
                None,
                true,
            ),
            (
                record(alice(), None, json!({"party": "internal"})),
                None,
                false,
            ),
        ];
        for (i, (r, visible, want)) in table.into_iter().enumerate() {
            assert_eq!(
                record_concerns("provider", &r, visible),
                want,
                "case {i}: {r:?}"
            );
        }
    }
}
