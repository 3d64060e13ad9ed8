//! The shape of a notice for each kind of target: tandem's webhook JSON, Slack Block Kit,
//! a Teams Adaptive Card (Workflows webhooks), a legacy Teams MessageCard, and an email's
//! subject, plain-text and HTML bodies. Pure functions of the notice and its link.

use serde_json::{json, Value};

use super::{Notice, NoticeEvent};
use crate::config::NotifyKind;

/// The headline: what happened and to what, with the reference.
pub fn title(n: &Notice) -> String {
    let runbook = n.runbook.as_deref().unwrap_or("tandem");
    let party = n.parties.first().map(String::as_str).unwrap_or_default();
    let head = match n.event {
        NoticeEvent::ApprovalRequested => format!("Approval needed from {party}: {runbook}"),
        NoticeEvent::ReviewRequested => format!("Break-glass run to review for {party}: {runbook}"),
        NoticeEvent::RunSucceeded => format!("Run succeeded: {runbook}"),
        NoticeEvent::RunFailed => format!("Run FAILED: {runbook}"),
        NoticeEvent::RunCancelled => format!("Run cancelled: {runbook}"),
        NoticeEvent::RunInterrupted => format!("Run interrupted: {runbook}"),
        NoticeEvent::RunDenied => format!("Run denied: {runbook}"),
        NoticeEvent::RunExpired => format!("Run expired unapproved: {runbook}"),
        NoticeEvent::SlotSkipped => format!("Scheduled slot skipped: {runbook}"),
        NoticeEvent::SlotMissed => format!("Scheduled slot missed: {runbook}"),
        NoticeEvent::OutputTruncated => format!("Output truncated: {runbook}"),
        NoticeEvent::Frozen => n.summary.clone(),
    };
    match &n.reference {
        Some(r) => format!("[{r}] {head}"),
        None => head,
    }
}

/// An email subject: what, and who asked or started it.
pub fn subject(n: &Notice) -> String {
    let who = n
        .initiator
        .as_deref()
        .map(|i| match n.event {
            NoticeEvent::ApprovalRequested | NoticeEvent::ReviewRequested => {
                format!(" (requested by {i})")
            }
            NoticeEvent::Frozen => String::new(),
            _ => format!(" (started by {i})"),
        })
        .unwrap_or_default();
    let hosts = n
        .hosts
        .as_ref()
        .filter(|h| h.total > 0 && n.event == NoticeEvent::RunFailed)
        .map(|h| {
            let ok = h.counts.get("succeeded").copied().unwrap_or(0);
            format!(" on {} of {} hosts", h.total - ok, h.total)
        })
        .unwrap_or_default();
    format!("tandem: {}{hosts}{who}", title(n))
}

/// `label: value` lines shown under the headline, in order.
pub fn facts(n: &Notice) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(r) = &n.runbook {
        out.push(("Runbook", r.clone()));
    }
    if let Some(r) = &n.run_id {
        out.push(("Run", r.clone()));
    }
    if let Some(s) = &n.status {
        out.push(("Status", s.clone()));
    }
    if let Some(i) = &n.initiator {
        out.push(("Started by", i.clone()));
    }
    if let Some(r) = &n.reference {
        out.push(("Ref", r.clone()));
    }
    if let Some(r) = &n.reason {
        out.push(("Reason", super::clip(r, 500)));
    }
    if let Some(h) = n.hosts.as_ref().filter(|h| h.total > 0) {
        out.push(("Hosts", h.counts_line()));
    }
    out
}

/// One line per listed host: `web1: failed (exit 2): error`.
pub fn host_lines(n: &Notice) -> Vec<String> {
    let Some(h) = &n.hosts else {
        return Vec::new();
    };
    let mut out: Vec<String> = h
        .hosts
        .iter()
        .map(|l| {
            let mut s = format!("{}: {}", l.host, l.status);
            if let Some(c) = l.exit_code {
                s.push_str(&format!(" (exit {c})"));
            }
            if let Some(e) = &l.error {
                s.push_str(&format!(": {e}"));
            }
            s
        })
        .collect();
    if h.omitted > 0 {
        out.push(format!("... and {} more host(s) not listed", h.omitted));
    }
    out
}

/// The label of the button or link.
pub fn action_title(n: &Notice) -> &'static str {
    match n.event {
        NoticeEvent::ApprovalRequested => "Open approval",
        NoticeEvent::ReviewRequested => "Open review",
        _ if n.run_id.is_some() => "Open run",
        _ => "Open tandem",
    }
}

/// The message in the shape each kind of webhook target expects (not `email`: see
/// [`email_text`] and [`email_html`]).
pub fn message(kind: NotifyKind, n: &Notice, link: &str) -> Value {
    let title = title(n);
    let initiator = n.initiator.clone().unwrap_or_default();
    match kind {
        NotifyKind::Webhook | NotifyKind::Email => json!({
            "event": n.event.name(),
            "party": n.parties.first(),
            "parties": n.parties,
            "run_id": n.run_id,
            "runbook": n.runbook,
            "initiator": initiator,
            "status": n.status,
            "summary": n.summary,
            "title": title,
            "url": link,
            "ref": n.reference,
            "reason": n.reason,
            "hosts": n.hosts,
        }),
        NotifyKind::Slack => {
            let mut blocks = vec![json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("*{}*\n{}", slack_escape(&title), slack_escape(&n.summary))},
            })];
            let context: Vec<Value> = facts(n)
                .into_iter()
                .filter(|(k, _)| *k != "Runbook")
                .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}:* {}", slack_escape(&v))}))
                .take(10)
                .collect();
            if !context.is_empty() {
                blocks.push(json!({"type": "context", "elements": context}));
            }
            let hosts = host_lines(n);
            if !hosts.is_empty() && !n.event.is_prompt() {
                let text = super::clip(&hosts.join("\n"), 2900);
                blocks.push(json!({
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": format!("```{}```", slack_escape(&text))},
                }));
            }
            blocks.push(json!({
                "type": "actions",
                "elements": [{
                    "type": "button",
                    "text": {"type": "plain_text", "text": action_title(n)},
                    "url": link,
                    "action_id": "open",
                }],
            }));
            json!({
                "text": format!("{title}\n{} (started by {initiator}) <{link}|{}>", n.summary, action_title(n)),
                "blocks": blocks,
            })
        }
        NotifyKind::Teams => {
            let mut body = vec![
                json!({"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": true}),
                json!({"type": "TextBlock", "text": n.summary, "wrap": true}),
                json!({"type": "FactSet", "facts": facts(n).into_iter().map(|(k, v)| json!({"title": k, "value": v})).collect::<Vec<_>>()}),
            ];
            let hosts = host_lines(n);
            if !hosts.is_empty() && !n.event.is_prompt() {
                body.push(json!({"type": "TextBlock", "text": hosts.join("\n\n"), "wrap": true, "fontType": "Monospace", "size": "Small"}));
            }
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": body,
                        "actions": [{"type": "Action.OpenUrl", "title": action_title(n), "url": link}],
                    },
                }],
            })
        }
        NotifyKind::TeamsLegacy => json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": title,
            "themeColor": if n.event == NoticeEvent::RunFailed { "D70000" } else { "0076D7" },
            "title": title,
            "text": format!("{} (started by {initiator})", n.summary),
            "sections": [{"facts": facts(n).into_iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>()}],
            "potentialAction": [{
                "@type": "OpenUri",
                "name": action_title(n),
                "targets": [{"os": "default", "uri": link}],
            }],
        }),
    }
}

/// Slack's three control characters in mrkdwn.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The plain-text body of an email notice.
pub fn email_text(n: &Notice, link: &str) -> String {
    let mut out = format!("{}\n\n{}\n\n", title(n), n.summary);
    for (k, v) in facts(n) {
        out.push_str(&format!("{k}: {v}\n"));
    }
    let hosts = host_lines(n);
    if !hosts.is_empty() {
        out.push_str("\nHosts:\n");
        for h in hosts {
            out.push_str(&format!("  {h}\n"));
        }
    }
    out.push_str(&format!("\n{}: {link}\n", action_title(n)));
    out
}

/// The HTML body of an email notice: the same as the text, with a link button.
pub fn email_html(n: &Notice, link: &str) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif\">\n<h2>{}</h2>\n<p>{}</p>\n<table>\n",
        html_escape(&title(n)),
        html_escape(&n.summary)
    );
    for (k, v) in facts(n) {
        out.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>\n",
            html_escape(k),
            html_escape(&v)
        ));
    }
    out.push_str("</table>\n");
    let hosts = host_lines(n);
    if !hosts.is_empty() {
        out.push_str("<ul>\n");
        for h in hosts {
            out.push_str(&format!("<li>{}</li>\n", html_escape(&h)));
        }
        out.push_str("</ul>\n");
    }
    out.push_str(&format!(
        "<p><a href=\"{}\" style=\"display: inline-block; padding: 8px 16px; background: #0076d7; color: #fff; text-decoration: none\">{}</a></p>\n</body></html>\n",
        html_escape(link),
        action_title(n)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{HostSummary, Notice};
    use crate::store::HostResult;

    fn host(name: &str, status: &str, exit: Option<i64>) -> HostResult {
        HostResult {
            host: name.into(),
            status: status.parse().unwrap(),
            exit_code: exit,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            error: (status == "failed").then(|| "exit 2".to_string()),
        }
    }

    fn failed(hosts: Vec<HostResult>) -> Notice {
        Notice {
            event: NoticeEvent::RunFailed,
            parties: vec!["internal".into()],
            run_id: Some("abc".into()),
            runbook: Some("patch".into()),
            initiator: Some("paula (provider)".into()),
            status: Some("failed".into()),
            summary: "patch failed".into(),
            hosts: Some(HostSummary::of(&hosts)),
            reference: Some("INC-7 <b>".into()),
            reason: Some("1 of 2 hosts failed".into()),
        }
    }

    #[test]
    fn a_long_host_list_is_counted_and_only_the_failures_listed() {
        let mut hosts: Vec<HostResult> = (0..50)
            .map(|i| host(&format!("h{i}"), "succeeded", Some(0)))
            .collect();
        hosts.extend((0..30).map(|i| host(&format!("bad{i}"), "failed", Some(2))));
        let s = HostSummary::of(&hosts);
        assert_eq!(s.total, 80);
        assert_eq!(s.counts["succeeded"], 50);
        assert_eq!(s.counts["failed"], 30);
        assert_eq!(s.hosts.len(), crate::notify::HOSTS_LISTED);
        assert!(s.hosts.iter().all(|h| h.status == "failed"));
        assert_eq!(s.omitted, 60);
        let lines = host_lines(&failed(hosts));
        assert!(lines.last().unwrap().contains("60 more"), "{lines:?}");
    }

    #[test]
    fn a_short_host_list_is_listed_whole() {
        let s = HostSummary::of(&[
            host("a", "succeeded", Some(0)),
            host("b", "failed", Some(2)),
        ]);
        assert_eq!(s.hosts.len(), 2);
        assert_eq!(s.omitted, 0);
        assert_eq!(s.counts_line(), "2 hosts: 1 failed, 1 succeeded");
    }

    #[test]
    fn teams_gets_an_adaptive_card_and_legacy_a_message_card() {
        let n = failed(vec![host("web1", "failed", Some(2))]);
        let card = message(NotifyKind::Teams, &n, "https://t/approvals/abc");
        assert_eq!(card["type"], "message");
        let a = &card["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        assert!(a["contentUrl"].is_null());
        assert_eq!(a["content"]["type"], "AdaptiveCard");
        assert_eq!(a["content"]["version"], "1.4");
        assert_eq!(a["content"]["actions"][0]["type"], "Action.OpenUrl");
        assert_eq!(a["content"]["actions"][0]["url"], "https://t/approvals/abc");
        let legacy = message(NotifyKind::TeamsLegacy, &n, "https://t/approvals/abc");
        assert_eq!(legacy["@type"], "MessageCard");
    }

    #[test]
    fn slack_escapes_mrkdwn_and_html_escapes_markup() {
        let n = failed(vec![host("web1", "failed", Some(2))]);
        let s = message(NotifyKind::Slack, &n, "https://t/x").to_string();
        assert!(s.contains("INC-7 &lt;b&gt;"), "{s}");
        let html = email_html(&n, "https://t/x?a=1&b=2");
        assert!(html.contains("INC-7 &lt;b&gt;"), "{html}");
        assert!(html.contains("href=\"https://t/x?a=1&amp;b=2\""), "{html}");
        assert!(!html.contains("<b>"), "{html}");
    }

    #[test]
    fn the_subject_says_what_and_who() {
        let n = failed(vec![
            host("web1", "failed", Some(2)),
            host("web2", "succeeded", Some(0)),
        ]);
        assert_eq!(
            subject(&n),
            "tandem: [INC-7 <b>] Run FAILED: patch on 1 of 2 hosts (started by paula (provider))"
        );
    }
}
