//! Command output as a stream (issue 11): bounded per action and per run with one marker
//! and an audit record, stored as chunks that page by line, give back their exact bytes,
//! and reach a follower while the command still runs; the database grows about as much as
//! the output. Over a real OpenSSH server and the real daemon.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{token, wait_for, Daemon, Env, HostSpec, Sshd, StandardConfig};
use crate::run_flow::{audit_events, id_of, log_lines, run_to_end, start_run, RUN_TIMEOUT};

/// A runbook on host `web1` with these command patterns, optional `output:` limits (YAML
/// flow map) and this script.
fn runbook(name: &str, commands: &[&str], output: Option<&str>, script: &str) -> String {
    let commands: Vec<String> = commands.iter().map(|c| format!("{c:?}")).collect();
    let mut yaml = format!(
        "name: {name}\nowner: internal\ntargets: [web1]\nscope:\n  commands: [{}]\ntimeout: 120s\n",
        commands.join(", ")
    );
    if let Some(o) = output {
        yaml.push_str(&format!("output: {o}\n"));
    }
    yaml.push_str("script: |\n");
    for line in script.lines() {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

/// An env whose only host, `web1`, is reached over SSH through `sshd`.
fn ssh_env(sshd: &Sshd) -> Env {
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::ssh("web1", "internal", sshd))
            .to_yaml(),
    );
    env
}

/// `GET path` as alice, the body's exact bytes.
fn get_bytes(daemon: &Daemon, path: &str) -> (u16, Vec<u8>) {
    let response = reqwest::blocking::Client::new()
        .get(format!("{}{path}", daemon.url()))
        .bearer_auth(token("alice"))
        .send()
        .expect("GET raw log");
    let status = response.status().as_u16();
    (status, response.bytes().expect("read body").to_vec())
}

/// `tandem ARGS --server URL --token T` as alice; its exact stdout bytes.
fn client_bytes(daemon: &Daemon, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .args(["--server", daemon.url(), "--token", &token("alice")])
        .output()
        .expect("run tandem");
    assert!(
        out.status.success(),
        "tandem {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The texts of the run's log lines of one stream, over the API (one page).
fn texts(daemon: &Daemon, id: &str, stream: &str) -> Vec<String> {
    log_lines(daemon, id)
        .into_iter()
        .filter(|l| l["stream"] == stream)
        .map(|l| l["line"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Bytes the database holds (pages in use), read through SQLite so the WAL counts.
fn db_bytes(env: &Env) -> u64 {
    let db = rusqlite::Connection::open_with_flags(
        env.path().join("state/tandem.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let pragma = |name: &str| -> u64 {
        db.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    };
    (pragma("page_count") - pragma("freelist_count")) * pragma("page_size")
}

/// Attack: a runaway command prints 50 MB. It is cut at `output.action_max` with one
/// marker line and one `output_truncated` record; the command still ends, and the run goes
/// on to its next action.
#[test]
fn a_runaway_command_is_cut_at_the_action_limit_with_one_marker_and_the_run_goes_on() {
    let sshd = Sshd::start();
    let env = ssh_env(&sshd);
    env.write_runbook(
        "runaway.yaml",
        &runbook(
            "runaway",
            &["head -c * /dev/zero", "echo *"],
            Some("{action_max: 1MiB}"),
            "let r = sh(\"head -c 50000000 /dev/zero\");\nlog(`code ${r.code} truncated ${r.truncated} script ${r.stdout.len()}`);\nsh(\"echo still-going\");",
        ),
    );
    let daemon = Daemon::start(&env);
    let run = run_to_end(&daemon, "alice", "runaway", json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
    let id = id_of(&run);

    let (status, stdout) = get_bytes(
        &daemon,
        &format!("/api/v1/runs/{id}/log?raw=1&host=web1&stream=stdout"),
    );
    assert_eq!(status, 200);
    // Exactly the limit was kept, then echo's line.
    assert_eq!(stdout.len(), (1 << 20) + "still-going\n".len());
    assert!(stdout[..1 << 20].iter().all(|&b| b == 0));

    let markers: Vec<String> = texts(&daemon, &id, "event")
        .into_iter()
        .filter(|t| t.starts_with("[output truncated]"))
        .collect();
    assert_eq!(markers.len(), 1, "{markers:?}");
    assert!(
        markers[0].contains("output.action_max (1 MiB)"),
        "{markers:?}"
    );
    let records = audit_events(&daemon, Some(&id), "output_truncated");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["detail"]["limit"], "action_max");
    assert_eq!(records[0]["detail"]["limit_bytes"], 1 << 20);
    assert_eq!(records[0]["detail"]["host"], "web1");
    // The script got its own bounded share (16 KiB by default), and the command's code.
    let logged = texts(&daemon, &id, "log");
    assert_eq!(
        logged,
        vec![format!("code 0 truncated true script {}", 16 << 10)]
    );
    // Every byte was read: the result says how many the command wrote.
    let results = audit_events(&daemon, Some(&id), "action_result");
    assert_eq!(
        results[0]["detail"]["stdout_bytes"], 50_000_000,
        "{results:?}"
    );
}

/// Binary output (every byte value, invalid UTF-8, control characters) comes back byte
/// for byte from the raw API and `tandem logs --raw`, and is rendered safe as lines.
#[test]
fn binary_output_round_trips_byte_for_byte_through_logs_raw_and_the_raw_api() {
    let sshd = Sshd::start();
    let env = ssh_env(&sshd);
    // 300 rounds of all 256 values: 76,800 bytes, more than two chunks.
    let bytes: Vec<u8> = (0..300).flat_map(|_| 0..=255u8).collect();
    let file = env.write("binary.bin", &bytes);
    let path = file.display().to_string();
    env.write_runbook(
        "binary.yaml",
        &runbook("binary", &["cat *"], None, &format!("sh(\"cat {path}\");")),
    );
    let daemon = Daemon::start(&env);
    let run = run_to_end(&daemon, "alice", "binary", json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
    let id = id_of(&run);

    let (status, raw) = get_bytes(
        &daemon,
        &format!("/api/v1/runs/{id}/log?raw=1&host=web1&stream=stdout"),
    );
    assert_eq!(status, 200);
    assert!(raw == bytes, "the raw API changed the bytes");
    let cli = client_bytes(
        &daemon,
        &["logs", &id, "--raw", "--host", "web1", "--stream", "stdout"],
    );
    assert!(cli == bytes, "`logs --raw` changed the bytes");

    // Rendered: valid JSON strings, with no control character but tab.
    for l in log_lines(&daemon, &id) {
        let text = l["line"].as_str().unwrap();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\t'),
            "{text:?}"
        );
    }
    let text = String::from_utf8(client_bytes(&daemon, &["logs", &id])).unwrap();
    assert!(text.contains("\\x1b"), "escape not shown as text");
    assert!(
        !text.contains('\u{1b}'),
        "a raw escape reached the terminal"
    );
}

/// `sh()` hands the script at most `output.script_max` of stdout with `truncated` set;
/// the log still has every line.
#[test]
fn sh_returns_at_most_script_max_and_says_so_while_the_log_keeps_everything() {
    let sshd = Sshd::start();
    let env = ssh_env(&sshd);
    env.write_runbook(
        "seq.yaml",
        &runbook(
            "seq",
            &["seq *"],
            Some("{script_max: 1KiB}"),
            "let r = sh(\"seq 1 2000\");\nlog(`len ${r.stdout.len()} truncated ${r.truncated}`);\nlet s = sh(\"seq 1 3\");\nlog(`len ${s.stdout.len()} truncated ${s.truncated}`);",
        ),
    );
    let daemon = Daemon::start(&env);
    let run = run_to_end(&daemon, "alice", "seq", json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
    let id = id_of(&run);
    assert_eq!(
        texts(&daemon, &id, "log"),
        vec!["len 1024 truncated true", "len 6 truncated false"]
    );
    let expected: Vec<String> = (1..=2000).chain(1..=3).map(|n| n.to_string()).collect();
    assert_eq!(texts(&daemon, &id, "stdout"), expected);
    assert!(audit_events(&daemon, Some(&id), "output_truncated").is_empty());
}

/// Attack: one `log()` of 2 MB, and then enough messages to pass the run's limit. The
/// message is cut at `script_max` with a marker; past `run_max` nothing more is stored,
/// and the run still succeeds.
#[test]
fn a_2mb_log_message_is_cut_and_log_counts_toward_the_run_limit() {
    let sshd = Sshd::start();
    let env = ssh_env(&sshd);
    env.write_runbook(
        "chatty.yaml",
        &runbook(
            "chatty",
            &["echo *"],
            Some("{run_max: 3MiB, script_max: 1MiB}"),
            "let s = \"x\";\nwhile s.len() < 2000000 { s += s; }\nfor i in 0..4 { log(s); }\nsh(\"echo done\");",
        ),
    );
    let daemon = Daemon::start(&env);
    let before = db_bytes(&env);
    let run = run_to_end(&daemon, "alice", "chatty", json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
    let id = id_of(&run);

    let (_, logged) = get_bytes(&daemon, &format!("/api/v1/runs/{id}/log?raw=1&stream=log"));
    // Three messages of 1 MiB (plus newline) fill the 3 MiB run limit; the fourth is gone.
    assert!(logged.len() <= 3 << 20, "{}", logged.len());
    assert!(logged.len() >= (3 << 20) - 3, "{}", logged.len());
    let records = audit_events(&daemon, Some(&id), "output_truncated");
    let limits: Vec<&str> = records
        .iter()
        .map(|r| r["detail"]["limit"].as_str().unwrap())
        .collect();
    assert_eq!(limits[0], "script_max", "{records:?}");
    assert!(limits.contains(&"run_max"), "{records:?}");
    // Past the run limit the command's output is dropped too, with its marker.
    assert!(!texts(&daemon, &id, "stdout").contains(&"done".to_string()));
    assert!(
        db_bytes(&env) - before < 4 << 20,
        "the state grew past the limit"
    );
}

/// Paging through a 100,000-line log with `after` and `limit` returns every line exactly
/// once, in order, with consecutive numbers; `tandem logs` prints them all.
#[test]
fn paging_a_100000_line_log_returns_every_line_once_in_order() {
    let sshd = Sshd::start();
    let env = ssh_env(&sshd);
    env.write_runbook(
        "long.yaml",
        &runbook("long", &["seq *"], None, "sh(\"seq 1 100000\");"),
    );
    let daemon = Daemon::start(&env);
    let run = run_to_end(&daemon, "alice", "long", json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
    let id = id_of(&run);

    let mut seen = Vec::new();
    let mut after = 0;
    let mut last_id = 0;
    loop {
        let (status, page) = daemon.get(
            &format!("/api/v1/runs/{id}/log?after={after}&limit=7001"),
            &token("alice"),
        );
        assert_eq!(status, 200, "{page}");
        let page = page.as_array().unwrap().clone();
        assert!(page.len() <= 7001);
        for l in &page {
            let n = l["id"].as_i64().unwrap();
            assert_eq!(n, last_id + 1, "line numbers are consecutive");
            last_id = n;
            if l["stream"] == "stdout" {
                assert_eq!(l["host"], "web1");
                seen.push(l["line"].as_str().unwrap().parse::<u32>().unwrap());
            }
        }
        match page.last() {
            Some(l) => after = l["id"].as_i64().unwrap(),
            None => break,
        }
    }
    let expected: Vec<u32> = (1..=100_000).collect();
    assert!(
        seen == expected,
        "{} lines, not 1..=100000 in order",
        seen.len()
    );

    let printed = String::from_utf8(client_bytes(&daemon, &["logs", &id])).unwrap();
    let numbers = printed
        .lines()
        .filter_map(|l| l.strip_prefix("[web1] "))
        .filter(|l| l.parse::<u32>().is_ok())
        .count();
    assert_eq!(numbers, 100_000);
}

/// A follower sees a line while the command that printed it still runs: the command waits
/// for a file the test creates only after the line arrived over server-sent events.
#[test]
fn follow_delivers_a_line_while_the_command_still_runs() {
    let sshd = Sshd::start();
    let env = ssh_env(&sshd);
    let marker = env.path().join("go-on");
    let script = format!(
        "echo first-line; while [ ! -e {} ]; do sleep 0.02; done; echo second-line",
        marker.display()
    );
    env.write_runbook(
        "wait.yaml",
        &runbook(
            "wait",
            &["sh -c *"],
            None,
            &format!("sh(\"sh -c '{script}'\");"),
        ),
    );
    let daemon = Daemon::start(&env);
    let run = start_run(&daemon, "alice", "wait", json!({}));
    let id = id_of(&run);

    let response = reqwest::blocking::Client::builder()
        .timeout(RUN_TIMEOUT)
        .build()
        .unwrap()
        .get(format!("{}/api/v1/runs/{id}/log?follow=1", daemon.url()))
        .bearer_auth(token("alice"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut events = BufReader::new(response).lines();
    let mut next_line = |want: &str| -> Value {
        loop {
            let line = events.next().expect("the stream ended").unwrap();
            if let Some(data) = line.strip_prefix("data:") {
                let v: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                if v["line"] == want || (want == "end" && v["status"].is_string()) {
                    return v;
                }
            }
        }
    };
    let first = next_line("first-line");
    assert_eq!(first["host"], "web1");
    // The command is still waiting: nothing has told it to go on.
    assert!(!marker.exists());
    let (_, now) = daemon.get(&format!("/api/v1/runs/{id}"), &token("alice"));
    assert_eq!(now["status"], "running", "{now}");
    std::fs::write(&marker, b"").unwrap();
    next_line("second-line");
    let end = next_line("end");
    assert_eq!(end["status"], "succeeded", "{end}");
}

/// 1 MiB of random base64 printed by `cat` grows the database by less than 2 MiB: chunks,
/// not a row per line.
#[test]
fn the_database_grows_about_as_much_as_the_output() {
    let sshd = Sshd::start();
    let env = ssh_env(&sshd);
    let file = write_random_base64(&env, "random.b64", 1 << 20);
    env.write_runbook(
        "cat.yaml",
        &runbook(
            "cat",
            &["cat *"],
            None,
            &format!("sh(\"cat {}\");", file.display()),
        ),
    );
    let daemon = Daemon::start(&env);
    let before = db_bytes(&env);
    let run = run_to_end(&daemon, "alice", "cat", json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
    let grown = wait_for(Duration::from_secs(5), "the database to settle", || {
        Some(db_bytes(&env) - before)
    });
    assert!(grown < 2 << 20, "the database grew {grown} bytes for 1 MiB");
    let (_, raw) = get_bytes(
        &daemon,
        &format!("/api/v1/runs/{}/log?raw=1&stream=stdout", id_of(&run)),
    );
    assert!(raw == std::fs::read(&file).unwrap());
}

/// `len` bytes of base64 of random bytes, in lines of 76, written to `name` in `env`.
fn write_random_base64(env: &Env, name: &str, len: usize) -> std::path::PathBuf {
    use base64::Engine as _;
    let mut random = vec![0u8; len];
    getrandom::fill(&mut random).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&random);
    let mut text = Vec::with_capacity(len + len / 76 + 1);
    for line in encoded.as_bytes().chunks(76) {
        if text.len() + line.len() + 1 > len {
            break;
        }
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    env.write(name, &text)
}

/// The run's web page shows the log's last lines rendered safe (an escape sequence as text,
/// markup escaped), with a link to earlier lines that leads to them.
#[test]
fn the_run_page_shows_the_last_lines_rendered_safe_with_a_link_to_more() {
    let sshd = Sshd::start();
    let env = ssh_env(&sshd);
    env.write_runbook(
        "page.yaml",
        &runbook(
            "page",
            &["seq *", "printf *"],
            None,
            "sh(\"seq 1 500\");\nsh(\"printf '\\\\033[31mred<b>\\\\n'\");",
        ),
    );
    let daemon = Daemon::start(&env);
    let run = run_to_end(&daemon, "alice", "page", json!({}));
    assert_eq!(run["status"], "succeeded", "{run}");
    let id = id_of(&run);

    let client = crate::web::page_client();
    let (_, cookie) = crate::web::sign_in(&client, &daemon, "alice", "/approvals");
    let get = |path: &str| -> String {
        let response = client
            .get(format!("{}{path}", daemon.url()))
            .header("cookie", &cookie)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        response.text().unwrap()
    };
    let page = get(&format!("/approvals/{id}"));
    assert!(page.contains("[web1] \\x1b[31mred&lt;b&gt;"), "{page}");
    assert!(!page.contains('\u{1b}'), "a raw escape reached the page");
    assert!(page.contains("[web1] 500\n"), "the last lines are shown");
    assert!(
        !page.contains("[web1] 5\n"),
        "only the last lines are shown"
    );
    let earlier = format!("/approvals/{id}?log_after=");
    assert!(page.contains(&earlier), "no link to earlier lines");
    let first = get(&format!("/approvals/{id}?log_after=0"));
    assert!(first.contains("[web1] 1\n[web1] 2\n"), "{first}");
    assert!(first.contains("later lines"), "{first}");
}

/// Six hosts print at once while a follower joins mid-run: what it receives (history from
/// the store, then chunks from the live feed before they are durable, and the store again
/// for whatever the feed got ahead of) is every line of the stored log exactly once, in
/// line order, with the stored text.
#[test]
fn a_follower_joining_mid_run_gets_every_stored_line_once_in_order() {
    let sshd = Sshd::start();
    let env = Env::new();
    let hosts = ["web1", "web2", "web3", "web4", "web5", "web6"];
    let mut config = StandardConfig::new();
    for h in hosts {
        config = config.host(HostSpec::ssh(h, "internal", &sshd));
    }
    env.write_config(&config.to_yaml());
    let command = "for i in $(seq 1 600); do echo line-$i; [ $i = 200 ] && sleep 0.3; [ $i = 400 ] && sleep 0.3; done; true";
    env.write_runbook(
        "many.yaml",
        &format!(
            "name: many\nowner: internal\ntargets: [{}]\nrollout: {{ parallel: 6 }}\nscope:\n  commands: [\"sh -c *\"]\ntimeout: 120s\nscript: |\n  sh(\"sh -c '{command}'\");\n  sh(\"sh -c '{command}'\");\n",
            hosts.join(", ")
        ),
    );
    let daemon = Daemon::start(&env);
    let id = id_of(&start_run(&daemon, "alice", "many", json!({})));
    // Join once output is flowing.
    wait_for(RUN_TIMEOUT, "the first lines", || {
        (!log_lines(&daemon, &id).is_empty()).then_some(())
    });
    // Two followers at once: one `line` event per line, and `lines` events in batches.
    let follow = |query: &'static str| {
        let url = format!("{}/api/v1/runs/{id}/log?{query}", daemon.url());
        std::thread::spawn(move || follow_lines(&url))
    };
    let (single, batched) = (follow("follow=1"), follow("follow=1&batch=1"));
    let (followed, end) = single.join().unwrap();
    let (batch_followed, batch_end) = batched.join().unwrap();
    assert_eq!(batch_end["status"], "succeeded", "{batch_end}");
    assert_eq!(end["status"], "succeeded", "{end}");
    let mut stored = Vec::new();
    loop {
        let after = stored.last().map_or(0, |(id, _)| *id);
        let (status, page) = daemon.get(
            &format!("/api/v1/runs/{id}/log?after={after}&limit=5000"),
            &token("alice"),
        );
        assert_eq!(status, 200, "{page}");
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        stored.extend(
            page.iter()
                .map(|l| (l["id"].as_i64().unwrap(), l["line"].clone())),
        );
    }
    assert!(
        stored
            .iter()
            .filter(|(_, l)| l.as_str().is_some_and(|s| s.starts_with("line-")))
            .count()
            == hosts.len() * 2 * 600,
        "every host's lines are stored"
    );
    let ids: Vec<i64> = followed.iter().map(|(id, _)| *id).collect();
    let expected: Vec<i64> = (1..=stored.len() as i64).collect();
    assert_eq!(ids, expected, "each line once, in order, none missing");
    assert!(followed == stored, "the follower saw the stored text");
    assert!(
        batch_followed == stored,
        "the batch follower saw every line once, in order, with the stored text"
    );
}

/// Follows a run's log at `url` (either framing) to its end: every line as (id, text), and
/// the final run.
fn follow_lines(url: &str) -> (Vec<(i64, Value)>, Value) {
    let response = reqwest::blocking::Client::builder()
        .timeout(RUN_TIMEOUT)
        .build()
        .unwrap()
        .get(url)
        .bearer_auth(token("alice"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut followed = Vec::new();
    let mut kind = String::new();
    for line in BufReader::new(response).lines() {
        let line = line.unwrap();
        if let Some(k) = line.strip_prefix("event: ") {
            kind = k.to_string();
        } else if let Some(data) = line.strip_prefix("data:") {
            let v: Value = serde_json::from_str(data.trim()).unwrap();
            match kind.as_str() {
                "end" => return (followed, v),
                "line" => followed.push((v["id"].as_i64().unwrap(), v["line"].clone())),
                "lines" => {
                    let first = v["id"].as_i64().unwrap();
                    for (id, l) in (first..).zip(v["lines"].as_array().unwrap()) {
                        followed.push((id, l.clone()));
                    }
                }
                other => panic!("unexpected event `{other}`: {v}"),
            }
        }
    }
    panic!("the stream ended before the run did");
}
