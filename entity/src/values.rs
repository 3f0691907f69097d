//! Closed sets of values stored as short strings, so both backends store them the same way
//! and a new variant never needs a database enum migration.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Where an execution is in its life cycle. See ARCHITECTURE.md, "Execution states".
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Persisted, not yet handed to the executor.
    #[sea_orm(string_value = "PENDING")]
    Pending,
    /// The executor accepted it and is creating the process or Job.
    #[sea_orm(string_value = "STARTING")]
    Starting,
    /// The process or pod is running.
    #[sea_orm(string_value = "RUNNING")]
    Running,
    /// Exited with code 0.
    #[sea_orm(string_value = "SUCCEEDED")]
    Succeeded,
    /// Exited non-zero or failed in the executor.
    #[sea_orm(string_value = "FAILED")]
    Failed,
    /// Killed by its deadline.
    #[sea_orm(string_value = "TIMED_OUT")]
    TimedOut,
    /// Cancelled by a user.
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
    /// The executor could not start it.
    #[sea_orm(string_value = "CREATION_FAILED")]
    CreationFailed,
    /// The executor lost track of it (e.g. its pod vanished while the server was down).
    #[sea_orm(string_value = "LOST")]
    Lost,
}

impl ExecutionStatus {
    /// Whether no further transition can happen.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Starting | Self::Running)
    }
}

/// What started an execution.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Trigger {
    /// A user through GraphQL or the CLI.
    #[sea_orm(string_value = "MANUAL")]
    Manual,
    /// The scheduler.
    #[sea_orm(string_value = "SCHEDULE")]
    Schedule,
    /// A legacy REST client or script.
    #[sea_orm(string_value = "API")]
    Api,
}

/// Which output stream a log line came from.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(8))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogStream {
    /// Standard output.
    #[sea_orm(string_value = "STDOUT")]
    Stdout,
    /// Standard error.
    #[sea_orm(string_value = "STDERR")]
    Stderr,
    /// Lines Proctor itself adds (e.g. the marker between retry attempts).
    #[sea_orm(string_value = "SYSTEM")]
    System,
}

/// What a schedule does when its previous run is still going at the next slot.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OverlapPolicy {
    /// Start another run anyway.
    #[sea_orm(string_value = "ALLOW")]
    Allow,
    /// Skip the slot.
    #[sea_orm(string_value = "FORBID")]
    Forbid,
    /// Cancel the running one, then start.
    #[sea_orm(string_value = "REPLACE")]
    Replace,
}

/// What became of one schedule slot (or manual trigger).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(64))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunOutcome {
    /// The slot started an execution.
    #[sea_orm(string_value = "STARTED")]
    Started,
    /// Somebody triggered the schedule by hand.
    #[sea_orm(string_value = "TRIGGERED")]
    Triggered,
    /// Skipped: the previous run was unfinished and the overlap policy is FORBID.
    #[sea_orm(string_value = "SKIPPED_OVERLAP")]
    SkippedOverlap,
    /// The run could not be created (see the execution's reason).
    #[sea_orm(string_value = "NOT_STARTED")]
    NotStarted,
    /// Skipped: the schedule's owner may no longer run the proc (or no longer exists).
    #[sea_orm(string_value = "SKIPPED_FORBIDDEN")]
    SkippedForbidden,
}

/// What a schedule does with slots missed while no scheduler was running.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CatchUpPolicy {
    /// Forget them.
    #[sea_orm(string_value = "SKIP")]
    Skip,
    /// Fire once for the most recent missed slot.
    #[sea_orm(string_value = "LAST")]
    Last,
    /// Fire every missed slot (bounded).
    #[sea_orm(string_value = "ALL")]
    All,
}
