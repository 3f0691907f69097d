//! The notifier adapters: e-mail over SMTP (lettre), Slack incoming webhooks, and a generic JSON
//! webhook signed with HMAC-SHA256. Each reports failures as a short message without
//! credentials (webhook URLs and passwords never appear in errors or logs).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use hmac::{KeyInit, Mac};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use proctor_schema::ports::notifier::{
    EMAIL, Notification, Notifier, NotifyError, SLACK, WEBHOOK, summary,
};
use serde_json::json;

use crate::config::{Credential, MailSettings, MailTls, NotificationSettings};
use crate::egress::EgressPolicy;

/// Longest an SMTP conversation or webhook call may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// Header carrying the webhook signature: `sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "X-Proctor-Signature";
/// Header carrying the Unix time the signature covers (receivers reject old ones).
pub const TIMESTAMP_HEADER: &str = "X-Proctor-Timestamp";
/// Header carrying the notification's idempotency key: the same on every attempt, so a
/// receiver that got it already can drop a repeat (delivery is at least once).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The notifiers the settings ask for: e-mail when an SMTP host is set; Slack and the webhook
/// always (they need no server setting: a schedule can name its own target).
/// Slack and webhook calls follow the egress rules of [`crate::egress`] (the settings' allowed
/// hosts are exempt from the address check).
pub fn build(settings: &NotificationSettings) -> anyhow::Result<Vec<Arc<dyn Notifier>>> {
    let egress = EgressPolicy::new(&settings.allowed_hosts);
    let client = reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        // Direct connections only: a proxy from the environment would resolve and connect
        // for us, past the address check.
        .no_proxy()
        .dns_resolver(egress.resolver())
        .build()
        .context("building the notification HTTP client")?;
    let mut notifiers: Vec<Arc<dyn Notifier>> = Vec::new();
    if let Some(mail) = &settings.mail {
        notifiers.push(Arc::new(EmailNotifier::new(mail)?));
    }
    notifiers.push(Arc::new(SlackNotifier {
        client: client.clone(),
        egress: egress.clone(),
        default_url: settings.slack_webhook_url.clone(),
    }));
    notifiers.push(Arc::new(WebhookNotifier {
        client,
        egress,
        default_url: settings.webhook_url.clone(),
        secret: settings.webhook_secret.clone(),
    }));
    Ok(notifiers)
}

/// E-mail to the schedule's notification addresses.
pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl EmailNotifier {
    /// A mailer for `settings` (nothing is sent or connected yet).
    pub fn new(settings: &MailSettings) -> anyhow::Result<Self> {
        let host = settings.host.as_str();
        let builder = match settings.tls {
            MailTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .context("setting up STARTTLS")?,
            MailTls::Implicit => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(host).context("setting up TLS")?
            }
            MailTls::Opportunistic => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .tls(Tls::Opportunistic(
                    TlsParameters::new(host.to_owned()).context("setting up STARTTLS")?,
                )),
            MailTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        };
        let mut builder = builder.port(settings.port).timeout(Some(SEND_TIMEOUT));
        if let Some((user, password)) = &settings.login {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let from = settings
            .from
            .parse()
            .with_context(|| format!("{:?} is not an address to send from", settings.from))?;
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }
}

/// The e-mail about a finished run: the subject and body layout of Proctor v2's mail, with the
/// final status (v2 sent `CREATED`) and how the run ended.
pub fn email_text(notification: &Notification) -> (String, String) {
    let status = notification.status.name();
    let kind = if notification.schedule_id.is_some() {
        "scheduled execution"
    } else {
        "execution"
    };
    if let Some(alert) = &notification.alert {
        let subject = format!("{} | alert: {}", notification.proc_name, alert.pattern);
        let body = format!(
            "Proc execution alert:\n\nName:\t{}\nID:\t{}\nStatus:\t{status}\nPattern:\t{}\n\
             Line {}:\t{}\n\n\nThis is an auto-generated email\n",
            notification.proc_name, notification.execution_id, alert.pattern, alert.seq, alert.line
        );
        return (subject, body);
    }
    let subject = format!("{} | {kind} {status}", notification.proc_name);
    let args: Vec<String> = notification
        .args
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    let mut body = format!(
        "Proc execution details:\n\nName:\t{}\nArgs:\t{}\nID:\t{}\nStatus:\t{status}\n",
        notification.proc_name,
        args.join(","),
        notification.execution_id,
    );
    if let Some(code) = notification.exit_code {
        body.push_str(&format!("Exit code:\t{code}\n"));
    }
    if let Some(duration) = notification.duration {
        body.push_str(&format!("Duration:\t{:.1} s\n", duration.as_secs_f64()));
    }
    if let Some(reason) = &notification.reason {
        body.push_str(&format!("Reason:\t{reason}\n"));
    }
    if let Some(schedule) = notification.schedule_id {
        body.push_str(&format!("Schedule:\t{schedule}\n"));
    }
    body.push_str("\n\nThis is an auto-generated email\n");
    (subject, body)
}

#[async_trait]
impl Notifier for EmailNotifier {
    fn channel(&self) -> &'static str {
        EMAIL
    }

    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let (subject, body) = email_text(notification);
        let mut message = Message::builder()
            .from(self.from.clone())
            // The same on every attempt: mail systems and readers drop repeats by it.
            .message_id(Some(format!("<{}@proctor>", notification.idempotency_key)))
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for address in &notification.emails {
            let mailbox: Mailbox = address
                .parse()
                .map_err(|e| NotifyError(format!("{address:?} is not an address: {e}")))?;
            message = message.to(mailbox);
        }
        let message = message
            .body(body)
            .map_err(|e| NotifyError(format!("cannot build the message: {e}")))?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| NotifyError(format!("the SMTP server did not take the message: {e}")))
    }
}

/// A Slack incoming webhook: the schedule's own, or the server-wide one.
pub struct SlackNotifier {
    client: reqwest::Client,
    egress: EgressPolicy,
    default_url: Option<Credential>,
}

impl SlackNotifier {
    fn target<'n>(&'n self, notification: &'n Notification) -> Option<&'n str> {
        notification
            .slack_webhook_url
            .as_deref()
            .or(self.default_url.as_ref().map(Credential::expose))
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn channel(&self) -> &'static str {
        SLACK
    }

    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let Some(url) = self.target(notification) else {
            return Err(NotifyError(
                "no Slack webhook URL: neither the run's nor a server-wide one".to_owned(),
            ));
        };
        let url = self
            .egress
            .check_url(url)
            .map_err(|refused| NotifyError(format!("Slack was not called: {refused}")))?;
        let request = self
            .client
            .post(url)
            .header(IDEMPOTENCY_HEADER, &notification.idempotency_key)
            .json(&json!({ "text": summary(notification) }));
        answered(request.send().await, "Slack")
    }
}

/// A JSON document posted to the schedule's webhook (or the server-wide one), signed with the
/// server's webhook secret when one is set.
pub struct WebhookNotifier {
    client: reqwest::Client,
    egress: EgressPolicy,
    default_url: Option<String>,
    secret: Option<Credential>,
}

impl WebhookNotifier {
    fn target<'n>(&'n self, notification: &'n Notification) -> Option<&'n str> {
        notification
            .webhook_url
            .as_deref()
            .or(self.default_url.as_deref())
    }
}

/// The webhook body.
pub fn webhook_body(notification: &Notification) -> serde_json::Value {
    let args: serde_json::Map<String, serde_json::Value> = notification
        .args
        .iter()
        .map(|(name, value)| (name.clone(), json!(value)))
        .collect();
    json!({
        "event": notification.event(),
        "alert": notification.alert.as_ref().map(|alert| json!({
            "rule": alert.rule,
            "pattern": alert.pattern,
            "seq": alert.seq,
            "line": alert.line,
        })),
        "execution": {
            "id": notification.execution_id.to_string(),
            "proc": notification.proc_name,
            "args": args,
            "status": notification.status.name(),
            "exitCode": notification.exit_code,
            "reason": notification.reason,
            "durationSeconds": notification.duration.map(|d| d.as_secs_f64()),
            "scheduleId": notification.schedule_id.map(|id| id.to_string()),
        },
    })
}

/// `sha256=<hex>` of HMAC-SHA256 over `"<timestamp>.<body>"`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn channel(&self) -> &'static str {
        WEBHOOK
    }

    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let Some(url) = self.target(notification) else {
            return Err(NotifyError(
                "no webhook URL: neither the run's nor a server-wide one".to_owned(),
            ));
        };
        let url = self
            .egress
            .check_url(url)
            .map_err(|refused| NotifyError(format!("the webhook was not called: {refused}")))?;
        let body = serde_json::to_vec(&webhook_body(notification))
            .map_err(|e| NotifyError(format!("cannot encode the notification: {e}")))?;
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Proctor-Event", notification.event())
            .header(IDEMPOTENCY_HEADER, &notification.idempotency_key)
            .header(TIMESTAMP_HEADER, timestamp.to_string());
        if let Some(secret) = &self.secret {
            request = request.header(
                SIGNATURE_HEADER,
                signature(secret.expose(), timestamp, &body),
            );
        }
        answered(request.body(body).send().await, "the webhook")
    }
}

/// Success for a 2xx answer; otherwise a message naming the status or the transport error,
/// without the URL.
fn answered(
    response: Result<reqwest::Response, reqwest::Error>,
    who: &str,
) -> Result<(), NotifyError> {
    match response {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) if response.status().is_redirection() => Err(NotifyError(format!(
            "{who} answered {} (redirects are not followed)",
            response.status()
        ))),
        Ok(response) => Err(NotifyError(format!("{who} answered {}", response.status()))),
        Err(error) => {
            // The resolver's refusal is the most useful part; the rest is transport detail.
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
            while let Some(current) = cause {
                if let Some(refused) = current.downcast_ref::<crate::egress::Refused>() {
                    return Err(NotifyError(format!("{who} was not called: {refused}")));
                }
                cause = current.source();
            }
            Err(NotifyError(format!(
                "cannot reach {who}: {}",
                error.without_url()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use proctor_entity::values::ExecutionStatus;

    use super::*;

    fn finished() -> Notification {
        Notification {
            execution_id: 42,
            proc_name: "nightly-report".into(),
            args: vec![("REGION".into(), "eu".into())],
            status: ExecutionStatus::Failed,
            exit_code: Some(3),
            reason: Some("exited with code 3".into()),
            duration: Some(Duration::from_millis(2500)),
            idempotency_key: "proctor-42-email-0011aabbccdd".into(),
            schedule_id: Some(7),
            emails: vec!["ops@example.com".into()],
            slack_webhook_url: None,
            webhook_url: None,
            alert: None,
        }
    }

    #[test]
    fn the_email_carries_the_final_status_and_the_run() {
        let (subject, body) = email_text(&finished());
        assert_eq!(subject, "nightly-report | scheduled execution FAILED");
        for expected in [
            "Name:\tnightly-report\n",
            "Args:\tREGION=\"eu\"\n",
            "ID:\t42\n",
            "Status:\tFAILED\n",
            "Exit code:\t3\n",
            "Duration:\t2.5 s\n",
            "Reason:\texited with code 3\n",
            "This is an auto-generated email",
        ] {
            assert!(body.contains(expected), "missing {expected:?} in {body}");
        }
    }

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        // Reference value computed independently with Python's hmac module.
        assert_eq!(
            signature("s3cret", 1700000000, b"{}"),
            "sha256=97926816e98fbb41ccb1673225ff29a2f35369099990e1b1561651e7bd097ebf"
        );
        assert_ne!(
            signature("s3cret", 1700000001, b"{}"),
            signature("s3cret", 1700000000, b"{}")
        );
    }

    #[test]
    fn the_webhook_body_names_the_outcome() {
        let body = webhook_body(&finished());
        assert_eq!(body["event"], "execution.finished");
        assert_eq!(body["execution"]["id"], "42");
        assert_eq!(body["execution"]["status"], "FAILED");
        assert_eq!(body["execution"]["exitCode"], 3);
        assert_eq!(body["execution"]["args"]["REGION"], "eu");
        assert_eq!(body["execution"]["scheduleId"], "7");
    }
}
