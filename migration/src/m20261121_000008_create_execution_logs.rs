//! Creates `execution_logs`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000007_create_executions::Executions;

/// Creates the `execution_logs` table, keyed by (execution, seq).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ExecutionLogs::Table)
                    .col(big_integer(ExecutionLogs::ExecutionId))
                    .col(big_integer(ExecutionLogs::Seq))
                    .col(string_len(ExecutionLogs::Stream, 8))
                    .col(text(ExecutionLogs::Line))
                    .col(timestamp_with_time_zone(ExecutionLogs::LoggedAt))
                    .primary_key(
                        Index::create()
                            .col(ExecutionLogs::ExecutionId)
                            .col(ExecutionLogs::Seq),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_execution_logs_execution")
                            .from(ExecutionLogs::Table, ExecutionLogs::ExecutionId)
                            .to(Executions::Table, Executions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ExecutionLogs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ExecutionLogs {
    Table,
    ExecutionId,
    Seq,
    Stream,
    Line,
    LoggedAt,
}
