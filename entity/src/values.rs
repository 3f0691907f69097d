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

/// The life cycle, in one place: every name, order and allowed move of an execution's state is
/// decided here and nowhere else.
///
/// ```text
/// PENDING ─→ STARTING ─→ RUNNING ─→ SUCCEEDED | FAILED | TIMED_OUT | CANCELLED | LOST
///    │           └──────────────→ (any final state)
///    └─→ RUNNING | CANCELLED | CREATION_FAILED | LOST
/// ```
///
/// A final state never changes again. The runner stores a move as a conditional update from
/// [`ExecutionStatus::allowed_from`], so a late event can never overwrite a later state.
impl ExecutionStatus {
    /// The states a run can be in before it ends.
    pub const UNFINISHED: [Self; 3] = [Self::Pending, Self::Starting, Self::Running];

    /// The stable name (GraphQL, the database, metrics, messages).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Starting => "STARTING",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Cancelled => "CANCELLED",
            Self::CreationFailed => "CREATION_FAILED",
            Self::Lost => "LOST",
        }
    }

    /// Whether no further transition can happen.
    pub const fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Starting | Self::Running)
    }

    /// How far along the life cycle the state is; every allowed move goes up.
    pub const fn order(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Starting => 1,
            Self::Running => 2,
            _ => 3,
        }
    }

    /// Whether an execution in `self` may move to `next`.
    pub const fn may_become(self, next: Self) -> bool {
        match (self, next) {
            (Self::Pending, Self::Starting | Self::Running)
            | (Self::Pending, Self::Cancelled | Self::CreationFailed | Self::Lost)
            | (Self::Starting, Self::Running) => true,
            // Once the executor has it, any end is possible (a running one was created, so
            // it cannot fail to be); an unstarted run never reached the executor and so
            // cannot have an exit code or a deadline.
            (Self::Running, Self::CreationFailed) => false,
            (Self::Starting | Self::Running, next) => next.is_final(),
            _ => false,
        }
    }

    /// Checks a move; the error names both states.
    pub fn check_move(self, next: Self) -> Result<(), InvalidTransition> {
        if self.may_become(next) {
            Ok(())
        } else {
            Err(InvalidTransition {
                from: self,
                to: next,
            })
        }
    }

    /// Every state an execution may be in to move to `next` (what a conditional update
    /// filters on).
    pub fn allowed_from(next: Self) -> Vec<Self> {
        Self::UNFINISHED
            .into_iter()
            .filter(|from| from.may_become(next))
            .collect()
    }
}

/// A move the life cycle does not allow (see [`ExecutionStatus`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an execution cannot go from {} to {}", from.name(), to.name())]
pub struct InvalidTransition {
    /// The state it is in.
    pub from: ExecutionStatus,
    /// The state asked for.
    pub to: ExecutionStatus,
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

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveEnum, Iterable};

    use super::ExecutionStatus;

    #[test]
    fn each_status_has_one_name_in_storage_serde_and_messages() {
        for status in ExecutionStatus::iter() {
            assert_eq!(status.to_value(), status.name());
            assert_eq!(
                serde_json::to_value(status).expect("a unit variant serialises"),
                serde_json::Value::from(status.name())
            );
        }
    }

    #[test]
    fn final_states_never_move_and_moves_only_go_forward() {
        for from in ExecutionStatus::iter() {
            for to in ExecutionStatus::iter() {
                if from.may_become(to) {
                    assert!(!from.is_final(), "{from:?} is final but may become {to:?}");
                    assert!(from.order() < to.order(), "{from:?} → {to:?} goes back");
                    assert!(ExecutionStatus::allowed_from(to).contains(&from));
                } else {
                    assert!(!ExecutionStatus::allowed_from(to).contains(&from));
                }
            }
        }
        assert_eq!(
            ExecutionStatus::iter()
                .filter(|status| !status.is_final())
                .collect::<Vec<_>>(),
            ExecutionStatus::UNFINISHED
        );
    }

    #[test]
    fn a_move_the_life_cycle_does_not_allow_is_an_error_naming_both_states() {
        use ExecutionStatus::*;
        assert!(Pending.check_move(Starting).is_ok());
        assert!(Running.check_move(Succeeded).is_ok());
        let error = Succeeded
            .check_move(Running)
            .expect_err("a final state never moves");
        assert_eq!(
            error.to_string(),
            "an execution cannot go from SUCCEEDED to RUNNING"
        );
        assert!(Running.check_move(Starting).is_err(), "backwards");
        assert!(
            Running.check_move(CreationFailed).is_err(),
            "it was created"
        );
        assert!(Pending.check_move(Succeeded).is_err(), "never started");
        assert!(Cancelled.check_move(Lost).is_err());
    }
}
