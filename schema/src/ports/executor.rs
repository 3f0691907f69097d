//! The executor port: where a run actually happens (local processes or Kubernetes Jobs).
//!
//! The domain persists an execution as `PENDING`, hands the executor a [`RunSpec`] with the
//! run's [`CancellationToken`] and turns the [`RunEvent`]s it yields into persisted
//! transitions and log lines. The runner owns every run; an executor keeps no registry of its
//! own: cancelling the token is how a run is stopped (the events then end with
//! [`RunEvent::Cancelled`]), the same for every implementation.
//!
//! Implementations live in `proctor-server` (local processes, Kubernetes Jobs); a scripted
//! one for tests is [`scripted`](crate::ports::scripted_executor) (feature `testing`).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use proctor_entity::values::LogStream;
use tokio_util::sync::CancellationToken;

use crate::system::ExecutorKind;

/// A value passed to a run's environment. Secret values never appear in `Debug` output, so a
/// logged `RunSpec` cannot leak them.
#[derive(Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// An argument or context variable.
    Plain(String),
    /// A decrypted secret.
    Secret(String),
}

impl EnvValue {
    /// The value to hand to the process or container.
    pub fn expose(&self) -> &str {
        match self {
            Self::Plain(value) | Self::Secret(value) => value,
        }
    }
}

impl fmt::Debug for EnvValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(value) => fmt::Debug::fmt(value, f),
            Self::Secret(_) => f.write_str("\"***\""),
        }
    }
}

/// How far into a run's output the stored lines reach: the source (a pod, an attempt) and
/// where in it. Stored with every batch of lines, so a run re-attached after a restart
/// continues exactly where the stored output ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCursor {
    /// The output source, e.g. a pod name.
    pub source: String,
    /// With `since`: lines of `source` stamped exactly `since` that were consumed. Without:
    /// raw lines of `source` consumed from its start.
    pub offset: u64,
    /// The timestamp of the last consumed line, for timestamped output (Kubernetes logs read
    /// with `timestamps=true`): re-reading from it survives log rotation.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// Everything an executor needs to start one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// The execution this run belongs to.
    pub execution_id: i64,
    /// The proc's name (labels, Job names).
    pub proc_name: String,
    /// Container image (Kubernetes).
    pub image: Option<String>,
    /// argv to run (local) or the container command override (Kubernetes).
    pub command: Option<Vec<String>>,
    /// Environment: arguments, then secrets, then context variables (later wins).
    pub env: Vec<(String, EnvValue)>,
    /// The proc's own deadline; the executor's configured default applies when absent.
    pub timeout: Option<Duration>,
    /// The proc's own retries after a failed attempt; the executor's default when absent.
    pub retries: Option<u32>,
    /// CPU and memory (Kubernetes requests and limits); local runs ignore them.
    pub resources: Option<proctor_entity::json::Resources>,
    /// For the runner, executors ignore it: the audience of the identity token the runner
    /// adds to `env` when the run starts.
    pub identity_audience: Option<Vec<String>>,
    /// For the runner, executors ignore it: the proc's live log alert rules.
    pub alerts: Option<proctor_entity::json::AlertRules>,
}

/// What happens to a run, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEvent {
    /// The process or pod is running; `executor_ref` finds it again after a restart.
    Started {
        /// Local pid or Kubernetes Job name.
        executor_ref: String,
    },
    /// The executor started attempt `number` (2, 3, …) of the run after a failed one (a
    /// Kubernetes Job's `backoffLimit`); the runner writes the marker line and counts it.
    Attempt {
        /// The attempt now starting.
        number: u32,
        /// What distinguishes it, e.g. the pod; may be empty.
        detail: String,
    },
    /// One output line.
    Log {
        /// Which stream.
        stream: LogStream,
        /// The line without its newline.
        line: String,
        /// The position after this line, for executors that can re-attach.
        cursor: Option<LogCursor>,
        /// The line goes on in the next `Log` of this stream (the executor cut an over-long
        /// line); secrets are masked across the cut.
        continues: bool,
        /// Bytes that were not UTF-8 were replaced by U+FFFD.
        replaced: bool,
    },
    /// The run exited on its own.
    Exited {
        /// Exit code (0 is success).
        code: i32,
    },
    /// The run could not be started or failed in the executor.
    Failed {
        /// Why, in words an operator can act on.
        reason: String,
    },
    /// The deadline killed it.
    TimedOut {
        /// The deadline, when known.
        limit: Option<Duration>,
        /// What kept the run from finishing in time, when the executor knows (e.g. its pod
        /// was never scheduled).
        cause: Option<String>,
    },
    /// A cancel request killed it.
    Cancelled,
    /// The executor can no longer see it.
    Lost {
        /// What was observed.
        reason: String,
    },
}

/// The events of one run; ends after the final event.
pub type RunEvents = BoxStream<'static, RunEvent>;

/// Why an executor call failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The run could not be created (bad command, API refused the Job, …).
    #[error("could not start the run: {0}")]
    Start(String),
    /// The run is not known to the executor.
    #[error("run not found: {0}")]
    NotFound(String),
    /// The executor's backend is unreachable.
    #[error("executor unavailable: {0}")]
    Unavailable(String),
}

/// A run a previous supervisor started, as stored on its execution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRef {
    /// The execution.
    pub execution_id: i64,
    /// What [`RunEvent::Started`] reported (empty when the run was never seen starting).
    pub executor_ref: String,
    /// How far its stored output reaches; output up to it must not be emitted again.
    pub cursor: Option<LogCursor>,
}

/// The part of a stored executor reference people see: a local run is stored as
/// `<pid>:<start time>` (so a restarted server can tell it from a later process with the same
/// pid) and shown as its pid; a Kubernetes Job name (a DNS label, never holding `:`) as is.
pub fn shown_ref(stored: &str) -> &str {
    stored.split(':').next().unwrap_or(stored)
}

/// Runs procs. Selected by `PROCTOR_EXECUTOR`.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Which implementation this is (reported by `serverInfo`).
    fn kind(&self) -> ExecutorKind;

    /// Whether the executor starts a failed attempt again itself (a Kubernetes Job's
    /// `backoffLimit`); otherwise the runner does, up to [`RunSpec::retries`] times, giving
    /// each attempt what is left of the run's deadline as its timeout.
    fn retries_attempts(&self) -> bool {
        false
    }

    /// Whether a run goes on without its server (a Kubernetes Job), so a shutdown leaves it
    /// to be re-attached; otherwise (local processes) a shutdown stops it.
    fn runs_outlive_server(&self) -> bool {
        false
    }

    /// Starts a run and returns its events. Cancelling `cancel` stops it; its events then end
    /// with [`RunEvent::Cancelled`] (or the end that came first).
    async fn start(
        &self,
        spec: RunSpec,
        cancel: CancellationToken,
    ) -> Result<RunEvents, ExecutorError>;

    /// Whether the executor's backend answers (used by `/readyz`); local processes always do.
    async fn check(&self) -> Result<(), ExecutorError> {
        Ok(())
    }

    /// Re-attaches to a run whose supervisor went away (a restart, a dead replica), with the
    /// same cancellation contract as [`Executor::start`]. An executor whose runs cannot be
    /// followed again makes sure the run is gone and says so in the error.
    async fn reattach(
        &self,
        run: RunRef,
        cancel: CancellationToken,
    ) -> Result<RunEvents, ExecutorError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_spec_debug_masks_secret_values_but_shows_arguments() {
        let spec = RunSpec {
            execution_id: 1,
            proc_name: "deploy".into(),
            image: None,
            command: Some(vec!["./deploy.sh".into()]),
            env: vec![
                ("TARGET".into(), EnvValue::Plain("staging".into())),
                ("API_KEY".into(), EnvValue::Secret("sk-live-123".into())),
            ],
            timeout: Some(Duration::from_secs(60)),
            retries: None,
            resources: None,
            identity_audience: None,
            alerts: None,
        };
        let printed = format!("{spec:?}");
        assert!(printed.contains("staging"), "{printed}");
        assert!(!printed.contains("sk-live-123"), "{printed}");
        assert_eq!(spec.env[1].1.expose(), "sk-live-123");
    }
}
