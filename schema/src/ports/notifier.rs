//! The notifier port: telling people how a run ended (e-mail, Slack, signed webhooks).

use async_trait::async_trait;
use proctor_entity::values::ExecutionStatus;

/// The outcome of one execution, addressed to its recipients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The execution.
    pub execution_id: i64,
    /// Its proc.
    pub proc_name: String,
    /// The final state (never an intermediate one: the Go original mailed "CREATED").
    pub status: ExecutionStatus,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    /// The schedule that fired it, if any.
    pub schedule_id: Option<i64>,
    /// Who should hear about it (e-mail addresses for the mailer).
    pub recipients: Vec<String>,
}

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
#[error("notification via {channel} failed: {message}")]
pub struct NotifyError {
    /// Which notifier failed.
    pub channel: &'static str,
    /// What went wrong.
    pub message: String,
}

/// Delivers notifications. Several can be configured at once; each failure is reported alone.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Short name for logs and errors, e.g. `smtp`.
    fn channel(&self) -> &'static str;

    /// Sends one notification.
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError>;
}
