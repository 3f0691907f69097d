//! `procs.resources`: the CPU and memory a proc's Kubernetes runs ask for (requests and limits),
//! as JSON (`{"cpu": "500m", "memory": "256Mi"}`); null when the proc sets none.

use sea_orm_migration::{prelude::*, schema::*};

/// Adds `procs.resources`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Procs::Table)
                    .add_column(json_binary_null(Procs::Resources))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Procs::Table)
                    .drop_column(Procs::Resources)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Procs {
    Table,
    Resources,
}
