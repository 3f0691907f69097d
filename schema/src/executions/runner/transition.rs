//! Writing an execution's state: the only code that does, and the one place that reacts to a
//! stored move.
//!
//! Invariants:
//! - every move is a conditional `UPDATE … RETURNING` from the states
//!   [`ExecutionStatus::allowed_from`] allows (plus the owner fence), so two writers racing
//!   cannot both win and nothing moves backwards;
//! - a final state is stored in one transaction with what must survive it (the notification
//!   outbox rows), then published, then counted: [`in_final_txn`] and [`after_commit`] are
//!   the hook every reaction goes through.

use chrono::Utc;
use proctor_entity::json::ArgValues;
use proctor_entity::values::{ExecutionStatus, InvalidTransition};
use proctor_entity::{execution, proc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use super::submit::{NewExecution, new_row};
use crate::error::ApiError;
use crate::ports::event_bus::Event;
use crate::state::AppState;

/// Who may write an execution's state.
#[derive(Clone, Copy, Debug)]
pub(super) enum Fence<'a> {
    /// Only the replica holding the lease.
    Owner(&'a str),
    /// Anyone (a cancellation nobody else acted on).
    Any,
}

/// A forward move of an execution's state.
#[derive(Clone, Debug)]
pub(super) enum Change {
    Starting,
    Running { executor_ref: String },
    Final(Outcome),
}

impl Change {
    fn target(&self) -> ExecutionStatus {
        match self {
            Self::Starting => ExecutionStatus::Starting,
            Self::Running { .. } => ExecutionStatus::Running,
            Self::Final(outcome) => outcome.status,
        }
    }
}

/// Why a move was not stored.
#[derive(Debug, thiserror::Error)]
pub enum InvalidMove {
    /// The life cycle does not allow it from the state the execution is in.
    #[error(transparent)]
    NotAllowed(#[from] InvalidTransition),
    /// Another replica holds the execution.
    #[error("another replica holds this execution")]
    Fenced,
    /// No such execution.
    #[error("no such execution")]
    NotFound,
    /// The database refused.
    #[error(transparent)]
    Store(#[from] ApiError),
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub(super) status: ExecutionStatus,
    pub(super) exit_code: Option<i32>,
    pub(super) reason: Option<String>,
    /// Output lines lost that the execution row does not count yet.
    pub(super) lines_lost: i64,
}

impl Outcome {
    fn new(status: ExecutionStatus, exit_code: Option<i32>, reason: Option<String>) -> Self {
        Self {
            status,
            exit_code,
            reason,
            lines_lost: 0,
        }
    }
    pub(super) fn with_lines_lost(mut self, lost: i64) -> Self {
        self.lines_lost = lost;
        self
    }
    pub(super) fn succeeded() -> Self {
        Self::new(ExecutionStatus::Succeeded, Some(0), None)
    }
    pub(super) fn failed(exit_code: Option<i32>, reason: String) -> Self {
        Self::new(ExecutionStatus::Failed, exit_code, Some(reason))
    }
    /// The deadline ended it; `limit` and what held it up when known.
    pub(super) fn timed_out(limit: Option<std::time::Duration>, cause: Option<String>) -> Self {
        let reason = match limit {
            Some(limit) if limit.as_secs() > 0 && limit.subsec_millis() == 0 => {
                format!("exceeded its timeout of {} s", limit.as_secs())
            }
            Some(limit) => format!("exceeded its timeout of {} ms", limit.as_millis()),
            None => "exceeded its deadline".to_owned(),
        };
        let reason = match cause {
            Some(cause) => format!("{reason}: {cause}"),
            None => reason,
        };
        Self::new(ExecutionStatus::TimedOut, None, Some(reason))
    }
    /// A cancellation, with why.
    pub fn cancelled(reason: &str) -> Self {
        Self::new(ExecutionStatus::Cancelled, None, Some(reason.to_owned()))
    }
    pub(super) fn creation_failed(reason: String) -> Self {
        Self::new(ExecutionStatus::CreationFailed, None, Some(reason))
    }
    /// The executor lost track of the run.
    pub fn lost(reason: String) -> Self {
        Self::new(ExecutionStatus::Lost, None, Some(reason))
    }
    /// The state it ends in.
    pub fn status(&self) -> ExecutionStatus {
        self.status
    }
}

/// Applies `change` (and, for a final state, its reactions) and returns the new row.
pub(super) async fn apply(
    state: &AppState,
    id: i64,
    change: Change,
    fence: Fence<'_>,
) -> Result<execution::Model, InvalidMove> {
    let target = change.target();
    let now = Utc::now();
    let mut update = execution::Entity::update_many()
        .col_expr(execution::Column::UpdatedAt, Expr::value(now))
        .col_expr(execution::Column::Status, Expr::value(target))
        .filter(execution::Column::Id.eq(id))
        .filter(execution::Column::Status.is_in(ExecutionStatus::allowed_from(target)));
    if let Fence::Owner(owner) = fence {
        update = update.filter(execution::Column::Owner.eq(owner));
    }
    let final_state = matches!(change, Change::Final(_));
    update = match change {
        Change::Starting => update,
        Change::Running { executor_ref } => update
            .col_expr(execution::Column::ExecutorRef, Expr::value(executor_ref))
            .col_expr(execution::Column::StartedAt, Expr::value(now)),
        Change::Final(outcome) => update
            .col_expr(execution::Column::ExitCode, Expr::value(outcome.exit_code))
            .col_expr(execution::Column::Reason, Expr::value(outcome.reason))
            .col_expr(execution::Column::FinishedAt, Expr::value(now))
            .col_expr(
                execution::Column::LogLinesLost,
                Expr::col(execution::Column::LogLinesLost).add(Expr::val(outcome.lines_lost)),
            )
            // Nobody supervises a finished run: the values it was masked with go.
            .col_expr(
                execution::Column::MaskKeyId,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                execution::Column::MaskSealed,
                Expr::value(Option::<Vec<u8>>::None),
            )
            .col_expr(
                execution::Column::LeaseExpiresAt,
                Expr::value(Option::<chrono::DateTime<Utc>>::None),
            ),
    };
    // Through the group commit: the moves of many runs at the same moment share a commit.
    // A final state is stored with what must survive it (the notification outbox rows).
    let job_state = state.clone();
    let stored = state
        .writes()
        .run(move |txn| {
            let (update, state) = (update.clone(), job_state.clone());
            Box::pin(async move {
                let Some(row) = update.exec_with_returning(txn).await?.pop() else {
                    return Ok(None);
                };
                let notifications = if final_state {
                    in_final_txn(txn, &state, &row).await?
                } else {
                    0
                };
                Ok(Some((row, notifications)))
            })
        })
        .await?;
    let Some((row, notifications)) = stored else {
        return Err(refusal(state, id, target).await);
    };
    if notifications > 0 {
        state.outbox_wakeup().notify_one();
    }
    after_commit(state, &row).await;
    Ok(row)
}

/// Why a conditional move changed nothing.
async fn refusal(state: &AppState, id: i64, target: ExecutionStatus) -> InvalidMove {
    match execution::Entity::find_by_id(id).one(state.db()).await {
        Ok(None) => InvalidMove::NotFound,
        Ok(Some(row)) => match row.status.check_move(target) {
            Err(invalid) => InvalidMove::NotAllowed(invalid),
            Ok(()) => InvalidMove::Fenced,
        },
        Err(error) => InvalidMove::Store(error.into()),
    }
}

/// [`apply`] for the supervisor: a refused move is expected (cancelled meanwhile, taken over)
/// and yields `None`; a database failure is logged here, where it is handled.
pub(super) async fn transition(
    state: &AppState,
    id: i64,
    change: Change,
    fence: Fence<'_>,
) -> Option<execution::Model> {
    match apply(state, id, change, fence).await {
        Ok(row) => Some(row),
        Err(InvalidMove::Store(error)) => {
            tracing::error!(execution.id = id, %error, "cannot store a state change");
            None
        }
        Err(refused) => {
            tracing::debug!(execution.id = id, %refused, "state change not applied");
            None
        }
    }
}

/// Moves the execution to its final state, with every reaction. `None` when it had already
/// ended (or is not ours to end).
pub(super) async fn finish(
    state: &AppState,
    id: i64,
    outcome: Outcome,
    fence: Fence<'_>,
) -> Option<execution::Model> {
    transition(state, id, Change::Final(outcome), fence).await
}

/// Ends a `PENDING` execution that no supervisor is holding (see `cancel_execution`).
pub async fn cancel_unheld(state: &AppState, id: i64, reason: &str) -> Option<execution::Model> {
    let current = execution::Entity::find_by_id(id)
        .one(state.db())
        .await
        .ok()??;
    if current.status != ExecutionStatus::Pending {
        return None;
    }
    finish(state, id, Outcome::cancelled(reason), Fence::Any).await
}

/// Records that a run started attempt `attempt` (a retry); the state stays `RUNNING`.
pub(super) async fn record_attempt(
    state: &AppState,
    id: i64,
    attempt: u32,
    executor_ref: Option<String>,
    owner: &str,
) -> Option<execution::Model> {
    let mut update = execution::Entity::update_many()
        .col_expr(execution::Column::UpdatedAt, Expr::value(Utc::now()))
        .col_expr(
            execution::Column::Attempts,
            Expr::value(i32::try_from(attempt).unwrap_or(i32::MAX)),
        )
        .filter(execution::Column::Id.eq(id))
        .filter(execution::Column::Status.eq(ExecutionStatus::Running))
        .filter(execution::Column::Owner.eq(owner));
    if let Some(reference) = executor_ref {
        update = update.col_expr(execution::Column::ExecutorRef, Expr::value(reference));
    }
    match update.exec_with_returning(state.db()).await {
        Ok(mut rows) => {
            let row = rows.pop()?;
            publish(
                state,
                Event::ExecutionStatus {
                    execution: Box::new(row.clone()),
                },
            )
            .await;
            Some(row)
        }
        Err(error) => {
            tracing::error!(execution.id = id, %error, "cannot record a new attempt");
            None
        }
    }
}

/// Stores a run that could not even be created (its schedule's arguments no longer fit the
/// proc, a secret is missing, its owner lost the right) as `CREATION_FAILED` with why, inside
/// `txn`, with the reactions a final state has. Announce it with [`announce_final`] after the
/// commit.
pub async fn record_not_started<C: ConnectionTrait>(
    txn: &C,
    state: &AppState,
    proc: &proc::Model,
    args: ArgValues,
    new: NewExecution,
    reason: String,
) -> Result<execution::Model, ApiError> {
    let now = Utc::now();
    let mut row = new_row(proc, args, new, now);
    row.status = Set(ExecutionStatus::CreationFailed);
    row.reason = Set(Some(reason));
    row.finished_at = Set(Some(now));
    let row = row.insert(txn).await?;
    if in_final_txn(txn, state, &row).await? > 0 {
        // Delivered once the caller commits (and woken then, or by the next poll).
        state.outbox_wakeup().notify_one();
    }
    Ok(row)
}

/// Publishes a committed new execution (subscribers of all executions see it appear).
pub async fn announce(state: &AppState, execution: &execution::Model) {
    publish(
        state,
        Event::ExecutionStatus {
            execution: Box::new(execution.clone()),
        },
    )
    .await;
}

/// Publishes a committed execution stored final from the start ([`record_not_started`]) and
/// lets everything react to it.
pub async fn announce_final(state: &AppState, execution: &execution::Model) {
    after_commit(state, execution).await;
}

/// Publishes after a commit. A failure only delays subscribers (they re-read the database on
/// the gap or on their next safety check), so it is logged, not returned.
pub async fn publish(state: &AppState, event: Event) {
    if let Err(error) = state.event_bus().publish(&event).await {
        tracing::warn!(%error, "cannot publish an execution event; subscribers will catch up");
    }
}

/// Reactions stored with a final state, in its transaction (so they survive a crash right
/// after it).
/// Returns how many notifications were written.
async fn in_final_txn<C: ConnectionTrait>(
    txn: &C,
    state: &AppState,
    row: &execution::Model,
) -> Result<usize, ApiError> {
    crate::notifications::outbox::enqueue(txn, state, row).await
}

/// Reactions to a committed move: live delivery, then (for a final state) metrics. (The
/// notification delivery is woken where its rows were written.)
async fn after_commit(state: &AppState, row: &execution::Model) {
    announce(state, row).await;
    if row.status.is_final() {
        // Signed off the hot path; a receipt lost to a crash is made when first asked for.
        let (receipt_state, finished) = (state.clone(), row.clone());
        tokio::spawn(async move {
            let id = finished.id;
            if let Err(error) =
                crate::executions::receipts::issue_for(&receipt_state, &finished).await
            {
                tracing::warn!(execution.id = id, %error, "cannot sign the run's receipt yet; it is made when asked for");
            }
        });
        let ran_for = row
            .started_at
            .zip(row.finished_at)
            .and_then(|(started, ended)| (ended - started).to_std().ok());
        state
            .metrics()
            .execution_finished(&row.proc_name, row.status.name(), ran_for);
    }
}
