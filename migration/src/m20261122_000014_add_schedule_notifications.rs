//! Adds per-schedule notification targets (Slack, signed webhook), why a run was skipped and
//! how each run's notifications went.

use sea_orm_migration::{prelude::*, schema::*};

/// Adds `schedules.slack_webhook_url`, `schedules.webhook_url`, `schedule_runs.detail` and
/// `schedule_runs.notifications`.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            string_len_null(Schedules::SlackWebhookUrl, 1024),
            string_len_null(Schedules::WebhookUrl, 1024),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Schedules::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [
            string_len_null(ScheduleRuns::Detail, 1024),
            json_binary_null(ScheduleRuns::Notifications),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ScheduleRuns::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        // Notifications find the run of a finished execution.
        manager
            .create_index(
                Index::create()
                    .name("ix_schedule_runs_execution")
                    .table(ScheduleRuns::Table)
                    .col(ScheduleRuns::ExecutionId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_schedule_runs_execution")
                    .table(ScheduleRuns::Table)
                    .to_owned(),
            )
            .await?;
        for column in [ScheduleRuns::Notifications, ScheduleRuns::Detail] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ScheduleRuns::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [Schedules::WebhookUrl, Schedules::SlackWebhookUrl] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Schedules::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
    SlackWebhookUrl,
    WebhookUrl,
}

#[derive(DeriveIden)]
enum ScheduleRuns {
    Table,
    ExecutionId,
    Detail,
    Notifications,
}
