//! What issue 21 adds, in one step:
//! - `procs.identity` and `procs.alerts`: a proc's per-run identity token request and its live
//!   log alert rules (JSON, null when it has none);
//! - `audit_events.chain_seq/prev_hash/hash`: the hash chain, filled in by the sealer after the
//!   row commits (null until then);
//! - `signing_keys`: the server's ES256 keys (private halves sealed with the secret keyring);
//! - `execution_receipts`: one signed receipt per finished execution;
//! - `notifications.alert`: what a live log alert matched (null for end-of-run notifications);
//! - `v2_imports`: what `proctord import-v2` took from a Proctor v2 deployment, by source key.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261121_000007_create_executions::Executions;
use crate::one_column;

/// Adds the columns and creates the tables above.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        one_column::add(manager, Procs::Table, json_binary_null(Procs::Identity)).await?;
        one_column::add(manager, Procs::Table, json_binary_null(Procs::Alerts)).await?;
        one_column::add(
            manager,
            AuditEvents::Table,
            big_integer_null(AuditEvents::ChainSeq),
        )
        .await?;
        one_column::add(
            manager,
            AuditEvents::Table,
            string_null(AuditEvents::PrevHash),
        )
        .await?;
        one_column::add(manager, AuditEvents::Table, string_null(AuditEvents::Hash)).await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_audit_events_chain_seq")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::ChainSeq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        one_column::add(
            manager,
            Notifications::Table,
            json_binary_null(Notifications::Alert),
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .col(string_len(SigningKeys::Kid, 64).primary_key())
                    .col(string(SigningKeys::KeyId))
                    .col(binary(SigningKeys::Sealed))
                    .col(text(SigningKeys::PublicJwk))
                    .col(timestamp_with_time_zone(SigningKeys::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ExecutionReceipts::Table)
                    .col(big_integer(ExecutionReceipts::ExecutionId).primary_key())
                    .col(text(ExecutionReceipts::Payload))
                    .col(text(ExecutionReceipts::Signature))
                    .col(string_len(ExecutionReceipts::Kid, 64))
                    .col(timestamp_with_time_zone(ExecutionReceipts::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_execution_receipts_execution")
                            .from(ExecutionReceipts::Table, ExecutionReceipts::ExecutionId)
                            .to(Executions::Table, Executions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(V2Imports::Table)
                    .col(string_len(V2Imports::Kind, 16))
                    .col(string_len(V2Imports::SourceKey, 255))
                    .col(string_len(V2Imports::TargetId, 255))
                    .col(timestamp_with_time_zone(V2Imports::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(V2Imports::Kind)
                            .col(V2Imports::SourceKey),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            V2Imports::Table.into_iden(),
            ExecutionReceipts::Table.into_iden(),
            SigningKeys::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        one_column::drop(manager, Notifications::Table, Notifications::Alert).await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ux_audit_events_chain_seq")
                    .table(AuditEvents::Table)
                    .to_owned(),
            )
            .await?;
        one_column::drop(manager, AuditEvents::Table, AuditEvents::Hash).await?;
        one_column::drop(manager, AuditEvents::Table, AuditEvents::PrevHash).await?;
        one_column::drop(manager, AuditEvents::Table, AuditEvents::ChainSeq).await?;
        one_column::drop(manager, Procs::Table, Procs::Alerts).await?;
        one_column::drop(manager, Procs::Table, Procs::Identity).await
    }
}

#[derive(DeriveIden)]
enum Procs {
    Table,
    Identity,
    Alerts,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    ChainSeq,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Alert,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    KeyId,
    Sealed,
    PublicJwk,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ExecutionReceipts {
    Table,
    ExecutionId,
    Payload,
    Signature,
    Kid,
    CreatedAt,
}

#[derive(DeriveIden)]
enum V2Imports {
    Table,
    Kind,
    SourceKey,
    TargetId,
    CreatedAt,
}
