//! Rule 2, against real shells: every command tandem admits must run as exactly one command
//! with exactly the words tandem checked, under bash and dash, both as the script wrote it
//! and as tandem re-quotes it for the host.
//!
//! A fixed-seed generator makes hostile strings around a few `rec ...` patterns: quotes of
//! both kinds, comments, backslashes, line breaks, Unicode spaces, expansions, globs,
//! operators, NUL, assignments, reserved words, very long words, and pieces of real attacks
//! (the comment escape `x #'` + newline + `touch PWNED #'`). Each string tandem admits runs
//! under `bash -xc` and `dash -xc` with `PATH` holding only a recording shim named `rec`;
//! the trace must show one command, the shim must have run once with the checked argv, and
//! the shell must exit 0. `TANDEM_SHELL_FUZZ=N` runs N strings instead of 20,000.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

// The grammar module itself, compiled into this test: it depends on nothing but `shlex`.
// Linking the whole library here would bring rhai's `impl Add<SmartString> for String` into
// every test module and break their `String + &String`.
#[path = "../src/policy/command.rs"]
#[allow(dead_code)]
pub mod command;

use command::{parse, quote_word, requote, Pattern};

/// What `policy::scope::check_command` does: parse, match a pattern, re-quote.
struct Checked {
    words: Vec<String>,
    line: String,
}

fn check_command(patterns: &[Pattern], s: &str) -> Option<Checked> {
    let words = parse(s).ok()?;
    patterns.iter().any(|p| p.matches(&words)).then(|| Checked {
        line: requote(&words),
        words,
    })
}

const SHELLS: &[&str] = &["/usr/bin/bash", "/usr/bin/dash"];
const PATTERNS: &[&str] = &["rec *", "rec -n *", "rec x*y *", "rec 'a b' *"];
const DEFAULT_COUNT: usize = 20_000;
const THREADS: usize = 3;

/// xorshift64*: small, fast, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}

/// Characters a hostile string is made of.
const HOSTILE: &[&str] = &[
    "'", "\"", "#", "\\", "\n", "\r", "\t", " ", "$", "`", "{", "}", "~", "*", "?", ";", "&", "|",
    "<", ">", "(", ")", "\0", "=", "!", "^", "[", "]", "%", ",", ":", "@", "+", "-", ".", "/",
    "\u{a0}", "\u{2003}", "\u{3000}", "\u{2028}", "\u{1}", "\u{7f}", "\u{b}", "\u{c}", "é", "a",
    "Z", "0", "_",
];

/// Pieces of real attacks and of shell syntax that changes meaning.
const SPLICES: &[&str] = &[
    "x #'\ntouch PWNED #'",
    "#'",
    "'#",
    "; touch PWNED",
    "&& touch PWNED",
    "|| touch PWNED",
    "| touch PWNED",
    "& touch PWNED",
    "$(touch PWNED)",
    "`touch PWNED`",
    "\"$(touch PWNED)\"",
    "> PWNED",
    "< /etc/passwd",
    "\ntouch PWNED",
    "\rtouch PWNED",
    "\\\ntouch PWNED",
    "\u{a0}touch\u{a0}PWNED",
    "\u{3000};touch PWNED",
    "${IFS}",
    "$IFS",
    "$((1+1))",
    "{a,b}",
    "~root",
    "~",
    "*",
    "?",
    "[a]",
    "A=1",
    "=rec",
    "!",
    "^",
    "\0",
    "\\",
    "'",
    "\"",
    "\\'",
    "\\\"",
    "\"\\\"\"",
    "\"\\$\"",
    "\"\\`\"",
    "\"\\\\\"",
    "'\\''",
    "\"'\"",
    "'\"'",
    "if",
    "time",
    "then",
    "coproc",
    "case",
    "{",
    "[[",
    "function",
    "eval",
    "exec",
    "-n",
    "x*y",
    "'a b'",
    "a\\ b",
    "2>&1",
    "<<EOF",
    "@(x)",
    "+(x)",
];

/// Reads of the command word, some of them hostile.
const HEADS: &[&str] = &[
    "rec",
    "rec",
    "rec",
    "r'e'c",
    "\"rec\"",
    "r\\ec",
    " rec",
    "\trec",
    "A=1 rec",
    "if rec",
    "time rec",
    "! rec",
    "{ rec",
    "rec\u{a0}",
    "\u{2003}rec",
    "\\rec",
    "'rec'",
    "=rec",
    "exec rec",
];

fn safe_run(rng: &mut Rng) -> String {
    const SAFE: &[u8] = b"abcxyzABC019_-./,:@%+=";
    let n = 1 + rng.below(8);
    (0..n)
        .map(|_| SAFE[rng.below(SAFE.len())] as char)
        .collect()
}

fn hostile_run(rng: &mut Rng, n: usize) -> String {
    (0..n).map(|_| rng.pick(HOSTILE)).collect()
}

/// One piece of a word: mostly well-formed quoting of hostile content, sometimes raw.
fn piece(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 | 1 => safe_run(rng),
        2 | 3 => {
            let n = rng.below(6);
            let inner: String = hostile_run(rng, n).replace('\'', "");
            format!("'{inner}'")
        }
        4 | 5 => {
            let mut inner = String::new();
            for _ in 0..rng.below(6) {
                match rng.below(4) {
                    0 => inner += rng.pick(&["\\\"", "\\\\", "\\$", "\\`"]),
                    _ => inner += rng.pick(HOSTILE),
                }
            }
            format!("\"{inner}\"")
        }
        6 => format!("\\{}", rng.pick(HOSTILE)),
        7 => rng.pick(SPLICES).to_string(),
        8 => {
            let n = 1 + rng.below(3);
            hostile_run(rng, n)
        }
        9 => {
            let n = rng.below(8);
            quote_word(&hostile_run(rng, n)).unwrap_or_default()
        }
        10 if rng.chance(10) => {
            let long = "a".repeat(1000 + rng.below(6000));
            match rng.below(3) {
                0 => long,
                1 => format!("'{long} #'"),
                _ => format!("\"{long}\""),
            }
        }
        _ => rng.pick(&["x", "y", "xy", "x y", "a b", "-n"]).to_string(),
    }
}

fn word(rng: &mut Rng) -> String {
    (0..1 + rng.below(3)).map(|_| piece(rng)).collect()
}

/// One hostile command line.
fn generate(rng: &mut Rng) -> String {
    let mut s = rng.pick(HEADS).to_string();
    if rng.chance(25) {
        // Pattern-shaped starts, so the narrower patterns get matches too.
        s += rng.pick(&[" -n", " x1y", " 'a b'", " xy"]);
    }
    for _ in 0..rng.below(5) {
        s += if rng.chance(90) {
            rng.pick(&[" ", "  ", "\t"])
        } else {
            rng.pick(&["\n", "\u{a0}", ";", "&", "\u{3000}", "#"])
        };
        s += &word(rng);
    }
    if rng.chance(20) {
        // A script that quotes a param properly: always admitted.
        let n = rng.below(12);
        let value = hostile_run(rng, n).replace('\0', "");
        s = format!("rec {}", quote_word(&value).unwrap_or_default());
    }
    if rng.chance(10) {
        let at = rng.below(s.chars().count() + 1);
        let (a, b): (String, String) = {
            let chars: Vec<char> = s.chars().collect();
            (chars[..at].iter().collect(), chars[at..].iter().collect())
        };
        s = format!("{a}{}{b}", rng.pick(SPLICES));
    }
    s
}

/// A temp dir with the recording shim as the only program on `PATH`, a folder it records
/// into, and a working folder with files a glob would find.
struct Sandbox {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    records: PathBuf,
    cwd: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let records = dir.path().join("records");
        let cwd = dir.path().join("cwd");
        for d in [&bin, &records, &cwd] {
            std::fs::create_dir(d).unwrap();
        }
        for f in ["a", "b", "x1y", "PWNED-not"] {
            std::fs::write(cwd.join(f), "").unwrap();
        }
        let shim = bin.join("rec");
        // Each call writes its argc and argv, NUL-separated, to a file of its own.
        std::fs::write(
            &shim,
            "#!/usr/bin/dash\nprintf '%s\\0' \"$#\" \"$@\" > \"$REC_DIR/$$\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        Sandbox {
            _dir: dir,
            bin,
            records,
            cwd,
        }
    }

    /// Runs `line` under `shell -xc`; returns what went wrong, if anything.
    fn check(&self, shell: &str, line: &str, words: &[String]) -> Option<String> {
        let out = Command::new(shell)
            .arg("-xc")
            .arg(line)
            .env_clear()
            .env("PATH", &self.bin)
            .env("REC_DIR", &self.records)
            .env("LC_ALL", "C.UTF-8")
            .current_dir(&self.cwd)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The default PS4 is `+ ` (bash as root ignores PS4 from the environment). A
        // traced word with a line break in it continues on a line of its own, which may
        // start with `+` too: those are expected.
        let continued: usize = words.iter().map(|w| w.matches("\n+").count()).sum();
        let plus_lines = stderr.lines().filter(|l| l.starts_with('+')).count();
        let traced = plus_lines.saturating_sub(continued);
        let calls = self.take_records();
        let mut problems = Vec::new();
        if !out.status.success() {
            problems.push(format!("exit {:?}", out.status.code()));
        }
        if traced != 1 {
            problems.push(format!("{traced} commands traced"));
        }
        let want: Vec<String> = std::iter::once((words.len() - 1).to_string())
            .chain(words[1..].iter().cloned())
            .collect();
        match calls.as_slice() {
            [one] if *one == want => {}
            [one] => problems.push(format!("argv {one:?}, checked {want:?}")),
            many => problems.push(format!("{} calls of rec", many.len())),
        }
        (!problems.is_empty()).then(|| format!("{}: {}", shell, problems.join(", ")))
    }

    fn take_records(&self) -> Vec<Vec<String>> {
        let mut calls = Vec::new();
        for entry in std::fs::read_dir(&self.records).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            let mut fields: Vec<String> = bytes
                .split(|&b| b == 0)
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            fields.pop(); // after the last NUL
            calls.push(fields);
        }
        calls
    }
}

fn shells_present() {
    for shell in SHELLS {
        assert!(
            Path::new(shell).exists(),
            "{shell} is missing: scripts/test installs bash and dash"
        );
    }
}

#[test]
fn admitted_commands_run_as_exactly_the_checked_words_under_bash_and_dash() {
    shells_present();
    let count = std::env::var("TANDEM_SHELL_FUZZ")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_COUNT);
    let patterns: Vec<Pattern> = PATTERNS
        .iter()
        .map(|p| Pattern::parse(p).unwrap())
        .collect();
    let mut rng = Rng(0x7a3d_91c4_0be2_5f17);
    let strings: Vec<String> = (0..count).map(|_| generate(&mut rng)).collect();

    // In process, for every string: an admitted command re-quotes to a line that reads
    // back as the same words.
    let mut admitted = Vec::new();
    let mut problems = Vec::new();
    for s in &strings {
        if let Some(checked) = check_command(&patterns, s) {
            if parse(&checked.line).as_ref() != Ok(&checked.words)
                || requote(&checked.words) != checked.line
            {
                problems.push(format!("{s:?}: re-quoted as {:?}", checked.line));
            }
            admitted.push((s.clone(), checked));
        }
    }
    assert!(
        admitted.len() * 10 >= count,
        "the generator should make at least 10% admitted strings; made {} of {count}",
        admitted.len()
    );

    // In the shells, for every admitted string: as written and as re-quoted.
    let next = AtomicUsize::new(0);
    let escapes = Mutex::new(problems);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                let sandbox = Sandbox::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((raw, checked)) = admitted.get(i) else {
                        break;
                    };
                    let mut forms = vec![("as written", raw.as_str())];
                    if checked.line != *raw {
                        forms.push(("re-quoted", checked.line.as_str()));
                    }
                    for (form, line) in forms {
                        for shell in SHELLS {
                            if let Some(p) = sandbox.check(shell, line, &checked.words) {
                                escapes.lock().unwrap().push(format!("{raw:?} {form}: {p}"));
                            }
                        }
                    }
                }
            });
        }
    });
    let escapes = escapes.into_inner().unwrap();
    eprintln!(
        "shell grammar: {count} strings generated, {} admitted, {} escaped",
        admitted.len(),
        escapes.len()
    );
    assert!(
        escapes.is_empty(),
        "{} of {} admitted strings (of {count} generated) escaped:\n{}",
        escapes.len(),
        admitted.len(),
        escapes
            .iter()
            .take(50)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn quote_gives_an_admitted_word_that_the_shells_read_back() {
    shells_present();
    let mut rng = Rng(0x51f0_c3a9_8d2e_7b64);
    let sandbox = Sandbox::new();
    for _ in 0..300 {
        let n = rng.below(16);
        let value: String = hostile_run(&mut rng, n).replace('\0', "");
        let line = format!("rec {}", quote_word(&value).unwrap());
        let words = parse(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(words, vec!["rec".to_string(), value.clone()], "{line:?}");
        for shell in SHELLS {
            assert_eq!(sandbox.check(shell, &line, &words), None, "{line:?}");
        }
    }
}
