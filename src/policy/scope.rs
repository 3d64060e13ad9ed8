//! Scope checks (rule 2): commands against word patterns, HTTP requests against
//! `METHOD URL-prefix` rules, secrets against names.
//!
//! A command is never matched by its characters: [`check_command`] reads it with the
//! narrow shell grammar of [`super::command`] (one simple command of literal words, or a
//! refusal with its reason), matches the words against the patterns, and returns the
//! words re-quoted: the line to send, which reads back as exactly the words judged.

use url::Url;

use super::command::{self, Pattern, Refused};

/// One entry of `scope.commands`, read into words by the same grammar as commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPattern {
    text: String,
    pattern: Pattern,
}

impl CommandPattern {
    /// Parses a pattern; an error names what the grammar refuses (a load error).
    pub fn new(text: &str) -> Result<CommandPattern, String> {
        let pattern = Pattern::parse(text).map_err(|e| e.to_string())?;
        Ok(CommandPattern {
            text: text.to_string(),
            pattern,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the command's words match.
    pub fn matches(&self, words: &[String]) -> bool {
        self.pattern.matches(words)
    }
}

/// A command that is in scope: its words, and the line that is sent for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCommand {
    pub words: Vec<String>,
    /// The words re-quoted; what the host's shell runs.
    pub line: String,
}

/// Why a command is out of scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandDenied {
    /// Not one simple command of literal words.
    Grammar(Refused),
    /// Words that no pattern matches.
    NoPattern,
    /// The re-quoted line would not read back as the words judged; never expected, and
    /// refused rather than sent.
    Requote,
}

impl std::fmt::Display for CommandDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandDenied::Grammar(r) => write!(f, "{r}"),
            CommandDenied::NoPattern => f.write_str("no pattern of scope.commands matches it"),
            CommandDenied::Requote => {
                f.write_str("its re-quoted form does not read back as the same words")
            }
        }
    }
}

/// Rule 2 for one command: parsed, matched, re-quoted. The re-quoted line is read back and
/// must give the same words, or the command is refused (fail closed).
pub fn check_command(
    patterns: &[CommandPattern],
    command: &str,
) -> Result<CheckedCommand, CommandDenied> {
    let words = command::parse(command).map_err(CommandDenied::Grammar)?;
    if !patterns.iter().any(|p| p.matches(&words)) {
        return Err(CommandDenied::NoPattern);
    }
    let line = command::requote(&words);
    match command::parse(&line) {
        Ok(back) if back == words => Ok(CheckedCommand { words, line }),
        _ => Err(CommandDenied::Requote),
    }
}

/// One entry of `scope.http`: `METHOD URL-prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    text: String,
    method: String,
    prefix: Url,
}

impl HttpRule {
    /// Parses `POST https://api.example.com/v1/`.
    pub fn parse(text: &str) -> Result<HttpRule, String> {
        let mut words = text.split_whitespace();
        let (Some(method), Some(url), None) = (words.next(), words.next(), words.next()) else {
            return Err(
                "expected `METHOD URL-prefix`, e.g. `POST https://api.example.com/v1/`".into(),
            );
        };
        let method = method.to_ascii_uppercase();
        if !matches!(
            method.as_str(),
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "*"
        ) {
            return Err(format!(
                "`{method}` is not an HTTP method (GET, POST, PUT, PATCH, DELETE, HEAD or *)"
            ));
        }
        let prefix = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if !matches!(prefix.scheme(), "http" | "https") || prefix.host_str().is_none() {
            return Err(format!("`{url}` must be an http or https URL with a host"));
        }
        if !prefix.username().is_empty() || prefix.password().is_some() {
            return Err("a URL prefix must not carry credentials".into());
        }
        if prefix.query().is_some() || prefix.fragment().is_some() {
            return Err("a URL prefix has no query or fragment".into());
        }
        Ok(HttpRule {
            text: text.to_string(),
            method,
            prefix,
        })
    }

    /// The rule as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `method url` is allowed: same method, scheme, host and port, and a path at or
    /// below the prefix path by whole segments, after the URL parser has resolved `..` and
    /// percent-encoded dots. Credentials in the URL and encoded slashes are refused outright.
    pub fn allows(&self, method: &str, url: &Url) -> bool {
        if self.method != "*" && !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        if !url.username().is_empty() || url.password().is_some() {
            return false;
        }
        let lower = url.path().to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%2e") {
            return false;
        }
        url_within(url, &self.prefix)
    }

    /// The URL prefix: the config's `apis` must contain it (rule 3).
    pub fn prefix(&self) -> &Url {
        &self.prefix
    }
}

/// Whether `url` lies at or below `base`: same scheme, host and port, and a path equal to
/// the base path or below it by whole segments (`/v1` covers `/v1/x`, not `/v1x`).
pub fn url_within(url: &Url, base: &Url) -> bool {
    if url.scheme() != base.scheme()
        || url.host_str() != base.host_str()
        || url.port_or_known_default() != base.port_or_known_default()
    {
        return false;
    }
    let path = url.path();
    let want = base.path();
    if want.ends_with('/') {
        path.starts_with(want)
    } else {
        path == want
            || path
                .strip_prefix(want)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Headers a script may not set on an HTTP action (rule 2): they would change where the
/// request goes or what it does after the scope check (`Host`, method overrides), speak for
/// a proxy in between (forwarding), or frame the message (hop-by-hop, `Content-Length`).
const FORBIDDEN_HEADERS: [&str; 16] = [
    "host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "forwarded",
    "x-real-ip",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Rule 2 for one request header a script sets: `Err` says why it may not be sent. Names
/// are compared without regard to case; a name or value that is not valid HTTP (a newline,
/// a control character) is refused rather than left to the client library.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("{name:?} is not a valid header name"));
    }
    if reqwest::header::HeaderValue::from_str(value).is_err() {
        return Err(format!(
            "the value of header `{name}` is not a valid header value"
        ));
    }
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-forwarded-") {
        return Err(format!("a script may not set header `{name}`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_patterns() {
        // (patterns, command, Ok(line sent) or Err(reason))
        let table: &[(&[&str], &str, Result<&str, &str>)] = &[
            (&["df -P /"], "df -P /", Ok("df -P /")),
            (&["df -P /"], "df -P / ", Ok("df -P /")),
            (
                &["df -P /"],
                "df -P /; id",
                Err("a command separator (`;`)"),
            ),
            (&["echo *"], "echo hello world", Ok("echo hello world")),
            (&["echo *"], "echo 'a;b|c'", Ok("echo 'a;b|c'")),
            (&["echo *"], "echo hi; rm -rf /", Err("`;`")),
            (&["echo *"], "echo hi && id", Err("`&`")),
            (&["echo *"], "echo $(id)", Err("`$`")),
            (&["echo *"], "echo `id`", Err("backquote")),
            (
                &["echo *"],
                "echo \"$(id)\"",
                Err("`$` inside double quotes"),
            ),
            (&["echo *"], "echo '$(id)'", Ok("echo '$(id)'")),
            (&["echo *"], "echo hi\nid", Err("line break")),
            (&["echo *"], "echo hi > /etc/passwd", Err("redirection")),
            (&["echo *"], "echo 'unbalanced", Err("not closed")),
            (&["echo *"], "echo a\\;b", Ok("echo 'a;b'")),
            (
                &["echo *"],
                "echo x #'\ntouch /tmp/PWNED #'",
                Err("a comment (`#`) is not allowed"),
            ),
            (&["echo *"], "echo x\u{a0}touch", Err("U+00A0")),
            (&["echo *"], "echo *", Err("glob")),
            (&["echo *"], "A=1 echo x", Err("variable assignment")),
            (&["echo *"], "echo", Err("no pattern")),
            (
                &["systemctl is-active *"],
                "systemctl is-active nginx",
                Ok("systemctl is-active nginx"),
            ),
            (
                &["systemctl is-active *"],
                "systemctl restart nginx",
                Err("no pattern"),
            ),
            (&["*"], "anything at all", Ok("anything at all")),
            (&["*"], "anything; at all", Err("`;`")),
            (&["*"], "'time' x", Ok("'time' x")),
            (
                &["apt-get install -y *"],
                "apt-get install -y pkg=1.0",
                Ok("apt-get install -y 'pkg=1.0'"),
            ),
            (
                &["sh -c *"],
                "sh -c 'echo hi; id'",
                Ok("sh -c 'echo hi; id'"),
            ),
            (&["touch /d/*"], "touch /d/a /etc/passwd", Err("no pattern")),
        ];
        for (patterns, command, want) in table {
            let patterns: Vec<CommandPattern> = patterns
                .iter()
                .map(|p| CommandPattern::new(p).unwrap())
                .collect();
            let got = check_command(&patterns, command);
            match (want, &got) {
                (Ok(line), Ok(c)) => assert_eq!(&c.line, line, "{command:?}"),
                (Err(reason), Err(e)) => {
                    assert!(e.to_string().contains(reason), "{command:?}: {e}")
                }
                _ => panic!("{command:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn command_pattern_errors() {
        for (bad, reason) in [
            ("", "empty"),
            ("df -P / | tail -1", "pipe"),
            ("DEBIAN_FRONTEND=noninteractive apt-get *", "env NAME=VALUE"),
            ("echo ~", "tilde"),
        ] {
            let e = CommandPattern::new(bad).unwrap_err();
            assert!(e.contains(reason), "{bad:?}: {e}");
        }
    }

    #[test]
    fn http_rules() {
        let rule = HttpRule::parse("POST https://api.example.com/v1/machines").unwrap();
        let table: &[(&str, &str, bool)] = &[
            ("POST", "https://api.example.com/v1/machines", true),
            (
                "post",
                "https://api.example.com/v1/machines/42/isolate",
                true,
            ),
            ("GET", "https://api.example.com/v1/machines", false),
            ("POST", "https://api.example.com/v1/machinesevil", false),
            (
                "POST",
                "https://api.example.com.evil.net/v1/machines",
                false,
            ),
            (
                "POST",
                "https://api.example.com@evil.net/v1/machines",
                false,
            ),
            ("POST", "https://user@api.example.com/v1/machines", false),
            ("POST", "http://api.example.com/v1/machines", false),
            ("POST", "https://api.example.com:8443/v1/machines", false),
            ("POST", "https://api.example.com:443/v1/machines", true),
            ("POST", "https://API.EXAMPLE.COM/v1/machines/1", true),
            (
                "POST",
                "https://api.example.com/v1/machines/../../admin",
                false,
            ),
            (
                "POST",
                "https://api.example.com/v1/machines/%2e%2e/%2e%2e/admin",
                false,
            ),
            (
                "POST",
                "https://api.example.com/v1/machines%2f..%2fadmin",
                false,
            ),
            ("POST", "https://api.example.com/v1/machines/1?x=1", true),
        ];
        for (method, url, want) in table {
            let u = Url::parse(url).unwrap();
            assert_eq!(rule.allows(method, &u), *want, "{method} {url}");
        }
        let slash = HttpRule::parse("GET http://127.0.0.1:9000/api/").unwrap();
        assert!(slash.allows("GET", &Url::parse("http://127.0.0.1:9000/api/x").unwrap()));
        assert!(!slash.allows("GET", &Url::parse("http://127.0.0.1:9000/apix").unwrap()));
        assert!(!slash.allows("GET", &Url::parse("http://localhost:9000/api/x").unwrap()));
    }

    #[test]
    fn headers_a_script_may_not_set() {
        let table: &[(&str, &str, bool)] = &[
            ("Authorization", "Bearer x", true),
            ("Content-Type", "application/json", true),
            ("X-Request-Id", "42", true),
            ("X-Forwardedness", "1", true),
            ("Host", "evil.example", false),
            ("hOsT", "evil.example", false),
            ("X-HTTP-Method-Override", "DELETE", false),
            ("x-http-method", "DELETE", false),
            ("X-Method-Override", "DELETE", false),
            ("Forwarded", "for=1.2.3.4", false),
            ("X-Forwarded-For", "1.2.3.4", false),
            ("x-forwarded-host", "evil.example", false),
            ("X-Real-IP", "1.2.3.4", false),
            ("Connection", "close", false),
            ("Keep-Alive", "timeout=5", false),
            ("Proxy-Authorization", "Basic x", false),
            ("Proxy-Connection", "keep-alive", false),
            ("TE", "trailers", false),
            ("Trailer", "X", false),
            ("Transfer-Encoding", "chunked", false),
            ("Upgrade", "websocket", false),
            ("Content-Length", "0", false),
            ("X-Ok", "a\r\nHost: evil.example", false),
            ("X-Ok\r\nHost", "evil.example", false),
            ("Bad Name", "x", false),
            ("", "x", false),
        ];
        for (name, value, want) in table {
            assert_eq!(
                check_header(name, value).is_ok(),
                *want,
                "{name:?}: {value:?}"
            );
        }
    }

    #[test]
    fn http_rule_errors() {
        for bad in [
            "POST",
            "FETCH https://x/",
            "GET ftp://x/",
            "GET https://u:p@x/",
            "GET https://x/?q=1",
            "GET not a url",
        ] {
            assert!(HttpRule::parse(bad).is_err(), "{bad}");
        }
    }
}
