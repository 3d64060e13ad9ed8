//! Prompts and events sent to `notify` targets: a generic JSON webhook, a Slack incoming
//! webhook, or a Microsoft Teams connector. Each delivery runs on its own task with retries
//! and backoff; the outcome is audited. A failed delivery never blocks or loses a run.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::audit::{Actor, Event};
use crate::config::{NotifyKind, NotifyTarget};
use crate::store::Store;

/// Attempts per delivery, and the first wait between attempts (doubled each time).
pub const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The events sent to notify targets as prompts; a target's `events` names some of these.
pub const PROMPTED: &[Event] = &[Event::ApprovalRequested, Event::ReviewRequested];

/// One thing to tell people.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// One of [`PROMPTED`].
    pub event: Event,
    /// The party being asked or told.
    pub party: String,
    pub run_id: String,
    pub runbook: String,
    /// `user (party)`.
    pub initiator: String,
    /// One line for humans.
    pub summary: String,
}

/// Sends prompts to the configured targets.
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

    /// The page where a run's approval is decided.
    pub fn link(&self, run_id: &str) -> String {
        format!("{}/approvals/{}", self.public_url, run_id)
    }

    /// Queues `prompt` for every target that wants its event and party. Returns at once.
    pub fn send(&self, targets: &[NotifyTarget], prompt: Prompt) {
        for target in targets {
            let wants_event = target.events.is_empty()
                || target.events.iter().any(|e| prompt.event.as_str() == e);
            let wants_party = target.parties.is_empty() || target.parties.contains(&prompt.party);
            if !(wants_event && wants_party) {
                continue;
            }
            let body = message(target.kind, &prompt, &self.link(&prompt.run_id));
            let (client, store, target, prompt) = (
                self.client.clone(),
                self.store.clone(),
                target.clone(),
                prompt.clone(),
            );
            self.rt.spawn(async move {
                let outcome = deliver(&client, &target.url, &body).await;
                let detail = match &outcome {
                    Ok(status) => json!({"target": target.name, "event": prompt.event, "party": prompt.party, "status": status}),
                    Err(e) => json!({"target": target.name, "event": prompt.event, "party": prompt.party, "error": e, "attempts": ATTEMPTS}),
                };
                let event = if outcome.is_ok() { Event::NotifySent } else { Event::NotifyFailed };
                if outcome.is_err() {
                    tracing::warn!(target = %target.name, event = %prompt.event, "notification not delivered");
                }
                let run_id = prompt.run_id.clone();
                // Delivery already happened (or failed); a record that cannot be written is
                // reported to the operator's log, the one place left to say it.
                match tokio::task::spawn_blocking(move || store.audit(&Actor::system(), Some(&run_id), event, detail)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, %event, "audit log unavailable; notification outcome not recorded"),
                    Err(e) => tracing::error!(error = %e, %event, "notification audit task failed"),
                }
            });
        }
    }
}

/// POSTs `body` until a 2xx answer, at most [`ATTEMPTS`] times with doubling backoff.
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

/// The message in the shape each kind of target expects.
pub fn message(kind: NotifyKind, p: &Prompt, link: &str) -> Value {
    let title = match p.event {
        Event::ApprovalRequested => format!("Approval needed from {}: {}", p.party, p.runbook),
        Event::ReviewRequested => {
            format!("Break-glass run to review for {}: {}", p.party, p.runbook)
        }
        other => format!("{other}: {}", p.runbook),
    };
    match kind {
        NotifyKind::Webhook => json!({
            "event": p.event,
            "party": p.party,
            "run_id": p.run_id,
            "runbook": p.runbook,
            "initiator": p.initiator,
            "summary": p.summary,
            "title": title,
            "url": link,
        }),
        NotifyKind::Slack => json!({
            "text": format!("{title}\n{} (started by {}) <{link}|Review run {}>", p.summary, p.initiator, p.run_id),
        }),
        NotifyKind::Teams => json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": title,
            "themeColor": "0076D7",
            "title": title,
            "text": format!("{} (started by {})", p.summary, p.initiator),
            "potentialAction": [{
                "@type": "OpenUri",
                "name": "Review",
                "targets": [{"os": "default", "uri": link}],
            }],
        }),
    }
}
