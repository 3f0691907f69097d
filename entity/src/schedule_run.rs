//! `schedule_runs`: the slots a schedule fired.

use sea_orm::entity::prelude::*;

use crate::values::RunOutcome;

/// One fired slot. `(schedule_id, slot)` is unique: inserting this row is how a scheduler
/// claims a slot, so a slot fires at most once even with several scheduler replicas.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "schedule_runs")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The schedule.
    pub schedule_id: i64,
    /// The slot time the cron expression produced.
    pub slot: DateTimeUtc,
    /// The execution started for it, if one was.
    pub execution_id: Option<i64>,
    /// When the scheduler actually fired it.
    pub fired_at: DateTimeUtc,
    /// What happened (started, skipped because of overlap, ...).
    pub outcome: RunOutcome,
    /// Why, in words, when it was skipped or did not start.
    pub detail: Option<String>,
    /// How each notification about the run's end went (channel, delivered, error).
    pub notifications: Option<Json>,
}

/// A run belongs to a schedule and may point at an execution.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The schedule.
    #[sea_orm(
        belongs_to = "super::schedule::Entity",
        from = "Column::ScheduleId",
        to = "super::schedule::Column::Id",
        on_delete = "Cascade"
    )]
    Schedule,
    /// The execution started for the slot.
    #[sea_orm(
        belongs_to = "super::execution::Entity",
        from = "Column::ExecutionId",
        to = "super::execution::Column::Id",
        on_delete = "SetNull"
    )]
    Execution,
}

impl Related<super::schedule::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Schedule.def()
    }
}

impl Related<super::execution::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Execution.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
