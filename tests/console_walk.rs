//! The whole console with the keyboard alone (issue 15): on every page, Tab from the top
//! reaches every link, button, field, select and summary, each with an accessible name and a
//! drawn focus, and the page logs no console error (a CSP violation would show there); then
//! Cancel, Deny with its reason, freeze and lift, the filters of `/runs` and `/audit`, Preview
//! then Start, and break-glass are done by keyboard and checked through the API. Real
//! headless Chromium. Also `GET /api/v1/report`: the report of `tandem report`, scoped to the
//! caller's party like `/reports`.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::approvals::{
    get_run, id_of, request, request_pending, site_config, site_env, wait_status, wait_status_as,
    write_marker_runbook, write_runbook,
};
use crate::harness::{
    token, unindent, wait_for, wait_until, Browser, Daemon, Env, FocusStop, ENTER, SCREEN_SIZES,
    SPACE,
};
use crate::web::{page_client, sign_in};

/// Presses of Tab after which a walk gives up: far more than any page here has controls.
const WALK_LIMIT: usize = 400;

/// A value too long for a phone's screen, with nowhere to break it.
const LONG: &str = "https://intranet.example/runbooks/disk-report/attachments/2026-12-02/\
web1-df-output-before-and-after-the-cleanup-of-var-log-journal-and-tmp.txt";

/// How long a page's effect may take to show.
const SHOWN: Duration = Duration::from_secs(20);

/// The site: internal's `web1` and provider's `mon1`, and runbooks for every page:
/// `disk-report` (internal approves), `echo-msg` (typed params, provider's, a short pause),
/// `long` (provider's, runs until cancelled) and `isolate` (emergency, break-glass).
fn walk_env() -> Env {
    walk_env_with("")
}

/// [`walk_env`] with more top-level YAML in its config.
fn walk_env_with(extra: &str) -> Env {
    let env = site_env(
        &site_config()
            .extra("audit: { checkpoint_records: 100000, checkpoint_interval: 24h }")
            .extra(extra),
    );
    write_marker_runbook(
        &env,
        "disk-report",
        "[web1]",
        "approval: { from: internal }",
    );
    write_marker_runbook(
        &env,
        "isolate",
        "[web1]",
        "emergency: true\napproval: { from: internal }",
    );
    env.write_runbook(
        "echo-msg.yaml",
        &unindent(
            r#"
            name: echo-msg
            description: Logs a message a number of times.
            owner: provider
            targets: [mon1]
            allowed: { parties: [provider], roles: [operator] }
            params:
              message: { type: string, description: What to log }
              times: { type: int, default: 2, description: How many times }
            timeout: 60s
            script: |
              sleep(1);
              for i in 0..params.times { log(`said: ${params.message}`); }
              log("done saying");
            "#,
        ),
    );
    env.write_runbook(
        "long.yaml",
        &unindent(
            r#"
            name: long
            description: Works until it is cancelled.
            owner: provider
            targets: [mon1]
            allowed: { parties: [provider], roles: [operator] }
            scope: { commands: ["sleep 120"] }
            timeout: 300s
            script: |
              log("working");
              sh("sleep 120");
            "#,
        ),
    );
    env
}

/// Signs the browser in as `user` through the sign-in form, landing on `next`.
fn browser_sign_in(browser: &Browser, daemon: &Daemon, user: &str, next: &str) {
    browser.navigate(&format!("{}/login?next={next}", daemon.url()));
    browser.send_keys(&browser.find("input#token"), &token(user));
    browser.click(&browser.find("button#sign-in"));
    wait_until(SHOWN, &format!("{user} signed in"), || {
        !browser.current_url().contains("/login")
    });
}

/// Asserts that the browser logged no error since the last look.
fn assert_no_console_errors(browser: &Browser, what: &str) {
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors on {what}: {errors:#?}");
}

/// Walks the page shown now with Tab and asserts what a keyboard user needs: the skip link
/// comes first; every shown control is reached; each stop has an accessible name and a
/// drawn focus; and nothing was logged as an error. Returns the stops.
fn walk(browser: &Browser, what: &str) -> Vec<FocusStop> {
    assert_no_console_errors(browser, what);
    let stops = browser.tab_walk(WALK_LIMIT);
    assert!(!stops.is_empty(), "nothing on {what} takes the focus");
    assert_eq!(
        stops[0].name, "Skip to the page",
        "the first stop on {what} is not the skip link: {stops:#?}"
    );
    let reached: BTreeSet<&str> = stops.iter().map(|s| s.key.as_str()).collect();
    let actionable = browser.actionable();
    assert!(
        actionable.len() > 9,
        "{what} lists fewer controls than its navigation has: {actionable:?}"
    );
    let missed: Vec<&str> = actionable
        .iter()
        .filter(|(key, _)| !reached.contains(key.as_str()))
        .map(|(_, shown)| shown.as_str())
        .collect();
    assert!(
        missed.is_empty(),
        "on {what}, Tab never reaches {missed:#?}"
    );
    let nameless: Vec<&str> = stops
        .iter()
        .filter(|s| s.name.trim().is_empty())
        .map(|s| s.shown.as_str())
        .collect();
    assert!(
        nameless.is_empty(),
        "on {what}, these have no accessible name: {nameless:#?}"
    );
    let undrawn: Vec<&str> = stops
        .iter()
        .filter(|s| !s.drawn)
        .map(|s| s.shown.as_str())
        .collect();
    assert!(
        undrawn.is_empty(),
        "on {what}, the focus is not drawn on {undrawn:#?}"
    );
    assert_no_console_errors(browser, what);
    stops
}

/// Opens `path` and walks it ([`walk`]) at the phone's size, where wide tables scroll
/// sideways, then at the desktop's (which it is left at). Returns the desktop's stops.
fn open_and_walk(browser: &Browser, daemon: &Daemon, path: &str) -> Vec<FocusStop> {
    let [desktop, phone] = SCREEN_SIZES;
    browser.set_window(phone.0, phone.1);
    browser.navigate(&format!("{}{path}", daemon.url()));
    walk(browser, &format!("{path} at {}x{}", phone.0, phone.1));
    browser.set_window(desktop.0, desktop.1);
    walk(browser, path)
}

/// Starts `runbook` as paula with `params`; returns the run's id.
fn start_as_paula(daemon: &Daemon, runbook: &str, params: Value) -> String {
    let (status, run) = daemon.post(
        "/api/v1/runs",
        &token("paula"),
        &json!({"runbook": runbook, "params": params, "ref": "INC-7"}),
    );
    assert_eq!(status, 201, "{run}");
    id_of(&run)
}

/// Waits until the run page shown now has the live log's end (`data-run-ended`).
fn wait_live_end(browser: &Browser, status: &str) {
    wait_until(SHOWN, &format!("the live log to end {status}"), || {
        browser
            .find_all(&format!("body[data-run-ended='{status}']"))
            .len()
            == 1
    });
}

#[test]
fn every_page_is_walked_by_tab_with_names_a_drawn_focus_and_no_console_error() {
    let env = walk_env();
    // A schedule for the schedules page (only here: a slot that came during another test
    // would move the audit head it compares).
    write_marker_runbook(
        &env,
        "nightly",
        "[web1]",
        "schedule: { cron: \"0 3 * * *\", timezone: Europe/Berlin }",
    );
    let daemon = Daemon::start(&env);
    let pending = request_pending(&daemon, "paula", "disk-report");
    // A long unbroken value: on a phone its log line, its parameter and its preview scroll
    // sideways, and what scrolls must be reachable and named too.
    let finished = start_as_paula(&daemon, "echo-msg", json!({"message": LONG}));
    wait_status_as(&daemon, "paula", &finished, "succeeded");
    let running = start_as_paula(&daemon, "long", json!({}));
    wait_status_as(&daemon, "paula", &running, "running");

    // The stylesheet draws the keyboard's focus (the walks check it is drawn on each stop).
    let css = page_client()
        .get(format!("{}/static/tandem.css", daemon.url()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(css.contains(":focus-visible"), "no :focus-visible rule");

    let browser = Browser::start();
    browser.navigate(&format!("{}/login", daemon.url()));
    let stops = walk(&browser, "/login");
    assert!(
        stops.iter().any(|s| s.name == "Token"),
        "the token field is not named by its label: {stops:#?}"
    );
    browser.save_screens("login");

    // The provider's operator: its runs, a running and a finished run, starting one.
    browser_sign_in(&browser, &daemon, "paula", "/runs");
    open_and_walk(&browser, &daemon, "/runs");
    let stops = open_and_walk(&browser, &daemon, &format!("/runs/{running}"));
    assert!(
        stops.iter().any(|s| s.name == "Cancel this run"),
        "{stops:#?}"
    );
    // The live log arrives without an error (the event stream is allowed by the CSP).
    wait_until(SHOWN, "the live log's first line", || {
        browser.text(&browser.find("pre#log")).contains("working")
    });
    assert_no_console_errors(&browser, "the running run's page after its live log");
    browser.save_screens("run-running");
    open_and_walk(&browser, &daemon, &format!("/runs/{finished}"));
    browser.save_screens("run-finished");
    open_and_walk(&browser, &daemon, "/start");
    open_and_walk(&browser, &daemon, "/start/echo-msg");
    browser.save_screens("start-form");
    browser.send_keys(&browser.find("input#p-message"), LONG);
    browser.click(&browser.find("button#preview"));
    browser.find("code#digest");
    let stops = walk(&browser, "the preview of echo-msg");
    assert!(stops.iter().any(|s| s.name == "Start"), "{stops:#?}");
    open_and_walk(&browser, &daemon, "/start/isolate");
    browser.save_screens("start-break-glass");

    // An internal approver: what needs it, the approval page, hosts, schedules, matrix,
    // reports.
    browser_sign_in(&browser, &daemon, "ivan", "/");
    let stops = open_and_walk(&browser, &daemon, "/");
    let approve = format!("button#approve-{pending} \"Approve\"");
    assert!(
        stops
            .iter()
            .any(|s| s.shown == approve && s.name == "Approve"),
        "{stops:#?}"
    );
    open_and_walk(&browser, &daemon, "/approvals");
    browser.save_screens("approvals");
    let stops = open_and_walk(&browser, &daemon, &format!("/approvals/{pending}"));
    for name in ["Comment", "Approve", "Reason", "Deny"] {
        assert!(stops.iter().any(|s| s.name == name), "{name}: {stops:#?}");
    }
    browser.save_screens("approval");
    open_and_walk(&browser, &daemon, &format!("/runs/{pending}"));
    open_and_walk(&browser, &daemon, "/hosts");
    open_and_walk(&browser, &daemon, "/schedules");
    let stops = open_and_walk(&browser, &daemon, "/matrix");
    let here = browser.find_all("nav a[aria-current='page']");
    assert_eq!(here.len(), 1, "the navigation does not say where we are");
    assert_eq!(browser.text(&here[0]), "Responsibilities");
    assert!(
        stops.iter().any(|s| s.name == "Download as CSV"),
        "{stops:#?}"
    );
    let stops = open_and_walk(&browser, &daemon, "/reports");
    for name in ["From", "To", "Party", "Show report", "CSV", "JSON"] {
        assert!(stops.iter().any(|s| s.name == name), "{name}: {stops:#?}");
    }

    // The auditor: the audit page.
    browser_sign_in(&browser, &daemon, "audrey", "/audit");
    open_and_walk(&browser, &daemon, "/audit");
}

#[test]
fn cancel_deny_freeze_and_lift_by_keyboard_alone() {
    let env = walk_env();
    let daemon = Daemon::start(&env);
    let running = start_as_paula(&daemon, "long", json!({}));
    wait_status_as(&daemon, "paula", &running, "running");
    let pending = request_pending(&daemon, "paula", "disk-report");
    let browser = Browser::start();

    // Cancel a running run: Tab to the button, Enter.
    browser_sign_in(&browser, &daemon, "paula", &format!("/runs/{running}"));
    browser.find("button#cancel");
    browser.tab_to_and_press_enter("cancel", WALK_LIMIT);
    wait_status_as(&daemon, "paula", &running, "cancelled");
    wait_live_end(&browser, "cancelled");
    assert_no_console_errors(&browser, "the cancelled run's page");

    // Deny with a reason: Tab to the field, type, Tab to Deny, Space.
    browser_sign_in(&browser, &daemon, "ivan", &format!("/approvals/{pending}"));
    browser.tab_to("reason", WALK_LIMIT);
    browser.press("not during the audit");
    browser.tab_to("deny", 3);
    browser.press(SPACE);
    let run = wait_status(&daemon, &pending, "denied");
    let decision = &run["gates"][0]["decisions"][0];
    assert_eq!(decision["user"], "ivan", "{run}");
    assert_eq!(decision["decision"], "deny", "{run}");
    assert_eq!(decision["comment"], "not during the audit", "{run}");
    assert_no_console_errors(&browser, "the denied run's page");

    // Freeze web1 from the hosts page, then lift it, by keyboard.
    browser.navigate(&format!("{}/hosts", daemon.url()));
    browser.tab_to("reason-web1", WALK_LIMIT);
    browser.press("disk replacement");
    browser.tab_to("freeze-web1", 3);
    browser.press(ENTER);
    let freezes = wait_for(SHOWN, "web1 frozen", || {
        let (_, f) = daemon.get("/api/v1/freezes", &token("ivan"));
        (f.as_array().is_some_and(|a| !a.is_empty())).then_some(f)
    });
    assert_eq!(freezes[0]["host"], "web1", "{freezes}");
    assert_eq!(freezes[0]["reason"], "disk replacement", "{freezes}");
    browser.find("button#lift-web1");
    assert_no_console_errors(&browser, "/hosts after the freeze");
    browser.tab_to_and_press_enter("lift-web1", WALK_LIMIT);
    wait_until(SHOWN, "web1 lifted", || {
        daemon.get("/api/v1/freezes", &token("ivan")).1 == json!([])
    });
    browser.find("button#freeze-web1");
    assert_no_console_errors(&browser, "/hosts after the lift");
}

#[test]
fn filters_preview_start_and_break_glass_by_keyboard_alone() {
    let env = walk_env();
    let daemon = Daemon::start(&env);
    let done = start_as_paula(&daemon, "echo-msg", json!({"message": "one"}));
    wait_status_as(&daemon, "paula", &done, "succeeded");
    let (status, other) = daemon.post(
        "/api/v1/runs",
        &token("paula"),
        &json!({"runbook": "echo-msg", "params": {"message": "two"}, "ref": "INC-8"}),
    );
    assert_eq!(status, 201, "{other}");
    let other = id_of(&other);
    wait_status_as(&daemon, "paula", &other, "succeeded");
    let browser = Browser::start();

    // Filter /runs: type a ref, choose a status by typing in its select, send with Enter.
    browser_sign_in(&browser, &daemon, "paula", "/runs");
    browser.tab_to("f-ref", WALK_LIMIT);
    browser.press("INC-7");
    browser.tab_to("f-status", WALK_LIMIT);
    browser.press("succ");
    browser.tab_to_and_press_enter("filter", WALK_LIMIT);
    wait_until(SHOWN, "the filtered list", || {
        let url = browser.current_url();
        url.contains("ref=INC-7") && url.contains("status=succeeded")
    });
    let shown: Vec<String> = browser
        .find_all("table#runs a.run")
        .iter()
        .map(|a| browser.text(a))
        .collect();
    let (_, api) = daemon.get("/api/v1/runs?ref=INC-7&status=succeeded", &token("paula"));
    let want: Vec<String> = api.as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(shown, want, "the page and the API disagree");
    assert_eq!(shown, [done.as_str()]);
    assert_no_console_errors(&browser, "/runs filtered");

    // Preview then Start, by keyboard: type the params, Enter on Preview, Enter on Start.
    browser.navigate(&format!("{}/start/echo-msg", daemon.url()));
    browser.tab_to("p-message", WALK_LIMIT);
    browser.press("by keyboard");
    browser.tab_to("p-times", 5);
    browser.press("3");
    browser.tab_to("ref", 5);
    browser.press("INC-9");
    browser.tab_to_and_press_enter("preview", WALK_LIMIT);
    let digest = browser.text(&browser.find("code#digest"));
    assert_eq!(digest.len(), 64, "{digest}");
    assert_no_console_errors(&browser, "the preview");
    browser.tab_to_and_press_enter("start", WALK_LIMIT);
    wait_until(SHOWN, "the run page", || {
        browser.current_url().contains("/runs/")
    });
    let id = browser
        .current_url()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let run = wait_status_as(&daemon, "paula", &id, "succeeded");
    assert_eq!(run["digest"], json!(digest), "{run}");
    assert_eq!(run["plan"]["params"]["message"], "by keyboard", "{run}");
    assert_eq!(run["plan"]["params"]["times"], 3, "{run}");
    assert_eq!(run["ref"], "INC-9", "{run}");
    wait_live_end(&browser, "succeeded");
    assert_no_console_errors(&browser, "the started run's page after its live log");

    // Break-glass: Space ticks the box, the reason is typed, Preview, Start.
    browser.navigate(&format!("{}/start/isolate", daemon.url()));
    browser.tab_to("break-glass", WALK_LIMIT);
    browser.press(SPACE);
    browser.tab_to("reason", 3);
    browser.press("ransomware on web1");
    browser.tab_to_and_press_enter("preview", WALK_LIMIT);
    browser.find("code#digest");
    browser.tab_to_and_press_enter("start", WALK_LIMIT);
    wait_until(SHOWN, "the break-glass run's page", || {
        browser.current_url().contains("/runs/")
    });
    let id = browser
        .current_url()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let run = wait_status_as(&daemon, "paula", &id, "succeeded");
    assert_eq!(run["break_glass"], true, "{run}");
    assert_eq!(run["reason"], "ransomware on web1", "{run}");
    assert_eq!(run["review"]["status"], "open", "{run}");
    assert_no_console_errors(&browser, "the break-glass run's page");

    // Filter /audit as the auditor: choose the event by typing, type the run, Enter.
    browser_sign_in(&browser, &daemon, "audrey", "/audit");
    browser.tab_to("f-event", WALK_LIMIT);
    browser.press("break_glass");
    browser.tab_to("f-run", 3);
    browser.press(&id);
    browser.tab_to_and_press_enter("f-apply", WALK_LIMIT);
    wait_until(SHOWN, "the filtered audit", || {
        browser.current_url().contains("event=break_glass")
    });
    let shown = browser.text(&browser.find("#records"));
    let records = crate::run_flow::audit_records(&daemon);
    let want: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "break_glass" && r["run_id"] == id.as_str())
        .collect();
    assert_eq!(want.len(), 1, "{records:#?}");
    let seq = want[0]["seq"].to_string();
    assert!(shown.contains(&seq), "record {seq} is not listed: {shown}");
    assert!(
        !shown.contains("run_requested"),
        "the event filter kept other events: {shown}"
    );
    assert_no_console_errors(&browser, "/audit filtered");

    // The report's period form: narrow to provider by typing in the select, then Enter on
    // Show report; the page says whose view it is, as the API's JSON does.
    browser.navigate(&format!("{}/reports", daemon.url()));
    browser.tab_to("party", WALK_LIMIT);
    browser.press("what concerns p");
    browser.tab_to_and_press_enter("show-report", 3);
    wait_until(SHOWN, "the narrowed report", || {
        browser.current_url().contains("party=provider")
    });
    let meta = browser.text(&browser.find("p.report-meta"));
    assert!(
        meta.contains("what internal may see that concerns provider too"),
        "{meta}"
    );
    let (status, report) = daemon.get("/api/v1/report?party=provider", &token("audrey"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["viewer"], &report["party"]),
        (&json!("internal"), &json!("provider"))
    );
    assert_no_console_errors(&browser, "/reports narrowed");
}

// ---------------------------------------------------------------------------------------
// GET /api/v1/report

/// Yesterday and tomorrow (UTC): a period that holds the whole history.
fn period() -> (String, String) {
    let today = chrono::Utc::now().date_naive();
    (
        today.pred_opt().unwrap().to_string(),
        today.succ_opt().unwrap().to_string(),
    )
}

/// `GET /api/v1/report?QUERY` with `user`'s bearer token: status, content type, body.
fn api_report(client: &Client, daemon: &Daemon, user: &str, query: &str) -> (u16, String, String) {
    let mut request = client.get(format!("{}/api/v1/report?{query}", daemon.url()));
    if !user.is_empty() {
        request = request.bearer_auth(token(user));
    }
    let r = request.send().unwrap();
    let kind = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (r.status().as_u16(), kind, r.text().unwrap())
}

/// `tandem report --format json` for the period, narrowed to `party`.
fn cli_report(env: &Env, party: &str) -> Value {
    let (from, to) = period();
    let out = env
        .command()
        .args(["report", "--from", &from, "--to", &to, "--format", "json"])
        .args(["--party", party])
        .run();
    out.success();
    serde_json::from_str(&out.stdout).unwrap()
}

/// A report without what differs between two readings of the same log by different
/// readers: when it was made, and who asked.
fn facts(report: &Value) -> Value {
    let mut r = report.clone();
    let o = r.as_object_mut().unwrap();
    o.remove("generated_at");
    o.remove("viewer");
    r
}

#[test]
fn the_report_api_is_tandem_report_scoped_to_the_callers_party() {
    let env = walk_env();
    write_runbook(
        &env,
        "internal-job",
        "[web1]",
        "",
        "log(\"internal only\");",
    );
    let daemon = Daemon::start(&env);
    // A history: internal's own run, a denial, provider's runs.
    let internal = id_of(&request(&daemon, "alice", "internal-job"));
    wait_status(&daemon, &internal, "succeeded");
    let denied = request_pending(&daemon, "paula", "disk-report");
    let (status, body) = crate::approvals::deny(&daemon, "ivan", &denied, "not now");
    assert_eq!(status, 200, "{body}");
    let echo = start_as_paula(&daemon, "echo-msg", json!({"message": "hi"}));
    wait_status_as(&daemon, "paula", &echo, "succeeded");
    assert_eq!(get_run(&daemon, &denied)["status"], "denied");

    let client = page_client();
    let (from, to) = period();
    let q = format!("from={from}&to={to}");

    // Internal's report over the API is `tandem report --party internal`: the same figures
    // from the same head of the chain (the daemon is idle: no periodic checkpoint).
    let (status, kind, body) = api_report(&client, &daemon, "alice", &format!("{q}&format=json"));
    assert_eq!(status, 200, "{body}");
    assert!(kind.starts_with("application/json"), "{kind}");
    let alice: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alice["viewer"], "internal");
    let cli = cli_report(&env, "internal");
    assert_eq!(facts(&alice)["party"], Value::Null);
    let mut narrowed = facts(&cli);
    narrowed["party"] = Value::Null;
    assert_eq!(facts(&alice), narrowed, "API:\n{alice:#}\nCLI:\n{cli:#}");
    assert!(body.contains("internal-job"), "{body}");
    // JSON is the default format; `party` narrows exactly as the CLI does.
    let (_, _, body) = api_report(&client, &daemon, "alice", &format!("{q}&party=internal"));
    let own: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(facts(&own), facts(&cli));
    assert_eq!(alice["chain"]["head_hash"], cli["chain"]["head_hash"]);
    assert!(
        alice["totals"]["runs_finished"].as_u64().unwrap() >= 2,
        "{alice:#}"
    );

    // The provider's own report is the CLI's for provider, and holds nothing internal kept.
    let (_, _, body) = api_report(&client, &daemon, "paula", &q);
    let paula: Value = serde_json::from_str(&body).unwrap();
    let mut provider_cli = facts(&cli_report(&env, "provider"));
    provider_cli["party"] = Value::Null;
    assert_eq!(facts(&paula), provider_cli);
    assert!(
        !body.contains("internal-job") && !body.contains(&internal),
        "provider reads internal's own run: {body}"
    );
    // Asking for internal's report with provider's token narrows to what concerns both, as
    // the page does: never internal's own business.
    let (status, _, body) = api_report(&client, &daemon, "paula", &format!("{q}&party=internal"));
    assert_eq!(status, 200, "{body}");
    let asked: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&asked["viewer"], &asked["party"]),
        (&json!("provider"), &json!("internal"))
    );
    assert!(
        !body.contains("internal-job") && !body.contains(&internal),
        "provider reads internal's report: {body}"
    );
    assert_ne!(
        facts(&asked),
        facts(&cli),
        "provider got internal's own report"
    );
    let (_, page) = sign_in(&client, &daemon, "paula", "/reports");
    let from_page: Value = client
        .get(format!(
            "{}/reports/report.json?{q}&party=internal",
            daemon.url()
        ))
        .header("cookie", &page)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut page_facts = from_page.clone();
    page_facts.as_object_mut().unwrap().remove("generated_at");
    let mut api_facts = asked.clone();
    api_facts.as_object_mut().unwrap().remove("generated_at");
    assert_eq!(api_facts, page_facts, "the API and the page disagree");

    // CSV: its content type, one fact a row, the same head.
    let (status, kind, csv) = api_report(&client, &daemon, "alice", &format!("{q}&format=csv"));
    assert_eq!(status, 200, "{csv}");
    assert!(kind.starts_with("text/csv"), "{kind}");
    assert!(csv.starts_with("section,item,metric,value\n"), "{csv}");
    let head = alice["chain"]["head_hash"].as_str().unwrap();
    assert!(csv.contains(&format!("chain,head,hash,{head}")), "{csv}");
    // HTML: the standalone report, under a CSP that runs no script.
    let r = client
        .get(format!("{}/api/v1/report?{q}&format=html", daemon.url()))
        .bearer_auth(token("alice"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script"),
        "{csp}"
    );
    let html = r.text().unwrap();
    assert!(
        html.starts_with("<!doctype html>") && html.contains(head),
        "{html}"
    );

    // Errors: the API's JSON errors, naming the parameter.
    for (query, status, says) in [
        (
            "from=2026-13-01&to=2026-12-01",
            400,
            "from `2026-13-01` is not a date",
        ),
        (
            "from=2026-12-05&to=2026-12-01",
            400,
            "to 2026-12-01 is before from",
        ),
        ("from=2026-12-01&to=someday", 400, "to `someday`"),
        (
            &format!("{q}&party=nobody") as &str,
            400,
            "party: unknown party `nobody`",
        ),
        (&format!("{q}&format=pdf"), 400, "format"),
    ] {
        let (got, kind, body) = api_report(&client, &daemon, "alice", query);
        assert_eq!(got, status, "{query}: {body}");
        assert!(kind.starts_with("application/json"), "{query}: {kind}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["error"]["code"], "bad_request", "{query}: {body}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{query}: {message}");
    }
    let (status, _, body) = api_report(&client, &daemon, "", &q);
    assert_eq!(status, 401, "{body}");
}

#[test]
fn a_read_grant_lets_the_report_api_show_the_other_partys_runs() {
    let env = walk_env_with("read_grants:\n  - { party: provider, reads: internal }\n");
    write_runbook(
        &env,
        "internal-job",
        "[web1]",
        "",
        "log(\"internal only\");",
    );
    let daemon = Daemon::start(&env);
    let internal = id_of(&request(&daemon, "alice", "internal-job"));
    wait_status(&daemon, &internal, "succeeded");
    let (from, to) = period();
    let (status, _, body) = api_report(
        &page_client(),
        &daemon,
        "paula",
        &format!("from={from}&to={to}&party=internal"),
    );
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    // The grant lets provider read internal's runs: internal's own run is in its report.
    let runbooks: Vec<&str> = report["failures_by_runbook"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["runbook"].as_str().unwrap())
        .collect();
    assert!(runbooks.contains(&"internal-job"), "{report:#}");
}
