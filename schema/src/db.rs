//! Database helpers shared by the domain services.

use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};

/// Starts a transaction that will write. On SQLite it takes the write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes fails at once with
/// "database is locked" when another connection wrote in between, without waiting for the
/// busy timeout. On Postgres this is a plain `BEGIN`.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Runs `operation` (a whole transaction) again when it lost a race to a unique constraint:
/// two requests creating the same proc, secret or user at once both read "missing" and both
/// insert; the loser's retry then finds the winner's row and updates it. At most three tries.
pub async fn retry_on_conflict<T, F, Fut>(mut operation: F) -> Result<T, crate::ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, crate::ApiError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match operation().await {
            Err(crate::ApiError::Internal(error)) if tries < 3 && is_unique_violation(&error) => {}
            other => return other,
        }
    }
}

fn is_unique_violation(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<DbErr>()
        .and_then(DbErr::sql_err)
        .is_some_and(|sql| matches!(sql, sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// Whether `SELECT … FOR UPDATE` is available (Postgres); SQLite serialises writers instead.
pub fn locks_rows(db: &DatabaseConnection) -> bool {
    sea_orm::ConnectionTrait::get_database_backend(db) == sea_orm::DatabaseBackend::Postgres
}
