//! `procs.resources`: the CPU and memory a proc's Kubernetes runs ask for (requests and limits),
//! as JSON (`{"cpu": "500m", "memory": "256Mi"}`); null when the proc sets none.

use sea_orm_migration::{prelude::*, schema::*};

use crate::one_column;

/// Adds `procs.resources`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        one_column::add(manager, Procs::Table, json_binary_null(Procs::Resources)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        one_column::drop(manager, Procs::Table, Procs::Resources).await
    }
}

#[derive(DeriveIden)]
enum Procs {
    Table,
    Resources,
}
