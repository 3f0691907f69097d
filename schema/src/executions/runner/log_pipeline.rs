//! Output on its way to the database and the bus: masking (across cut lines), NUL
//! replacement, splitting of over-long lines, the per-execution line limit, and when to flush.
//!
//! Invariants: every line gets the next `seq` (from 1, no gaps, a lost line is replaced by a
//! marker of the same `seq`); nothing is published that is not stored; a flush that fails keeps
//! the lines for the next attempt, and the end of a run waits (bounded) for the database.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use proctor_entity::values::LogStream;

use super::RunSettings;
use crate::alerts::AlertWatch;
use crate::error::ApiError;
use crate::executions::shaping::{Masker, split_long};
use crate::ports::event_bus::{Event, LogRecord};
use crate::ports::executor::LogCursor;
use crate::state::AppState;

use super::transition::publish;

/// Lines stored per INSERT (and published per event).
pub(super) const BATCH_LINES: usize = 500;
/// How long a failed log write is retried at the end of a run before lines are given up.
const FINAL_FLUSH_PATIENCE: Duration = Duration::from_secs(30);

/// What became of a flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flushed {
    /// Stored and published (or nothing to do).
    Done,
    /// The database refused; the lines stay buffered for the next attempt.
    Retry,
    /// This replica no longer owns the execution; nothing was written.
    Fenced,
}

/// Output on its way to the database and the bus.
pub(super) struct LogPipeline {
    pub(super) state: AppState,
    pub(super) execution_id: i64,
    pub(super) owner: String,
    masker: Masker,
    max_lines: u64,
    flush_interval: Duration,
    next_seq: i64,
    pub(super) buffer: Vec<LogRecord>,
    /// The executor's position after the newest buffered line.
    pub(super) cursor: Option<LogCursor>,
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
    pub(super) unrecorded_lost: i64,
    /// The proc's live log alert rules: `None` until the first stored batch reads them.
    alerts: Option<Option<AlertWatch>>,
}

/// How an executor delivered a piece of output.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Piece {
    /// The line goes on in the next piece of its stream.
    pub(super) continues: bool,
    /// The executor replaced bytes that were not UTF-8.
    pub(super) replaced: bool,
}

/// Failed attempts after which a batch is stored line by line, so one line the database
/// refuses cannot hold back every line after it.
const FAILURES_BEFORE_SINGLE_LINES: u32 = 3;

impl LogPipeline {
    pub(super) fn new(
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
            alerts: None,
        }
    }

    /// Queues a line (masked, split if over-long); `true` when the buffer should be flushed now.
    /// A NUL character (which Postgres cannot store) becomes U+FFFD and the line is marked.
    pub(super) fn push(
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

    /// Queues a line Proctor itself adds (e.g. an attempt marker); `true` when the buffer
    /// should be flushed now.
    pub(super) fn system(&mut self, line: String) -> bool {
        self.push(LogStream::System, line, None, Piece::default())
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
    pub(super) async fn flush(&mut self) -> Flushed {
        if self.buffer.is_empty() {
            return Flushed::Done;
        }
        let stored = if self.failures >= FAILURES_BEFORE_SINGLE_LINES {
            self.store_line_by_line().await.map_err(ApiError::from)
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
        self.raise_alerts(&lines).await;
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

    /// Watches `rules` (the proc's, as the run was submitted) instead of reading them.
    pub(super) fn watch_alerts(
        &mut self,
        rules: Option<&proctor_entity::json::AlertRules>,
        execution: &proctor_entity::execution::Model,
    ) {
        self.alerts = Some(rules.and_then(|rules| AlertWatch::of(execution, rules)));
    }

    /// Evaluates the proc's alert rules on `lines` (just stored) and sends what they raise. A
    /// failure is logged here and never holds up the output.
    async fn raise_alerts(&mut self, lines: &[LogRecord]) {
        if self.alerts.is_none() {
            let loaded = match AlertWatch::load(&self.state, self.execution_id).await {
                Ok(watch) => watch,
                Err(error) => {
                    tracing::warn!(execution.id = self.execution_id, %error, "cannot read the proc's alert rules; trying again with the next lines");
                    return;
                }
            };
            self.alerts = Some(loaded);
        }
        let Some(Some(watch)) = &mut self.alerts else {
            return;
        };
        let raised = watch.evaluate(lines);
        if let Err(error) = watch.send(&self.state, self.execution_id, raised).await {
            tracing::warn!(execution.id = self.execution_id, %error, "cannot queue a live log alert");
        }
    }

    /// Stores what is left, retrying for a while if the database is away.
    pub(super) async fn finish(&mut self) -> Flushed {
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
