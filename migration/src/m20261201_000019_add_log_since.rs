//! Lets a re-attached Kubernetes run continue from a time instead of a line count:
//! `executions.log_since` is the timestamp of the last stored line of `log_source`, and
//! `log_offset` then counts the stored lines with exactly that timestamp. A count from the
//! start of a pod's log breaks once the kubelet rotates the log; a time does not.

use sea_orm_migration::{prelude::*, schema::*};

/// Adds `executions.log_since`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .add_column(timestamp_with_time_zone_null(Executions::LogSince))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .drop_column(Executions::LogSince)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Executions {
    Table,
    LogSince,
}
