//! Prompts and outcome notices sent to `notify` targets: a generic JSON webhook, a Slack
//! incoming webhook (Block Kit), a Microsoft Teams Workflows webhook (Adaptive Card) or a
//! legacy Teams connector (MessageCard), or email over SMTP. Each delivery runs on its own
//! task with retries and backoff; the outcome is audited. A failed delivery never blocks or
//! loses a run, and never records a password or a webhook URL.
//!
//! Prompts ask a party for something (an approval, a review). Outcome notices tell what
//! happened; they are derived from committed audit records ([`Notifier::observed`]), so
//! every way a run ends — finished, cancelled, denied, expired, recovered after a crash —
//! is told the same way, after it is durable.

pub mod email;
pub mod format;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::audit::{Actor, Event, Record};
use crate::config::{Config, NotifyKind, NotifyTarget};
use crate::state::{HostStatus, RunStatus};
use crate::store::{HostResult, RunRow, Store};

/// Attempts per delivery, and the first wait between attempts (doubled each time).
pub const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// What a notice is about: the names targets subscribe to in `events:`. The one list of
/// notice names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeEvent {
    /// Prompt: a party's approval is needed before a run (or a gate in it) goes on.
    ApprovalRequested,
    /// Prompt: a break-glass run ran without approval; its owners review it.
    ReviewRequested,
    RunSucceeded,
    RunFailed,
    RunCancelled,
    RunInterrupted,
    RunDenied,
    RunExpired,
    /// A scheduled slot was not run (blackout, unapproved, no plan, …).
    SlotSkipped,
    /// A scheduled slot passed while the daemon was down and was not caught up.
    SlotMissed,
    /// Output of a run past a limit was dropped.
    OutputTruncated,
    /// A host was frozen or unfrozen by its owner.
    Frozen,
}

impl NoticeEvent {
    /// The name used in config, webhooks and audit records.
    pub fn name(self) -> &'static str {
        match self {
            NoticeEvent::ApprovalRequested => "approval_requested",
            NoticeEvent::ReviewRequested => "review_requested",
            NoticeEvent::RunSucceeded => "run_succeeded",
            NoticeEvent::RunFailed => "run_failed",
            NoticeEvent::RunCancelled => "run_cancelled",
            NoticeEvent::RunInterrupted => "run_interrupted",
            NoticeEvent::RunDenied => "run_denied",
            NoticeEvent::RunExpired => "run_expired",
            NoticeEvent::SlotSkipped => "slot_skipped",
            NoticeEvent::SlotMissed => "slot_missed",
            NoticeEvent::OutputTruncated => "output_truncated",
            NoticeEvent::Frozen => "frozen",
        }
    }

    /// Whether this asks someone to act (a prompt) rather than tells an outcome. A target
    /// without `events:` gets the prompts only.
    pub fn is_prompt(self) -> bool {
        matches!(
            self,
            NoticeEvent::ApprovalRequested | NoticeEvent::ReviewRequested
        )
    }

    /// The notice of a run that ended in `status`.
    pub fn of_run_status(status: RunStatus) -> Option<NoticeEvent> {
        Some(match status {
            RunStatus::Succeeded => NoticeEvent::RunSucceeded,
            RunStatus::Failed => NoticeEvent::RunFailed,
            RunStatus::Cancelled => NoticeEvent::RunCancelled,
            RunStatus::Interrupted => NoticeEvent::RunInterrupted,
            RunStatus::Denied => NoticeEvent::RunDenied,
            RunStatus::Expired => NoticeEvent::RunExpired,
            RunStatus::Queued | RunStatus::AwaitingApproval | RunStatus::Running => return None,
        })
    }
}

impl std::fmt::Display for NoticeEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The audit events outcome notices come from: what [`Notifier::observed`] is given.
pub const WATCHED: &[Event] = &[
    Event::RunFinished,
    Event::SlotSkipped,
    Event::SlotMissed,
    Event::OutputTruncated,
    Event::HostFrozen,
    Event::HostUnfrozen,
];

/// How many hosts a notice lists one by one; past this, counts by status and the hosts
/// that did not succeed, at most this many.
pub const HOSTS_LISTED: usize = 20;
/// The longest host error quoted in a notice, in characters.
const HOST_ERROR_CHARS: usize = 300;

/// One host in a notice.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostLine {
    pub host: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
}

/// A run's hosts, summarised for people: every host when there are few, else counts by
/// status and the hosts that did not succeed (capped).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostSummary {
    pub total: usize,
    pub counts: BTreeMap<String, usize>,
    pub hosts: Vec<HostLine>,
    /// Hosts not listed in `hosts`.
    pub omitted: usize,
}

impl HostSummary {
    pub fn of(results: &[HostResult]) -> HostSummary {
        let mut counts = BTreeMap::new();
        for h in results {
            *counts.entry(h.status.as_str().to_string()).or_insert(0) += 1;
        }
        let line = |h: &HostResult| HostLine {
            host: h.host.clone(),
            status: h.status.as_str().to_string(),
            exit_code: h.exit_code,
            error: h.error.as_deref().map(|e| clip(e, HOST_ERROR_CHARS)),
        };
        let hosts: Vec<HostLine> = if results.len() <= HOSTS_LISTED {
            results.iter().map(line).collect()
        } else {
            results
                .iter()
                .filter(|h| !matches!(h.status, HostStatus::Succeeded | HostStatus::NotStarted))
                .take(HOSTS_LISTED)
                .map(line)
                .collect()
        };
        HostSummary {
            total: results.len(),
            omitted: results.len() - hosts.len(),
            counts,
            hosts,
        }
    }

    /// `3 hosts: 2 succeeded, 1 failed`.
    pub fn counts_line(&self) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        format!(
            "{} host{}: {}",
            self.total,
            if self.total == 1 { "" } else { "s" },
            parts.join(", ")
        )
    }
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// One thing to tell people: a prompt or an outcome.
#[derive(Debug, Clone)]
pub struct Notice {
    pub event: NoticeEvent,
    /// The parties concerned: the one asked (prompts), or the run's initiator and owners.
    pub parties: Vec<String>,
    pub run_id: Option<String>,
    pub runbook: Option<String>,
    /// `user (party)`.
    pub initiator: Option<String>,
    /// The run's status when the notice was made.
    pub status: Option<String>,
    /// One line for humans.
    pub summary: String,
    pub hosts: Option<HostSummary>,
    /// The run's reference (a ticket number).
    pub reference: Option<String>,
    /// Why: a run's error, a slot's skip reason, a freeze's reason.
    pub reason: Option<String>,
}

impl Notice {
    /// A prompt to `party` about run `run_id`.
    pub fn prompt(
        event: NoticeEvent,
        party: &str,
        run_id: &str,
        runbook: &str,
        initiator: &str,
        summary: String,
        reference: Option<String>,
    ) -> Notice {
        Notice {
            event,
            parties: vec![party.to_string()],
            run_id: Some(run_id.to_string()),
            runbook: Some(runbook.to_string()),
            initiator: Some(initiator.to_string()),
            status: None,
            summary,
            hosts: None,
            reference,
            reason: None,
        }
    }

    /// Whether `target` wants this notice: its event (no `events:` means the prompts), one
    /// of its parties, its runbook.
    pub fn wanted_by(&self, target: &NotifyTarget) -> bool {
        let wants_event = if target.events.is_empty() {
            self.event.is_prompt()
        } else {
            target.events.contains(&self.event)
        };
        let wants_party =
            target.parties.is_empty() || self.parties.iter().any(|p| target.parties.contains(p));
        let wants_runbook = target.runbooks.is_empty()
            || self
                .runbook
                .as_ref()
                .is_some_and(|r| target.runbooks.contains(r));
        wants_event && wants_party && wants_runbook
    }
}

/// The parties a run concerns: its initiator's, those asked to approve, the owners of its
/// targets and of what its scope reaches.
pub fn run_parties(run: &RunRow) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let plan = &run.plan;
    let names = std::iter::once(run.initiator.party.as_str())
        .chain(plan.approvals.iter().map(|a| a.party.as_str()))
        .chain(plan.targets.iter().map(|t| t.owner.as_str()))
        .chain(plan.owners.iter().map(String::as_str));
    for p in names {
        if !out.iter().any(|x| x == p) {
            out.push(p.to_string());
        }
    }
    out
}

/// The notice of a finished run.
pub fn run_notice(event: NoticeEvent, run: &RunRow) -> Notice {
    let hosts = HostSummary::of(&run.hosts);
    let summary = if hosts.total == 0 {
        format!("{} {}", run.runbook, run.status)
    } else {
        format!("{} {} ({})", run.runbook, run.status, hosts.counts_line())
    };
    Notice {
        event,
        parties: run_parties(run),
        run_id: Some(run.id.clone()),
        runbook: Some(run.runbook.clone()),
        initiator: Some(format!("{} ({})", run.initiator.user, run.initiator.party)),
        status: Some(run.status.as_str().to_string()),
        summary,
        hosts: Some(hosts),
        reference: run.reference.clone(),
        reason: run.error.clone(),
    }
}

/// What an observed audit record becomes, before the run (if any) is read.
#[derive(Debug, Clone)]
pub enum Observed {
    /// A notice about run `run_id`, made from the run as stored; `reason` overrides the
    /// run's error (output truncation).
    Run {
        event: NoticeEvent,
        run_id: String,
        reason: Option<String>,
    },
    /// A notice needing no run: a slot of a runbook owned by `owner`, a frozen host.
    Plain(Box<Notice>),
}

/// Maps one committed audit record to a notice, if it makes one. `owner_of` gives a
/// runbook's owning party and `host_owner` a host's.
pub fn from_record(
    rec: &Record,
    owner_of: &dyn Fn(&str) -> Option<String>,
    host_owner: &dyn Fn(&str) -> Option<String>,
) -> Option<Observed> {
    let d = &rec.detail;
    let text = |k: &str| d[k].as_str().map(str::to_string);
    let event: Event = rec.event.parse().ok()?;
    match event {
        Event::RunFinished => Some(Observed::Run {
            event: NoticeEvent::of_run_status(d["status"].as_str()?.parse().ok()?)?,
            run_id: rec.run_id.clone()?,
            reason: None,
        }),
        Event::OutputTruncated => Some(Observed::Run {
            event: NoticeEvent::OutputTruncated,
            run_id: rec.run_id.clone()?,
            reason: Some(format!(
                "output of {} on {} past its limit ({}) was dropped",
                text("target").unwrap_or_else(|| "an action".into()),
                text("host").unwrap_or_else(|| "the run".into()),
                text("limit").unwrap_or_else(|| d["limit"].to_string()),
            )),
        }),
        Event::SlotSkipped | Event::SlotMissed => {
            let event = if event == Event::SlotMissed {
                NoticeEvent::SlotMissed
            } else {
                NoticeEvent::SlotSkipped
            };
            let runbook = text("runbook")?;
            let slot = text("slot").unwrap_or_default();
            let reason = match event {
                NoticeEvent::SlotMissed => Some("the daemon was not running at the slot".into()),
                _ => text("reason").map(|r| match text("why").or(text("calendar")) {
                    Some(w) => format!("{r}: {w}"),
                    None => r,
                }),
            };
            Some(Observed::Plain(Box::new(Notice {
                event,
                parties: owner_of(&runbook).into_iter().collect(),
                run_id: text("run_id"),
                summary: format!(
                    "{runbook}: slot {slot} {}",
                    if event == NoticeEvent::SlotMissed {
                        "missed"
                    } else {
                        "skipped"
                    }
                ),
                runbook: Some(runbook),
                initiator: Some("system (schedule)".into()),
                status: None,
                hosts: None,
                reference: None,
                reason,
            })))
        }
        Event::HostFrozen | Event::HostUnfrozen => {
            let host = text("host")?;
            let frozen = event == Event::HostFrozen;
            let (who, party) = match &rec.actor {
                Actor::User { user, party } => (format!("{user} ({party})"), Some(party.clone())),
                Actor::System(s) => (s.clone(), None),
            };
            let mut parties: Vec<String> = party.into_iter().collect();
            if let Some(o) = host_owner(&host).filter(|o| !parties.contains(o)) {
                parties.push(o);
            }
            Some(Observed::Plain(Box::new(Notice {
                event: NoticeEvent::Frozen,
                parties,
                run_id: None,
                runbook: None,
                summary: format!(
                    "host {host} {} by {who}",
                    if frozen { "frozen" } else { "unfrozen" }
                ),
                initiator: Some(who),
                status: Some(if frozen { "frozen" } else { "unfrozen" }.into()),
                hosts: None,
                reference: None,
                reason: text("reason"),
            })))
        }
        _ => None,
    }
}

/// Sends prompts and notices to the configured targets.
pub struct Notifier {
    client: reqwest::Client,
    public_url: String,
    store: Arc<Store>,
    rt: tokio::runtime::Handle,
}

impl Notifier {
    /// `public_url` is where people reach tandem's pages (for links).
    pub fn new(
        client: reqwest::Client,
        public_url: String,
        store: Arc<Store>,
        rt: tokio::runtime::Handle,
    ) -> Notifier {
        Notifier {
            client,
            public_url: public_url.trim_end_matches('/').to_string(),
            store,
            rt,
        }
    }

    /// The page where a run's approval is decided and its outcome shown.
    pub fn link(&self, run_id: &str) -> String {
        format!("{}/approvals/{}", self.public_url, run_id)
    }

    /// The link a notice carries: its run's page, or the list of approvals.
    fn link_of(&self, notice: &Notice) -> String {
        match &notice.run_id {
            Some(id) => self.link(id),
            None => format!("{}/approvals", self.public_url),
        }
    }

    /// Committed audit records of [`WATCHED`] events: makes their notices and sends them to
    /// the targets of `config` that want them. Returns at once; reading the run and
    /// delivering happen on tasks.
    pub fn observed(
        self: &Arc<Self>,
        config: Arc<Config>,
        owner_of: &dyn Fn(&str) -> Option<String>,
        records: Vec<Record>,
    ) {
        let host_owner = |h: &str| {
            config
                .inventory
                .iter()
                .find(|x| x.name == h)
                .map(|x| x.owner.clone())
        };
        for rec in &records {
            let Some(mut observed) = from_record(rec, owner_of, &host_owner) else {
                continue;
            };
            // A freeze stops every party's actions on the host: every party hears of it
            // (the freezing party and the owner first).
            if let Observed::Plain(n) = &mut observed {
                if n.event == NoticeEvent::Frozen {
                    for p in &config.parties {
                        if !n.parties.contains(p) {
                            n.parties.push(p.clone());
                        }
                    }
                }
            }
            let (this, config) = (self.clone(), config.clone());
            self.rt.spawn(async move {
                let notice = match observed {
                    Observed::Plain(n) => *n,
                    Observed::Run {
                        event,
                        run_id,
                        reason,
                    } => {
                        let store = this.store.clone();
                        let rid = run_id.clone();
                        match tokio::task::spawn_blocking(move || store.run(&rid)).await {
                            Ok(Ok(Some(run))) => {
                                let mut n = run_notice(event, &run);
                                if reason.is_some() {
                                    n.reason = reason;
                                }
                                n
                            }
                            Ok(Ok(None)) => return,
                            Ok(Err(e)) => {
                                tracing::error!(run = %run_id, error = %e, "run unreadable; notice not sent");
                                return;
                            }
                            Err(e) => {
                                tracing::error!(run = %run_id, error = %e, "notice task failed");
                                return;
                            }
                        }
                    }
                };
                this.send(&config, notice);
            });
        }
    }

    /// Queues `notice` for every target of `config` that wants it. Returns at once. A
    /// notice about a run that does not name the run's reference gets it from the store.
    pub fn send(self: &Arc<Self>, config: &Arc<Config>, notice: Notice) {
        if !config.notify.iter().any(|t| notice.wanted_by(t)) {
            return;
        }
        let (this, config) = (self.clone(), config.clone());
        self.rt.spawn(async move {
            let mut notice = notice;
            if let (None, Some(id)) = (&notice.reference, notice.run_id.clone()) {
                let store = this.store.clone();
                if let Ok(Ok(Some(run))) = tokio::task::spawn_blocking(move || store.run(&id)).await
                {
                    notice.reference = run.reference;
                }
            }
            for target in config.notify.iter().filter(|t| notice.wanted_by(t)) {
                this.deliver_to(&config, target.clone(), notice.clone());
            }
        });
    }

    /// Delivers `notice` to one target on a task of its own and audits the outcome.
    fn deliver_to(&self, config: &Arc<Config>, target: NotifyTarget, notice: Notice) {
        let link = self.link_of(&notice);
        let (client, store, config) = (self.client.clone(), self.store.clone(), config.clone());
        self.rt.spawn(async move {
            let outcome = match target.kind {
                NotifyKind::Email => email::deliver(&config, &target, &notice, &link).await,
                kind => {
                    let body = format::message(kind, &notice, &link);
                    deliver(&client, &target.url, &body).await.map(|s| json!(s))
                }
            };
            let party = notice.parties.first().cloned().unwrap_or_default();
            let event = notice.event.name();
            let detail = match &outcome {
                Ok(status) => json!({"target": target.name, "event": event, "party": party, "status": status}),
                Err(e) => json!({"target": target.name, "event": event, "party": party, "error": e, "attempts": ATTEMPTS}),
            };
            let audit_event = if outcome.is_ok() {
                Event::NotifySent
            } else {
                tracing::warn!(target = %target.name, event, "notification not delivered");
                Event::NotifyFailed
            };
            let run_id = notice.run_id.clone();
            // Delivery already happened (or failed); a record that cannot be written is
            // reported to the operator's log, the one place left to say it.
            match tokio::task::spawn_blocking(move || {
                store.audit(&Actor::system(), run_id.as_deref(), audit_event, detail)
            })
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, event = audit_event.as_str(), "audit log unavailable; notification outcome not recorded"),
                Err(e) => tracing::error!(error = %e, event = audit_event.as_str(), "notification audit task failed"),
            }
        });
    }
}

/// POSTs `body` until a 2xx answer, at most [`ATTEMPTS`] times with doubling backoff. The
/// error names the HTTP status or the kind of failure, never the URL (a Slack or Teams
/// webhook URL is a secret).
async fn deliver(client: &reqwest::Client, url: &str, body: &Value) -> Result<u16, String> {
    let mut wait = FIRST_BACKOFF;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match client
            .post(url)
            .timeout(Duration::from_secs(10))
            .json(body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(r.status().as_u16()),
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            Err(e) => {
                last = if e.is_timeout() {
                    "timed out".into()
                } else {
                    "connection failed".into()
                }
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    Err(last)
}

/// Waits before attempt `attempt + 1` (shared by email delivery).
pub(crate) async fn backoff(attempt: u32) {
    if attempt < ATTEMPTS {
        tokio::time::sleep(FIRST_BACKOFF * 2u32.pow(attempt - 1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: &str, run_id: Option<&str>, detail: Value, actor: Actor) -> Record {
        Record {
            seq: 1,
            ts: String::new(),
            actor,
            run_id: run_id.map(str::to_string),
            event: event.into(),
            detail,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn run_endings_become_their_notices() {
        for (status, event) in [
            ("succeeded", NoticeEvent::RunSucceeded),
            ("failed", NoticeEvent::RunFailed),
            ("interrupted", NoticeEvent::RunInterrupted),
            ("denied", NoticeEvent::RunDenied),
            ("expired", NoticeEvent::RunExpired),
            ("cancelled", NoticeEvent::RunCancelled),
        ] {
            let rec = record(
                "run_finished",
                Some("r1"),
                json!({"status": status}),
                Actor::system(),
            );
            match from_record(&rec, &none, &none) {
                Some(Observed::Run {
                    event: e, run_id, ..
                }) => {
                    assert_eq!(e, event);
                    assert_eq!(run_id, "r1");
                }
                other => panic!("{status}: {other:?}"),
            }
            assert_eq!(
                serde_json::to_value(event).unwrap(),
                json!(event.name()),
                "the serde name is the name"
            );
        }
        let other = record("run_started", Some("r1"), json!({}), Actor::system());
        assert!(from_record(&other, &none, &none).is_none());
    }

    #[test]
    fn a_skipped_slot_concerns_the_runbook_owner_and_a_freeze_the_host_owner() {
        let owner = |rb: &str| (rb == "patch").then(|| "internal".to_string());
        let rec = record(
            "slot_skipped",
            None,
            json!({"runbook": "patch", "slot": "2026-01-01T00:00:00Z", "reason": "blackout", "calendar": "xmas"}),
            Actor::system(),
        );
        let Some(Observed::Plain(n)) = from_record(&rec, &owner, &none) else {
            panic!("no notice")
        };
        assert_eq!(n.event, NoticeEvent::SlotSkipped);
        assert_eq!(n.parties, ["internal"]);
        assert_eq!(n.reason.as_deref(), Some("blackout: xmas"));

        let host_owner = |h: &str| (h == "web1").then(|| "internal".to_string());
        let rec = record(
            "host_frozen",
            None,
            json!({"host": "web1", "reason": "ransomware"}),
            Actor::user("paula", "provider"),
        );
        let Some(Observed::Plain(n)) = from_record(&rec, &none, &host_owner) else {
            panic!("no notice")
        };
        assert_eq!(n.event, NoticeEvent::Frozen);
        assert_eq!(n.parties, ["provider", "internal"]);
        assert_eq!(n.reason.as_deref(), Some("ransomware"));
    }

    fn target(events: Vec<NoticeEvent>, parties: &[&str], runbooks: &[&str]) -> NotifyTarget {
        NotifyTarget {
            name: "t".into(),
            kind: NotifyKind::Webhook,
            url: "http://x".into(),
            events,
            parties: parties.iter().map(|s| s.to_string()).collect(),
            runbooks: runbooks.iter().map(|s| s.to_string()).collect(),
            smtp: None,
            from: None,
            to: Vec::new(),
        }
    }

    #[test]
    fn targets_filter_by_event_party_and_runbook() {
        let mut n = Notice::prompt(
            NoticeEvent::ApprovalRequested,
            "internal",
            "r",
            "patch",
            "paula (provider)",
            String::new(),
            None,
        );
        assert!(n.wanted_by(&target(vec![], &[], &[])), "prompts by default");
        assert!(!n.wanted_by(&target(vec![], &["provider"], &[])));
        assert!(!n.wanted_by(&target(vec![], &[], &["other"])));
        assert!(n.wanted_by(&target(vec![], &["internal"], &["patch"])));
        n.event = NoticeEvent::RunFailed;
        assert!(
            !n.wanted_by(&target(vec![], &[], &[])),
            "outcomes only when subscribed"
        );
        assert!(n.wanted_by(&target(vec![NoticeEvent::RunFailed], &[], &[])));
        assert!(!n.wanted_by(&target(vec![NoticeEvent::RunSucceeded], &[], &[])));
    }
}
