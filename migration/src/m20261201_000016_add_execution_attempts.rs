//! Counts a run's attempts: `executions.attempts` starts at 1 and grows with every retry
//! (a failed attempt started again, by the runner for local processes or by a Kubernetes Job's
//! `backoffLimit`).

use sea_orm_migration::{prelude::*, schema::*};

/// Adds `executions.attempts`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .add_column(integer(Executions::Attempts).default(1))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Executions::Table)
                    .drop_column(Executions::Attempts)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Executions {
    Table,
    Attempts,
}
