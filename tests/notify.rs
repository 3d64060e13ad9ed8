//! Approval prompts to `notify` targets: a generic webhook, Slack and Teams, each in its own
//! shape with a link to the run's approval page that works; a receiver that fails is retried
//! with backoff, audited as `notify_failed`, and never holds up the run.

use std::time::Duration;

use serde_json::Value;

use crate::approvals::{
    approve_and_see_it_run, audit_of, event_names, events, get_run, request_pending, site_config,
    site_env, write_marker_runbook, SETTLE,
};
use crate::harness::{token, wait_for, Daemon, Env, HttpStub, SmtpStub, StandardConfig};
use crate::web::{location, page_client, sign_in};

/// A `notify:` entry.
fn target(name: &str, kind: &str, url: &str, parties: &str) -> String {
    format!(
        "  - name: {name}\n    kind: {kind}\n    url: \"{url}\"\n    events: [approval_requested]\n    parties: {parties}\n"
    )
}

/// The site with `targets` (see [`target`]) and a runbook `cross` on web1 (internal) that a
/// provider operator needs internal's approval for.
fn notify_site(targets: &[String]) -> Env {
    let config: StandardConfig = site_config().extra(&format!("notify:\n{}", targets.concat()));
    let env = site_env(&config);
    write_marker_runbook(&env, "cross", "[web1]", "");
    env
}

/// Waits for `n` audit records of `event` about run `id`.
fn wait_audited(daemon: &Daemon, id: &str, event: &str, n: usize) -> Vec<Value> {
    wait_for(SETTLE, &format!("{n} `{event}` record(s)"), || {
        let records = audit_of(daemon, id);
        let found: Vec<Value> = events(&records, event).into_iter().cloned().collect();
        (found.len() >= n).then_some(found)
    })
}

#[test]
fn the_approval_prompt_reaches_webhook_slack_and_teams_with_a_working_link() {
    let stub = HttpStub::start();
    let env = notify_site(&[
        target(
            "hook",
            "webhook",
            &format!("{}/hook", stub.url()),
            "[internal]",
        ),
        target(
            "chat",
            "slack",
            &format!("{}/slack", stub.url()),
            "[internal]",
        ),
        target(
            "card",
            "teams",
            &format!("{}/teams", stub.url()),
            "[internal]",
        ),
        target(
            "theirs",
            "webhook",
            &format!("{}/provider", stub.url()),
            "[provider]",
        ),
    ]);
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "paula", "cross");
    let link = format!("{}/approvals/{id}", daemon.url());
    let timeout = Duration::from_secs(10);

    let hook = stub.wait_for_requests("/hook", 1, timeout);
    assert_eq!(hook.len(), 1, "one prompt, one delivery");
    assert_eq!(hook[0].method, "POST");
    assert!(
        hook[0]
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        hook[0].headers
    );
    let body = hook[0].json();
    assert_eq!(body["event"], "approval_requested", "{body}");
    assert_eq!(body["party"], "internal", "{body}");
    assert_eq!(body["run_id"], id.as_str(), "{body}");
    assert_eq!(body["runbook"], "cross", "{body}");
    assert!(
        body["initiator"]
            .as_str()
            .unwrap_or_default()
            .contains("paula"),
        "{body}"
    );
    assert!(
        body["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("web1"),
        "{body}"
    );
    assert!(
        !body["title"].as_str().unwrap_or_default().is_empty(),
        "{body}"
    );
    assert_eq!(body["url"], link.as_str(), "{body}");

    let slack = stub.wait_for_requests("/slack", 1, timeout)[0].json();
    let text = slack["text"].as_str().unwrap_or_default();
    assert!(text.contains(&link), "{slack}");
    assert!(text.contains("cross"), "{slack}");
    assert_slack_button(&slack, &link, "Open approval");

    let teams = stub.wait_for_requests("/teams", 1, timeout)[0].json();
    assert_adaptive_card(&teams, &link, "Open approval");

    // Each delivery is audited; the provider's target was not asked about internal's run.
    let sent = wait_audited(&daemon, &id, "notify_sent", 3);
    let mut names: Vec<&str> = sent
        .iter()
        .filter_map(|r| r["detail"]["target"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["card", "chat", "hook"]);
    assert!(stub.requests_to("/provider").is_empty());

    // The link works: it sends a stranger to sign in and back, and shows the run.
    let client = page_client();
    let response = client.get(&link).send().unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let to_login = location(&response);
    assert!(to_login.starts_with("/login"), "{to_login}");
    let next = format!("/approvals/{id}");
    assert!(
        to_login.contains(&next),
        "sign-in forgets the run: {to_login}"
    );
    let (_, cookie) = sign_in(&client, &daemon, "ivan", &next);
    let page = client.get(&link).header("cookie", cookie).send().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().unwrap();
    let digest = get_run(&daemon, &id)["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(html.contains(&digest), "the linked page lacks the digest");
    assert!(
        html.contains("id=\"approve\""),
        "the linked page offers no approval"
    );
}

#[test]
fn a_failing_receiver_is_retried_audited_and_never_blocks_the_run() {
    let stub = HttpStub::with_statuses(&[500]);
    let env = notify_site(&[target(
        "hook",
        "webhook",
        &format!("{}/hook", stub.url()),
        "[internal]",
    )]);
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "paula", "cross");

    let failed = wait_audited(&daemon, &id, "notify_failed", 1);
    assert_eq!(failed.len(), 1, "{failed:?}");
    let detail = &failed[0]["detail"];
    assert_eq!(detail["target"], "hook", "{detail}");
    assert_eq!(detail["event"], "approval_requested", "{detail}");
    assert!(
        detail["error"].as_str().unwrap_or_default().contains("500"),
        "{detail}"
    );

    // Four attempts, each answered 500, with a backoff of 250 ms doubling between them.
    let tries = stub.requests_to("/hook");
    assert_eq!(tries.len(), 4, "attempts: {}", tries.len());
    assert_eq!(detail["attempts"], 4, "{detail}");
    assert!(tries.iter().all(|t| t.answered == 500));
    assert!(
        tries.iter().all(|t| t.body == tries[0].body),
        "retries differ"
    );
    for (i, pair) in tries.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let backoff = Duration::from_millis(250 << i);
        assert!(
            gap >= backoff - Duration::from_millis(50),
            "retry {} came after {gap:?}, before its backoff {backoff:?}",
            i + 1
        );
    }
    let records = audit_of(&daemon, &id);
    assert!(
        events(&records, "notify_sent").is_empty(),
        "{:?}",
        event_names(&records)
    );

    // The run waited for its approval all along, and is approvable.
    assert_eq!(get_run(&daemon, &id)["status"], "awaiting_approval");
    approve_and_see_it_run(&env, &daemon, "ivan", &id);
}

#[test]
fn a_flaky_receiver_gets_the_prompt_on_a_retry() {
    let stub = HttpStub::with_statuses(&[503, 500, 200]);
    let env = notify_site(&[target(
        "hook",
        "webhook",
        &format!("{}/hook", stub.url()),
        "[internal]",
    )]);
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "paula", "cross");

    let sent = wait_audited(&daemon, &id, "notify_sent", 1);
    assert_eq!(sent[0]["detail"]["status"], 200, "{}", sent[0]);
    let tries = stub.requests_to("/hook");
    assert_eq!(
        tries.iter().map(|t| t.answered).collect::<Vec<_>>(),
        [503, 500, 200]
    );
    assert_eq!(tries[2].json()["run_id"], id.as_str());
    let records = audit_of(&daemon, &id);
    assert!(
        events(&records, "notify_failed").is_empty(),
        "{:?}",
        event_names(&records)
    );
}

#[test]
fn a_break_glass_run_notifies_the_owners_of_their_review() {
    let stub = HttpStub::start();
    let config = site_config().extra(&format!(
        "notify:\n  - name: hook\n    kind: webhook\n    url: \"{}/hook\"\n    events: [review_requested]\n    parties: [internal]\n",
        stub.url()
    ));
    let env = site_env(&config);
    write_marker_runbook(&env, "isolate", "[web1]", "emergency: true");
    let daemon = Daemon::start(&env);
    let (status, run) = daemon.post(
        "/api/v1/runs",
        &crate::harness::token("paula"),
        &serde_json::json!({"runbook": "isolate", "break_glass": true, "reason": "worm"}),
    );
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();

    let body = stub.wait_for_requests("/hook", 1, Duration::from_secs(10))[0].json();
    assert_eq!(body["event"], "review_requested", "{body}");
    assert_eq!(body["party"], "internal", "{body}");
    assert_eq!(body["run_id"], id.as_str(), "{body}");
    assert_eq!(
        body["url"],
        format!("{}/approvals/{id}", daemon.url()).as_str(),
        "{body}"
    );
    wait_audited(&daemon, &id, "notify_sent", 1);
}

#[test]
fn public_url_is_where_the_prompt_links() {
    let stub = HttpStub::start();
    let config = site_config().extra(&format!(
        "public_url: \"https://tandem.example.org/\"\nnotify:\n{}",
        target(
            "hook",
            "webhook",
            &format!("{}/hook", stub.url()),
            "[internal]"
        )
    ));
    let env = site_env(&config);
    write_marker_runbook(&env, "cross", "[web1]", "");
    let daemon = Daemon::start(&env);
    let id = request_pending(&daemon, "paula", "cross");
    let body = stub.wait_for_requests("/hook", 1, Duration::from_secs(10))[0].json();
    assert_eq!(
        body["url"],
        format!("https://tandem.example.org/approvals/{id}").as_str(),
        "{body}"
    );
}

/// Slack Block Kit: a section, and an actions block whose button links to `link`.
fn assert_slack_button(slack: &Value, link: &str, label: &str) {
    let blocks = slack["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "section", "{slack}");
    let actions = blocks
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap_or_else(|| panic!("no actions block: {slack}"));
    let button = &actions["elements"][0];
    assert_eq!(button["type"], "button", "{slack}");
    assert_eq!(button["url"], link, "{slack}");
    assert_eq!(button["text"]["type"], "plain_text", "{slack}");
    assert_eq!(button["text"]["text"], label, "{slack}");
    assert!(
        !slack["text"].as_str().unwrap_or_default().is_empty(),
        "no text fallback"
    );
}

/// A Teams Workflows message: one Adaptive Card 1.4 attachment with an OpenUrl action.
fn assert_adaptive_card(teams: &Value, link: &str, label: &str) {
    assert_eq!(teams["type"], "message", "{teams}");
    let attachments = teams["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1, "{teams}");
    let a = &attachments[0];
    assert_eq!(
        a["contentType"], "application/vnd.microsoft.card.adaptive",
        "{teams}"
    );
    assert!(a["contentUrl"].is_null(), "{teams}");
    let card = &a["content"];
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    assert_eq!(card["type"], "AdaptiveCard", "{teams}");
    assert_eq!(card["version"], "1.4", "{teams}");
    assert!(
        !card["body"].as_array().expect("body").is_empty(),
        "{teams}"
    );
    let action = &card["actions"][0];
    assert_eq!(action["type"], "Action.OpenUrl", "{teams}");
    assert_eq!(action["title"], label, "{teams}");
    assert_eq!(action["url"], link, "{teams}");
}

/// A `notify:` entry with explicit events and optional runbooks filter.
fn subscriber(name: &str, kind: &str, url: &str, events: &str, extra: &str) -> String {
    format!("  - name: {name}\n    kind: {kind}\n    url: \"{url}\"\n    events: {events}\n{extra}")
}

/// An email target at the SMTP stub, plain SMTP on localhost.
fn mail_target(name: &str, smtp: &SmtpStub, events: &str, parties: &str) -> String {
    format!(
        "  - name: {name}\n    kind: email\n    smtp: {{host: 127.0.0.1, port: {}, tls: none}}\n    from: \"tandem <tandem@example.org>\"\n    to: [oncall@example.org, it@example.org]\n    events: {events}\n    parties: {parties}\n",
        smtp.port()
    )
}

#[test]
fn a_failing_run_tells_its_subscribers_with_the_ref_and_the_host_summary() {
    let stub = HttpStub::start();
    let smtp = SmtpStub::start();
    let env = notify_site(&[
        subscriber(
            "hook",
            "webhook",
            &format!("{}/hook", stub.url()),
            "[run_failed]",
            "    runbooks: [broken]\n    parties: [internal]\n",
        ),
        subscriber(
            "elsewhere",
            "webhook",
            &format!("{}/elsewhere", stub.url()),
            "[run_failed]",
            "    runbooks: [other]\n",
        ),
        subscriber(
            "theirs",
            "webhook",
            &format!("{}/theirs", stub.url()),
            "[run_failed, run_succeeded]",
            "    parties: [provider]\n",
        ),
        subscriber(
            "prompts",
            "webhook",
            &format!("{}/prompts", stub.url()),
            "[approval_requested]",
            "",
        ),
        subscriber(
            "chat",
            "slack",
            &format!("{}/slack", stub.url()),
            "[run_failed]",
            "",
        ),
        subscriber(
            "card",
            "teams",
            &format!("{}/teams", stub.url()),
            "[run_failed]",
            "",
        ),
        mail_target("mail", &smtp, "[run_failed]", "[internal]"),
    ]);
    crate::approvals::write_runbook(
        &env,
        "broken",
        "[web1]",
        "",
        "sh_ok(\"touch /nonexistent-dir/for-sure/x\");",
    );
    let daemon = Daemon::start(&env);
    let (status, run) = daemon.post(
        "/api/v1/runs",
        &token("alice"),
        &serde_json::json!({"runbook": "broken", "ref": "INC-4711"}),
    );
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["ref"], "INC-4711", "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let link = format!("{}/approvals/{id}", daemon.url());
    let timeout = Duration::from_secs(20);

    let body = stub.wait_for_requests("/hook", 1, timeout)[0].json();
    assert_eq!(body["event"], "run_failed", "{body}");
    assert_eq!(body["run_id"], id.as_str(), "{body}");
    assert_eq!(body["runbook"], "broken", "{body}");
    assert_eq!(body["status"], "failed", "{body}");
    assert_eq!(body["ref"], "INC-4711", "{body}");
    assert_eq!(body["url"], link.as_str(), "{body}");
    assert!(
        body["initiator"].as_str().unwrap().contains("alice"),
        "{body}"
    );
    assert!(
        !body["reason"].as_str().unwrap_or_default().is_empty(),
        "{body}"
    );
    let hosts = &body["hosts"];
    assert_eq!(hosts["total"], 1, "{body}");
    assert_eq!(hosts["counts"]["failed"], 1, "{body}");
    assert_eq!(hosts["hosts"][0]["host"], "web1", "{body}");
    assert_eq!(hosts["hosts"][0]["status"], "failed", "{body}");
    assert!(hosts["hosts"][0]["error"].is_string(), "{body}");

    let slack = stub.wait_for_requests("/slack", 1, timeout)[0].json();
    assert_slack_button(&slack, &link, "Open run");
    assert!(slack.to_string().contains("INC-4711"), "{slack}");
    let teams = stub.wait_for_requests("/teams", 1, timeout)[0].json();
    assert_adaptive_card(&teams, &link, "Open run");
    assert!(teams.to_string().contains("INC-4711"), "{teams}");

    let mail = smtp.wait_for_mail(timeout, |m| m.data.contains(&id));
    assert_eq!(mail.from, "tandem@example.org");
    assert_eq!(mail.to, ["oncall@example.org", "it@example.org"]);
    let subject = mail.header("subject").unwrap();
    assert!(subject.contains("INC-4711"), "{subject}");
    assert!(
        subject.contains("FAILED") && subject.contains("broken"),
        "{subject}"
    );
    assert!(subject.contains("alice (internal)"), "{subject}");
    let text = mail.decoded();
    assert!(
        text.contains("text/plain") && text.contains("text/html"),
        "{text}"
    );
    assert!(text.contains("Ref: INC-4711"), "{text}");
    assert!(text.contains("web1: failed"), "{text}");
    assert!(text.contains(&link), "{text}");

    // Every subscribed target got it and said so in the audit log; the others got nothing.
    let sent = wait_audited(&daemon, &id, "notify_sent", 4);
    let mut names: Vec<&str> = sent
        .iter()
        .filter_map(|r| r["detail"]["target"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["card", "chat", "hook", "mail"]);
    for other in ["/elsewhere", "/theirs", "/prompts"] {
        assert!(stub.requests_to(other).is_empty(), "{other} was told");
    }

    // The ref is in the run, its audit records and the listing by ref.
    let records = audit_of(&daemon, &id);
    for event in ["run_requested", "run_started"] {
        assert_eq!(
            events(&records, event)[0]["detail"]["ref"],
            "INC-4711",
            "{event}"
        );
    }
    let (status, listed) = daemon.get("/api/v1/runs?ref=INC-4711", &token("alice"));
    assert_eq!(status, 200, "{listed}");
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let (_, none) = daemon.get("/api/v1/runs?ref=INC-0", &token("alice"));
    assert_eq!(none, serde_json::json!([]));
}

#[test]
fn an_approval_prompt_arrives_by_email_with_its_link_and_ref() {
    let smtp = SmtpStub::start();
    let env = notify_site(&[mail_target(
        "it-mail",
        &smtp,
        "[approval_requested]",
        "[internal]",
    )]);
    let daemon = Daemon::start(&env);
    let out = crate::approvals::cli(&env, &daemon, "paula")
        .args(["run", "cross", "--ref", "CHG-42"])
        .run();
    let id = out
        .stdout
        .split_whitespace()
        .find(|w| w.len() == 16 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no run id in: {}", out.dump()))
        .to_string();
    let link = format!("{}/approvals/{id}", daemon.url());

    let mail = smtp.wait_for_mail(Duration::from_secs(20), |m| m.data.contains(&id));
    let subject = mail.header("subject").unwrap();
    assert!(
        subject.contains("Approval needed from internal: cross"),
        "{subject}"
    );
    assert!(subject.contains("paula (provider)"), "{subject}");
    assert!(subject.contains("CHG-42"), "{subject}");
    let text = mail.decoded();
    assert!(text.contains(&format!("Open approval: {link}")), "{text}");
    assert!(text.contains(&format!("href=\"{link}\"")), "{text}");
    let sent = wait_audited(&daemon, &id, "notify_sent", 1);
    assert_eq!(sent[0]["detail"]["target"], "it-mail");

    // `show` tells the ref.
    crate::approvals::cli(&env, &daemon, "paula")
        .args(["show", &id])
        .run()
        .success()
        .stdout_contains("ref:        CHG-42");
}

#[test]
fn a_ref_with_control_characters_or_too_long_is_refused() {
    let env = notify_site(&[]);
    let daemon = Daemon::start(&env);
    for bad in [
        "INC\n1".to_string(),
        "x".repeat(129),
        "a\u{202E}b".to_string(),
    ] {
        let (status, body) = daemon.post(
            "/api/v1/runs",
            &token("alice"),
            &serde_json::json!({"runbook": "cross", "ref": bad}),
        );
        assert!(status == 400 || status == 422, "{status} {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("ref"),
            "{body}"
        );
    }
    let (status, runs) = daemon.get("/api/v1/runs", &token("audrey"));
    assert_eq!(status, 200);
    assert_eq!(runs, serde_json::json!([]), "a refused request left a run");
}

#[test]
fn a_failed_mail_is_audited_without_the_smtp_password() {
    let smtp = SmtpStub::start();
    let password = "hunter2-smtp-Secret";
    let config = site_config().extra(&format!(
        "secrets:\n  smtp_pw: {{ env: TEST_SMTP_PW, owner: internal }}\nnotify:\n  - name: it-mail\n    kind: email\n    smtp: {{host: localhost, port: {}, tls: none, username: tandem, password_secret: smtp_pw}}\n    from: tandem@example.org\n    to: [it@example.org]\n    events: [approval_requested]\n",
        smtp.port()
    ));
    let env = site_env(&config);
    write_marker_runbook(&env, "cross", "[web1]", "");
    let daemon = Daemon::start_with(&env, &[("TEST_SMTP_PW", password)]);
    let id = request_pending(&daemon, "paula", "cross");

    // The stub offers no AUTH: the login cannot happen, the delivery fails and says so.
    let failed = wait_audited(&daemon, &id, "notify_failed", 1);
    let detail = &failed[0]["detail"];
    assert_eq!(detail["target"], "it-mail", "{detail}");
    assert!(
        detail["error"].as_str().unwrap().contains("smtp"),
        "{detail}"
    );
    assert!(smtp.mails().is_empty(), "mail went out without the login");
    let (_, all) = daemon.get("/api/v1/audit?after=0&limit=10000", &token("audrey"));
    assert!(
        !all.to_string().contains(password),
        "the audit log holds the password"
    );
    assert!(
        !daemon.stderr().contains(password),
        "the daemon log holds the password"
    );
    assert_eq!(get_run(&daemon, &id)["status"], "awaiting_approval");
}

#[test]
fn a_denied_run_and_a_frozen_host_are_told_to_their_subscribers() {
    let stub = HttpStub::start();
    let env = notify_site(&[
        subscriber(
            "hook",
            "webhook",
            &format!("{}/hook", stub.url()),
            "[run_denied, frozen]",
            "    parties: [provider]\n",
        ),
        subscriber(
            "succeeded-only",
            "webhook",
            &format!("{}/quiet", stub.url()),
            "[run_succeeded]",
            "",
        ),
    ]);
    let daemon = Daemon::start(&env);
    let (status, run) = daemon.post(
        "/api/v1/runs",
        &token("paula"),
        &serde_json::json!({"runbook": "cross", "ref": "CHG-9"}),
    );
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let (status, body) = crate::approvals::deny(&daemon, "ivan", &id, "not during the sale");
    assert_eq!(status, 200, "{body}");

    let denied = stub.wait_for_requests("/hook", 1, Duration::from_secs(20))[0].json();
    assert_eq!(denied["event"], "run_denied", "{denied}");
    assert_eq!(denied["run_id"], id.as_str(), "{denied}");
    assert_eq!(denied["ref"], "CHG-9", "{denied}");
    assert!(
        denied["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("not during the sale"),
        "{denied}"
    );

    // Internal freezes its host: the provider, which runs things there, hears of it.
    let (status, body) = daemon.post(
        "/api/v1/freezes",
        &token("ivan"),
        &serde_json::json!({"targets": ["web1"], "reason": "forensics"}),
    );
    assert_eq!(status, 200, "{body}");
    let frozen = stub.wait_for_requests("/hook", 2, Duration::from_secs(20))[1].json();
    assert_eq!(frozen["event"], "frozen", "{frozen}");
    assert_eq!(frozen["status"], "frozen", "{frozen}");
    assert_eq!(frozen["reason"], "forensics", "{frozen}");
    assert!(
        frozen["summary"].as_str().unwrap().contains("web1"),
        "{frozen}"
    );
    wait_audited(&daemon, &id, "notify_sent", 1);
    assert!(
        stub.requests_to("/quiet").is_empty(),
        "a run_succeeded target was told"
    );
}

#[test]
fn a_run_cut_short_by_a_crash_is_told_as_interrupted_after_the_restart() {
    let stub = HttpStub::start();
    let env = notify_site(&[subscriber(
        "hook",
        "webhook",
        &format!("{}/hook", stub.url()),
        "[run_interrupted]",
        "",
    )]);
    crate::approvals::write_runbook(&env, "slow", "[web1]", "", "log(\"begun\");\nsleep(60);");
    let mut daemon = Daemon::start(&env);
    let (status, run) = daemon.post(
        "/api/v1/runs",
        &token("alice"),
        &serde_json::json!({"runbook": "slow", "ref": "INC-77"}),
    );
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    crate::approvals::wait_status(&daemon, &id, "running");
    daemon.kill9();
    assert!(stub.requests_to("/hook").is_empty());

    let daemon = Daemon::start(&env);
    let body = stub.wait_for_requests("/hook", 1, Duration::from_secs(20))[0].json();
    assert_eq!(body["event"], "run_interrupted", "{body}");
    assert_eq!(body["run_id"], id.as_str(), "{body}");
    assert_eq!(body["ref"], "INC-77", "{body}");
    assert_eq!(body["hosts"]["hosts"][0]["status"], "interrupted", "{body}");
    wait_audited(&daemon, &id, "notify_sent", 1);
}
