//! `secrets`: encrypted secret values of a proc.

use sea_orm::entity::prelude::*;

/// One secret value of a proc, encrypted at rest (nonce and AES-256-GCM ciphertext).
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "secrets")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Owning proc; unique together with `key`.
    pub proc_id: i64,
    /// Environment variable name.
    pub key: String,
    /// Id of the key that encrypted it (see `proctord secrets rotate-key`).
    pub key_id: String,
    /// Nonce followed by ciphertext; never leaves the server.
    pub ciphertext: Vec<u8>,
    /// When it was first set.
    pub created_at: DateTimeUtc,
    /// When it was last set.
    pub updated_at: DateTimeUtc,
}

/// Debug output omits the ciphertext so a stray `{:?}` cannot leak secret material into logs.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("secret::Model")
            .field("id", &self.id)
            .field("proc_id", &self.proc_id)
            .field("key", &self.key)
            .field("key_id", &self.key_id)
            .field("ciphertext", &"<redacted>")
            .finish()
    }
}

/// A secret belongs to a proc.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owning proc.
    #[sea_orm(
        belongs_to = "super::proc::Entity",
        from = "Column::ProcId",
        to = "super::proc::Column::Id",
        on_delete = "Cascade"
    )]
    Proc,
}

impl Related<super::proc::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Proc.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
