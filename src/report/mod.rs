//! The business-review report (`tandem report`, `/reports`): what was done in a period, and
//! how it went, computed from the audit log alone (plus each run's per-host outcome, which the
//! log does not carry), so a reader can recompute every number from an audit export and check
//! that export against the chain head and the signed checkpoint the report names.
//!
//! Pure: [`compute`] takes the records (already cut to what the reader may see, rule 10) and
//! the per-host outcomes it is handed, and does no IO. `run::reads` gathers them from the store
//! for the CLI and the console; [`render`] prints a report as HTML, CSV or JSON.
//!
//! What counts where:
//! - a run belongs to the period when its `run_finished` record does; decisions, expiries,
//!   break-glass starts and freezes when their own record does;
//! - patch compliance: runs of runbooks with `report: patch`; a host was patched when it
//!   emitted `packages_changed` (the count of packages it upgraded);
//! - restore tests: runs of runbooks with `report: restore_test`; a host passed when it
//!   emitted `restore_ms` (with `restore_bytes`), and failed otherwise;
//! - isolations: runs of runbooks with `report: isolation`.

pub mod chart;
pub mod render;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::audit::{Actor, Entry, Event, Record};
use crate::runbook::ReportAs;
use crate::state::{HostStatus, RunStatus};

/// The days a report covers, both included, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    /// Parses `--from` and `--to` (`YYYY-MM-DD`); the end may not precede the start.
    pub fn parse(from: &str, to: &str) -> Result<Period, String> {
        let day = |name: &str, s: &str| {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .map_err(|_| format!("{name} `{s}` is not a date like 2026-12-31"))
        };
        let p = Period {
            from: day("from", from)?,
            to: day("to", to)?,
        };
        if p.to < p.from {
            return Err(format!("to {} is before from {}", p.to, p.from));
        }
        Ok(p)
    }

    /// The first instant of the period.
    pub fn start(&self) -> DateTime<Utc> {
        self.from.and_time(chrono::NaiveTime::MIN).and_utc()
    }

    /// The first instant after the period.
    pub fn end(&self) -> DateTime<Utc> {
        (self.to + chrono::Days::new(1))
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
    }

    fn contains(&self, t: DateTime<Utc>) -> bool {
        t >= self.start() && t < self.end()
    }
}

/// What [`compute`] is handed.
#[derive(Debug, Default)]
pub struct Source {
    /// The log in order, from seq 1: whole records the reader may see, the others redacted
    /// (they still carry the chain's links, so the head is known).
    pub entries: Vec<Entry>,
    /// How the report counts each runbook (from the catalog: `report:`).
    pub kinds: HashMap<String, ReportAs>,
    /// Per-host outcome of the runs that ended in the period, by run id.
    pub hosts: HashMap<String, Vec<(String, HostStatus)>>,
    /// Hosts patch compliance should list even if no patch run touched them (the targets of
    /// the patch runbooks that the reader owns).
    pub patch_hosts: Vec<String>,
    /// The reader's party, whose view this is (rule 10); `None`: the whole log.
    pub viewer: Option<String>,
    /// The party the report is narrowed to: only what concerns it too.
    pub party: Option<String>,
    /// When the report is made (RFC 3339).
    pub generated_at: String,
}

/// The chain a report was computed from.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ChainRef {
    /// Records read (the head's seq).
    pub head_seq: u64,
    pub head_hash: String,
    /// The latest signed checkpoint in the log, if any.
    pub checkpoint: Option<CheckpointRef>,
    /// Whether the records read form an unbroken chain from the genesis (as `tandem audit
    /// verify` checks it: a redacted record by its links).
    pub verified: bool,
    /// Where and how the chain breaks, when it does.
    pub broken: Option<String>,
    /// Whether the log's record `checkpoint.seq` has the checkpoint's `head` hash.
    pub checkpoint_in_log: Option<bool>,
}

/// A `checkpoint_signed` record: the signed statement that record `seq` had hash `head`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckpointRef {
    pub seq: u64,
    pub head: String,
    pub ts: String,
    pub key: String,
    /// The seq of the `checkpoint_signed` record itself.
    pub record_seq: u64,
}

/// One host's patch compliance.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PatchHost {
    pub host: String,
    /// When the last patch run that patched this host ended (up to the period's end).
    pub last_patched: Option<String>,
    /// Whole days from then to the period's end (or to now, for a period not over yet).
    pub days_since: Option<i64>,
    /// Packages changed on the host by patch runs ended in the period.
    pub packages_changed: u64,
    /// Patch runs in the period that included the host, and those that did not patch it.
    pub runs: u64,
    pub failed: u64,
}

/// One host's part of one restore test.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RestoreSample {
    pub ts: String,
    pub run_id: String,
    pub host: String,
    pub passed: bool,
    pub duration_ms: Option<u64>,
    pub bytes: Option<u64>,
}

/// Backup restore tests in the period.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Restores {
    pub tests: u64,
    pub passed: u64,
    pub failed: u64,
    /// Passed / tests, 0 to 1; `None` without tests.
    pub pass_rate: Option<f64>,
    /// Oldest first.
    pub samples: Vec<RestoreSample>,
}

/// An isolation run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Isolation {
    pub run_id: String,
    pub ts: String,
    pub runbook: String,
    pub by: String,
    pub hosts: Vec<String>,
    pub status: String,
}

/// A break-glass start and its review.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BreakGlassUse {
    pub run_id: String,
    pub ts: String,
    pub runbook: String,
    pub by: String,
    pub reason: String,
    pub reviewed_at: Option<String>,
    /// Seconds from the start to the review's acknowledgement.
    pub review_secs: Option<i64>,
}

/// Incidents in the period.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Incidents {
    pub isolations: Vec<Isolation>,
    pub break_glass: Vec<BreakGlassUse>,
    /// Break-glass uses whose review is still open at the period's end.
    pub open_reviews: u64,
    pub review_median_secs: Option<i64>,
    /// Hosts frozen in the period.
    pub freezes: u64,
}

/// One party's approvals: what it was asked and how fast it decided.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ApprovalStats {
    pub party: String,
    /// Requests of this party's approval made in the period.
    pub requested: u64,
    pub granted: u64,
    pub denied: u64,
    /// Requests that expired with this party's decision missing.
    pub expired: u64,
    pub median_secs: Option<i64>,
    pub p90_secs: Option<i64>,
}

/// Runs of one runbook that ended in the period.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RunbookOutcomes {
    pub runbook: String,
    pub runs: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Cancelled, interrupted, denied or expired.
    pub other: u64,
}

/// Failed host outcomes of one host in the period.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HostFailures {
    pub host: String,
    pub failed: u64,
    /// The runbooks that failed there.
    pub runbooks: Vec<String>,
}

/// What one party did in the period.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Activity {
    pub party: String,
    pub runs_requested: u64,
    pub break_glass: u64,
    pub approvals_granted: u64,
    pub approvals_denied: u64,
    pub reviews: u64,
    pub freezes: u64,
}

/// Runs by final status, over the period.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    pub runs_finished: u64,
    pub by_status: BTreeMap<String, u64>,
}

/// A business-review report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub period: Period,
    /// The reader's party (rule 10); `None`: the whole log.
    pub viewer: Option<String>,
    /// The party the report is narrowed to.
    pub party: Option<String>,
    pub generated_at: String,
    pub chain: ChainRef,
    pub totals: Totals,
    pub patch: Vec<PatchHost>,
    pub restores: Restores,
    pub incidents: Incidents,
    pub approvals: Vec<ApprovalStats>,
    pub failures_by_runbook: Vec<RunbookOutcomes>,
    pub failures_by_host: Vec<HostFailures>,
    pub activity: Vec<Activity>,
}

/// What the report remembers of a run from its `run_requested` record.
struct RunInfo {
    runbook: String,
    targets: Vec<String>,
    by: String,
}

/// An approval request: when, and which parties were asked.
struct Asked {
    ts: DateTime<Utc>,
    parties: Vec<String>,
    decided: BTreeSet<String>,
}

fn parse_ts(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Who did it, in words: `alice (internal)`, or the daemon's name.
fn who(actor: &Actor) -> String {
    match actor {
        Actor::User { user, party } => format!("{user} ({party})"),
        Actor::System(s) => s.clone(),
    }
}

/// The events the report counts; every other record only moves the head.
const COUNTED: [Event; 11] = [
    Event::RunRequested,
    Event::Emitted,
    Event::ApprovalRequested,
    Event::ApprovalGranted,
    Event::ApprovalDenied,
    Event::ApprovalExpired,
    Event::BreakGlass,
    Event::ReviewAcknowledged,
    Event::HostFrozen,
    Event::CheckpointSigned,
    Event::RunFinished,
];

/// The value at `p` percent of `sorted` (nearest rank).
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

fn median(values: &mut [i64]) -> Option<i64> {
    values.sort_unstable();
    percentile(values, 50)
}

/// Computes the report for `period` from `source`.
pub fn compute(period: Period, source: &Source) -> Report {
    let end = period.end();
    // The reference instant for "days since": the period's end, or now while it lasts.
    let as_of = parse_ts(&source.generated_at).map_or(end, |now| now.min(end));
    let mut chain = ChainRef {
        head_hash: crate::audit::GENESIS.to_string(),
        ..ChainRef::default()
    };
    let mut runs: HashMap<&str, RunInfo> = HashMap::new();
    let mut emitted: HashMap<(&str, &str, &str), &Value> = HashMap::new();
    let mut asked: HashMap<(&str, i64), Asked> = HashMap::new();
    let mut approvals: BTreeMap<String, (ApprovalStats, Vec<i64>)> = BTreeMap::new();
    let mut activity: BTreeMap<String, Activity> = BTreeMap::new();
    let mut totals = Totals::default();
    let mut by_runbook: BTreeMap<String, RunbookOutcomes> = BTreeMap::new();
    let mut by_host: BTreeMap<String, HostFailures> = BTreeMap::new();
    let mut patch: BTreeMap<String, PatchHost> = BTreeMap::new();
    let mut restores = Restores::default();
    let mut incidents = Incidents::default();
    let mut reviewed: HashMap<&str, &str> = HashMap::new();
    let new_patch_host = |host: &str| PatchHost {
        host: host.to_string(),
        last_patched: None,
        days_since: None,
        packages_changed: 0,
        runs: 0,
        failed: 0,
    };
    for h in &source.patch_hosts {
        patch.insert(h.clone(), new_patch_host(h));
    }
    let int = |v: Option<&&Value>| v.and_then(|v| v.as_u64());

    // The last record read: the head the report was computed from.
    let mut head: Option<(u64, &str)> = None;
    for entry in &source.entries {
        let r: &Record = match entry {
            Entry::Full(r) => r,
            Entry::Redacted(r) => {
                head = Some((r.seq, &r.hash));
                continue;
            }
        };
        head = Some((r.seq, &r.hash));
        // Most of a log is actions and their results: skipped before any parsing.
        let Ok(event) = r.event.parse::<Event>() else {
            continue;
        };
        if !COUNTED.contains(&event) {
            continue;
        }
        let Some(ts) = parse_ts(&r.ts) else { continue };
        if ts >= end {
            // Later than the period: only the chain's head moves on.
            continue;
        }
        let in_period = period.contains(ts);
        let run_id = r.run_id.as_deref();
        let d = &r.detail;
        let text = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default();
        let by_party = match &r.actor {
            Actor::User { party, .. } => Some(party.as_str()),
            Actor::System(_) => None,
        };
        let by = || who(&r.actor);
        let mut party_activity = |f: &dyn Fn(&mut Activity)| {
            if let Some(p) = by_party {
                let a = activity.entry(p.to_string()).or_insert_with(|| Activity {
                    party: p.to_string(),
                    ..Activity::default()
                });
                f(a);
            }
        };
        match event {
            Event::RunRequested => {
                let Some(id) = run_id else { continue };
                let targets = d
                    .get("targets")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                runs.insert(
                    id,
                    RunInfo {
                        runbook: text("runbook").to_string(),
                        targets,
                        by: by(),
                    },
                );
                if in_period {
                    party_activity(&|a| a.runs_requested += 1);
                }
            }
            Event::Emitted => {
                if let Some(id) = run_id {
                    if let Some(v) = d.get("value") {
                        emitted.insert((id, text_of(d, "host"), text_of(d, "key")), v);
                    }
                }
            }
            Event::ApprovalRequested => {
                let Some(id) = run_id else { continue };
                let gate = d.get("gate").and_then(Value::as_i64).unwrap_or(0);
                let parties: Vec<String> = d
                    .get("from")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.get("party").and_then(Value::as_str))
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                if in_period {
                    for p in &parties {
                        stats(&mut approvals, p).0.requested += 1;
                    }
                }
                asked.insert(
                    (id, gate),
                    Asked {
                        ts,
                        parties,
                        decided: BTreeSet::new(),
                    },
                );
            }
            Event::ApprovalGranted | Event::ApprovalDenied => {
                let Some(id) = run_id else { continue };
                let gate = d.get("gate").and_then(Value::as_i64).unwrap_or(0);
                let party = text("party").to_string();
                let granted = event == Event::ApprovalGranted;
                // Only a party's first decision on a request counts towards its time.
                let first = asked.get_mut(&(id, gate)).and_then(|a| {
                    a.decided
                        .insert(party.clone())
                        .then(|| (ts - a.ts).num_seconds())
                });
                if !in_period {
                    continue;
                }
                let s = stats(&mut approvals, &party);
                if granted {
                    s.0.granted += 1;
                } else {
                    s.0.denied += 1;
                }
                if let Some(secs) = first {
                    s.1.push(secs);
                }
                party_activity(&|a| {
                    if granted {
                        a.approvals_granted += 1
                    } else {
                        a.approvals_denied += 1
                    }
                });
            }
            Event::ApprovalExpired => {
                let Some(id) = run_id else { continue };
                let gate = d.get("gate").and_then(Value::as_i64).unwrap_or(0);
                if !in_period {
                    continue;
                }
                if let Some(a) = asked.get(&(id, gate)) {
                    for p in a.parties.iter().filter(|p| !a.decided.contains(*p)) {
                        stats(&mut approvals, p).0.expired += 1;
                    }
                }
            }
            Event::BreakGlass if in_period => {
                let Some(id) = run_id else { continue };
                incidents.break_glass.push(BreakGlassUse {
                    run_id: id.to_string(),
                    ts: r.ts.clone(),
                    runbook: runs.get(id).map(|i| i.runbook.clone()).unwrap_or_default(),
                    by: by(),
                    reason: text("reason").to_string(),
                    reviewed_at: None,
                    review_secs: None,
                });
                party_activity(&|a| a.break_glass += 1);
            }
            Event::ReviewAcknowledged => {
                if let Some(id) = run_id {
                    reviewed.entry(id).or_insert(r.ts.as_str());
                }
                if in_period {
                    party_activity(&|a| a.reviews += 1);
                }
            }
            Event::HostFrozen if in_period => {
                incidents.freezes += 1;
                party_activity(&|a| a.freezes += 1);
            }
            Event::CheckpointSigned => {
                chain.checkpoint = Some(CheckpointRef {
                    seq: d.get("seq").and_then(Value::as_u64).unwrap_or(0),
                    head: text("head").to_string(),
                    ts: text("ts").to_string(),
                    key: text("key").to_string(),
                    record_seq: r.seq,
                });
            }
            Event::RunFinished if in_period => {
                let Some(id) = run_id else { continue };
                let Some(info) = runs.get(id) else { continue };
                let status: Option<RunStatus> = text("status").parse().ok();
                totals.runs_finished += 1;
                *totals
                    .by_status
                    .entry(text("status").to_string())
                    .or_default() += 1;
                let o = by_runbook
                    .entry(info.runbook.clone())
                    .or_insert_with(|| RunbookOutcomes {
                        runbook: info.runbook.clone(),
                        ..RunbookOutcomes::default()
                    });
                o.runs += 1;
                match status {
                    Some(RunStatus::Succeeded) => o.succeeded += 1,
                    Some(RunStatus::Failed) => o.failed += 1,
                    _ => o.other += 1,
                }
                let outcomes = source.hosts.get(id);
                for (host, st) in outcomes.into_iter().flatten() {
                    if *st == HostStatus::Failed {
                        let f = by_host.entry(host.clone()).or_insert_with(|| HostFailures {
                            host: host.clone(),
                            ..HostFailures::default()
                        });
                        f.failed += 1;
                        if !f.runbooks.contains(&info.runbook) {
                            f.runbooks.push(info.runbook.clone());
                        }
                    }
                }
                // A run that never started (denied, expired, cancelled in the queue) tested
                // and patched nothing.
                let started =
                    !matches!(status, Some(RunStatus::Denied | RunStatus::Expired) | None)
                        && outcomes.is_some_and(|o| {
                            o.iter().any(|(_, s)| {
                                !matches!(s, HostStatus::Pending | HostStatus::NotStarted)
                            })
                        });
                match source.kinds.get(&info.runbook) {
                    Some(ReportAs::Patch) if started => {
                        for host in &info.targets {
                            let p = patch
                                .entry(host.clone())
                                .or_insert_with(|| new_patch_host(host));
                            p.runs += 1;
                            match int(emitted.get(&(id, host.as_str(), "packages_changed"))) {
                                Some(n) => {
                                    p.packages_changed += n;
                                    p.last_patched = Some(r.ts.clone());
                                }
                                None => p.failed += 1,
                            }
                        }
                    }
                    Some(ReportAs::RestoreTest) if started => {
                        for host in &info.targets {
                            let ms = int(emitted.get(&(id, host.as_str(), "restore_ms")));
                            let bytes = int(emitted.get(&(id, host.as_str(), "restore_bytes")));
                            restores.tests += 1;
                            if ms.is_some() {
                                restores.passed += 1;
                            } else {
                                restores.failed += 1;
                            }
                            restores.samples.push(RestoreSample {
                                ts: r.ts.clone(),
                                run_id: id.to_string(),
                                host: host.clone(),
                                passed: ms.is_some(),
                                duration_ms: ms,
                                bytes,
                            });
                        }
                    }
                    Some(ReportAs::Isolation) => incidents.isolations.push(Isolation {
                        run_id: id.to_string(),
                        ts: r.ts.clone(),
                        runbook: info.runbook.clone(),
                        by: info.by.clone(),
                        hosts: info.targets.clone(),
                        status: text("status").to_string(),
                    }),
                    _ => {}
                }
            }
            // A patch run ended before the period still dates a host's last patch.
            Event::RunFinished => {
                let Some(id) = run_id else { continue };
                let Some(info) = runs.get(id) else { continue };
                if source.kinds.get(&info.runbook) != Some(&ReportAs::Patch) {
                    continue;
                }
                for host in &info.targets {
                    if emitted.contains_key(&(id, host.as_str(), "packages_changed")) {
                        patch
                            .entry(host.clone())
                            .or_insert_with(|| new_patch_host(host))
                            .last_patched = Some(r.ts.clone());
                    }
                }
            }
            _ => {}
        }
    }

    if let Some((seq, hash)) = head {
        chain.head_seq = seq;
        chain.head_hash = hash.to_string();
    }
    check_chain(&source.entries, &mut chain);
    for p in patch.values_mut() {
        p.days_since = p
            .last_patched
            .as_deref()
            .and_then(parse_ts)
            .map(|t| (as_of - t).num_days());
    }
    restores.pass_rate =
        (restores.tests > 0).then(|| restores.passed as f64 / restores.tests as f64);
    let mut review_times = Vec::new();
    for b in &mut incidents.break_glass {
        if let Some(at) = reviewed.get(b.run_id.as_str()) {
            b.reviewed_at = Some(at.to_string());
            b.review_secs = parse_ts(at)
                .zip(parse_ts(&b.ts))
                .map(|(a, s)| (a - s).num_seconds());
            review_times.extend(b.review_secs);
        } else {
            incidents.open_reviews += 1;
        }
    }
    incidents.review_median_secs = median(&mut review_times);
    let approvals = approvals
        .into_values()
        .map(|(mut s, mut times)| {
            times.sort_unstable();
            s.median_secs = percentile(&times, 50);
            s.p90_secs = percentile(&times, 90);
            s
        })
        .collect();
    let mut failures_by_host: Vec<HostFailures> = by_host.into_values().collect();
    failures_by_host.sort_by(|a, b| b.failed.cmp(&a.failed).then(a.host.cmp(&b.host)));
    Report {
        period,
        viewer: source.viewer.clone(),
        party: source.party.clone(),
        generated_at: source.generated_at.clone(),
        chain,
        totals,
        patch: patch.into_values().collect(),
        restores,
        incidents,
        approvals,
        failures_by_runbook: by_runbook.into_values().collect(),
        failures_by_host,
        activity: activity.into_values().collect(),
    }
}

/// Verifies the chain the report was computed from, and that it extends its latest
/// checkpoint: the report's figures are only as good as the records under them.
fn check_chain(entries: &[Entry], chain: &mut ChainRef) {
    match crate::audit::verify_entries(entries.iter().cloned().map(Ok)) {
        Ok(_) => chain.verified = true,
        Err(b) => {
            chain.verified = false;
            chain.broken = Some(format!("record {}: {}", b.seq, b.reason));
        }
    }
    chain.checkpoint_in_log = chain.checkpoint.as_ref().map(|c| {
        let at = usize::try_from(c.seq).ok().and_then(|s| s.checked_sub(1));
        at.and_then(|i| entries.get(i)).is_some_and(|e| {
            let hash = match e {
                Entry::Full(r) => &r.hash,
                Entry::Redacted(r) => &r.hash,
            };
            e.seq() == c.seq && *hash == c.head
        })
    });
}

fn text_of<'a>(d: &'a Value, k: &str) -> &'a str {
    d.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn stats<'m>(
    m: &'m mut BTreeMap<String, (ApprovalStats, Vec<i64>)>,
    party: &str,
) -> &'m mut (ApprovalStats, Vec<i64>) {
    m.entry(party.to_string()).or_insert_with(|| {
        (
            ApprovalStats {
                party: party.to_string(),
                ..ApprovalStats::default()
            },
            Vec::new(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A log under construction: records chained in order.
    struct Log(Vec<Entry>);

    impl Log {
        fn add(&mut self, ts: &str, actor: Actor, run: Option<&str>, event: Event, detail: Value) {
            let prev = self
                .0
                .last()
                .map_or(crate::audit::GENESIS.to_string(), |e| match e {
                    Entry::Full(r) => r.hash.clone(),
                    Entry::Redacted(r) => r.hash.clone(),
                });
            let mut r = Record {
                seq: self.0.len() as u64 + 1,
                ts: ts.into(),
                actor,
                run_id: run.map(str::to_string),
                event: event.as_str().into(),
                detail,
                prev_hash: prev,
                hash: String::new(),
            };
            r.hash = r.compute_hash();
            self.0.push(Entry::Full(r));
        }
    }

    fn alice() -> Actor {
        Actor::user("alice", "internal")
    }
    fn paula() -> Actor {
        Actor::user("paula", "provider")
    }
    fn ivan() -> Actor {
        Actor::user("ivan", "internal")
    }

    fn requested(log: &mut Log, ts: &str, by: Actor, id: &str, runbook: &str, targets: &[&str]) {
        log.add(
            ts,
            by,
            Some(id),
            Event::RunRequested,
            json!({"runbook": runbook, "targets": targets}),
        );
    }

    fn finished(log: &mut Log, ts: &str, id: &str, status: &str) {
        log.add(
            ts,
            Actor::system(),
            Some(id),
            Event::RunFinished,
            json!({"status": status}),
        );
    }

    #[test]
    fn figures_come_from_the_records_in_the_period() {
        let mut log = Log(Vec::new());
        let sys = Actor::system;
        // Before the period: web1 patched (dates its last patch, counts nothing else).
        requested(
            &mut log,
            "2026-11-20T10:00:00.000Z",
            alice(),
            "p0",
            "patch",
            &["web1"],
        );
        log.add(
            "2026-11-20T10:01:00.000Z",
            sys(),
            Some("p0"),
            Event::Emitted,
            json!({"host": "web1", "key": "packages_changed", "value": 7}),
        );
        finished(&mut log, "2026-11-20T10:02:00.000Z", "p0", "succeeded");
        // In the period: web2 patched, web1 not (failed).
        requested(
            &mut log,
            "2026-12-01T02:00:00.000Z",
            alice(),
            "p1",
            "patch",
            &["web1", "web2"],
        );
        log.add(
            "2026-12-01T02:10:00.000Z",
            sys(),
            Some("p1"),
            Event::Emitted,
            json!({"host": "web2", "key": "packages_changed", "value": 4}),
        );
        finished(&mut log, "2026-12-01T02:20:00.000Z", "p1", "failed");
        // Two restore tests: one passes with its measures, one fails.
        requested(
            &mut log,
            "2026-12-01T05:00:00.000Z",
            alice(),
            "b1",
            "restore",
            &["nas1"],
        );
        log.add(
            "2026-12-01T05:01:00.000Z",
            sys(),
            Some("b1"),
            Event::Emitted,
            json!({"host": "nas1", "key": "restore_ms", "value": 2500}),
        );
        log.add(
            "2026-12-01T05:01:00.000Z",
            sys(),
            Some("b1"),
            Event::Emitted,
            json!({"host": "nas1", "key": "restore_bytes", "value": 4096}),
        );
        finished(&mut log, "2026-12-01T05:02:00.000Z", "b1", "succeeded");
        requested(
            &mut log,
            "2026-12-02T05:00:00.000Z",
            alice(),
            "b2",
            "restore",
            &["nas1"],
        );
        finished(&mut log, "2026-12-02T05:02:00.000Z", "b2", "failed");
        // Approvals asked of internal: decided after 60 s and 600 s, one expired.
        for (id, asked, decided, granted) in [
            (
                "a1",
                "2026-12-01T08:00:00.000Z",
                "2026-12-01T08:01:00.000Z",
                true,
            ),
            (
                "a2",
                "2026-12-01T09:00:00.000Z",
                "2026-12-01T09:10:00.000Z",
                false,
            ),
        ] {
            requested(&mut log, asked, paula(), id, "gated", &["web1"]);
            log.add(
                asked,
                paula(),
                Some(id),
                Event::ApprovalRequested,
                json!({"gate": 0, "from": [{"party": "internal", "quorum": 1}]}),
            );
            let ev = if granted {
                Event::ApprovalGranted
            } else {
                Event::ApprovalDenied
            };
            log.add(
                decided,
                ivan(),
                Some(id),
                ev,
                json!({"gate": 0, "party": "internal"}),
            );
        }
        requested(
            &mut log,
            "2026-12-01T10:00:00.000Z",
            paula(),
            "a3",
            "gated",
            &["web1"],
        );
        log.add(
            "2026-12-01T10:00:00.000Z",
            paula(),
            Some("a3"),
            Event::ApprovalRequested,
            json!({"gate": 0, "from": [{"party": "internal", "quorum": 1}]}),
        );
        log.add(
            "2026-12-01T11:00:00.000Z",
            sys(),
            Some("a3"),
            Event::ApprovalExpired,
            json!({"gate": 0}),
        );
        // A break-glass isolation, reviewed two hours later.
        requested(
            &mut log,
            "2026-12-01T12:00:00.000Z",
            paula(),
            "i1",
            "isolate",
            &["web1"],
        );
        log.add(
            "2026-12-01T12:00:00.000Z",
            paula(),
            Some("i1"),
            Event::BreakGlass,
            json!({"reason": "ransomware"}),
        );
        finished(&mut log, "2026-12-01T12:05:00.000Z", "i1", "succeeded");
        log.add(
            "2026-12-01T14:00:00.000Z",
            ivan(),
            Some("i1"),
            Event::ReviewAcknowledged,
            json!({"comment": "ok"}),
        );
        log.add(
            "2026-12-01T15:00:00.000Z",
            sys(),
            None,
            Event::CheckpointSigned,
            json!({"seq": 30, "head": "ab", "ts": "t", "key": "k"}),
        );
        // After the period: moves the head only.
        requested(
            &mut log,
            "2026-12-05T00:00:00.000Z",
            alice(),
            "late",
            "patch",
            &["web1"],
        );
        let head = match log.0.last() {
            Some(Entry::Full(r)) => r.hash.clone(),
            _ => unreachable!(),
        };

        let source = Source {
            entries: log.0,
            kinds: HashMap::from([
                ("patch".to_string(), ReportAs::Patch),
                ("restore".to_string(), ReportAs::RestoreTest),
                ("isolate".to_string(), ReportAs::Isolation),
            ]),
            hosts: HashMap::from([
                (
                    "p1".to_string(),
                    vec![
                        ("web1".to_string(), HostStatus::Failed),
                        ("web2".to_string(), HostStatus::Succeeded),
                    ],
                ),
                (
                    "b1".to_string(),
                    vec![("nas1".to_string(), HostStatus::Succeeded)],
                ),
                (
                    "b2".to_string(),
                    vec![("nas1".to_string(), HostStatus::Failed)],
                ),
                (
                    "i1".to_string(),
                    vec![("web1".to_string(), HostStatus::Succeeded)],
                ),
            ]),
            patch_hosts: vec!["web3".into()],
            viewer: None,
            party: None,
            generated_at: "2026-12-10T00:00:00.000Z".into(),
        };
        let period = Period::parse("2026-12-01", "2026-12-02").unwrap();
        let r = compute(period, &source);

        assert_eq!(
            (r.chain.head_seq, r.chain.head_hash.as_str()),
            (27, head.as_str())
        );
        assert_eq!(
            r.chain.checkpoint.as_ref().map(|c| (c.seq, c.record_seq)),
            Some((30, 26))
        );
        let patch: Vec<_> = r
            .patch
            .iter()
            .map(|p| {
                (
                    p.host.as_str(),
                    p.last_patched.as_deref().map(|t| &t[..10]),
                    p.days_since,
                    p.packages_changed,
                    p.runs,
                    p.failed,
                )
            })
            .collect();
        assert_eq!(
            patch,
            [
                ("web1", Some("2026-11-20"), Some(12), 0, 1, 1),
                ("web2", Some("2026-12-01"), Some(1), 4, 1, 0),
                ("web3", None, None, 0, 0, 0),
            ]
        );
        assert_eq!(
            (r.restores.tests, r.restores.passed, r.restores.failed),
            (2, 1, 1)
        );
        assert_eq!(r.restores.pass_rate, Some(0.5));
        assert_eq!(r.restores.samples[0].duration_ms, Some(2500));
        assert_eq!(r.restores.samples[0].bytes, Some(4096));
        assert!(!r.restores.samples[1].passed);
        let internal = &r.approvals[0];
        assert_eq!(
            (
                internal.party.as_str(),
                internal.requested,
                internal.granted,
                internal.denied,
                internal.expired
            ),
            ("internal", 3, 1, 1, 1)
        );
        assert_eq!(
            (internal.median_secs, internal.p90_secs),
            (Some(60), Some(600))
        );
        assert_eq!(r.incidents.isolations.len(), 1);
        assert_eq!(r.incidents.break_glass[0].review_secs, Some(7200));
        assert_eq!(
            (r.incidents.open_reviews, r.incidents.review_median_secs),
            (0, Some(7200))
        );
        let runbooks: Vec<_> = r
            .failures_by_runbook
            .iter()
            .map(|o| (o.runbook.as_str(), o.runs, o.failed))
            .collect();
        assert_eq!(
            runbooks,
            [("isolate", 1, 0), ("patch", 1, 1), ("restore", 2, 1)]
        );
        let hosts: Vec<_> = r
            .failures_by_host
            .iter()
            .map(|h| (h.host.as_str(), h.failed))
            .collect();
        assert_eq!(hosts, [("nas1", 1), ("web1", 1)]);
        let activity: Vec<_> = r
            .activity
            .iter()
            .map(|a| {
                (
                    a.party.as_str(),
                    a.runs_requested,
                    a.approvals_granted,
                    a.approvals_denied,
                    a.reviews,
                    a.break_glass,
                )
            })
            .collect();
        assert_eq!(
            activity,
            [("internal", 3, 1, 1, 1, 0), ("provider", 4, 0, 0, 0, 1)]
        );
        assert_eq!(r.totals.runs_finished, 4);
    }

    #[test]
    fn redacted_records_move_the_head_and_count_for_nothing() {
        let mut log = Log(Vec::new());
        requested(
            &mut log,
            "2026-12-01T00:00:00.000Z",
            paula(),
            "x",
            "patch",
            &["mon1"],
        );
        finished(&mut log, "2026-12-01T00:01:00.000Z", "x", "failed");
        let entries: Vec<Entry> = log
            .0
            .into_iter()
            .map(|e| match e {
                Entry::Full(r) => Entry::Redacted(r.redacted()),
                other => other,
            })
            .collect();
        let head = entries[1].seq();
        let source = Source {
            entries,
            ..Source::default()
        };
        let r = compute(Period::parse("2026-12-01", "2026-12-01").unwrap(), &source);
        assert_eq!(r.chain.head_seq, head);
        assert_eq!(r.totals.runs_finished, 0);
        assert!(r.failures_by_runbook.is_empty() && r.activity.is_empty());
    }

    #[test]
    fn user_text_is_escaped_in_the_html_and_the_empty_log_names_genesis() {
        let mut log = Log(Vec::new());
        requested(
            &mut log,
            "2026-12-01T00:00:00.000Z",
            paula(),
            "x",
            "<b>rb</b>",
            &["web1"],
        );
        log.add(
            "2026-12-01T00:00:00.000Z",
            paula(),
            Some("x"),
            Event::BreakGlass,
            json!({"reason": "<script>alert(1)</script>"}),
        );
        let source = Source {
            entries: log.0,
            ..Source::default()
        };
        let period = Period::parse("2026-12-01", "2026-12-01").unwrap();
        let html = render::html_document(&compute(period, &source));
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("&lt;b&gt;rb&lt;/b&gt;"), "{html}");
        assert!(
            !html.contains("<script") && !html.contains("<b>rb"),
            "{html}"
        );
        let empty = compute(period, &Source::default());
        assert_eq!(
            (empty.chain.head_seq, empty.chain.head_hash.as_str()),
            (0, crate::audit::GENESIS)
        );
    }

    #[test]
    fn the_report_verifies_its_chain_and_checkpoint_and_names_a_break() {
        let mut log = Log(Vec::new());
        requested(
            &mut log,
            "2026-12-01T00:00:00.000Z",
            alice(),
            "x",
            "patch",
            &["web1"],
        );
        finished(&mut log, "2026-12-01T00:01:00.000Z", "x", "succeeded");
        let head2 = match &log.0[1] {
            Entry::Full(r) => r.hash.clone(),
            _ => unreachable!(),
        };
        log.add(
            "2026-12-01T00:02:00.000Z",
            Actor::system(),
            None,
            Event::CheckpointSigned,
            json!({"seq": 2, "head": head2, "ts": "t", "key": "k"}),
        );
        let period = Period::parse("2026-12-01", "2026-12-01").unwrap();
        let good = Source {
            entries: log.0.clone(),
            ..Source::default()
        };
        let r = compute(period, &good);
        assert!(
            r.chain.verified && r.chain.broken.is_none(),
            "{:?}",
            r.chain
        );
        assert_eq!(r.chain.checkpoint_in_log, Some(true));
        // An edited record: the report says where the chain breaks.
        let mut edited = log.0.clone();
        if let Entry::Full(rec) = &mut edited[1] {
            rec.detail = json!({"status": "failed"});
        }
        let r = compute(
            period,
            &Source {
                entries: edited,
                ..Source::default()
            },
        );
        assert!(!r.chain.verified);
        assert!(
            r.chain
                .broken
                .as_deref()
                .unwrap_or_default()
                .starts_with("record 2:"),
            "{:?}",
            r.chain
        );
        // A checkpoint over a head the log does not have.
        let mut other = log.0;
        other.truncate(2);
        let mut forged = Log(other);
        forged.add(
            "2026-12-01T00:02:00.000Z",
            Actor::system(),
            None,
            Event::CheckpointSigned,
            json!({"seq": 2, "head": "f00", "ts": "t", "key": "k"}),
        );
        let r = compute(
            period,
            &Source {
                entries: forged.0,
                ..Source::default()
            },
        );
        assert!(r.chain.verified);
        assert_eq!(r.chain.checkpoint_in_log, Some(false));
    }

    #[test]
    fn a_period_is_whole_days_and_ends_after_it_starts() {
        let p = Period::parse("2026-12-01", "2026-12-01").unwrap();
        assert_eq!(p.end() - p.start(), chrono::Duration::days(1));
        assert!(Period::parse("2026-12-02", "2026-12-01")
            .unwrap_err()
            .contains("before"));
        assert!(Period::parse("12/01/2026", "2026-12-01")
            .unwrap_err()
            .contains("not a date"));
        assert_eq!(percentile(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90), Some(9));
        assert_eq!(percentile(&[5], 50), Some(5));
        assert_eq!(percentile(&[], 50), None);
    }
}
