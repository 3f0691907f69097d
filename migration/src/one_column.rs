//! Adding or dropping one column, the shape most later migrations have (each migration stays
//! its own frozen file; only this plumbing is shared).

use sea_orm_migration::prelude::*;

/// `ALTER TABLE table ADD COLUMN column` (Postgres and SQLite alike).
pub async fn add(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    column: ColumnDef,
) -> Result<(), DbErr> {
    let mut column = column;
    manager
        .alter_table(
            Table::alter()
                .table(table)
                .add_column(&mut column)
                .to_owned(),
        )
        .await
}

/// `ALTER TABLE table DROP COLUMN column`.
pub async fn drop(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    column: impl IntoIden,
) -> Result<(), DbErr> {
    manager
        .alter_table(Table::alter().table(table).drop_column(column).to_owned())
        .await
}
