//! Where and how runs run: the executor, parallelism, deadlines, leases and the scheduler.

use std::time::Duration;

use clap::ArgAction::Set;
use clap::{Args, ValueEnum};
use proctor_schema::executions::runner::RunSettings;
use proctor_schema::system::ExecutorKind;

use super::{ConfigError, boolean, choice, count, positive, seconds, text};

/// Runs, as given.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Runs and schedules")]
pub struct Runs {
    /// Where procs run: `local` processes or `kubernetes` Jobs.
    #[arg(long, env = "PROCTOR_EXECUTOR", default_value = "local", value_parser = choice::<Executor>)]
    pub executor: Executor,
    /// Runs at once; the rest wait as PENDING.
    #[arg(long, env = "PROCTOR_MAX_PARALLEL_RUNS", default_value = "16", value_parser = count)]
    pub max_parallel_runs: usize,
    /// Deadline in seconds of runs whose proc sets no timeoutSeconds.
    #[arg(long = "default-timeout-seconds", env = "PROCTOR_DEFAULT_TIMEOUT_SECONDS")]
    #[arg(default_value = "3600", value_parser = seconds)]
    pub default_timeout: Duration,
    /// Seconds between SIGTERM and SIGKILL when a local run is cancelled or times out.
    #[arg(long = "cancel-grace-seconds", env = "PROCTOR_CANCEL_GRACE_SECONDS")]
    #[arg(default_value = "10", value_parser = seconds)]
    pub cancel_grace: Duration,
    /// Log lines kept per execution; later output is replaced by one marker line.
    #[arg(long, env = "PROCTOR_LOG_MAX_LINES", default_value = "200000")]
    #[arg(value_parser = positive::<u64>)]
    pub log_max_lines: u64,
    /// This replica's id in execution leases (default: host name and a random suffix).
    /// A fixed id lets a restarted replica resume its own executions at once.
    #[arg(long, env = "PROCTOR_REPLICA_ID", value_parser = replica_id)]
    pub replica_id: Option<String>,
    /// Seconds a replica's claim on an execution lasts without renewal; another replica takes
    /// over after that.
    #[arg(long = "lease-seconds", env = "PROCTOR_LEASE_SECONDS", default_value = "15")]
    #[arg(value_parser = seconds)]
    pub lease: Duration,
    /// Whether this replica runs the scheduler (every replica may: each slot fires once).
    #[arg(long, env = "PROCTOR_SCHEDULER_ENABLED", default_value = "true", value_parser = boolean)]
    #[arg(action = Set)]
    pub scheduler_enabled: bool,
    /// Shortest interval between two fires of a non-administrator's schedule, in seconds.
    #[arg(long = "schedule-min-interval-seconds", env = "PROCTOR_SCHEDULE_MIN_INTERVAL_SECONDS")]
    #[arg(default_value = "60", value_parser = seconds_or_zero)]
    pub schedule_min_interval: Duration,
    /// The user local runs run as when proctord runs as root (`self`: proctord's own).
    #[arg(long, env = "PROCTOR_LOCAL_RUN_AS", default_value = "nobody", value_parser = text)]
    pub local_run_as: String,
}

/// Where procs run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    /// Local processes on the server's machine.
    Local,
    /// Kubernetes Jobs.
    #[value(alias = "k8s")]
    Kubernetes,
}

/// Runs, resolved.
#[derive(Clone, Debug)]
pub struct RunsSettings {
    /// Where procs run.
    pub executor: ExecutorKind,
    /// How the runner supervises runs (parallelism, log cap, lease, default deadline).
    pub supervision: RunSettings,
    /// This replica's id in execution leases.
    pub replica_id: String,
    /// Time a cancelled or timed-out local run gets between SIGTERM and SIGKILL.
    pub cancel_grace: Duration,
    /// Whether this replica runs the scheduler loop.
    pub scheduler_enabled: bool,
    /// Shortest interval between fires of a non-administrator's schedule.
    pub schedule_min_interval: Duration,
    /// The account local runs use when proctord runs as root.
    pub local_run_as: String,
}

impl Runs {
    /// Resolves the replica id (generated once when unset).
    pub fn validate(&self) -> Result<RunsSettings, ConfigError> {
        Ok(RunsSettings {
            executor: match self.executor {
                Executor::Local => ExecutorKind::Local,
                Executor::Kubernetes => ExecutorKind::Kubernetes,
            },
            supervision: RunSettings {
                max_parallel: self.max_parallel_runs,
                log_max_lines: self.log_max_lines,
                flush_interval: RunSettings::FLUSH_INTERVAL,
                lease: self.lease,
                default_timeout: self.default_timeout,
            },
            replica_id: self.replica_id.clone().unwrap_or_else(default_replica_id),
            cancel_grace: self.cancel_grace,
            scheduler_enabled: self.scheduler_enabled,
            schedule_min_interval: self.schedule_min_interval,
            local_run_as: self.local_run_as.clone(),
        })
    }
}

fn seconds_or_zero(raw: &str) -> Result<Duration, String> {
    raw.trim()
        .parse()
        .map(Duration::from_secs)
        .map_err(|_| format!("{raw:?} is not a number of seconds (0 or more)"))
}

fn replica_id(raw: &str) -> Result<String, String> {
    match raw.trim() {
        id if !id.is_empty() && id.len() <= 255 && !id.contains(char::is_whitespace) => {
            Ok(id.to_owned())
        }
        _ => Err("must be 1 to 255 characters without spaces".to_owned()),
    }
}

/// The host name with a random suffix: unique per process, recognisable per machine.
fn default_replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "proctord".to_owned());
    let mut suffix = [0_u8; 3];
    // Without randomness the process id still separates replicas on one host.
    let suffix = match getrandom::fill(&mut suffix) {
        Ok(()) => hex::encode(suffix),
        Err(_) => std::process::id().to_string(),
    };
    format!("{host}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_refused, refused, settings};
    use super::*;

    #[test]
    fn each_bad_value_names_its_setting() {
        assert_refused(
            "--executor=docker                      PROCTOR_EXECUTOR
             --max-parallel-runs=0                  PROCTOR_MAX_PARALLEL_RUNS
             --default-timeout-seconds=soon         PROCTOR_DEFAULT_TIMEOUT_SECONDS
             --cancel-grace-seconds=-1              PROCTOR_CANCEL_GRACE_SECONDS
             --log-max-lines=0                      PROCTOR_LOG_MAX_LINES
             --lease-seconds=0                      PROCTOR_LEASE_SECONDS
             --scheduler-enabled=sometimes          PROCTOR_SCHEDULER_ENABLED
             --schedule-min-interval-seconds=-1     PROCTOR_SCHEDULE_MIN_INTERVAL_SECONDS",
        );
        assert!(refused(&["--replica-id", "has space"]).starts_with("PROCTOR_REPLICA_ID"));
    }

    #[test]
    fn executors_take_any_case_and_the_v2_alias_and_replica_ids_are_unique() {
        for name in ["KUBERNETES", "k8s"] {
            let runs = settings(&["--executor", name]).unwrap().runs;
            assert_eq!(runs.executor, ExecutorKind::Kubernetes);
        }
        let runs = settings(&["--schedule-min-interval-seconds", "0"])
            .unwrap()
            .runs;
        assert_eq!(runs.schedule_min_interval, Duration::ZERO);
        assert_ne!(
            default_replica_id(),
            default_replica_id(),
            "unique per process"
        );
    }
}
