//! The executor port: where a run actually happens (local processes or Kubernetes Jobs).
//!
//! The domain persists an execution as `PENDING`, hands the executor a [`RunSpec`] and turns
//! the [`RunEvent`]s it yields into persisted transitions and log lines. Implementations live
//! in `proctor-server`: the local-process executor and the Kubernetes Job executor.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use proctor_entity::values::LogStream;

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

/// How far into a run's output the stored lines reach: the source (a pod, an attempt) and how
/// many of its raw lines were consumed. Stored with every batch of lines, so a run re-attached
/// after a restart continues exactly where the stored output ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCursor {
    /// The output source, e.g. a pod name.
    pub source: String,
    /// Raw lines of `source` consumed so far.
    pub offset: u64,
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
}

/// What happens to a run, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEvent {
    /// The process or pod is running; `executor_ref` finds it again after a restart.
    Started {
        /// Local pid or Kubernetes Job name.
        executor_ref: String,
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

/// Runs procs. Selected by `PROCTOR_EXECUTOR`.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Which implementation this is (reported by `serverInfo`).
    fn kind(&self) -> ExecutorKind;

    /// Starts a run and returns its events.
    async fn start(&self, spec: RunSpec) -> Result<RunEvents, ExecutorError>;

    /// Whether the executor's backend answers (used by `/readyz`); local processes always do.
    async fn check(&self) -> Result<(), ExecutorError> {
        Ok(())
    }

    /// Asks a run to stop; its event stream then ends with [`RunEvent::Cancelled`].
    async fn cancel(&self, execution_id: i64, executor_ref: &str) -> Result<(), ExecutorError>;

    /// Re-attaches to a run whose supervisor went away (a restart, a dead replica). Output up
    /// to `cursor` is already stored and must not be emitted again.
    async fn reattach(
        &self,
        execution_id: i64,
        executor_ref: &str,
        cursor: Option<LogCursor>,
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
        };
        let printed = format!("{spec:?}");
        assert!(printed.contains("staging"), "{printed}");
        assert!(!printed.contains("sk-live-123"), "{printed}");
        assert_eq!(spec.env[1].1.expose(), "sk-live-123");
    }
}
