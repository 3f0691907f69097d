//! The application state every resolver and domain service reads.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::ports::event_bus::EventBus;
use crate::system::ServerInfo;

/// Limits applied to every GraphQL operation, so one query cannot monopolise the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchemaLimits {
    /// Deepest selection-set nesting accepted.
    pub max_depth: usize,
    /// Highest complexity score accepted (each field costs 1 by default).
    pub max_complexity: usize,
}

impl Default for SchemaLimits {
    /// Deep enough for the playground's introspection query, low enough to stop abuse.
    fn default() -> Self {
        Self {
            max_depth: 16,
            max_complexity: 2_000,
        }
    }
}

/// Shared, cheaply clonable state: the database, the event bus and what the server is.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    event_bus: Arc<dyn EventBus>,
    server_info: ServerInfo,
    limits: SchemaLimits,
}

impl AppState {
    /// Bundles the parts `proctord` (or a test) assembled at start-up.
    pub fn new(
        db: DatabaseConnection,
        event_bus: Arc<dyn EventBus>,
        server_info: ServerInfo,
        limits: SchemaLimits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                event_bus,
                server_info,
                limits,
            }),
        }
    }

    /// The database connection pool (Postgres or SQLite).
    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// The event bus that fans execution and schedule events out (in memory or Redis).
    pub fn event_bus(&self) -> &Arc<dyn EventBus> {
        &self.inner.event_bus
    }

    /// Static facts about this server, as `serverInfo` reports them.
    pub fn server_info(&self) -> &ServerInfo {
        &self.inner.server_info
    }

    /// GraphQL operation limits.
    pub fn limits(&self) -> SchemaLimits {
        self.inner.limits
    }
}
