//! `notifications`: the outbox of notifications about finished executions.

use sea_orm::entity::prelude::*;

/// One notification to deliver on one channel: written in the transaction that stores the
/// execution's final state, delivered (at least once) by any replica, retried with backoff.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The execution it is about; deleted with it.
    pub execution_id: i64,
    /// `email`, `slack` or `webhook`.
    pub channel: String,
    /// Where: e-mail addresses (JSON list) or a URL; `None`: the server-wide default target.
    pub target: Option<String>,
    /// Unique per (execution, channel, target); sent along so receivers can de-duplicate.
    #[sea_orm(unique)]
    pub idempotency_key: String,
    /// `PENDING`, `DELIVERED` or `FAILED` (given up).
    pub state: String,
    /// Delivery attempts made.
    pub attempts: i32,
    /// When the next attempt is due.
    pub next_attempt_at: DateTimeUtc,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was delivered.
    pub delivered_at: Option<DateTimeUtc>,
    /// The replica delivering it right now.
    pub claimed_by: Option<String>,
    /// Until when that claim holds; afterwards any replica may try again.
    pub claim_expires_at: Option<DateTimeUtc>,
    /// When it was written.
    pub created_at: DateTimeUtc,
    /// What a live log alert matched; absent for notifications about a run's end.
    pub alert: Option<crate::json::AlertMatch>,
}

/// A notification belongs to its execution.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The execution.
    #[sea_orm(
        belongs_to = "super::execution::Entity",
        from = "Column::ExecutionId",
        to = "super::execution::Column::Id",
        on_delete = "Cascade"
    )]
    Execution,
}

impl Related<super::execution::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Execution.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
