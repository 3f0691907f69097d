//! Connecting to the database and applying migrations.

use std::time::Duration;

use proctor_migration::{MigrationStatus, Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, TransactionTrait,
};

use crate::config::{DatabaseTarget, PoolSettings};

/// SQLite allows one writer at a time; a few pooled connections serve concurrent readers.
const SQLITE_POOL_SIZE: u32 = 4;
/// How long a SQLite statement waits for the write lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Arbitrary but fixed key of the Postgres advisory lock that serialises migrations.
const MIGRATION_LOCK_KEY: i64 = 0x0070_726f_6374_6f72; // "proctor" in ASCII

/// How many live-log subscriptions may read stored lines at once: a quarter of the pool (at
/// least one), leaving the rest to the runner's writes and to queries.
pub fn log_readers(target: &DatabaseTarget, pool: &PoolSettings) -> usize {
    let size = match target {
        DatabaseTarget::Sqlite { .. } => SQLITE_POOL_SIZE,
        DatabaseTarget::Postgres { .. } => pool.max_connections,
    };
    usize::try_from(size / 4).unwrap_or(1).max(1)
}

/// Opens the connection pool for `target`. SQLite files are created when missing and run in
/// WAL mode with foreign keys enforced, so they behave like the Postgres schema.
pub async fn connect(
    target: &DatabaseTarget,
    pool: &PoolSettings,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = match target {
        DatabaseTarget::Sqlite { path } => {
            let mut options = ConnectOptions::new(format!("sqlite://{}", path.display()));
            options
                .max_connections(SQLITE_POOL_SIZE)
                .map_sqlx_sqlite_opts(|sqlite| {
                    sqlite
                        .create_if_missing(true)
                        .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                        .foreign_keys(true)
                        .busy_timeout(SQLITE_BUSY_TIMEOUT)
                });
            options
        }
        DatabaseTarget::Postgres { url } => {
            let mut options = ConnectOptions::new(url.as_str());
            options.max_connections(pool.max_connections);
            if let Some(lifetime) = pool.max_lifetime {
                options.max_lifetime(lifetime);
            }
            options
        }
    };
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        // Statement logging would put every query (and its parameters) in the log.
        .sqlx_logging(false);
    Database::connect(options).await
}

/// Applies every pending migration and returns their names. On Postgres a transaction-scoped
/// advisory lock is held meanwhile, so replicas that start together migrate one after another
/// instead of racing.
pub async fn migrate_up(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    with_migration_lock(db, || async {
        let pending = pending_migrations(db).await?;
        Migrator::up(db, None).await?;
        Ok(pending)
    })
    .await
}

/// Rolls back `steps` migrations (all of them when `None`), under the same lock as
/// [`migrate_up`].
pub async fn migrate_down(db: &DatabaseConnection, steps: Option<u32>) -> Result<(), DbErr> {
    with_migration_lock(db, || Migrator::down(db, steps)).await
}

async fn with_migration_lock<F, Fut, T>(db: &DatabaseConnection, migrate: F) -> Result<T, DbErr>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, DbErr>>,
{
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return migrate().await;
    }
    let lock = db.begin().await?;
    lock.execute_unprepared(&format!(
        "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
    ))
    .await?;
    let result = migrate().await;
    lock.commit().await?;
    result
}

/// One migration and whether it is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationState {
    /// The migration's name (its file name).
    pub name: String,
    /// Whether it has been applied.
    pub applied: bool,
}

/// Every known migration in order, with its state.
pub async fn migration_states(db: &DatabaseConnection) -> Result<Vec<MigrationState>, DbErr> {
    Ok(Migrator::get_migration_with_status(db)
        .await?
        .into_iter()
        .map(|migration| MigrationState {
            name: migration.name().to_owned(),
            applied: matches!(migration.status(), MigrationStatus::Applied),
        })
        .collect())
}

/// How many migrations there are.
pub fn migration_count() -> usize {
    Migrator::migrations().len()
}

/// Names of the migrations not yet applied.
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    Ok(Migrator::get_pending_migrations(db)
        .await?
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect())
}
