//! `execution_logs`: the output of executions, one row per line.

use sea_orm::entity::prelude::*;

use crate::values::LogStream;

/// One output line. `(execution_id, seq)` is the key: `seq` starts at 1 and has no gaps, which
/// is what lets a subscriber resume from a sequence number without loss or duplicates.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "execution_logs")]
pub struct Model {
    /// Owning execution.
    #[sea_orm(primary_key, auto_increment = false)]
    pub execution_id: i64,
    /// Position of the line within the execution's output.
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    /// Which stream it came from.
    pub stream: LogStream,
    /// The line, secrets masked, without the trailing newline.
    pub line: String,
    /// When the line was read.
    pub logged_at: DateTimeUtc,
    /// Whether bytes were replaced (NUL or invalid UTF-8 by U+FFFD) so it could be stored.
    pub replaced: bool,
}

/// A log line belongs to an execution.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The owning execution.
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
