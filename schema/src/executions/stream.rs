//! Following an execution live: its log lines (every line exactly once, in order) and its
//! state (the current one, then each transition).
//!
//! The algorithm, for logs:
//! 1. subscribe to the execution's topic on the event bus **before** reading anything, so no
//!    line published from now on can be missed;
//! 2. read the state, then the stored lines after `afterSeq`, and deliver them; if the state
//!    read was final, those are all the lines (the runner stores the final state only after
//!    the last line), and the stream completes;
//! 3. otherwise deliver live batches: lines at or below the last delivered `seq` are
//!    duplicates of what the database already gave and are skipped; a line beyond the next
//!    `seq` means something was lost on the way (a slow subscriber, a Redis outage), so the
//!    gap is filled from the database (lines are stored before they are published);
//! 4. a final state, a "missed events" notice or the periodic safety check re-reads the
//!    database; a final state there ends the stream after the last stored line.
//!
//! The safety check covers the one thing the bus cannot signal: an event lost while Redis was
//! away and nothing published since; so it only runs while the bus is quiet.
//!
//! Database reads take turns ([`AppState::log_read_turn`]) and retry failures for a while:
//! however many subscribers fall behind at once, the runner keeps the connections it needs to
//! store new output, and a busy pool delays a subscriber instead of failing it.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use futures::stream::{BoxStream, StreamExt};
use proctor_entity::{execution, execution_log};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::time::Interval;

use crate::error::ApiError;
use crate::metrics::SubscriptionGuard;
use crate::ports::event_bus::{Delivery, DeliveryStream, Event, Topic};
use crate::state::AppState;

/// Lines read from the database at a time while catching up.
const PAGE: u64 = 1_000;
/// How often a quiet subscription checks the database on its own.
const SAFETY_CHECK: Duration = Duration::from_secs(5);
/// How long a log subscription keeps retrying a failing database read (the pool busy, a
/// connection dropped) before it reports the error.
const READ_PATIENCE: Duration = Duration::from_secs(60);

fn safety_check() -> Interval {
    // The first check is one period away: the follower has just read the database.
    let mut interval =
        tokio::time::interval_at(tokio::time::Instant::now() + SAFETY_CHECK, SAFETY_CHECK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

async fn load(state: &AppState, id: i64) -> Result<execution::Model, ApiError> {
    execution::Entity::find_by_id(id)
        .one(state.db())
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind: "execution",
            key: id.to_string(),
        })
}

/// Delivers an execution's log lines after `after_seq`; see the module docs.
struct LogFollower {
    state: AppState,
    id: i64,
    last: i64,
    deliveries: DeliveryStream,
    pending: VecDeque<execution_log::Model>,
    /// The database may hold more lines after `last` than were read (a full page was read).
    behind: bool,
    /// The execution reached a final state: deliver what is left, then complete.
    ending: bool,
    /// The database must be asked for the state and the lines (events were missed, or the
    /// safety check is due). A flag rather than a call in the event's branch, so a batch that
    /// stops waiting mid-check (see [`follow_log_batches`]) does not lose the reason to check.
    recheck: bool,
    /// An error met while gathering a batch, reported after that batch.
    failed: Option<ApiError>,
    /// The stream ended while gathering a batch: nothing follows that batch.
    finished: bool,
    check: Interval,
    _counted: SubscriptionGuard,
}

/// Runs a read for a live log subscription in turn with the others, retrying it for
/// [`READ_PATIENCE`]: a busy pool or a dropped connection delays the subscriber instead of
/// failing it.
async fn read_in_turn<T, F, Fut>(state: &AppState, id: i64, read: F) -> Result<T, ApiError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, DbErr>>,
{
    // Patience is wall-clock time (waiting for a turn and failed reads count too).
    let started = tokio::time::Instant::now();
    let backoff = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times();
    let attempt = || async {
        let _turn = state.log_read_turn().await;
        read().await
    };
    Ok(attempt
        .retry(backoff)
        .when(|_| started.elapsed() < READ_PATIENCE)
        .notify(|error, _| {
            tracing::debug!(execution.id = id, %error, "cannot read the log or state yet; retrying");
        })
        .await?)
}

/// The next page of stored lines of execution `id` after `after`.
async fn stored_lines(
    state: &AppState,
    id: i64,
    after: i64,
) -> Result<Vec<execution_log::Model>, ApiError> {
    read_in_turn(state, id, || {
        execution_log::Entity::find()
            .filter(execution_log::Column::ExecutionId.eq(id))
            .filter(execution_log::Column::Seq.gt(after))
            .order_by_asc(execution_log::Column::Seq)
            .limit(PAGE)
            .all(state.db())
    })
    .await
}

/// Whether execution `id` has reached a final state.
async fn has_ended(state: &AppState, id: i64) -> Result<bool, ApiError> {
    let row = read_in_turn(state, id, || {
        execution::Entity::find_by_id(id).one(state.db())
    })
    .await?;
    let row = row.ok_or_else(|| ApiError::NotFound {
        kind: "execution",
        key: id.to_string(),
    })?;
    Ok(row.status.is_final())
}

impl LogFollower {
    /// Reads the next page of stored lines after `last`.
    async fn read_page(&mut self) -> Result<(), ApiError> {
        let page = stored_lines(&self.state, self.id, self.last).await?;
        self.behind = page.len() as u64 == PAGE;
        if let Some(newest) = page.last() {
            self.last = newest.seq;
        }
        self.pending.extend(page);
        Ok(())
    }

    /// Re-reads the state: a final one means the stream ends after the stored lines.
    async fn check_state(&mut self) -> Result<(), ApiError> {
        if has_ended(&self.state, self.id).await? {
            self.ending = true;
        }
        // Whatever happened, the database now has at least everything published so far.
        self.read_page().await?;
        self.recheck = false;
        Ok(())
    }

    fn accept(&mut self, lines: Vec<crate::ports::event_bus::LogRecord>) -> bool {
        for record in lines {
            if record.seq <= self.last {
                continue; // Already delivered from the database.
            }
            if record.seq != self.last + 1 {
                return false; // A gap: something was lost on the way.
            }
            self.last = record.seq;
            self.pending.push_back(execution_log::Model {
                execution_id: self.id,
                seq: record.seq,
                stream: record.stream,
                line: record.line,
                logged_at: record.logged_at,
                replaced: record.replaced,
            });
        }
        true
    }

    /// The next line, waiting for it as long as the execution runs; `None` once it has ended
    /// and every line was delivered (or the server is stopping).
    ///
    /// Cancel-safe: dropped while waiting, nothing is lost. Every await either changes no
    /// state before it completes (reads) or leaves a flag that makes the next call redo it
    /// (`behind`, `recheck`).
    async fn next(&mut self) -> Option<Result<execution_log::Model, ApiError>> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(Ok(line));
            }
            if self.recheck {
                if let Err(error) = self.check_state().await {
                    return Some(Err(error));
                }
                continue;
            }
            if self.behind || self.ending {
                if let Err(error) = self.read_page().await {
                    return Some(Err(error));
                }
                if self.pending.is_empty() && self.ending {
                    return None;
                }
                continue;
            }
            tokio::select! {
                delivery = self.deliveries.next() => match delivery {
                    Some(Delivery::Event(Event::ExecutionLogs { lines, .. })) => {
                        // The bus is alive: the safety check is for quiet subscriptions only
                        // (a thousand lagging subscribers re-reading every few seconds would
                        // compete with the runner for the database).
                        self.check.reset();
                        if !self.accept(lines) {
                            // A gap: read the rest from the database (on the next turn).
                            self.behind = true;
                        }
                    }
                    Some(Delivery::Event(Event::ExecutionStatus { execution })) => {
                        if execution.status.is_final() {
                            self.ending = true;
                        }
                    }
                    Some(Delivery::Event(_)) => {}
                    Some(Delivery::Missed(_)) => self.recheck = true,
                    // The bus closed (the server is stopping): end; the client resumes with afterSeq.
                    None => return None,
                },
                _ = self.check.tick() => self.recheck = true,
            }
        }
    }

    /// Moves lines already read into `batch`, up to `max`, without waiting.
    fn take_ready(&mut self, batch: &mut Vec<execution_log::Model>, max: usize) {
        let room = max.saturating_sub(batch.len()).min(self.pending.len());
        batch.extend(self.pending.drain(..room));
    }

    /// The next batch: waits for one line, takes what else is ready (stored lines already
    /// read, events already delivered), then gathers more for up to `delay` (never past `max`
    /// lines). An error after some lines is kept for the next
    /// call, so the lines before it are delivered first.
    async fn next_batch(
        &mut self,
        max: usize,
        delay: Duration,
    ) -> Option<Result<Vec<execution_log::Model>, ApiError>> {
        let first = match self.next().await? {
            Ok(line) => line,
            Err(error) => return Some(Err(error)),
        };
        let mut batch = Vec::with_capacity(max.min(PAGE as usize));
        batch.push(first);
        self.take_ready(&mut batch, max);
        // With no delay the deadline has passed already: each `next` is polled once (a
        // timeout polls what it wraps first), which takes what is ready without waiting.
        let deadline = tokio::time::Instant::now() + delay;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(Some(Ok(line))) => {
                    batch.push(line);
                    self.take_ready(&mut batch, max);
                }
                Ok(Some(Err(error))) => {
                    self.failed = Some(error);
                    break;
                }
                Ok(None) => {
                    self.finished = true;
                    break;
                }
                Err(_elapsed) => break,
            }
        }
        Some(Ok(batch))
    }
}

/// Starts following execution `id`'s lines after `after_seq` (counted as a `kind` subscription).
async fn log_follower(
    state: AppState,
    id: i64,
    after_seq: i64,
    kind: &'static str,
) -> Result<LogFollower, ApiError> {
    let deliveries = state.event_bus().subscribe(Topic::Execution(id));
    let mut follower = LogFollower {
        id,
        last: after_seq.max(0),
        deliveries,
        pending: VecDeque::new(),
        behind: false,
        ending: false,
        recheck: true,
        failed: None,
        finished: false,
        check: safety_check(),
        _counted: state.metrics().subscription(kind),
        state,
    };
    follower.check_state().await?;
    Ok(follower)
}

/// The log lines of execution `id` after `after_seq`, live until the execution ends.
pub async fn follow_logs(
    state: AppState,
    id: i64,
    after_seq: i64,
) -> Result<BoxStream<'static, Result<execution_log::Model, ApiError>>, ApiError> {
    let follower = log_follower(state, id, after_seq, "executionLogs").await?;
    Ok(
        futures::stream::unfold(follower, |mut follower| async move {
            follower.next().await.map(|item| (item, follower))
        })
        .boxed(),
    )
}

/// Most lines a batch may hold (`maxLines`).
pub const MAX_BATCH_LINES: usize = 10_000;
/// Longest a batch may wait for more lines (`maxDelayMs`).
pub const MAX_BATCH_DELAY: Duration = Duration::from_secs(5);

/// The log lines of execution `id` after `after_seq` in batches of consecutive lines (at most
/// `max_lines`, gathered for at most `max_delay` after the first), with the same guarantees
/// as [`follow_logs`]: each line exactly once, in order, whenever the subscriber joins.
pub async fn follow_log_batches(
    state: AppState,
    id: i64,
    after_seq: i64,
    max_lines: usize,
    max_delay: Duration,
) -> Result<BoxStream<'static, Result<Vec<execution_log::Model>, ApiError>>, ApiError> {
    if !(1..=MAX_BATCH_LINES).contains(&max_lines) {
        return Err(ApiError::bad_input(
            "maxLines",
            format!("must be between 1 and {MAX_BATCH_LINES}"),
        ));
    }
    if max_delay > MAX_BATCH_DELAY {
        return Err(ApiError::bad_input(
            "maxDelayMs",
            format!("must be between 0 and {}", MAX_BATCH_DELAY.as_millis()),
        ));
    }
    let follower = log_follower(state, id, after_seq, "executionLogBatches").await?;
    Ok(
        futures::stream::unfold(follower, move |mut follower| async move {
            if let Some(error) = follower.failed.take() {
                return Some((Err(error), follower));
            }
            if follower.finished {
                return None;
            }
            let batch = follower.next_batch(max_lines, max_delay).await?;
            Some((batch, follower))
        })
        .boxed(),
    )
}

/// Delivers an execution's state, then each later one.
struct StatusFollower {
    state: AppState,
    id: i64,
    last_rank: Option<u8>,
    deliveries: DeliveryStream,
    pending: VecDeque<execution::Model>,
    done: bool,
    check: Interval,
    _counted: SubscriptionGuard,
}

impl StatusFollower {
    fn offer(&mut self, row: execution::Model) {
        let rank = row.status.order();
        if self.last_rank.is_some_and(|last| rank <= last) {
            return;
        }
        self.last_rank = Some(rank);
        self.pending.push_back(row);
    }

    async fn next(&mut self) -> Option<Result<execution::Model, ApiError>> {
        loop {
            if let Some(row) = self.pending.pop_front() {
                self.done = row.status.is_final();
                return Some(Ok(row));
            }
            if self.done {
                return None;
            }
            tokio::select! {
                delivery = self.deliveries.next() => match delivery {
                    Some(Delivery::Event(Event::ExecutionStatus { execution })) => self.offer(*execution),
                    Some(Delivery::Event(_)) => {}
                    Some(Delivery::Missed(_)) => match load(&self.state, self.id).await {
                        Ok(row) => self.offer(row),
                        Err(error) => return Some(Err(error)),
                    },
                    None => return None,
                },
                _ = self.check.tick() => match load(&self.state, self.id).await {
                    Ok(row) => self.offer(row),
                    Err(error) => return Some(Err(error)),
                },
            }
        }
    }
}

/// The current state of execution `id`, then each transition; ends at the final state.
pub async fn follow_status(
    state: AppState,
    id: i64,
) -> Result<BoxStream<'static, Result<execution::Model, ApiError>>, ApiError> {
    let deliveries = state.event_bus().subscribe(Topic::Execution(id));
    let current = load(&state, id).await?;
    let mut follower = StatusFollower {
        id,
        last_rank: None,
        deliveries,
        pending: VecDeque::new(),
        done: false,
        check: safety_check(),
        _counted: state.metrics().subscription("executionStatus"),
        state,
    };
    follower.offer(current);
    Ok(
        futures::stream::unfold(follower, |mut follower| async move {
            follower.next().await.map(|item| (item, follower))
        })
        .boxed(),
    )
}
