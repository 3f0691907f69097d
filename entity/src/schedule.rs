//! `schedules`: cron-driven recurring executions.

use sea_orm::entity::prelude::*;

use crate::json::{ArgValues, StringList};
use crate::values::{CatchUpPolicy, OverlapPolicy};

/// A recurring execution of a proc.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "schedules")]
pub struct Model {
    /// Schedule id (64-bit, as legacy clients expect).
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The proc it runs; deleting the proc deletes its schedules.
    pub proc_id: i64,
    /// Argument values for every run.
    pub args: ArgValues,
    /// Cron expression as given (5 or 6 fields, or a descriptor such as `@daily`).
    pub cron: String,
    /// IANA time zone the expression is evaluated in.
    pub timezone: String,
    /// Free labels.
    pub tags: StringList,
    /// Label grouping schedules (legacy `group`); not an access group.
    pub group_name: Option<String>,
    /// Who is told about each run's outcome.
    pub notification_emails: StringList,
    /// Paused schedules keep their definition but do not fire.
    pub enabled: bool,
    /// What to do when the previous run is still going.
    pub overlap_policy: OverlapPolicy,
    /// What to do with slots missed while no scheduler ran.
    pub catch_up_policy: CatchUpPolicy,
    /// Next slot the scheduler will fire, precomputed for an indexed lookup.
    pub next_fire_at: Option<DateTimeUtc>,
    /// Who created it.
    pub created_by: Option<String>,
    /// Slack incoming webhook told about each run (a credential: never shown back).
    pub slack_webhook_url: Option<String>,
    /// URL a signed JSON notification is posted to after each run.
    pub webhook_url: Option<String>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last update time.
    pub updated_at: DateTimeUtc,
}

/// A schedule belongs to a proc and has runs.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The proc it runs.
    #[sea_orm(
        belongs_to = "super::proc::Entity",
        from = "Column::ProcId",
        to = "super::proc::Column::Id",
        on_delete = "Cascade"
    )]
    Proc,
    /// The slots it fired.
    #[sea_orm(has_many = "super::schedule_run::Entity")]
    ScheduleRun,
}

impl Related<super::proc::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Proc.def()
    }
}

impl Related<super::schedule_run::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ScheduleRun.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
