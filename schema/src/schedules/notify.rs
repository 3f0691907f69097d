//! Telling people how a scheduled run ended. Runs in the background after the final state is
//! stored, so a slow or failing mail server never holds up or fails the run; each channel's
//! result is logged and recorded on the schedule's run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use proctor_entity::{execution, schedule, schedule_run};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};

use crate::ports::notifier::Notification;
use crate::state::AppState;

/// Longest a channel may take before its notification counts as failed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// How one channel's notification went, as stored in `schedule_runs.notifications`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// `email`, `slack`, `webhook`.
    pub channel: String,
    /// Whether the channel accepted it.
    pub delivered: bool,
    /// Why not, when it was not.
    pub error: Option<String>,
    /// When it was tried.
    pub at: DateTime<Utc>,
}

/// Notifies about `execution` (which just reached its final state) in the background, if a
/// schedule started it.
pub fn after_finish(state: &AppState, execution: &execution::Model) {
    if execution.schedule_id.is_none() || !execution.status.is_final() {
        return;
    }
    let state = state.clone();
    let execution = execution.clone();
    tokio::spawn(async move { deliver(&state, &execution).await });
}

async fn deliver(state: &AppState, execution: &execution::Model) {
    let schedule = match execution.schedule_id {
        Some(id) => match schedule::Entity::find_by_id(id).one(state.db()).await {
            Ok(schedule) => schedule,
            Err(error) => {
                tracing::warn!(execution.id = execution.id, %error, "cannot read the schedule to notify; using server-wide channels only");
                None
            }
        },
        None => return,
    };
    let notification = Notification {
        execution_id: execution.id,
        proc_name: execution.proc_name.clone(),
        args: execution
            .args
            .0
            .iter()
            .map(|arg| (arg.name.clone(), arg.value.clone()))
            .collect(),
        status: execution.status,
        exit_code: execution.exit_code,
        reason: execution.reason.clone(),
        duration: execution
            .started_at
            .zip(execution.finished_at)
            .and_then(|(started, finished)| (finished - started).to_std().ok()),
        schedule_id: execution.schedule_id,
        emails: schedule
            .as_ref()
            .map(|schedule| schedule.notification_emails.0.clone())
            .unwrap_or_default(),
        slack_webhook_url: schedule
            .as_ref()
            .and_then(|schedule| schedule.slack_webhook_url.clone()),
        webhook_url: schedule
            .as_ref()
            .and_then(|schedule| schedule.webhook_url.clone()),
    };

    let notifiers = state.notifiers();
    let mut records: Vec<NotificationRecord> = notification
        .requested_channels()
        .into_iter()
        .filter(|channel| {
            !notifiers
                .iter()
                .any(|notifier| notifier.channel() == *channel)
        })
        .map(|channel| NotificationRecord {
            channel: channel.to_owned(),
            delivered: false,
            error: Some(format!(
                "no {channel} notifier is configured on this server"
            )),
            at: Utc::now(),
        })
        .collect();
    let attempts = notifiers
        .iter()
        .filter(|notifier| notifier.applies(&notification))
        .map(|notifier| {
            let notification = &notification;
            async move {
                let at = Utc::now();
                let error =
                    match tokio::time::timeout(NOTIFY_TIMEOUT, notifier.notify(notification)).await
                    {
                        Ok(Ok(())) => None,
                        Ok(Err(error)) => Some(error.to_string()),
                        Err(_) => Some(format!("no answer within {} s", NOTIFY_TIMEOUT.as_secs())),
                    };
                NotificationRecord {
                    channel: notifier.channel().to_owned(),
                    delivered: error.is_none(),
                    error,
                    at,
                }
            }
        });
    records.extend(join_all(attempts).await);
    if records.is_empty() {
        return;
    }
    for record in &records {
        state
            .metrics()
            .notification(&record.channel, record.delivered);
        match &record.error {
            None => tracing::info!(
                execution.id = execution.id,
                channel = record.channel,
                "notification delivered"
            ),
            Some(error) => tracing::warn!(
                execution.id = execution.id,
                channel = record.channel,
                %error,
                "notification failed"
            ),
        }
    }
    let stored = schedule_run::Entity::update_many()
        .col_expr(
            schedule_run::Column::Notifications,
            Expr::value(serde_json::to_value(&records).unwrap_or_default()),
        )
        .filter(schedule_run::Column::ExecutionId.eq(execution.id))
        .exec(state.db())
        .await;
    if let Err(error) = stored {
        tracing::warn!(execution.id = execution.id, %error, "cannot record how notifications went");
    }
}
