//! Assembling and running a `proctord` server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use proctor_schema::auth::tokens::BuiltinAuthenticator;
use proctor_schema::executions::runner::Runner;
use proctor_schema::metrics::Metrics;
use proctor_schema::ports::authenticator::{AuthDisabled, Authenticator};
use proctor_schema::ports::event_bus::{EventBus, InMemoryEventBus};
use proctor_schema::ports::executor::Executor;
use proctor_schema::secrets::keyring::Keyring;
use proctor_schema::system::{ExecutorKind, ServerInfo, StorageBackend};
use proctor_schema::{AppParts, AppState, ProctorSchema, build_schema_traced};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;

use crate::config::{
    AuthMode, ConfigError, DatabaseTarget, Http, Kube, Redis, Runs, SecretKeys, Settings, Storage,
    ensure_data_dir, setting,
};
use crate::database;
use crate::kube_executor::KubernetesExecutor;
use crate::local_executor::LocalExecutor;
use crate::redis_bus::RedisEventBus;
use crate::sandbox::Isolation;
use crate::webhook_auth::WebhookAuthenticator;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong; the operator must change configuration (exit status 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Something failed at run time (exit status 1).
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

/// A server that is bound and ready to serve.
pub struct Server {
    listener: TcpListener,
    router: axum::Router,
    state: AppState,
    schema: ProctorSchema,
    db: DatabaseConnection,
    redis_bus: Option<Arc<RedisEventBus>>,
    settings: Settings,
    /// What keeps local runs from the data directory (logged once serving starts).
    isolation_note: Option<(bool, String)>,
}

impl Server {
    /// Binds the port, opens (and migrates) the database and starts the event bus. The port is
    /// bound first so a conflict is reported before the database is touched; connections wait
    /// in the backlog until [`Server::run`] serves them.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        crate::install_crypto_provider();
        let storage = &settings.storage;
        if let DatabaseTarget::Sqlite { path } = &storage.database {
            ensure_data_dir(sqlite_directory(path))?;
        }
        let keyring = open_keyring(&settings)?;
        let mut isolation_note = None;
        let executor: Arc<dyn Executor> = match settings.runs.executor {
            ExecutorKind::Local => {
                ensure_data_dir(&storage.data_dir)?;
                // A SQLite file kept outside the data directory is denied with its directory.
                let database_dir: Vec<std::path::PathBuf> = match &storage.database {
                    DatabaseTarget::Sqlite { path } => {
                        vec![sqlite_directory(path).to_path_buf()]
                    }
                    DatabaseTarget::Postgres { .. } => Vec::new(),
                };
                let isolation = Isolation::choose(
                    &storage.data_dir,
                    &database_dir,
                    &settings.runs.local_run_as,
                )
                .map_err(|e| ConfigError::new(setting!(Runs, local_run_as), e))?;
                isolation_note = Some((isolation.protects_data_dir(), isolation.describe()));
                Arc::new(LocalExecutor::new(
                    settings.runs.cancel_grace,
                    settings.runs.supervision.default_timeout,
                    isolation,
                ))
            }
            ExecutorKind::Kubernetes => Arc::new(
                KubernetesExecutor::connect(settings.kube.clone())
                    .await
                    .map_err(|e| ConfigError::new(setting!(Kube, kube_config), e))?,
            ),
        };
        let listen = settings.http.listen();
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            ConfigError::new(
                setting!(Http, port),
                format!("cannot listen on {listen}: {e}"),
            )
        })?;
        let (db, fresh) = open_database(&settings).await?;
        let authenticator: Arc<dyn Authenticator> = match &settings.auth.mode {
            AuthMode::Off => Arc::new(AuthDisabled),
            AuthMode::Builtin => Arc::new(BuiltinAuthenticator::new(db.clone())),
            AuthMode::Webhook {
                url,
                cache_ttl,
                timeout,
            } => Arc::new(
                WebhookAuthenticator::new(url.clone(), *cache_ttl, *timeout)
                    .context("building the identity service client")?,
            ),
        };

        let (event_bus, redis_bus): (Arc<dyn EventBus>, _) = match &settings.redis {
            Some(redis) => {
                let bus = Arc::new(RedisEventBus::start(redis).map_err(|e| {
                    let setting = setting!(Redis, redis_url);
                    ConfigError::new(setting, format!("{}: {e}", redis.redacted()))
                })?);
                (bus.clone(), Some(bus))
            }
            None => (Arc::new(InMemoryEventBus::new()), None),
        };
        let server_info = ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            storage: storage.database.backend(),
            event_bus: event_bus.kind(),
            executor: settings.runs.executor,
            auth_enabled: settings.auth_enabled(),
            public_url: settings.http.public_url(listener.local_addr().ok()),
        };
        let runner = Runner::new(
            executor,
            settings.runs.supervision,
            settings.runs.replica_id.clone(),
        );
        let state = AppState::new(AppParts {
            db: db.clone(),
            event_bus,
            authenticator,
            keyring,
            admin_groups: settings.auth.admin_groups.clone(),
            runner: Arc::clone(&runner),
            metrics: Arc::new(Metrics::new()),
            notifiers: crate::notifiers::build(&settings.notify)?,
            server_info,
            limits: settings.http.graphql_limits(),
            log_readers: database::log_readers(&storage.database, &storage.pool),
            schedule_min_interval: settings.runs.schedule_min_interval,
            credentials_recheck: settings.http.ws_revalidate,
            notification_defaults: settings.notify.defaults.clone(),
        });
        // The signing keys (the first one made now, not inside a run's transaction). A key
        // sealed with another secret key fails only identity tokens and receipts, not the server.
        if let Err(error) = state.signing_keys().await {
            tracing::error!(
                %error,
                "cannot open the signing key (every replica needs the same PROCTOR_SECRET_KEY); \
                 procs with an identity token cannot run and receipts are not signed until then"
            );
        }
        // With the in-memory bus this is the only replica: everything unfinished is ours at once.
        let single_replica = settings.redis.is_none();
        tokio::spawn(Arc::clone(&runner).maintain_leases(state.clone(), single_replica));
        tokio::spawn(runner.serve_cancel_requests(state.clone()));
        tokio::spawn(state.clone().refresh_signing_keys_forever());
        tokio::spawn(proctor_schema::auth::audit::seal_forever(
            state.clone(),
            std::time::Duration::from_millis(500),
        ));
        tokio::spawn(proctor_schema::notifications::deliver_forever(
            state.clone(),
            single_replica,
        ));
        if settings.runs.scheduler_enabled {
            tokio::spawn(crate::scheduler::run(state.clone()));
        }
        if fresh
            && storage.register_examples
            && storage.database.backend() == StorageBackend::Sqlite
        {
            proctor_schema::procs::examples::register_examples(&state)
                .await
                .map_err(|e| anyhow::anyhow!("registering the example procs: {e}"))?;
            tracing::info!("registered the example procs say-hello, countdown and secret-demo");
        }
        let schema = build_schema_traced(state.clone(), settings.telemetry.otlp_endpoint.is_some());
        let router = crate::routes::router(state.clone(), schema.clone(), &settings);
        Ok(Self {
            listener,
            router,
            state,
            schema,
            db,
            redis_bus,
            settings,
            isolation_note,
        })
    }

    /// The application state (for embedders and in-process tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The GraphQL schema as served (for in-process tests).
    pub fn schema(&self) -> &ProctorSchema {
        &self.schema
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish for the
    /// configured grace period and closes the event bus and the database.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let address = self.local_addr();
        let settings = &self.settings;
        tracing::info!(
            storage = %settings.storage.database.redacted(),
            event_bus = ?settings.event_bus_kind(),
            executor = ?settings.runs.executor,
            auth = ?settings.auth.mode,
            admin_groups = ?settings.auth.admin_groups,
            "proctord {} listening on http://{address} (UI at http://{address}{}, GraphQL at \
             http://{address}/graphql)",
            env!("CARGO_PKG_VERSION"),
            crate::playground::UI_PATH,
        );
        match &self.isolation_note {
            Some((true, note)) => tracing::info!("{note}"),
            Some((false, note)) => tracing::warn!("{note}"),
            None => {}
        }

        let (signalled_tx, signalled_rx) = tokio::sync::watch::channel(false);
        let serve = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, finishing in-flight requests");
            let _ = signalled_tx.send(true);
        });
        let grace = settings.http.shutdown_grace;
        // Runs stop alongside the requests: no new run is accepted from the first moment,
        // local runs get the same grace to finish (then are stopped and recorded as
        // CANCELLED), Kubernetes runs are left for another replica to re-attach.
        let runner = Arc::clone(self.state.runner());
        let runs_state = self.state.clone();
        let mut runs_signal = signalled_rx.clone();
        let runs_stopped = tokio::spawn(async move {
            // Also when serving ended on its own (the sender is gone then).
            let _ = runs_signal.wait_for(|signalled| *signalled).await;
            runner.shutdown(&runs_state, grace).await;
        });
        let mut deadline_signal = signalled_rx;
        let deadline = async move {
            if deadline_signal
                .wait_for(|signalled| *signalled)
                .await
                .is_ok()
            {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            served = serve => served.context("HTTP server failed")?,
            () = deadline => tracing::warn!(
                grace_seconds = grace.as_secs(),
                "grace period over; closing the remaining connections"
            ),
        }
        if runs_stopped.await.is_err() {
            tracing::error!("stopping the runs failed");
        }

        if let Some(bus) = &self.redis_bus {
            bus.shutdown().await;
        }
        self.db.close().await.context("closing the database pool")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Connects to the configured database and brings its schema up to date (always for SQLite,
/// only with `--auto-migrate` for Postgres, where a shared database is migrated on purpose).
/// The caller has checked the SQLite file's directory already. Also says whether the database
/// was empty (every migration was just applied).
pub(crate) async fn open_database(
    settings: &Settings,
) -> Result<(DatabaseConnection, bool), StartError> {
    let storage = &settings.storage;
    let db = database::connect(&storage.database, &storage.pool)
        .await
        .map_err(|e| {
            let setting = setting!(Storage, database_url);
            anyhow::anyhow!(
                "{setting}: cannot open {}: {e}",
                storage.database.redacted()
            )
        })?;
    let migrate = storage.database.backend() == StorageBackend::Sqlite || storage.auto_migrate;
    let mut fresh = false;
    if migrate {
        let applied = database::migrate_up(&db)
            .await
            .with_context(|| format!("migrating {}", storage.database.redacted()))?;
        fresh = applied.len() == database::migration_count();
        if !applied.is_empty() {
            tracing::info!(
                migrations = ?applied,
                "applied {} migration(s) to {}",
                applied.len(),
                storage.database.redacted()
            );
        }
    } else {
        let pending = database::pending_migrations(&db)
            .await
            .with_context(|| format!("reading migrations of {}", storage.database.redacted()))?;
        if let Some(first) = pending.first() {
            return Err(ConfigError::new(
                setting!(Storage, database_url),
                format!(
                    "the database is {} migration(s) behind (first: {first}); run `proctord \
                     migrate up` or start with --auto-migrate",
                    pending.len()
                ),
            )
            .into());
        }
    }
    Ok((db, fresh))
}

/// The secret keyring: configured keys, or the key file in the data directory (created with a
/// fresh key on first start).
pub(crate) fn open_keyring(settings: &Settings) -> Result<Arc<Keyring>, ConfigError> {
    match &settings.secret_keys {
        SecretKeys::Configured(keyring) => Ok(Arc::clone(keyring)),
        SecretKeys::File(path) => {
            ensure_data_dir(&settings.storage.data_dir)?;
            if settings.storage.database.backend() == StorageBackend::Postgres {
                tracing::warn!(
                    key_file = %path.display(),
                    "secrets are encrypted with a key file; every replica needs the same key, \
                     so set PROCTOR_SECRET_KEY when running more than one"
                );
            }
            Keyring::from_file(path)
                .map(Arc::new)
                .map_err(|e| ConfigError::new(setting!(Storage, data_dir), e))
        }
    }
}

/// The directory holding a SQLite file (the current directory for a bare file name).
pub(crate) fn sqlite_directory(path: &std::path::Path) -> &std::path::Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    }
}
