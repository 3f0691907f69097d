//! Creates `executions`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_procs::Procs;
use crate::m20261121_000006_create_schedules::Schedules;

/// Creates the `executions` table and the indexes its list queries use.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Executions::Table)
                    .col(big_pk_auto(Executions::Id))
                    .col(big_integer_null(Executions::ProcId))
                    .col(string_len(Executions::ProcName, 63))
                    .col(json_binary(Executions::Args))
                    .col(string_len(Executions::Status, 32))
                    .col(string_len(Executions::Trigger, 16))
                    .col(big_integer_null(Executions::ScheduleId))
                    .col(string_len_null(Executions::UserEmail, 320))
                    .col(string_len_null(Executions::Image, 512))
                    .col(string_len_null(Executions::ExecutorRef, 255))
                    .col(integer_null(Executions::ExitCode))
                    .col(text_null(Executions::Reason))
                    .col(timestamp_with_time_zone(Executions::CreatedAt))
                    .col(timestamp_with_time_zone_null(Executions::StartedAt))
                    .col(timestamp_with_time_zone_null(Executions::FinishedAt))
                    .col(timestamp_with_time_zone(Executions::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_executions_proc")
                            .from(Executions::Table, Executions::ProcId)
                            .to(Procs::Table, Procs::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_executions_schedule")
                            .from(Executions::Table, Executions::ScheduleId)
                            .to(Schedules::Table, Schedules::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        // Lists are newest first (id descending) and filter by proc, status, user, schedule
        // and creation time; each index serves one filter plus the ordering.
        for (name, first) in [
            ("ix_executions_proc_id", Executions::ProcName),
            ("ix_executions_status_id", Executions::Status),
            ("ix_executions_user_id", Executions::UserEmail),
            ("ix_executions_schedule_id", Executions::ScheduleId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Executions::Table)
                        .col(first)
                        .col(Executions::Id)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ix_executions_created_at")
                    .table(Executions::Table)
                    .col(Executions::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Executions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub(crate) enum Executions {
    Table,
    Id,
    ProcId,
    ProcName,
    Args,
    Status,
    Trigger,
    ScheduleId,
    UserEmail,
    Image,
    ExecutorRef,
    ExitCode,
    Reason,
    CreatedAt,
    StartedAt,
    FinishedAt,
    UpdatedAt,
}
