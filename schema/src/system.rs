//! What this server is: version and the infrastructure it was started with.

use async_graphql::{Context, Enum, Object, SimpleObject};

use crate::state::AppState;

/// Which database holds the data.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageBackend {
    /// The embedded default: one SQLite file in the data directory.
    Sqlite,
    /// Production: a Postgres server.
    Postgres,
}

/// How events reach subscribers.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventBusKind {
    /// In-process broadcast: correct for a single replica only.
    Memory,
    /// Redis pub/sub: every replica sees every event.
    Redis,
}

/// Where executions run.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutorKind {
    /// Local processes on the server's machine.
    Local,
    /// Kubernetes Jobs.
    Kubernetes,
}

/// Facts about the running server; the first thing a client or operator asks.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// proctord's version.
    pub version: String,
    /// Which database it uses.
    pub storage: StorageBackend,
    /// Which event bus it uses.
    pub event_bus: EventBusKind,
    /// Which executor runs procs.
    pub executor: ExecutorKind,
    /// Whether callers must authenticate.
    pub auth_enabled: bool,
    /// The URL clients reach this server at (`PROCTOR_PUBLIC_URL`): the issuer (`iss`) of
    /// per-run identity tokens.
    pub public_url: String,
}

/// Queries about the server itself.
#[derive(Default)]
pub struct SystemQuery;

#[Object]
impl SystemQuery {
    /// Version and configuration of this server. Needs no authentication, so clients can
    /// check compatibility before they log in.
    async fn server_info(&self, ctx: &Context<'_>) -> async_graphql::Result<ServerInfo> {
        Ok(ctx.data::<AppState>()?.server_info().clone())
    }
}
