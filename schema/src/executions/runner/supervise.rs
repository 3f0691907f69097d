//! Supervising one run: waiting for a slot, starting (or re-attaching) it through the executor
//! port with the run's cancellation token, turning its events into state moves and output, and
//! starting failed attempts again for executors that do not retry themselves.
//!
//! Retries (runner-driven, e.g. local processes): a run gets `1 + retries` attempts. Only a
//! failed attempt (non-zero exit, killed by a signal) is retried; a timeout, a cancellation or
//! a lost run ends it. The deadline covers the whole run, every attempt included, like a
//! Kubernetes Job's `activeDeadlineSeconds`. Each new attempt is announced in the output by a
//! `[proctor] attempt N` line and counted in `executions.attempts`; the last attempt's exit
//! code is the run's.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use proctor_entity::values::ExecutionStatus;
use proctor_entity::{execution, execution_log};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use super::log_pipeline::{Flushed, LogPipeline, Piece};
use super::submit::add_to_run_mask;
use super::transition::{Change, Fence, Outcome, finish, record_attempt, transition};
use super::{ActiveRun, CANCELLED_REASON, Runner, SHUTDOWN_REASON, StopRequest};
use crate::error::ApiError;
use crate::executions::identity;
use crate::executions::shaping::Masker;
use crate::ports::executor::{EnvValue, LogCursor, RunEvent, RunEvents, RunRef, RunSpec};
use crate::state::AppState;

/// The marker line that opens attempt `number` of a run.
pub(super) fn attempt_marker(number: u32, detail: &str) -> String {
    if detail.is_empty() {
        format!("[proctor] attempt {number}")
    } else {
        format!("[proctor] attempt {number} ({detail})")
    }
}

/// How following one attempt ended.
enum Followed {
    /// The executor reported the end of the attempt.
    Ended(Outcome),
    /// Another replica owns the execution now; nothing more may be written.
    Fenced,
}

/// Counts a run in the "running now" gauge exactly once.
#[derive(Default)]
struct RunClock {
    since: Option<Instant>,
}

impl RunClock {
    fn start(&mut self, state: &AppState) {
        if self.since.is_none() {
            self.since = Some(Instant::now());
            state.metrics().run_started();
        }
    }

    fn end(&mut self, state: &AppState) {
        if self.since.take().is_some() {
            state.metrics().run_ended();
        }
    }
}

impl Runner {
    /// Supervises `execution` (stored and owned by this replica) in the background: a new
    /// run when `spec` is given, a re-attach otherwise.
    pub(super) fn supervise_in_background(
        self: &Arc<Self>,
        state: AppState,
        execution: execution::Model,
        spec: Option<RunSpec>,
        masker: Masker,
    ) {
        let stop = StopRequest::default();
        let runner = Arc::clone(self);
        let id = execution.id;
        let task_stop = stop.clone();
        // Register before the task can finish, under the lock the task removes it with.
        let mut active = self.active();
        // A child of whatever handed the run off (the request that submitted it, a scheduler
        // tick), so an exported trace shows the run under its cause.
        let span = tracing::info_span!("run", execution.id = id, proc = %execution.proc_name);
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                match spec {
                    Some(spec) => {
                        runner
                            .run(&state, execution, spec, masker, &task_stop)
                            .await;
                    }
                    None => runner.reattach(&state, execution, masker, &task_stop).await,
                }
                runner.active().remove(&id);
            },
            span,
        ));
        active.insert(
            id,
            ActiveRun {
                stop,
                task: task.abort_handle(),
            },
        );
    }

    /// A new run: wait for a slot, start it, follow it, retry failed attempts.
    async fn run(
        &self,
        state: &AppState,
        execution: execution::Model,
        spec: RunSpec,
        masker: Masker,
        stop: &StopRequest,
    ) {
        let id = execution.id;
        let fence = Fence::Owner(&self.replica);
        let waiting = state.metrics().waiting_for_slot();
        let slot = tokio::select! {
            biased;
            () = stop.token.cancelled() => {
                let reason = match stop.reason() {
                    CANCELLED_REASON => "cancelled before it started",
                    other => other,
                };
                finish(state, id, Outcome::cancelled(reason), fence).await;
                return;
            }
            slot = Arc::clone(&self.slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        drop(waiting);
        if self.stopping_for_shutdown() {
            // Queued while the server began shutting down: it never starts.
            finish(state, id, Outcome::cancelled(SHUTDOWN_REASON), fence).await;
            return;
        }
        if transition(state, id, Change::Starting, fence)
            .await
            .is_none()
        {
            return; // Cancelled while waiting for the slot, or taken over.
        }
        let runner_retries = !self.executor.retries_attempts();
        let retries = if runner_retries {
            spec.retries.unwrap_or(0)
        } else {
            0
        };
        let timeout = spec.timeout.unwrap_or(self.settings.default_timeout);
        let deadline = Instant::now() + timeout;
        let (spec, masker) = match with_identity(state, &execution, spec, masker, timeout).await {
            Ok(ready) => ready,
            Err(error) => {
                let reason = format!("cannot sign its identity token: {error}");
                finish(state, id, Outcome::creation_failed(reason), fence).await;
                return;
            }
        };
        let mut logs = LogPipeline::new(
            state.clone(),
            id,
            masker,
            self.settings,
            0,
            self.replica.clone(),
        );
        logs.watch_alerts(spec.alerts.as_ref(), &execution);
        let mut clock = RunClock::default();
        let mut attempt: u32 = 1;
        let outcome = loop {
            if stop.token.is_cancelled() {
                // Between attempts: no further one starts.
                break Outcome::cancelled(stop.reason());
            }
            let mut attempt_spec = spec.clone();
            if runner_retries {
                attempt_spec.timeout = Some(deadline.saturating_duration_since(Instant::now()));
            }
            let events = match self.executor.start(attempt_spec, stop.token.clone()).await {
                Ok(events) => events,
                Err(error) if attempt == 1 => break Outcome::creation_failed(error.to_string()),
                Err(error) => {
                    break Outcome::failed(
                        None,
                        format!("attempt {attempt} could not start: {error}"),
                    );
                }
            };
            let outcome = match self
                .follow(state, id, events, &mut logs, stop, &mut clock, attempt)
                .await
            {
                Followed::Ended(outcome) => outcome,
                Followed::Fenced => {
                    self.let_go(stop);
                    return;
                }
            };
            let outcome = match outcome.status() {
                // The deadline is the run's, not the attempt's.
                ExecutionStatus::TimedOut if runner_retries => {
                    Outcome::timed_out(Some(timeout), None)
                }
                _ => outcome,
            };
            let retry = attempt <= retries
                && outcome.status() == ExecutionStatus::Failed
                && !stop.token.is_cancelled()
                && !self.stopping_for_shutdown()
                && Instant::now() < deadline;
            if !retry {
                break outcome;
            }
            attempt += 1;
            let why = outcome.reason.clone().unwrap_or_default();
            let marker = attempt_marker(
                attempt,
                &format!("of {}; the previous one {why}", retries + 1),
            );
            if logs.system(marker) && logs.flush().await == Flushed::Fenced {
                self.let_go(stop);
                return;
            }
        };
        drop(slot);
        self.conclude(state, id, outcome, logs, clock).await;
    }

    /// A started run whose supervisor went away: re-attach and continue after the stored
    /// output.
    pub(super) async fn reattach(
        &self,
        state: &AppState,
        execution: execution::Model,
        masker: Masker,
        stop: &StopRequest,
    ) {
        let id = execution.id;
        let fence = Fence::Owner(&self.replica);
        let was = execution.status.name();
        let cursor = execution.log_source.clone().map(|source| LogCursor {
            source,
            offset: u64::try_from(execution.log_offset).unwrap_or(0),
            since: execution.log_since,
        });
        let run = RunRef {
            execution_id: id,
            executor_ref: execution.executor_ref.clone().unwrap_or_default(),
            cursor: cursor.clone(),
        };
        match self.executor.reattach(run, stop.token.clone()).await {
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
                let mut clock = RunClock::default();
                if execution.status == ExecutionStatus::Running {
                    clock.start(state);
                }
                let attempt = u32::try_from(execution.attempts).unwrap_or(1);
                match self
                    .follow(state, id, events, &mut logs, stop, &mut clock, attempt)
                    .await
                {
                    Followed::Ended(outcome) => {
                        self.conclude(state, id, outcome, logs, clock).await;
                    }
                    Followed::Fenced => self.let_go(stop),
                }
            }
            Err(error) => {
                let reason = format!(
                    "its supervisor stopped while it was {was}, and it cannot be resumed: {error}"
                );
                finish(state, id, Outcome::lost(reason), fence).await;
            }
        }
    }

    /// Whether this run must not start (or start again) because the server is shutting down
    /// and its runs die with it.
    fn stopping_for_shutdown(&self) -> bool {
        !self.accepting() && !self.executor.runs_outlive_server()
    }

    /// Another replica owns the run now: a run that dies with its server is stopped (it
    /// cannot be followed from anywhere else; its end is recorded there).
    fn let_go(&self, stop: &StopRequest) {
        if !self.executor.runs_outlive_server() {
            stop.request(super::LET_GO_REASON);
        }
    }

    /// Stores the last output, then the final state (in that order: once the database shows
    /// a final state it holds every line).
    async fn conclude(
        &self,
        state: &AppState,
        id: i64,
        outcome: Outcome,
        mut logs: LogPipeline,
        mut clock: RunClock,
    ) {
        if logs.finish().await == Flushed::Fenced {
            return;
        }
        let outcome = outcome.with_lines_lost(logs.unrecorded_lost);
        finish(state, id, outcome, Fence::Owner(&self.replica)).await;
        clock.end(state);
    }

    /// Turns the executor's events for one attempt into moves and output until it ends.
    #[expect(
        clippy::too_many_arguments,
        reason = "one attempt's whole context; bundling it would only rename the parameters"
    )]
    async fn follow(
        &self,
        state: &AppState,
        id: i64,
        mut events: RunEvents,
        logs: &mut LogPipeline,
        stop: &StopRequest,
        clock: &mut RunClock,
        attempt: u32,
    ) -> Followed {
        let fence = Fence::Owner(&self.replica);
        let mut tick = tokio::time::interval(self.settings.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let outcome = loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(RunEvent::Started { executor_ref }) => {
                        if clock.since.is_none() {
                            let change = Change::Running { executor_ref: executor_ref.clone() };
                            if transition(state, id, change, fence).await.is_some() {
                                clock.start(state);
                            }
                        }
                        if attempt > 1 {
                            record_attempt(state, id, attempt, Some(executor_ref), &self.replica).await;
                        }
                    }
                    Some(RunEvent::Attempt { number, detail }) => {
                        if logs.system(attempt_marker(number, &detail)) && logs.flush().await == Flushed::Fenced {
                            return Followed::Fenced;
                        }
                        record_attempt(state, id, number, None, &self.replica).await;
                    }
                    Some(RunEvent::Log { stream, line, cursor, continues, replaced }) => {
                        let piece = Piece { continues, replaced };
                        if logs.push(stream, line, cursor, piece) && logs.flush().await == Flushed::Fenced {
                            return Followed::Fenced;
                        }
                    }
                    Some(RunEvent::Exited { code: 0 }) => break Outcome::succeeded(),
                    Some(RunEvent::Exited { code }) => {
                        break Outcome::failed(Some(code), format!("exited with code {code}"))
                    }
                    Some(RunEvent::Failed { reason }) => break Outcome::failed(None, reason),
                    Some(RunEvent::TimedOut { limit, cause }) => {
                        break Outcome::timed_out(limit, cause)
                    }
                    Some(RunEvent::Cancelled) => break Outcome::cancelled(stop.reason()),
                    Some(RunEvent::Lost { reason }) => break Outcome::lost(reason),
                    None => break Outcome::lost("the executor stopped reporting on this run".to_owned()),
                },
                _ = tick.tick() => {
                    if logs.flush().await == Flushed::Fenced {
                        return Followed::Fenced;
                    }
                }
            }
        };
        Followed::Ended(outcome)
    }
}

/// `spec` and `masker` with the run's identity token, when its proc asks for one: made now (the
/// run starts), added to the run's sealed mask, masked, and passed as a secret.
async fn with_identity(
    state: &AppState,
    execution: &execution::Model,
    mut spec: RunSpec,
    masker: Masker,
    timeout: std::time::Duration,
) -> Result<(RunSpec, Masker), ApiError> {
    let Some(audience) = spec.identity_audience.clone() else {
        return Ok((spec, masker));
    };
    let token = identity::token_for(state, execution, &audience, timeout).await?;
    add_to_run_mask(state, execution.id, &token).await?;
    let masker = masker.and(&token);
    spec.env
        .retain(|(name, _)| name != identity::TOKEN_VARIABLE);
    spec.env
        .push((identity::TOKEN_VARIABLE.to_owned(), EnvValue::Secret(token)));
    Ok((spec, masker))
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
