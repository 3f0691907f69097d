//! The application state every resolver and domain service reads.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

use crate::error::ApiError;
use crate::executions::runner::Runner;
use crate::group_commit::GroupCommit;
use crate::metrics::Metrics;
use crate::notifications::NotificationDefaults;
use crate::ports::authenticator::Authenticator;
use crate::ports::event_bus::EventBus;
use crate::ports::notifier::Notifier;
use crate::secrets::keyring::Keyring;
use crate::system::ServerInfo;

/// Limits applied to every GraphQL operation, so one query cannot monopolise the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchemaLimits {
    /// Deepest selection-set nesting accepted.
    pub max_depth: usize,
    /// Highest complexity score accepted (each field costs 1; list fields multiply what is
    /// under them by their `first`).
    pub max_complexity: usize,
}

/// Everything `proctord` (or a test) assembles at start-up.
pub struct AppParts {
    /// The database pool (Postgres or SQLite).
    pub db: DatabaseConnection,
    /// Fans execution and schedule events out (in memory or Redis).
    pub event_bus: Arc<dyn EventBus>,
    /// Decides who is calling.
    pub authenticator: Arc<dyn Authenticator>,
    /// Encrypts and decrypts secret values.
    pub keyring: Arc<Keyring>,
    /// Members of all these groups are administrators.
    pub admin_groups: Vec<String>,
    /// Supervises runs through the configured executor.
    pub runner: Arc<Runner>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Told when a scheduled execution finishes (e-mail, Slack, webhook).
    pub notifiers: Vec<Arc<dyn Notifier>>,
    /// Static facts reported by `serverInfo`.
    pub server_info: ServerInfo,
    /// GraphQL operation limits.
    pub limits: SchemaLimits,
    /// How many live-log subscriptions may read the database at once. The others wait their
    /// turn, so a thousand subscribers catching up never take the connections the runner needs
    /// to store new output (which would lose it).
    pub log_readers: usize,
    /// Shortest interval between two fires of a non-administrator's schedule.
    pub schedule_min_interval: std::time::Duration,
    /// How often long-lived connections check their caller's credentials again.
    pub credentials_recheck: std::time::Duration,
    /// The server-wide notification targets.
    pub notification_defaults: NotificationDefaults,
}

/// Shared, cheaply clonable state.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<AppParts>,
    log_reads: Arc<Semaphore>,
    outbox_wakeup: Arc<Notify>,
    writes: GroupCommit,
    signer: Arc<crate::signing::Signer>,
    receipt_definitions: Arc<crate::executions::receipts::DefinitionCache>,
}

impl AppState {
    /// Bundles the parts.
    pub fn new(parts: AppParts) -> Self {
        // SQLite has one writer anyway; on Postgres a second lets one batch run its
        // statements while the other waits for its commit.
        let writers = if crate::db::locks_rows(&parts.db) {
            2
        } else {
            1
        };
        Self {
            log_reads: Arc::new(Semaphore::new(parts.log_readers.max(1))),
            outbox_wakeup: Arc::new(Notify::new()),
            signer: Arc::default(),
            receipt_definitions: Arc::default(),
            writes: GroupCommit::start(parts.db.clone(), writers),
            inner: Arc::new(parts),
        }
    }

    /// The server's signing keys (identity tokens, receipts), read lazily and refreshed.
    pub async fn signing_keys(&self) -> Result<Arc<crate::signing::Keys>, ApiError> {
        self.signer.keys(self.db(), self.keyring()).await
    }

    /// What receipts remember of proc versions (definitions never change once stored).
    pub fn receipt_definitions(&self) -> &crate::executions::receipts::DefinitionCache {
        &self.receipt_definitions
    }

    /// The JWK Set served at `/.well-known/jwks.json` (cached for a second).
    pub async fn published_keys(&self) -> Result<serde_json::Value, ApiError> {
        self.signer.published(self.db()).await
    }

    /// Re-reads the signing keys every [`crate::signing::RELOAD`], so a rotation reaches this
    /// replica without a restart and no run waits on a key read.
    pub async fn refresh_signing_keys_forever(self) {
        loop {
            tokio::time::sleep(crate::signing::RELOAD).await;
            if let Err(error) = self.signer.reload(self.db(), self.keyring()).await {
                tracing::warn!(%error, "cannot re-read the signing keys; signing with the ones read before");
            }
        }
    }

    /// The group-committed writes of the execution core (submissions, state moves, output):
    /// what many runs write at the same moment shares one transaction and one commit.
    pub fn writes(&self) -> &GroupCommit {
        &self.writes
    }

    /// A turn to read stored log lines for a live subscription (see [`AppParts::log_readers`]).
    pub async fn log_read_turn(&self) -> SemaphorePermit<'_> {
        self.log_reads
            .acquire()
            .await
            .expect("the semaphore lives as long as the state and is never closed")
    }

    /// The database connection pool.
    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// The event bus.
    pub fn event_bus(&self) -> &Arc<dyn EventBus> {
        &self.inner.event_bus
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &Arc<dyn Authenticator> {
        &self.inner.authenticator
    }

    /// Whether callers must authenticate.
    pub fn auth_enabled(&self) -> bool {
        self.inner.authenticator.enabled()
    }

    /// The secret keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// The groups that make a caller an administrator (all are required).
    pub fn admin_groups(&self) -> &[String] {
        &self.inner.admin_groups
    }

    /// The run supervisor.
    pub fn runner(&self) -> &Arc<Runner> {
        &self.inner.runner
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The server-wide notification targets.
    pub fn notification_defaults(&self) -> &NotificationDefaults {
        &self.inner.notification_defaults
    }

    /// Wakes this replica's notification delivery (a final state was just stored here).
    pub fn outbox_wakeup(&self) -> &Notify {
        &self.outbox_wakeup
    }

    /// The configured notification channels.
    pub fn notifiers(&self) -> &[Arc<dyn Notifier>] {
        &self.inner.notifiers
    }

    /// Static facts about this server.
    pub fn server_info(&self) -> &ServerInfo {
        &self.inner.server_info
    }

    /// GraphQL operation limits.
    pub fn limits(&self) -> SchemaLimits {
        self.inner.limits
    }

    /// A quarter of the database pool (at least one): what one background activity (live-log
    /// reads, the scheduler's side-by-side fires) may hold at once, leaving the rest to the
    /// runner's writes and to queries.
    pub fn pool_quarter(&self) -> usize {
        self.inner.log_readers.max(1)
    }

    /// Shortest interval between fires of a non-administrator's schedule.
    pub fn schedule_min_interval(&self) -> std::time::Duration {
        self.inner.schedule_min_interval
    }

    /// How often long-lived connections check their caller's credentials again.
    pub fn credentials_recheck(&self) -> std::time::Duration {
        self.inner.credentials_recheck
    }
}
