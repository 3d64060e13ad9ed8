//! The approval pages (SPEC §5 `gate`, §7): sign in with a token, list what waits for you,
//! open a run and approve or deny it; a real headless Chromium drives them like a person,
//! and plain HTTP checks what a browser hides (cookie flags, CSRF refusals).

use std::time::Duration;

use reqwest::blocking::{Client, Response};
use serde_json::json;

use crate::approvals::{
    assert_decisions_audited, gate, get_run, ran, request_pending, site_config, site_env,
    wait_status, write_marker_runbook,
};
use crate::harness::{token, wait_for, wait_until, Browser, Daemon};

/// A client for the pages that, like a test wants, never follows redirects by itself.
pub(crate) fn page_client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build page client")
}

/// The `Location` of a redirect.
pub(crate) fn location(response: &Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Signs in as `user` through `POST /login`; returns the whole `Set-Cookie` header and the
/// `Cookie` header to send back.
pub(crate) fn sign_in(
    client: &Client,
    daemon: &Daemon,
    user: &str,
    next: &str,
) -> (String, String) {
    let response = client
        .post(format!("{}/login", daemon.url()))
        .form(&[("token", token(user).as_str()), ("next", next)])
        .send()
        .expect("POST /login");
    assert!(
        response.status().is_redirection(),
        "signing in as {user}: {}",
        response.status()
    );
    assert_eq!(location(&response), next, "where sign-in leads");
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("sign-in as {user} set no cookie"))
        .to_string();
    let pair = set_cookie
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(pair.starts_with("tandem_session="), "{set_cookie}");
    (set_cookie, pair)
}

/// The value of the first hidden `csrf` field in a page.
fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no csrf field in the page:\n{html}"))
        + marker.len();
    let len = html[start..].find('"').expect("closing quote");
    html[start..start + len].to_string()
}

/// `GET path` with `cookie`; asserts 200 and returns the HTML.
fn get_page(client: &Client, daemon: &Daemon, path: &str, cookie: &str) -> String {
    let response = client
        .get(format!("{}{path}", daemon.url()))
        .header("cookie", cookie)
        .send()
        .expect("GET page");
    assert_eq!(response.status().as_u16(), 200, "GET {path}");
    response.text().expect("page text")
}

/// `POST /approvals/{id}/{action}` with `cookie` (may be empty) and the form `fields`.
fn post_form(
    client: &Client,
    daemon: &Daemon,
    id: &str,
    action: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> Response {
    let mut request = client
        .post(format!("{}/approvals/{id}/{action}", daemon.url()))
        .form(fields);
    if !cookie.is_empty() {
        request = request.header("cookie", cookie);
    }
    request.send().expect("POST form")
}

#[test]
fn an_approver_signs_in_and_approves_in_a_real_browser() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "patch", "[web1]", "approval: { from: internal }");
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "paula", "patch");
    let digest = get_run(&daemon, &id)["digest"]
        .as_str()
        .unwrap()
        .to_string();

    let browser = Browser::start();
    browser.navigate(&format!("{}/approvals", daemon.url()));
    assert!(
        browser.current_url().contains("/login"),
        "not signed in, the list must send to sign-in: {}",
        browser.current_url()
    );
    let field = browser.find("input#token");
    assert_eq!(
        browser.attribute(&field, "type").as_deref(),
        Some("password")
    );
    browser.send_keys(&field, &token("ivan"));
    browser.click(&browser.find("button#sign-in"));
    wait_until(Duration::from_secs(10), "the approvals list", || {
        browser.current_url().ends_with("/approvals")
    });

    // The URL changes before the page is rendered: wait for the list itself.
    let link = wait_for(
        Duration::from_secs(10),
        &format!("run {id} in the approvals list"),
        || {
            browser
                .find_all("a.run")
                .into_iter()
                .find(|a| browser.text(a) == id)
        },
    );
    browser.click(&link);
    wait_until(Duration::from_secs(10), "the run page", || {
        browser.current_url().ends_with(&format!("/approvals/{id}"))
    });
    assert_eq!(browser.text(&browser.find("code#digest")), digest);
    assert_eq!(
        browser.text(&browser.find("td#status")),
        "awaiting_approval"
    );
    let source = browser.page_source();
    for shown in ["patch", "web1", "touch", "paula"] {
        assert!(
            source.contains(shown),
            "the page lacks {shown:?}:\n{source}"
        );
    }

    browser.send_keys(&browser.find("input#comment"), "approved from the browser");
    browser.click(&browser.find("button#approve"));
    let run = wait_status(&daemon, &id, "succeeded");
    assert!(ran(&env, &id, ""));
    let decision = &gate(&run, 0)["decisions"][0];
    assert_eq!(decision["user"], "ivan", "{run}");
    assert_eq!(decision["comment"], "approved from the browser", "{run}");
    assert_eq!(decision["digest"], json!(digest), "{run}");
    assert_decisions_audited(&daemon, &id);

    // The page tells the outcome, and offers no more decisions.
    browser.navigate(&format!("{}/approvals/{id}", daemon.url()));
    assert_eq!(browser.text(&browser.find("td#status")), "succeeded");
    assert!(browser.find_all("button#approve").is_empty());
    browser.navigate(&format!("{}/approvals", daemon.url()));
    assert!(
        browser.find_all("a.run").is_empty(),
        "a decided run is still listed"
    );
}

#[test]
fn a_denial_in_the_browser_needs_a_reason() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "patch", "[web1]", "approval: { from: internal }");
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "alice", "patch");

    let browser = Browser::start();
    browser.navigate(&format!("{}/approvals/{id}", daemon.url()));
    // Sign-in brings the approver back to the run they were sent to.
    browser.send_keys(&browser.find("input#token"), &token("ines"));
    browser.click(&browser.find("button#sign-in"));
    wait_until(Duration::from_secs(10), "the run page", || {
        browser.current_url().ends_with(&format!("/approvals/{id}"))
    });

    let reason = browser.find("input#reason");
    assert!(
        browser.attribute(&reason, "required").is_some(),
        "the reason field is not required"
    );
    browser.click(&browser.find("button#deny"));
    assert_eq!(get_run(&daemon, &id)["status"], "awaiting_approval");

    browser.send_keys(&browser.find("input#reason"), "wrong maintenance window");
    browser.click(&browser.find("button#deny"));
    let run = wait_status(&daemon, &id, "denied");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("wrong maintenance window"),
        "{run}"
    );
    assert!(!ran(&env, &id, ""));
    assert_decisions_audited(&daemon, &id);
    browser.navigate(&format!("{}/approvals/{id}", daemon.url()));
    assert_eq!(browser.text(&browser.find("td#status")), "denied");
}

#[test]
fn the_session_cookie_is_http_only_and_strict_and_a_bad_csrf_is_refused() {
    let env = site_env(&site_config().user("ian", "internal", &["approver"]));
    write_marker_runbook(&env, "patch", "[web1]", "approval: { from: internal }");
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "alice", "patch");
    let digest = get_run(&daemon, &id)["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let client = page_client();
    let here = format!("/approvals/{id}");

    let (set_cookie, cookie) = sign_in(&client, &daemon, "ivan", &here);
    let attributes: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    assert!(attributes.iter().any(|a| a == "httponly"), "{set_cookie}");
    assert!(
        attributes.iter().any(|a| a == "samesite=strict"),
        "{set_cookie}"
    );

    let html = get_page(&client, &daemon, &here, &cookie);
    let csrf = csrf_of(&html);
    assert!(html.contains(&digest), "the page does not show the digest");
    let (_, other_cookie) = sign_in(&client, &daemon, "ian", &here);
    let other_csrf = csrf_of(&get_page(&client, &daemon, &here, &other_cookie));
    assert_ne!(csrf, other_csrf, "two sessions share a CSRF token");

    let wrong = "0".repeat(csrf.len());
    for (what, presented) in [
        ("a made-up token", wrong.as_str()),
        ("another session's token", other_csrf.as_str()),
        ("an empty token", ""),
    ] {
        let response = post_form(
            &client,
            &daemon,
            &id,
            "approve",
            &cookie,
            &[("csrf", presented), ("digest", &digest), ("comment", "x")],
        );
        assert_eq!(response.status().as_u16(), 403, "approve with {what}");
        let response = post_form(
            &client,
            &daemon,
            &id,
            "deny",
            &cookie,
            &[("csrf", presented), ("digest", &digest), ("reason", "x")],
        );
        assert_eq!(response.status().as_u16(), 403, "deny with {what}");
    }
    let response = post_form(
        &client,
        &daemon,
        &id,
        "approve",
        &cookie,
        &[("digest", &digest)],
    );
    assert!(
        response.status().is_client_error(),
        "approve without a csrf field: {}",
        response.status()
    );
    // A valid CSRF token is worth nothing without its session.
    let response = post_form(
        &client,
        &daemon,
        &id,
        "approve",
        "",
        &[("csrf", &csrf), ("digest", &digest)],
    );
    assert!(
        matches!(response.status().as_u16(), 401 | 303),
        "approve without a session: {}",
        response.status()
    );
    let run = get_run(&daemon, &id);
    assert_eq!(run["status"], "awaiting_approval", "{run}");
    assert_eq!(gate(&run, 0)["decisions"], json!([]), "{run}");

    // A page that showed another digest cannot approve this run.
    let stale = "f".repeat(64);
    let response = post_form(
        &client,
        &daemon,
        &id,
        "approve",
        &cookie,
        &[("csrf", &csrf), ("digest", &stale)],
    );
    assert_eq!(response.status().as_u16(), 409, "approve a stale digest");
    assert_eq!(get_run(&daemon, &id)["status"], "awaiting_approval");

    let response = post_form(
        &client,
        &daemon,
        &id,
        "approve",
        &cookie,
        &[("csrf", &csrf), ("digest", &digest), ("comment", "by form")],
    );
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(location(&response), here);
    wait_status(&daemon, &id, "succeeded");
    assert!(ran(&env, &id, ""));
}

#[test]
fn pages_need_a_session_and_a_valid_token() {
    let env = site_env(&site_config());
    write_marker_runbook(&env, "patch", "[web1]", "approval: { from: internal }");
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "alice", "patch");
    let client = page_client();

    for path in ["/approvals".to_string(), format!("/approvals/{id}")] {
        let response = client
            .get(format!("{}{path}", daemon.url()))
            .send()
            .unwrap();
        assert!(
            response.status().is_redirection(),
            "{path}: {}",
            response.status()
        );
        assert!(
            location(&response).starts_with("/login"),
            "{path} sends to {}",
            location(&response)
        );
        // A forged session id is no session.
        let response = client
            .get(format!("{}{path}", daemon.url()))
            .header("cookie", "tandem_session=0123456789abcdef")
            .send()
            .unwrap();
        assert!(
            response.status().is_redirection(),
            "{path} with a forged cookie"
        );
    }
    let login = client
        .get(format!("{}/login", daemon.url()))
        .send()
        .unwrap();
    assert_eq!(login.status().as_u16(), 200);
    let html = login.text().unwrap();
    assert!(
        html.contains("id=\"token\"") && html.contains("id=\"sign-in\""),
        "{html}"
    );

    let response = client
        .post(format!("{}/login", daemon.url()))
        .form(&[("token", "tok-nobody"), ("next", "/approvals")])
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().get("set-cookie").is_none());
    // Where sign-in leads is a local path only: a hostile `next` leads home.
    for next in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "/runs\r\nSet-Cookie: x=1",
        "/runs\u{0}",
        "/r\u{e9}sum\u{e9}",
    ] {
        let response = client
            .post(format!("{}/login", daemon.url()))
            .form(&[("token", token("ivan").as_str()), ("next", next)])
            .send()
            .unwrap();
        assert!(
            response.status().is_redirection(),
            "{next:?}: {}",
            response.status()
        );
        assert_eq!(location(&response), "/", "{next:?}");
    }
    // An approver's token is not a session either: the pages take only the cookie.
    let response = client
        .get(format!("{}/approvals/{id}", daemon.url()))
        .bearer_auth(token("ivan"))
        .send()
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(get_run(&daemon, &id)["status"], "awaiting_approval");
}
