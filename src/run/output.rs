//! A run's output as a stream: each action's stdout and stderr go through the run's
//! redactor as bytes (rule 9, before anything is stored or sent), are bounded per action
//! and per run, and are stored as chunks of tens of KiB, one durable write each. A chunk
//! is stored when it is full or when its oldest byte has waited [`CHUNK_DELAY`], so a
//! follower sees a line well within 250 ms of it leaving the host.
//!
//! Nothing here holds a whole output: per stream, a chunk buffer and the redactor's
//! held-back tail; for the script, at most `output.script_max` of each stream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::host::HostContext;
use crate::audit::StreamRedactor;
use crate::exec::{OutputSink, Stream};
use crate::runbook::OutputLimits;
use crate::store::StoreError;

/// The log stream of engine events: host outcomes, gates, truncation markers.
pub const EVENT_STREAM: &str = "event";

/// The log stream of `log()` messages.
pub const LOG_STREAM: &str = "log";

/// A chunk is stored once this much is buffered.
pub const CHUNK_BYTES: usize = 32 * 1024;

/// ... or once its oldest byte has waited this long (complete lines only).
const CHUNK_DELAY: Duration = Duration::from_millis(100);

/// A partial line (a prompt, a progress bar without newline) waits at most this long.
const PARTIAL_LINE_DELAY: Duration = Duration::from_secs(1);

/// Which limit cut an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `output.action_max`: one action's output.
    Action,
    /// `output.run_max`: the whole run's output.
    Run,
    /// `output.script_max`: one `log()` message.
    Message,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::Action => "action_max",
            Limit::Run => "run_max",
            Limit::Message => "script_max",
        }
    }

    fn bytes(self, limits: &OutputLimits) -> u64 {
        match self {
            Limit::Action => limits.action_max,
            Limit::Run => limits.run_max,
            Limit::Message => limits.script_max,
        }
    }
}

/// The bytes of output a run has stored, against `output.run_max`.
#[derive(Debug, Default)]
pub struct RunBudget {
    kept: AtomicU64,
}

impl RunBudget {
    /// Takes up to `want` bytes of what is left under `max`; returns how many were granted.
    pub fn take(&self, want: u64, max: u64) -> u64 {
        let mut granted = 0;
        let _ = self
            .kept
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |kept| {
                granted = want.min(max.saturating_sub(kept));
                (granted > 0).then_some(kept + granted)
            });
        granted
    }
}

/// "16 MiB", "512 KiB", "1000 bytes".
pub fn size_text(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// Where a chunk ends: after the last newline of `buf`, or all of it when it has none.
fn cut_at_line(buf: &[u8]) -> usize {
    memchr::memrchr(b'\n', buf).map_or(buf.len(), |i| i + 1)
}

/// One output stream of one action on its way to the log.
struct StreamState {
    stream: Stream,
    /// `None` once the stream was cut: what follows is dropped unread.
    redactor: Option<StreamRedactor>,
    /// Redacted bytes not stored yet.
    buf: Vec<u8>,
    /// When the oldest byte of `buf` arrived.
    since: Option<Instant>,
    /// Bytes the command wrote, all of them.
    seen: u64,
    /// The first `script_max` bytes, for the script.
    script: Vec<u8>,
}

/// The sink one action's output goes through.
pub(super) struct ActionOutput<'a> {
    ctx: &'a HostContext,
    /// The action as the audit shows it (redacted).
    shown: &'a str,
    limits: OutputLimits,
    streams: [StreamState; 2],
    /// Redacted bytes of this action taken for the log.
    kept: u64,
    /// The limit that cut this action's output, once one did.
    cut: Option<Limit>,
    script_cut: bool,
    /// The first failure to store; the action's result reports it (fail closed).
    failed: Option<StoreError>,
}

/// What an action's output came to.
pub(super) struct OutputSummary {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub script_truncated: bool,
    pub cut: Option<Limit>,
    pub failed: Option<StoreError>,
    /// What is still buffered, at most one chunk per stream: the caller stores it with the
    /// action's result.
    pub tail: Vec<(&'static str, Vec<u8>)>,
}

impl<'a> ActionOutput<'a> {
    pub fn new(ctx: &'a HostContext, shown: &'a str) -> ActionOutput<'a> {
        let state = |stream| StreamState {
            stream,
            redactor: Some(ctx.stream_redactor()),
            buf: Vec::new(),
            since: None,
            seen: 0,
            script: Vec::new(),
        };
        ActionOutput {
            ctx,
            shown,
            limits: ctx.shared.runbook.output,
            streams: [state(Stream::Stdout), state(Stream::Stderr)],
            kept: 0,
            cut: None,
            script_cut: false,
            failed: None,
        }
    }

    fn index(stream: Stream) -> usize {
        match stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    /// Takes what the limits allow of `redacted` into stream `i`'s buffer; past a limit,
    /// cuts the whole action (once, with a marker and an audit record).
    fn admit(&mut self, i: usize, redacted: &[u8]) {
        if self.cut.is_some() || redacted.is_empty() {
            return;
        }
        let want = redacted.len() as u64;
        let action_room = self.limits.action_max.saturating_sub(self.kept);
        let granted = self
            .ctx
            .shared
            .output
            .take(want.min(action_room), self.limits.run_max);
        self.buffer(i, &redacted[..granted as usize]);
        self.kept += granted;
        if granted < want {
            let limit = if granted == action_room {
                Limit::Action
            } else {
                Limit::Run
            };
            self.cut = Some(limit);
            for s in &mut self.streams {
                // Not finished: its held-back tail may be the start of a secret whose
                // rest is never read.
                s.redactor = None;
            }
            self.flush_all();
            let marked = self.ctx.truncated("sh", self.shown, limit);
            self.fail(marked);
        }
    }

    /// Appends to stream `i`'s buffer, storing each chunk as it fills, so a buffer never
    /// grows past one chunk.
    fn buffer(&mut self, i: usize, mut data: &[u8]) {
        while !data.is_empty() {
            let s = &mut self.streams[i];
            let take = data.len().min(CHUNK_BYTES - s.buf.len());
            // Grown by doubling up to one chunk: a command that prints a line holds a
            // line's worth, not a chunk's, while the host runs.
            let need = s.buf.len() + take;
            if need > s.buf.capacity() {
                let cap = need.next_power_of_two().clamp(256, CHUNK_BYTES);
                s.buf.reserve_exact(cap.max(need) - s.buf.len());
            }
            s.buf.extend_from_slice(&data[..take]);
            s.since.get_or_insert_with(Instant::now);
            data = &data[take..];
            if s.buf.len() >= CHUNK_BYTES {
                let end = cut_at_line(&s.buf);
                self.store(i, end);
            }
        }
    }

    fn fail(&mut self, r: Result<(), StoreError>) {
        if let Err(e) = r {
            self.failed.get_or_insert(e);
        }
    }

    /// Stores stream `i`'s buffer up to `end` as one chunk.
    fn store(&mut self, i: usize, end: usize) {
        if end == 0 {
            return;
        }
        let s = &mut self.streams[i];
        let r = self.ctx.store_chunk(s.stream.name(), &s.buf[..end]);
        s.buf.drain(..end);
        s.since = (!s.buf.is_empty()).then(Instant::now);
        self.fail(r);
    }

    /// Stores what is due: full chunks, and complete lines that have waited long enough.
    fn flush_due(&mut self, i: usize) {
        while self.streams[i].buf.len() >= CHUNK_BYTES {
            let end = cut_at_line(&self.streams[i].buf[..CHUNK_BYTES]);
            self.store(i, end);
        }
        let Some(since) = self.streams[i].since else {
            return;
        };
        let waited = since.elapsed();
        if waited >= CHUNK_DELAY {
            let buf = &self.streams[i].buf;
            let end = if waited >= PARTIAL_LINE_DELAY {
                buf.len()
            } else {
                memchr::memrchr(b'\n', buf).map_or(0, |i| i + 1)
            };
            self.store(i, end);
        }
    }

    fn flush_all(&mut self) {
        for i in 0..2 {
            while !self.streams[i].buf.is_empty() {
                let end = self.streams[i].buf.len().min(CHUNK_BYTES);
                let end = cut_at_line(&self.streams[i].buf[..end]);
                self.store(i, end);
            }
        }
    }

    /// Ends the action's output: the redactors' held-back tails go through the limits;
    /// what is left buffered is handed back in [`OutputSummary::tail`].
    pub fn finish(mut self) -> OutputSummary {
        for i in 0..2 {
            if let Some(mut r) = self.streams[i].redactor.take() {
                let tail = r.finish();
                self.admit(i, &tail);
            }
        }
        let tail = self
            .streams
            .iter_mut()
            .filter(|s| !s.buf.is_empty())
            .map(|s| (s.stream.name(), std::mem::take(&mut s.buf)))
            .collect();
        let [out, err] = self.streams;
        OutputSummary {
            stdout_bytes: out.seen,
            stderr_bytes: err.seen,
            stdout: out.script,
            stderr: err.script,
            script_truncated: self.script_cut,
            cut: self.cut,
            failed: self.failed,
            tail,
        }
    }
}

impl OutputSink for ActionOutput<'_> {
    fn data(&mut self, stream: Stream, bytes: &[u8]) {
        let i = Self::index(stream);
        let script_max = self.limits.script_max as usize;
        let s = &mut self.streams[i];
        s.seen += bytes.len() as u64;
        let room = script_max.saturating_sub(s.script.len());
        if bytes.len() > room {
            self.script_cut = true;
        }
        s.script.extend_from_slice(&bytes[..bytes.len().min(room)]);
        let Some(r) = s.redactor.as_mut() else {
            return;
        };
        let redacted = r.push(bytes);
        self.admit(i, &redacted);
        self.flush_due(i);
    }

    fn idle(&mut self) {
        for i in 0..2 {
            self.flush_due(i);
        }
    }
}

/// A `log()` message as stored: redacted whole, cut at `script_max` and at what is left
/// of the run's budget, ending in a newline. `None` as the limit when nothing was cut.
pub(super) fn bound_message(
    redacted: Vec<u8>,
    limits: &OutputLimits,
    budget: &RunBudget,
) -> (Vec<u8>, Option<Limit>) {
    let mut bytes = redacted;
    if !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    let want = (bytes.len() as u64).min(limits.script_max);
    let granted = budget.take(want, limits.run_max);
    let cut = if granted < want {
        Some(Limit::Run)
    } else if want < bytes.len() as u64 {
        Some(Limit::Message)
    } else {
        None
    };
    if cut.is_some() {
        bytes.truncate(granted as usize);
        // The kept part still ends its line, within what was granted.
        if let Some(last) = bytes.last_mut() {
            *last = b'\n';
        }
    }
    (bytes, cut)
}

/// The marker line and audit detail of a cut.
pub(super) fn truncation(
    host: Option<&str>,
    kind: &str,
    shown: &str,
    limit: Limit,
    limits: &OutputLimits,
) -> (String, serde_json::Value) {
    let bytes = limit.bytes(limits);
    let what = match kind {
        "log" => "log() message".to_string(),
        _ => format!("output of `{shown}`"),
    };
    let marker = format!(
        "[output truncated] {what} reached output.{} ({}); the rest is dropped, the run goes on",
        limit.name(),
        size_text(bytes)
    );
    let detail = json!({
        "host": host,
        "kind": kind,
        "target": shown,
        "limit": limit.name(),
        "limit_bytes": bytes,
    });
    (marker, detail)
}

/// Splits `bytes` into chunks of at most [`CHUNK_BYTES`], at line ends where possible.
pub(super) fn chunks(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let end = cut_at_line(&bytes[..bytes.len().min(CHUNK_BYTES)]);
        let (chunk, rest) = bytes.split_at(end);
        bytes = rest;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_budget_is_never_overdrawn() {
        let b = RunBudget::default();
        assert_eq!(b.take(60, 100), 60);
        assert_eq!(b.take(60, 100), 40);
        assert_eq!(b.take(1, 100), 0);
    }

    #[test]
    fn chunks_end_at_line_ends_and_cover_every_byte() {
        let mut text = Vec::new();
        for i in 0..20_000 {
            text.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        text.extend_from_slice(&vec![b'x'; 3 * CHUNK_BYTES]);
        let parts: Vec<&[u8]> = chunks(&text).collect();
        assert_eq!(parts.concat(), text);
        assert!(parts.iter().all(|c| c.len() <= CHUNK_BYTES));
        let lined = parts.iter().take_while(|c| c.ends_with(b"\n")).count();
        assert!(lined >= 4, "{lined}");
    }

    #[test]
    fn a_message_is_cut_at_script_max_and_the_run_budget() {
        let limits = OutputLimits {
            action_max: 1 << 20,
            run_max: 3000,
            script_max: 2000,
        };
        let b = RunBudget::default();
        let (m, cut) = bound_message(vec![b'a'; 2500], &limits, &b);
        assert_eq!((m.len(), cut), (2000, Some(Limit::Message)));
        assert!(m.ends_with(b"a\n"));
        let (m, cut) = bound_message(vec![b'a'; 1500], &limits, &b);
        assert_eq!((m.len(), cut), (1000, Some(Limit::Run)));
        let (m, cut) = bound_message(b"ok".to_vec(), &limits, &b);
        assert_eq!((m.len(), cut), (0, Some(Limit::Run)));
    }
}
