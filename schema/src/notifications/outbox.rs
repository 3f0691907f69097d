//! The notification outbox: written with the final state, delivered by any replica.
//!
//! Invariants:
//! - rows about a run's end are written only by [`enqueue`], inside the transaction that stores
//!   the final state (so they exist exactly when the final state does), at most once per
//!   `(execution, channel, target)` (the idempotency key is unique); live log alerts write
//!   theirs while the run goes (`crate::alerts`), through the same [`insert_pending`];
//! - a row is delivered only by the replica that claimed it (a conditional update); a claim
//!   lapses after [`CLAIM`], so a replica dying mid-delivery only delays it (at least once);
//! - a failed attempt is retried after an exponential backoff (2 s doubling, at most 10 min,
//!   ±25 % jitter) until [`MAX_ATTEMPTS`]; a channel this server has no notifier for fails at
//!   once, without retries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use proctor_entity::json::NotificationPolicy;
use proctor_entity::values::ExecutionStatus;
use proctor_entity::{execution, notification, proc, schedule, schedule_run};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::sync::Semaphore;

use super::{NotificationDefaults, policy_covers};
use crate::error::ApiError;
use crate::ports::notifier::{EMAIL, Notification, SLACK, WEBHOOK};
use crate::state::AppState;

/// Attempts before a notification is given up.
pub const MAX_ATTEMPTS: i32 = 10;
/// How long a replica's claim on a row lasts: longer than an attempt may take
/// ([`ATTEMPT_TIMEOUT`]), and taken only when the attempt starts.
const CLAIM: Duration = Duration::from_secs(60);
/// Longest one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a replica looks for due rows when nothing woke it.
const POLL: Duration = Duration::from_secs(1);
/// Deliveries at once per replica.
const PARALLEL: usize = 8;
/// Rows claimed per look.
const BATCH: u64 = 50;

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not delivered yet; another attempt is due at `next_attempt_at`.
    Pending,
    /// The channel accepted it.
    Delivered,
    /// Given up (out of attempts, or no notifier for the channel).
    Failed,
}

impl DeliveryState {
    /// The stored name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Delivered => "DELIVERED",
            Self::Failed => "FAILED",
        }
    }

    fn parse(name: &str) -> Self {
        match name {
            "DELIVERED" => Self::Delivered,
            "FAILED" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// One notification of an execution, as shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// `email`, `slack` or `webhook`.
    pub channel: String,
    /// Who or where, without credentials: the addresses, the URL's host, or `server default`.
    pub target: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: i32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Sent along so receivers can drop duplicates.
    pub idempotency_key: String,
}

/// How one channel's notification went, as stored in `schedule_runs.notifications` (the
/// schedule view of the same deliveries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// `email`, `slack`, `webhook`.
    pub channel: String,
    /// Whether the channel accepted it.
    pub delivered: bool,
    /// Why not, when it was not.
    pub error: Option<String>,
    /// When it was last tried.
    pub at: DateTime<Utc>,
}

/// One row to write: a channel and its target (`None`: the server-wide default).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    channel: &'static str,
    target: Option<String>,
}

/// Who hears about `status`: the proc's policy (when it covers the state), the schedule's own
/// targets (every state), then the server-wide defaults on channels neither names.
fn targets(
    policy: Option<&NotificationPolicy>,
    schedule: Option<&schedule::Model>,
    defaults: &NotificationDefaults,
    status: ExecutionStatus,
) -> Vec<Target> {
    let mut emails: Vec<String> = Vec::new();
    let mut slack: Vec<String> = Vec::new();
    let mut webhook: Vec<String> = Vec::new();
    let (mut own_email, mut own_slack, mut own_webhook) = (false, false, false);
    let mut add = |list_emails: &[String],
                   slack_url: Option<&String>,
                   webhook_url: Option<&String>,
                   applies: bool| {
        own_email |= !list_emails.is_empty();
        own_slack |= slack_url.is_some();
        own_webhook |= webhook_url.is_some();
        if !applies {
            return;
        }
        for email in list_emails {
            if !emails.contains(email) {
                emails.push(email.clone());
            }
        }
        for (list, url) in [(&mut slack, slack_url), (&mut webhook, webhook_url)] {
            if let Some(url) = url
                && !list.contains(url)
            {
                list.push(url.clone());
            }
        }
    };
    if let Some(policy) = policy {
        add(
            &policy.emails,
            policy.slack_webhook_url.as_ref(),
            policy.webhook_url.as_ref(),
            policy_covers(policy, status),
        );
    }
    if let Some(schedule) = schedule {
        add(
            &schedule.notification_emails.0,
            schedule.slack_webhook_url.as_ref(),
            schedule.webhook_url.as_ref(),
            true,
        );
    }
    let mut rows = Vec::new();
    let server_wide = defaults.on.contains(&status);
    if !emails.is_empty() {
        rows.push(Target {
            channel: EMAIL,
            target: Some(serde_json::Value::from(emails).to_string()),
        });
    } else if !own_email && server_wide && !defaults.emails.is_empty() {
        rows.push(Target {
            channel: EMAIL,
            target: Some(serde_json::Value::from(defaults.emails.clone()).to_string()),
        });
    }
    for (channel, urls, own, default) in [
        (SLACK, slack, own_slack, defaults.slack),
        (WEBHOOK, webhook, own_webhook, defaults.webhook),
    ] {
        if urls.is_empty() && !own && server_wide && default {
            rows.push(Target {
                channel,
                target: None,
            });
        }
        rows.extend(urls.into_iter().map(|url| Target {
            channel,
            target: Some(url),
        }));
    }
    rows
}

/// Unique per execution, channel and target, and across installations (the execution's
/// creation time goes into it: two databases reuse ids, not ids with their creation time).
fn idempotency_key(execution: &execution::Model, target: &Target) -> String {
    let mut digest = sha2::Sha256::new();
    digest.update(target.target.as_deref().unwrap_or("server default"));
    digest.update(execution.created_at.timestamp_micros().to_le_bytes());
    format!(
        "proctor-{}-{}-{}",
        execution.id,
        target.channel,
        hex::encode(&digest.finalize()[..8])
    )
}

/// Writes the notifications about `row` (which just reached its final state), inside the
/// transaction storing that state; returns how many.
pub async fn enqueue<C: ConnectionTrait>(
    txn: &C,
    state: &AppState,
    row: &execution::Model,
) -> Result<usize, ApiError> {
    if !row.status.is_final() {
        return Ok(0);
    }
    let policy: Option<NotificationPolicy> = match row.proc_id {
        Some(id) => proc::Entity::find_by_id(id)
            .select_only()
            .column(proc::Column::Notifications)
            .into_tuple::<Option<NotificationPolicy>>()
            .one(txn)
            .await?
            .flatten(),
        None => None,
    };
    let schedule = match row.schedule_id {
        Some(id) => schedule::Entity::find_by_id(id).one(txn).await?,
        None => None,
    };
    let now = Utc::now();
    let targets = targets(
        policy.as_ref(),
        schedule.as_ref(),
        state.notification_defaults(),
        row.status,
    );
    let written = targets.len();
    for target in targets {
        let key = idempotency_key(row, &target);
        insert_pending(txn, row.id, target.channel, target.target, key, None, now).await?;
    }
    Ok(written)
}

/// Writes one notification to deliver, unless one with its idempotency key exists (the only
/// place outbox rows are made: the end of a run above, live log alerts in `crate::alerts`).
pub(crate) async fn insert_pending<C: ConnectionTrait>(
    db: &C,
    execution_id: i64,
    channel: &str,
    target: Option<String>,
    idempotency_key: String,
    alert: Option<proctor_entity::json::AlertMatch>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let pending = notification::ActiveModel {
        id: sea_orm::NotSet,
        execution_id: Set(execution_id),
        channel: Set(channel.to_owned()),
        target: Set(target),
        idempotency_key: Set(idempotency_key),
        state: Set(DeliveryState::Pending.name().to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_error: Set(None),
        delivered_at: Set(None),
        claimed_by: Set(None),
        claim_expires_at: Set(None),
        created_at: Set(now),
        alert: Set(alert),
    };
    notification::Entity::insert(pending)
        .on_conflict(
            OnConflict::column(notification::Column::IdempotencyKey)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Notifications waiting to be delivered (the outbox's depth, for `/metrics`).
pub async fn pending(state: &AppState) -> Result<u64, ApiError> {
    Ok(notification::Entity::find()
        .filter(notification::Column::State.eq(DeliveryState::Pending.name()))
        .count(state.db())
        .await?)
}

/// Delivers due notifications, forever: woken at once after a final state was stored here,
/// and every [`POLL`] for rows other replicas wrote or left behind. `only_replica`: no other
/// replica can exist (the in-memory bus), so every claim left in the database is a dead
/// process's and is released at once.
pub async fn deliver_forever(state: AppState, only_replica: bool) {
    release_claims_of_a_previous_process(&state, only_replica).await;
    let slots = Arc::new(Semaphore::new(PARALLEL));
    loop {
        match deliver_due(&state, &slots).await {
            Ok(claimed) if claimed > 0 => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot read the notification outbox; retrying"),
        }
        let _ = tokio::time::timeout(POLL, state.outbox_wakeup().notified()).await;
    }
}

/// An update of outbox rows that gives up their claims.
fn release_claims() -> sea_orm::UpdateMany<notification::Entity> {
    notification::Entity::update_many()
        .col_expr(
            notification::Column::ClaimedBy,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            notification::Column::ClaimExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
}

/// Rows claimed under this replica's id (or, as the only replica, under any id) were claimed
/// by a process before this one (replica ids are unique among running processes, as the
/// execution leases assume): nobody is delivering them, so they are due again now rather
/// than when the claim lapses.
async fn release_claims_of_a_previous_process(state: &AppState, only_replica: bool) {
    let mine = if only_replica {
        notification::Column::ClaimedBy.is_not_null()
    } else {
        notification::Column::ClaimedBy.eq(state.runner().replica())
    };
    let released = release_claims().filter(mine).exec(state.db()).await;
    match released {
        Ok(done) if done.rows_affected > 0 => tracing::info!(
            notifications = done.rows_affected,
            "resuming notifications a previous process of this replica was delivering"
        ),
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(%error, "cannot resume interrupted notifications; they are retried when their claim lapses");
        }
    }
}

/// Claims due rows and starts delivering them (bounded); returns how many it claimed.
async fn deliver_due(state: &AppState, slots: &Arc<Semaphore>) -> Result<usize, ApiError> {
    let claimable = |now: DateTime<Utc>| {
        Condition::all()
            .add(notification::Column::State.eq(DeliveryState::Pending.name()))
            .add(notification::Column::NextAttemptAt.lte(now))
            .add(
                Condition::any()
                    .add(notification::Column::ClaimExpiresAt.is_null())
                    .add(notification::Column::ClaimExpiresAt.lt(now)),
            )
    };
    let due = notification::Entity::find()
        .filter(claimable(Utc::now()))
        .order_by_asc(notification::Column::NextAttemptAt)
        .limit(BATCH)
        .all(state.db())
        .await?;
    let replica = state.runner().replica().to_owned();
    let mut claimed = 0;
    for row in due {
        // A delivery slot first, then the claim: a claim is only ever held while its
        // delivery runs, so it cannot lapse while the row waits its turn.
        let permit = Arc::clone(slots)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(CLAIM).unwrap_or(chrono::Duration::minutes(2));
        let claim = notification::Entity::update_many()
            .col_expr(
                notification::Column::ClaimedBy,
                Expr::value(replica.as_str()),
            )
            .col_expr(notification::Column::ClaimExpiresAt, Expr::value(until))
            .col_expr(
                notification::Column::Attempts,
                Expr::col(notification::Column::Attempts).add(1),
            )
            .filter(notification::Column::Id.eq(row.id))
            .filter(claimable(now))
            .exec_with_returning(state.db())
            .await?
            .pop();
        let Some(row) = claim else {
            continue; // Another replica got it.
        };
        claimed += 1;
        let state = state.clone();
        let replica = replica.clone();
        let span = tracing::info_span!(
            "notification",
            execution.id = row.execution_id,
            channel = %row.channel
        );
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                deliver_one(&state, row, &replica).await;
                drop(permit);
            },
            span,
        ));
    }
    Ok(claimed)
}

/// The wait before attempt `attempts + 1`.
fn backoff(attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    let base = Duration::from_secs(2).saturating_mul(1 << Ord::min(exponent, 10));
    let capped = base.min(Duration::from_secs(600));
    let mut random = [0u8; 2];
    let jitter = if getrandom::fill(&mut random).is_ok() {
        f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX) * 0.5 - 0.25
    } else {
        0.0
    };
    capped.mul_f64(1.0 + jitter)
}

async fn deliver_one(state: &AppState, row: notification::Model, replica: &str) {
    let outcome = attempt(state, &row).await;
    let now = Utc::now();
    let mut update = release_claims()
        .filter(notification::Column::Id.eq(row.id))
        // Only the claim this attempt made: a row whose claim lapsed and was taken again is
        // the newer attempt's to record.
        .filter(notification::Column::ClaimedBy.eq(replica))
        .filter(notification::Column::Attempts.eq(row.attempts))
        .filter(notification::Column::State.eq(DeliveryState::Pending.name()));
    let delivered = outcome.is_ok();
    update = match outcome {
        Ok(()) => update
            .col_expr(
                notification::Column::State,
                Expr::value(DeliveryState::Delivered.name()),
            )
            .col_expr(notification::Column::DeliveredAt, Expr::value(now))
            .col_expr(
                notification::Column::LastError,
                Expr::value(Option::<String>::None),
            ),
        Err(Failure { error, retry }) => {
            let give_up = !retry || row.attempts >= MAX_ATTEMPTS;
            let update =
                update.col_expr(notification::Column::LastError, Expr::value(error.clone()));
            tracing::warn!(
                execution.id = row.execution_id,
                channel = row.channel,
                attempt = row.attempts,
                %error,
                "notification failed{}",
                if give_up { "; giving up" } else { "; will retry" }
            );
            if give_up {
                update.col_expr(
                    notification::Column::State,
                    Expr::value(DeliveryState::Failed.name()),
                )
            } else {
                let wait = chrono::Duration::from_std(backoff(row.attempts))
                    .unwrap_or(chrono::Duration::minutes(10));
                update.col_expr(notification::Column::NextAttemptAt, Expr::value(now + wait))
            }
        }
    };
    state.metrics().notification(&row.channel, delivered);
    if delivered {
        tracing::info!(
            execution.id = row.execution_id,
            channel = row.channel,
            "notification delivered"
        );
    }
    if let Err(error) = update.exec(state.db()).await {
        tracing::warn!(execution.id = row.execution_id, %error, "cannot record how a notification went; it is tried again when its claim lapses");
        return;
    }
    record_on_schedule_run(state, row.execution_id).await;
}

/// Why an attempt failed, and whether another may succeed.
struct Failure {
    error: String,
    retry: bool,
}

async fn attempt(state: &AppState, row: &notification::Model) -> Result<(), Failure> {
    let Some(notifier) = state
        .notifiers()
        .iter()
        .find(|notifier| notifier.channel() == row.channel)
    else {
        return Err(Failure {
            error: format!("no {} notifier is configured on this server", row.channel),
            retry: false,
        });
    };
    let execution = match execution::Entity::find_by_id(row.execution_id)
        .one(state.db())
        .await
    {
        Ok(Some(execution)) => execution,
        Ok(None) => {
            return Err(Failure {
                error: "the execution no longer exists".to_owned(),
                retry: false,
            });
        }
        Err(error) => {
            return Err(Failure {
                error: format!("cannot read the execution: {error}"),
                retry: true,
            });
        }
    };
    let notification = notification_for(&execution, row);
    match tokio::time::timeout(ATTEMPT_TIMEOUT, notifier.notify(&notification)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(Failure {
            error: error.to_string(),
            retry: true,
        }),
        Err(_) => Err(Failure {
            error: format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
            retry: true,
        }),
    }
}

/// The notification port's view of one row: the run's end plus this row's target only (a
/// server-wide default target is left empty, so the notifier uses its configured one).
fn notification_for(execution: &execution::Model, row: &notification::Model) -> Notification {
    let emails: Vec<String> = match (row.channel.as_str(), &row.target) {
        (EMAIL, Some(list)) => serde_json::from_str(list).unwrap_or_default(),
        _ => Vec::new(),
    };
    let url = |channel: &str| {
        (row.channel == channel)
            .then(|| row.target.clone())
            .flatten()
    };
    Notification {
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
        emails,
        slack_webhook_url: url(SLACK),
        webhook_url: url(WEBHOOK),
        idempotency_key: row.idempotency_key.clone(),
        alert: row.alert.clone(),
    }
}

/// A delivery as shown: the target without credentials.
fn shown(row: notification::Model) -> Delivery {
    let target = match (row.channel.as_str(), &row.target) {
        (_, None) => "server default".to_owned(),
        (EMAIL, Some(list)) => serde_json::from_str::<Vec<String>>(list)
            .map(|emails| emails.join(", "))
            .unwrap_or_default(),
        // A Slack or webhook URL may hold a token in its path: only its host is shown.
        (_, Some(url)) => url::Url::parse(url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_else(|| "(invalid URL)".to_owned()),
    };
    let state = DeliveryState::parse(&row.state);
    Delivery {
        channel: row.channel,
        target,
        state,
        attempts: row.attempts,
        last_error: row.last_error,
        next_attempt_at: (state == DeliveryState::Pending).then_some(row.next_attempt_at),
        delivered_at: row.delivered_at,
        idempotency_key: row.idempotency_key,
    }
}

/// The notifications of execution `id`, in the order they were written.
pub async fn deliveries(state: &AppState, id: i64) -> Result<Vec<Delivery>, ApiError> {
    Ok(deliveries_of(state, &[id])
        .await?
        .remove(&id)
        .unwrap_or_default())
}

/// The notifications of these executions in one query, each execution's in order.
pub async fn deliveries_of(
    state: &AppState,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<Delivery>>, ApiError> {
    let mut by_execution: HashMap<i64, Vec<Delivery>> = HashMap::new();
    let rows = notification::Entity::find()
        .filter(notification::Column::ExecutionId.is_in(ids.iter().copied()))
        .order_by_asc(notification::Column::Id)
        .all(state.db())
        .await?;
    for row in rows {
        by_execution
            .entry(row.execution_id)
            .or_default()
            .push(shown(row));
    }
    Ok(by_execution)
}

/// Mirrors how the execution's notifications went onto its schedule run, once every one of
/// them was tried (the schedule's run history shows one settled record per channel).
async fn record_on_schedule_run(state: &AppState, execution_id: i64) {
    let rows = match notification::Entity::find()
        .filter(notification::Column::ExecutionId.eq(execution_id))
        .order_by_asc(notification::Column::Id)
        .all(state.db())
        .await
    {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(execution.id = execution_id, %error, "cannot read notifications to record them");
            return;
        }
    };
    let settled = |row: &notification::Model| {
        row.state != DeliveryState::Pending.name() || (row.attempts > 0 && row.claimed_by.is_none())
    };
    if !rows.iter().all(settled) {
        return;
    }
    let records: Vec<NotificationRecord> = rows
        .into_iter()
        .map(|row| NotificationRecord {
            delivered: row.state == DeliveryState::Delivered.name(),
            at: row.delivered_at.unwrap_or_else(Utc::now),
            channel: row.channel,
            error: row.last_error,
        })
        .collect();
    let stored = schedule_run::Entity::update_many()
        .col_expr(
            schedule_run::Column::Notifications,
            Expr::value(serde_json::to_value(&records).unwrap_or_default()),
        )
        .filter(schedule_run::Column::ExecutionId.eq(execution_id))
        .exec(state.db())
        .await;
    if let Err(error) = stored {
        tracing::warn!(execution.id = execution_id, %error, "cannot record how notifications went");
    }
}

#[cfg(test)]
mod tests {
    use proctor_entity::json::StringList;

    use super::*;

    fn schedule(emails: &[&str], slack: Option<&str>) -> schedule::Model {
        let now = Utc::now();
        schedule::Model {
            id: 1,
            proc_id: 1,
            cron: "@hourly".into(),
            timezone: "UTC".into(),
            args: Default::default(),
            tags: StringList::default(),
            group_name: None,
            notification_emails: StringList(emails.iter().map(|e| (*e).to_owned()).collect()),
            enabled: true,
            overlap_policy: proctor_entity::values::OverlapPolicy::Allow,
            catch_up_policy: proctor_entity::values::CatchUpPolicy::Skip,
            created_by: None,
            created_at: now,
            updated_at: now,
            next_fire_at: None,
            slack_webhook_url: slack.map(str::to_owned),
            webhook_url: None,
        }
    }

    fn run(id: i64, created_at: DateTime<Utc>) -> execution::Model {
        execution::Model {
            id,
            proc_id: None,
            proc_name: "p".into(),
            args: Default::default(),
            status: ExecutionStatus::Failed,
            trigger: proctor_entity::values::Trigger::Manual,
            schedule_id: None,
            user_email: None,
            image: None,
            executor_ref: None,
            exit_code: None,
            reason: None,
            created_at,
            started_at: None,
            finished_at: None,
            updated_at: created_at,
            owner: None,
            lease_expires_at: None,
            log_source: None,
            log_offset: 0,
            log_since: None,
            log_lines_lost: 0,
            mask_key_id: None,
            mask_sealed: None,
            attempts: 1,
            proc_version: None,
        }
    }

    fn defaults() -> NotificationDefaults {
        NotificationDefaults {
            emails: vec!["oncall@example.com".into()],
            slack: true,
            webhook: true,
            on: vec![ExecutionStatus::Failed],
        }
    }

    #[test]
    fn a_proc_policy_notifies_only_on_its_states_and_hides_the_defaults_of_its_channels() {
        let policy = NotificationPolicy {
            emails: vec!["dev@example.com".into()],
            slack_webhook_url: None,
            webhook_url: None,
            on: vec!["FAILED".into()],
        };
        let failed = targets(Some(&policy), None, &defaults(), ExecutionStatus::Failed);
        let channels: Vec<(&str, Option<&str>)> = failed
            .iter()
            .map(|t| (t.channel, t.target.as_deref()))
            .collect();
        assert_eq!(
            channels,
            [
                (EMAIL, Some("[\"dev@example.com\"]")),
                (SLACK, None),
                (WEBHOOK, None)
            ],
            "the proc's recipients replace the default ones; Slack and webhook use the defaults"
        );
        let succeeded = targets(Some(&policy), None, &defaults(), ExecutionStatus::Succeeded);
        assert!(succeeded.is_empty(), "{succeeded:?}");
    }

    #[test]
    fn a_schedule_hears_every_state_and_recipients_merge_once() {
        let policy = NotificationPolicy {
            emails: vec!["dev@example.com".into(), "ops@example.com".into()],
            on: vec!["SUCCEEDED".into()],
            ..NotificationPolicy::default()
        };
        let both = targets(
            Some(&policy),
            Some(&schedule(
                &["ops@example.com", "lead@example.com"],
                Some("https://hooks/x"),
            )),
            &NotificationDefaults::default(),
            ExecutionStatus::Succeeded,
        );
        assert_eq!(
            both,
            [
                Target {
                    channel: EMAIL,
                    target: Some(
                        "[\"dev@example.com\",\"ops@example.com\",\"lead@example.com\"]".into()
                    )
                },
                Target {
                    channel: SLACK,
                    target: Some("https://hooks/x".into())
                },
            ]
        );
        let failed = targets(
            Some(&policy),
            Some(&schedule(&["lead@example.com"], None)),
            &NotificationDefaults::default(),
            ExecutionStatus::Failed,
        );
        assert_eq!(failed.len(), 1, "only the schedule's own: {failed:?}");
    }

    #[test]
    fn keys_are_stable_per_target_and_shown_targets_hide_url_paths() {
        let target = Target {
            channel: SLACK,
            target: Some("https://hooks.slack.com/services/T0/B0/secret".into()),
        };
        let now = Utc::now();
        let seven = run(7, now);
        assert_eq!(
            idempotency_key(&seven, &target),
            idempotency_key(&seven, &target)
        );
        assert_ne!(
            idempotency_key(&seven, &target),
            idempotency_key(&run(8, now), &target)
        );
        assert_ne!(
            idempotency_key(&seven, &target),
            idempotency_key(&run(7, now + chrono::Duration::seconds(1)), &target),
            "another installation's execution 7"
        );
        let now = Utc::now();
        let row = notification::Model {
            id: 1,
            execution_id: 7,
            channel: SLACK.into(),
            target: target.target.clone(),
            idempotency_key: idempotency_key(&seven, &target),
            state: "PENDING".into(),
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            delivered_at: None,
            claimed_by: None,
            claim_expires_at: None,
            created_at: now,
            alert: None,
        };
        assert_eq!(shown(row).target, "hooks.slack.com");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for (attempts, base) in [(1, 2.0), (2, 4.0), (5, 32.0), (30, 600.0)] {
            let wait = backoff(attempts).as_secs_f64();
            assert!(
                wait >= base * 0.75 - 0.01 && wait <= base * 1.25 + 0.01,
                "attempt {attempts}: {wait}"
            );
        }
    }
}
