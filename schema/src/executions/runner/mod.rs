//! The execution core: one path from a stored `PENDING` row to a final state.
//!
//! ```text
//!  GraphQL / REST / scheduler ──validate, authorise, audit──▶ Runner::submit (in their txn)
//!        │ commit                                                 │ PENDING row, lease, run spec
//!        ▼                                                        ▼
//!  Runner::hand_off ──▶ supervise: slot ▶ STARTING ▶ Executor::start(spec, cancel token)
//!                              │            RunEvents ─▶ transitions (state machine on
//!                              │                         `ExecutionStatus`) + log pipeline
//!                              ▼
//!                  final state + notification outbox (one txn) ─▶ publish ─▶ metrics
//! ```
//!
//! - [`submit`]: the only place a runnable execution is created (`PENDING` insert, lease, run
//!   spec) and handed to supervision.
//! - [`transition`]: the only place an execution's state is written, always a conditional move
//!   allowed by [`ExecutionStatus::may_become`](proctor_entity::values::ExecutionStatus), and
//!   the one place that reacts to a stored move (notification outbox, live delivery, metrics).
//! - [`supervise`]: waits for a slot, starts (or re-attaches) through the executor port, turns
//!   [`RunEvent`](crate::ports::executor::RunEvent)s into moves and output, and retries failed
//!   attempts for executors that do not retry themselves.
//! - [`log_pipeline`] / [`log_store`]: masking, splitting, truncation and fenced, exactly-once
//!   storage of output.
//! - [`lease`]: replica leases, take-over of orphaned runs, and re-attach.
//!
//! Ordering rules every subscriber relies on (see `stream`):
//! - log lines are stored before they are published, so a subscriber that sees a gap can
//!   always fill it from the database;
//! - the final status is stored after the last line, so once the database shows a final state
//!   it holds every line;
//! - transitions only move forward, so a late event can never overwrite a final state.
//!
//! Cancellation: the runner owns every run it supervises and its [`CancellationToken`];
//! executors keep no registry of their own. Cancelling the token makes the executor stop the
//! run (local: SIGTERM, then SIGKILL to its process group; Kubernetes: delete the Job) and end
//! its events with `Cancelled`.
//!
//! Replicas: exactly one replica supervises an execution, the one holding its lease
//! (`owner`, `lease_expires_at`). Every write a supervisor makes is fenced by
//! `owner = <this replica>`, so a replica that lost its lease cannot write once another has
//! taken over, and stops. Each batch of lines is stored with the executor's log cursor in one
//! transaction, so a new supervisor continues exactly after the last stored line.

mod lease;
mod log_pipeline;
mod log_store;
mod submit;
mod supervise;
mod transition;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

pub use submit::{NewExecution, PreparedRun, Submitted, prepare_run};
pub use transition::{
    InvalidMove, Outcome, announce, announce_final, cancel_unheld, publish, record_not_started,
};

use crate::ports::event_bus::{Delivery, Event, Topic};
use crate::ports::executor::{Executor, ExecutorError};
use crate::state::AppState;
use crate::system::ExecutorKind;

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
    /// The deadline of a run whose proc sets none. It covers the whole run, every attempt
    /// included (like a Kubernetes Job's `activeDeadlineSeconds`).
    pub default_timeout: Duration,
}

impl RunSettings {
    /// How long a line waits at most before it is stored and published (not a setting: it
    /// trades a little latency for far fewer writes, and 50 ms is below what a reader notices).
    pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
}

/// The name a run is known by outside Proctor: `EXECUTION_NAME` and the Kubernetes Job and
/// Secret names. A DNS label (at most 63 characters) holding the execution id and as much of
/// the proc name as fits.
pub fn run_name(proc_name: &str, execution_id: i64) -> String {
    let mut name = format!("proctor-{execution_id}-{proc_name}");
    name.truncate(MAX_NAME);
    name.trim_end_matches('-').to_owned()
}

/// Why a run is being stopped; the first reason given wins.
#[derive(Clone, Debug, Default)]
struct StopRequest {
    token: CancellationToken,
    reason: Arc<OnceLock<String>>,
}

impl StopRequest {
    fn request(&self, reason: &str) {
        let _ = self.reason.set(reason.to_owned());
        self.token.cancel();
    }

    fn reason(&self) -> &str {
        self.reason.get().map_or(CANCELLED_REASON, String::as_str)
    }
}

/// A run this replica supervises.
struct ActiveRun {
    stop: StopRequest,
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
    started_at: chrono::DateTime<chrono::Utc>,
    active: Mutex<HashMap<i64, ActiveRun>>,
    /// Cleared at shutdown: no new run is accepted or taken over.
    accepting: AtomicBool,
}

/// The reason recorded for a run a user cancelled.
pub const CANCELLED_REASON: &str = "cancelled";
/// The reason recorded for runs a shutdown stops.
pub const SHUTDOWN_REASON: &str = "server shut down";
/// Why a run that dies with its server is stopped when another replica took it over (its
/// end is recorded there).
const LET_GO_REASON: &str = "another replica took this run over";

impl Runner {
    /// A runner for replica `replica` using `executor`.
    pub fn new(executor: Arc<dyn Executor>, settings: RunSettings, replica: String) -> Arc<Self> {
        Arc::new(Self {
            executor,
            slots: Arc::new(Semaphore::new(settings.max_parallel)),
            settings,
            replica,
            started_at: chrono::Utc::now(),
            active: Mutex::new(HashMap::new()),
            accepting: AtomicBool::new(true),
        })
    }

    /// Which executor runs procs.
    pub fn executor_kind(&self) -> ExecutorKind {
        self.executor.kind()
    }

    /// Whether the executor's backend answers.
    pub async fn check_executor(&self) -> Result<(), ExecutorError> {
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

    /// Whether new runs are accepted (false once shutdown began).
    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// How many runs this replica supervises right now.
    pub fn supervised(&self) -> usize {
        self.active().len()
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<i64, ActiveRun>> {
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops a run supervised by this replica, recording `reason`; `false` if it is not here.
    pub fn cancel_here(&self, execution_id: i64, reason: &str) -> bool {
        match self.active().get(&execution_id) {
            Some(run) => {
                run.stop.request(reason);
                true
            }
            None => false,
        }
    }

    /// Acts on cancellation requests published by other replicas, until the bus closes.
    pub async fn serve_cancel_requests(self: Arc<Self>, state: AppState) {
        let mut requests = state.event_bus().subscribe(Topic::Control);
        while let Some(delivery) = requests.next().await {
            if let Delivery::Event(Event::CancelRequested {
                execution_id,
                reason,
            }) = delivery
            {
                self.cancel_here(execution_id, reason.as_deref().unwrap_or(CANCELLED_REASON));
            }
        }
    }

    /// Stops accepting runs, then ends this replica's supervision cleanly:
    ///
    /// - runs that outlive their server (Kubernetes Jobs) are let go: their leases are released
    ///   so another replica (or this one, restarted) re-attaches at once;
    /// - runs that die with it (local processes) get `grace` to finish; the rest are stopped
    ///   (SIGTERM, then SIGKILL to the process group) and recorded as `CANCELLED` with the
    ///   reason "server shut down". Returns once every one of them is recorded (or after a
    ///   further bounded wait for the executor to report).
    pub async fn shutdown(self: &Arc<Self>, state: &AppState, grace: Duration) {
        self.accepting.store(false, Ordering::SeqCst);
        if self.executor.runs_outlive_server() {
            let ids: Vec<i64> = {
                let mut active = self.active();
                active
                    .drain()
                    .map(|(id, run)| {
                        run.task.abort();
                        id
                    })
                    .collect()
            };
            lease::release(state, &self.replica, &ids).await;
            return;
        }
        let waited = tokio::time::timeout(grace, self.idle()).await;
        if waited.is_err() {
            let running = self.supervised();
            tracing::warn!(
                runs = running,
                grace_seconds = grace.as_secs(),
                "shutdown grace over; stopping the remaining local runs"
            );
            for run in self.active().values() {
                run.stop.request(SHUTDOWN_REASON);
            }
            // The executor's own SIGTERM→SIGKILL grace plus storing the end.
            let _ = tokio::time::timeout(Duration::from_secs(60), self.idle()).await;
        }
    }

    /// Completes once this replica supervises no run.
    async fn idle(&self) {
        while self.supervised() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests;
