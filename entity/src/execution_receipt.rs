//! `execution_receipts`: what a finished execution was and did, signed with the server key.

use sea_orm::entity::prelude::*;

/// One receipt per finished execution.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "execution_receipts")]
pub struct Model {
    /// The execution.
    #[sea_orm(primary_key, auto_increment = false)]
    pub execution_id: i64,
    /// The signed payload: canonical JSON text.
    pub payload: String,
    /// ES256 signature of the payload's bytes (base64url, r‖s).
    pub signature: String,
    /// The signing key (`signing_keys.kid`).
    pub kid: String,
    /// When it was signed.
    pub created_at: DateTimeUtc,
}

/// A receipt belongs to its execution.
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

impl ActiveModelBehavior for ActiveModel {}
