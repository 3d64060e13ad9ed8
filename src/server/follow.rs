//! Following a run's log over server-sent events (`GET /runs/{id}/log?follow=1`).
//!
//! Lines come from the run's live feed as soon as their chunk is written (redacted already:
//! the store only ever sees redacted output), without waiting for the chunk's commit; from
//! the store for what was written before the follower came and what it fell behind on; and
//! the run's status tells when it ended. A page of lines is written as one piece of the
//! body, straight from the chunks.
//!
//! Two framings: one `line` event per line (the first API), or with `batch=1` one `lines`
//! event per run of consecutive lines of one chunk. A host printing a directory listing
//! makes tens of thousands of lines a second; as `line` events each costs a JSON object
//! repeating its time, host and stream, and the follower's parsing, so a line printed just
//! after a listing waited behind it (p99 above 400 ms at 50 hosts). A `lines` event costs
//! that once per chunk.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use tokio::sync::broadcast;

use crate::config::User;
use crate::run::{App, RunError};
use crate::store::{render, LineRef, LiveChunk, StoreError};

/// Lines sent to a follower in one piece from the store: about 100 KiB of events.
const FOLLOW_PAGE: usize = 1000;

/// A comment line sent on a quiet stream, so proxies keep the connection open.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

/// How lines are framed as events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `event: line`, data `{id, ts, host, stream, line}`: one event per line.
    Line,
    /// `event: lines`, data `{id, ts, host, stream, lines: [..]}`: consecutive lines of one
    /// host's stream written together, numbered `id`, `id + 1`, ...
    Batch,
}

/// The batch being written: what a line must share to join it.
struct OpenBatch {
    next: i64,
    ts: String,
    host: Option<String>,
    stream: String,
}

/// Writes lines as events in one framing. A batch stays open while lines continue it;
/// [`Events::close`] ends it, before the body is handed on.
struct Events {
    framing: Framing,
    open: Option<OpenBatch>,
}

impl Events {
    fn new(framing: Framing) -> Events {
        Events {
            framing,
            open: None,
        }
    }

    fn line(&mut self, body: &mut Vec<u8>, l: &LineRef<'_>) {
        if self.framing == Framing::Line {
            body.extend_from_slice(b"event: line\ndata: ");
            l.write_json(body);
            body.extend_from_slice(b"\n\n");
            return;
        }
        let continues = self.open.as_ref().is_some_and(|b| {
            b.next == l.id && b.ts == l.ts && b.host.as_deref() == l.host && b.stream == l.stream
        });
        if continues {
            body.push(b',');
        } else {
            self.close(body);
            // Writing JSON into a Vec cannot fail.
            body.extend_from_slice(b"event: lines\ndata: {\"id\":");
            let _ = write!(body, "{}", l.id);
            body.extend_from_slice(b",\"ts\":");
            let _ = serde_json::to_writer(&mut *body, l.ts);
            body.extend_from_slice(b",\"host\":");
            let _ = serde_json::to_writer(&mut *body, &l.host);
            body.extend_from_slice(b",\"stream\":");
            let _ = serde_json::to_writer(&mut *body, l.stream);
            body.extend_from_slice(b",\"lines\":[");
            self.open = Some(OpenBatch {
                next: l.id,
                ts: l.ts.to_string(),
                host: l.host.map(str::to_string),
                stream: l.stream.to_string(),
            });
        }
        let _ = serde_json::to_writer(&mut *body, render(l.bytes).as_ref());
        if let Some(b) = &mut self.open {
            b.next = l.id + 1;
        }
    }

    fn close(&mut self, body: &mut Vec<u8>) {
        if self.open.take().is_some() {
            body.extend_from_slice(b"]}\n\n");
        }
    }
}

struct Follow {
    app: Arc<App>,
    /// The follower: the final run it gets is the run as it may see it (rule 10).
    user: User,
    id: String,
    after: i64,
    /// The run's chunks as they are written (before they are durable).
    live: broadcast::Receiver<Arc<LiveChunk>>,
    /// Chunks received that cannot be sent yet: lines before them are not sent.
    held: VecDeque<Arc<LiveChunk>>,
    /// Read lines from the store next: at the start, while a gap before a held chunk waits
    /// for its commit, after falling behind the feed, and once a quiet second.
    read_store: bool,
    /// Look at the run's status next (something committed): has the run ended? A follower
    /// in step with the live feed has every line the store could give it, so a commit
    /// costs it at most this one-row read, not a read of the log.
    check_end: bool,
    /// When something was last sent, for keep-alive comments.
    sent: tokio::time::Instant,
    done: bool,
    framing: Framing,
}

impl Follow {
    /// Appends the events of the held chunks that follow on from what was sent.
    fn send_held(&mut self, body: &mut Vec<u8>) {
        let mut events = Events::new(self.framing);
        while let Some(chunk) = self.held.front() {
            if chunk.first_line > self.after + 1 {
                // Lines before it were written before this follower subscribed, or lost to
                // a lag: they come from the store, once committed.
                break;
            }
            self.after = chunk.visit_lines(self.after, |l| events.line(body, &l));
            self.held.pop_front();
        }
        events.close(body);
    }

    /// Takes the chunks already received.
    fn receive(&mut self) {
        use broadcast::error::TryRecvError;
        loop {
            match self.live.try_recv() {
                Ok(chunk) => self.hold(chunk),
                Err(TryRecvError::Lagged(_)) => self.lagged(),
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    fn hold(&mut self, chunk: Arc<LiveChunk>) {
        if chunk.last_line > self.after {
            self.held.push_back(chunk);
        }
    }

    fn lagged(&mut self) {
        self.held.clear();
        self.read_store = true;
    }

    /// Something committed: a gap before a held chunk may be filled now; otherwise only
    /// the run's end is news, and a run this daemon is still carrying out has not ended
    /// (it announces a change once it is no longer active).
    fn committed(&mut self) {
        if !self.held.is_empty() {
            self.read_store = true;
        } else if !self.app.is_active(&self.id) {
            self.check_end = true;
        }
    }
}

/// What one read of the store gave: events, the last line in them, and the run (`None`:
/// no such run; `Some(None)`: still running, or not looked at).
type StoreRead = (Vec<u8>, i64, Option<Option<crate::store::RunRow>>);

/// Reads lines after `after` (when `lines`) and, when there were none, whether the run
/// ended; once it has, the lines it stored last.
fn read_store(
    app: &App,
    user: &User,
    id: &str,
    after: i64,
    lines: bool,
    framing: Framing,
) -> Result<StoreRead, StoreError> {
    let mut body = Vec::new();
    let mut last = after;
    let mut events = Events::new(framing);
    let mut page = |body: &mut Vec<u8>, last: &mut i64| -> Result<usize, StoreError> {
        let n = app.store.visit_lines(id, *last, FOLLOW_PAGE, |l| {
            events.line(body, &l);
            *last = l.id;
        })?;
        events.close(body);
        Ok(n)
    };
    if lines && page(&mut body, &mut last)? > 0 {
        // While output flows, a page costs one indexed read.
        return Ok((body, last, Some(None)));
    }
    // Nothing new: has the run ended? Its last lines commit with or before its final
    // status, so a read of the log after the run's sees all of them. The status alone
    // first: this runs after every commit.
    let run = match app.store.run_status(id)? {
        // Its chain links cut to what the follower may see, as every read of a run.
        Some(s) if s.is_final() => match app.visible_run(user, id) {
            Ok(run) => Some(run),
            Err(RunError::Store(e)) => return Err(e),
            Err(_) => None,
        },
        Some(_) => return Ok((body, last, Some(None))),
        None => None,
    };
    page(&mut body, &mut last)?;
    Ok((body, last, run.map(Some)))
}

/// Server-sent events of a run's log after line `after`, in `framing`, each line once and
/// in order, then one `end` event with the final run when the run is over.
pub(super) fn follow(
    app: Arc<App>,
    user: User,
    id: String,
    after: i64,
    framing: Framing,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    // Subscribed before the first read of the store: every chunk is read, received, or both.
    let live = app.store.follow_live(&id);
    let state = Follow {
        app,
        user,
        id,
        after,
        live,
        held: Default::default(),
        read_store: true,
        check_end: false,
        sent: tokio::time::Instant::now(),
        done: false,
        framing,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let mut body = Vec::new();
            // Subscribe before reading, so a commit between the read and the wait is seen.
            let app = st.app.clone();
            let notified = app.changed.notified();
            st.receive();
            st.send_held(&mut body);
            let mut ended = None;
            if st.read_store || st.check_end {
                let lines = std::mem::take(&mut st.read_store);
                st.check_end = false;
                let (a, user, id) = (st.app.clone(), st.user.clone(), st.id.clone());
                let (after, framing) = (st.after, st.framing);
                let read = tokio::task::spawn_blocking(move || {
                    read_store(&a, &user, &id, after, lines, framing)
                })
                .await;
                let Ok(Ok((read, last, run))) = read else {
                    st.done = true;
                    return Some((
                        Ok(Bytes::from_static(
                            b"event: error\ndata: internal error\n\n",
                        )),
                        st,
                    ));
                };
                let more = last > st.after;
                if more {
                    body.extend_from_slice(&read);
                    st.after = last;
                    // A full page: there may be more.
                    st.read_store = true;
                }
                st.send_held(&mut body);
                match run {
                    None if !more => st.done = true,
                    Some(Some(r)) if !more && r.status.is_final() => {
                        // Everything the run stored is sent; a chunk still held never
                        // committed (its group failed) and is not in the log.
                        st.held.clear();
                        ended = Some(r);
                    }
                    _ => {}
                }
            }
            if let Some(r) = ended {
                if body.is_empty() {
                    st.done = true;
                    body.extend_from_slice(b"event: end\ndata: ");
                    body.extend_from_slice(
                        serde_json::to_string(&r).unwrap_or_default().as_bytes(),
                    );
                    body.extend_from_slice(b"\n\n");
                } else {
                    st.read_store = true;
                }
            }
            if body.is_empty() && !st.done && !st.read_store && !st.check_end {
                tokio::select! {
                    r = st.live.recv() => match r {
                        Ok(chunk) => st.hold(chunk),
                        Err(broadcast::error::RecvError::Lagged(_)) => st.lagged(),
                        // The feed forgot this run (cannot happen while subscribed): poll.
                        Err(broadcast::error::RecvError::Closed) => {
                            st.read_store = true;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                    _ = notified => st.committed(),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => st.read_store = true,
                }
                if st.sent.elapsed() >= KEEP_ALIVE_EVERY {
                    body.extend_from_slice(b": keep-alive\n\n");
                }
            }
            if !body.is_empty() {
                st.sent = tokio::time::Instant::now();
                return Some((Ok(Bytes::from(body)), st));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(id: i64, host: Option<&'a str>, bytes: &'a [u8]) -> LineRef<'a> {
        LineRef {
            id,
            ts: "2026-01-01T00:00:00.000Z",
            host,
            stream: "stdout",
            bytes,
        }
    }

    /// The `data` of each event in `body`, as JSON, with its event type.
    fn events(body: &[u8]) -> Vec<(String, serde_json::Value)> {
        let text = std::str::from_utf8(body).unwrap();
        assert!(text.ends_with("\n\n"), "{text}");
        text.split_terminator("\n\n")
            .map(|e| {
                let (kind, data) = e.split_once('\n').unwrap();
                let kind = kind.strip_prefix("event: ").unwrap().to_string();
                let data = data.strip_prefix("data: ").unwrap();
                (kind, serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    #[test]
    fn a_batch_holds_consecutive_lines_of_one_host_and_stream() {
        let mut body = Vec::new();
        let mut ev = Events::new(Framing::Batch);
        ev.line(&mut body, &line(1, Some("web1"), b"a"));
        ev.line(&mut body, &line(2, Some("web1"), b"b\x1b\xff"));
        // Another host, then a gap in the numbers: new batches.
        ev.line(&mut body, &line(3, Some("web2"), b"c"));
        ev.line(&mut body, &line(5, Some("web2"), b"e"));
        ev.close(&mut body);
        ev.close(&mut body);
        let got = events(&body);
        let host = |h: &str, id: i64, lines: &[&str]| {
            (
                "lines".to_string(),
                serde_json::json!({"id": id, "ts": "2026-01-01T00:00:00.000Z", "host": h,
                    "stream": "stdout", "lines": lines}),
            )
        };
        assert_eq!(
            got,
            vec![
                host("web1", 1, &["a", "b\\x1b\u{fffd}"]),
                host("web2", 3, &["c"]),
                host("web2", 5, &["e"]),
            ]
        );
    }

    #[test]
    fn line_framing_is_one_event_per_line() {
        let mut body = Vec::new();
        let mut ev = Events::new(Framing::Line);
        ev.line(&mut body, &line(1, None, b"a"));
        ev.line(&mut body, &line(2, None, b"b"));
        ev.close(&mut body);
        let got = events(&body);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|(k, _)| k == "line"));
        assert_eq!(got[1].1["line"], "b");
        assert_eq!(got[1].1["id"], 2);
    }
}
