//! Email targets: one message per notice to the target's recipients, over SMTP with
//! STARTTLS (the default), implicit TLS, or — to a server on localhost only — plain text.
//! The password comes from `secrets` when the message is sent and appears nowhere else:
//! not in errors, the log or the audit record.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};

use super::{format, Notice, ATTEMPTS};
use crate::config::{Config, NotifyTarget, SmtpTls};

/// Builds the message of `notice` for `target`: subject, text and HTML alternatives.
pub fn build(target: &NotifyTarget, notice: &Notice, link: &str) -> Result<Message, String> {
    let from: Mailbox = target
        .from
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("from: {e}"))?;
    let mut b = Message::builder()
        .from(from)
        .subject(format::subject(notice));
    for t in &target.to {
        b = b.to(t.parse().map_err(|e| format!("to `{t}`: {e}"))?);
    }
    b.multipart(MultiPart::alternative_plain_html(
        format::email_text(notice, link),
        format::email_html(notice, link),
    ))
    .map_err(|e| format!("message: {e}"))
}

/// Sends `notice` to an email target, retrying transient failures with the same backoff as
/// webhooks. `Ok` is the server's final reply code.
pub async fn deliver(
    config: &std::sync::Arc<Config>,
    target: &NotifyTarget,
    notice: &Notice,
    link: &str,
) -> Result<Value, String> {
    let Some(smtp) = &target.smtp else {
        return Err("no smtp settings".into());
    };
    let message = build(target, notice, link)?;
    // Reading a secret may touch a file: not on a tokio worker.
    let password = match smtp.password_secret.clone() {
        None => None,
        Some(name) => {
            let config = config.clone();
            match tokio::task::spawn_blocking(move || config.read_secret(&name)).await {
                Ok(Ok(v)) => Some(v),
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(format!("secret task failed: {e}")),
            }
        }
    };
    let builder = match smtp.tls {
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host),
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
        SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            &smtp.host,
        )),
    };
    let mut builder = builder
        .map_err(|e| format!("smtp: {e}"))?
        .port(smtp.port())
        .timeout(Some(Duration::from_secs(10)));
    if let (Some(user), Some(pw)) = (&smtp.username, &password) {
        builder = builder.credentials(Credentials::new(user.clone(), pw.expose().to_string()));
    }
    let transport = builder.build();
    let scrub = |e: String| match &password {
        Some(pw) if !pw.expose().is_empty() => e.replace(pw.expose(), "[redacted]"),
        _ => e,
    };
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match transport.send(message.clone()).await {
            Ok(r) => return Ok(json!(r.code().to_string())),
            Err(e) => {
                last = scrub(format!("smtp: {e}"));
                if e.is_permanent() {
                    break;
                }
            }
        }
        super::backoff(attempt).await;
    }
    Err(last)
}
