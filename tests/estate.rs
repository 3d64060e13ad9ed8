//! The estate pages (issue 15): the responsibility matrix agrees with `tandem plan --as` for
//! every runbook × user, its CSV is scoped to the caller's party (rule 10), and the pages
//! work in a real headless Chromium.

use std::collections::BTreeMap;

use reqwest::blocking::Client;
use serde_json::Value;

use crate::harness::{token, Browser, Daemon, Env, HostSpec, StandardConfig, USERS};
use crate::web::{page_client, sign_in};

/// Two parties' hosts, an API and a secret of each, and users of every kind.
fn estate_config() -> StandardConfig {
    StandardConfig::new()
        .host(HostSpec::local("h1", "internal").tags(&["all", "web"]))
        .host(HostSpec::local("h2", "internal").tags(&["all"]))
        .host(HostSpec::local("h3", "provider").tags(&["all", "mon"]))
        .api("defender", "https://api.securitycenter.microsoft.com", "internal")
        .api("psa", "https://psa.provider.example/api/", "provider")
        .user("iona", "internal", &["operator", "approver"])
        .user("pam", "provider", &["operator", "approver"])
        .user("padmin", "provider", &["admin"])
        .extra(
            "secrets:\n  edr_token: { env: T_EDR_TOKEN, owner: internal }\n  psa_token: { env: T_PSA_TOKEN, owner: provider }\n",
        )
        .extra(
            "calendars:\n  holidays:\n    description: office closed\n    periods:\n      - { from: \"2027-01-10T00:00:00+01:00\", to: \"2027-01-11T00:00:00+01:00\", reason: \"new year freeze\" }\n",
        )
}

/// Runbooks covering the matrix's cases: mixed owners, approval `from` and quorum, an
/// API-only emergency runbook, a runbook only one party may see.
const RUNBOOKS: &[(&str, &str)] = &[
    (
        "disk",
        "name: disk\ndescription: disk usage everywhere\nowner: internal\ntargets: [\"tag:all\"]\n\
         scope: { commands: [\"df -h\"] }\nallowed: { parties: [internal, provider], roles: [operator] }\n\
         script: 'sh(\"df -h\")'\n",
    ),
    (
        "patch",
        "name: patch\ndescription: monthly patching\nowner: internal\ntargets: [h1, h3]\n\
         scope: { commands: [\"true\"] }\nallowed: { parties: [internal, provider], roles: [operator, admin] }\n\
         approval: { quorum: 2 }\n\
         schedule: { cron: \"0 3 * * SUN\", timezone: Europe/Berlin, window: 2h, blackout: [holidays] }\n\
         script: 'sh(\"true\")'\n",
    ),
    (
        "isolate",
        "name: isolate\ndescription: isolate a device in the EDR\nowner: internal\ntargets: []\n\
         scope: { http: [\"POST https://api.securitycenter.microsoft.com/api/machines/\"], secrets: [edr_token] }\n\
         allowed: { parties: [internal, provider], roles: [operator] }\nemergency: true\n\
         script: '1'\n",
    ),
    (
        "monitor",
        "name: monitor\ndescription: the provider's own monitoring\nowner: provider\ntargets: [h3]\n\
         scope: { commands: [\"true\"], http: [\"GET https://psa.provider.example/api/tickets\"], secrets: [psa_token] }\n\
         allowed: { parties: [provider], roles: [operator] }\nschedule: { cron: \"0 4 1 1 *\" }\n\
         script: 'sh(\"true\")'\n",
    ),
    (
        "audit-web",
        "name: audit-web\ndescription: asks the provider\nowner: internal\ntargets: [\"tag:web\"]\n\
         scope: { commands: [\"true\"] }\napproval: { from: provider }\nscript: 'sh(\"true\")'\n",
    ),
];

fn estate_env() -> Env {
    let env = Env::new();
    env.write_config(&estate_config().to_yaml());
    for (name, yaml) in RUNBOOKS {
        env.write_runbook(&format!("{name}.yaml"), yaml);
    }
    env
}

/// Every user of the config: the standard five and the added ones.
fn all_users() -> Vec<(&'static str, &'static str)> {
    USERS
        .iter()
        .map(|(n, p, _)| (*n, *p))
        .chain([
            ("iona", "internal"),
            ("pam", "provider"),
            ("padmin", "provider"),
        ])
        .collect()
}

/// Parses RFC 4180 CSV (quoted fields, doubled quotes, CRLF) into rows of fields.
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
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "CSV must end with a line break"
    );
    rows
}

/// `GET /matrix.csv` as `user`: the header and the rows keyed by column name.
fn matrix_csv(client: &Client, daemon: &Daemon, user: &str) -> Vec<BTreeMap<String, String>> {
    let (_, cookie) = sign_in(client, daemon, user, "/matrix");
    let response = client
        .get(format!("{}/matrix.csv", daemon.url()))
        .header("cookie", &cookie)
        .send()
        .expect("GET /matrix.csv");
    assert_eq!(response.status().as_u16(), 200);
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(kind.starts_with("text/csv"), "{kind}");
    let rows = parse_csv(&response.text().expect("CSV text"));
    let header = rows[0].clone();
    assert_eq!(header[0], "runbook", "{header:?}");
    rows[1..]
        .iter()
        .map(|r| {
            assert_eq!(r.len(), header.len(), "{r:?}");
            header.iter().cloned().zip(r.iter().cloned()).collect()
        })
        .collect()
}

/// The parties and quorums of a CSV `must_approve` cell: `internal x1 (why); provider x2 (why)`.
fn approving(cell: &str) -> Vec<(String, u64)> {
    if cell == "none" || cell.is_empty() {
        return Vec::new();
    }
    // Each requirement is `PARTY xN (REASONS)`; reasons hold no parentheses.
    cell.split(')')
        .map(|s| s.trim_start_matches(';').trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            let head = s.split(" (").next().unwrap_or_default();
            let (party, quorum) = head.rsplit_once(" x").expect("PARTY xN");
            (party.to_string(), quorum.parse().expect("quorum"))
        })
        .collect()
}

#[test]
fn the_matrix_agrees_with_plan_as_for_every_runbook_and_user() {
    let env = estate_env();
    let daemon = Daemon::start(&env);
    let client = page_client();
    // Each party's view of the matrix, as the CSV a person downloads.
    let mut seen: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    for user in ["alice", "paula"] {
        for row in matrix_csv(&client, &daemon, user) {
            seen.insert((row["runbook"].clone(), row["starting_party"].clone()), row);
        }
    }
    let mut checked = 0;
    for (runbook, _) in RUNBOOKS {
        for (user, party) in all_users() {
            let row = seen
                .get(&(runbook.to_string(), party.to_string()))
                .unwrap_or_else(|| panic!("no matrix row for {runbook} started by {party}"));
            let out = env.tandem(["plan", runbook, "--as", user, "--json"]);
            out.success();
            let plan: Value = out.json();
            let may_start = !out.stderr.contains("note:");
            let listed = row["may_start_users"].split(' ').any(|u| u == user);
            assert_eq!(
                listed, may_start,
                "{runbook} as {user}: {row:?}\n{}",
                out.stderr
            );
            if !may_start {
                continue;
            }
            let want: Vec<(String, u64)> = plan["approvals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["party"].as_str().unwrap().to_string(),
                        a["quorum"].as_u64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(
                approving(&row["must_approve"]),
                want,
                "{runbook} as {user}: {row:?} vs {plan:#}"
            );
            // Each party's count of target hosts matches the plan's `owns HOST` reasons.
            let targets: Vec<&str> = plan["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap())
                .collect();
            assert_eq!(row["targets"], targets.len().to_string(), "{row:?}");
            for a in plan["approvals"].as_array().unwrap() {
                let hosts = a["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| {
                        r.as_str()
                            .and_then(|r| r.strip_prefix("owns "))
                            .is_some_and(|h| targets.contains(&h))
                    })
                    .count();
                if hosts > 0 {
                    let words = format!("{} x{} (", a["party"].as_str().unwrap(), a["quorum"]);
                    let cell = &row["must_approve"];
                    let at = cell.find(&words).expect("the party's requirement");
                    let counted = format!("owns {hosts} of {} targets", targets.len());
                    assert!(cell[at..].contains(&counted), "{cell} lacks {counted}");
                }
            }
            // Break-glass: only an emergency runbook (the engine refuses the others).
            let emergency = RUNBOOKS
                .iter()
                .any(|(n, y)| n == runbook && y.contains("emergency: true"));
            assert_eq!(row["break_glass"] == "yes", emergency, "{row:?}");
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} runbook x user pairs checked");
}

#[test]
fn a_party_sees_only_the_matrix_rows_that_concern_it() {
    let env = estate_env();
    let daemon = Daemon::start(&env);
    let client = page_client();
    let runbooks = |user: &str| -> Vec<String> {
        let mut v: Vec<String> = matrix_csv(&client, &daemon, user)
            .into_iter()
            .map(|r| r["runbook"].clone())
            .collect();
        v.dedup();
        v
    };
    // `monitor` is the provider's own: its runbook, its host, its API and secret.
    assert!(!runbooks("alice").contains(&"monitor".to_string()));
    assert!(runbooks("paula").contains(&"monitor".to_string()));
    // The API agrees: the runbooks internal may see do not include it either.
    let (status, list) = daemon.get("/api/v1/runbooks", &token("alice"));
    assert_eq!(status, 200);
    assert!(!list.to_string().contains("\"monitor\""), "{list}");
    // Signed out, the CSV is not given.
    let response = client
        .get(format!("{}/matrix.csv", daemon.url()))
        .send()
        .expect("GET /matrix.csv");
    assert!(response.status().is_redirection(), "{}", response.status());
}

#[test]
fn plan_prints_owners_as_counts_and_lists_hosts_on_request() {
    let env = estate_env();
    let out = env.tandem(["plan", "disk", "--as", "paula"]);
    out.success()
        .stdout_contains("internal owns 2 of 3 targets")
        .stdout_contains("provider owns 1 of 3 targets")
        .stdout_contains("approval:  internal x1 (owns 2 of 3 targets)")
        .stdout_lacks("owns h1");
    env.tandem(["plan", "disk", "--as", "paula", "--targets"])
        .success()
        .stdout_contains("owns h1; owns h2")
        .stdout_contains("  h3 local owner=provider");
}

#[test]
fn the_matrix_page_in_a_real_browser() {
    if !Browser::available() {
        panic!("Chromium is needed for the console tests");
    }
    let env = estate_env();
    let daemon = Daemon::start(&env);
    let browser = Browser::start();
    browser.navigate(&format!("{}/matrix", daemon.url()));
    browser.send_keys(&browser.find("#token"), &token("paula"));
    browser.click(&browser.find("#sign-in"));
    let summary = browser.find("#matrix-summary");
    assert!(browser.text(&summary).contains("runbooks concern provider"));
    let disk = browser.text(&browser.find("#rb-disk"));
    assert!(disk.contains("internal owns 2 of 3 targets"), "{disk}");
    assert!(disk.contains("provider owns 1 of 3 targets"), "{disk}");
    let isolate = browser.text(&browser.find("#rb-isolate"));
    assert!(isolate.contains("API defender (internal)"), "{isolate}");
    assert!(
        isolate.contains("started by provider: reviewed by internal"),
        "{isolate}"
    );
    let csv = browser.find("#matrix-csv");
    assert_eq!(
        browser.attribute(&csv, "href").as_deref(),
        Some("/matrix.csv")
    );
    browser.save_screens("matrix");
}

/// Signs `browser` in as `user` from the sign-in page `path` leads to.
fn browser_sign_in(browser: &Browser, daemon: &Daemon, user: &str, path: &str) {
    browser.navigate(&format!("{}{path}", daemon.url()));
    browser.send_keys(&browser.find("#token"), &token(user));
    browser.click(&browser.find("#sign-in"));
}

#[test]
fn an_owner_freezes_a_host_from_the_hosts_page_and_lifts_it() {
    let env = estate_env();
    let daemon = Daemon::start(&env);
    let browser = Browser::start();
    browser_sign_in(&browser, &daemon, "ivan", "/hosts");
    let summary = browser.text(&browser.find("#hosts-summary"));
    assert!(
        summary.contains("internal owns 2 of the 3 hosts"),
        "{summary}"
    );
    browser.send_keys(&browser.find("#reason-h1"), "disk replacement");
    browser.click(&browser.find("#freeze-h1"));
    let lift = browser.find("#lift-h1");
    let row = browser.text(&browser.find("#host-h1"));
    assert!(row.contains("frozen by ivan"), "{row}");
    assert!(row.contains("disk replacement"), "{row}");
    browser.save_screens("hosts");

    // The engine holds it: a run on h1 is refused while it is frozen.
    let (status, refused) = daemon.post(
        "/api/v1/runs",
        &token("alice"),
        &serde_json::json!({"runbook": "disk"}),
    );
    assert_eq!(status, 409, "{refused}");
    assert!(refused.to_string().contains("h1"), "{refused}");
    let (_, freezes) = daemon.get("/api/v1/freezes", &token("ivan"));
    assert_eq!(freezes[0]["host"], "h1", "{freezes}");

    // The provider sees that h1 is frozen, not why, and has no form for it.
    let client = page_client();
    let (_, cookie) = sign_in(&client, &daemon, "pete", "/hosts");
    let html = client
        .get(format!("{}/hosts", daemon.url()))
        .header("cookie", &cookie)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(html.contains("frozen</span> by its owner"), "{html}");
    assert!(!html.contains("disk replacement"), "{html}");
    assert!(!html.contains("id=\"lift-h1\""), "{html}");
    // Nor may it lift it by posting the form itself (rule 11, the engine's refusal).
    let csrf = {
        let marker = "name=\"csrf\" value=\"";
        let start = html
            .find(marker)
            .expect("a csrf field (pete may freeze h3)")
            + marker.len();
        html[start..start + 64].to_string()
    };
    let response = client
        .post(format!("{}/hosts/lift", daemon.url()))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("host", "h1")])
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    // A post without the session's CSRF token does nothing.
    let response = client
        .post(format!("{}/hosts/lift", daemon.url()))
        .header("cookie", &cookie)
        .form(&[("csrf", "0".repeat(64).as_str()), ("host", "h3")])
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);

    // Lifted from the page, h1 takes runs again.
    browser.click(&lift);
    browser.find("#freeze-h1");
    let (status, run) = daemon.post(
        "/api/v1/runs",
        &token("alice"),
        &serde_json::json!({"runbook": "disk"}),
    );
    assert_eq!(status, 201, "{run}");
    let (_, freezes) = daemon.get("/api/v1/freezes", &token("ivan"));
    assert_eq!(freezes, serde_json::json!([]));
    // The new run is each target's last run.
    browser.navigate(&format!("{}/hosts", daemon.url()));
    let row = browser.text(&browser.find("#host-h1"));
    assert!(row.contains(run["id"].as_str().unwrap()), "{row}");
}

#[test]
fn the_hosts_page_lists_only_what_a_party_may_see_and_filters() {
    // A third party's host that no runbook of internal's touches stays out of its list.
    let config = estate_config()
        .party("msp2")
        .host(HostSpec::local("x9", "msp2"))
        .user("max", "msp2", &["approver"]);
    let env = Env::new();
    env.write_config(&config.to_yaml());
    for (name, yaml) in RUNBOOKS {
        env.write_runbook(&format!("{name}.yaml"), yaml);
    }
    let daemon = Daemon::start(&env);
    let client = page_client();
    let get = |user: &str, path: &str| -> String {
        let (_, cookie) = sign_in(&client, &daemon, user, "/hosts");
        let response = client
            .get(format!("{}{path}", daemon.url()))
            .header("cookie", &cookie)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        response.text().unwrap()
    };
    let html = get("alice", "/hosts");
    assert!(
        html.contains("id=\"host-h3\""),
        "h3 is a target of internal's runbooks"
    );
    assert!(!html.contains("id=\"host-x9\""), "{html}");
    let html = get("max", "/hosts");
    assert!(html.contains("id=\"host-x9\""));
    assert!(!html.contains("id=\"host-h1\""), "{html}");
    // Filters: by tag, and by a runbook's targets.
    let html = get("alice", "/hosts?tag=web");
    assert!(html.contains("id=\"host-h1\"") && !html.contains("id=\"host-h2\""));
    let html = get("alice", "/hosts?runbook=patch");
    assert!(html.contains("id=\"host-h1\"") && html.contains("id=\"host-h3\""));
    assert!(!html.contains("id=\"host-h2\""), "{html}");
    assert!(html.contains("2 hosts match"), "{html}");
}

#[test]
fn the_schedules_page_shows_approval_status_standing_approvals_and_the_month() {
    let env = estate_env();
    let daemon = Daemon::start(&env);
    let browser = Browser::start();
    browser_sign_in(&browser, &daemon, "ivan", "/schedules");
    let row = browser.text(&browser.find("#sch-patch"));
    assert!(row.contains("0 3 * * SUN"), "{row}");
    assert!(row.contains("Europe/Berlin"), "{row}");
    assert!(
        row.contains("will skip: needs approval from internal, provider"),
        "{row}"
    );
    // The next slots in the zone and in UTC: 03:00 in Berlin is 01:00 or 02:00 UTC.
    assert!(
        row.contains("03:00 (UTC+01:00) · 02:00 UTC")
            || row.contains("03:00 (UTC+02:00) · 01:00 UTC"),
        "{row}"
    );
    let summary = browser.text(&browser.find("#schedules-summary"));
    assert!(summary.contains("will skip their next slot"), "{summary}");
    // Rule 10: the provider's own schedule is not internal's to see.
    assert!(browser.find_all("#sch-monitor").is_empty());

    // Standing approvals from both parties, two approvers each (quorum 2).
    for user in ["ivan", "iona", "pete", "pam"] {
        let (status, body) = daemon.post(
            "/api/v1/schedules/patch/standing",
            &token(user),
            &serde_json::json!({"for": "30d"}),
        );
        assert_eq!(status, 201, "{user}: {body}");
    }
    browser.navigate(&format!("{}/schedules", daemon.url()));
    let row = browser.text(&browser.find("#sch-patch"));
    assert!(row.contains("approved"), "{row}");
    assert!(
        row.contains("standing approval by iona (internal) until"),
        "{row}"
    );
    assert!(row.contains("pete (provider) until"), "{row}");
    let (_, api) = daemon.get("/api/v1/schedules", &token("ivan"));
    let patch = api
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["runbook"] == "patch")
        .unwrap();
    assert_eq!(patch["next_slot_approved"], true, "{patch}");
    assert_eq!(patch["standing"].as_array().unwrap().len(), 4, "{patch}");

    // The month calendar: Sundays at 03:00 with a two-hour window; the blackout day
    // is drawn and its slot marked skipped.
    browser.navigate(&format!(
        "{}/schedules?runbook=patch&month=2027-01",
        daemon.url()
    ));
    let sunday = browser.text(&browser.find("#day-2027-01-03"));
    assert!(sunday.contains("03:00"), "{sunday}");
    assert!(sunday.contains("window to 05:00"), "{sunday}");
    assert!(!sunday.contains("skipped"), "{sunday}");
    let blackout = browser.text(&browser.find("#day-2027-01-10"));
    assert!(blackout.contains("blackout holidays"), "{blackout}");
    assert!(blackout.contains("03:00 skipped"), "{blackout}");
    let monday = browser.text(&browser.find("#day-2027-01-04"));
    assert!(!monday.contains("03:00"), "{monday}");
    browser.click(&browser.find("#cal-next"));
    browser.find("#day-2027-02-07");
    browser.save_screens("schedules");

    // The provider sees its own schedule; a month of one it may not see is refused.
    let client = page_client();
    let (_, cookie) = sign_in(&client, &daemon, "paula", "/schedules");
    let html = client
        .get(format!("{}/schedules", daemon.url()))
        .header("cookie", &cookie)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(html.contains("id=\"sch-monitor\""), "{html}");
    let (_, cookie) = sign_in(&client, &daemon, "alice", "/schedules");
    let response = client
        .get(format!("{}/schedules?runbook=monitor", daemon.url()))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

#[test]
fn the_audit_page_verifies_the_chain_shows_checkpoints_and_only_what_a_party_may_see() {
    let env = Env::new();
    let witness = env.path().join("internal-witness.jsonl");
    let config = estate_config()
        .user("pat", "provider", &["auditor"])
        .extra(&format!(
            "audit:\n  checkpoint_records: 3\n  checkpoint_interval: 1s\n  witnesses:\n    - {{ party: internal, file: {} }}\n",
            serde_json::Value::from(witness.to_string_lossy().to_string())
        ));
    env.write_config(&config.to_yaml());
    for (name, yaml) in RUNBOOKS {
        env.write_runbook(&format!("{name}.yaml"), yaml);
    }
    let daemon = Daemon::start(&env);
    // The provider's own run: internal is not concerned (rule 10).
    let (status, run) = daemon.post(
        "/api/v1/runs",
        &token("paula"),
        &serde_json::json!({"runbook": "monitor"}),
    );
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    crate::harness::wait_for(std::time::Duration::from_secs(30), "the run ends", || {
        let (_, r) = daemon.get(&format!("/api/v1/runs/{id}"), &token("paula"));
        (r["status"] == "succeeded").then_some(())
    });
    let (status, _) = daemon.post(
        "/api/v1/freezes",
        &token("ivan"),
        &serde_json::json!({"targets": ["h2"], "reason": "audit page test"}),
    );
    assert_eq!(status, 200);
    crate::harness::wait_for(
        std::time::Duration::from_secs(30),
        "a checkpoint delivered to the witness file",
        || {
            let (_, log) = daemon.get("/api/v1/audit", &token("audrey"));
            log.to_string()
                .contains("checkpoint_delivered")
                .then_some(())
        },
    );

    let browser = Browser::start();
    browser_sign_in(&browser, &daemon, "audrey", "/audit");
    let chain = browser.text(&browser.find("#chain-status"));
    assert!(chain.contains("The chain verifies"), "{chain}");
    let checkpoints = browser.text(&browser.find("#checkpoints"));
    assert!(
        checkpoints.contains("delivered internal (file, 1 attempt)"),
        "{checkpoints}"
    );
    browser.save_screens("audit");
    // Filter by event from the form.
    browser.click(&browser.find("#f-event option[value='']"));
    browser.send_keys(&browser.find("#f-event"), "host_frozen");
    browser.click(&browser.find("#f-apply"));
    crate::harness::wait_until(
        std::time::Duration::from_secs(10),
        "the filtered page",
        || browser.current_url().contains("event=host_frozen"),
    );
    let records = browser.text(&browser.find("#records"));
    assert!(records.contains("host_frozen"), "{records}");
    assert!(records.contains("ivan (internal)"), "{records}");
    assert!(!records.contains("run_requested"), "{records}");

    // Plain HTTP: the page shows each record as GET /api/v1/audit does for the same
    // party, whole or redacted, for both parties' auditors.
    let client = page_client();
    for auditor in ["audrey", "pat"] {
        let (_, api) = daemon.get("/api/v1/audit?limit=50", &token(auditor));
        let (_, cookie) = sign_in(&client, &daemon, auditor, "/audit");
        let html = client
            .get(format!("{}/audit", daemon.url()))
            .header("cookie", &cookie)
            .send()
            .unwrap()
            .text()
            .unwrap();
        let mut redacted = 0;
        for e in api.as_array().unwrap() {
            let seq = e["seq"].as_u64().unwrap();
            if e["redacted"] == true {
                redacted += 1;
                assert!(
                    html.contains(&format!("id=\"rec-{seq}\" class=\"muted\"")),
                    "{auditor}: {seq} should be redacted"
                );
            } else {
                let row = format!("<tr id=\"rec-{seq}\"><td>{seq}</td>");
                assert!(html.contains(&row), "{auditor}: {seq} should be whole");
            }
        }
        assert!(
            redacted > 0,
            "{auditor} sees another party's records redacted"
        );
        // The provider's run, filtered by its id: internal sees none of it.
        let filtered = client
            .get(format!("{}/audit?run={id}", daemon.url()))
            .header("cookie", &cookie)
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert_eq!(
            filtered.contains("<td>run_requested</td>"),
            auditor == "pat",
            "{auditor}: {filtered}"
        );
    }
    // Without the auditor or admin role, no audit page (as the API).
    let (_, cookie) = sign_in(&client, &daemon, "alice", "/audit");
    let response = client
        .get(format!("{}/audit", daemon.url()))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
}
