//! Run logs as chunks: each record holds tens of KiB of one host's stream exactly as
//! stored (already redacted), with the run-wide numbers of its first and last line, so a
//! log of millions of lines is thousands of records, pages by line through an index, and
//! gives back its exact bytes. Lines are split and rendered only when read.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use super::{now, p, Store, StoreError, Tx};

/// One line of a run's log, rendered for people (see [`render_line`]).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogLine {
    /// The line's number in the run's log, from 1: a page cursor (`after`).
    pub id: i64,
    pub ts: String,
    pub host: Option<String>,
    pub stream: String,
    pub line: String,
}

/// One stored chunk, as its exact bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawChunk {
    /// The chunk's id: a page cursor for raw reads.
    pub id: i64,
    pub host: Option<String>,
    pub stream: String,
    pub bytes: Vec<u8>,
}

/// Lines in a chunk: each newline ends one, and bytes after the last newline are a line
/// of their own (a chunk cut inside a very long line, or output without a final newline).
pub fn count_lines(bytes: &[u8]) -> i64 {
    let newlines = memchr::memchr_iter(b'\n', bytes).count();
    (newlines + usize::from(bytes.last().is_some_and(|&b| b != b'\n'))) as i64
}

/// The lines of a chunk, without their newlines.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|&b| b == b'\n')
        .take(if bytes.is_empty() { 0 } else { usize::MAX })
}

/// A line as people see it: invalid UTF-8 becomes U+FFFD, a final carriage return (CRLF)
/// is dropped, and every other control character but tab is shown as an escape (`\x1b`,
/// `\r`), so output cannot move a terminal's cursor, recolour it, or hide text.
pub fn render_line(bytes: &[u8]) -> String {
    render(bytes).into_owned()
}

/// [`render_line`] without a copy for the common line: printable ASCII and tabs.
pub fn render(bytes: &[u8]) -> Cow<'_, str> {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) || b == b'\t')
    {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return Cow::Borrowed(text);
        }
    }
    let text = String::from_utf8_lossy(bytes);
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push('\t'),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One line as read, borrowed from its chunk: see [`Store::visit_lines`].
pub struct LineRef<'a> {
    pub id: i64,
    pub ts: &'a str,
    pub host: Option<&'a str>,
    pub stream: &'a str,
    /// The line's bytes, without its newline.
    pub bytes: &'a [u8],
}

impl LineRef<'_> {
    /// Appends the line as the JSON object of a [`LogLine`], without building one.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        out.extend_from_slice(b"{\"id\":");
        let _ = write!(out, "{}", self.id);
        out.extend_from_slice(b",\"ts\":");
        let _ = serde_json::to_writer(&mut *out, self.ts);
        out.extend_from_slice(b",\"host\":");
        let _ = serde_json::to_writer(&mut *out, &self.host);
        out.extend_from_slice(b",\"stream\":");
        let _ = serde_json::to_writer(&mut *out, self.stream);
        out.extend_from_slice(b",\"line\":");
        let _ = serde_json::to_writer(&mut *out, render(self.bytes).as_ref());
        out.push(b'}');
    }
}

/// A chunk of a run's log as it was written, for live followers: its lines are numbered as
/// they will be read from the store once the chunk's transaction commits.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveChunk {
    pub first_line: i64,
    pub last_line: i64,
    pub ts: String,
    pub host: Option<String>,
    pub stream: String,
    pub bytes: Vec<u8>,
}

impl LiveChunk {
    /// Hands the chunk's lines numbered after `after` to `visit`, in order; returns the
    /// number of the last line handed (or `after`).
    pub fn visit_lines(&self, after: i64, mut visit: impl FnMut(LineRef<'_>)) -> i64 {
        let mut last = after;
        for (id, line) in (self.first_line..).zip(lines(&self.bytes)) {
            if id <= after {
                continue;
            }
            visit(LineRef {
                id,
                ts: &self.ts,
                host: self.host.as_deref(),
                stream: &self.stream,
                bytes: line,
            });
            last = id;
        }
        last
    }
}

/// Chunks a follower may fall behind by before it reads from the store instead.
const LIVE_BACKLOG: usize = 64;

/// Per run someone follows, a broadcast of the chunks appended to its log, sent when the
/// appending transaction's savepoint holds (in line order: under the writer lock) rather
/// than when its group is durable. A run nobody follows costs one map lookup per chunk.
#[derive(Default)]
pub(super) struct LiveFeed {
    runs: Mutex<HashMap<String, broadcast::Sender<Arc<LiveChunk>>>>,
}

impl LiveFeed {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Arc<LiveChunk>>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn followed(&self, run_id: &str) -> bool {
        self.lock().contains_key(run_id)
    }

    pub(super) fn publish(&self, appended: Vec<(String, Arc<LiveChunk>)>) {
        if appended.is_empty() {
            return;
        }
        let mut runs = self.lock();
        for (run_id, chunk) in appended {
            let Some(tx) = runs.get(&run_id) else {
                continue;
            };
            // No receiver left: forget the run until someone follows it again.
            if tx.send(chunk).is_err() {
                runs.remove(&run_id);
            }
        }
    }
}

/// Chunks read per query while paging lines: enough for a page of short lines, and at
/// most a few MiB in memory.
const CHUNKS_PER_QUERY: i64 = 32;

impl Store {
    /// Up to `limit` lines of a run's log after line number `after`, in order.
    pub fn log_lines(
        &self,
        run_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<LogLine>, StoreError> {
        let mut out = Vec::new();
        self.visit_lines(run_id, after, limit, |l| {
            out.push(LogLine {
                id: l.id,
                ts: l.ts.to_string(),
                host: l.host.map(str::to_string),
                stream: l.stream.to_string(),
                line: render_line(l.bytes),
            })
        })?;
        Ok(out)
    }

    /// Hands up to `limit` lines after line number `after` to `visit`, in order, borrowed
    /// from their chunks; returns how many.
    pub fn visit_lines(
        &self,
        run_id: &str,
        after: i64,
        limit: usize,
        mut visit: impl FnMut(LineRef<'_>),
    ) -> Result<usize, StoreError> {
        let conn = self.lock()?;
        let mut count = 0;
        let mut cursor = after;
        while count < limit {
            let mut read = 0;
            let from = cursor;
            conn.each(
                "SELECT first_line, ts, host, stream, bytes, last_line FROM log_chunks
                 WHERE run_id = ?1 AND last_line > ?2 ORDER BY last_line LIMIT ?3",
                p![run_id, from, CHUNKS_PER_QUERY],
                |r| {
                    read += 1;
                    let first: i64 = r.get(0)?;
                    let ts = r.str(1)?;
                    let host = r.opt_str(2)?;
                    let stream = r.str(3)?;
                    let bytes = r.blob(4)?;
                    cursor = r.get(5)?;
                    for (id, line) in (first..).zip(lines(bytes)) {
                        if id <= after {
                            continue;
                        }
                        if count >= limit {
                            return Ok(false);
                        }
                        visit(LineRef {
                            id,
                            ts,
                            host,
                            stream,
                            bytes: line,
                        });
                        count += 1;
                    }
                    Ok(true)
                },
            )?;
            if read < CHUNKS_PER_QUERY {
                break;
            }
        }
        Ok(count)
    }

    /// Chunks of a run's log from now on, as they are written, before they are durable
    /// (see [`LiveFeed`]). Subscribe, then read the store: a chunk is either read or
    /// received, or both (skip by line number). A follower that falls behind receives
    /// `Lagged` and reads the store.
    pub fn follow_live(&self, run_id: &str) -> broadcast::Receiver<Arc<LiveChunk>> {
        let mut runs = self.live.lock();
        match runs.get(run_id) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = broadcast::channel(LIVE_BACKLOG);
                runs.insert(run_id.to_string(), tx);
                rx
            }
        }
    }

    /// A run's status alone (`None`: no such run): what a follower checks after each commit.
    pub fn run_status(&self, run_id: &str) -> Result<Option<crate::state::RunStatus>, StoreError> {
        self.lock()?
            .row("SELECT status FROM runs WHERE id = ?1", p![run_id], |r| {
                r.get(0)
            })
    }

    /// The number of lines in a run's log.
    pub fn log_len(&self, run_id: &str) -> Result<i64, StoreError> {
        self.lock()?.one(
            "SELECT COALESCE(MAX(last_line), 0) FROM log_chunks WHERE run_id = ?1",
            p![run_id],
            |r| r.get(0),
        )
    }

    /// Up to `limit` chunks of a run's log after chunk `after`, exactly as stored,
    /// optionally only of one host and one stream.
    pub fn log_chunks(
        &self,
        run_id: &str,
        after: i64,
        host: Option<&str>,
        stream: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RawChunk>, StoreError> {
        self.lock()?.rows(
            "SELECT id, host, stream, bytes FROM log_chunks
             WHERE run_id = ?1 AND id > ?2 AND (CAST(?3 AS TEXT) IS NULL OR host = ?3) AND (CAST(?4 AS TEXT) IS NULL OR stream = ?4)
             ORDER BY id LIMIT ?5",
            p![run_id, after, host, stream, limit as i64],
            |r| {
                Ok(RawChunk {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    stream: r.get(2)?,
                    bytes: r.get(3)?,
                })
            },
        )
    }
}

impl Tx<'_> {
    /// Appends a chunk of one host's stream to a run's log, numbering its lines after the
    /// run's last; returns the number of its last line. Empty chunks are not stored.
    pub fn log_chunk(
        &self,
        run_id: &str,
        host: Option<&str>,
        stream: &str,
        bytes: &[u8],
    ) -> Result<i64, StoreError> {
        let last: i64 = self.tx.one(
            "SELECT COALESCE(MAX(last_line), 0) FROM log_chunks WHERE run_id = ?1",
            p![run_id],
            |r| r.get(0),
        )?;
        if bytes.is_empty() {
            return Ok(last);
        }
        let lines = count_lines(bytes);
        let ts = now();
        if self.live.followed(run_id) {
            self.appended.borrow_mut().push((
                run_id.to_string(),
                Arc::new(LiveChunk {
                    first_line: last + 1,
                    last_line: last + lines,
                    ts: ts.clone(),
                    host: host.map(str::to_string),
                    stream: stream.to_string(),
                    bytes: bytes.to_vec(),
                }),
            ));
        }
        self.tx.execute(
            "INSERT INTO log_chunks (run_id, host, stream, first_line, last_line, ts, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            p![run_id, host, stream, last + 1, last + lines, ts, bytes],
        )?;
        Ok(last + lines)
    }

    /// Appends one line (an event, a message) to a run's log.
    pub fn log(
        &self,
        run_id: &str,
        host: Option<&str>,
        stream: &str,
        line: &str,
    ) -> Result<(), StoreError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        if !line.ends_with('\n') {
            bytes.push(b'\n');
        }
        self.log_chunk(run_id, host, stream, &bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_as_they_are_split() {
        for (bytes, expected) in [
            (&b""[..], vec![]),
            (b"a", vec![&b"a"[..]]),
            (b"a\n", vec![b"a"]),
            (b"a\nb", vec![b"a", b"b"]),
            (b"\n\n", vec![b"", b""]),
            (b"a\r\nb\r\n", vec![b"a\r", b"b\r"]),
        ] {
            let got: Vec<&[u8]> = lines(bytes).collect();
            assert_eq!(got, expected, "{bytes:?}");
            assert_eq!(count_lines(bytes), expected.len() as i64, "{bytes:?}");
        }
    }

    #[test]
    fn rendering_makes_control_characters_visible_and_keeps_tabs() {
        assert_eq!(render_line(b"ok\tgo\r"), "ok\tgo");
        assert_eq!(render_line(b"\x1b[2Jred\x07"), "\\x1b[2Jred\\x07");
        assert_eq!(render_line(b"a\rb"), "a\\rb");
        assert_eq!(render_line(b"\xff\xfe"), "\u{fffd}\u{fffd}");
        assert_eq!(render_line("\u{85}x".as_bytes()), "\\u{85}x");
        assert_eq!(render_line("héllo".as_bytes()), "héllo");
    }

    #[test]
    fn a_line_written_as_json_is_a_log_line() {
        let l = LineRef {
            id: 7,
            ts: "2026-01-01T00:00:00.000Z",
            host: Some("web1"),
            stream: "stdout",
            bytes: b"say \"hi\"\x1b\xff",
        };
        let mut out = Vec::new();
        l.write_json(&mut out);
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"id": 7, "ts": "2026-01-01T00:00:00.000Z", "host": "web1",
                "stream": "stdout", "line": "say \"hi\"\\x1b\u{fffd}"})
        );
    }
}
