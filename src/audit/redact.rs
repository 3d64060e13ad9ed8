//! Redaction of secret values (rule 9), over whole texts and over byte streams.
//!
//! # What is redacted
//! For each secret value, every occurrence of any of these byte strings is replaced by
//! `[redacted]` (leftmost-longest, so a value containing another is hidden whole):
//! - the value itself, its shell-quoted form (what `quote()` puts in a command line) and its
//!   JSON-escaped form (inside a JSON string); these however short the value is: a leak is
//!   worse than noise;
//! - for a multi-line value (a key, a certificate): each line on its own (lines end at `\n`,
//!   `\r\n` or `\r`), and the whole value with its line endings rewritten as `\n`, `\r\n`
//!   and `\r`, with and without its final line endings, so a PEM body printed with any line
//!   ending, or line by line, is caught;
//! - base64 (standard and URL-safe alphabets, with and without padding), and the part of the
//!   base64 that is fixed whatever surrounds the value at each of the three byte alignments,
//!   so `base64` of a file holding the secret anywhere is caught;
//! - hex (lowercase and uppercase);
//! - URL-encoded: every byte but `A-Za-z0-9-._~` as `%XX` (uppercase and lowercase hex), with
//!   a space as `%20` or as `+`, and the form encoding (`*` kept too, space as `+`).
//!
//! Then a second pass catches the base64 and hex forms wrapped over lines, as `base64` (76
//! columns), `openssl base64` (64) and `xxd -p` (60) print them: it matches them in the text
//! with the line ending of every line made only of base64 or hex characters left out, and
//! replaces each line piece of a match with `[redacted]`, keeping the line endings.
//!
//! Values longer than [`MAX_ENCODED_LEN`] have only their lines as derived forms.
//!
//! Derived forms (lines and encodings) shorter than [`MIN_DERIVED_LEN`] bytes are not
//! patterns: short lines such as `-----END` fragments, `==` or an empty line occur in any
//! output and would redact everything, and the hex of a 2-byte value would redact half of
//! every hex dump. The value itself and its quoted and JSON-escaped forms are always
//! patterns.
//!
//! # What is out of reach
//! A script that transforms a secret on purpose defeats any matcher: reversed, split into
//! parts printed apart, encrypted, hashed, compressed (`gzip | base64`), or in an encoding
//! not listed above (base32, octal, JSON `\u` escapes of every character, UTF-16, ...).
//! Also not caught: hex with separators or offsets (`xxd`, `od`, `hexdump -C`); wrapped
//! base64 or hex whose lines carry anything else (a prefix, an indent, a `[redacted]` of
//! another secret on the same line) or are separated by an empty line; URL encoders that
//! keep other reserved characters unescaped (`encodeURIComponent` keeps `!'()*`); lines of a
//! multi-line secret shorter than [`MIN_DERIVED_LEN`] printed apart from the rest of the
//! value; and the forms of a secret in text that was itself re-encoded later (the base64 of
//! the hex of a value). In a longer base64 stream, the one character on each side of the
//! secret's span that mixes its bits with its neighbours' stays: at most 4 bits of the
//! secret each.
//!
//! # Streams
//! [`StreamRedactor`] redacts output as it arrives and gives exactly the bytes
//! [`Redactor::redact_bytes`] gives for the whole output, however the output is cut. It holds
//! back only a tail that could still be the start of a pattern: those bytes wait for more
//! input or for [`StreamRedactor::finish`].

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

/// The longest value whose encodings and other line endings are redacted too. Every form
/// adds about the value's length to the automaton (a 4 KiB value, 20 forms: about 1 MiB);
/// a 256 KiB certificate bundle with them all would take 50 MiB. An RSA-4096 private key
/// (3.2 KiB) fits; a longer value is redacted as itself, quoted, JSON-escaped and by its lines.
pub const MAX_ENCODED_LEN: usize = 4096;

/// Replaces every occurrence of the given secret values, and of the forms listed in the
/// module documentation, with `[redacted]`. The matcher is built on first use after a value
/// is added; its cost per byte does not grow with the number of secrets.
#[derive(Default, Clone)]
pub struct Redactor {
    values: Vec<String>,
    /// Built on first use and shared by clones made before it (each host of a run holds a
    /// clone: one matcher for all, not one each); `add` starts a new one.
    matcher: Arc<OnceLock<Arc<Matcher>>>,
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
        self.matcher = Arc::default();
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
            held_wrapped: Vec::new(),
            wrap_state: Break::LineStart,
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
/// Latency: bytes that could still be the start of a secret are held back until more input
/// decides them or `finish` is called; [`pending`](Self::pending) says how many. Usually
/// none or a few; at most the longest pattern less one, plus for the wrapped forms three
/// times the longest of those (a `\r\n` may follow each character). A caller flushing on a
/// timer sends what `push` returned; the held-back bytes wait.
///
/// A stream redacts the values its [`Redactor`] knew when the stream was made; a value added
/// later (a script's `secret()` while the stream is open) reaches it through
/// [`update`](Self::update).
pub struct StreamRedactor {
    matcher: Arc<Matcher>,
    /// Input not yet decided by the first stage (every form, as it is).
    held: Vec<u8>,
    /// First-stage output not yet decided by the second (encodings across line breaks).
    held_wrapped: Vec<u8>,
    /// Where `held_wrapped` starts in the line-break state machine of [`unwrap_view`].
    wrap_state: Break,
    /// Fail-closed mode: `[redacted]` has been emitted once for the whole stream.
    failed_emitted: bool,
}

impl std::fmt::Debug for StreamRedactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamRedactor({} bytes pending)", self.pending())
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
        self.held.len() + self.held_wrapped.len()
    }

    /// Redacts what comes next with `redactor`'s current values, and what is held back as
    /// far as the first pass goes. Bytes already returned stay as they were: add values
    /// before output can show them.
    pub fn update(&mut self, redactor: &Redactor) {
        self.matcher = redactor.matcher();
    }

    fn process(&mut self, data: &[u8], at_end: bool) -> Vec<u8> {
        let matcher = Arc::clone(&self.matcher);
        let stages = match &*matcher {
            Matcher::Empty => return data.to_vec(),
            Matcher::Failed => return self.fail_closed(data),
            Matcher::Ready(stages) => stages,
        };
        match self.run(stages, data, at_end) {
            Ok(out) => out,
            Err(_) => {
                self.matcher = Arc::new(Matcher::Failed);
                self.held.clear();
                self.held_wrapped.clear();
                self.fail_closed(b"-")
            }
        }
    }

    fn run(
        &mut self,
        stages: &Stages,
        data: &[u8],
        at_end: bool,
    ) -> Result<Vec<u8>, aho_corasick::MatchError> {
        let mut direct = Vec::with_capacity(self.held.len() + data.len());
        if self.held.is_empty() {
            let keep = stages.direct.redact(data, at_end, &mut direct)?;
            self.held = data[keep..].to_vec();
        } else {
            let mut buf = std::mem::take(&mut self.held);
            buf.extend_from_slice(data);
            let keep = stages.direct.redact(&buf, at_end, &mut direct)?;
            self.held = buf.split_off(keep);
        }
        let Some(wrapped) = &stages.wrapped else {
            return Ok(direct);
        };
        let buf = if self.held_wrapped.is_empty() {
            direct
        } else {
            let mut buf = std::mem::take(&mut self.held_wrapped);
            buf.extend_from_slice(&direct);
            buf
        };
        let mut out = Vec::with_capacity(buf.len());
        let (keep, state) = wrapped.redact_wrapped(&buf, self.wrap_state, at_end, &mut out)?;
        self.held_wrapped = buf[keep..].to_vec();
        self.wrap_state = state;
        Ok(out)
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
    Ready(Box<Stages>),
    /// The automaton could not be built (beyond its size limits): everything is redacted.
    Failed,
}

/// Two passes over the stream, each redacting as a stream on its own (so their composition
/// does too): every form as it is, then the encoded forms with line breaks inside.
struct Stages {
    direct: Patterns,
    /// Base64 cores and hex, matched with one line break allowed between any two characters.
    wrapped: Option<Patterns>,
}

impl Matcher {
    fn build(values: &[String]) -> Matcher {
        let direct = values.iter().flat_map(|v| patterns_of(v)).collect();
        let wrapped = values.iter().flat_map(|v| wrappable_forms(v)).collect();
        match (Patterns::build(direct), Patterns::build(wrapped)) {
            (Ok(None), _) => Matcher::Empty,
            (Ok(Some(direct)), Ok(wrapped)) => Matcher::Ready(Box::new(Stages { direct, wrapped })),
            (Err(_), _) | (_, Err(_)) => Matcher::Failed,
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
    /// The first byte of every pattern, and (a bit set of 2^16) the first two bytes of every
    /// pattern longer than one byte: most positions are decided by a lookup, not a walk.
    first: [bool; 256],
    first_two: Box<[u64]>,
    /// For many patterns all at least [`PREFIX_LEN`] long (the wrapped forms of many
    /// secrets), the search starts only where a pattern's first bytes are.
    prefixes: Option<Prefixes>,
}

/// The first [`PREFIX_LEN`] bytes of every pattern, as a Bloom-like bit set over a hash and a
/// sorted list. Over base64 every byte continues some pattern of a few hundred, and the
/// automaton walks deep at every position; a hash of 8 bytes almost never hits.
struct Prefixes {
    bits: Box<[u64]>,
    sorted: Vec<u64>,
}

const PREFIX_LEN: usize = 8;

/// Below this many patterns the automaton's own prefilter is faster.
const PREFIXES_FROM: usize = 64;

impl Prefixes {
    fn build(patterns: &[Vec<u8>]) -> Option<Prefixes> {
        if patterns.len() < PREFIXES_FROM {
            return None;
        }
        let mut sorted = patterns
            .iter()
            .map(|p| p.get(..PREFIX_LEN).map(prefix_word))
            .collect::<Option<Vec<u64>>>()?;
        sorted.sort_unstable();
        sorted.dedup();
        let mut bits = vec![0u64; 1 << 10].into_boxed_slice();
        for w in &sorted {
            let h = prefix_hash(*w);
            bits[h / 64] |= 1 << (h % 64);
        }
        Some(Prefixes { bits, sorted })
    }

    /// Whether some pattern starts with the [`PREFIX_LEN`] bytes at the start of `at`.
    fn may_start(&self, at: &[u8]) -> bool {
        let Some(bytes) = at.get(..PREFIX_LEN) else {
            return false;
        };
        let w = prefix_word(bytes);
        let h = prefix_hash(w);
        self.bits[h / 64] & (1 << (h % 64)) != 0 && self.sorted.binary_search(&w).is_ok()
    }
}

fn prefix_word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; PREFIX_LEN];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// 16 bits of a multiplicative hash.
fn prefix_hash(w: u64) -> usize {
    (w.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48) as usize
}

fn pair_index(a: u8, b: u8) -> usize {
    usize::from(a) << 8 | usize::from(b)
}

impl Patterns {
    /// `None` when there is nothing to match.
    fn build(mut patterns: Vec<Vec<u8>>) -> Result<Option<Patterns>, aho_corasick::BuildError> {
        patterns.sort();
        patterns.dedup();
        let Some(longest) = patterns.iter().map(Vec::len).max() else {
            return Ok(None);
        };
        let mut in_pattern = [false; 256];
        for b in patterns.iter().flatten() {
            in_pattern[usize::from(*b)] = true;
        }
        let mut first = [false; 256];
        let mut first_two = vec![0u64; 1 << 10].into_boxed_slice();
        for p in &patterns {
            first[usize::from(p[0])] = true;
            if let Some(&second) = p.get(1) {
                let pair = pair_index(p[0], second);
                first_two[pair / 64] |= 1 << (pair % 64);
            }
        }
        let nfa = NFA::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)?;
        Ok(Some(Patterns {
            nfa,
            longest,
            in_pattern,
            first,
            first_two,
            prefixes: Prefixes::build(&patterns),
        }))
    }

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
        let mut p = 0;
        let q = self.scan(buf, at_end, |start, end| {
            out.extend_from_slice(&buf[p..start]);
            out.extend_from_slice(REDACTED.as_bytes());
            p = end;
        })?;
        out.extend_from_slice(&buf[p..q]);
        Ok(q)
    }

    /// Calls `found(start, end)` for each match of the whole stream in `buf` that is decided,
    /// in order, and returns the first undecided position (`buf.len()` at the end).
    fn scan(
        &self,
        buf: &[u8],
        at_end: bool,
        mut found: impl FnMut(usize, usize),
    ) -> Result<usize, aho_corasick::MatchError> {
        let undecided = |from: usize| {
            if at_end {
                buf.len()
            } else {
                self.first_undecided(buf, from)
            }
        };
        let mut q = undecided(0);
        if let Some(prefixes) = &self.prefixes {
            // Leftmost-longest by hand: the longest match anchored at each position where a
            // pattern may start, from the end of the last one.
            let mut at = 0;
            while at < q {
                if prefixes.may_start(&buf[at..]) {
                    let input = Input::new(buf).range(at..).anchored(Anchored::Yes);
                    if let Some(m) = self.nfa.try_find(&input)? {
                        found(m.start(), m.end());
                        if m.end() > q {
                            q = undecided(m.end());
                        }
                        at = m.end();
                        continue;
                    }
                }
                at += 1;
            }
            return Ok(q);
        }
        for m in self.nfa.try_find_iter(Input::new(buf))? {
            if m.start() >= q {
                break;
            }
            found(m.start(), m.end());
            if m.end() > q {
                q = undecided(m.end());
            }
        }
        Ok(q)
    }

    /// [`Self::redact`] for the second stage: matches `buf` with the line ending of each line
    /// of only encoded characters left out (see [`unwrap_view`]), and writes each matched line
    /// piece as `[redacted]`, keeping the line endings. Returns the first undecided position
    /// of `buf` and the line state there.
    fn redact_wrapped(
        &self,
        buf: &[u8],
        state: Break,
        at_end: bool,
        out: &mut Vec<u8>,
    ) -> Result<(usize, Break), aho_corasick::MatchError> {
        let view = unwrap_view(buf, state);
        if view.left_out.is_empty() {
            // Every form is also a first-stage pattern, and the first stage leaves none whole
            // in its output: a match here must span a line ending left out. With none in
            // `buf`, nothing is decided but what no pattern can start.
            let cut = if at_end {
                buf.len()
            } else {
                self.first_undecided(buf, 0)
            };
            out.extend_from_slice(&buf[..cut]);
            return Ok((cut, break_state_at(buf, state, cut)));
        }
        // The position in `buf` of the view's byte `v`: `v` plus the line-ending bytes left
        // out before it.
        let origin = |v: usize| v + view.left_out.partition_point(|&g| g <= v);
        let mut p = 0;
        let q = self.scan(&view.bytes, at_end, |start, end| {
            let (from, to) = (origin(start), origin(end - 1) + 1);
            out.extend_from_slice(&buf[p..from]);
            let mut in_text = false;
            for &b in &buf[from..to] {
                if is_line_break(b) {
                    out.push(b);
                    in_text = false;
                } else if !in_text {
                    out.extend_from_slice(REDACTED.as_bytes());
                    in_text = true;
                }
            }
            p = to;
        })?;
        let cut = if q < view.bytes.len() {
            origin(q)
        } else {
            buf.len()
        };
        out.extend_from_slice(&buf[p..cut]);
        Ok((cut, break_state_at(buf, state, cut)))
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
            let may_start = match buf.get(s + 1) {
                Some(&second) => {
                    let pair = pair_index(buf[s], second);
                    self.first_two[pair / 64] & (1 << (pair % 64)) != 0
                }
                None => self.first[usize::from(buf[s])],
            };
            if !may_start {
                continue;
            }
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

/// Where a byte stands among lines, for [`unwrap_view`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Break {
    /// At the start of a line.
    LineStart,
    /// In a line of only [`is_encoded`] characters so far, as `base64` and `xxd -p` print:
    /// its line ending is left out of the view.
    Encoded,
    /// In a line with some other character: its line ending stays.
    Other,
    /// After a `\r` left out: a `\n` here completes that line ending and is left out too.
    AfterCr,
}

fn is_line_break(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

/// The characters of base64 (both alphabets, and padding) and hex.
fn is_encoded(b: u8) -> bool {
    // Without short-circuits, so that a loop over a line vectorizes.
    let lower = b | 0x20;
    (lower.wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'+')
        | (b == b'/')
        | (b == b'-')
        | (b == b'_')
        | (b == b'=')
}

/// The state after byte `b`, and whether `b` is left out of the view.
fn next_break(state: Break, b: u8) -> (Break, bool) {
    match (state, b) {
        (Break::Encoded, b'\r') => (Break::AfterCr, true),
        (Break::Encoded | Break::AfterCr, b'\n') => (Break::LineStart, true),
        (_, b'\r' | b'\n') => (Break::LineStart, false),
        (Break::Other, _) => (Break::Other, false),
        (_, b) if is_encoded(b) => (Break::Encoded, false),
        _ => (Break::Other, false),
    }
}

/// `buf` as the second stage matches it.
struct View<'a> {
    /// `buf` without the line ending (`\n`, `\r\n` or `\r`) of each non-empty line made
    /// only of encoded characters, so wrapped base64 or hex reads as one line.
    bytes: std::borrow::Cow<'a, [u8]>,
    /// For each byte left out, how many view bytes came before it (ascending).
    left_out: Vec<usize>,
}

/// `buf` (starting in `state`) with line endings left out as [`View::bytes`] says. A view byte
/// stands for at most 3 bytes of `buf` (itself and a `\r\n` before it).
fn unwrap_view(buf: &[u8], mut state: Break) -> View<'_> {
    let mut left_out = Vec::new();
    let mut i = 0;
    while i < buf.len() {
        // The same as `next_break` byte by byte, with the runs that change nothing skipped:
        // the rest of a line with other characters, and encoded characters in an encoded one.
        let line_end = || memchr::memchr2(b'\n', b'\r', &buf[i..]).map_or(buf.len(), |k| i + k);
        match state {
            Break::Other if !is_line_break(buf[i]) => i = line_end(),
            Break::Encoded if !is_line_break(buf[i]) => {
                let end = line_end();
                // No early exit: a whole line at a time vectorizes.
                let encoded = buf[i..end].iter().fold(true, |all, &b| all & is_encoded(b));
                if !encoded {
                    state = Break::Other;
                }
                i = end;
            }
            _ => {
                let (next, out) = next_break(state, buf[i]);
                if out {
                    // Its view position: the bytes before it less those left out.
                    left_out.push(i - left_out.len());
                }
                state = next;
                i += 1;
            }
        }
    }
    if left_out.is_empty() {
        return View {
            bytes: std::borrow::Cow::Borrowed(buf),
            left_out,
        };
    }
    let mut bytes = Vec::with_capacity(buf.len() - left_out.len());
    let mut from = 0;
    for (k, &v) in left_out.iter().enumerate() {
        let at = v + k;
        bytes.extend_from_slice(&buf[from..at]);
        from = at + 1;
    }
    bytes.extend_from_slice(&buf[from..]);
    View {
        bytes: std::borrow::Cow::Owned(bytes),
        left_out,
    }
}

/// The line state before `buf[cut]`, `buf` starting in `state`.
fn break_state_at(buf: &[u8], state: Break, cut: usize) -> Break {
    // After a `\n` a line starts, whatever came before.
    let (start, mut state) = match buf[..cut].iter().rposition(|&b| b == b'\n') {
        Some(i) => (i + 1, Break::LineStart),
        None => (0, state),
    };
    for &b in &buf[start..cut] {
        state = next_break(state, b).0;
    }
    state
}

/// The forms the second stage matches across line breaks: the base64 cores (both
/// alphabets, each alignment) and hex, as `base64` and `xxd -p` wrap them.
fn wrappable_forms(value: &str) -> Vec<Vec<u8>> {
    let bytes = value.as_bytes();
    if bytes.len() > MAX_ENCODED_LEN {
        return Vec::new();
    }
    let mut out = Vec::new();
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        for align in 0..3 {
            out.push(base64_core(engine, bytes, align));
        }
    }
    out.push(hex::encode(bytes).into_bytes());
    out.push(hex::encode_upper(bytes).into_bytes());
    out.retain(|f| f.len() >= MIN_DERIVED_LEN);
    out
}

/// Every byte string redacted for one value (unsorted, may repeat).
fn patterns_of(value: &str) -> Vec<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut always = vec![bytes.to_vec()];
    if let Ok(q) = crate::policy::command::quote_word(value) {
        always.push(q.into_bytes());
    }
    // As a JSON string shows it (an API response body echoing it, `to_json` of a map).
    if let Ok(json) = serde_json::to_string(value) {
        if let Some(inner) = json.strip_prefix('"').and_then(|j| j.strip_suffix('"')) {
            always.push(inner.as_bytes().to_vec());
        }
    }

    let mut derived: Vec<Vec<u8>> = Vec::new();
    let lines = split_lines(value);
    if lines.len() > 1 {
        derived.extend(lines.iter().map(|l| l.as_bytes().to_vec()));
    }
    if bytes.len() <= MAX_ENCODED_LEN {
        derived.extend(other_line_endings(lines));
        derived.extend(encodings(bytes));
    }
    derived.retain(|d| d.len() >= MIN_DERIVED_LEN);
    always.retain(|a| !a.is_empty());
    always.extend(derived);
    always
}

/// A multi-line value with its line endings rewritten as `\n`, `\r\n` and `\r`, with and
/// without its final ones.
fn other_line_endings(mut lines: Vec<&str>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while lines.len() > 1 {
        for ending in ["\n", "\r\n", "\r"] {
            out.push(lines.join(ending).into_bytes());
        }
        if lines.last() != Some(&"") {
            break;
        }
        lines.pop();
    }
    out
}

/// base64 (both alphabets, padded or not, and the cores at each alignment), hex, and
/// URL-encoded forms of `bytes`.
fn encodings(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for engine in [&STANDARD, &URL_SAFE] {
        out.push(engine.encode(bytes).into_bytes());
    }
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(bytes).into_bytes());
        for align in 0..3 {
            out.push(base64_core(engine, bytes, align));
        }
    }
    out.push(hex::encode(bytes).into_bytes());
    out.push(hex::encode_upper(bytes).into_bytes());
    for upper in [true, false] {
        for space_plus in [false, true] {
            out.push(percent_encode(bytes, is_unreserved, space_plus, upper));
        }
        out.push(percent_encode(bytes, is_form_kept, true, upper));
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: a fixed-seed generator, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    /// A PEM-shaped value (not a real key) whose last body line is shorter than
    /// [`MIN_DERIVED_LEN`], as real keys' often are.
    const PEM: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\n\
        b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
        QyNTUxOQAAACBc3R1ZmZlZC1mYWtlLWtleS1mb3ItdGVzdHMtb25seS0wMDAwMDAwMAAAAJ\n\
        hmYWtlZmFrZWZha2VmYWtlZmFrZWZha2VmYWtlZmFrZWZha2VmYWtlZmFrZWZha2VmYWtl\n\
        AAAE=\n\
        -----END OPENSSH PRIVATE KEY-----\n";

    fn body_lines() -> Vec<&'static str> {
        PEM.lines().filter(|l| l.len() >= MIN_DERIVED_LEN).collect()
    }

    fn redactor(values: &[&str]) -> Redactor {
        let mut r = Redactor::default();
        for v in values {
            r.add(v);
        }
        r
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
    }

    /// The stream cut at the given lengths (cycled), pushed and finished.
    fn streamed(r: &Redactor, input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut s = r.stream();
        // Each stage holds back less than its longest pattern; a byte of the second stage's
        // view stands for at most 3 bytes (itself after a `\r\n`), plus a final line ending.
        let bound = match &*s.matcher {
            Matcher::Ready(stages) => {
                stages.direct.longest - 1
                    + stages
                        .wrapped
                        .as_ref()
                        .map_or(0, |w| 3 * (w.longest - 1) + 2)
            }
            _ => 0,
        };
        let mut out = Vec::new();
        let mut rest = input;
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at((*cut).min(rest.len()));
            out.extend(s.push(now));
            assert!(s.pending() <= bound, "held {} bytes", s.pending());
            rest = later;
        }
        out.extend(s.finish());
        assert_eq!(s.pending(), 0);
        out
    }

    /// Leftmost-longest matches, found the slow, obvious way.
    fn naive_matches(patterns: &[Vec<u8>], input: &[u8]) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        let mut p = 0;
        while p < input.len() {
            let longest = patterns
                .iter()
                .filter(|pat| input[p..].starts_with(pat))
                .map(Vec::len)
                .max();
            match longest {
                Some(n) => {
                    found.push((p, p + n));
                    p += n;
                }
                None => p += 1,
            }
        }
        found
    }

    /// Both stages, the slow, obvious way (byte by byte, searching everywhere): every form
    /// replaced; then, in the text with the line ending of each line of only encoded
    /// characters taken out, every wrappable form, each of its line pieces replaced and its
    /// line endings kept.
    fn naive(values: &[String], input: &[u8]) -> Vec<u8> {
        let direct: Vec<Vec<u8>> = values.iter().flat_map(|v| patterns_of(v)).collect();
        let mut first = Vec::new();
        let mut p = 0;
        for (start, end) in naive_matches(&direct, input) {
            first.extend_from_slice(&input[p..start]);
            first.extend_from_slice(REDACTED.as_bytes());
            p = end;
        }
        first.extend_from_slice(&input[p..]);

        let wrapped: Vec<Vec<u8>> = values.iter().flat_map(|v| wrappable_forms(v)).collect();
        let (mut view, mut origin, mut state) = (Vec::new(), Vec::new(), Break::LineStart);
        for (i, &b) in first.iter().enumerate() {
            let (next, left_out) = next_break(state, b);
            state = next;
            if !left_out {
                view.push(b);
                origin.push(i);
            }
        }
        let mut out = Vec::new();
        let mut p = 0;
        for (start, end) in naive_matches(&wrapped, &view) {
            let (from, to) = (origin[start], origin[end - 1] + 1);
            out.extend_from_slice(&first[p..from]);
            for piece in first[from..to].split_inclusive(|b| is_line_break(*b)) {
                match piece.iter().position(|b| is_line_break(*b)) {
                    Some(0) => out.extend_from_slice(piece),
                    Some(_) => {
                        out.extend_from_slice(REDACTED.as_bytes());
                        out.push(piece[piece.len() - 1]);
                    }
                    None => out.extend_from_slice(REDACTED.as_bytes()),
                }
            }
            p = to;
        }
        out.extend_from_slice(&first[p..]);
        out
    }

    #[test]
    fn a_pem_key_never_survives_however_it_is_printed() {
        // As configured with its final newline, and as a secret file is read (trimmed).
        for secret in [PEM, PEM.trim_end()] {
            pem_cases(secret);
        }
    }

    fn pem_cases(secret: &str) {
        let r = redactor(&[secret]);
        let crlf = PEM.replace('\n', "\r\n");
        let cr = PEM.replace('\n', "\r");
        let json_escaped = serde_json::to_string(PEM).unwrap();
        let each_line_alone: String = PEM.lines().map(|l| format!("log: {l} !\n")).collect();
        // (how it is printed, how it is cut, whether the short last body line may remain)
        let cases: Vec<(&str, String, Vec<usize>, bool)> = vec![
            (
                "cat",
                format!("$ cat key\n{PEM}$ "),
                vec![usize::MAX],
                false,
            ),
            (
                "without the last newline",
                PEM.trim_end().into(),
                vec![usize::MAX],
                false,
            ),
            (
                "printf with CRLF",
                format!("x{crlf}y"),
                vec![usize::MAX],
                false,
            ),
            ("CR line endings", cr, vec![usize::MAX], false),
            ("CRLF in 1-byte reads", crlf.clone(), vec![1], false),
            ("cut every 7 bytes", format!("a {PEM} b"), vec![7], false),
            ("cut inside a line", PEM.into(), vec![50, 3, 90], false),
            (
                "line by line in separate pushes",
                PEM.into(),
                PEM.split_inclusive('\n').map(str::len).collect(),
                false,
            ),
            ("JSON-escaped", json_escaped, vec![usize::MAX], false),
            (
                "each line alone among other text",
                each_line_alone,
                vec![5],
                true,
            ),
        ];
        for (what, printed, cuts, short_line_may_remain) in cases {
            let out = streamed(&r, printed.as_bytes(), &cuts);
            assert_eq!(out, r.redact_bytes(printed.as_bytes()), "{what}");
            for line in body_lines() {
                assert!(
                    !contains(&out, line.as_bytes()),
                    "{what}: {line} in {out:?}"
                );
            }
            assert!(contains(&out, REDACTED.as_bytes()), "{what}");
            let short_line = contains(&out, b"AAAE=");
            assert!(short_line_may_remain || !short_line, "{what}: {out:?}");
        }
        // Two `log()` calls, each redacted on its own: every line but the short one goes.
        let (first, second) = PEM.split_at(PEM.find("QyNTUx").unwrap());
        let out = format!("{}{}", r.redact(first), r.redact(second));
        for line in body_lines() {
            assert!(!out.contains(line), "{line} in {out}");
        }
    }

    #[test]
    fn encoded_forms_are_redacted() {
        let secret = "s3cr3t tok/en+?=&42";
        let bytes = secret.as_bytes();
        let r = redactor(&[secret]);
        let std_pad = STANDARD.encode(bytes);
        let url_nopad = URL_SAFE_NO_PAD.encode(bytes);
        let echo_base64 = STANDARD.encode(format!("{secret}\n"));
        let cases: Vec<(&str, String)> = vec![
            ("base64", std_pad.clone()),
            (
                "base64 without padding",
                std_pad.trim_end_matches('=').into(),
            ),
            ("URL-safe base64", URL_SAFE.encode(bytes)),
            ("URL-safe base64 without padding", url_nopad),
            ("echo | base64 (a trailing newline)", echo_base64),
            ("hex", hex::encode(bytes)),
            ("HEX", hex::encode_upper(bytes)),
            ("percent, %20", "s3cr3t%20tok%2Fen%2B%3F%3D%2642".into()),
            ("percent, +", "s3cr3t+tok%2Fen%2B%3F%3D%2642".into()),
            (
                "percent, lowercase",
                "s3cr3t%20tok%2fen%2b%3f%3d%2642".into(),
            ),
            (
                "shell-quoted",
                crate::policy::command::quote_word(secret).unwrap(),
            ),
        ];
        for (what, form) in cases {
            let printed = format!("value={form}&next=1");
            let out = r.redact(&printed);
            assert!(
                out.starts_with("value=[redacted]"),
                "{what}: {printed} -> {out}"
            );
            assert_eq!(
                streamed(&r, printed.as_bytes(), &[3]),
                out.as_bytes(),
                "{what}"
            );
        }
    }

    #[test]
    fn base64_of_a_file_holding_the_secret_anywhere_is_redacted() {
        for secret in [
            "correct horse battery stapl",
            "correct horse battery staple",
            "correct horse battery staple!",
        ] {
            let r = redactor(&[secret]);
            let n = secret.len();
            for before in 0..7 {
                for after in 0..4 {
                    let mut file = vec![b'#'; before];
                    file.extend_from_slice(secret.as_bytes());
                    file.extend(std::iter::repeat_n(b'~', after));
                    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                        let encoded = engine.encode(&file);
                        // Everything but the characters that mix the secret's bits with its
                        // neighbours' (one on each side at most) is redacted; at the end of a
                        // whole encoding the value's own full form takes the padding too.
                        let head = &encoded[..(8 * before).div_ceil(6)];
                        let tail = &encoded[(8 * (before + n)) / 6..];
                        let out = r.redact(&encoded);
                        let whole_form = before % 3 == 0 && after == 0;
                        let want =
                            format!("{head}{REDACTED}{}", if whole_form { "" } else { tail });
                        assert_eq!(out, want, "{n} bytes, {before}+{after}: {encoded}");
                    }
                }
            }
        }
    }

    /// `data` encoded, then wrapped every `width` characters with `ending`.
    fn wrapped(encoded: &str, width: usize, ending: &str) -> String {
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(width)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        lines.join(ending) + ending
    }

    #[test]
    fn wrapped_base64_and_hex_of_a_file_holding_the_secret_are_redacted() {
        let token = "ghp_R2d2C3poBB8TokenOfFortyBytesExactly00";
        let r = redactor(&[token, PEM]);
        for before in 0..80 {
            let mut file = "x".repeat(before).into_bytes();
            file.extend_from_slice(token.as_bytes());
            file.extend_from_slice(b" and more of the file after it");
            file.extend_from_slice(PEM.as_bytes());
            file.extend_from_slice(b"end");
            // (what prints it, the output, the form that must not survive, unwrapped)
            let cases = [
                ("base64", wrapped(&STANDARD.encode(&file), 76, "\n"), 0),
                (
                    "base64 | unix2dos",
                    wrapped(&STANDARD.encode(&file), 76, "\r\n"),
                    0,
                ),
                (
                    "openssl base64",
                    wrapped(&STANDARD.encode(&file), 64, "\n"),
                    0,
                ),
                ("xxd -p", wrapped(&hex::encode(&file), 60, "\n"), 1),
            ];
            for (what, printed, kind) in cases {
                let out = r.redact(&printed);
                assert_eq!(streamed(&r, printed.as_bytes(), &[1000, 7]), out.as_bytes());
                let unwrapped: String = out.split(['\r', '\n']).collect();
                for (value, at) in [(token, before), (PEM, before + token.len() + 30)] {
                    let form = if kind == 0 {
                        base64_core(&STANDARD, value.as_bytes(), at % 3)
                    } else {
                        hex::encode(value).into_bytes()
                    };
                    let form = String::from_utf8(form).unwrap();
                    // No run of 8 characters of the form is left, even across lines.
                    for piece in form.as_bytes().windows(8) {
                        let piece = std::str::from_utf8(piece).unwrap();
                        assert!(
                            !unwrapped.contains(piece),
                            "{what}, {before}: {piece} in {out}"
                        );
                    }
                }
                assert_eq!(
                    out.lines().count(),
                    printed.lines().count(),
                    "{what}: lines kept"
                );
            }
        }
    }

    #[test]
    fn encoded_characters_are_base64_and_hex() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"+/-_=".contains(&b);
            assert_eq!(is_encoded(b), want, "{b:#04x}");
        }
    }

    #[test]
    fn an_empty_line_is_not_a_wrap() {
        let r = redactor(&["correct horse battery staple"]);
        let hex = hex::encode("correct horse battery staple");
        let split = format!("{}\n\n{}", &hex[..20], &hex[20..]);
        assert_eq!(r.redact(&split), split);
        let wrapped = format!("{}\n{}", &hex[..20], &hex[20..]);
        assert_eq!(r.redact(&wrapped), "[redacted]\n[redacted]");
        let wrapped = format!("{}\r\n{}\r\n\r\nnext", &hex[..20], &hex[20..]);
        assert_eq!(r.redact(&wrapped), "[redacted]\r\n[redacted]\r\n\r\nnext");
    }

    #[test]
    fn a_long_value_is_redacted_by_its_lines_not_its_encodings() {
        let line = "MIIFazCCA1OgAwIBAgIRAIIQz7DSQONZRGPgu2OCiwAwDQYJKoZIhvcNAQELBQAw";
        let bundle: String = (0..80).map(|i| format!("{line}{i:02}\n")).collect();
        assert!(bundle.len() > MAX_ENCODED_LEN);
        let r = redactor(&[&bundle]);
        assert!(
            patterns_of(&bundle).len() < 90,
            "{}",
            patterns_of(&bundle).len()
        );
        assert_eq!(
            r.redact(&bundle.replace('\n', "\r\n")),
            "[redacted]\r\n".repeat(80)
        );
        let hex = hex::encode(&bundle);
        assert_eq!(r.redact(&hex), hex, "no longer a pattern");
    }

    #[test]
    fn values_are_literal_bytes_not_patterns() {
        let special = r"a.*b[c](d)$^\|?+{1}";
        let r = redactor(&[special]);
        assert_eq!(r.redact("axxb and a.*b"), "axxb and a.*b");
        assert_eq!(r.redact(&format!("<{special}>")), "<[redacted]>");
        let json = serde_json::json!({ "password": special }).to_string();
        assert_eq!(r.redact(&json), r#"{"password":"[redacted]"}"#, "{json}");
    }

    #[test]
    fn a_value_inside_another_is_hidden_whole_and_alone() {
        let r = redactor(&["abc", "abcdef", "zzabcdefzz", "cdefgh"]);
        let cases = [
            ("x abcdef y abc", "x [redacted] y [redacted]"),
            ("zzabcdefzz", "[redacted]"),
            ("zzabcdefz", "zz[redacted]z"),
            ("abcdefgh", "[redacted]gh"),
            ("ab cdefgh", "ab [redacted]"),
        ];
        for (input, want) in cases {
            assert_eq!(r.redact(input), want, "{input}");
            assert_eq!(streamed(&r, input.as_bytes(), &[1]), want.as_bytes());
        }
    }

    #[test]
    fn empty_and_one_byte_values() {
        let mut r = redactor(&[""]);
        assert_eq!(r.redact("anything"), "anything");
        assert_eq!(streamed(&r, b"anything", &[2]), b"anything");
        // A 1-byte secret is hidden wherever it occurs (a leak is worse than noise); its
        // encodings are too short to be patterns.
        r.add("x");
        assert_eq!(r.redact("a x b eA== 78"), "a [redacted] b eA== 78");
        assert_eq!(streamed(&r, b"xx", &[1]), b"[redacted][redacted]");
    }

    #[test]
    fn utf8_split_across_pushes_is_not_corrupted() {
        let secret = "pässwörd-€-𝄞-ü";
        let r = redactor(&[secret]);
        let text = format!("€ before {secret} ü after 𝄞 {secret}€");
        let want = "€ before [redacted] ü after 𝄞 [redacted]€";
        for cut in 1..text.len() {
            let out = streamed(&r, text.as_bytes(), &[cut]);
            assert_eq!(String::from_utf8(out).unwrap(), want, "cut {cut}");
        }
        for first in 0..text.len() {
            let out = streamed(&r, text.as_bytes(), &[first, usize::MAX]);
            assert_eq!(String::from_utf8(out).unwrap(), want, "first {first}");
        }
        // The same with the secret's percent-encoded form, cut inside its escapes.
        let encoded = String::from_utf8(percent_encode(
            secret.as_bytes(),
            is_unreserved,
            false,
            true,
        ))
        .unwrap();
        for cut in 1..20 {
            assert_eq!(
                streamed(&r, encoded.as_bytes(), &[cut]),
                REDACTED.as_bytes()
            );
        }
    }

    #[test]
    fn only_what_could_start_a_secret_is_held_back() {
        let r = redactor(&["hunter2-hunter2", PEM]);
        let mut s = r.stream();
        // Output ending in text that begins no pattern goes out whole.
        assert_eq!(s.push(b"build ok\n"), b"build ok\n");
        assert_eq!(s.pending(), 0);
        assert_eq!(s.push(b"progress 42% "), b"progress 42% ");
        // A tail that could be the start of a secret waits.
        assert_eq!(s.push(b"user hunt"), b"user ");
        assert_eq!(s.pending(), 4);
        assert_eq!(s.push(b"er2-hunter2 done"), b"[redacted] done");
        assert_eq!(s.push(b" -----BEGIN"), b" ");
        assert_eq!(s.pending(), 10);
        assert_eq!(s.finish(), b"-----BEGIN");
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn values_added_later_rebuild_the_matcher_but_not_open_streams() {
        let mut r = Redactor::default();
        assert_eq!(r.redact("token abcdefgh"), "token abcdefgh");
        let mut before = r.stream();
        r.add("abcdefgh");
        assert_eq!(r.redact("token abcdefgh"), "token [redacted]");
        assert_eq!(before.push(b"abcdefgh"), b"abcdefgh");
        // An update brings the values added since, also to the bytes held back.
        let (mut stale, mut updated) = (r.stream(), r.stream());
        assert_eq!(stale.push(b"x abcdef"), b"x ");
        assert_eq!(updated.push(b"x abcdef"), b"x ");
        r.add("abcdefXY");
        updated.update(&r);
        assert_eq!(stale.push(b"XY abc"), b"abcdefXY ");
        assert_eq!(updated.push(b"XY abc"), b"[redacted] ");
        assert_eq!(updated.finish(), b"abc");
        let copy = r.clone();
        r.add("token");
        assert_eq!(r.redact("token abcdefgh"), "[redacted] [redacted]");
        assert_eq!(copy.redact("token abcdefgh"), "token [redacted]");
        assert!(!format!("{r:?}").contains("token"), "{r:?}");
    }

    #[test]
    fn clones_share_one_matcher_until_a_value_is_added() {
        let shared = redactor(&["first-secret"]);
        let (a, mut b) = (shared.clone(), shared.clone());
        assert!(Arc::ptr_eq(&a.matcher(), &shared.matcher()));
        assert!(Arc::ptr_eq(&b.matcher(), &shared.matcher()));
        b.add("first-secret");
        assert!(
            Arc::ptr_eq(&b.matcher(), &shared.matcher()),
            "a known value changes nothing"
        );
        b.add("second-secret");
        assert!(!Arc::ptr_eq(&b.matcher(), &shared.matcher()));
        assert_eq!(b.redact("second-secret"), REDACTED);
        assert_eq!(a.redact("second-secret"), "second-secret");
    }

    #[test]
    fn redact_json_reaches_keys_and_nested_strings() {
        let r = redactor(&["sekrit-value"]);
        let v =
            serde_json::json!({"sekrit-value": ["x sekrit-value", {"k": "sekrit-value"}], "n": 1});
        let want = serde_json::json!({"[redacted]": ["x [redacted]", {"k": "[redacted]"}], "n": 1});
        assert_eq!(r.redact_json(&v), want);
    }

    #[test]
    fn output_resembling_a_long_secret_everywhere_stays_bounded_and_exact() {
        // Every position of the output is a prefix of the secret: the walk that decides what
        // to hold back runs out of budget and falls back to holding back more, never less.
        let secret = format!("{}b", "a".repeat(300));
        let mut input = "a".repeat(5000);
        input.push_str(&secret);
        input.push_str(&"a".repeat(700));
        // Alone, and among enough long values that the search goes by prefixes.
        let others: Vec<String> = (0..30).map(|i| format!("other-secret-{i:04}")).collect();
        let mut values: Vec<&str> = vec![&secret];
        for r in [redactor(&values), {
            values.extend(others.iter().map(String::as_str));
            redactor(&values)
        }] {
            let out = streamed(&r, input.as_bytes(), &[100, 1, 37]);
            assert_eq!(out, r.redact_bytes(input.as_bytes()));
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("{}[redacted]{}", "a".repeat(5000), "a".repeat(700))
            );
        }
    }

    #[test]
    fn a_matcher_that_cannot_be_built_redacts_everything() {
        let mut s = StreamRedactor {
            matcher: Arc::new(Matcher::Failed),
            held: Vec::new(),
            held_wrapped: Vec::new(),
            wrap_state: Break::LineStart,
            failed_emitted: false,
        };
        assert_eq!(s.push(b""), b"");
        assert_eq!(s.push(b"secret"), REDACTED.as_bytes());
        assert_eq!(s.push(b"more"), b"");
        assert_eq!(s.finish(), b"");
    }

    #[test]
    fn redactors_move_across_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Redactor>();
        send_sync::<StreamRedactor>();
    }

    /// The stream equals the whole, and the whole equals the obvious algorithm, for random
    /// secrets (overlapping, nested, multi-line) at random places and random cuts.
    #[test]
    fn any_split_of_the_stream_redacts_as_the_whole() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let fixed = [
            "abcdef",
            "cdefgh",
            "abc",
            "defabc",
            "aaaaaaab",
            PEM,
            "line one\r\nline two",
        ];
        let alphabet = b"abcdefgh\r\n-=+/ AQ\xc3\xa9\xe2\x82\xac";
        for round in 0..300 {
            let mut values: Vec<String> = (0..rng.below(4))
                .map(|_| {
                    let len = 1 + rng.below(14);
                    (0..len)
                        .map(|_| *rng.pick(&['a', 'b', 'c', 'd', '\n', 'é', '€', 'x', '=']))
                        .collect()
                })
                .collect();
            values.extend((0..1 + rng.below(3)).map(|_| rng.pick(&fixed).to_string()));
            if round % 3 == 0 {
                // Enough values for the second pass to search by prefixes.
                values.extend((0..10).map(|_| {
                    let len = 8 + rng.below(10);
                    (0..len)
                        .map(|_| *rng.pick(&['a', 'b', 'c', 'Q', '-', 'x']))
                        .collect::<String>()
                }));
            }
            let r = redactor(&values.iter().map(String::as_str).collect::<Vec<_>>());
            let patterns: Vec<Vec<u8>> = values.iter().flat_map(|v| patterns_of(v)).collect();
            let wrappable: Vec<Vec<u8>> = values.iter().flat_map(|v| wrappable_forms(v)).collect();

            let mut input = Vec::new();
            for _ in 0..rng.below(40) {
                match rng.below(4) {
                    0 => input.extend_from_slice(rng.pick::<Vec<u8>>(&patterns)),
                    3 if !wrappable.is_empty() => {
                        // An encoded form wrapped: line endings at random places inside.
                        let form = rng.pick(&wrappable);
                        for (i, b) in form.iter().enumerate() {
                            if i > 0 && rng.below(6) == 0 {
                                let breaks: [&[u8]; 4] = [b"\n", b"\r\n", b"\r", b"\n\n"];
                                input.extend_from_slice(breaks[rng.below(breaks.len())]);
                            }
                            input.push(*b);
                        }
                    }
                    1 => {
                        // A part of a pattern: a near miss.
                        let p = rng.pick(&patterns);
                        let a = rng.below(p.len());
                        input.extend_from_slice(&p[a..a + rng.below(p.len() - a)]);
                    }
                    _ => input.extend((0..rng.below(12)).map(|_| *rng.pick(alphabet))),
                }
            }
            let whole = r.redact_bytes(&input);
            assert_eq!(whole, naive(&values, &input), "round {round}");
            // No value is left whole between the replacements.
            let text = String::from_utf8_lossy(&whole).into_owned();
            for value in &values {
                for kept in text.split(REDACTED) {
                    assert!(!kept.contains(value.as_str()), "round {round}: {value:?}");
                }
            }
            for _ in 0..20 {
                let cuts: Vec<usize> = (0..1 + rng.below(6)).map(|_| rng.below(40)).collect();
                let cuts = if cuts.iter().all(|c| *c == 0) {
                    vec![1]
                } else {
                    cuts
                };
                assert_eq!(
                    streamed(&r, &input, &cuts),
                    whole,
                    "round {round} cuts {cuts:?}"
                );
            }
        }
    }

    /// No timing assertion: prints the throughput of token secrets (plus a key) over 8 MiB
    /// of output: random base64 (the worst case: every byte continues some pattern) and
    /// text like `ls /var/lib/dpkg/info`, in 32 KiB and in 512-byte reads. Unoptimized test
    /// builds are many times slower than the daemon: `cargo bench --bench redact` measures
    /// the release build.
    #[test]
    fn throughput_with_fifty_secrets() {
        let mut rng = Rng(42);
        let b64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let token =
            |rng: &mut Rng| -> String { (0..40).map(|_| char::from(*rng.pick(b64))).collect() };
        let mut values: Vec<String> = (0..50).map(|_| token(&mut rng)).collect();
        values.push(PEM.to_string());
        let words = [
            "lib", "python3", "-", "perl", "base", "files", "x86", "64", "gnu", ".",
        ];
        let mut base64_out = Vec::with_capacity(9 << 20);
        let mut text_out = Vec::with_capacity(9 << 20);
        while base64_out.len() < 8 << 20 {
            base64_out.extend((0..76).map(|_| *rng.pick(b64)));
            base64_out.push(b'\n');
            text_out.extend_from_slice(b"/var/lib/dpkg/info/");
            for _ in 0..6 {
                text_out.extend_from_slice(rng.pick(&words).as_bytes());
            }
            text_out.extend_from_slice(b".list\n");
            if rng.below(1000) == 0 {
                base64_out.extend_from_slice(rng.pick(&values).as_bytes());
                text_out.extend_from_slice(rng.pick(&values).as_bytes());
            }
        }
        for secrets in [50, 3] {
            let mut chosen: Vec<&str> = values[..secrets].iter().map(String::as_str).collect();
            chosen.push(PEM);
            let r = redactor(&chosen);
            let patterns: usize = chosen.iter().map(|v| patterns_of(v).len()).sum();
            for (what, input) in [("random base64", &base64_out), ("text", &text_out)] {
                for read in [32 << 10, 512] {
                    let started = std::time::Instant::now();
                    let mut s = r.stream();
                    let mut out = Vec::with_capacity(input.len());
                    for chunk in input.chunks(read) {
                        out.extend(s.push(chunk));
                    }
                    out.extend(s.finish());
                    let secs = started.elapsed().as_secs_f64();
                    let mib = input.len() as f64 / f64::from(1 << 20);
                    println!(
                        "redaction, {secrets} secrets + a key ({patterns} patterns), {what} \
                         in {read}-byte reads: {:.0} MiB/s, {:.2} ms per MiB",
                        mib / secs,
                        secs * 1000.0 / mib,
                    );
                    let text = String::from_utf8_lossy(&out).into_owned();
                    for v in &chosen {
                        assert!(text.split(REDACTED).all(|kept| !kept.contains(v)));
                    }
                    assert_eq!(out, r.redact_bytes(input));
                }
            }
        }
    }
}
