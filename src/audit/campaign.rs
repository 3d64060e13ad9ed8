//! The tamper campaign (SPEC §8): a thousand random tamperings of a thousand-record log,
//! each checked by the verifier `tandem audit verify` uses against a checkpoint signed after
//! the tampered point. Every one must be caught. (`tests/audit_anchor.rs` runs a sample of
//! the same kinds through the binary.)

use serde_json::json;

use super::anchor::{verify_anchored, AuditKey, Checkpoint};
use super::{parse_export, Actor, Entry, Record, GENESIS};

/// A small deterministic generator (splitmix64), so the campaign is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    fn coin(&mut self) -> bool {
        self.next() % 2 == 0
    }
}

/// Sets `seq`, `prev_hash` and `hash` of `log[from..]` as an honest writer would: what
/// someone who can rewrite the database does to hide a change.
fn rechain(log: &mut [Record], from: usize) {
    for i in from..log.len() {
        log[i].seq = i as u64 + 1;
        log[i].prev_hash = if i == 0 {
            GENESIS.to_string()
        } else {
            log[i - 1].hash.clone()
        };
        log[i].hash = log[i].compute_hash();
    }
}

/// A log of `n` varied records, as the daemon writes them.
fn honest_log(n: usize) -> Vec<Record> {
    let events = [
        "run_requested",
        "action_intent",
        "action_result",
        "run_finished",
    ];
    let mut log: Vec<Record> = (0..n)
        .map(|i| Record {
            seq: 0,
            ts: format!(
                "2026-12-02T{:02}:{:02}:{:02}Z",
                i / 3600,
                i / 60 % 60,
                i % 60
            ),
            actor: if i % 3 == 0 {
                Actor::system()
            } else {
                Actor::user("alice", "internal")
            },
            run_id: (i % 5 != 0).then(|| format!("run{}", i / 4)),
            event: events[i % events.len()].to_string(),
            detail: json!({"n": i, "cmd": format!("echo {i}")}),
            prev_hash: String::new(),
            hash: String::new(),
        })
        .collect();
    rechain(&mut log, 0);
    log
}

/// One tampering: what was done, the log after it, and the first seq it touched.
struct Tampering {
    what: String,
    log: Vec<Record>,
    first: usize,
}

/// Applies one random tampering to `log` (0-based positions; `first` is a 1-based seq).
fn tamper(rng: &mut Rng, log: &[Record]) -> Tampering {
    let mut t = log.to_vec();
    let n = t.len();
    let recompute = rng.coin();
    let (what, first) = match rng.range(0, 5) {
        0 => {
            let k = rng.range(0, n - 1);
            let field = match rng.range(0, 4) {
                0 => {
                    t[k].event.push('x');
                    "event"
                }
                1 => {
                    t[k].detail["n"] = json!(-1);
                    "detail"
                }
                2 => {
                    t[k].ts = "2020-01-01T00:00:00Z".into();
                    "ts"
                }
                3 => {
                    t[k].actor = Actor::user("mallory", "provider");
                    "actor"
                }
                _ => {
                    t[k].run_id = Some("another-run".into());
                    "run_id"
                }
            };
            if recompute {
                rechain(&mut t, k);
            }
            (format!("edit {field} of record {}", k + 1), k + 1)
        }
        1 => {
            let k = rng.range(0, n - 1);
            t.remove(k);
            if recompute {
                rechain(&mut t, k);
            }
            (format!("delete record {}", k + 1), k + 1)
        }
        2 => {
            let k = rng.range(0, n - 1);
            let mut forged = t[k].clone();
            forged.detail = json!({"forged": true});
            forged.hash = forged.compute_hash();
            t.insert(k, forged);
            if recompute {
                rechain(&mut t, k);
            }
            (format!("insert a record before {}", k + 1), k + 1)
        }
        3 => {
            let a = rng.range(0, n - 2);
            let b = rng.range(a + 1, n - 1);
            t.swap(a, b);
            if recompute {
                rechain(&mut t, a);
            }
            (format!("swap records {} and {}", a + 1, b + 1), a + 1)
        }
        4 => {
            let keep = rng.range(0, n - 1);
            t.truncate(keep);
            (format!("cut the tail after record {keep}"), keep + 1)
        }
        _ => {
            // Edit one record, then recompute the whole chain from any point up to it.
            let k = rng.range(0, n - 1);
            t[k].detail["cmd"] = json!("rm -rf /");
            let from = rng.range(0, k);
            rechain(&mut t, from);
            return Tampering {
                what: format!("edit record {} and recompute from {}", k + 1, from + 1),
                log: t,
                // Records before the edit keep their hashes: the tampering starts at it.
                first: k + 1,
            };
        }
    };
    let what = if recompute && !what.starts_with("cut") {
        format!("{what}, chain recomputed")
    } else {
        what
    };
    Tampering {
        what,
        log: t,
        first,
    }
}

fn export(log: &[Record]) -> String {
    log.iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect()
}

#[test]
fn every_tampering_before_a_checkpoint_is_caught() {
    const RECORDS: usize = 1000;
    const TAMPERINGS: usize = 1000;
    let key = AuditKey::generate().unwrap();
    let log = honest_log(RECORDS);
    let checkpoint_at =
        |seq: usize| key.sign(seq as u64, &log[seq - 1].hash, "2026-12-02T12:00:00Z");

    // The untouched log extends every checkpoint: what follows is not a verifier that says
    // no to everything.
    let all: Vec<Checkpoint> = [1, 500, RECORDS].map(checkpoint_at).into();
    let honest = verify_anchored(parse_export(&export(&log)), &all, &key.public()).unwrap();
    assert_eq!(honest.count, RECORDS as u64);

    let mut rng = Rng(0x7A4D_E5ED);
    let mut caught = 0;
    let mut missed = Vec::new();
    for _ in 0..TAMPERINGS {
        let t = tamper(&mut rng, &log);
        // A checkpoint taken after the tampered point.
        let cp = checkpoint_at(rng.range(t.first, RECORDS));
        let found = verify_anchored(
            t.log.into_iter().map(|r| Ok(Entry::Full(r))),
            std::slice::from_ref(&cp),
            &key.public(),
        )
        .is_err();
        if found {
            caught += 1;
        } else {
            missed.push(format!("{} (checkpoint at {})", t.what, cp.seq));
        }
    }
    println!("tamper campaign: {caught} of {TAMPERINGS} tamperings caught");
    assert!(missed.is_empty(), "missed: {missed:#?}");
    assert_eq!(caught, TAMPERINGS);
}
