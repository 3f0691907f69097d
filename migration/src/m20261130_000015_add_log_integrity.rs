//! Makes altered and lost output visible: `execution_logs.replaced` marks a line whose bytes
//! had to be changed to be stored (NUL or invalid UTF-8 replaced by U+FFFD), and
//! `executions.log_lines_lost` counts lines that could not be stored at all.

use sea_orm_migration::{prelude::*, schema::*};

/// Adds `execution_logs.replaced` and `executions.log_lines_lost`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ExecutionLogs::Table)
                    .add_column(boolean(ExecutionLogs::Replaced).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .add_column(big_integer(Executions::LogLinesLost).default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .drop_column(Executions::LogLinesLost)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ExecutionLogs::Table)
                    .drop_column(ExecutionLogs::Replaced)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum ExecutionLogs {
    Table,
    Replaced,
}

#[derive(DeriveIden)]
enum Executions {
    Table,
    LogLinesLost,
}
