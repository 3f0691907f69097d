//! Makes altered and lost output visible and keeps a run's masking stable: `execution_logs.replaced`
//! marks a line whose bytes had to be changed to be stored (NUL or invalid UTF-8 replaced by
//! U+FFFD), `executions.log_lines_lost` counts lines that could not be stored at all, and
//! `executions.mask_key_id` / `mask_sealed` keep the secret values a run started with
//! (encrypted), so a replica that takes the run over masks exactly those.

use sea_orm_migration::{prelude::*, schema::*};

/// Adds `execution_logs.replaced`, `executions.log_lines_lost`, `executions.mask_key_id` and
/// `executions.mask_sealed`.
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
        for column in [
            big_integer(Executions::LogLinesLost).default(0).to_owned(),
            string_len_null(Executions::MaskKeyId, 32),
            blob_null(Executions::MaskSealed),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Executions::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Executions::MaskSealed,
            Executions::MaskKeyId,
            Executions::LogLinesLost,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Executions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
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
    MaskKeyId,
    MaskSealed,
}
