//! Creates `schedules`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_procs::Procs;

/// Creates the `schedules` table.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Schedules::Table)
                    .col(big_pk_auto(Schedules::Id))
                    .col(big_integer(Schedules::ProcId))
                    .col(json_binary(Schedules::Args))
                    .col(string_len(Schedules::Cron, 255))
                    .col(string_len(Schedules::Timezone, 64))
                    .col(json_binary(Schedules::Tags))
                    .col(string_len_null(Schedules::GroupName, 255))
                    .col(json_binary(Schedules::NotificationEmails))
                    .col(boolean(Schedules::Enabled).default(true))
                    .col(string_len(Schedules::OverlapPolicy, 16))
                    .col(string_len(Schedules::CatchUpPolicy, 16))
                    .col(timestamp_with_time_zone_null(Schedules::NextFireAt))
                    .col(string_len_null(Schedules::CreatedBy, 320))
                    .col(timestamp_with_time_zone(Schedules::CreatedAt))
                    .col(timestamp_with_time_zone(Schedules::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_schedules_proc")
                            .from(Schedules::Table, Schedules::ProcId)
                            .to(Procs::Table, Procs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The scheduler asks "which enabled schedules fire next".
        manager
            .create_index(
                Index::create()
                    .name("ix_schedules_enabled_next_fire")
                    .table(Schedules::Table)
                    .col(Schedules::Enabled)
                    .col(Schedules::NextFireAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_schedules_proc")
                    .table(Schedules::Table)
                    .col(Schedules::ProcId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Schedules::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub(crate) enum Schedules {
    Table,
    Id,
    ProcId,
    Args,
    Cron,
    Timezone,
    Tags,
    GroupName,
    NotificationEmails,
    Enabled,
    OverlapPolicy,
    CatchUpPolicy,
    NextFireAt,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}
