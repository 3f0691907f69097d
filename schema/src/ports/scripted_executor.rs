//! An executor that plays scripts: the fake behind the runner's unit tests (feature `testing`,
//! or this crate's own tests).
//!
//! Each `start` takes the next [`Attempt`] queued with [`ScriptedExecutor::push`] (a script, or a
//! refusal to start); with none queued it plays [`Script::succeeds`]. A script is a list of
//! [`Step`]s played in order. It keeps the executor contract like a real one: cancelling the
//! token ends the events with [`RunEvent::Cancelled`] at the next step (a pause is cut short),
//! and a run given a `timeout` ends with [`RunEvent::TimedOut`] when it runs out.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use proctor_entity::values::LogStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::executor::{Executor, ExecutorError, RunEvent, RunEvents, RunRef, RunSpec};
use crate::system::ExecutorKind;

/// One step of a script.
#[derive(Clone, Debug)]
pub enum Step {
    /// Emit this event.
    Emit(RunEvent),
    /// Wait this long (cut short by a cancellation or the timeout).
    Pause(Duration),
    /// Wait until cancelled (or timed out).
    UntilCancelled,
}

/// What one run (or attempt) does.
#[derive(Clone, Debug, Default)]
pub struct Script {
    steps: Vec<Step>,
}

impl Script {
    /// An empty script (its events end without a final event, like a vanished executor).
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts, then exits 0.
    pub fn succeeds() -> Self {
        Self::new().started("scripted").exits(0)
    }

    /// Adds a step.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Reports the run started as `reference`.
    pub fn started(self, reference: &str) -> Self {
        self.step(Step::Emit(RunEvent::Started {
            executor_ref: reference.to_owned(),
        }))
    }

    /// A whole stdout line.
    pub fn line(self, text: &str) -> Self {
        self.output(LogStream::Stdout, text, false)
    }

    /// A piece of output on `stream`; `continues` when the line goes on in the next piece.
    pub fn output(self, stream: LogStream, text: &str, continues: bool) -> Self {
        self.step(Step::Emit(RunEvent::Log {
            stream,
            line: text.to_owned(),
            cursor: None,
            continues,
            replaced: false,
        }))
    }

    /// Waits `millis` milliseconds.
    pub fn pause(self, millis: u64) -> Self {
        self.step(Step::Pause(Duration::from_millis(millis)))
    }

    /// Waits until cancelled.
    pub fn until_cancelled(self) -> Self {
        self.step(Step::UntilCancelled)
    }

    /// Exits with `code`.
    pub fn exits(self, code: i32) -> Self {
        self.step(Step::Emit(RunEvent::Exited { code }))
    }
}

/// What one `start` does.
#[derive(Clone, Debug)]
pub enum Attempt {
    /// Play this script.
    Run(Script),
    /// Refuse to start, with this reason.
    Refuse(String),
}

/// Plays scripts; see the module docs.
#[derive(Default)]
pub struct ScriptedExecutor {
    queued: Mutex<VecDeque<Attempt>>,
    started: Mutex<Vec<RunSpec>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ScriptedExecutor {
    /// An executor whose runs behave like local processes (the runner retries them, they end
    /// with the server).
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues what the next `start` does.
    pub fn push(&self, attempt: Attempt) -> &Self {
        lock(&self.queued).push_back(attempt);
        self
    }

    /// Queues a script for the next `start`.
    pub fn script(&self, script: Script) -> &Self {
        self.push(Attempt::Run(script))
    }

    /// Every spec `start` was called with, in order.
    pub fn starts(&self) -> Vec<RunSpec> {
        lock(&self.started).clone()
    }
}

#[async_trait]
impl Executor for ScriptedExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Local
    }

    async fn start(
        &self,
        spec: RunSpec,
        cancel: CancellationToken,
    ) -> Result<RunEvents, ExecutorError> {
        let timeout = spec.timeout;
        lock(&self.started).push(spec);
        let attempt = lock(&self.queued)
            .pop_front()
            .unwrap_or(Attempt::Run(Script::succeeds()));
        match attempt {
            Attempt::Refuse(reason) => Err(ExecutorError::Start(reason)),
            Attempt::Run(script) => Ok(play(script, cancel, timeout)),
        }
    }

    async fn reattach(
        &self,
        run: RunRef,
        _cancel: CancellationToken,
    ) -> Result<RunEvents, ExecutorError> {
        Err(ExecutorError::NotFound(format!(
            "scripted run {} cannot be re-attached",
            run.execution_id
        )))
    }
}

/// Plays `script` in the background, as a real executor's follower task would.
fn play(script: Script, cancel: CancellationToken, timeout: Option<Duration>) -> RunEvents {
    let (events, receiver) = mpsc::channel(1024);
    let deadline = timeout.map(|limit| (Instant::now() + limit, limit));
    tokio::spawn(async move {
        let far = Instant::now() + Duration::from_secs(86_400);
        let until = deadline.map_or(far, |(at, _)| at);
        let timed_out = RunEvent::TimedOut {
            limit: deadline.map(|(_, limit)| limit),
            cause: None,
        };
        for step in script.steps {
            if cancel.is_cancelled() {
                let _ = events.send(RunEvent::Cancelled).await;
                return;
            }
            if Instant::now() >= until {
                let _ = events.send(timed_out).await;
                return;
            }
            let wait = match step {
                Step::Emit(event) => {
                    if events.send(event).await.is_err() {
                        return;
                    }
                    continue;
                }
                Step::Pause(pause) => Instant::now() + pause,
                Step::UntilCancelled => far,
            };
            tokio::select! {
                () = tokio::time::sleep_until(wait.min(until)) => {}
                () = cancel.cancelled() => {}
            }
        }
        if cancel.is_cancelled() {
            let _ = events.send(RunEvent::Cancelled).await;
        } else if Instant::now() >= until {
            let _ = events.send(timed_out).await;
        }
    });
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (event, receiver))
    })
    .boxed()
}
