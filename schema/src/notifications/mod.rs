//! Notifications: telling people how a run ended, for every run (manual, API, scheduled).
//!
//! One model for every level: a proc's [`NotificationPolicy`] (recipients, Slack, signed
//! webhook, and the final states that notify), a schedule's own targets (every final state, as
//! before), and the server-wide defaults ([`NotificationDefaults`]), which apply on a channel
//! only when neither the proc nor the schedule names a target on it.
//!
//! Durability: [`outbox::enqueue`] writes one row per channel and target in the transaction
//! that stores the final state, so a crash right after it loses nothing; every replica's
//! [`outbox::deliver_forever`] claims due rows, delivers them with retries and backoff and
//! records how it went. Delivery is at least once: each notification carries an idempotency
//! key (`Idempotency-Key` header, e-mail `Message-ID`) so receivers can drop duplicates.

pub mod outbox;

use proctor_entity::json::NotificationPolicy;
use proctor_entity::values::ExecutionStatus;
use sea_orm::Iterable;

use crate::auth::tokens::normalize_email;
use crate::error::ApiError;

pub use outbox::{Delivery, DeliveryState, deliver_forever, deliveries, deliveries_of};

/// Most notification addresses one list holds.
pub const MAX_EMAILS: usize = 50;
/// Longest notification URL.
const MAX_URL: usize = 1024;

/// The server-wide notification targets (their URLs stay with the configured notifiers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationDefaults {
    /// Mailed about every run whose proc and schedule name no recipient.
    pub emails: Vec<String>,
    /// A server-wide Slack webhook is configured.
    pub slack: bool,
    /// A server-wide webhook is configured.
    pub webhook: bool,
    /// The final states the server-wide targets hear about.
    pub on: Vec<ExecutionStatus>,
}

impl Default for NotificationDefaults {
    /// No server-wide target; every final state.
    fn default() -> Self {
        Self {
            emails: Vec::new(),
            slack: false,
            webhook: false,
            on: final_states(),
        }
    }
}

/// Every final state, in life-cycle order.
pub fn final_states() -> Vec<ExecutionStatus> {
    ExecutionStatus::iter()
        .filter(|status| status.is_final())
        .collect()
}

/// Parses final-state names (`FAILED`, …); the error names the entry and lists the choices.
pub fn parse_states(field: &str, names: &[String]) -> Result<Vec<ExecutionStatus>, ApiError> {
    let mut states = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let wanted = name.trim().to_uppercase();
        let Some(status) = final_states()
            .into_iter()
            .find(|status| status.name() == wanted)
        else {
            let choices: Vec<&str> = final_states().iter().map(|s| s.name()).collect();
            return Err(ApiError::bad_input(
                format!("{field}[{index}]"),
                format!(
                    "{:?} is not a final state; one of {}",
                    crate::error::cap_echo(name.clone(), 64),
                    choices.join(", ")
                ),
            ));
        };
        if !states.contains(&status) {
            states.push(status);
        }
    }
    Ok(states)
}

/// Checks and normalises a proc's policy; errors name the field under `field`.
pub fn check_policy(
    field: &str,
    policy: &NotificationPolicy,
) -> Result<NotificationPolicy, ApiError> {
    let on = parse_states(&format!("{field}.on"), &policy.on)?;
    Ok(NotificationPolicy {
        emails: check_emails(&format!("{field}.emails"), &policy.emails)?,
        slack_webhook_url: match &policy.slack_webhook_url {
            Some(url) => check_url(&format!("{field}.slackWebhookUrl"), url)?,
            None => None,
        },
        webhook_url: match &policy.webhook_url {
            Some(url) => check_url(&format!("{field}.webhookUrl"), url)?,
            None => None,
        },
        on: on.iter().map(|status| status.name().to_owned()).collect(),
    })
}

/// Whether `policy` asks to hear about `status` (no list: every final state).
pub fn policy_covers(policy: &NotificationPolicy, status: ExecutionStatus) -> bool {
    policy.on.is_empty() || policy.on.iter().any(|name| name == status.name())
}

/// Normalised, de-duplicated addresses (at most [`MAX_EMAILS`]); errors name `field[index]`.
pub fn check_emails(field: &str, emails: &[String]) -> Result<Vec<String>, ApiError> {
    let mut checked: Vec<String> = Vec::new();
    for (index, email) in emails.iter().enumerate() {
        let email = normalize_email(&format!("{field}[{index}]"), email)?;
        if !checked.contains(&email) {
            checked.push(email);
        }
    }
    if checked.len() > MAX_EMAILS {
        return Err(ApiError::bad_input(
            field,
            format!("at most {MAX_EMAILS} addresses"),
        ));
    }
    Ok(checked)
}

/// An `http(s)` URL with a host, or nothing for an empty string. The message never repeats the
/// URL: a Slack webhook URL is a credential.
pub fn check_url(field: &str, url: &str) -> Result<Option<String>, ApiError> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(None);
    }
    if url.len() > MAX_URL {
        return Err(ApiError::bad_input(
            field,
            format!("at most {MAX_URL} characters"),
        ));
    }
    let parsed = url::Url::parse(url)
        .map_err(|error| ApiError::bad_input(field, format!("is not a URL ({error})")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ApiError::bad_input(
            field,
            "must be an http:// or https:// URL with a host",
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ApiError::bad_input(
            field,
            "must not carry a user name or password (put a token in the path or use the \
             signed webhook)",
        ));
    }
    Ok(Some(url.to_owned()))
}
