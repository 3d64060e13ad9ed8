//! Redaction of secret values (rule 9), over whole texts and over byte streams.
//!
//! # What is redacted
//! For each secret value, every occurrence of any of these byte strings is replaced by
//! `[redacted]` (leftmost-longest, so a value containing another is hidden whole):
//! - the value itself and its shell-quoted form (what `quote()` puts in a command line);
//!   these two however short the value is: a leak is worse than noise;
//! - for a multi-line value (a key, a certificate): each line on its own (lines end at `\n`,
//!   `\r\n` or `\r`), and the whole value with its line endings rewritten as `\n` and as
//!   `\r\n`, so a PEM body printed with any line ending, or line by line, is caught;
//! - base64 (standard and URL-safe alphabets, with and without padding), and the part of the
//!   base64 that is fixed whatever surrounds the value at each of the three byte alignments,
//!   so `base64` of a file holding the secret anywhere is caught;
//! - hex (lowercase and uppercase);
//! - URL-encoded: every byte but `A-Za-z0-9-._~` as `%XX` (uppercase and lowercase hex), with
//!   a space as `%20` or as `+`, and the form encoding (`*` kept too, space as `+`).
//!
//! Derived forms (lines and encodings) shorter than [`MIN_DERIVED_LEN`] bytes are not
//! patterns: short lines such as `-----END` fragments, `==` or an empty line occur in any
//! output and would redact everything, and the hex of a 2-byte value would redact half of
//! every hex dump. The value itself and its quoted form are always patterns.
//!
//! # What is out of reach
//! A script that transforms a secret on purpose defeats any matcher: reversed, split into
//! parts printed apart, encrypted, hashed, compressed (`gzip | base64`), or in an encoding
//! not listed above (base32, octal, JSON `\u` escapes of every character, UTF-16, ...).
//! Also not caught: hex with separators (`xxd`, `od`, `hexdump -C`), hex or base64 with a
//! line break inside the secret's span (`base64` wraps at 76 columns: a secret longer than
//! about 50 bytes in a longer base64 stream spans a break), unless each wrapped line is
//! itself one of the patterns; URL encoders that keep other reserved characters
//! unescaped (`encodeURIComponent` keeps `!'()*`); lines of a multi-line secret shorter than
//! [`MIN_DERIVED_LEN`] printed apart from the rest of the value; and the forms of a secret
//! in text that was itself re-encoded later (the base64 of the hex of a value).
//!
//! # Streams
//! [`StreamRedactor`] redacts output as it arrives and gives exactly the bytes
//! [`Redactor::redact_bytes`] gives for the whole output, however the output is cut. It holds
//! back only a tail that could still be the start of a pattern (at most the longest pattern
//! less one byte): those bytes wait for more input or for [`StreamRedactor::finish`].

use std::sync::{Arc, OnceLock};

use aho_corasick::automaton::Automaton;
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{Anchored, Input, MatchKind};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;

/// What replaces each occurrence of a secret.
pub const REDACTED: &str = "[redacted]";

/// The shortest derived form (a line of a multi-line value, an encoding) that is redacted.
pub const MIN_DERIVED_LEN: usize = 8;

/// Replaces every occurrence of the given secret values, and of the forms listed in the
/// module documentation, with `[redacted]`. The matcher is built on first use after a value
/// is added; its cost per byte does not grow with the number of secrets.
#[derive(Default, Clone)]
pub struct Redactor {
    values: Vec<String>,
    matcher: OnceLock<Arc<Matcher>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} values [redacted])", self.values.len())
    }
}

impl Redactor {
    /// Adds a value to hide, with its derived forms. Very short values are hidden too: a
    /// leak is worse than noise.
    pub fn add(&mut self, value: &str) {
        if value.is_empty() || self.values.iter().any(|v| v == value) {
            return;
        }
        self.values.push(value.to_string());
        self.matcher = OnceLock::new();
    }

    /// `text` with every known secret value replaced.
    pub fn redact(&self, text: &str) -> String {
        if self.values.is_empty() {
            return text.to_string();
        }
        let out = self.redact_bytes(text.as_bytes());
        // Every pattern is valid UTF-8 (values are `str`, derived forms are ASCII or whole
        // lines), and a match of a valid UTF-8 pattern in valid UTF-8 text starts and ends on
        // character boundaries, so the output is valid UTF-8.
        match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// `data` with every known secret value replaced.
    pub fn redact_bytes(&self, data: &[u8]) -> Vec<u8> {
        self.stream().process(data, true)
    }

    /// A JSON value with every string (and object key) redacted.
    pub fn redact_json(&self, v: &Value) -> Value {
        if self.values.is_empty() {
            return v.clone();
        }
        match v {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.redact_json(x)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (self.redact(k), self.redact_json(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// A stream redactor over the values known now (values added later do not reach it).
    pub fn stream(&self) -> StreamRedactor {
        StreamRedactor {
            matcher: self.matcher(),
            held: Vec::new(),
            failed_emitted: false,
        }
    }

    fn matcher(&self) -> Arc<Matcher> {
        self.matcher
            .get_or_init(|| Arc::new(Matcher::build(&self.values)))
            .clone()
    }
}

/// Redacts one byte stream cut into pieces of any size: the concatenation of what
/// [`push`](Self::push) and [`finish`](Self::finish) return equals
/// [`Redactor::redact_bytes`] of the whole stream.
///
/// Latency: bytes that could still be the start of a secret (at most the longest pattern
/// less one, usually none or a few) are held back until more input decides them or
/// `finish` is called; [`pending`](Self::pending) says how many. A caller flushing on a
/// timer sends what `push` returned; the held-back bytes wait.
pub struct StreamRedactor {
    matcher: Arc<Matcher>,
    held: Vec<u8>,
    /// Fail-closed mode: `[redacted]` has been emitted once for the whole stream.
    failed_emitted: bool,
}

impl std::fmt::Debug for StreamRedactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamRedactor({} bytes pending)", self.held.len())
    }
}

impl StreamRedactor {
    /// Takes the next piece of the stream; returns the redacted bytes safe to emit now.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.process(data, false)
    }

    /// Ends the stream: returns the held-back bytes, redacted.
    pub fn finish(&mut self) -> Vec<u8> {
        self.process(&[], true)
    }

    /// How many input bytes are held back, waiting for more input or `finish`.
    pub fn pending(&self) -> usize {
        self.held.len()
    }

    fn process(&mut self, data: &[u8], at_end: bool) -> Vec<u8> {
        let automaton = match &*self.matcher {
            Matcher::Empty => return data.to_vec(),
            Matcher::Failed => return self.fail_closed(data),
            Matcher::Ready(a) => a,
        };
        let mut out = Vec::with_capacity(self.held.len() + data.len());
        let result = if self.held.is_empty() {
            automaton
                .redact(data, at_end, &mut out)
                .map(|keep| data[keep..].to_vec())
        } else {
            let mut buf = std::mem::take(&mut self.held);
            buf.extend_from_slice(data);
            automaton
                .redact(&buf, at_end, &mut out)
                .map(|keep| buf.split_off(keep))
        };
        match result {
            Ok(held) => {
                self.held = held;
                out
            }
            Err(_) => {
                self.matcher = Arc::new(Matcher::Failed);
                self.held.clear();
                self.fail_closed(b"-")
            }
        }
    }

    /// When no matcher could be built or run, the whole stream is one `[redacted]`.
    fn fail_closed(&mut self, data: &[u8]) -> Vec<u8> {
        if data.is_empty() || self.failed_emitted {
            return Vec::new();
        }
        self.failed_emitted = true;
        REDACTED.as_bytes().to_vec()
    }
}

enum Matcher {
    /// No values: nothing to redact.
    Empty,
    Ready(Box<Patterns>),
    /// The automaton could not be built (beyond its size limits): everything is redacted.
    Failed,
}

impl Matcher {
    fn build(values: &[String]) -> Matcher {
        let mut patterns: Vec<Vec<u8>> = values.iter().flat_map(|v| patterns_of(v)).collect();
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return Matcher::Empty;
        }
        let longest = patterns.iter().map(Vec::len).max().unwrap_or(0);
        let mut in_pattern = [false; 256];
        for b in patterns.iter().flatten() {
            in_pattern[usize::from(*b)] = true;
        }
        match NFA::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
        {
            Ok(nfa) => Matcher::Ready(Box::new(Patterns {
                nfa,
                longest,
                in_pattern,
            })),
            Err(_) => Matcher::Failed,
        }
    }
}

/// The compiled patterns of all values.
struct Patterns {
    /// Leftmost-longest over bytes; an NFA answers both the unanchored search and the
    /// anchored "could a pattern start here" walk.
    nfa: NFA,
    longest: usize,
    /// Bytes that occur in some pattern: a position before a byte outside this set cannot
    /// start a pattern that runs past it.
    in_pattern: [bool; 256],
}

impl Patterns {
    /// Writes `buf` redacted to `out` up to the first position whose matches depend on bytes
    /// not yet seen, and returns that position (`buf.len()` at the end of the stream).
    ///
    /// Why this equals redacting the whole stream: a position `s` is *decided* when every
    /// pattern either occurs at `s` within `buf` or differs from `buf` within it. At decided
    /// positions the matches in `buf` and in the whole stream are the same, so the
    /// leftmost-longest match found from `p` is the whole stream's as long as it starts
    /// before the first undecided position `q`; and if it starts at or after `q`, no match
    /// starts in `p..q` in the whole stream either, so those bytes are emitted as they are.
    fn redact(
        &self,
        buf: &[u8],
        at_end: bool,
        out: &mut Vec<u8>,
    ) -> Result<usize, aho_corasick::MatchError> {
        let undecided = |from: usize| {
            if at_end {
                buf.len()
            } else {
                self.first_undecided(buf, from)
            }
        };
        let mut q = undecided(0);
        let mut p = 0;
        for m in self.nfa.try_find_iter(Input::new(buf))? {
            if m.start() >= q {
                break;
            }
            out.extend_from_slice(&buf[p..m.start()]);
            out.extend_from_slice(REDACTED.as_bytes());
            p = m.end();
            if p > q {
                q = undecided(p);
            }
        }
        out.extend_from_slice(&buf[p..q]);
        Ok(q)
    }

    /// The first position at or after `from` that is not decided (see [`Self::redact`]), or
    /// `buf.len()`. Never later than the true one: holding back more is always correct.
    fn first_undecided(&self, buf: &[u8], from: usize) -> usize {
        let len = buf.len();
        // Every pattern fits before the end from a position `longest` bytes before it.
        let mut lo = from.max((len + 1).saturating_sub(self.longest));
        if lo >= len {
            return len;
        }
        if let Some(i) = buf[lo..]
            .iter()
            .rposition(|b| !self.in_pattern[usize::from(*b)])
        {
            lo += i + 1;
        }
        // A bound on the walk, so repetitive output that resembles a pattern everywhere
        // costs no more than a few passes over the tail; past it, hold back from here.
        let mut budget = 4 * self.longest + 64;
        for s in lo..len {
            match self.could_start(&buf[s..], &mut budget) {
                Some(false) => continue,
                Some(true) | None => return s,
            }
        }
        len
    }

    /// Whether `tail` (running to the end of what is known) could be the start of a pattern
    /// longer than it, or a pattern that a longer one extends; `None` when out of budget.
    fn could_start(&self, tail: &[u8], budget: &mut usize) -> Option<bool> {
        let mut sid = self.nfa.start_state(Anchored::Yes).ok()?;
        for &b in tail {
            if *budget == 0 {
                return None;
            }
            *budget -= 1;
            sid = self.nfa.next_state(Anchored::Yes, sid, b);
            if self.nfa.is_dead(sid) {
                return Some(false);
            }
        }
        Some(true)
    }
}

/// Every byte string redacted for one value (unsorted, may repeat).
fn patterns_of(value: &str) -> Vec<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut always = vec![bytes.to_vec()];
    if let Ok(q) = crate::policy::command::quote_word(value) {
        always.push(q.into_bytes());
    }

    let mut derived: Vec<Vec<u8>> = Vec::new();
    let lines = split_lines(value);
    if lines.len() > 1 {
        derived.extend(lines.iter().map(|l| l.as_bytes().to_vec()));
        derived.push(lines.join("\n").into_bytes());
        derived.push(lines.join("\r\n").into_bytes());
    }
    for engine in [&STANDARD, &URL_SAFE] {
        derived.push(engine.encode(bytes).into_bytes());
    }
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        derived.push(engine.encode(bytes).into_bytes());
        for align in 0..3 {
            derived.push(base64_core(engine, bytes, align));
        }
    }
    derived.push(hex::encode(bytes).into_bytes());
    derived.push(hex::encode_upper(bytes).into_bytes());
    for upper in [true, false] {
        for space_plus in [false, true] {
            derived.push(percent_encode(bytes, is_unreserved, space_plus, upper));
        }
        derived.push(percent_encode(bytes, is_form_kept, true, upper));
    }

    derived.retain(|d| d.len() >= MIN_DERIVED_LEN);
    always.retain(|a| !a.is_empty());
    always.extend(derived);
    always
}

/// The lines of `value`, each line ending (`\n`, `\r\n`, `\r`) removed.
fn split_lines(value: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = value;
    while let Some(i) = rest.find(['\r', '\n']) {
        lines.push(&rest[..i]);
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
    }
    lines.push(rest);
    lines
}

/// The base64 characters of `bytes` that do not depend on what surrounds it when it starts
/// `align` bytes after a 3-byte boundary of a longer encoded stream: the characters made
/// only of the value's bits.
fn base64_core(engine: &impl Engine, bytes: &[u8], align: usize) -> Vec<u8> {
    let mut prefixed = vec![0u8; align];
    prefixed.extend_from_slice(bytes);
    let encoded = engine.encode(&prefixed);
    let first = (8 * align).div_ceil(6);
    let end = (8 * prefixed.len()) / 6;
    encoded
        .as_bytes()
        .get(first..end)
        .unwrap_or_default()
        .to_vec()
}

/// RFC 3986 unreserved characters, which every URL encoder leaves as they are.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// What `application/x-www-form-urlencoded` leaves as it is.
fn is_form_kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_')
}

fn percent_encode(bytes: &[u8], keep: fn(u8) -> bool, space_plus: bool, upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if keep(b) {
            out.push(b);
        } else if b == b' ' && space_plus {
            out.push(b'+');
        } else {
            out.extend_from_slice(&[
                b'%',
                digits[usize::from(b >> 4)],
                digits[usize::from(b & 0xf)],
            ]);
        }
    }
    out
}
