//! Run logs as chunks: each record holds tens of KiB of one host's stream exactly as
//! stored (already redacted), with the run-wide numbers of its first and last line, so a
//! log of millions of lines is thousands of records, pages by line through an index, and
//! gives back its exact bytes. Lines are split and rendered only when read.

use rusqlite::params;
use serde::Serialize;

use super::{now, Store, StoreError, Tx};

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
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
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
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let text = String::from_utf8_lossy(bytes);
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.into_owned();
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
    out
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
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT first_line, ts, host, stream, bytes, last_line FROM log_chunks
             WHERE run_id = ?1 AND last_line > ?2 ORDER BY last_line LIMIT ?3",
        )?;
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < limit {
            let mut rows = stmt.query(params![run_id, cursor, CHUNKS_PER_QUERY])?;
            let mut read = 0;
            while let Some(r) = rows.next()? {
                read += 1;
                let first: i64 = r.get(0)?;
                let ts: String = r.get(1)?;
                let host: Option<String> = r.get(2)?;
                let stream: String = r.get(3)?;
                let bytes = r.get_ref(4)?.as_blob().map_err(rusqlite::Error::from)?;
                cursor = r.get(5)?;
                for (n, line) in (first..).zip(lines(bytes)) {
                    if n <= after {
                        continue;
                    }
                    if out.len() >= limit {
                        return Ok(out);
                    }
                    out.push(LogLine {
                        id: n,
                        ts: ts.clone(),
                        host: host.clone(),
                        stream: stream.clone(),
                        line: render_line(line),
                    });
                }
            }
            if read < CHUNKS_PER_QUERY {
                break;
            }
        }
        Ok(out)
    }

    /// The number of lines in a run's log.
    pub fn log_len(&self, run_id: &str) -> Result<i64, StoreError> {
        let conn = self.lock();
        Ok(conn.query_row(
            "SELECT COALESCE(MAX(last_line), 0) FROM log_chunks WHERE run_id = ?1",
            params![run_id],
            |r| r.get(0),
        )?)
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
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, host, stream, bytes FROM log_chunks
             WHERE run_id = ?1 AND id > ?2 AND (?3 IS NULL OR host = ?3) AND (?4 IS NULL OR stream = ?4)
             ORDER BY id LIMIT ?5",
        )?;
        let rows = stmt
            .query_map(params![run_id, after, host, stream, limit as i64], |r| {
                Ok(RawChunk {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    stream: r.get(2)?,
                    bytes: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
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
        let last: i64 = self.tx.query_row(
            "SELECT COALESCE(MAX(last_line), 0) FROM log_chunks WHERE run_id = ?1",
            params![run_id],
            |r| r.get(0),
        )?;
        if bytes.is_empty() {
            return Ok(last);
        }
        let lines = count_lines(bytes);
        self.tx
            .prepare_cached(
                "INSERT INTO log_chunks (run_id, host, stream, first_line, last_line, ts, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                run_id,
                host,
                stream,
                last + 1,
                last + lines,
                now(),
                bytes
            ])?;
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
    }
}
