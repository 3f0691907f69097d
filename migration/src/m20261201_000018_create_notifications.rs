//! Notifications for every run, durably: `procs.notifications` (who hears about a proc's runs,
//! on which final states) and the `notifications` outbox, written in the transaction that
//! stores an execution's final state and delivered at least once by any replica.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000001_create_procs::Procs;
use crate::m20261121_000007_create_executions::Executions;

/// Adds `procs.notifications` and creates `notifications`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Procs::Table)
                    .add_column(json_binary_null(ProcNotifications::Notifications))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(big_pk_auto(Notifications::Id))
                    .col(big_integer(Notifications::ExecutionId))
                    .col(string_len(Notifications::Channel, 16))
                    .col(text_null(Notifications::Target))
                    .col(string_len_uniq(Notifications::IdempotencyKey, 128))
                    .col(string_len(Notifications::State, 16))
                    .col(integer(Notifications::Attempts).default(0))
                    .col(timestamp_with_time_zone(Notifications::NextAttemptAt))
                    .col(text_null(Notifications::LastError))
                    .col(timestamp_with_time_zone_null(Notifications::DeliveredAt))
                    .col(string_null(Notifications::ClaimedBy))
                    .col(timestamp_with_time_zone_null(Notifications::ClaimExpiresAt))
                    .col(timestamp_with_time_zone(Notifications::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_notifications_execution")
                            .from(Notifications::Table, Notifications::ExecutionId)
                            .to(Executions::Table, Executions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_notifications_due")
                    .table(Notifications::Table)
                    .col(Notifications::State)
                    .col(Notifications::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_notifications_execution")
                    .table(Notifications::Table)
                    .col(Notifications::ExecutionId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Notifications::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Procs::Table)
                    .drop_column(ProcNotifications::Notifications)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum ProcNotifications {
    Notifications,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    ExecutionId,
    Channel,
    Target,
    IdempotencyKey,
    State,
    Attempts,
    NextAttemptAt,
    LastError,
    DeliveredAt,
    ClaimedBy,
    ClaimExpiresAt,
    CreatedAt,
}
