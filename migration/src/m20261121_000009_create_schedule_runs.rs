//! Creates `schedule_runs`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000006_create_schedules::Schedules;
use crate::m20261121_000007_create_executions::Executions;

/// Creates the `schedule_runs` table. Its unique (schedule, slot) key is the claim that makes
/// each slot fire at most once across scheduler replicas.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ScheduleRuns::Table)
                    .col(big_pk_auto(ScheduleRuns::Id))
                    .col(big_integer(ScheduleRuns::ScheduleId))
                    .col(timestamp_with_time_zone(ScheduleRuns::Slot))
                    .col(big_integer_null(ScheduleRuns::ExecutionId))
                    .col(timestamp_with_time_zone(ScheduleRuns::FiredAt))
                    .col(string_len_null(ScheduleRuns::Outcome, 64))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_schedule_runs_schedule")
                            .from(ScheduleRuns::Table, ScheduleRuns::ScheduleId)
                            .to(Schedules::Table, Schedules::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_schedule_runs_execution")
                            .from(ScheduleRuns::Table, ScheduleRuns::ExecutionId)
                            .to(Executions::Table, Executions::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_schedule_runs_schedule_slot")
                    .table(ScheduleRuns::Table)
                    .col(ScheduleRuns::ScheduleId)
                    .col(ScheduleRuns::Slot)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ScheduleRuns::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ScheduleRuns {
    Table,
    Id,
    ScheduleId,
    Slot,
    ExecutionId,
    FiredAt,
    Outcome,
}
