//! Creates `audit_events`.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates the `audit_events` table.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(big_pk_auto(AuditEvents::Id))
                    .col(string_len_null(AuditEvents::Actor, 320))
                    .col(string_len(AuditEvents::Action, 64))
                    .col(string_len(AuditEvents::ObjectKind, 32))
                    .col(string_len(AuditEvents::ObjectId, 255))
                    .col(json_binary_null(AuditEvents::Detail))
                    .col(timestamp_with_time_zone(AuditEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // "History of this object" for the audit view.
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_events_object")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::ObjectKind)
                    .col(AuditEvents::ObjectId)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    Actor,
    Action,
    ObjectKind,
    ObjectId,
    Detail,
    CreatedAt,
}
