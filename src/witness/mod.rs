//! Anchoring the audit log while the daemon runs (SPEC §8): a signed checkpoint every
//! `audit.checkpoint_records` records or `audit.checkpoint_interval`, whichever comes first,
//! and one on shutdown, each handed to every configured witness (a file the party keeps, or
//! an HTTP receiver it runs). Signing and delivery run on their own tasks with retries and
//! backoff, and every outcome is audited; nothing here ever holds up a run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinHandle;

use crate::audit::anchor::{AuditKey, Checkpoint};
use crate::audit::Event;
use crate::audit::{Actor, GENESIS};
use crate::config::{Witness, WitnessTarget};
use crate::run::App;
use crate::store::{Store, StoreError};

/// Attempts per delivery, and the first wait between attempts (doubled each time).
pub const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// How often the daemon looks at the log's growth.
const TICK: Duration = Duration::from_secs(1);

/// How long one HTTP delivery may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a checkpoint was signed; `reason` in the `checkpoint_signed` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `audit.checkpoint_records` new records.
    Records,
    /// `audit.checkpoint_interval` passed with new records.
    Interval,
    /// The daemon is stopping.
    Shutdown,
    /// `tandem audit checkpoint`.
    Command,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Records => "records",
            Trigger::Interval => "interval",
            Trigger::Shutdown => "shutdown",
            Trigger::Command => "command",
        }
    }
}

/// Signs a checkpoint over the store's current head and audits `checkpoint_signed`. Blocking
/// (SQLite): call from a blocking thread. Shared by the daemon and `tandem audit checkpoint`.
pub fn sign_checkpoint(
    store: &Store,
    key: &AuditKey,
    trigger: Trigger,
) -> Result<Checkpoint, StoreError> {
    let len = store.audit_len()?;
    // The record after `len - 1` is record `len`, even if more were appended meanwhile.
    let (seq, head) = match store.audit_records(len.saturating_sub(1), 1)?.pop() {
        Some(r) if len > 0 => (r.seq, r.hash),
        _ => (0, GENESIS.to_string()),
    };
    let cp = key.sign(seq, &head, &crate::store::now());
    store.audit(
        &Actor::system(),
        None,
        Event::CheckpointSigned,
        json!({"seq": cp.seq, "head": cp.head, "ts": cp.ts, "key": cp.key, "reason": trigger.as_str()}),
    )?;
    Ok(cp)
}

/// What the periodic signer knows about the log since its last checkpoint.
#[derive(Debug)]
struct Progress {
    /// Records up to this seq have been counted.
    scanned: u64,
    /// Records since the last checkpoint, not counting checkpoint events.
    pending: u64,
    /// When the last checkpoint was signed (or the daemon started).
    since: Instant,
}

/// The daemon's checkpoint signer and deliverer.
pub struct Anchor {
    app: Arc<App>,
    key: Arc<AuditKey>,
    http: reqwest::Client,
    /// Held while signing, so the periodic and the shutdown checkpoint never interleave.
    progress: tokio::sync::Mutex<Progress>,
}

impl std::fmt::Debug for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anchor").finish_non_exhaustive()
    }
}

impl Anchor {
    /// A signer over `app`'s store. Records already in the log count towards the first
    /// checkpoint, at most one checkpoint's worth of them.
    pub async fn new(app: Arc<App>, key: AuditKey) -> Result<Arc<Anchor>, crate::Error> {
        let http = crate::exec::http::client().map_err(|e| crate::Error::Usage(e.to_string()))?;
        let store = app.store.clone();
        let len = tokio::task::spawn_blocking(move || store.audit_len())
            .await
            .map_err(|e| crate::Error::Usage(format!("startup task failed: {e}")))??;
        let scanned = len.saturating_sub(app.config().audit.checkpoint_records);
        Ok(Arc::new(Anchor {
            app,
            key: Arc::new(key),
            http,
            progress: tokio::sync::Mutex::new(Progress {
                scanned,
                pending: 0,
                since: Instant::now(),
            }),
        }))
    }

    /// Signs checkpoints as the log grows and time passes, until the daemon stops.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.tick().await {
                tracing::error!(error = %e, "audit checkpoint failed; retrying");
            }
        }
    }

    /// Counts new records and signs a checkpoint when one is due.
    async fn tick(&self) -> Result<(), String> {
        let mut progress = self.progress.lock().await;
        let store = self.app.store.clone();
        let after = progress.scanned;
        let (scanned, counted) = blocking(move || count_since(&store, after)).await?;
        progress.scanned = scanned;
        progress.pending += counted;
        let audit = self.app.config().audit.clone();
        let trigger = if progress.pending >= audit.checkpoint_records {
            Trigger::Records
        } else if progress.pending > 0 && progress.since.elapsed() >= audit.checkpoint_interval {
            Trigger::Interval
        } else {
            return Ok(());
        };
        self.checkpoint(&mut progress, trigger).await?;
        Ok(())
    }

    /// Signs a checkpoint now and starts its deliveries.
    async fn checkpoint(
        &self,
        progress: &mut Progress,
        trigger: Trigger,
    ) -> Result<Vec<JoinHandle<()>>, String> {
        let (store, key) = (self.app.store.clone(), self.key.clone());
        let cp = blocking(move || sign_checkpoint(&store, &key, trigger)).await?;
        progress.scanned = progress.scanned.max(cp.seq);
        progress.pending = 0;
        progress.since = Instant::now();
        let witnesses = self.app.config().audit.witnesses.clone();
        Ok(witnesses
            .into_iter()
            .enumerate()
            .map(|(i, w)| self.deliver(i, w, cp.clone()))
            .collect())
    }

    /// The shutdown checkpoint: signs one over the final head and waits up to `within`
    /// for its deliveries.
    pub async fn shutdown(&self, within: Duration) {
        let mut progress = self.progress.lock().await;
        let deliveries = match self.checkpoint(&mut progress, Trigger::Shutdown).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "the shutdown checkpoint could not be signed");
                return;
            }
        };
        let all = async {
            for d in deliveries {
                if let Err(e) = d.await {
                    tracing::error!(error = %e, "checkpoint delivery task failed");
                }
            }
        };
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!("stopping before every witness took the shutdown checkpoint");
        }
    }

    /// Hands `cp` to witness number `index` on its own task, with retries, and audits the
    /// outcome.
    fn deliver(&self, index: usize, witness: Witness, cp: Checkpoint) -> JoinHandle<()> {
        let (http, store) = (self.http.clone(), self.app.store.clone());
        tokio::spawn(async move {
            let (outcome, attempts) = with_retries(|| deliver_once(&http, &witness, &cp)).await;
            let kind = match witness.target {
                WitnessTarget::File(_) => "file",
                WitnessTarget::Url(_) => "url",
            };
            let mut detail = json!({
                "seq": cp.seq,
                "head": cp.head,
                "party": witness.party,
                "witness": format!("audit.witnesses[{index}]"),
                "kind": kind,
                "attempts": attempts,
            });
            let name = match outcome {
                Ok(()) => Event::CheckpointDelivered,
                Err(e) => {
                    tracing::warn!(party = %witness.party, witness = index, error = %e, "checkpoint not delivered");
                    detail["error"] = json!(e);
                    Event::CheckpointDeliveryFailed
                }
            };
            let written = tokio::task::spawn_blocking(move || {
                store.audit(&Actor::system(), None, name, detail)
            })
            .await;
            match written {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, event = %name, "cannot audit a checkpoint delivery")
                }
                Err(e) => {
                    tracing::error!(error = %e, event = %name, "checkpoint audit task failed")
                }
            }
        })
    }
}

/// Runs `attempt` until it succeeds, at most [`ATTEMPTS`] times with doubling backoff;
/// returns the last outcome and how many attempts were made.
async fn with_retries<F, Fut>(mut attempt: F) -> (Result<(), String>, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut wait = FIRST_BACKOFF;
    let mut n = 0;
    loop {
        n += 1;
        let outcome = attempt().await;
        if outcome.is_ok() || n >= ATTEMPTS {
            return (outcome, n);
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}

/// One delivery attempt: append a JSON line to the file, or POST the checkpoint.
async fn deliver_once(
    http: &reqwest::Client,
    witness: &Witness,
    cp: &Checkpoint,
) -> Result<(), String> {
    match &witness.target {
        WitnessTarget::File(path) => {
            let (path, cp) = (path.clone(), cp.clone());
            blocking(move || append_line(&path, &cp)).await
        }
        WitnessTarget::Url(url) => match http.post(url).timeout(HTTP_TIMEOUT).json(cp).send().await
        {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
            Err(e) if e.is_timeout() => Err("timed out".into()),
            Err(_) => Err("connection failed".into()),
        },
    }
}

/// Appends `cp` as one JSON line, in one write, and waits for it to reach the disk.
fn append_line(path: &std::path::Path, cp: &Checkpoint) -> Result<(), String> {
    use std::io::Write;
    let mut line = serde_json::to_string(cp).map_err(|e| e.to_string())?;
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| {
            f.write_all(line.as_bytes())?;
            f.sync_data()
        })
        .map_err(|e| format!("cannot append to {}: {e}", path.display()))
}

/// Reads the records after `after`; returns the last seq read and how many of them were
/// not checkpoint events.
fn count_since(store: &Store, after: u64) -> Result<(u64, u64), StoreError> {
    let (mut scanned, mut counted) = (after, 0);
    loop {
        let page = store.audit_records(scanned, 5000)?;
        let Some(last) = page.last() else {
            return Ok((scanned, counted));
        };
        scanned = last.seq;
        counted += page
            .iter()
            .filter(|r| !Event::is_checkpoint_name(&r.event))
            .count() as u64;
    }
}

/// Runs store work on a blocking thread.
async fn blocking<T: Send + 'static, E: std::fmt::Display>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(move || f().map_err(|e| e.to_string())).await {
        Ok(r) => r,
        Err(e) => Err(format!("blocking task: {e}")),
    }
}
