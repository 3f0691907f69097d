//! The notifier port: telling people how a run ended (e-mail, Slack, signed webhooks). A
//! failed notification is recorded, retried and logged (see `notifications::outbox`); it never
//! fails the run.

use std::time::Duration;

use async_trait::async_trait;
use proctor_entity::values::ExecutionStatus;

/// The end of one execution and who should hear about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The execution.
    pub execution_id: i64,
    /// Its proc.
    pub proc_name: String,
    /// The argument values it ran with (never secrets).
    pub args: Vec<(String, String)>,
    /// The final state (never an intermediate one: the Go original mailed "CREATED").
    pub status: ExecutionStatus,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    /// How long it ran.
    pub duration: Option<Duration>,
    /// The schedule that fired it.
    pub schedule_id: Option<i64>,
    /// E-mail recipients.
    pub emails: Vec<String>,
    /// The schedule's own Slack incoming webhook.
    pub slack_webhook_url: Option<String>,
    /// The schedule's own webhook URL.
    pub webhook_url: Option<String>,
    /// The same for every attempt of this notification: receivers drop duplicates by it
    /// (`Idempotency-Key` header, the e-mail's `Message-ID`).
    pub idempotency_key: String,
    /// Set when this is a live log alert (the run is still going; `status` is its state when
    /// the alert was sent) rather than the news of its end.
    pub alert: Option<proctor_entity::json::AlertMatch>,
}

impl Notification {
    /// The event name receivers see: `execution.alert` or `execution.finished`.
    pub fn event(&self) -> &'static str {
        if self.alert.is_some() {
            "execution.alert"
        } else {
            "execution.finished"
        }
    }
}

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotifyError(pub String);

/// Channel name of the e-mail notifier.
pub const EMAIL: &str = "email";
/// Channel name of the Slack notifier.
pub const SLACK: &str = "slack";
/// Channel name of the signed-webhook notifier.
pub const WEBHOOK: &str = "webhook";

/// Delivers notifications. Several can be configured at once; each failure is reported alone.
/// Error messages must not contain credentials (webhook URLs, passwords): they are stored and
/// shown to users.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// [`EMAIL`], [`SLACK`], [`WEBHOOK`] (or another short name for logs and records).
    fn channel(&self) -> &'static str;

    /// Sends one notification.
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError>;
}

/// One plain-text summary for every channel: what ran, how it ended, with which arguments.
pub fn summary(notification: &Notification) -> String {
    let status = notification.status.name();
    if let Some(alert) = &notification.alert {
        return format!(
            "Proctor alert: {} (execution {}, {status}) printed a line matching {:?}\nline {}: {}",
            notification.proc_name, notification.execution_id, alert.pattern, alert.seq, alert.line
        );
    }
    let mut text = format!(
        "Proctor: {} finished {status} (execution {})",
        notification.proc_name, notification.execution_id
    );
    if let Some(code) = notification.exit_code {
        text.push_str(&format!("\nexit code: {code}"));
    }
    if let Some(reason) = &notification.reason {
        text.push_str(&format!("\nreason: {reason}"));
    }
    if let Some(duration) = notification.duration {
        text.push_str(&format!("\nduration: {:.1} s", duration.as_secs_f64()));
    }
    if let Some(schedule) = notification.schedule_id {
        text.push_str(&format!("\nschedule: {schedule}"));
    }
    if !notification.args.is_empty() {
        let args: Vec<String> = notification
            .args
            .iter()
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect();
        text.push_str(&format!("\narguments: {}", args.join(", ")));
    }
    text
}
