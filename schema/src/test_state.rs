//! An application state for unit tests: in-memory SQLite (migrated), the in-memory bus, auth
//! off, no notifiers. Domain tests build on it in milliseconds.

use std::sync::Arc;
use std::time::Duration;

use proctor_migration::MigratorTrait;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use crate::executions::runner::{RunSettings, Runner};
use crate::metrics::Metrics;
use crate::ports::authenticator::AuthDisabled;
use crate::ports::event_bus::InMemoryEventBus;
use crate::ports::executor::Executor;
use crate::ports::scripted_executor::ScriptedExecutor;
use crate::secrets::keyring::Keyring;
use crate::state::{AppParts, AppState, SchemaLimits};
use crate::system::{EventBusKind, ExecutorKind, ServerInfo, StorageBackend};

/// A fresh in-memory SQLite database with every migration applied, on one connection (an
/// in-memory database lives and dies with its connection).
pub async fn database() -> DatabaseConnection {
    let mut options = ConnectOptions::new("sqlite::memory:");
    options
        .max_connections(1)
        .min_connections(1)
        .sqlx_logging(false);
    let db = Database::connect(options).await.expect("in-memory SQLite");
    proctor_migration::Migrator::up(&db, None)
        .await
        .expect("migrations apply");
    db
}

/// Settings that keep tests fast: lines are flushed every 5 ms.
pub fn run_settings() -> RunSettings {
    RunSettings {
        max_parallel: 16,
        log_max_lines: 200_000,
        flush_interval: Duration::from_millis(5),
        lease: Duration::from_secs(15),
        default_timeout: Duration::from_secs(3600),
    }
}

/// A runner over a scripted executor that nothing is scripted for.
pub fn idle_runner() -> Arc<Runner> {
    let executor = Arc::new(ScriptedExecutor::new()) as Arc<dyn Executor>;
    Runner::new(executor, run_settings(), "replica-a".to_owned())
}

/// The state over `db` and `runner`.
pub fn state(db: DatabaseConnection, runner: Arc<Runner>) -> AppState {
    AppState::new(AppParts {
        db,
        event_bus: Arc::new(InMemoryEventBus::new()),
        authenticator: Arc::new(AuthDisabled),
        keyring: Arc::new(Keyring::ephemeral().expect("a key")),
        admin_groups: Vec::new(),
        runner,
        metrics: Arc::new(Metrics::new()),
        notifiers: Vec::new(),
        server_info: ServerInfo {
            public_url: "http://proctor.test".to_owned(),
            version: "test".to_owned(),
            storage: StorageBackend::Sqlite,
            event_bus: EventBusKind::Memory,
            executor: ExecutorKind::Local,
            auth_enabled: false,
        },
        limits: SchemaLimits {
            max_depth: 16,
            max_complexity: 10_000,
        },
        log_readers: 4,
        schedule_min_interval: Duration::from_secs(60),
        credentials_recheck: Duration::from_secs(30),
        notification_defaults: crate::notifications::NotificationDefaults::default(),
    })
}
