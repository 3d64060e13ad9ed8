//! The shell grammar commands are judged by (rule 2), and the re-quoting of what was judged.
//!
//! A command from a script is not matched by its characters: tandem reads it into words the
//! way a POSIX shell would, refuses anything that is more than one simple command of literal
//! words, matches the words against `scope.commands`, and sends the host those words
//! re-quoted ([`requote`]), so that what runs is byte for byte what was judged.
//!
//! The grammar is **strictly narrower than POSIX sh**: every string it admits means the same
//! to sh, bash, dash, ksh and zsh in sh mode, and everything else is refused with a reason.
//! It admits exactly one simple command: words separated by spaces and tabs (leading and
//! trailing ones are ignored), where a word is a concatenation of
//! - unquoted safe characters: ASCII letters and digits and `_ - . / , : @ % + =`;
//! - single-quoted strings `'...'`: any characters but NUL, all literal;
//! - double-quoted strings `"..."`: any characters but NUL, `$`, backquote, `!` and `^`, and a
//!   backslash only in `\"`, `\\`, `\$` and `` \` `` (which stand for the second character,
//!   as in POSIX);
//! - a backslash outside quotes before a printable ASCII character, a space or a tab (which
//!   stands for that character).
//!
//! Refused: an empty command, NUL anywhere, comments (`#`), line breaks and other control
//! characters outside quotes, redirections (`< >`), pipes, `;`, `&`, `&&`, `||`, subshells
//! and groups (`( )`), every `$` expansion and command substitution, globs (`* ? [ ]`),
//! brace and tilde expansion (`{ } ~`), `!` and `^` outside quotes, any non-ASCII character
//! outside quotes (a Unicode space is not a separator to every shell), an unclosed quote, a
//! trailing backslash or line continuation, an unquoted `=` in the first word (a variable
//! assignment: use `env NAME=VALUE command`), a word starting with an unquoted `=` (zsh
//! expands `=name`), and a reserved word (`if`, `time`, `case`, ...) as the command name.
//!
//! A `scope.commands` pattern is read by the same lexer ([`Pattern::parse`]), with one
//! difference: `*` (quoted or not) is a wildcard for any characters within one word, and a
//! last word that is a lone unquoted `*` stands for one or more remaining words.

use std::fmt;

/// Characters that may stand unquoted in a word.
fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '_' | '-' | '.' | '/' | ',' | ':' | '@' | '%' | '+' | '=')
}

/// Words that change how a shell reads a command when they are its first, unquoted word.
/// POSIX reserved words plus those of bash, ksh and zsh; quoting such a word makes it an
/// ordinary command name, which is what [`requote`] does.
const RESERVED: &[&str] = &[
    "!",
    "{",
    "}",
    "[[",
    "]]",
    "case",
    "coproc",
    "do",
    "done",
    "elif",
    "else",
    "end",
    "esac",
    "fi",
    "for",
    "foreach",
    "function",
    "if",
    "in",
    "namespace",
    "nocorrect",
    "noglob",
    "repeat",
    "select",
    "then",
    "time",
    "until",
    "while",
];

/// Why a command or pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Empty,
    Nul,
    Comment,
    LineBreak,
    Control(char),
    Redirection,
    Pipe,
    Semicolon,
    Ampersand,
    Parenthesis,
    Dollar,
    Backquote,
    Glob(char),
    Brace(char),
    Tilde,
    Bang,
    Caret,
    NonAscii(char),
    UnclosedSingle,
    UnclosedDouble,
    TrailingBackslash,
    LineContinuation,
    BackslashBefore(char),
    DoubleQuotedDollar,
    DoubleQuotedBackquote,
    DoubleQuotedBackslash(char),
    DoubleQuotedHistory(char),
    Assignment,
    LeadingEquals,
    ReservedWord(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Empty => f.write_str("an empty command is not allowed"),
            Reason::Nul => f.write_str("a NUL byte is not allowed"),
            Reason::Comment => f.write_str("a comment (`#`) is not allowed"),
            Reason::LineBreak => {
                f.write_str("a line break outside quotes is not allowed (it starts another command)")
            }
            Reason::Control(c) => write!(
                f,
                "the control character U+{:04X} outside quotes is not allowed",
                *c as u32
            ),
            Reason::Redirection => f.write_str("a redirection (`<`, `>`) is not allowed"),
            Reason::Pipe => f.write_str("a pipe or `||` (`|`) is not allowed"),
            Reason::Semicolon => f.write_str("a command separator (`;`) is not allowed"),
            Reason::Ampersand => f.write_str("`&` (a background job or `&&`) is not allowed"),
            Reason::Parenthesis => f.write_str("a subshell or group (`(`, `)`) is not allowed"),
            Reason::Dollar => f.write_str(
                "an expansion (`$`: parameter, command substitution or arithmetic) is not allowed",
            ),
            Reason::Backquote => f.write_str("a command substitution (backquote) is not allowed"),
            Reason::Glob(c) => write!(f, "a glob (`{c}`) outside quotes is not allowed"),
            Reason::Brace(c) => write!(f, "brace expansion (`{c}`) outside quotes is not allowed"),
            Reason::Tilde => f.write_str("tilde expansion (`~`) outside quotes is not allowed"),
            Reason::Bang => f.write_str("`!` outside quotes is not allowed"),
            Reason::Caret => f.write_str("`^` outside quotes is not allowed"),
            Reason::NonAscii(c) => write!(
                f,
                "the non-ASCII character U+{:04X} outside quotes is not allowed (quote it)",
                *c as u32
            ),
            Reason::UnclosedSingle => f.write_str("a single quote is not closed"),
            Reason::UnclosedDouble => f.write_str("a double quote is not closed"),
            Reason::TrailingBackslash => f.write_str("a backslash at the end is not allowed"),
            Reason::LineContinuation => {
                f.write_str("a backslash before a line break (line continuation) is not allowed")
            }
            Reason::BackslashBefore(c) => write!(
                f,
                "a backslash before U+{:04X} is not allowed (quote it with single quotes)",
                *c as u32
            ),
            Reason::DoubleQuotedDollar => {
                f.write_str("`$` inside double quotes is not allowed (use single quotes)")
            }
            Reason::DoubleQuotedBackquote => {
                f.write_str("a backquote inside double quotes is not allowed (use single quotes)")
            }
            Reason::DoubleQuotedBackslash(c) => write!(
                f,
                "inside double quotes a backslash may only escape `\"`, `\\`, `$` or a backquote, not U+{:04X}",
                *c as u32
            ),
            Reason::DoubleQuotedHistory(c) => {
                write!(f, "`{c}` inside double quotes is not allowed (use single quotes)")
            }
            Reason::Assignment => f.write_str(
                "a variable assignment (an unquoted `=` in the first word) is not allowed; use `env NAME=VALUE command`",
            ),
            Reason::LeadingEquals => {
                f.write_str("a word starting with an unquoted `=` is not allowed (zsh expands `=name`)")
            }
            Reason::ReservedWord(w) => write!(
                f,
                "the reserved word `{w}` as the command name is not allowed (quote it to run a program of that name)"
            ),
        }
    }
}

/// A refusal and where it happened (1-based character position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: Reason,
    pub at: usize,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at == 0 {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{} (at character {})", self.reason, self.at)
        }
    }
}

impl std::error::Error for Refused {}

/// One character of a lexed word, with whether a quote or backslash made it literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lexed {
    c: char,
    quoted: bool,
}

/// One lexed word: its characters and the text it was written as.
struct LexWord<'a> {
    chars: Vec<Lexed>,
    raw: &'a str,
    /// Position (1-based character) of the word's first character.
    at: usize,
}

impl LexWord<'_> {
    fn text(&self) -> String {
        self.chars.iter().map(|l| l.c).collect()
    }
}

/// Splits `text` into words under the grammar above. With `stars`, an unquoted `*` is kept
/// (as an unquoted character) instead of refused: patterns use it as a wildcard.
fn lex(text: &str, stars: bool) -> Result<Vec<LexWord<'_>>, Refused> {
    if let Some(i) = text.chars().position(|c| c == '\0') {
        return Err(Refused {
            reason: Reason::Nul,
            at: i + 1,
        });
    }
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let refuse = |reason: Reason, i: usize| Err(Refused { reason, at: i + 1 });
    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (_, c) = chars[i];
        if c == ' ' || c == '\t' {
            i += 1;
            continue;
        }
        let start = i;
        let mut word = Vec::new();
        while i < chars.len() {
            let (_, c) = chars[i];
            match c {
                ' ' | '\t' => break,
                '\'' => {
                    let open = i;
                    i += 1;
                    loop {
                        match chars.get(i) {
                            None => return refuse(Reason::UnclosedSingle, open),
                            Some((_, '\'')) => break,
                            Some(&(_, q)) => word.push(Lexed { c: q, quoted: true }),
                        }
                        i += 1;
                    }
                }
                '"' => {
                    let open = i;
                    i += 1;
                    loop {
                        match chars.get(i) {
                            None => return refuse(Reason::UnclosedDouble, open),
                            Some((_, '"')) => break,
                            Some((_, '$')) => return refuse(Reason::DoubleQuotedDollar, i),
                            Some((_, '`')) => return refuse(Reason::DoubleQuotedBackquote, i),
                            Some(&(_, h @ ('!' | '^'))) => {
                                return refuse(Reason::DoubleQuotedHistory(h), i)
                            }
                            Some((_, '\\')) => match chars.get(i + 1) {
                                Some(&(_, e @ ('"' | '\\' | '$' | '`'))) => {
                                    word.push(Lexed { c: e, quoted: true });
                                    i += 1;
                                }
                                Some(&(_, e)) => {
                                    return refuse(Reason::DoubleQuotedBackslash(e), i)
                                }
                                None => return refuse(Reason::UnclosedDouble, open),
                            },
                            Some(&(_, q)) => word.push(Lexed { c: q, quoted: true }),
                        }
                        i += 1;
                    }
                }
                '\\' => match chars.get(i + 1) {
                    None => return refuse(Reason::TrailingBackslash, i),
                    Some((_, '\n')) => return refuse(Reason::LineContinuation, i),
                    Some(&(_, e)) if e == '\t' || (' '..='~').contains(&e) => {
                        word.push(Lexed { c: e, quoted: true });
                        i += 1;
                    }
                    Some(&(_, e)) => return refuse(Reason::BackslashBefore(e), i),
                },
                '*' if stars => word.push(Lexed { c, quoted: false }),
                c if is_safe(c) => word.push(Lexed { c, quoted: false }),
                c => return refuse(unquoted_reason(c), i),
            }
            i += 1;
        }
        let from = chars[start].0;
        let to = chars.get(i).map_or(text.len(), |&(b, _)| b);
        words.push(LexWord {
            chars: word,
            raw: &text[from..to],
            at: start + 1,
        });
    }
    let Some(first) = words.first() else {
        return Err(Refused {
            reason: Reason::Empty,
            at: 0,
        });
    };
    if RESERVED.contains(&first.raw) {
        return Err(Refused {
            reason: Reason::ReservedWord(first.raw.to_string()),
            at: first.at,
        });
    }
    if first.chars.iter().any(|l| l.c == '=' && !l.quoted) {
        return Err(Refused {
            reason: Reason::Assignment,
            at: first.at,
        });
    }
    for w in &words {
        if w.chars.first()
            == Some(&Lexed {
                c: '=',
                quoted: false,
            })
        {
            return Err(Refused {
                reason: Reason::LeadingEquals,
                at: w.at,
            });
        }
    }
    Ok(words)
}

/// Why an unquoted character that is not safe is refused.
fn unquoted_reason(c: char) -> Reason {
    match c {
        '#' => Reason::Comment,
        '\n' | '\r' => Reason::LineBreak,
        '<' | '>' => Reason::Redirection,
        '|' => Reason::Pipe,
        ';' => Reason::Semicolon,
        '&' => Reason::Ampersand,
        '(' | ')' => Reason::Parenthesis,
        '$' => Reason::Dollar,
        '`' => Reason::Backquote,
        '*' | '?' | '[' | ']' => Reason::Glob(c),
        '{' | '}' => Reason::Brace(c),
        '~' => Reason::Tilde,
        '!' => Reason::Bang,
        '^' => Reason::Caret,
        c if c.is_ascii_control() => Reason::Control(c),
        c => Reason::NonAscii(c),
    }
}

/// Reads `command` into its words, or says why it is not one simple command of literal words.
pub fn parse(command: &str) -> Result<Vec<String>, Refused> {
    Ok(lex(command, false)?.iter().map(LexWord::text).collect())
}

/// One word as a shell-safe word the grammar admits, for any string without NUL: the
/// `shlex` quoting when the grammar admits it (it leaves `]` unquoted, which this grammar
/// does not), else the whole word in single quotes with `'\''` for each quote.
pub fn quote_word(word: &str) -> Result<String, Refused> {
    let quoted = shlex::try_quote(word).map_err(|_| Refused {
        reason: Reason::Nul,
        at: word.chars().position(|c| c == '\0').map_or(0, |i| i + 1),
    })?;
    let admitted =
        |q: &str| lex(&format!("x {q}"), false).is_ok_and(|w| w.len() == 2 && w[1].text() == word);
    if admitted(&quoted) {
        return Ok(quoted.into_owned());
    }
    Ok(format!("'{}'", word.replace('\'', r"'\''")))
}

/// The words as one command line the grammar admits and that reads back as exactly these
/// words. The first word is always quoted when it is a reserved word or holds `=`, so that it
/// is a command name to every shell. Words come from [`parse`], so they hold no NUL; should
/// one, it is dropped from the line rather than sent.
pub fn requote(words: &[String]) -> String {
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let clean: String = w.chars().filter(|&c| c != '\0').collect();
        let q = quote_word(&clean).unwrap_or_else(|_| "''".into());
        if i == 0 && q == clean && (RESERVED.contains(&clean.as_str()) || clean.contains('=')) {
            out.push('\'');
            out.push_str(&clean);
            out.push('\'');
        } else {
            out.push_str(&q);
        }
    }
    out
}

/// One piece of a pattern word.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Char(char),
    /// Any run of characters (possibly none) within the word.
    Star,
}

/// A `scope.commands` entry, read into words by the same grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    words: Vec<Vec<Piece>>,
    /// The last word was a lone unquoted `*`: one or more further words of any content.
    rest: bool,
}

impl Pattern {
    /// Reads a pattern; `*` is a wildcard within one word, and a last lone unquoted `*`
    /// stands for one or more whole words.
    pub fn parse(text: &str) -> Result<Pattern, Refused> {
        let mut lexed = lex(text, true)?;
        let rest = lexed.len() > 1
            && lexed.last().is_some_and(|w| {
                w.chars
                    == [Lexed {
                        c: '*',
                        quoted: false,
                    }]
            });
        if rest {
            lexed.pop();
        }
        // A lone `*` pattern is every command: one or more words.
        if lexed.len() == 1
            && lexed[0].chars
                == [Lexed {
                    c: '*',
                    quoted: false,
                }]
        {
            return Ok(Pattern {
                words: Vec::new(),
                rest: true,
            });
        }
        let words = lexed
            .iter()
            .map(|w| {
                w.chars
                    .iter()
                    .map(|l| {
                        if l.c == '*' {
                            Piece::Star
                        } else {
                            Piece::Char(l.c)
                        }
                    })
                    .collect()
            })
            .collect();
        Ok(Pattern { words, rest })
    }

    /// Whether the command `words` match: word for word, with the rest covered by a final
    /// lone `*` if the pattern has one.
    pub fn matches(&self, words: &[String]) -> bool {
        let count_ok = if self.rest {
            words.len() > self.words.len()
        } else {
            words.len() == self.words.len()
        };
        count_ok
            && self
                .words
                .iter()
                .zip(words)
                .all(|(p, w)| word_matches(p, w))
    }
}

/// Wildcard match of one word: `*` covers any run of characters. Linear backtracking on the
/// last star, O(pattern × word) at worst.
fn word_matches(pattern: &[Piece], word: &str) -> bool {
    let w: Vec<char> = word.chars().collect();
    let (mut p, mut i) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while i < w.len() {
        match pattern.get(p) {
            Some(Piece::Star) => {
                back = Some((p, i));
                p += 1;
            }
            Some(Piece::Char(c)) if *c == w[i] => {
                p += 1;
                i += 1;
            }
            _ => match back {
                Some((bp, bi)) => {
                    p = bp + 1;
                    i = bi + 1;
                    back = Some((bp, bi + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|x| *x == Piece::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(ws: &[&str]) -> Vec<String> {
        ws.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn admitted_commands_read_as_their_words() {
        let table: &[(&str, &[&str])] = &[
            ("echo hi", &["echo", "hi"]),
            ("  echo \t hi  ", &["echo", "hi"]),
            ("echo 'a b' c", &["echo", "a b", "c"]),
            (
                "echo 'x #'\"\n\"'touch /tmp/p #'",
                &["echo", "x #\ntouch /tmp/p #"],
            ),
            ("echo \"it's\"", &["echo", "it's"]),
            (r#"echo "a\"b\\c\$d\`e""#, &["echo", "a\"b\\c$d`e"]),
            (r"echo a\;b \$x \'", &["echo", "a;b", "$x", "'"]),
            ("echo ''", &["echo", ""]),
            (
                "echo '$(id)' '`id`' '*' '~'",
                &["echo", "$(id)", "`id`", "*", "~"],
            ),
            ("echo 'a\u{a0}b'", &["echo", "a\u{a0}b"]),
            ("env A=b cmd x=y", &["env", "A=b", "cmd", "x=y"]),
            ("'A=b' x", &["A=b", "x"]),
            ("'if' x", &["if", "x"]),
            ("date +%s%N", &["date", "+%s%N"]),
            ("x a-b_c.d/e,f:g@h%i+j=k", &["x", "a-b_c.d/e,f:g@h%i+j=k"]),
            ("echo 'a#b'", &["echo", "a#b"]),
        ];
        for (command, want) in table {
            let want = words(want);
            assert_eq!(parse(command), Ok(want), "{command:?}");
        }
    }

    #[test]
    fn refused_commands_say_why() {
        let table: &[(&str, Reason)] = &[
            ("", Reason::Empty),
            (" \t ", Reason::Empty),
            ("echo a\0b", Reason::Nul),
            ("echo 'a\0b'", Reason::Nul),
            ("echo x #'\ntouch /tmp/PWNED #'", Reason::Comment),
            // Mid-word `#` is literal to POSIX, but refused all the same (narrower).
            ("echo a#b", Reason::Comment),
            ("echo hi\nid", Reason::LineBreak),
            ("echo hi\rid", Reason::LineBreak),
            ("echo a\x0bb", Reason::Control('\x0b')),
            ("echo a\x7f", Reason::Control('\x7f')),
            ("echo hi > /etc/passwd", Reason::Redirection),
            ("cat </etc/shadow", Reason::Redirection),
            ("echo hi | sh", Reason::Pipe),
            ("echo hi || id", Reason::Pipe),
            ("echo hi; id", Reason::Semicolon),
            ("echo hi && id", Reason::Ampersand),
            ("echo hi & id", Reason::Ampersand),
            ("(id)", Reason::Parenthesis),
            ("echo $(id)", Reason::Dollar),
            ("echo $HOME", Reason::Dollar),
            ("echo $((1+1))", Reason::Dollar),
            ("echo `id`", Reason::Backquote),
            ("echo \"$(id)\"", Reason::DoubleQuotedDollar),
            ("echo \"`id`\"", Reason::DoubleQuotedBackquote),
            ("echo \"a\\nb\"", Reason::DoubleQuotedBackslash('n')),
            ("echo \"hi!\"", Reason::DoubleQuotedHistory('!')),
            ("echo \"^x\"", Reason::DoubleQuotedHistory('^')),
            ("echo *", Reason::Glob('*')),
            ("echo ?", Reason::Glob('?')),
            ("echo [ab]", Reason::Glob('[')),
            ("echo a]", Reason::Glob(']')),
            ("echo {a,b}", Reason::Brace('{')),
            ("echo ~root", Reason::Tilde),
            ("! echo", Reason::Bang),
            ("echo a^b", Reason::Caret),
            ("echo a\u{a0}b", Reason::NonAscii('\u{a0}')),
            ("echo\u{2003}hi", Reason::NonAscii('\u{2003}')),
            ("echo\u{3000}hi", Reason::NonAscii('\u{3000}')),
            ("echo 'abc", Reason::UnclosedSingle),
            ("echo \"abc", Reason::UnclosedDouble),
            ("echo \"abc\\", Reason::UnclosedDouble),
            ("echo abc\\", Reason::TrailingBackslash),
            ("echo a\\\nb", Reason::LineContinuation),
            ("echo a\\\u{a0}", Reason::BackslashBefore('\u{a0}')),
            ("echo a\\\x01", Reason::BackslashBefore('\x01')),
            ("A=b echo", Reason::Assignment),
            ("PATH=/tmp:$PATH echo", Reason::Dollar),
            ("a-b=c echo", Reason::Assignment),
            ("echo =ls", Reason::LeadingEquals),
            ("if true", Reason::ReservedWord("if".into())),
            ("time rec", Reason::ReservedWord("time".into())),
            ("coproc rec", Reason::ReservedWord("coproc".into())),
            ("case x", Reason::ReservedWord("case".into())),
        ];
        for (command, want) in table {
            assert_eq!(
                parse(command).map_err(|e| e.reason),
                Err(want.clone()),
                "{command:?}"
            );
        }
        let e = parse("echo x #").unwrap_err();
        assert_eq!(e.at, 8);
        assert_eq!(
            e.to_string(),
            "a comment (`#`) is not allowed (at character 8)"
        );
    }

    #[test]
    fn quote_word_is_admitted_and_reads_back_for_any_string() {
        let samples = [
            "",
            "plain",
            "a b",
            "it's",
            "$(id)",
            "`id`",
            "a]",
            "]",
            "^x",
            "a^b",
            "!",
            "a!'b",
            "x #'\ntouch /tmp/PWNED #'",
            "\\",
            "\"",
            "'\"\\$`!^",
            "\u{a0}",
            "\u{3000}x'",
            "if",
            "A=b",
            "=ls",
            "~",
            "*",
            "\t\r\n\x01\x7f",
            "é'\\",
        ];
        for s in samples {
            let q = quote_word(s).unwrap();
            assert_eq!(
                parse(&format!("x {q}")),
                Ok(words(&["x", s])),
                "{s:?} -> {q}"
            );
        }
        assert!(quote_word("a\0b").is_err());
    }

    #[test]
    fn requote_reads_back_as_the_same_words() {
        let table: &[(&[&str], &str)] = &[
            (&["echo", "hi"], "echo hi"),
            (&["echo", "a b"], "echo 'a b'"),
            (&["if", "x"], "'if' x"),
            (&["time", "x"], "'time' x"),
            (&["A=b", "x"], "'A=b' x"),
            (&["env", "A=b", "x"], "env 'A=b' x"),
            (&["echo", "a]"], "echo 'a]'"),
            (&["echo", ""], "echo ''"),
        ];
        for (ws, want) in table {
            let ws = words(ws);
            let line = requote(&ws);
            assert_eq!(&line, want);
            assert_eq!(parse(&line), Ok(ws.clone()), "{line}");
        }
    }

    #[test]
    fn patterns() {
        let table: &[(&str, &str, bool)] = &[
            ("df -P /", "df -P /", true),
            ("df -P /", "df  -P '/'", true),
            ("df -P /", "df -P / x", false),
            ("echo *", "echo hello world", true),
            ("echo *", "echo", false),
            ("echo *", "echo ''", true),
            ("echo *", "echo 'a;b|c'", true),
            ("echo x*", "echo xyz", true),
            ("echo x*", "echo 'x y'", true),
            ("echo x*", "echo x y", false),
            ("echo * end", "echo a end", true),
            ("echo * end", "echo a b end", false),
            ("echo '*'", "echo a", true),
            ("echo '*'", "echo a b", false),
            // A quoted last star is one word: `-name` cannot grow an `-exec`.
            ("find /d -type f -name '*'", "find /d -type f -name m", true),
            (
                "find /d -type f -name '*'",
                "find /d -type f -name m -exec sh -c id ';'",
                false,
            ),
            ("touch /tmp/d/*", "touch /tmp/d/x", true),
            ("touch /tmp/d/*", "touch /tmp/e/x", false),
            ("touch /tmp/d/*", "touch /tmp/d/x /etc/passwd", false),
            ("*", "anything at all", true),
            ("sh -c *", "sh -c 'echo hi; id'", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("*b*", "abc", true),
            (
                "env RESTIC_PASSWORD=* restic check",
                "env 'RESTIC_PASSWORD=p w' restic check",
                true,
            ),
            (
                "env RESTIC_PASSWORD=* restic check",
                "env RESTIC_PASSWORD=p w restic check",
                false,
            ),
            (
                "nft 'add table inet t; *'",
                "nft 'add table inet t; add rule x; delete y'",
                true,
            ),
            (
                "nft 'add table inet t; *'",
                "nft 'add table inet u; x'",
                false,
            ),
            (
                "dpkg-query -W -f='${P}\\n' *",
                "dpkg-query -W '-f=${P}\\n' a b",
                true,
            ),
        ];
        for (pattern, command, want) in table {
            let p = Pattern::parse(pattern).unwrap();
            let ws = parse(command).unwrap();
            assert_eq!(
                p.matches(&ws),
                *want,
                "pattern {pattern:?} command {command:?}"
            );
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        let table: &[(&str, Reason)] = &[
            ("", Reason::Empty),
            ("df -P / | tail -1", Reason::Pipe),
            (
                "DEBIAN_FRONTEND=noninteractive apt-get *",
                Reason::Assignment,
            ),
            ("echo ?", Reason::Glob('?')),
            ("echo $x", Reason::Dollar),
            ("echo hi # note", Reason::Comment),
        ];
        for (pattern, want) in table {
            assert_eq!(
                Pattern::parse(pattern).map_err(|e| e.reason),
                Err(want.clone()),
                "{pattern:?}"
            );
        }
    }
}
