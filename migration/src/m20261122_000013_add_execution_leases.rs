//! Adds what replicas need to share executions: the supervising replica and its lease, and the
//! log cursor (how far into the executor's output the stored lines reach).

use sea_orm_migration::{prelude::*, schema::*};

/// Adds `owner`, `lease_expires_at`, `log_source` and `log_offset` to `executions`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement, so each gets its own.
        for column in [
            string_len_null(Executions::Owner, 255),
            timestamp_with_time_zone_null(Executions::LeaseExpiresAt),
            string_len_null(Executions::LogSource, 255),
            big_integer(Executions::LogOffset).default(0).take(),
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
        // Replicas look for unfinished executions whose lease ran out.
        manager
            .create_index(
                Index::create()
                    .name("ix_executions_lease")
                    .table(Executions::Table)
                    .col(Executions::Status)
                    .col(Executions::LeaseExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_executions_lease")
                    .table(Executions::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Executions::LogOffset,
            Executions::LogSource,
            Executions::LeaseExpiresAt,
            Executions::Owner,
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
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Executions {
    Table,
    Status,
    Owner,
    LeaseExpiresAt,
    LogSource,
    LogOffset,
}
