//! Scope checks (rule 2): commands against glob patterns, HTTP requests against
//! `METHOD URL-prefix` rules, secrets against names.
//!
//! Command patterns are matched by hand rather than with globset because the wildcard must
//! not be able to smuggle shell syntax: in `echo *`, the `*` may cover `hello 'a;b'` but not
//! `hi; rm -rf /`. The command is first lexed the way a POSIX shell would read it, marking
//! every character that the shell would act on (unquoted `; & | < > ( ) $` and backquote,
//! newlines, and `$`/backquote/backslash inside double quotes). A `*` may only cover inert
//! characters; active ones must appear literally in the pattern.

use url::Url;

/// One entry of `scope.commands`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPattern {
    text: String,
}

impl CommandPattern {
    /// Checks a pattern: non-empty, one line.
    pub fn new(text: &str) -> Result<CommandPattern, String> {
        if text.trim().is_empty() {
            return Err("empty command pattern".into());
        }
        if text.contains('\n') {
            return Err("a command pattern is one line".into());
        }
        Ok(CommandPattern {
            text: text.to_string(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole `command` matches, with `*` covering only inert characters.
    pub fn matches(&self, command: &str) -> bool {
        let Some(active) = shell_active_chars(command) else {
            return false;
        };
        let cmd: Vec<char> = command.chars().collect();
        let pat: Vec<char> = self.text.chars().collect();
        // reach[j]: pattern prefix of length i matches command prefix of length j.
        let mut reach = vec![false; cmd.len() + 1];
        reach[0] = true;
        for &p in &pat {
            let mut next = vec![false; cmd.len() + 1];
            if p == '*' {
                for j in 0..=cmd.len() {
                    next[j] = reach[j] || (j > 0 && next[j - 1] && !active[j - 1]);
                }
            } else {
                for j in 1..=cmd.len() {
                    next[j] = reach[j - 1] && cmd[j - 1] == p;
                }
            }
            reach = next;
        }
        reach[cmd.len()]
    }
}

/// Marks the characters of `command` a POSIX shell would act on. `None` when quotes are
/// unbalanced or the command ends in a lone backslash: such a command is never in scope.
fn shell_active_chars(command: &str) -> Option<Vec<bool>> {
    #[derive(PartialEq)]
    enum State {
        Plain,
        Single,
        Double,
    }
    let chars: Vec<char> = command.chars().collect();
    let mut active = vec![false; chars.len()];
    let mut state = State::Plain;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match state {
            State::Plain => match c {
                '\\' => {
                    // The escaped character is literal; the backslash itself is inert.
                    if i + 1 >= chars.len() || chars[i + 1] == '\n' {
                        return None;
                    }
                    i += 1;
                }
                '\'' => state = State::Single,
                '"' => state = State::Double,
                ';' | '&' | '|' | '<' | '>' | '(' | ')' | '$' | '`' | '\n' | '\r' => {
                    active[i] = true
                }
                _ => {}
            },
            State::Single => {
                if c == '\'' {
                    state = State::Plain;
                }
            }
            State::Double => match c {
                '"' => state = State::Plain,
                '$' | '`' => active[i] = true,
                '\\' => {
                    active[i] = true;
                    if i + 1 < chars.len() {
                        active[i + 1] = true;
                        i += 1;
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    (state == State::Plain).then_some(active)
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
        let table: &[(&str, &str, bool)] = &[
            ("df -P /", "df -P /", true),
            ("df -P /", "df -P / ", false),
            ("df -P /", "df -P /; id", false),
            ("echo *", "echo hello world", true),
            ("echo *", "echo 'a;b|c'", true),
            ("echo *", "echo hi; rm -rf /", false),
            ("echo *", "echo hi && id", false),
            ("echo *", "echo $(id)", false),
            ("echo *", "echo `id`", false),
            ("echo *", "echo \"$(id)\"", false),
            ("echo *", "echo '$(id)'", true),
            ("echo *", "echo hi\nid", false),
            ("echo *", "echo hi > /etc/passwd", false),
            ("echo *", "echo 'unbalanced", false),
            ("echo *", "echo a\\;b", true),
            ("systemctl is-active *", "systemctl is-active nginx", true),
            ("systemctl is-active *", "systemctl restart nginx", false),
            ("df -P / | tail -1", "df -P / | tail -1", true),
            ("df -P / | tail -*", "df -P / | tail -1 | sh", false),
            ("*", "anything at all", true),
            ("*", "anything; at all", false),
            ("apt-get install -y *", "apt-get install -y pkg=1.0", true),
        ];
        for (pattern, command, want) in table {
            let p = CommandPattern::new(pattern).unwrap();
            assert_eq!(
                p.matches(command),
                *want,
                "pattern {pattern:?} command {command:?}"
            );
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
