//! Supervising runs: waiting for a slot, starting or re-attaching the executor, turning its
//! events into persisted transitions and log lines, and publishing both.
//!
//! Ordering rules every subscriber relies on (see `stream`):
//! - log lines are stored before they are published, so a subscriber that sees a gap can
//!   always fill it from the database;
//! - the final status is stored after the last line, so once the database shows a final state
//!   it holds every line;
//! - transitions only move forward (a conditional update from the allowed states), so a late
//!   event can never overwrite a final state.
//!
//! Replicas: exactly one replica supervises an execution, the one holding its lease
//! (`owner`, `lease_expires_at`). The owner renews its leases every third of their length;
//! every replica takes over unfinished executions whose lease ran out. Every write a
//! supervisor makes is fenced by `owner = <this replica>`, so a replica that lost its lease
//! (a long pause) cannot write once another has taken over, and stops. Each batch of lines is
//! stored with the executor's log cursor in one transaction, so the new supervisor continues
//! exactly after the last stored line.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use proctor_entity::values::{ExecutionStatus, LogStream};
use proctor_entity::{execution, execution_log};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set,
};
use tokio::sync::{Semaphore, watch};
use tokio::task::AbortHandle;

use super::shaping::{Masker, split_long};
use crate::error::ApiError;
use crate::ports::event_bus::{Delivery, Event, LogRecord, Topic};
use crate::ports::executor::{Executor, LogCursor, RunEvent, RunEvents, RunSpec};
use crate::state::AppState;
use crate::system::ExecutorKind;

/// Lines stored per INSERT (and published per event).
const BATCH_LINES: usize = 500;
/// How long a failed log write is retried at the end of a run before lines are given up.
const FINAL_FLUSH_PATIENCE: Duration = Duration::from_secs(30);
/// Longest Kubernetes-style object name (a DNS label).
const MAX_NAME: usize = 63;

/// How runs are supervised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSettings {
    /// Runs at once on this replica; the rest wait as `PENDING`.
    pub max_parallel: usize,
    /// Lines stored per execution; output beyond ends with a marker line.
    pub log_max_lines: u64,
    /// Longest time a line waits before it is stored and published.
    pub flush_interval: Duration,
    /// How long a replica's claim on an execution lasts without renewal.
    pub lease: Duration,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            max_parallel: 16,
            log_max_lines: 200_000,
            flush_interval: Duration::from_millis(50),
            lease: Duration::from_secs(15),
        }
    }
}

/// The name a run is known by outside Proctor: `EXECUTION_NAME` and the Kubernetes Job and
/// Secret names. A DNS label (at most 63 characters) holding the execution id and as much of
/// the proc name as fits.
pub fn run_name(proc_name: &str, execution_id: i64) -> String {
    let mut name = format!("proctor-{execution_id}-{proc_name}");
    name.truncate(MAX_NAME);
    name.trim_end_matches('-').to_owned()
}

/// A run this replica supervises.
struct ActiveRun {
    cancel: watch::Sender<bool>,
    task: AbortHandle,
}

/// Runs executions through an executor, a bounded number at a time, and keeps this replica's
/// leases.
pub struct Runner {
    executor: Arc<dyn Executor>,
    slots: Arc<Semaphore>,
    settings: RunSettings,
    replica: String,
    /// When this process's runner started; older executions with our id are orphans.
    started_at: chrono::DateTime<Utc>,
    active: Mutex<HashMap<i64, ActiveRun>>,
}

/// Who may write an execution's state.
#[derive(Clone, Copy, Debug)]
enum Fence<'a> {
    /// Only the replica holding the lease.
    Owner(&'a str),
    /// Anyone (a cancellation nobody else acted on).
    Any,
}

impl Runner {
    /// A runner for replica `replica` using `executor`.
    pub fn new(executor: Arc<dyn Executor>, settings: RunSettings, replica: String) -> Arc<Self> {
        Arc::new(Self {
            executor,
            slots: Arc::new(Semaphore::new(settings.max_parallel)),
            settings,
            replica,
            started_at: Utc::now(),
            active: Mutex::new(HashMap::new()),
        })
    }

    /// Which executor runs procs.
    pub fn executor_kind(&self) -> ExecutorKind {
        self.executor.kind()
    }

    /// Whether the executor's backend answers.
    pub async fn check_executor(&self) -> Result<(), crate::ports::executor::ExecutorError> {
        self.executor.check().await
    }

    /// This replica's id, as stored in `executions.owner`.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The supervision settings.
    pub fn settings(&self) -> RunSettings {
        self.settings
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<i64, ActiveRun>> {
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Supervises `execution` (already stored as `PENDING` and owned by this replica) in the
    /// background.
    pub fn launch(
        self: &Arc<Self>,
        state: AppState,
        execution: execution::Model,
        spec: RunSpec,
        masker: Masker,
    ) {
        self.supervise_in_background(state, execution, Some(spec), masker);
    }

    fn supervise_in_background(
        self: &Arc<Self>,
        state: AppState,
        execution: execution::Model,
        spec: Option<RunSpec>,
        masker: Masker,
    ) {
        let (cancel, cancelled) = watch::channel(false);
        let runner = Arc::clone(self);
        let id = execution.id;
        // Register before the task can finish, under the lock the task removes it with.
        let mut active = self.active();
        let task = tokio::spawn(async move {
            match spec {
                Some(spec) => runner.run(&state, execution, spec, masker, cancelled).await,
                None => runner.reattach(&state, execution, masker, cancelled).await,
            }
            runner.active().remove(&id);
        });
        active.insert(
            id,
            ActiveRun {
                cancel,
                task: task.abort_handle(),
            },
        );
    }

    /// Signals cancellation to a run supervised by this replica; `false` if it is not here.
    pub fn cancel_here(&self, execution_id: i64) -> bool {
        match self.active().get(&execution_id) {
            Some(run) => {
                run.cancel.send_replace(true);
                true
            }
            None => false,
        }
    }

    /// Acts on cancellation requests published by other replicas, until the bus closes.
    pub async fn serve_cancel_requests(self: Arc<Self>, state: AppState) {
        let mut requests = state.event_bus().subscribe(Topic::Control);
        while let Some(delivery) = requests.next().await {
            if let Delivery::Event(Event::CancelRequested { execution_id }) = delivery {
                self.cancel_here(execution_id);
            }
        }
    }

    /// Keeps this replica's leases and takes over executions nobody holds, forever.
    ///
    /// `take_everything_now`: at start-up with the in-memory bus there can be no other
    /// replica, so every unfinished execution is taken over at once instead of after its
    /// lease runs out.
    pub async fn maintain_leases(self: Arc<Self>, state: AppState, take_everything_now: bool) {
        let mut everything = take_everything_now;
        let mut tick = tokio::time::interval(self.settings.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = self.renew_and_take_over(&state, everything).await {
                tracing::warn!(%error, "cannot maintain execution leases; retrying");
                continue;
            }
            everything = false;
        }
    }

    async fn renew_and_take_over(
        self: &Arc<Self>,
        state: &AppState,
        everything: bool,
    ) -> Result<(), ApiError> {
        let now = Utc::now();
        let until = now + self.lease_length();
        execution::Entity::update_many()
            .col_expr(execution::Column::LeaseExpiresAt, Expr::value(until))
            .filter(execution::Column::Owner.eq(self.replica.as_str()))
            .filter(execution::Column::Status.is_in(UNFINISHED))
            .exec(state.db())
            .await?;

        // Runs this replica supervises but no longer owns were taken over elsewhere: stop
        // supervising them (without touching the run itself).
        let supervised: Vec<i64> = self.active().keys().copied().collect();
        if !supervised.is_empty() {
            let lost: Vec<i64> = execution::Entity::find()
                .select_only()
                .column(execution::Column::Id)
                .filter(execution::Column::Id.is_in(supervised))
                .filter(
                    Condition::any()
                        .add(execution::Column::Owner.ne(self.replica.as_str()))
                        .add(execution::Column::Owner.is_null()),
                )
                .into_tuple()
                .all(state.db())
                .await?;
            for id in lost {
                if let Some(run) = self.active().remove(&id) {
                    tracing::warn!(
                        execution.id = id,
                        "another replica took this execution over; letting go"
                    );
                    run.task.abort();
                }
            }
        }

        let mut claimable = execution::Entity::find()
            .filter(execution::Column::Status.is_in(UNFINISHED))
            .limit(100);
        // Nobody's, expired, or left by a previous process with this replica's (fixed) id:
        // created before this process started, so nobody can be supervising it. Executions
        // this process created are excluded: they are being launched right now.
        let orphaned = || {
            Condition::any()
                .add(execution::Column::Owner.is_null())
                .add(execution::Column::LeaseExpiresAt.lt(now))
                .add(
                    Condition::all()
                        .add(execution::Column::Owner.eq(self.replica.as_str()))
                        .add(execution::Column::CreatedAt.lt(self.started_at)),
                )
        };
        // At start-up with no other replica possible, every older unfinished run is ours.
        let condition = || {
            if everything {
                Condition::all().add(execution::Column::CreatedAt.lt(self.started_at))
            } else {
                orphaned()
            }
        };
        claimable = claimable.filter(condition());
        for candidate in claimable.all(state.db()).await? {
            if self.active().contains_key(&candidate.id) {
                continue;
            }
            let mut claim = execution::Entity::update_many()
                .col_expr(execution::Column::Owner, Expr::value(self.replica.as_str()))
                .col_expr(execution::Column::LeaseExpiresAt, Expr::value(until))
                .filter(execution::Column::Id.eq(candidate.id))
                .filter(execution::Column::Status.is_in(UNFINISHED));
            // Only if nobody claimed or renewed it since it was read.
            claim = claim.filter(condition());
            if claim.exec(state.db()).await?.rows_affected == 1 {
                tracing::info!(
                    execution.id = candidate.id,
                    previous_owner = candidate.owner.as_deref().unwrap_or("none"),
                    "taking over an execution"
                );
                self.resume(state, candidate).await;
            }
        }
        Ok(())
    }

    /// Supervises an execution this replica just claimed: a `PENDING` one is queued again, a
    /// started one re-attached through the executor.
    async fn resume(self: &Arc<Self>, state: &AppState, execution: execution::Model) {
        let id = execution.id;
        let prepared = super::service::prepare_run(state, &execution).await;
        match (execution.status, prepared) {
            (ExecutionStatus::Pending, Ok((spec, masker))) => {
                self.supervise_in_background(state.clone(), execution, Some(spec), masker);
            }
            (ExecutionStatus::Pending, Err(error)) => {
                let outcome = Outcome::creation_failed(format!("cannot be started again: {error}"));
                finish(state, id, outcome, Fence::Owner(&self.replica)).await;
            }
            (_, Ok((_, masker))) => {
                self.supervise_in_background(state.clone(), execution, None, masker);
            }
            // Without the secret values its output cannot be masked: following it would
            // publish them, so it is given up (its executor may still finish it unseen).
            (_, Err(error)) => {
                let outcome = Outcome::lost(format!(
                    "cannot be resumed: its secrets cannot be read to mask its output ({error})"
                ));
                finish(state, id, outcome, Fence::Owner(&self.replica)).await;
            }
        }
    }

    fn lease_length(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::seconds(15))
    }

    /// A new run: wait for a slot, start it, follow it.
    async fn run(
        &self,
        state: &AppState,
        execution: execution::Model,
        spec: RunSpec,
        masker: Masker,
        mut cancelled: watch::Receiver<bool>,
    ) {
        let id = execution.id;
        let fence = Fence::Owner(&self.replica);
        let slot = tokio::select! {
            slot = Arc::clone(&self.slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = cancel_requested(&mut cancelled) => {
                finish(state, id, Outcome::cancelled("cancelled before it started"), fence).await;
                return;
            }
        };
        if transition(
            state,
            id,
            &[ExecutionStatus::Pending],
            Change::Starting,
            fence,
        )
        .await
        .is_none()
        {
            return; // Cancelled while waiting for the slot, or taken over.
        }
        match self.executor.start(spec).await {
            Ok(events) => {
                let logs = LogPipeline::new(
                    state.clone(),
                    id,
                    masker,
                    self.settings,
                    0,
                    self.replica.clone(),
                );
                self.follow(state, id, events, logs, cancelled, None).await;
            }
            Err(error) => {
                finish(
                    state,
                    id,
                    Outcome::creation_failed(error.to_string()),
                    fence,
                )
                .await;
            }
        }
        drop(slot);
    }

    /// A started run whose supervisor went away: re-attach and continue after the stored
    /// output.
    async fn reattach(
        &self,
        state: &AppState,
        execution: execution::Model,
        masker: Masker,
        cancelled: watch::Receiver<bool>,
    ) {
        let id = execution.id;
        let fence = Fence::Owner(&self.replica);
        let was = super::graphql::status_name(execution.status);
        let cursor = execution.log_source.clone().map(|source| LogCursor {
            source,
            offset: u64::try_from(execution.log_offset).unwrap_or(0),
        });
        let reference = execution.executor_ref.clone().unwrap_or_default();
        match self.executor.reattach(id, &reference, cursor.clone()).await {
            Ok(events) => {
                let stored = match max_seq(state, id).await {
                    Ok(stored) => stored,
                    Err(error) => {
                        tracing::error!(execution.id = id, %error, "cannot read the stored output; will retry");
                        return;
                    }
                };
                let mut logs = LogPipeline::new(
                    state.clone(),
                    id,
                    masker,
                    self.settings,
                    stored,
                    self.replica.clone(),
                );
                logs.cursor = cursor;
                let running_since =
                    (execution.status == ExecutionStatus::Running).then(Instant::now);
                if running_since.is_some() {
                    state.metrics().run_started();
                }
                self.follow(state, id, events, logs, cancelled, running_since)
                    .await;
            }
            Err(error) => {
                let reason = format!(
                    "its supervisor stopped while it was {was}, and it cannot be resumed: {error}"
                );
                finish(state, id, Outcome::lost(reason), fence).await;
            }
        }
    }

    /// Turns the executor's events into transitions and output until the run ends.
    async fn follow(
        &self,
        state: &AppState,
        id: i64,
        mut events: RunEvents,
        mut logs: LogPipeline,
        mut cancelled: watch::Receiver<bool>,
        mut running_since: Option<Instant>,
    ) {
        let fence = Fence::Owner(&self.replica);
        let mut executor_ref = String::new();
        let mut cancel_sent = false;
        let mut tick = tokio::time::interval(self.settings.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let outcome = loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(RunEvent::Started { executor_ref: reference }) => {
                        executor_ref = reference.clone();
                        let running = transition(
                            state,
                            id,
                            &[ExecutionStatus::Pending, ExecutionStatus::Starting],
                            Change::Running { executor_ref: reference },
                            fence,
                        )
                        .await;
                        if running.is_some() && running_since.is_none() {
                            running_since = Some(Instant::now());
                            state.metrics().run_started();
                        }
                    }
                    Some(RunEvent::Log { stream, line, cursor, continues, replaced }) => {
                        let piece = Piece { continues, replaced };
                        if logs.push(stream, line, cursor, piece) && logs.flush().await == Flushed::Fenced {
                            return; // Another replica owns it now.
                        }
                    }
                    Some(RunEvent::Exited { code: 0 }) => break Outcome::succeeded(),
                    Some(RunEvent::Exited { code }) => {
                        break Outcome::failed(Some(code), format!("exited with code {code}"))
                    }
                    Some(RunEvent::Failed { reason }) => break Outcome::failed(None, reason),
                    Some(RunEvent::TimedOut { limit }) => break Outcome::timed_out(match limit {
                        Some(limit) => format!("exceeded its timeout of {} s", limit.as_secs()),
                        None => "exceeded its deadline".to_owned(),
                    }),
                    Some(RunEvent::Cancelled) => break Outcome::cancelled("cancelled"),
                    Some(RunEvent::Lost { reason }) => break Outcome::lost(reason),
                    None => break Outcome::lost("the executor stopped reporting on this run".to_owned()),
                },
                _ = tick.tick() => {
                    if logs.flush().await == Flushed::Fenced {
                        return;
                    }
                }
                () = cancel_requested(&mut cancelled), if !cancel_sent => {
                    cancel_sent = true;
                    if executor_ref.is_empty() {
                        executor_ref = current_ref(state, id).await;
                    }
                    if let Err(error) = self.executor.cancel(id, &executor_ref).await {
                        tracing::warn!(execution.id = id, %error, "the executor could not cancel the run");
                    }
                }
            }
        };
        if logs.finish().await == Flushed::Fenced {
            return;
        }
        let outcome = outcome.with_lines_lost(logs.unrecorded_lost);
        finish(state, id, outcome, fence).await;
        if running_since.is_some() {
            state.metrics().run_ended();
        }
    }
}

/// The executor reference stored for `id` (a re-attached run learns it from the database).
async fn current_ref(state: &AppState, id: i64) -> String {
    execution::Entity::find_by_id(id)
        .one(state.db())
        .await
        .ok()
        .flatten()
        .and_then(|row| row.executor_ref)
        .unwrap_or_default()
}

async fn max_seq(state: &AppState, id: i64) -> Result<i64, ApiError> {
    let max: Option<Option<i64>> = execution_log::Entity::find()
        .select_only()
        .column_as(execution_log::Column::Seq.max(), "max")
        .filter(execution_log::Column::ExecutionId.eq(id))
        .into_tuple()
        .one(state.db())
        .await?;
    Ok(max.flatten().unwrap_or(0))
}

/// Completes once cancellation is requested (never, if the switch is dropped unused).
async fn cancel_requested(switch: &mut watch::Receiver<bool>) {
    if switch.wait_for(|cancel| *cancel).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A forward move of an execution's state.
enum Change {
    Starting,
    Running { executor_ref: String },
    Final(Outcome),
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    status: ExecutionStatus,
    exit_code: Option<i32>,
    reason: Option<String>,
    /// Output lines lost that the execution row does not count yet.
    lines_lost: i64,
}

impl Outcome {
    fn with_lines_lost(mut self, lost: i64) -> Self {
        self.lines_lost = lost;
        self
    }
    fn succeeded() -> Self {
        Self {
            status: ExecutionStatus::Succeeded,
            exit_code: Some(0),
            reason: None,
            lines_lost: 0,
        }
    }
    fn failed(exit_code: Option<i32>, reason: String) -> Self {
        Self {
            status: ExecutionStatus::Failed,
            exit_code,
            reason: Some(reason),
            lines_lost: 0,
        }
    }
    fn timed_out(reason: String) -> Self {
        Self {
            status: ExecutionStatus::TimedOut,
            exit_code: None,
            reason: Some(reason),
            lines_lost: 0,
        }
    }
    /// A cancellation, with why.
    pub fn cancelled(reason: &str) -> Self {
        Self {
            status: ExecutionStatus::Cancelled,
            exit_code: None,
            reason: Some(reason.to_owned()),
            lines_lost: 0,
        }
    }
    fn creation_failed(reason: String) -> Self {
        Self {
            status: ExecutionStatus::CreationFailed,
            exit_code: None,
            reason: Some(reason),
            lines_lost: 0,
        }
    }
    /// The executor lost track of the run.
    pub fn lost(reason: String) -> Self {
        Self {
            status: ExecutionStatus::Lost,
            exit_code: None,
            reason: Some(reason),
            lines_lost: 0,
        }
    }
}

/// The states a run can be in before it ends.
pub const UNFINISHED: [ExecutionStatus; 3] = [
    ExecutionStatus::Pending,
    ExecutionStatus::Starting,
    ExecutionStatus::Running,
];

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

/// Moves the execution to its final state (from any unfinished one), releases its lease,
/// publishes it, counts it and (for a scheduled run) sends its notifications. `None` when it had already ended (or is not ours to end).
async fn finish(
    state: &AppState,
    id: i64,
    outcome: Outcome,
    fence: Fence<'_>,
) -> Option<execution::Model> {
    let finished = transition(state, id, &UNFINISHED, Change::Final(outcome), fence).await?;
    crate::schedules::notify::after_finish(state, &finished);
    let ran_for = finished
        .started_at
        .zip(finished.finished_at)
        .and_then(|(started, ended)| (ended - started).to_std().ok());
    state.metrics().execution_finished(
        &finished.proc_name,
        super::graphql::status_name(finished.status),
        ran_for,
    );
    Some(finished)
}

/// Applies `change` if the execution is in one of `from` (and `fence` allows); stores,
/// publishes and returns the new row. `None` when nothing changed.
async fn transition(
    state: &AppState,
    id: i64,
    from: &[ExecutionStatus],
    change: Change,
    fence: Fence<'_>,
) -> Option<execution::Model> {
    match try_transition(state, id, from, change, fence).await {
        Ok(changed) => changed,
        Err(error) => {
            tracing::error!(execution.id = id, error = %error, "cannot store a state change");
            None
        }
    }
}

async fn try_transition(
    state: &AppState,
    id: i64,
    from: &[ExecutionStatus],
    change: Change,
    fence: Fence<'_>,
) -> Result<Option<execution::Model>, ApiError> {
    let now = Utc::now();
    let mut update = execution::Entity::update_many()
        .col_expr(execution::Column::UpdatedAt, Expr::value(now))
        .filter(execution::Column::Id.eq(id))
        .filter(execution::Column::Status.is_in(from.iter().copied()));
    if let Fence::Owner(owner) = fence {
        update = update.filter(execution::Column::Owner.eq(owner));
    }
    update = match change {
        Change::Starting => update.col_expr(
            execution::Column::Status,
            Expr::value(ExecutionStatus::Starting),
        ),
        Change::Running { executor_ref } => update
            .col_expr(
                execution::Column::Status,
                Expr::value(ExecutionStatus::Running),
            )
            .col_expr(execution::Column::ExecutorRef, Expr::value(executor_ref))
            .col_expr(execution::Column::StartedAt, Expr::value(now)),
        Change::Final(outcome) => update
            .col_expr(execution::Column::Status, Expr::value(outcome.status))
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
    // One statement (`UPDATE … RETURNING`): the change and the row it produced, atomically.
    let Some(row) = update.exec_with_returning(state.db()).await?.pop() else {
        return Ok(None);
    };
    publish(
        state,
        Event::ExecutionStatus {
            execution: Box::new(row.clone()),
        },
    )
    .await;
    Ok(Some(row))
}

/// Publishes after a commit. A failure only delays subscribers (they re-read the database on
/// the gap or on their next safety check), so it is logged, not returned.
pub(crate) async fn publish(state: &AppState, event: Event) {
    if let Err(error) = state.event_bus().publish(&event).await {
        tracing::warn!(%error, "cannot publish an execution event; subscribers will catch up");
    }
}

/// What became of a flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flushed {
    /// Stored and published (or nothing to do).
    Done,
    /// The database refused; the lines stay buffered for the next attempt.
    Retry,
    /// This replica no longer owns the execution; nothing was written.
    Fenced,
}

/// Output on its way to the database and the bus.
struct LogPipeline {
    state: AppState,
    execution_id: i64,
    owner: String,
    masker: Masker,
    max_lines: u64,
    flush_interval: Duration,
    next_seq: i64,
    buffer: Vec<LogRecord>,
    /// The executor's position after the newest buffered line.
    cursor: Option<LogCursor>,
    oldest: Option<Instant>,
    /// When lines were last stored: after a quiet spell a line goes out at once (the first
    /// line of a run reaches watchers in milliseconds); during a burst lines wait up to
    /// `flush_interval` to be stored and published together.
    last_flush: Option<Instant>,
    truncated: bool,
    /// What the masker held back of a cut line, per stream (see `Masker::mask_piece`).
    carry: HashMap<LogStream, String>,
    /// Failed attempts to store the current buffer in a row.
    failures: u32,
    /// Lines lost since the execution row last counted them.
    unrecorded_lost: i64,
}

/// How an executor delivered a piece of output.
#[derive(Clone, Copy, Debug, Default)]
struct Piece {
    /// The line goes on in the next piece of its stream.
    continues: bool,
    /// The executor replaced bytes that were not UTF-8.
    replaced: bool,
}

/// Failed attempts after which a batch is stored line by line, so one line the database
/// refuses cannot hold back every line after it.
const FAILURES_BEFORE_SINGLE_LINES: u32 = 3;

impl LogPipeline {
    fn new(
        state: AppState,
        execution_id: i64,
        masker: Masker,
        settings: RunSettings,
        stored: i64,
        owner: String,
    ) -> Self {
        Self {
            state,
            execution_id,
            owner,
            masker,
            max_lines: settings.log_max_lines,
            flush_interval: settings.flush_interval,
            next_seq: stored + 1,
            buffer: Vec::new(),
            cursor: None,
            oldest: None,
            last_flush: None,
            truncated: u64::try_from(stored).unwrap_or(0) > settings.log_max_lines,
            carry: HashMap::new(),
            failures: 0,
            unrecorded_lost: 0,
        }
    }

    /// Queues a line (masked, split if over-long); `true` when the buffer should be flushed now.
    /// A NUL character (which Postgres cannot store) becomes U+FFFD and the line is marked.
    fn push(
        &mut self,
        stream: LogStream,
        line: String,
        cursor: Option<LogCursor>,
        piece: Piece,
    ) -> bool {
        if cursor.is_some() {
            self.cursor = cursor;
        }
        if self.truncated {
            return false;
        }
        let now = Utc::now();
        let carry = self.carry.entry(stream).or_default();
        let masked = if piece.continues || !carry.is_empty() {
            self.masker.mask_piece(carry, &line, piece.continues)
        } else {
            self.masker.mask(&line)
        };
        let (masked, nul) = if masked.contains('\0') {
            (masked.replace('\0', "\u{FFFD}"), true)
        } else {
            (masked, false)
        };
        if piece.continues && masked.is_empty() {
            return false;
        }
        for text in split_long(masked) {
            if self.next_seq as u64 > self.max_lines {
                self.truncated = true;
                self.append(
                    LogStream::System,
                    format!(
                        "[proctor] output truncated: this execution reached its limit of {} \
                         log lines; later output was discarded",
                        self.max_lines
                    ),
                    now,
                    false,
                );
                break;
            }
            self.append(stream, text, now, piece.replaced || nul);
        }
        self.buffer.len() >= BATCH_LINES
            || self
                .oldest
                .is_some_and(|oldest| oldest.elapsed() >= self.flush_interval)
            || self
                .last_flush
                .is_none_or(|last| last.elapsed() >= self.flush_interval)
    }

    fn append(
        &mut self,
        stream: LogStream,
        line: String,
        logged_at: chrono::DateTime<Utc>,
        replaced: bool,
    ) {
        self.buffer.push(LogRecord {
            seq: self.next_seq,
            stream,
            line,
            logged_at,
            replaced,
        });
        self.next_seq += 1;
        self.oldest.get_or_insert_with(Instant::now);
    }

    /// Stores the buffered lines with the cursor, then publishes them. Nothing is published
    /// that is not stored.
    async fn flush(&mut self) -> Flushed {
        if self.buffer.is_empty() {
            return Flushed::Done;
        }
        let stored = if self.failures >= FAILURES_BEFORE_SINGLE_LINES {
            self.store_line_by_line().await
        } else {
            self.store().await
        };
        match stored {
            Ok(true) => self.failures = 0,
            Ok(false) => return Flushed::Fenced,
            Err(error) => {
                self.failures += 1;
                tracing::warn!(execution.id = self.execution_id, %error, "cannot store log lines yet");
                return Flushed::Retry;
            }
        }
        let lines = std::mem::take(&mut self.buffer);
        self.oldest = None;
        self.last_flush = Some(Instant::now());
        self.state.metrics().log_lines_stored(lines.len() as u64);
        publish(
            &self.state,
            Event::ExecutionLogs {
                execution_id: self.execution_id,
                lines,
            },
        )
        .await;
        Flushed::Done
    }

    /// In one transaction: claims the row (fenced by owner) with the new cursor, then inserts
    /// the buffer in chunks of [`BATCH_LINES`]. `false` when this replica lost the execution.
    async fn store(&self) -> Result<bool, sea_orm::DbErr> {
        let txn = crate::db::begin_write(self.state.db()).await?;
        let mut claim = execution::Entity::update_many()
            .filter(execution::Column::Id.eq(self.execution_id))
            .filter(execution::Column::Owner.eq(self.owner.as_str()));
        claim = match &self.cursor {
            Some(cursor) => with_cursor(claim, cursor),
            None => claim.col_expr(
                execution::Column::LogOffset,
                Expr::col(execution::Column::LogOffset),
            ),
        };
        if claim.exec(&txn).await?.rows_affected == 0 {
            return Ok(false);
        }
        for chunk in self.buffer.chunks(BATCH_LINES) {
            insert_lines(&txn, self.execution_id, chunk).await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// The fallback after repeated failures: each line in its own statement; a line the
    /// database refuses is replaced (same seq, so no gap) by a marker saying it was lost, and
    /// the execution counts it. Fenced like [`LogPipeline::store`] (nothing is written once
    /// another replica owns the run) and idempotent (a line stored by an earlier, interrupted
    /// attempt is not stored or counted again). Fails only when even a marker cannot be stored
    /// (the database is away), so nothing is dropped while a retry can still store it; the
    /// cursor moves only once every line is stored.
    async fn store_line_by_line(&mut self) -> Result<bool, sea_orm::DbErr> {
        let db = self.state.db();
        let owned = execution::Entity::update_many()
            .filter(execution::Column::Id.eq(self.execution_id))
            .filter(execution::Column::Owner.eq(self.owner.as_str()))
            .col_expr(
                execution::Column::LogOffset,
                Expr::col(execution::Column::LogOffset),
            )
            .exec(db)
            .await?;
        if owned.rows_affected == 0 {
            return Ok(false);
        }
        let mut lost = 0;
        for index in 0..self.buffer.len() {
            let record = self.buffer[index].clone();
            if insert_line_once(db, self.execution_id, &record)
                .await
                .is_ok()
            {
                continue;
            }
            let marker = LogRecord {
                stream: LogStream::System,
                line: format!(
                    "[proctor] a {}-byte line of {} could not be stored and was lost",
                    record.line.len(),
                    match record.stream {
                        LogStream::Stdout => "stdout",
                        LogStream::Stderr => "stderr",
                        LogStream::System => "proctor",
                    }
                ),
                replaced: false,
                ..record
            };
            if insert_line_once(db, self.execution_id, &marker).await? {
                lost += 1;
            }
            self.buffer[index] = marker;
        }
        let mut done = execution::Entity::update_many()
            .filter(execution::Column::Id.eq(self.execution_id))
            .filter(execution::Column::Owner.eq(self.owner.as_str()))
            .col_expr(
                execution::Column::LogLinesLost,
                Expr::col(execution::Column::LogLinesLost).add(Expr::val(lost)),
            );
        if let Some(cursor) = &self.cursor {
            done = with_cursor(done, cursor);
        }
        Ok(done.exec(db).await?.rows_affected > 0)
    }

    /// Stores what is left, retrying for a while if the database is away.
    async fn finish(&mut self) -> Flushed {
        // A cut line whose end never came: what the masker held back is output too.
        let held: Vec<(LogStream, String)> = self.carry.drain().collect();
        for (stream, text) in held {
            if !text.is_empty() {
                self.push(stream, text, None, Piece::default());
            }
        }
        let deadline = Instant::now() + FINAL_FLUSH_PATIENCE;
        loop {
            match self.flush().await {
                Flushed::Retry if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Flushed::Retry => {
                    tracing::error!(
                        execution.id = self.execution_id,
                        lost = self.buffer.len(),
                        "giving up on storing the last log lines; the execution counts them"
                    );
                    self.unrecorded_lost += self.buffer.len() as i64;
                    self.buffer.clear();
                    return Flushed::Done;
                }
                done_or_fenced => return done_or_fenced,
            }
        }
    }
}

/// `update` also recording that stored output reached `cursor`.
fn with_cursor(
    update: sea_orm::UpdateMany<execution::Entity>,
    cursor: &LogCursor,
) -> sea_orm::UpdateMany<execution::Entity> {
    update
        .col_expr(
            execution::Column::LogSource,
            Expr::value(cursor.source.as_str()),
        )
        .col_expr(
            execution::Column::LogOffset,
            Expr::value(i64::try_from(cursor.offset).unwrap_or(i64::MAX)),
        )
}

/// Stores one line unless its seq is stored already; `true` when this call stored it.
async fn insert_line_once<C: ConnectionTrait>(
    db: &C,
    execution_id: i64,
    record: &LogRecord,
) -> Result<bool, sea_orm::DbErr> {
    let row = execution_log::ActiveModel {
        execution_id: Set(execution_id),
        seq: Set(record.seq),
        stream: Set(record.stream),
        line: Set(record.line.clone()),
        logged_at: Set(record.logged_at),
        replaced: Set(record.replaced),
    };
    let stored = execution_log::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                execution_log::Column::ExecutionId,
                execution_log::Column::Seq,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(stored == 1)
}

async fn insert_lines<C: ConnectionTrait>(
    db: &C,
    execution_id: i64,
    lines: &[LogRecord],
) -> Result<(), sea_orm::DbErr> {
    let rows = lines.iter().map(|record| execution_log::ActiveModel {
        execution_id: Set(execution_id),
        seq: Set(record.seq),
        stream: Set(record.stream),
        line: Set(record.line.clone()),
        logged_at: Set(record.logged_at),
        replaced: Set(record.replaced),
    });
    execution_log::Entity::insert_many(rows)
        .exec(db)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_are_dns_labels_with_the_id() {
        assert_eq!(run_name("deploy", 42), "proctor-42-deploy");
        let long = run_name(&"a".repeat(63), 9_223_372_036_854_775_807);
        assert!(long.len() <= 63, "{long}");
        assert!(long.starts_with("proctor-9223372036854775807-a"));
        assert_eq!(
            run_name("x-y-z", 1234567890123),
            "proctor-1234567890123-x-y-z"
        );
        // A cut that lands on a dash does not leave it dangling.
        let cut = run_name(&format!("{}-tail", "b".repeat(45)), 12345678);
        assert!(!cut.ends_with('-'), "{cut}");
    }
}
