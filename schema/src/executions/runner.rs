//! Supervising runs: waiting for a slot, starting the executor, turning its events into
//! persisted transitions and log lines, and publishing both.
//!
//! Ordering rules every subscriber relies on (see `stream`):
//! - log lines are stored before they are published, so a subscriber that sees a gap can
//!   always fill it from the database;
//! - the final status is stored after the last line, so once the database shows a final state
//!   it holds every line;
//! - transitions only move forward (a conditional update from the allowed states), so a late
//!   event can never overwrite a final state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use proctor_entity::execution;
use proctor_entity::execution_log;
use proctor_entity::values::{ExecutionStatus, LogStream};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set, TransactionTrait};
use tokio::sync::{Semaphore, watch};

use super::shaping::{Masker, split_long};
use crate::error::ApiError;
use crate::ports::event_bus::{Delivery, Event, LogRecord, Topic};
use crate::ports::executor::{Executor, RunEvent, RunSpec};
use crate::state::AppState;
use crate::system::ExecutorKind;

/// Lines stored per INSERT (and published per event).
const BATCH_LINES: usize = 500;
/// How long a failed log write is retried at the end of a run before lines are given up.
const FINAL_FLUSH_PATIENCE: Duration = Duration::from_secs(30);

/// How runs are supervised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSettings {
    /// Deadline of runs whose proc sets none.
    pub default_timeout: Duration,
    /// Runs at once; the rest wait as `PENDING`.
    pub max_parallel: usize,
    /// Lines stored per execution; output beyond ends with a marker line.
    pub log_max_lines: u64,
    /// Longest time a line waits before it is stored and published.
    pub flush_interval: Duration,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(3600),
            max_parallel: 16,
            log_max_lines: 200_000,
            flush_interval: Duration::from_millis(50),
        }
    }
}

/// The name a run is known by outside Proctor (`EXECUTION_NAME`, the Kubernetes Job name).
pub fn run_name(proc_name: &str, execution_id: i64) -> String {
    format!("proctor-{proc_name}-{execution_id}")
}

/// Runs executions through an executor, a bounded number at a time.
pub struct Runner {
    executor: Arc<dyn Executor>,
    slots: Arc<Semaphore>,
    settings: RunSettings,
    /// Cancellation switches of the runs supervised by this process.
    active: Mutex<HashMap<i64, watch::Sender<bool>>>,
}

impl Runner {
    /// A runner using `executor`.
    pub fn new(executor: Arc<dyn Executor>, settings: RunSettings) -> Arc<Self> {
        Arc::new(Self {
            executor,
            slots: Arc::new(Semaphore::new(settings.max_parallel)),
            settings,
            active: Mutex::new(HashMap::new()),
        })
    }

    /// Which executor runs procs.
    pub fn executor_kind(&self) -> ExecutorKind {
        self.executor.kind()
    }

    /// The supervision settings.
    pub fn settings(&self) -> RunSettings {
        self.settings
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<i64, watch::Sender<bool>>> {
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Supervises `execution` (already stored as `PENDING`) in the background.
    pub fn launch(
        self: &Arc<Self>,
        state: AppState,
        execution: execution::Model,
        spec: RunSpec,
        masker: Masker,
    ) {
        let (cancel, cancelled) = watch::channel(false);
        self.active().insert(execution.id, cancel);
        let runner = Arc::clone(self);
        tokio::spawn(async move {
            let id = execution.id;
            runner
                .supervise(&state, execution, spec, masker, cancelled)
                .await;
            runner.active().remove(&id);
        });
    }

    /// Signals cancellation to a run supervised by this process; `false` if it is not here.
    pub fn cancel_here(&self, execution_id: i64) -> bool {
        match self.active().get(&execution_id) {
            Some(cancel) => {
                cancel.send_replace(true);
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

    async fn supervise(
        &self,
        state: &AppState,
        execution: execution::Model,
        spec: RunSpec,
        masker: Masker,
        mut cancelled: watch::Receiver<bool>,
    ) {
        let id = execution.id;
        let timeout_seconds = spec.timeout.as_secs();
        let slot = tokio::select! {
            slot = Arc::clone(&self.slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = cancel_requested(&mut cancelled) => {
                finish(state, id, Outcome::cancelled("cancelled before it started")).await;
                return;
            }
        };
        if transition(state, id, &[ExecutionStatus::Pending], Change::Starting)
            .await
            .is_none()
        {
            return; // Cancelled while waiting for the slot.
        }
        let mut events = match self.executor.start(spec).await {
            Ok(events) => events,
            Err(error) => {
                finish(state, id, Outcome::creation_failed(error.to_string())).await;
                return;
            }
        };

        let mut logs = LogPipeline::new(state.clone(), &execution, masker, self.settings);
        let mut executor_ref = String::new();
        let mut started_at = None;
        let mut cancel_sent = false;
        let mut tick = tokio::time::interval(self.settings.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let outcome = loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(RunEvent::Started { executor_ref: reference }) => {
                        executor_ref = reference.clone();
                        if transition(
                            state,
                            id,
                            &[ExecutionStatus::Pending, ExecutionStatus::Starting],
                            Change::Running { executor_ref: reference },
                        )
                        .await
                        .is_some()
                        {
                            started_at = Some(Instant::now());
                            state.metrics().run_started();
                        }
                    }
                    Some(RunEvent::Log { stream, line }) => {
                        if logs.push(stream, line) {
                            // A failed write keeps the lines buffered for the next attempt.
                            logs.flush().await;
                        }
                    }
                    Some(RunEvent::Exited { code: 0 }) => break Outcome::succeeded(),
                    Some(RunEvent::Exited { code }) => break Outcome::failed(Some(code), format!("exited with code {code}")),
                    Some(RunEvent::Failed { reason }) => break Outcome::failed(None, reason),
                    Some(RunEvent::TimedOut) => {
                        break Outcome::timed_out(format!("exceeded its timeout of {timeout_seconds} s"))
                    }
                    Some(RunEvent::Cancelled) => break Outcome::cancelled("cancelled"),
                    Some(RunEvent::Lost { reason }) => break Outcome::lost(reason),
                    None => break Outcome::lost("the executor stopped reporting on this run".to_owned()),
                },
                _ = tick.tick() => {
                    logs.flush().await;
                }
                () = cancel_requested(&mut cancelled), if !cancel_sent => {
                    cancel_sent = true;
                    if let Err(error) = self.executor.cancel(id, &executor_ref).await {
                        tracing::warn!(execution.id = id, %error, "the executor could not cancel the run");
                    }
                }
            }
        };
        logs.finish().await;
        finish(state, id, outcome).await;
        if started_at.is_some() {
            state.metrics().run_ended();
        }
        drop(slot);
    }
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
}

impl Outcome {
    fn succeeded() -> Self {
        Self {
            status: ExecutionStatus::Succeeded,
            exit_code: Some(0),
            reason: None,
        }
    }
    fn failed(exit_code: Option<i32>, reason: String) -> Self {
        Self {
            status: ExecutionStatus::Failed,
            exit_code,
            reason: Some(reason),
        }
    }
    fn timed_out(reason: String) -> Self {
        Self {
            status: ExecutionStatus::TimedOut,
            exit_code: None,
            reason: Some(reason),
        }
    }
    /// A cancellation, with why.
    pub fn cancelled(reason: &str) -> Self {
        Self {
            status: ExecutionStatus::Cancelled,
            exit_code: None,
            reason: Some(reason.to_owned()),
        }
    }
    fn creation_failed(reason: String) -> Self {
        Self {
            status: ExecutionStatus::CreationFailed,
            exit_code: None,
            reason: Some(reason),
        }
    }
    /// The executor lost track of the run.
    pub fn lost(reason: String) -> Self {
        Self {
            status: ExecutionStatus::Lost,
            exit_code: None,
            reason: Some(reason),
        }
    }
}

/// The states a run can be in before it ends.
pub const UNFINISHED: [ExecutionStatus; 3] = [
    ExecutionStatus::Pending,
    ExecutionStatus::Starting,
    ExecutionStatus::Running,
];

/// Moves the execution to its final state (from any unfinished one), publishes it and counts it.
/// `None` when it had already ended.
pub async fn finish(state: &AppState, id: i64, outcome: Outcome) -> Option<execution::Model> {
    let finished = transition(state, id, &UNFINISHED, Change::Final(outcome)).await?;
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

/// Applies `change` if the execution is in one of `from`; stores, publishes and returns the
/// new row. `None` when the execution was not in one of those states (nothing changed).
async fn transition(
    state: &AppState,
    id: i64,
    from: &[ExecutionStatus],
    change: Change,
) -> Option<execution::Model> {
    match try_transition(state, id, from, change).await {
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
) -> Result<Option<execution::Model>, ApiError> {
    let now = Utc::now();
    let mut update = execution::Entity::update_many()
        .col_expr(execution::Column::UpdatedAt, Expr::value(now))
        .filter(execution::Column::Id.eq(id))
        .filter(execution::Column::Status.is_in(from.iter().copied()));
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
            .col_expr(execution::Column::FinishedAt, Expr::value(now)),
    };
    let txn = state.db().begin().await?;
    if update.exec(&txn).await?.rows_affected == 0 {
        return Ok(None);
    }
    let row = execution::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("execution {id} vanished")))?;
    txn.commit().await?;
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
/// the gap or on their next safety poll), so it is logged, not returned.
pub(crate) async fn publish(state: &AppState, event: Event) {
    if let Err(error) = state.event_bus().publish(&event).await {
        tracing::warn!(%error, "cannot publish an execution event; subscribers will catch up");
    }
}

/// Output on its way to the database and the bus.
struct LogPipeline {
    state: AppState,
    execution_id: i64,
    masker: Masker,
    max_lines: u64,
    flush_interval: Duration,
    next_seq: i64,
    buffer: Vec<LogRecord>,
    oldest: Option<Instant>,
    truncated: bool,
}

impl LogPipeline {
    fn new(
        state: AppState,
        execution: &execution::Model,
        masker: Masker,
        settings: RunSettings,
    ) -> Self {
        Self {
            state,
            execution_id: execution.id,
            masker,
            max_lines: settings.log_max_lines,
            flush_interval: settings.flush_interval,
            next_seq: 1,
            buffer: Vec::new(),
            oldest: None,
            truncated: false,
        }
    }

    /// Queues a line (masked, split if over-long); `true` when the buffer should be flushed now.
    fn push(&mut self, stream: LogStream, line: String) -> bool {
        if self.truncated {
            return false;
        }
        let now = Utc::now();
        for piece in split_long(self.masker.mask(&line)) {
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
                );
                break;
            }
            self.append(stream, piece, now);
        }
        self.buffer.len() >= BATCH_LINES
            || self
                .oldest
                .is_some_and(|oldest| oldest.elapsed() >= self.flush_interval)
    }

    fn append(&mut self, stream: LogStream, line: String, logged_at: chrono::DateTime<Utc>) {
        self.buffer.push(LogRecord {
            seq: self.next_seq,
            stream,
            line,
            logged_at,
        });
        self.next_seq += 1;
        self.oldest.get_or_insert_with(Instant::now);
    }

    /// Stores the buffered lines, then publishes them. On a database error the lines stay
    /// buffered for the next attempt: nothing is published that is not stored.
    async fn flush(&mut self) -> bool {
        if self.buffer.is_empty() {
            return true;
        }
        if let Err(error) = self.store().await {
            tracing::warn!(execution.id = self.execution_id, %error, "cannot store log lines yet");
            return false;
        }
        let lines = std::mem::take(&mut self.buffer);
        self.oldest = None;
        self.state.metrics().log_lines_stored(lines.len() as u64);
        publish(
            &self.state,
            Event::ExecutionLogs {
                execution_id: self.execution_id,
                lines,
            },
        )
        .await;
        true
    }

    /// Inserts the buffer in chunks of [`BATCH_LINES`], all or nothing.
    async fn store(&self) -> Result<(), sea_orm::DbErr> {
        let txn = self.state.db().begin().await?;
        for chunk in self.buffer.chunks(BATCH_LINES) {
            let rows = chunk.iter().map(|record| execution_log::ActiveModel {
                execution_id: Set(self.execution_id),
                seq: Set(record.seq),
                stream: Set(record.stream),
                line: Set(record.line.clone()),
                logged_at: Set(record.logged_at),
            });
            execution_log::Entity::insert_many(rows).exec(&txn).await?;
        }
        txn.commit().await
    }

    /// Stores what is left, retrying for a while if the database is away.
    async fn finish(&mut self) {
        let deadline = Instant::now() + FINAL_FLUSH_PATIENCE;
        while !self.flush().await {
            if Instant::now() >= deadline {
                tracing::error!(
                    execution.id = self.execution_id,
                    lost = self.buffer.len(),
                    "giving up on storing the last log lines"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
