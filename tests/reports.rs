//! The business-review report (`tandem report`, `/reports`): over a history made by real
//! runs of a real daemon on local and ssh hosts (patch runs, restore tests that pass and
//! fail, a denial, an expiry, a break-glass isolation and its review, another party's
//! failing run), the report's figures equal those the test computes itself from the audit
//! export; the CSV parses; the HTML names the chain head; the page shows it in Chromium
//! without console errors; and a party's report leaves out what it may not see (rule 10).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::approvals::{
    deny, id_of, ran, request, request_pending, site_env, touch, wait_status, wait_status_as,
    write_runbook,
};
use crate::harness::{token, wait_until, Browser, Daemon, Env, HostSpec, Sshd, StandardConfig};
use crate::web::{page_client, sign_in};

/// The standard parties with internal's hosts web1, web2 (patched, local) and nas1 (backed
/// up, over ssh to `sshd`), and provider's mon1; no checkpoint but those signed on purpose.
fn report_config(sshd: &Sshd) -> StandardConfig {
    StandardConfig::new()
        .host(HostSpec::local("web1", "internal"))
        .host(HostSpec::local("web2", "internal"))
        .host(HostSpec::ssh("nas1", "internal", sshd))
        .host(HostSpec::local("mon1", "provider"))
        .extra("audit: { checkpoint_records: 100000, checkpoint_interval: 24h }")
}

/// The runbooks of the history: each stands for one kind of work the report counts.
fn write_runbooks(env: &Env) {
    write_runbook(
        env,
        "patch",
        "[web1, web2]",
        "report: patch",
        "if host.name == \"web2\" { fail(\"web2: apt-get upgrade exited 100\"); }\nemit(\"packages_changed\", 3);",
    );
    write_runbook(
        env,
        "restore",
        "[nas1]",
        "report: restore_test\nparams: { ok: { type: bool, default: true } }",
        &format!(
            "{}\nif !params.ok {{ fail(\"checksum MISMATCH\"); }}\nemit(\"restore_ms\", 1500);\nemit(\"restore_bytes\", 1048576);",
            touch(env, "")
        ),
    );
    write_runbook(
        env,
        "isolate",
        "[web1]",
        "report: isolation\nemergency: true\napproval: { from: internal }",
        "log(\"isolated\");",
    );
    write_runbook(
        env,
        "gated",
        "[web1]",
        "approval: { from: internal }",
        "log(\"ran\");",
    );
    write_runbook(
        env,
        "expiring",
        "[web1]",
        "approval: { from: internal, expires: 1s }",
        "log(\"ran\");",
    );
    // Provider's own business on its own host: internal may not see it.
    env.write_runbook(
        "mon-check.yaml",
        "name: mon-check\ndescription: provider's monitoring check\nowner: provider\n\
         targets: [mon1]\nallowed: { parties: [provider], roles: [operator] }\n\
         script: |\n  fail(\"disk full on mon1\");\n",
    );
}

/// Runs the history; returns the break-glass run's id.
fn make_history(env: &Env, daemon: &Daemon) -> String {
    let patch = id_of(&request(daemon, "alice", "patch"));
    wait_status(daemon, &patch, "failed");
    let ok = daemon.post(
        "/api/v1/runs",
        &token("alice"),
        &json!({"runbook": "restore", "params": {"ok": true}}),
    );
    assert_eq!(ok.0, 201, "{}", ok.1);
    wait_status(daemon, &id_of(&ok.1), "succeeded");
    assert!(
        ran(env, &id_of(&ok.1), ""),
        "the restore test ran on nas1 over ssh"
    );
    let bad = daemon.post(
        "/api/v1/runs",
        &token("alice"),
        &json!({"runbook": "restore", "params": {"ok": false}}),
    );
    assert_eq!(bad.0, 201, "{}", bad.1);
    wait_status(daemon, &id_of(&bad.1), "failed");

    let denied = request_pending(daemon, "paula", "gated");
    let (status, body) = deny(daemon, "ivan", &denied, "not during the sales demo");
    assert_eq!(status, 200, "{body}");
    wait_status(daemon, &denied, "denied");
    let expired = request_pending(daemon, "paula", "expiring");
    wait_status(daemon, &expired, "expired");

    let (status, started) = daemon.post(
        "/api/v1/runs",
        &token("paula"),
        &json!({"runbook": "isolate", "break_glass": true, "reason": "ransomware on web1"}),
    );
    assert_eq!(status, 201, "{started}");
    let glass = id_of(&started);
    wait_status(daemon, &glass, "succeeded");
    let (status, body) = daemon.post(
        &format!("/api/v1/runs/{glass}/review"),
        &token("ivan"),
        &json!({"comment": "justified; web1 reimaged"}),
    );
    assert_eq!(status, 200, "{body}");

    let mon = id_of(&request(daemon, "paula", "mon-check"));
    wait_status_as(daemon, "paula", &mon, "failed");
    glass
}

/// Yesterday and tomorrow (UTC): a period that holds the whole history, even across midnight.
fn period() -> (String, String) {
    let today = chrono::Utc::now().date_naive();
    (
        today.pred_opt().unwrap().to_string(),
        today.succ_opt().unwrap().to_string(),
    )
}

/// The figures the test computes itself from audit records (whole, or a party's view with
/// redacted lines), to hold against the report's.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    head_seq: u64,
    head_hash: String,
    checkpoint: Option<(u64, String)>,
    runs_finished: u64,
    by_status: BTreeMap<String, u64>,
    /// runbook → (runs, failed)
    by_runbook: BTreeMap<String, (u64, u64)>,
    restore_tests: u64,
    restore_passed: u64,
    packages_changed: BTreeMap<String, u64>,
    break_glass: u64,
    review_secs: Vec<i64>,
    /// party → (requested, granted, denied, expired)
    approvals: BTreeMap<String, (u64, u64, u64, u64)>,
    /// party → runs requested
    activity: BTreeMap<String, u64>,
}

fn ts(r: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(r["ts"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// Computes [`Expected`] from records, as a reader with only the export and this test's
/// knowledge of the runbooks (which are patch runs, which restore tests) would.
fn expected(records: &[Value]) -> Expected {
    let mut e = Expected::default();
    let last = records.last().unwrap();
    e.head_seq = last["seq"].as_u64().unwrap();
    e.head_hash = last["hash"].as_str().unwrap().to_string();
    let full: Vec<&Value> = records.iter().filter(|r| r["redacted"] != true).collect();
    let runbook_of: BTreeMap<&str, &str> = full
        .iter()
        .filter(|r| r["event"] == "run_requested")
        .map(|r| {
            (
                r["run_id"].as_str().unwrap(),
                r["detail"]["runbook"].as_str().unwrap(),
            )
        })
        .collect();
    let mut glass_started = BTreeMap::new();
    let mut asked: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    for r in &full {
        let run = r["run_id"].as_str().unwrap_or_default();
        let d = &r["detail"];
        match r["event"].as_str().unwrap() {
            "run_requested" => {
                *e.activity
                    .entry(r["actor"]["party"].as_str().unwrap().to_string())
                    .or_default() += 1
            }
            "run_finished" => {
                let status = d["status"].as_str().unwrap().to_string();
                e.runs_finished += 1;
                *e.by_status.entry(status.clone()).or_default() += 1;
                let rb = runbook_of[run].to_string();
                let o = e.by_runbook.entry(rb.clone()).or_default();
                o.0 += 1;
                o.1 += u64::from(status == "failed");
                if rb == "restore" {
                    e.restore_tests += 1;
                }
            }
            "emitted" if d["key"] == "restore_ms" => e.restore_passed += 1,
            "emitted" if d["key"] == "packages_changed" => {
                *e.packages_changed
                    .entry(d["host"].as_str().unwrap().to_string())
                    .or_default() += d["value"].as_u64().unwrap()
            }
            "break_glass" => {
                e.break_glass += 1;
                glass_started.insert(run.to_string(), ts(r));
            }
            "review_acknowledged" => e
                .review_secs
                .push((ts(r) - glass_started[run]).num_seconds()),
            "approval_requested" => {
                let parties: Vec<String> = d["from"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["party"].as_str().unwrap().to_string())
                    .collect();
                for p in &parties {
                    e.approvals.entry(p.clone()).or_default().0 += 1;
                }
                asked.insert((run.to_string(), d["gate"].as_i64().unwrap()), parties);
            }
            "approval_granted" => {
                e.approvals
                    .entry(d["party"].as_str().unwrap().to_string())
                    .or_default()
                    .1 += 1
            }
            "approval_denied" => {
                e.approvals
                    .entry(d["party"].as_str().unwrap().to_string())
                    .or_default()
                    .2 += 1
            }
            "approval_expired" => {
                for p in &asked[&(run.to_string(), d["gate"].as_i64().unwrap())] {
                    e.approvals.entry(p.clone()).or_default().3 += 1;
                }
            }
            "checkpoint_signed" => {
                e.checkpoint = Some((
                    d["seq"].as_u64().unwrap(),
                    d["head"].as_str().unwrap().to_string(),
                ))
            }
            _ => {}
        }
    }
    e
}

/// The same figures read from a report's JSON.
fn reported(r: &Value) -> Expected {
    let n = |v: &Value| v.as_u64().unwrap();
    let list = |k: &str| r[k].as_array().unwrap().clone();
    Expected {
        head_seq: n(&r["chain"]["head_seq"]),
        head_hash: r["chain"]["head_hash"].as_str().unwrap().to_string(),
        checkpoint: r["chain"]["checkpoint"].as_object().map(|c| {
            (
                c["seq"].as_u64().unwrap(),
                c["head"].as_str().unwrap().to_string(),
            )
        }),
        runs_finished: n(&r["totals"]["runs_finished"]),
        by_status: r["totals"]["by_status"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), n(v)))
            .collect(),
        by_runbook: list("failures_by_runbook")
            .iter()
            .map(|o| {
                (
                    o["runbook"].as_str().unwrap().to_string(),
                    (n(&o["runs"]), n(&o["failed"])),
                )
            })
            .collect(),
        restore_tests: n(&r["restores"]["tests"]),
        restore_passed: n(&r["restores"]["passed"]),
        packages_changed: list("patch")
            .iter()
            .filter(|p| n(&p["packages_changed"]) > 0)
            .map(|p| {
                (
                    p["host"].as_str().unwrap().to_string(),
                    n(&p["packages_changed"]),
                )
            })
            .collect(),
        break_glass: r["incidents"]["break_glass"].as_array().unwrap().len() as u64,
        review_secs: r["incidents"]["break_glass"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["review_secs"].as_i64())
            .collect(),
        approvals: list("approvals")
            .iter()
            .map(|a| {
                (
                    a["party"].as_str().unwrap().to_string(),
                    (
                        n(&a["requested"]),
                        n(&a["granted"]),
                        n(&a["denied"]),
                        n(&a["expired"]),
                    ),
                )
            })
            .collect(),
        activity: list("activity")
            .iter()
            .map(|a| {
                (
                    a["party"].as_str().unwrap().to_string(),
                    n(&a["runs_requested"]),
                )
            })
            .collect(),
    }
}

/// `tandem report … --format FORMAT` on the store, with `extra` arguments.
fn report(env: &Env, format: &str, extra: &[&str]) -> String {
    let (from, to) = period();
    let out = env
        .command()
        .args(["report", "--from", &from, "--to", &to, "--format", format])
        .args(extra)
        .run();
    out.success();
    out.stdout.clone()
}

/// Parses CSV text (RFC 4180: quoted fields may hold commas, quotes and newlines).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(!quoted, "CSV ends inside a quoted field");
    assert!(
        field.is_empty() && row.is_empty(),
        "CSV's last row has no newline"
    );
    rows
}

#[test]
fn a_report_over_a_real_history_matches_the_audit_export_and_each_party_sees_its_own() {
    let sshd = Sshd::start();
    let env = site_env(&report_config(&sshd));
    write_runbooks(&env);
    let mut daemon = Daemon::start(&env);
    let glass = make_history(&env, &daemon);
    // A stopping daemon signs a checkpoint over its head; then nothing writes the store.
    daemon.sigterm();
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)), Some(0));

    // The whole estate: every figure equals the one computed from the export.
    let export = env.command().args(["audit", "export"]).run();
    export.success();
    let records: Vec<Value> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let whole: Value = serde_json::from_str(&report(&env, "json", &[])).unwrap();
    let want = expected(&records);
    assert_eq!(reported(&whole), want, "report:\n{whole:#}");
    // The report verified the chain it counted, and that it extends the checkpoint.
    assert_eq!(whole["chain"]["verified"], true, "{:#}", whole["chain"]);
    assert_eq!(
        whole["chain"]["checkpoint_in_log"], true,
        "{:#}",
        whole["chain"]
    );
    // The history is what the test made, so the comparison compared something.
    assert_eq!(want.restore_tests, 2);
    assert_eq!(want.restore_passed, 1);
    assert_eq!(want.packages_changed, BTreeMap::from([("web1".into(), 3)]));
    // Internal was asked twice (the denied and the expired run); break-glass skipped it.
    assert_eq!(want.approvals["internal"], (2, 0, 1, 1), "{want:?}");
    assert_eq!(want.break_glass, 1);
    assert_eq!(want.review_secs.len(), 1);
    let checkpoint = want.checkpoint.clone().expect("the shutdown checkpoint");
    assert_eq!(
        checkpoint.0 + 1,
        want.head_seq,
        "the checkpoint covers all but itself"
    );
    // Per-host outcomes come from the runs: web2's patch failed, mon1's check failed.
    let hosts: Vec<(&str, u64)> = whole["failures_by_host"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["host"].as_str().unwrap(), h["failed"].as_u64().unwrap()))
        .collect();
    assert_eq!(hosts, [("mon1", 1), ("nas1", 1), ("web2", 1)]);
    let web2 = whole["patch"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["host"] == "web2")
        .unwrap();
    assert_eq!(
        (web2["runs"].as_u64(), web2["failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(web2["last_patched"].is_null(), "{web2}");
    let web1 = whole["patch"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["host"] == "web1")
        .unwrap();
    assert_eq!(web1["days_since"], 0, "{web1}");
    assert_eq!(
        whole["incidents"]["isolations"][0]["run_id"],
        glass.as_str()
    );
    assert_eq!(
        whole["incidents"]["break_glass"][0]["reason"],
        "ransomware on web1"
    );

    // Internal's report equals what the test computes from internal's view of the log (the
    // audit API as internal's auditor would give it: the same records, the rest redacted).
    let daemon = Daemon::start(&env);
    let view = crate::run_flow::audit_records(&daemon);
    drop(daemon);
    let view: Vec<Value> = view
        .into_iter()
        .filter(|r| r["seq"].as_u64().unwrap() <= want.head_seq)
        .collect();
    let internal: Value =
        serde_json::from_str(&report(&env, "json", &["--party", "internal"])).unwrap();
    // The restarted daemon appended to the log: compare up to the head read before.
    let mut internal_want = expected(&view);
    let mut internal_got = reported(&internal);
    assert!(internal_got.head_seq > want.head_seq);
    internal_want.head_seq = internal_got.head_seq;
    internal_want.head_hash = internal_got.head_hash.clone();
    internal_got.checkpoint = internal_want.checkpoint.clone();
    assert_eq!(
        internal_got, internal_want,
        "internal's report:\n{internal:#}"
    );
    // Provider's check of its own host is not internal's business.
    let text = internal.to_string();
    assert!(
        !text.contains("mon-check") && !text.contains("mon1"),
        "{internal:#}"
    );
    assert!(whole.to_string().contains("mon-check"));
    let provider: Value =
        serde_json::from_str(&report(&env, "json", &["--party", "provider"])).unwrap();
    assert!(provider.to_string().contains("mon1"), "{provider:#}");
    // Internal's restore tests on its own nas1 are none of provider's business.
    assert_eq!(provider["restores"]["tests"], 0, "{provider:#}");

    // The CSV parses, one fact a row, and carries the same head.
    let csv = report(&env, "csv", &[]);
    let rows = parse_csv(&csv);
    assert_eq!(rows[0], ["section", "item", "metric", "value"]);
    assert!(rows.iter().all(|r| r.len() == 4), "{csv}");
    let fact = |section: &str, item: &str, metric: &str| {
        rows.iter()
            .find(|r| r[0] == section && r[1] == item && r[2] == metric)
            .map(|r| r[3].clone())
            .unwrap_or_else(|| panic!("no {section},{item},{metric} in\n{csv}"))
    };
    let head_seq: u64 = fact("chain", "head", "seq").parse().unwrap();
    assert!(head_seq >= want.head_seq);
    assert_eq!(fact("restores", "", "passed"), "1");
    assert_eq!(fact("patch", "web1", "packages_changed"), "3");
    assert_eq!(fact("break_glass", &glass, "reason"), "ransomware on web1");

    // The standalone HTML names the head and the checkpoint and prints on A4.
    let out = env.path().join("report.html");
    report(&env, "html", &["--out", out.to_str().unwrap()]);
    let html = std::fs::read_to_string(&out).unwrap();
    // Kept as a test artifact beside the page screenshots.
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("report-standalone.html"), &html).unwrap();
    let now: Value = serde_json::from_str(&report(&env, "json", &[])).unwrap();
    let head = now["chain"]["head_hash"].as_str().unwrap();
    assert!(
        html.contains(head),
        "the head hash {head} is not in the HTML"
    );
    assert!(
        html.contains(&checkpoint.1),
        "the checkpoint's head is not in the HTML"
    );
    assert!(html.contains("@page{size:A4"), "no A4 print rule");
    assert!(html.contains("<svg class=\"chart\""), "no restore chart");
}

#[test]
fn report_refuses_a_bad_period_or_party_with_a_clear_error() {
    let sshd = Sshd::start();
    let env = site_env(&report_config(&sshd));
    write_runbooks(&env);
    env.command()
        .args(["report", "--from", "2026-13-01", "--to", "2026-12-01"])
        .run()
        .status(2)
        .stderr_contains("from `2026-13-01` is not a date");
    env.command()
        .args(["report", "--from", "2026-12-02", "--to", "2026-12-01"])
        .run()
        .status(2)
        .stderr_contains("is before from");
    env.command()
        .args([
            "report",
            "--from",
            "2026-12-01",
            "--to",
            "2026-12-01",
            "--party",
            "nobody",
        ])
        .run()
        .status(2)
        .stderr_contains("unknown party `nobody`");
}

/// A page's HTML as `cookie`'s user.
fn get_page(cookie: &str, url: &str) -> (u16, String) {
    let r = page_client()
        .get(url)
        .header("cookie", cookie)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn the_reports_page_shows_each_party_its_own_report_in_a_real_browser() {
    let sshd = Sshd::start();
    let env = site_env(&report_config(&sshd));
    write_runbooks(&env);
    let daemon = Daemon::start(&env);
    make_history(&env, &daemon);
    let (from, to) = period();
    let query = format!("from={from}&to={to}");

    // Plain HTTP: internal's page and its JSON download agree on the head; provider's
    // failing check is not on internal's page but is on provider's.
    let client = page_client();
    let (_, alice) = sign_in(&client, &daemon, "alice", "/reports");
    let (status, html) = get_page(&alice, &format!("{}/reports?{query}", daemon.url()));
    assert_eq!(status, 200, "{html}");
    assert!(
        !html.contains("<style") && !html.contains("style=\""),
        "inline style under the CSP"
    );
    assert!(html.contains("/static/tandem.css"));
    assert!(
        !html.contains("mon1") && !html.contains("mon-check"),
        "{html}"
    );
    assert!(html.contains("id=\"head-hash\""), "{html}");
    // Every field has its label, and the form is sent by a real button (keyboard, no script).
    for field in ["from", "to", "party"] {
        assert!(
            html.contains(&format!("<label for=\"{field}\">"))
                && html.contains(&format!("id=\"{field}\"")),
            "{field} without a label: {html}"
        );
    }
    assert!(html.contains("<button type=\"submit\" id=\"show-report\">"));
    let json_link = format!("{}/reports/report.json?{query}", daemon.url());
    let (status, body) = get_page(&alice, &json_link);
    assert_eq!(status, 200, "{body}");
    let internal: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&internal["viewer"], &internal["party"]),
        (&json!("internal"), &Value::Null)
    );
    let (status, csv) = get_page(
        &alice,
        &format!("{}/reports/report.csv?{query}", daemon.url()),
    );
    assert_eq!(status, 200);
    assert!(parse_csv(&csv).iter().all(|r| r.len() == 4), "{csv}");
    let (_, paula) = sign_in(&client, &daemon, "paula", "/reports");
    let (_, html) = get_page(&paula, &format!("{}/reports?{query}", daemon.url()));
    assert!(html.contains("mon1"), "{html}");
    // A bad period is refused beside the form, not with a crash.
    let (status, html) = get_page(
        &alice,
        &format!("{}/reports?from=2026-12-05&to=2026-12-01", daemon.url()),
    );
    assert_eq!(status, 422);
    assert!(html.contains("is before from"), "{html}");
    // Not signed in: sent to sign in.
    let r = client
        .get(format!("{}/reports", daemon.url()))
        .send()
        .unwrap();
    assert!(r.status().is_redirection());

    // A real browser: sign in as alice, fill the form, see the report with the head hash.
    let browser = Browser::start();
    browser.navigate(&format!("{}/reports", daemon.url()));
    browser.send_keys(&browser.find("input#token"), &token("alice"));
    browser.click(&browser.find("button#sign-in"));
    // Sign-in brings alice back to the reports form.
    browser.find("form.report-form");
    browser.navigate(&format!("{}/reports?{query}", daemon.url()));
    let head = browser.text(&browser.find("#head-hash"));
    assert_eq!(head.len(), 64, "{head}");
    // The daemon is idle (no periodic checkpoint): the JSON read now has the same head.
    let again: Value = serde_json::from_str(&get_page(&alice, &json_link).1).unwrap();
    assert_eq!(head, again["chain"]["head_hash"].as_str().unwrap());
    assert!(
        browser
            .text(&browser.find("#chain-status"))
            .starts_with("The chain verified"),
        "chain status"
    );
    assert_eq!(browser.text(&browser.find("#restore-passed")), "1");
    assert_eq!(browser.text(&browser.find("#break-glass-count")), "1");
    assert!(!browser.find_all("svg.chart").is_empty(), "no chart");
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors on /reports: {errors:?}");
    browser.save_screens("reports");
    browser.navigate(&format!("{}/reports?{query}#restores", daemon.url()));
    browser.save_screens("reports-restores");

    // The form: narrow to what concerns provider too, and send it with its button.
    browser.click(&browser.find("select#party option[value=\"provider\"]"));
    browser.click(&browser.find("button#show-report"));
    wait_until(Duration::from_secs(10), "the narrowed report", || {
        browser.current_url().contains("party=provider")
    });
    let meta = browser.text(&browser.wait_find("p.report-meta", Duration::from_secs(10)));
    assert!(
        meta.contains("what internal may see that concerns provider too"),
        "{meta}"
    );
    // Still internal's view: provider's own check stays out.
    assert!(!browser.page_source().contains("mon-check"));
}
