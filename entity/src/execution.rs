//! `executions`: one row per run of a proc.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::json::ArgValues;
use crate::values::{ExecutionStatus, Trigger};

/// One run of a proc. The id is a 64-bit integer because legacy clients parse it as a number.
/// Serialisable because status events carry the whole row to subscribers on every replica.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "executions")]
pub struct Model {
    /// Execution id, increasing with creation order.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The proc it ran; cleared if the proc is deleted later.
    pub proc_id: Option<i64>,
    /// The proc's name, kept for history after a proc is deleted.
    pub proc_name: String,
    /// User-supplied argument values (secrets are never stored here).
    pub args: ArgValues,
    /// Current state.
    pub status: ExecutionStatus,
    /// What started it.
    pub trigger: Trigger,
    /// The schedule that fired it, if any.
    pub schedule_id: Option<i64>,
    /// Who started it.
    pub user_email: Option<String>,
    /// The image it ran (legacy `image_tag`).
    pub image: Option<String>,
    /// Kubernetes Job name or local process id.
    pub executor_ref: Option<String>,
    /// Process exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Why it failed, timed out or was cancelled.
    pub reason: Option<String>,
    /// When it was submitted.
    pub created_at: DateTimeUtc,
    /// When the process or pod started running.
    pub started_at: Option<DateTimeUtc>,
    /// When it reached a final state.
    pub finished_at: Option<DateTimeUtc>,
    /// Last change of any column.
    pub updated_at: DateTimeUtc,
    /// The replica supervising it; only the owner writes its state and output.
    pub owner: Option<String>,
    /// Until when the owner's claim holds; afterwards another replica may take over.
    pub lease_expires_at: Option<DateTimeUtc>,
    /// Which output source (e.g. pod) the stored lines have reached.
    pub log_source: Option<String>,
    /// How many raw lines of `log_source` are stored (or, with `log_since`, how many stored
    /// lines carry exactly that timestamp); a re-attached run skips them.
    pub log_offset: i64,
    /// The timestamp of the last stored line of `log_source`, when the executor reads
    /// timestamped output (Kubernetes): a re-attached run continues from it, which survives
    /// log rotation.
    #[serde(default)]
    pub log_since: Option<DateTimeUtc>,
    /// Output lines that could not be stored and were lost (a marker line says where).
    #[serde(default)]
    pub log_lines_lost: i64,
    /// Which key sealed `mask_sealed`.
    #[serde(skip)]
    pub mask_key_id: Option<String>,
    /// The secret values the run started with (a JSON list, encrypted), so whoever supervises
    /// it masks exactly those; never sent on the event bus.
    #[serde(skip)]
    pub mask_sealed: Option<Vec<u8>>,
    /// Attempts so far: 1, plus one per retry of a failed attempt.
    #[serde(default = "first_attempt")]
    pub attempts: i32,
    /// The version of its proc it ran (none for runs stored before versions were kept).
    #[serde(default)]
    pub proc_version: Option<i32>,
}

fn first_attempt() -> i32 {
    1
}

/// An execution refers to its proc and schedule and owns its log lines.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The proc it ran.
    #[sea_orm(
        belongs_to = "super::proc::Entity",
        from = "Column::ProcId",
        to = "super::proc::Column::Id",
        on_delete = "SetNull"
    )]
    Proc,
    /// The schedule that fired it.
    #[sea_orm(
        belongs_to = "super::schedule::Entity",
        from = "Column::ScheduleId",
        to = "super::schedule::Column::Id",
        on_delete = "SetNull"
    )]
    Schedule,
    /// Its log lines.
    #[sea_orm(has_many = "super::execution_log::Entity")]
    ExecutionLog,
}

impl Related<super::proc::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Proc.def()
    }
}

impl Related<super::schedule::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Schedule.def()
    }
}

impl Related<super::execution_log::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ExecutionLog.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
