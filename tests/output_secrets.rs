//! Rule 9 on the output stream (issue 11): a secret is redacted in the byte stream before
//! anything is stored or sent, whatever way it is printed: a PEM key by `cat`, by `printf`
//! with CRLF line endings, line by line through `log()`, a token straddling a chunk
//! boundary, and the token's base64, hex and URL-encoded forms. Each is looked for in the
//! log API (lines and raw bytes), the SSE stream, `tandem logs`, the audit log and the raw
//! bytes of the state folder.

use base64::Engine as _;
use serde_json::json;

use crate::harness::{token, Daemon, Env, HostSpec, Sshd, StandardConfig};
use crate::run_flow::{client, id_of, run_to_end};

const PEM_VAR: &str = "OUTPUT_TEST_PEM";
const TOKEN_VAR: &str = "OUTPUT_TEST_TOKEN";

/// A fresh PEM-shaped key: random base64 body lines of 64 characters.
fn fresh_pem() -> (String, Vec<String>) {
    let mut random = vec![0u8; 600];
    getrandom::fill(&mut random).unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(&random);
    let lines: Vec<String> = body
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
        lines.join("\n")
    );
    (pem, lines)
}

/// A fresh token with characters that every encoding changes.
fn fresh_token() -> String {
    let mut random = [0u8; 12];
    getrandom::fill(&mut random).unwrap();
    format!("tok/{}+ =?&", hex::encode(random))
}

/// The forms of the token that must never appear.
fn token_forms(t: &str) -> Vec<(String, String)> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let url: String = t
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect();
    vec![
        ("verbatim".into(), t.to_string()),
        ("base64".into(), STANDARD.encode(t)),
        ("base64url".into(), URL_SAFE.encode(t)),
        ("base64url-nopad".into(), URL_SAFE_NO_PAD.encode(t)),
        ("hex".into(), hex::encode(t)),
        ("HEX".into(), hex::encode_upper(t)),
        ("url-encoded".into(), url),
    ]
}

/// An env with SSH host `web1` and the secrets `pem_key` and `api_token`.
fn env_with_secrets(sshd: &Sshd) -> Env {
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::ssh("web1", "internal", sshd))
            .extra(&format!(
                "secrets:\n  pem_key: {{ env: {PEM_VAR}, owner: internal }}\n  api_token: {{ env: {TOKEN_VAR}, owner: internal }}\n"
            ))
            .to_yaml(),
    );
    env
}

fn runbook(name: &str, commands: &[&str], script: &str) -> String {
    let commands: Vec<String> = commands.iter().map(|c| format!("{c:?}")).collect();
    let mut yaml = format!(
        "name: {name}\nowner: internal\ntargets: [web1]\nscope:\n  commands: [{}]\n  secrets: [pem_key, api_token]\ntimeout: 60s\nscript: |\n",
        commands.join(", ")
    );
    for line in script.lines() {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

/// Everything tandem shows or keeps of run `id`, as (place, bytes).
fn everywhere(env: &Env, daemon: &Daemon, id: &str) -> Vec<(String, Vec<u8>)> {
    let http = reqwest::blocking::Client::new();
    let mut places = Vec::new();
    for path in [
        format!("/api/v1/runs/{id}/log"),
        format!("/api/v1/runs/{id}/log?raw=1"),
        // The run is over: the stream replays every line, then ends.
        format!("/api/v1/runs/{id}/log?follow=1"),
        format!("/api/v1/runs/{id}/log?follow=1&batch=1"),
        format!("/api/v1/runs/{id}"),
    ] {
        let body = http
            .get(format!("{}{path}", daemon.url()))
            .bearer_auth(token("alice"))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        places.push((format!("GET {path}"), body.to_vec()));
    }
    let audit = http
        .get(format!("{}/api/v1/audit", daemon.url()))
        .bearer_auth(token("audrey"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    places.push(("GET /api/v1/audit".into(), audit.to_vec()));
    for args in [vec!["logs", id], vec!["logs", id, "--json"]] {
        let out = client(env, daemon, "alice", &args);
        out.success();
        places.push((
            format!("tandem {}", args.join(" ")),
            out.stdout.into_bytes(),
        ));
    }
    for entry in std::fs::read_dir(env.path().join("state")).unwrap() {
        let path = entry.unwrap().path();
        places.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    places
}

fn assert_absent(places: &[(String, Vec<u8>)], what: &str, needle: &str) {
    for (place, bytes) in places {
        let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!found, "{what} `{needle}` leaked into {place}");
    }
}

/// Runs `script` and checks that neither the PEM (whole or any body line) nor any form of
/// the token shows anywhere.
fn assert_run_leaks_nothing(
    name: &str,
    commands: &[&str],
    script: &str,
    files: &[(&str, Vec<u8>)],
) {
    let sshd = Sshd::start();
    let env = env_with_secrets(&sshd);
    let (pem, lines) = fresh_pem();
    let tok = fresh_token();
    let mut script = script.to_string();
    for (file, contents) in files {
        let contents = String::from_utf8(contents.clone())
            .unwrap()
            .replace("{PEM}", &pem)
            .replace("{PEM_CRLF}", &pem.replace('\n', "\r\n"))
            .replace("{TOKEN}", &tok);
        let mut forms = String::new();
        for (_, f) in token_forms(&tok) {
            forms.push_str(&format!("form: {f}\n"));
        }
        let contents = contents.replace("{TOKEN_FORMS}", &forms);
        let path = env.write(file, contents.as_bytes());
        script = script.replace(&format!("{{{file}}}"), &path.display().to_string());
    }
    env.write_runbook(&format!("{name}.yaml"), &runbook(name, commands, &script));
    let daemon = Daemon::start_with(&env, &[(PEM_VAR, pem.as_str()), (TOKEN_VAR, tok.as_str())]);
    let run = run_to_end(&daemon, "alice", name, json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
    let places = everywhere(&env, &daemon, &id_of(&run));
    assert_absent(&places, "the PEM key", &pem);
    for l in &lines {
        assert_absent(&places, "a PEM line", l);
    }
    for (form, f) in token_forms(&tok) {
        assert_absent(&places, &format!("the token ({form})"), &f);
    }
}

#[test]
fn rule9_a_pem_key_printed_by_cat_never_appears() {
    assert_run_leaks_nothing(
        "pem-cat",
        &["cat *"],
        "sh(\"cat {key.pem}\");",
        &[("key.pem", b"some text before\n{PEM}\nand after\n".to_vec())],
    );
}

#[test]
fn rule9_a_pem_key_printed_by_printf_with_crlf_never_appears() {
    // printf turns the two-character escapes into CR LF on the host.
    assert_run_leaks_nothing(
        "pem-printf",
        &["printf *"],
        "let k = secret(\"pem_key\");\nlet f = k;\nf.replace(\"\\n\", \"\\\\r\\\\n\");\nsh(\"printf \" + quote(f + \"\\\\r\\\\n\"));",
        &[],
    );
}

#[test]
fn rule9_a_pem_key_logged_line_by_line_never_appears() {
    assert_run_leaks_nothing(
        "pem-log",
        &["true"],
        "let k = secret(\"pem_key\");\nfor line in k.split(\"\\n\") { log(line); }",
        &[],
    );
}

#[test]
fn rule9_a_token_straddling_a_chunk_boundary_is_redacted() {
    // 32 KiB chunks and 32 KiB channel reads: the token starts 9 bytes before the first
    // boundary of a line that never ends early, then again at later odd offsets.
    let mut text = vec![b'.'; 32 * 1024 - 9];
    text.extend_from_slice(b"{TOKEN}");
    text.extend(vec![b','; 32 * 1024 - 5]);
    text.extend_from_slice(b"{TOKEN}\n{PEM}\n");
    assert_run_leaks_nothing(
        "straddle",
        &["cat *"],
        "sh(\"cat {straddle.txt}\");",
        &[("straddle.txt", text)],
    );
}

#[test]
fn rule9_base64_hex_and_url_encoded_forms_of_a_secret_are_redacted() {
    assert_run_leaks_nothing(
        "encoded",
        &["cat *"],
        "sh(\"cat {forms.txt}\");",
        &[("forms.txt", b"{TOKEN_FORMS}".to_vec())],
    );
}

/// A follower connected while the run prints gets lines before they are durable (the live
/// feed), yet a token printed in two pieces, half a second apart (two reads of the channel,
/// two pushes through the redactor), reaches it only as `[redacted]`.
#[test]
fn rule9_a_token_split_across_reads_never_reaches_a_live_follower() {
    use std::io::{BufRead, BufReader};

    use crate::run_flow::{start_run, RUN_TIMEOUT};

    let sshd = Sshd::start();
    let env = env_with_secrets(&sshd);
    let (pem, _) = fresh_pem();
    let tok = fresh_token();
    let half = tok.len() / 2;
    let file = env.write("split.txt", format!("before {tok} after\n").as_bytes());
    let go = env.path().join("go-on");
    let cut = "before ".len() + half;
    let script = format!(
        "echo ready; while [ ! -e {go} ]; do sleep 0.02; done; head -c {cut} {f}; sleep 0.5; tail -c +{from} {f}; echo done-marker",
        go = go.display(),
        f = file.display(),
        from = cut + 1,
    );
    env.write_runbook(
        "split.yaml",
        &runbook("split", &["sh -c *"], &format!("sh(\"sh -c '{script}'\");")),
    );
    let daemon = Daemon::start_with(&env, &[(PEM_VAR, pem.as_str()), (TOKEN_VAR, tok.as_str())]);
    let id = id_of(&start_run(&daemon, "alice", "split", json!({})));
    let response = reqwest::blocking::Client::builder()
        .timeout(RUN_TIMEOUT)
        .build()
        .unwrap()
        // Lines in batches, as `tandem logs --follow` asks for them.
        .get(format!(
            "{}/api/v1/runs/{id}/log?follow=1&batch=1",
            daemon.url()
        ))
        .bearer_auth(token("alice"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut received = String::new();
    let mut ended = false;
    for line in BufReader::new(response).lines() {
        let line = line.unwrap();
        received.push_str(&line);
        received.push('\n');
        if line.contains("\"lines\":[\"ready\"") {
            // The follower is live: now the command prints the token.
            std::fs::write(&go, b"").unwrap();
        }
        if line.starts_with("event: end") {
            ended = true;
            break;
        }
    }
    assert!(ended, "the stream ended before the run did:\n{received}");
    assert!(received.contains("done-marker"), "{received}");
    assert!(
        received.contains("before [redacted] after"),
        "the line reached the follower redacted:\n{received}"
    );
    for (form, f) in token_forms(&tok) {
        assert!(
            !received.contains(&f),
            "the token ({form}) reached a follower"
        );
    }
    assert!(
        !received.contains(&tok[..half + 2]),
        "a piece of the token leaked"
    );
}
