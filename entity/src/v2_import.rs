//! `v2_imports`: what `proctord import-v2` took from a Proctor v2 deployment, so a second run
//! changes nothing and every imported object can be traced to its source.

use sea_orm::entity::prelude::*;

/// One imported object.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "v2_imports")]
pub struct Model {
    /// `proc`, `secret`, `schedule` or `execution`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    /// Its key or id in v2 (Redis key, or table id).
    #[sea_orm(primary_key, auto_increment = false)]
    pub source_key: String,
    /// What it became here (proc name, schedule or execution id).
    pub target_id: String,
    /// When it was imported.
    pub created_at: DateTimeUtc,
}

/// Import records stand alone.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
