//! The audit log (SPEC §8): one hash-chained record per event. Records are appended by the
//! store inside the same transaction as the state change they describe; nothing here updates
//! or deletes. `verify` walks a chain and names the first record that does not fit;
//! [`anchor`] signs checkpoints of the chain and checks a log against them.

pub mod anchor;
#[cfg(test)]
mod campaign;
mod event;
mod redact;

pub use event::Event;
pub use redact::{Redactor, StreamRedactor, MAX_ENCODED_LEN, MIN_DERIVED_LEN, REDACTED};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who did something: a user of a party, or the daemon itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Actor {
    User { user: String, party: String },
    System(String),
}

impl Actor {
    /// The daemon acting on its own (recovery, schedules, config loads).
    pub fn system() -> Actor {
        Actor::System("system".to_string())
    }

    /// A user of a party.
    pub fn user(user: &str, party: &str) -> Actor {
        Actor::User {
            user: user.to_string(),
            party: party.to_string(),
        }
    }
}

/// One audit record as stored and exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub ts: String,
    pub actor: Actor,
    pub run_id: Option<String>,
    pub event: String,
    pub detail: Value,
    pub prev_hash: String,
    pub hash: String,
}

impl Record {
    /// SHA-256(prev_hash ‖ canonical JSON of the record without `hash`), hex.
    pub fn compute_hash(&self) -> String {
        let body = serde_json::json!({
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "run_id": self.run_id,
            "event": self.event,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
        });
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update(canonical_json(&body).as_bytes());
        hex::encode(h.finalize())
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// JSON with object keys sorted at every level and no insignificant white space, so that
/// the same value always hashes the same.
pub fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // Serializing a `Value` cannot fail: its keys are strings.
    serde_json::to_string(&sorted(v)).unwrap_or_default()
}

/// A chain that verified: how many records and the last hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub count: u64,
    pub head: String,
    /// How many of the records were redacted (another party's, in a party's export).
    pub redacted: u64,
    /// How many checkpoints the log was shown to extend.
    pub checkpoints: usize,
}

/// The first record that breaks the chain, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub seq: u64,
    pub reason: String,
}

/// A record that does not concern the reader (rule 10): only what links the chain is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redacted {
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
    /// Always `true`: what tells a redacted line from a whole record.
    pub redacted: bool,
}

/// One line of an export: a whole record, or a redacted one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Entry {
    Full(Record),
    Redacted(Redacted),
}

impl Entry {
    /// The record's seq.
    pub fn seq(&self) -> u64 {
        match self {
            Entry::Full(r) => r.seq,
            Entry::Redacted(r) => r.seq,
        }
    }

    /// Reads one export line: `"redacted": true` marks a redacted record.
    pub fn parse(line: &str) -> Result<Entry, serde_json::Error> {
        let v: Value = serde_json::from_str(line)?;
        if v.get("redacted") == Some(&Value::Bool(true)) {
            serde_json::from_value(v).map(Entry::Redacted)
        } else {
            serde_json::from_value(v).map(Entry::Full)
        }
    }
}

impl Record {
    /// This record as a reader it does not concern sees it.
    pub fn redacted(&self) -> Redacted {
        Redacted {
            seq: self.seq,
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
            redacted: true,
        }
    }
}

/// Walks records in order. The chain must start at seq 1 from [`GENESIS`], each seq one more
/// than the last, each `prev_hash` the previous `hash`, and each `hash` recomputable.
pub fn verify<I>(records: I) -> Result<Verified, Broken>
where
    I: IntoIterator<Item = Result<Record, Broken>>,
{
    verify_entries(records.into_iter().map(|r| r.map(Entry::Full)))
}

/// [`verify`] for an export that may hold redacted records: their seq and `prev_hash` must
/// fit the chain, and the next record's `prev_hash` must be their hash, but their own hash
/// cannot be recomputed. Checkpoints ([`anchor::verify_anchored`]) still pin them.
pub fn verify_entries<I>(entries: I) -> Result<Verified, Broken>
where
    I: IntoIterator<Item = Result<Entry, Broken>>,
{
    walk(entries, |_, _| Ok(()))
}

/// [`verify_entries`] continued: checks `entries`, the records after those `so_far`
/// verified, against its head, and returns the whole chain's [`Verified`]. What lets a
/// reader verify an append-only log incrementally.
pub fn verify_more<I>(so_far: &Verified, entries: I) -> Result<Verified, Broken>
where
    I: IntoIterator<Item = Result<Entry, Broken>>,
{
    let more = walk_from(so_far.count, &so_far.head, entries, |_, _| Ok(()))?;
    Ok(Verified {
        count: more.count,
        head: more.head,
        redacted: so_far.redacted + more.redacted,
        checkpoints: so_far.checkpoints,
    })
}

/// The chain walk; `at(seq, hash)` is called for every record that fits.
fn walk<I>(entries: I, at: impl FnMut(u64, &str) -> Result<(), Broken>) -> Result<Verified, Broken>
where
    I: IntoIterator<Item = Result<Entry, Broken>>,
{
    walk_from(0, GENESIS, entries, at)
}

/// The chain walk after `count` records whose last hash is `head`.
fn walk_from<I>(
    count: u64,
    head: &str,
    entries: I,
    mut at: impl FnMut(u64, &str) -> Result<(), Broken>,
) -> Result<Verified, Broken>
where
    I: IntoIterator<Item = Result<Entry, Broken>>,
{
    let mut prev = head.to_string();
    let mut expected_seq = count + 1;
    let mut redacted = 0u64;
    for e in entries {
        let e = e?;
        let (seq, prev_hash, hash) = match &e {
            Entry::Full(r) => (r.seq, &r.prev_hash, &r.hash),
            Entry::Redacted(r) => (r.seq, &r.prev_hash, &r.hash),
        };
        if seq != expected_seq {
            return Err(Broken {
                seq,
                reason: format!(
                    "expected seq {expected_seq} (a record was removed, added or moved)"
                ),
            });
        }
        if *prev_hash != prev {
            return Err(Broken {
                seq,
                reason: "prev_hash does not match the previous record's hash".into(),
            });
        }
        match &e {
            Entry::Full(r) if r.compute_hash() != r.hash => {
                return Err(Broken {
                    seq,
                    reason: "hash does not match the record's content (it was edited)".into(),
                })
            }
            Entry::Full(_) => {}
            Entry::Redacted(_) => redacted += 1,
        }
        at(seq, hash)?;
        prev = hash.clone();
        expected_seq += 1;
    }
    Ok(Verified {
        count: expected_seq - 1,
        head: prev,
        redacted,
        checkpoints: 0,
    })
}

/// Parses an export (JSON lines, whole or redacted records) for [`verify_entries`]; a line
/// that does not parse breaks the chain at the seq it should have had.
pub fn parse_export(text: &str) -> impl Iterator<Item = Result<Entry, Broken>> + '_ {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            Entry::parse(line).map_err(|e| Broken {
                seq: i as u64 + 1,
                reason: format!("line {} is not an audit record: {e}", i + 1),
            })
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn chain(n: u64) -> Vec<Record> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let mut r = Record {
                    seq,
                    ts: "2026-11-30T00:00:00Z".into(),
                    actor: Actor::system(),
                    run_id: None,
                    event: "config_loaded".into(),
                    detail: serde_json::json!({"n": seq}),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                r.hash = r.compute_hash();
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    #[test]
    fn chain_verifies_and_breaks() {
        let c = chain(5);
        assert_eq!(verify(c.clone().into_iter().map(Ok)).unwrap().count, 5);
        let mut edited = c.clone();
        edited[2].detail = serde_json::json!({"n": 99});
        assert_eq!(verify(edited.into_iter().map(Ok)).unwrap_err().seq, 3);
        let mut removed = c.clone();
        removed.remove(1);
        assert_eq!(verify(removed.into_iter().map(Ok)).unwrap_err().seq, 3);
        let mut swapped = c;
        swapped.swap(1, 2);
        assert_eq!(verify(swapped.into_iter().map(Ok)).unwrap_err().seq, 3);
    }

    #[test]
    fn a_redacted_export_verifies_by_linkage() {
        let c = chain(6);
        let export: String = c
            .iter()
            .map(|r| {
                let line = if r.seq % 2 == 0 {
                    serde_json::to_string(&Entry::Redacted(r.redacted()))
                } else {
                    serde_json::to_string(&Entry::Full(r.clone()))
                };
                line.unwrap() + "\n"
            })
            .collect();
        assert!(export.contains(r#""redacted":true"#), "{export}");
        let v = verify_entries(parse_export(&export)).unwrap();
        assert_eq!((v.count, v.redacted), (6, 3));
        assert_eq!(v.head, c[5].hash);
        // A redacted line whose hash was changed: the next record's prev_hash gives it away.
        let forged = export.replacen(&c[1].hash, &"f".repeat(64), 1);
        assert_eq!(verify_entries(parse_export(&forged)).unwrap_err().seq, 3);
        // A whole record among them still has its hash recomputed.
        let edited = export.replacen(r#""n":3"#, r#""n":4"#, 1);
        assert_eq!(verify_entries(parse_export(&edited)).unwrap_err().seq, 3);
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let a = serde_json::json!({"b": 1, "a": {"d": 2, "c": [1, {"z": 0, "y": 1}]}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":[1,{"y":1,"z":0}],"d":2},"b":1}"#
        );
    }

    #[test]
    fn redactor_hides_longest_first() {
        let mut r = Redactor::default();
        r.add("abc");
        r.add("abcdef");
        assert_eq!(r.redact("x abcdef y abc"), "x [redacted] y [redacted]");
        r.add("it's $ecret");
        let quoted = shlex::try_quote("it's $ecret").unwrap().into_owned();
        assert_eq!(r.redact(&format!("echo {quoted}")), "echo [redacted]");
    }
}
