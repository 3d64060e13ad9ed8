//! Rule 2: every `sh`, `http` and `secret` is checked against the run's scope when it
//! happens. Out of scope, the action does not happen (no file on the host, no request at
//! the server), the run fails with `scope_violation`, and the refusal is audited as
//! `scope_denied`. A script cannot catch the violation and carry on.

use std::path::Path;

use serde_json::{json, Value};

use crate::harness::{unindent, Daemon, Env, HostSpec, HttpStub, Sshd, StandardConfig};
use crate::run_flow::{audit_events, id_of, log_lines, run_to_end};

/// The config of these tests: local host `web1` (internal) and secrets `api_token` and
/// `other_token`.
fn standard_config() -> StandardConfig {
    StandardConfig::new()
        .host(HostSpec::local("web1", "internal"))
        .extra(&unindent(
            "
            secrets:
              api_token: { env: SCOPE_TEST_API_TOKEN, owner: internal }
              other_token: { env: SCOPE_TEST_OTHER_TOKEN, owner: internal }
            ",
        ))
}

/// An env with [`standard_config`].
fn env_with_local_host() -> Env {
    let env = Env::new();
    env.write_config(&standard_config().to_yaml());
    env
}

/// Writes runbook `name` with these `targets` (a YAML list), `scope` (YAML under `scope:`)
/// and script. Params `url` and `method` let one runbook try many requests.
fn write_runbook(env: &Env, name: &str, targets: &str, scope: &str, script: &str) {
    let indented = |text: &str| -> String { text.lines().map(|l| format!("  {l}\n")).collect() };
    let mut yaml = unindent(&format!(
        "
        name: {name}
        owner: internal
        targets: {targets}
        params:
          url: {{ type: string, default: \"\" }}
          method: {{ type: string, default: GET }}
        timeout: 30s
        "
    ));
    yaml += "scope:\n";
    yaml += &indented(scope);
    yaml += "script: |\n";
    yaml += &indented(script);
    env.write_runbook(&format!("{name}.yaml"), &yaml);
}

/// Asserts the run failed with a scope violation that the audit log records for `kind`.
fn assert_scope_violation(daemon: &Daemon, run: &Value, kind: &str) {
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("scope_violation"), "{run}");
    let id = id_of(run);
    let denied = audit_events(daemon, Some(&id), "scope_denied");
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["detail"]["kind"], kind, "{denied:?}");
}

/// Asserts no action of `kind` was intended in the run (the audit log records an intent
/// before every action that happens).
fn assert_no_intent(daemon: &Daemon, run: &Value, kind: &str) {
    let intents: Vec<Value> = audit_events(daemon, Some(&id_of(run)), "action_intent")
        .into_iter()
        .filter(|r| r["detail"]["kind"] == kind)
        .collect();
    assert!(
        intents.is_empty(),
        "an out-of-scope {kind} was attempted: {intents:?}"
    );
}

fn marker(env: &Env, name: &str) -> String {
    env.path().join(name).display().to_string()
}

fn exists(path: &str) -> bool {
    Path::new(path).exists()
}

#[test]
fn out_of_scope_commands_leave_no_trace_on_the_host() {
    let env = env_with_local_host();
    let chained = marker(&env, "CHAINED");
    let plain = marker(&env, "PLAIN");
    let substituted = marker(&env, "SUBST");
    let cases = [
        // `*` must not cover a shell operator.
        (
            "chained",
            format!("sh(\"echo hi; touch {chained}\");"),
            chained,
        ),
        // A command no pattern matches at all.
        ("plain", format!("sh(\"touch {plain}\");"), plain),
        // Command substitution hidden in an argument.
        (
            "substituted",
            format!("sh(\"echo $(touch {substituted})\");"),
            substituted,
        ),
    ];
    for (name, script, _) in &cases {
        write_runbook(&env, name, "[web1]", "commands: [\"echo *\"]", script);
    }
    let daemon = Daemon::start(&env);

    for (name, _, marker) in &cases {
        let run = run_to_end(&daemon, "alice", name, json!({}));
        assert_scope_violation(&daemon, &run, "command");
        assert_no_intent(&daemon, &run, "sh");
        assert_eq!(run["hosts"][0]["status"], "failed", "{run}");
        assert!(!exists(marker), "{name}: the out-of-scope command ran");
    }
}

#[test]
fn caught_scope_violation_still_fails_and_runs_nothing_more() {
    let env = env_with_local_host();
    let forbidden = marker(&env, "FORBIDDEN");
    let after = marker(&env, "AFTER");
    write_runbook(
        &env,
        "sneaky",
        "[web1]",
        &format!("commands: [\"echo *\", \"touch {after}\"]"),
        &format!(
            "try {{\n  sh(\"touch {forbidden}\");\n}} catch (e) {{\n  log(\"caught it\");\n}}\nsh(\"touch {after}\");\nlog(\"carried on\");"
        ),
    );
    let daemon = Daemon::start(&env);

    let run = run_to_end(&daemon, "alice", "sneaky", json!({}));
    assert_scope_violation(&daemon, &run, "command");
    assert!(!exists(&forbidden), "the out-of-scope command ran");
    assert!(
        !exists(&after),
        "the script ran an in-scope command after its violation"
    );
    assert_no_intent(&daemon, &run, "sh");
    let lines = log_lines(&daemon, &id_of(&run));
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains("caught it"), "the catch block ran: {text}");
    assert!(!text.contains("carried on"), "the script went on: {text}");
}

#[test]
fn out_of_scope_http_requests_never_reach_the_server() {
    let stub = HttpStub::start();
    let base = stub.url();
    let port = base.rsplit(':').next().unwrap().to_string();
    let env = Env::new();
    env.write_config(&standard_config().api("stub", &base, "internal").to_yaml());
    // No targets: the script runs once, on the daemon.
    write_runbook(
        &env,
        "call",
        "[]",
        &format!("http: [\"GET {base}/api/\"]"),
        "let r = http(params.method, params.url);\nlog(`status ${r.status}`);",
    );
    let daemon = Daemon::start(&env);

    // Each of these must be refused as out of scope before any byte is sent.
    let refused = [
        ("POST", format!("{base}/api/x")),
        ("GET", format!("{base}/apix")),
        ("GET", format!("{base}/other")),
        ("GET", format!("{base}/api/../admin")),
        ("GET", format!("{base}/api/%2e%2e/admin")),
        ("GET", format!("{base}/api/..%2fadmin")),
        ("GET", format!("http://user@127.0.0.1:{port}/api/x")),
        ("GET", format!("http://localhost:{port}/api/x")),
        ("GET", format!("http://127.0.0.1.evil.example:{port}/api/x")),
        ("GET", format!("http://127.0.0.1:{port}@evil.example/api/x")),
        ("GET", format!("https://127.0.0.1:{port}/api/x")),
    ];
    for (method, url) in &refused {
        let run = run_to_end(
            &daemon,
            "alice",
            "call",
            json!({"method": method, "url": url}),
        );
        assert_scope_violation(&daemon, &run, "http");
        assert_no_intent(&daemon, &run, "http");
        assert!(
            stub.requests().is_empty(),
            "{method} {url} reached the server: {:?}",
            stub.requests()
        );
    }

    // Not even a URL: refused, and nothing is sent either.
    let bogus = format!("http://127.0.0.1:{port}.evil.example/api/x");
    let run = run_to_end(&daemon, "alice", "call", json!({"url": bogus}));
    assert_eq!(run["status"], "failed", "{run}");
    assert_no_intent(&daemon, &run, "http");
    assert!(stub.requests().is_empty(), "{bogus} reached the server");

    // The same runbook does reach the server when the request is in scope.
    let run = run_to_end(
        &daemon,
        "alice",
        "call",
        json!({"url": format!("{base}/api/ok")}),
    );
    assert_eq!(run["status"], "succeeded", "{run}");
    let requests = stub.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/api/ok");
}

// Rule 2 for headers: an in-scope URL with a header that redirects the request (`Host`),
// changes its method behind the check (method overrides), speaks for a proxy (forwarding)
// or re-frames it (hop-by-hop, `Content-Length`) is refused before any byte is sent.
#[test]
fn forbidden_http_headers_are_a_scope_violation_and_nothing_is_sent() {
    let stub = HttpStub::start();
    let base = stub.url();
    let env = Env::new();
    env.write_config(&standard_config().api("stub", &base, "internal").to_yaml());
    env.write_runbook(
        "call.yaml",
        &unindent(&format!(
            r#"
            name: call
            owner: internal
            targets: []
            params:
              name: {{ type: string }}
              value: {{ type: string }}
            scope:
              http: ["POST {base}/api/"]
            timeout: 30s
            script: |
              let h = #{{}};
              h[params.name] = params.value;
              let r = http("POST", "{base}/api/x", "{{}}", h);
              log(`status ${{r.status}}`);
            "#
        )),
    );
    let daemon = Daemon::start(&env);

    let refused = [
        ("Host", "evil.example"),
        ("hOST", "evil.example"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("x-method-override", "DELETE"),
        ("Forwarded", "for=203.0.113.9"),
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Real-IP", "203.0.113.9"),
        ("Connection", "close"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Authorization", "Basic eDp5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "websocket"),
        ("Content-Length", "0"),
        ("X-Note", "a\r\nHost: evil.example"),
        ("X-Note\r\nHost", "evil.example"),
        ("Bad Name", "x"),
    ];
    for (name, value) in refused {
        let run = run_to_end(
            &daemon,
            "alice",
            "call",
            json!({"name": name, "value": value}),
        );
        assert_scope_violation(&daemon, &run, "header");
        assert_no_intent(&daemon, &run, "http");
        assert!(
            stub.requests().is_empty(),
            "{name:?}: {value:?} reached the server: {:?}",
            stub.requests()
        );
    }

    // An ordinary header goes through.
    let run = run_to_end(
        &daemon,
        "alice",
        "call",
        json!({"name": "X-Request-Id", "value": "42"}),
    );
    assert_eq!(run["status"], "succeeded", "{run}");
    let requests = stub.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].header("x-request-id"), Some("42"));
}

#[test]
fn out_of_scope_secret_is_refused() {
    let env = env_with_local_host();
    write_runbook(
        &env,
        "peek",
        "[]",
        "secrets: [api_token]",
        "let v = secret(\"other_token\");\nlog(`got ${v}`);",
    );
    let other = "other-value-7c1f0e9a";
    let daemon = Daemon::start_with(
        &env,
        &[
            ("SCOPE_TEST_API_TOKEN", "api-value-3b8d2c51"),
            ("SCOPE_TEST_OTHER_TOKEN", other),
        ],
    );

    let run = run_to_end(&daemon, "alice", "peek", json!({}));
    assert_scope_violation(&daemon, &run, "secret");
    assert_no_intent(&daemon, &run, "secret");
    let lines = serde_json::to_string(&log_lines(&daemon, &id_of(&run))).unwrap();
    assert!(
        !lines.contains("got "),
        "the script went on after the refusal: {lines}"
    );
    assert!(!lines.contains(other), "{lines}");
    assert!(!run.to_string().contains(other), "{run}");
}

/// Runbook `name` on `target` with scope `echo *` whose script runs `echo` + the param
/// `msg`, after the param `pre`; with `quoted`, the script quotes `msg` with `quote()` and
/// fails unless the host echoed exactly its bytes.
fn write_echo_runbook(env: &Env, name: &str, target: &str, quoted: bool) {
    let script = if quoted {
        "let r = sh(params.pre + \"echo \" + quote(params.msg));\n  \
         if r.stdout != params.msg + \"\\n\" { fail(`echoed ${r.stdout}`); }\n  \
         log(\"echoed exactly\");"
    } else {
        "sh(params.pre + \"echo \" + params.msg);"
    };
    env.write_runbook(
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nowner: internal\ntargets: [{target}]\n\
             params:\n  msg: {{ type: string }}\n  pre: {{ type: string, default: \"\" }}\n\
             scope:\n  commands: [\"echo *\"]\ntimeout: 30s\nscript: |\n  {script}\n"
        ),
    );
}

/// The comment escape and its relatives, given as a param to `sh("echo " + params.msg)` on
/// an ssh host and on a local one: each is refused with its reason before anything runs.
/// (A character scanner once read the quote after `#` as opening a string; the shell reads
/// a comment, then a second command on the next line.)
#[test]
fn commands_are_judged_as_the_shell_parses_them_on_ssh_and_local_hosts() {
    let sshd = Sshd::start();
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::local("web1", "internal"))
            .host(HostSpec::ssh("ssh1", "internal", &sshd))
            .to_yaml(),
    );
    for (host, transport) in [("web1", "local"), ("ssh1", "ssh")] {
        write_echo_runbook(&env, &format!("raw-{transport}"), host, false);
        write_echo_runbook(&env, &format!("quoted-{transport}"), host, true);
    }
    let daemon = Daemon::start(&env);
    let m = marker(&env, "PWNED");

    // (pre, msg, the reason the refusal names)
    let attacks: Vec<(String, String, &str)> = vec![
        (
            String::new(),
            format!("x #'\ntouch {m} #'"),
            "a comment (`#`) is not allowed",
        ),
        (String::new(), format!("x\ntouch {m}"), "a line break"),
        (
            String::new(),
            format!("x; touch {m}"),
            "a command separator (`;`)",
        ),
        (String::new(), format!("$(touch {m})"), "an expansion (`$`"),
        (
            String::new(),
            format!("`touch {m}`"),
            "a command substitution (backquote)",
        ),
        (String::new(), format!("x & touch {m}"), "`&`"),
        (String::new(), format!("x && touch {m}"), "`&`"),
        (String::new(), format!("x > {m}"), "a redirection"),
        (String::new(), format!("{m}*"), "a glob (`*`)"),
        (
            String::new(),
            format!("x\u{a0}&&\u{a0}touch\u{a0}{m}"),
            "U+00A0",
        ),
        (String::new(), format!("x\u{3000}touch {m}"), "U+3000"),
        (
            String::new(),
            format!("\"$(touch {m})\""),
            "`$` inside double quotes",
        ),
        (
            "BASH_ENV=/dev/null ".into(),
            "x".into(),
            "a variable assignment",
        ),
    ];
    for transport in ["local", "ssh"] {
        for (pre, msg, reason) in &attacks {
            let run = run_to_end(
                &daemon,
                "alice",
                &format!("raw-{transport}"),
                json!({"pre": pre, "msg": msg}),
            );
            assert_scope_violation(&daemon, &run, "command");
            let error = run["error"].as_str().unwrap_or_default();
            assert!(error.contains(reason), "{transport} {msg:?}: {error}");
            let denied = audit_events(&daemon, Some(&id_of(&run)), "scope_denied");
            let said = denied[0]["detail"]["reason"].as_str().unwrap_or_default();
            assert!(said.contains(reason), "{transport} {msg:?}: {denied:?}");
            assert_no_intent(&daemon, &run, "sh");
            assert!(!exists(&m), "{transport} {msg:?}: the attack ran");
        }
    }

    // The same hostile bytes, quoted with quote(), are one word: echoed exactly, and the
    // audit records the line that was sent.
    let hostile =
        format!("x #'\ntouch {m} #' ; $(id) `id` & > * ~ {{a,b}} A=1 \u{a0}\u{3000}! ^ \"q\"");
    for transport in ["local", "ssh"] {
        let run = run_to_end(
            &daemon,
            "alice",
            &format!("quoted-{transport}"),
            json!({"msg": hostile}),
        );
        assert_eq!(run["status"], "succeeded", "{transport}: {run}");
        let lines = serde_json::to_string(&log_lines(&daemon, &id_of(&run))).unwrap();
        assert!(lines.contains("echoed exactly"), "{transport}: {lines}");
        let intents = audit_events(&daemon, Some(&id_of(&run)), "action_intent");
        let sent = format!(
            "echo {}",
            crate::shell_grammar::command::quote_word(&hostile).unwrap()
        );
        assert_eq!(intents[0]["detail"]["command"], sent, "{transport}");
        assert!(
            !exists(&m),
            "{transport}: the quoted param ran as a command"
        );
    }
}
