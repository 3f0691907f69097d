//! `proc_versions`: every definition a proc has had.

use sea_orm::entity::prelude::*;

/// One version of a proc: its whole definition as it was stored (the `ProcInput` / proc-file
/// shape, as JSON), who stored it and when. Versions are numbered like `procs.version`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "proc_versions")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The proc; its versions go when it is deleted.
    pub proc_id: i64,
    /// The version number (1 for the first definition).
    pub version: i32,
    /// The definition.
    pub definition: Json,
    /// Who stored it (none: Proctor itself, e.g. the v2 importer or the examples).
    pub changed_by: Option<String>,
    /// When.
    pub changed_at: DateTimeUtc,
}

/// A version belongs to its proc.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The proc.
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
