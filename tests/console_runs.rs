//! The console's runs pages (`/`, `/runs`, `/runs/{id}`, `/start`): each party sees only
//! its runs; a run reads in plain words; a run starts from a form (a bad param is refused
//! beside its field), its live log arrives in the page, and it succeeds; approve from the
//! home page; cancel; a hostile param is escaped; Start and Approve are reached with the
//! keyboard alone. Real headless Chromium, plus plain HTTP for what a browser hides.

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::json;

use crate::approvals::{
    get_run, id_of, request, request_pending, site_config, site_env, wait_status, wait_status_as,
    write_marker_runbook,
};
use crate::harness::{token, unindent, wait_until, Browser, Daemon, Env};
use crate::web::{location, page_client, sign_in};

/// A param value that would run script if a page printed it as HTML.
const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

/// `echo-msg`: typed params, on the provider's `mon1` (no approval when the provider starts
/// it); logs its message after a pause, so its page is open while it runs.
fn write_echo_runbook(env: &Env) {
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
              sleep(4);
              for i in 0..params.times { log(`said: ${params.message}`); }
              log("done saying");
            "#,
        ),
    );
}

/// The site: `disk-report` (internal's web1, internal approves) and `echo-msg`.
fn console_env() -> Env {
    let env = site_env(&site_config());
    write_marker_runbook(
        &env,
        "disk-report",
        "[web1]",
        "approval: { from: internal }",
    );
    write_echo_runbook(&env);
    env
}

/// Signs the browser in as `user` through the form, landing on `next`.
fn browser_sign_in(browser: &Browser, daemon: &Daemon, user: &str, next: &str) {
    browser.navigate(&format!("{}/login?next={next}", daemon.url()));
    browser.send_keys(&browser.find("input#token"), &token(user));
    browser.click(&browser.find("button#sign-in"));
    wait_until(
        Duration::from_secs(10),
        &format!("{user} signed in"),
        || !browser.current_url().contains("/login"),
    );
}

/// `GET path` with `cookie`: status and HTML.
fn get(client: &Client, daemon: &Daemon, path: &str, cookie: &str) -> (u16, String) {
    let r = client
        .get(format!("{}{path}", daemon.url()))
        .header("cookie", cookie)
        .send()
        .expect("GET page");
    (r.status().as_u16(), r.text().expect("page text"))
}

/// The first hidden `csrf` field of a page.
fn csrf_in(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a csrf field") + marker.len();
    let len = html[start..].find('"').expect("closing quote");
    html[start..start + len].to_string()
}

#[test]
fn each_party_sees_only_its_runs_in_the_list() {
    let env = console_env();
    write_marker_runbook(&env, "internal-job", "[web1]", "");
    let daemon = Daemon::start(&env);
    let internal = id_of(&request(&daemon, "alice", "internal-job"));
    let provider = {
        let (status, run) = daemon.post(
            "/api/v1/runs",
            &token("paula"),
            &json!({"runbook": "echo-msg", "params": {"message": "hi"}, "ref": "INC-7"}),
        );
        assert_eq!(status, 201, "{run}");
        id_of(&run)
    };

    let browser = Browser::start();
    for (user, mine, theirs) in [
        ("alice", &internal, &provider),
        ("paula", &provider, &internal),
    ] {
        browser_sign_in(&browser, &daemon, user, "/runs");
        let ids: Vec<String> = browser
            .find_all("table#runs a.run")
            .iter()
            .map(|a| browser.text(a))
            .collect();
        assert!(ids.contains(mine), "{user} does not see {mine}: {ids:?}");
        assert!(
            !ids.contains(theirs),
            "{user} sees the other party's run {theirs}: {ids:?}"
        );
        if user == "paula" {
            browser.save_screens("runs");
        }
    }

    // The filters narrow in the store; a bad one says so beside its field.
    let client = page_client();
    let (_, cookie) = sign_in(&client, &daemon, "paula", "/runs");
    let (status, html) = get(&client, &daemon, "/runs?ref=INC-7", &cookie);
    assert_eq!(status, 200);
    assert!(html.contains(&provider), "ref filter lost the run");
    let (_, html) = get(&client, &daemon, "/runs?ref=INC-8", &cookie);
    assert!(!html.contains(&provider), "ref filter kept another ref");
    let (_, html) = get(&client, &daemon, "/runs?runbook=disk-report", &cookie);
    assert!(!html.contains(&provider), "runbook filter kept echo-msg");
    let (_, html) = get(&client, &daemon, "/runs?host=mon1&party=provider", &cookie);
    assert!(html.contains(&provider), "host+party filter lost the run");
    let (_, html) = get(&client, &daemon, "/runs?until=2000-01-01", &cookie);
    assert!(!html.contains(&provider), "time filter kept a newer run");
    let (status, html) = get(&client, &daemon, "/runs?since=yesterday", &cookie);
    assert_eq!(status, 422);
    assert!(html.contains("id=\"since-error\""), "{html}");
    // Rule 10 holds for the live log too: another party's run is unknown.
    let (status, _) = get(
        &client,
        &daemon,
        &format!("/runs/{internal}/log?follow=1"),
        &cookie,
    );
    assert_eq!(status, 404);
}

#[test]
fn a_run_reads_in_words_and_is_approved_from_the_home_page_by_keyboard() {
    let env = console_env();
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "paula", "disk-report");

    let browser = Browser::start();
    browser_sign_in(&browser, &daemon, "ivan", "/");
    browser.navigate(&format!("{}/runs/{id}", daemon.url()));
    assert_eq!(
        browser.text(&browser.find("p#plan-words")),
        "paula (provider) wants to run disk-report on web1 (this machine) owned by internal; internal must \
         approve, 1 approver."
    );
    let why = browser.text(&browser.find("ul#why-approval"));
    assert!(
        why.contains("internal must approve because runbook disk-report asks for its approval")
            && why.contains("it owns web1"),
        "{why}"
    );
    let source = browser.page_source();
    assert!(source.contains("local (this machine)"), "{source}");
    assert!(
        !source.contains("@127.0.0.1:22"),
        "a local host is shown as an SSH address"
    );
    browser.save_screens("run");

    browser.navigate(&format!("{}/", daemon.url()));
    let item = browser.text(&browser.find("section#need-approvals"));
    assert!(
        item.contains(&id) && item.contains("paula (provider)"),
        "{item}"
    );
    browser.save_screens("home");
    browser.tab_to_and_press_enter(&format!("approve-{id}"), 40);
    wait_status(&daemon, &id, "succeeded");
    wait_until(Duration::from_secs(10), "back on the home page", || {
        browser.current_url().trim_end_matches('/') == daemon.url().trim_end_matches('/')
    });
    assert_eq!(browser.find_all("section#need-approvals").len(), 0);
    browser.navigate(&format!("{}/", daemon.url()));
    browser.find("p#all-well");
    assert_eq!(
        get_run(&daemon, &id)["gates"][0]["decisions"][0]["user"],
        "ivan"
    );
}

#[test]
fn a_run_starts_from_the_form_and_its_live_log_arrives() {
    let env = console_env();
    let daemon = Daemon::start(&env);
    let browser = Browser::start();
    browser_sign_in(&browser, &daemon, "paula", "/start");
    let names: Vec<String> = browser
        .find_all("a.runbook")
        .iter()
        .map(|a| browser.text(a))
        .collect();
    // Rule 1: disk-report and echo-msg are paula's to start; the list says only those.
    assert!(names.contains(&"echo-msg".to_string()), "{names:?}");
    browser.save_screens("start");
    browser.navigate(&format!("{}/start/echo-msg", daemon.url()));
    assert!(browser
        .text(&browser.find("#p-message-hint"))
        .contains("What to log"));

    // A bad param: the message is beside its field, and nothing started.
    browser.send_keys(&browser.find("input#p-message"), HOSTILE);
    browser.send_keys(&browser.find("input#p-times"), "three");
    browser.click(&browser.find("button#preview"));
    let message = browser.text(&browser.find("#p-times-error"));
    assert!(!message.is_empty(), "no message beside the field");
    assert!(browser.find_all("button#start").is_empty());

    // A good one: the preview tells the plan, then Start, with the keyboard alone.
    let times = browser.find("input#p-times");
    browser.clear(&times);
    browser.send_keys(&times, "2");
    browser.click(&browser.find("button#preview"));
    let words = browser.text(&browser.find("p#plan-words"));
    assert_eq!(
        words,
        "paula (provider) wants to run echo-msg on mon1 (this machine) owned by provider; no approval is needed."
    );
    let digest = browser.text(&browser.find("code#digest"));
    assert_eq!(digest.len(), 64, "{digest}");
    // The hostile value is text: the only script is the console's own, and no image came.
    let source = browser.page_source();
    assert!(
        source.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{source}"
    );
    assert_eq!(browser.find_all("script").len(), 1, "{source}");
    assert!(browser.find_all("img").is_empty(), "{source}");
    browser.save_screens("start-preview");
    browser.tab_to_and_press_enter("start", 60);

    wait_until(Duration::from_secs(10), "the run page", || {
        browser.current_url().contains("/runs/")
    });
    let id = browser
        .current_url()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    // The page came while the run was running: its log follows live.
    assert!(
        browser.find_all("pre#log[data-follow]").len() == 1,
        "the run page does not follow the log"
    );
    wait_until(Duration::from_secs(30), "the live log to end", || {
        browser.find_all("body[data-run-ended='succeeded']").len() == 1
    });
    let log = browser.text(&browser.find("pre#log"));
    assert!(log.contains(&format!("said: {HOSTILE}")), "{log}");
    assert!(log.contains("done saying"), "{log}");
    assert_eq!(browser.text(&browser.find("td#status")), "succeeded");
    assert!(browser.find_all("img").is_empty());
    let run = wait_status_as(&daemon, "paula", &id, "succeeded");
    assert_eq!(
        run["digest"],
        json!(digest),
        "what started is what was previewed"
    );
}

#[test]
fn start_refuses_a_changed_digest_and_cancel_needs_csrf() {
    let env = console_env();
    let daemon = Daemon::start(&env);
    let client = page_client();
    let (_, cookie) = sign_in(&client, &daemon, "paula", "/start");
    let (status, html) = get(&client, &daemon, "/start/echo-msg", &cookie);
    assert_eq!(status, 200);
    let csrf = csrf_in(&html);
    let runs_before = daemon.get("/api/v1/runs", &token("paula")).1;
    let start = |digest: &str| {
        client
            .post(format!("{}/start/echo-msg", daemon.url()))
            .header("cookie", &cookie)
            .form(&[
                ("csrf", csrf.as_str()),
                ("p.message", "hi"),
                ("action", "start"),
                ("digest", digest),
            ])
            .send()
            .expect("POST start")
    };
    let refused = start(&"0".repeat(64));
    assert_eq!(refused.status().as_u16(), 409);
    assert!(refused.text().unwrap().contains("the plan changed"));
    assert_eq!(
        daemon.get("/api/v1/runs", &token("paula")).1,
        runs_before,
        "a refused start started something"
    );

    // Cancel: refused without the session's CSRF token, done with it.
    let id = request_pending(&daemon, "paula", "disk-report");
    let (_, html) = get(&client, &daemon, &format!("/runs/{id}"), &cookie);
    assert!(
        html.contains("id=\"cancel\""),
        "no Cancel for the initiator"
    );
    let cancel = |csrf: &str| {
        client
            .post(format!("{}/runs/{id}/cancel", daemon.url()))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf)])
            .send()
            .expect("POST cancel")
    };
    assert_eq!(cancel("forged").status().as_u16(), 403);
    assert_eq!(get_run(&daemon, &id)["status"], "awaiting_approval");
    let done = cancel(&csrf_in(&html));
    assert!(done.status().is_redirection());
    assert_eq!(location(&done), format!("/runs/{id}"));
    wait_status(&daemon, &id, "cancelled");
    let (_, html) = get(&client, &daemon, &format!("/runs/{id}"), &cookie);
    assert!(
        !html.contains("id=\"cancel\""),
        "Cancel offered on an ended run"
    );
}
