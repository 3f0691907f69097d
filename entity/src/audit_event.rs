//! `audit_events`: who did what to which object, when.

use sea_orm::entity::prelude::*;

/// One audited action. Details never contain secret values.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    /// Increasing id; also the pagination cursor.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Who acted (e-mail), absent when auth is off and no e-mail was given.
    pub actor: Option<String>,
    /// What was done, e.g. `proc.upsert`.
    pub action: String,
    /// Kind of object acted on, e.g. `proc`.
    pub object_kind: String,
    /// Identifier of the object acted on.
    pub object_id: String,
    /// Structured extra information.
    pub detail: Option<Json>,
    /// When it happened.
    pub created_at: DateTimeUtc,
    /// Position in the hash chain (1, 2, …); absent until the sealer has chained the row.
    pub chain_seq: Option<i64>,
    /// Hash of the previous event in the chain (hex SHA-256; 64 zeros for the first).
    pub prev_hash: Option<String>,
    /// Hash of this event's canonical encoding, including `prev_hash` (hex SHA-256).
    pub hash: Option<String>,
}

/// Audit events stand alone: they outlive the objects they mention.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
