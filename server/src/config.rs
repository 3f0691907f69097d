//! Configuration: flags and `PROCTOR_*` environment variables, validated before anything binds.
//!
//! clap only collects raw strings here; [`Settings::from_options`] parses and checks them, so
//! every mistake produces one line that names the setting (`PROCTOR_APP_PORT (--port): …`) and
//! `proctord` exits with status 2. Legacy Proctor v2 variables are honoured where their meaning
//! carries over (see the README's configuration table).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use proctor_schema::SchemaLimits;
use proctor_schema::executions::runner::RunSettings;
use proctor_schema::notifications::NotificationDefaults;
use proctor_schema::secrets::keyring::Keyring;
use proctor_schema::system::{EventBusKind, ExecutorKind, StorageBackend};
use url::Url;

use crate::rest::version::ClientVersion;

/// `proctord`: the Proctor server.
#[derive(Parser, Debug)]
#[command(
    name = "proctord",
    version,
    about = "Proctor automation orchestrator server"
)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub options: Options,
}

/// The subcommands.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply, roll back or list database migrations.
    Migrate {
        /// Which migration action.
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print the GraphQL schema (SDL) and exit.
    Schema,
    /// Manage users of built-in authentication.
    Users {
        /// Which user action.
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Manage the encryption of secret values.
    Secrets {
        /// Which secrets action.
        #[command(subcommand)]
        action: SecretsAction,
    },
}

/// `proctord users …` actions.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum UsersAction {
    /// Create (or update) a user and print a new API token as the last line.
    Add {
        /// The user's e-mail address.
        #[arg(long)]
        email: String,
        /// A group to put the user in (repeat for several); replaces their groups.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Make the user an administrator (adds the admin groups).
        #[arg(long)]
        admin: bool,
    },
}

/// `proctord secrets …` actions.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum SecretsAction {
    /// Re-encrypt every stored secret with the current key. With the key file, a new key is
    /// generated first; with a configured key, configure the new key and move the old one to
    /// the previous keys before running this.
    RotateKey,
}

/// `proctord migrate …` actions.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back the most recent migrations.
    Down {
        /// How many migrations to roll back.
        #[arg(long, default_value_t = 1, conflicts_with = "all")]
        steps: u32,
        /// Roll back every migration (drops all Proctor tables and their data).
        #[arg(long)]
        all: bool,
    },
    /// List migrations and whether each is applied.
    Status,
}

/// Raw settings as given on the command line or in the environment.
#[derive(Args, Debug, Clone)]
pub struct Options {
    /// TCP port to listen on (0 picks a free one).
    #[arg(long, env = "PROCTOR_APP_PORT", default_value = "5001", global = true)]
    pub port: String,
    /// IP address to listen on; anything but loopback requires auth or --allow-unauthenticated.
    #[arg(
        long,
        env = "PROCTOR_BIND_ADDRESS",
        default_value = "127.0.0.1",
        global = true
    )]
    pub bind_address: String,
    /// Directory for the embedded database and key files.
    #[arg(
        long,
        env = "PROCTOR_DATA_DIR",
        default_value = "./.proctor",
        global = true
    )]
    pub data_dir: PathBuf,
    /// `postgres://user:password@host:port/db` or `sqlite://path`; the embedded SQLite file in
    /// the data directory when unset.
    #[arg(
        long,
        env = "PROCTOR_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,
    /// `redis://[:password@]host:port[/db]` or `rediss://…`; the in-memory event bus (one
    /// replica only) when unset.
    #[arg(long, env = "PROCTOR_REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<String>,
    /// Prefix of the Redis pub/sub channel; replicas of one deployment must share it.
    #[arg(
        long,
        env = "PROCTOR_REDIS_CHANNEL_PREFIX",
        default_value = "proctor",
        global = true
    )]
    pub redis_channel_prefix: String,
    /// Where procs run: `local` processes or `kubernetes` Jobs.
    #[arg(long, env = "PROCTOR_EXECUTOR", default_value = "local", global = true)]
    pub executor: String,
    /// Require callers to authenticate (`true`/`false`).
    #[arg(
        long,
        env = "PROCTOR_AUTH_ENABLED",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        global = true
    )]
    pub auth_enabled: String,
    /// Allow serving a non-loopback address with auth off.
    #[arg(
        long,
        env = "PROCTOR_ALLOW_UNAUTHENTICATED",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        global = true
    )]
    pub allow_unauthenticated: String,
    /// Apply pending Postgres migrations at start-up (SQLite always migrates itself).
    #[arg(
        long,
        env = "PROCTOR_AUTO_MIGRATE",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        global = true
    )]
    pub auto_migrate: String,
    /// AES-256 key for secret values, base64 (prefer the environment variable: command lines
    /// are visible to other users); a key file in the data directory when unset.
    #[arg(
        long,
        env = "PROCTOR_SECRET_KEY",
        hide_env_values = true,
        global = true
    )]
    pub secret_key: Option<String>,
    /// Earlier secret keys, comma-separated, still accepted for decryption after a rotation.
    #[arg(
        long,
        env = "PROCTOR_SECRET_PREVIOUS_KEYS",
        hide_env_values = true,
        global = true
    )]
    pub secret_previous_keys: Option<String>,
    /// Groups whose members are administrators, comma-separated (all are required).
    #[arg(
        long,
        env = "PROCTOR_AUTH_REQUIRED_ADMIN_GROUP",
        default_value = "proctor.admin",
        global = true
    )]
    pub admin_group: String,
    /// Directory of the built playground assets (default: playground/dist of the checkout
    /// proctord was built from).
    #[arg(long, env = "PROCTOR_PLAYGROUND_DIR", global = true)]
    pub playground_dir: Option<String>,
    /// Oldest `Client-Version` the legacy REST routes accept (e.g. v2.0.8); every version when
    /// unset.
    #[arg(long, env = "PROCTOR_MIN_CLIENT_VERSION", global = true)]
    pub min_client_version: Option<String>,
    /// Identity service to check credentials with (POST {email, token}); built-in users and
    /// tokens when unset. Needs auth enabled.
    #[arg(long, env = "PROCTOR_AUTH_WEBHOOK_URL", global = true)]
    pub auth_webhook_url: Option<String>,
    /// Seconds an identity service answer is reused.
    #[arg(
        long,
        env = "PROCTOR_AUTH_WEBHOOK_CACHE_SECONDS",
        default_value = "30",
        global = true
    )]
    pub auth_webhook_cache_seconds: String,
    /// Seconds to wait for the identity service.
    #[arg(
        long,
        env = "PROCTOR_AUTH_WEBHOOK_TIMEOUT_SECONDS",
        default_value = "5",
        global = true
    )]
    pub auth_webhook_timeout_seconds: String,
    /// This replica's id in execution leases (default: host name and a random suffix).
    /// A fixed id lets a restarted replica resume its own executions at once.
    #[arg(long, env = "PROCTOR_REPLICA_ID", global = true)]
    pub replica_id: Option<String>,
    /// Seconds a replica's claim on an execution lasts without renewal; another replica takes
    /// over after that.
    #[arg(
        long,
        env = "PROCTOR_LEASE_SECONDS",
        default_value = "15",
        global = true
    )]
    pub lease_seconds: String,
    /// Kubernetes access: empty for in-cluster, `out-of-cluster` for the default kubeconfig,
    /// or the path of a kubeconfig file.
    #[arg(
        long,
        env = "PROCTOR_KUBE_CONFIG",
        global = true,
        help_heading = "Kubernetes"
    )]
    pub kube_config: Option<String>,
    /// Kubeconfig context (the current one when unset).
    #[arg(
        long,
        env = "PROCTOR_KUBE_CONTEXT",
        global = true,
        help_heading = "Kubernetes"
    )]
    pub kube_context: Option<String>,
    /// Namespace of the Jobs.
    #[arg(
        long,
        env = "PROCTOR_DEFAULT_NAMESPACE",
        default_value = "default",
        global = true,
        help_heading = "Kubernetes"
    )]
    pub kube_namespace: String,
    /// Annotations for Jobs and their pods, as a JSON object of strings.
    #[arg(
        long,
        env = "PROCTOR_JOB_POD_ANNOTATIONS",
        global = true,
        help_heading = "Kubernetes"
    )]
    pub job_pod_annotations: Option<String>,
    /// Service account the pods run as.
    #[arg(
        long,
        env = "PROCTOR_KUBE_SERVICE_ACCOUNT_NAME",
        global = true,
        help_heading = "Kubernetes"
    )]
    pub kube_service_account: Option<String>,
    /// activeDeadlineSeconds of Jobs whose proc sets no timeout (default: the default timeout).
    #[arg(
        long,
        env = "PROCTOR_KUBE_JOB_ACTIVE_DEADLINE_SECONDS",
        global = true,
        help_heading = "Kubernetes"
    )]
    pub kube_active_deadline_seconds: Option<String>,
    /// backoffLimit of Jobs whose proc sets no retries.
    #[arg(
        long,
        env = "PROCTOR_KUBE_JOB_RETRIES",
        default_value = "0",
        global = true,
        help_heading = "Kubernetes"
    )]
    pub kube_job_retries: String,
    /// ttlSecondsAfterFinished of Jobs: how long finished Jobs stay in the cluster.
    #[arg(
        long,
        env = "PROCTOR_KUBE_JOB_TTL_SECONDS",
        default_value = "86400",
        global = true,
        help_heading = "Kubernetes"
    )]
    pub kube_job_ttl_seconds: String,
    /// Seconds an image may fail to pull before the run fails.
    #[arg(
        long,
        env = "PROCTOR_KUBE_IMAGE_PULL_GRACE_SECONDS",
        default_value = "120",
        global = true,
        help_heading = "Kubernetes"
    )]
    pub kube_image_pull_grace_seconds: String,
    /// Register the example procs on the first start of an empty SQLite database.
    #[arg(
        long,
        env = "PROCTOR_REGISTER_EXAMPLES",
        default_value = "true",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        global = true
    )]
    pub register_examples: String,
    /// Runs at once; the rest wait as PENDING.
    #[arg(
        long,
        env = "PROCTOR_MAX_PARALLEL_RUNS",
        default_value = "16",
        global = true
    )]
    pub max_parallel_runs: String,
    /// Deadline in seconds of runs whose proc sets no timeoutSeconds.
    #[arg(
        long,
        env = "PROCTOR_DEFAULT_TIMEOUT_SECONDS",
        default_value = "3600",
        global = true
    )]
    pub default_timeout_seconds: String,
    /// Seconds between SIGTERM and SIGKILL when a local run is cancelled or times out.
    #[arg(
        long,
        env = "PROCTOR_CANCEL_GRACE_SECONDS",
        default_value = "10",
        global = true
    )]
    pub cancel_grace_seconds: String,
    /// Log lines kept per execution; later output is replaced by one marker line.
    #[arg(
        long,
        env = "PROCTOR_LOG_MAX_LINES",
        default_value = "200000",
        global = true
    )]
    pub log_max_lines: String,
    /// Log line format on stderr: `text` or `json`.
    #[arg(
        long,
        env = "PROCTOR_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: String,
    /// Log filter, e.g. `info` or `proctor_server=debug,info`; `RUST_LOG` wins when set.
    /// The migration library's per-step lines are quieted by default: proctord logs a summary.
    #[arg(
        long,
        env = "PROCTOR_LOG_LEVEL",
        default_value = "info,sea_orm_migration=warn",
        global = true
    )]
    pub log_level: String,
    /// Deepest GraphQL selection nesting accepted.
    #[arg(
        long,
        env = "PROCTOR_GRAPHQL_MAX_DEPTH",
        default_value = "16",
        global = true
    )]
    pub graphql_max_depth: String,
    /// Highest GraphQL complexity score accepted.
    #[arg(
        long,
        env = "PROCTOR_GRAPHQL_MAX_COMPLEXITY",
        default_value = "10000",
        global = true
    )]
    pub graphql_max_complexity: String,
    /// Largest request body accepted, in bytes.
    #[arg(
        long,
        env = "PROCTOR_MAX_BODY_BYTES",
        default_value = "1048576",
        global = true
    )]
    pub max_body_bytes: String,
    /// Seconds to let in-flight requests and local runs finish after SIGTERM/SIGINT; local
    /// runs still going then are stopped (SIGTERM, then SIGKILL after the cancel grace) and
    /// recorded as CANCELLED ("server shut down"). Kubernetes runs are left running for
    /// another replica (or this one, restarted) to re-attach.
    #[arg(
        long,
        env = "PROCTOR_SHUTDOWN_GRACE_SECONDS",
        default_value = "10",
        global = true
    )]
    pub shutdown_grace_seconds: String,
    /// Whether this replica runs the scheduler (every replica may: each slot fires once).
    #[arg(
        long,
        env = "PROCTOR_SCHEDULER_ENABLED",
        default_value = "true",
        global = true,
        help_heading = "Schedules and notifications"
    )]
    pub scheduler_enabled: String,
    /// SMTP server for the e-mails about scheduled runs; no e-mail when unset.
    #[arg(
        long,
        env = "PROCTOR_MAIL_SERVER_HOST",
        global = true,
        help_heading = "Schedules and notifications"
    )]
    pub mail_server_host: Option<String>,
    /// SMTP port (default 465 with `tls`, 587 otherwise).
    #[arg(
        long,
        env = "PROCTOR_MAIL_SERVER_PORT",
        global = true,
        help_heading = "Schedules and notifications"
    )]
    pub mail_server_port: Option<String>,
    /// SMTP user name (no authentication when unset).
    #[arg(
        long,
        env = "PROCTOR_MAIL_USERNAME",
        global = true,
        help_heading = "Schedules and notifications"
    )]
    pub mail_username: Option<String>,
    /// SMTP password.
    #[arg(
        long,
        env = "PROCTOR_MAIL_PASSWORD",
        hide_env_values = true,
        global = true,
        help_heading = "Schedules and notifications"
    )]
    pub mail_password: Option<String>,
    /// Sender address of the e-mails (default: the user name, if it is an address).
    #[arg(
        long,
        env = "PROCTOR_MAIL_FROM",
        global = true,
        help_heading = "Schedules and notifications"
    )]
    pub mail_from: Option<String>,
    /// SMTP encryption: `starttls` (required; the default), `tls` (implicit, port 465),
    /// `opportunistic` (STARTTLS when offered) or `none`.
    #[arg(
        long,
        env = "PROCTOR_MAIL_TLS",
        global = true,
        help_heading = "Schedules and notifications"
    )]
    pub mail_tls: Option<String>,
    /// E-mail recipients (comma-separated) told about every run whose proc and schedule name
    /// none, on the states of `PROCTOR_NOTIFY_ON`.
    #[arg(
        long,
        env = "PROCTOR_NOTIFY_EMAILS",
        global = true,
        help_heading = "Schedules and notifications"
    )]
    pub notify_emails: Option<String>,
    /// The final states (comma-separated, e.g. `FAILED,TIMED_OUT`) the server-wide targets hear
    /// about; default: every final state.
    #[arg(
        long,
        env = "PROCTOR_NOTIFY_ON",
        global = true,
        help_heading = "Schedules and notifications"
    )]
    pub notify_on: Option<String>,
    /// Slack incoming webhook told about every run whose proc and schedule name none.
    #[arg(
        long,
        env = "PROCTOR_SLACK_WEBHOOK_URL",
        hide_env_values = true,
        global = true,
        help_heading = "Schedules and notifications"
    )]
    pub slack_webhook_url: Option<String>,
    /// URL a signed JSON outcome of every run whose proc and schedule name none is posted to.
    #[arg(
        long,
        env = "PROCTOR_NOTIFY_WEBHOOK_URL",
        global = true,
        help_heading = "Schedules and notifications"
    )]
    pub notify_webhook_url: Option<String>,
    /// Key of the HMAC-SHA256 signature (`X-Proctor-Signature: sha256=<hex>`) on webhook
    /// notifications; required with a server-wide webhook URL.
    #[arg(
        long,
        env = "PROCTOR_NOTIFY_WEBHOOK_SECRET",
        hide_env_values = true,
        global = true,
        help_heading = "Schedules and notifications"
    )]
    pub notify_webhook_secret: Option<String>,

    /// Legacy: Postgres host, used when no database URL is given.
    #[arg(
        long,
        env = "PROCTOR_POSTGRES_HOST",
        global = true,
        help_heading = "Legacy settings"
    )]
    pub postgres_host: Option<String>,
    /// Legacy: Postgres port.
    #[arg(
        long,
        env = "PROCTOR_POSTGRES_PORT",
        global = true,
        help_heading = "Legacy settings"
    )]
    pub postgres_port: Option<String>,
    /// Legacy: Postgres user.
    #[arg(
        long,
        env = "PROCTOR_POSTGRES_USER",
        global = true,
        help_heading = "Legacy settings"
    )]
    pub postgres_user: Option<String>,
    /// Legacy: Postgres password.
    #[arg(
        long,
        env = "PROCTOR_POSTGRES_PASSWORD",
        hide_env_values = true,
        global = true,
        help_heading = "Legacy settings"
    )]
    pub postgres_password: Option<String>,
    /// Legacy: Postgres database name.
    #[arg(
        long,
        env = "PROCTOR_POSTGRES_DATABASE",
        global = true,
        help_heading = "Legacy settings"
    )]
    pub postgres_database: Option<String>,
    /// Postgres pool size (legacy name kept).
    #[arg(
        long,
        env = "PROCTOR_POSTGRES_MAX_CONNECTIONS",
        global = true,
        help_heading = "Legacy settings"
    )]
    pub postgres_max_connections: Option<String>,
    /// Minutes after which a pooled Postgres connection is replaced (legacy name kept).
    #[arg(
        long,
        env = "PROCTOR_POSTGRES_CONNECTIONS_MAX_LIFETIME",
        global = true,
        help_heading = "Legacy settings"
    )]
    pub postgres_connections_max_lifetime: Option<String>,
    /// Legacy: Redis host:port, used when no Redis URL is given.
    #[arg(
        long,
        env = "PROCTOR_REDIS_ADDRESS",
        global = true,
        help_heading = "Legacy settings"
    )]
    pub redis_address: Option<String>,
    /// Legacy: Redis password for the legacy Redis address.
    #[arg(
        long,
        env = "PROCTOR_REDIS_PASSWORD",
        hide_env_values = true,
        global = true,
        help_heading = "Legacy settings"
    )]
    pub redis_password: Option<String>,
    /// Browser origins besides the server's own that may call it (comma-separated
    /// `scheme://host[:port]`; `*` is not accepted).
    #[arg(
        long,
        env = "PROCTOR_ALLOWED_ORIGINS",
        global = true,
        help_heading = "Security"
    )]
    pub allowed_origins: Option<String>,
    /// Host names besides loopback that may reach a server with auth off (comma-separated).
    #[arg(
        long,
        env = "PROCTOR_ALLOWED_HOSTS",
        global = true,
        help_heading = "Security"
    )]
    pub allowed_hosts: Option<String>,
    /// Operations one websocket may have open at once.
    #[arg(
        long,
        env = "PROCTOR_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        default_value = "100",
        global = true,
        help_heading = "Security"
    )]
    pub max_subscriptions_per_connection: String,
    /// Websocket operations the whole server may have open at once.
    #[arg(
        long,
        env = "PROCTOR_MAX_SUBSCRIPTIONS",
        default_value = "20000",
        global = true,
        help_heading = "Security"
    )]
    pub max_subscriptions: String,
    /// Seconds between re-checks of a websocket's credentials (1-30).
    #[arg(
        long,
        env = "PROCTOR_WS_REVALIDATE_SECONDS",
        default_value = "30",
        global = true,
        help_heading = "Security"
    )]
    pub ws_revalidate_seconds: String,
    /// Bearer token `/metrics` asks for when auth is on (open when unset).
    #[arg(
        long,
        env = "PROCTOR_METRICS_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = "Security"
    )]
    pub metrics_token: Option<String>,
    /// Hosts notifications may reach even on loopback or private addresses (comma-separated).
    #[arg(
        long,
        env = "PROCTOR_NOTIFY_ALLOWED_HOSTS",
        global = true,
        help_heading = "Security"
    )]
    pub notify_allowed_hosts: Option<String>,
    /// Shortest interval between two fires of a non-administrator's schedule, in seconds.
    #[arg(
        long,
        env = "PROCTOR_SCHEDULE_MIN_INTERVAL_SECONDS",
        default_value = "60",
        global = true,
        help_heading = "Security"
    )]
    pub schedule_min_interval_seconds: String,
    /// The user local runs run as when proctord runs as root.
    #[arg(
        long,
        env = "PROCTOR_LOCAL_RUN_AS",
        default_value = "nobody",
        global = true,
        help_heading = "Security"
    )]
    pub local_run_as: String,
}

/// A setting that cannot be used, named so the operator knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// The setting, as `ENV_NAME (--flag)`.
    pub setting: &'static str,
    /// What is wrong with it and what is expected.
    pub message: String,
}

impl ConfigError {
    /// An error about `setting`.
    pub fn new(setting: &'static str, message: impl Into<String>) -> Self {
        Self {
            setting,
            message: message.into(),
        }
    }
}

/// Setting names as they appear in errors.
mod names {
    pub const PORT: &str = "PROCTOR_APP_PORT (--port)";
    pub const BIND: &str = "PROCTOR_BIND_ADDRESS (--bind-address)";
    pub const DATA_DIR: &str = "PROCTOR_DATA_DIR (--data-dir)";
    pub const DATABASE_URL: &str = "PROCTOR_DATABASE_URL (--database-url)";
    pub const REDIS_URL: &str = "PROCTOR_REDIS_URL (--redis-url)";
    pub const REDIS_PREFIX: &str = "PROCTOR_REDIS_CHANNEL_PREFIX (--redis-channel-prefix)";
    pub const EXECUTOR: &str = "PROCTOR_EXECUTOR (--executor)";
    pub const AUTH_ENABLED: &str = "PROCTOR_AUTH_ENABLED (--auth-enabled)";
    pub const ALLOW_UNAUTHENTICATED: &str =
        "PROCTOR_ALLOW_UNAUTHENTICATED (--allow-unauthenticated)";
    pub const AUTO_MIGRATE: &str = "PROCTOR_AUTO_MIGRATE (--auto-migrate)";
    pub const LOG_FORMAT: &str = "PROCTOR_LOG_FORMAT (--log-format)";
    pub const LOG_LEVEL: &str = "PROCTOR_LOG_LEVEL (--log-level)";
    pub const MAX_DEPTH: &str = "PROCTOR_GRAPHQL_MAX_DEPTH (--graphql-max-depth)";
    pub const MAX_COMPLEXITY: &str = "PROCTOR_GRAPHQL_MAX_COMPLEXITY (--graphql-max-complexity)";
    pub const MAX_BODY: &str = "PROCTOR_MAX_BODY_BYTES (--max-body-bytes)";
    pub const GRACE: &str = "PROCTOR_SHUTDOWN_GRACE_SECONDS (--shutdown-grace-seconds)";
    pub const PG_HOST: &str = "PROCTOR_POSTGRES_HOST (--postgres-host)";
    pub const PG_PORT: &str = "PROCTOR_POSTGRES_PORT (--postgres-port)";
    pub const PG_MAX_CONNECTIONS: &str =
        "PROCTOR_POSTGRES_MAX_CONNECTIONS (--postgres-max-connections)";
    pub const PG_MAX_LIFETIME: &str =
        "PROCTOR_POSTGRES_CONNECTIONS_MAX_LIFETIME (--postgres-connections-max-lifetime)";
    pub const REDIS_ADDRESS: &str = "PROCTOR_REDIS_ADDRESS (--redis-address)";
    pub const REPLICA_ID: &str = "PROCTOR_REPLICA_ID (--replica-id)";
    pub const LEASE: &str = "PROCTOR_LEASE_SECONDS (--lease-seconds)";
    pub const KUBE_CONFIG: &str = "PROCTOR_KUBE_CONFIG (--kube-config)";
    pub const KUBE_NAMESPACE: &str = "PROCTOR_DEFAULT_NAMESPACE (--kube-namespace)";
    pub const ANNOTATIONS: &str = "PROCTOR_JOB_POD_ANNOTATIONS (--job-pod-annotations)";
    pub const KUBE_DEADLINE: &str =
        "PROCTOR_KUBE_JOB_ACTIVE_DEADLINE_SECONDS (--kube-active-deadline-seconds)";
    pub const KUBE_RETRIES: &str = "PROCTOR_KUBE_JOB_RETRIES (--kube-job-retries)";
    pub const KUBE_TTL: &str = "PROCTOR_KUBE_JOB_TTL_SECONDS (--kube-job-ttl-seconds)";
    pub const KUBE_PULL_GRACE: &str =
        "PROCTOR_KUBE_IMAGE_PULL_GRACE_SECONDS (--kube-image-pull-grace-seconds)";
    pub const EXAMPLES: &str = "PROCTOR_REGISTER_EXAMPLES (--register-examples)";
    pub const MAX_PARALLEL: &str = "PROCTOR_MAX_PARALLEL_RUNS (--max-parallel-runs)";
    pub const DEFAULT_TIMEOUT: &str = "PROCTOR_DEFAULT_TIMEOUT_SECONDS (--default-timeout-seconds)";
    pub const CANCEL_GRACE: &str = "PROCTOR_CANCEL_GRACE_SECONDS (--cancel-grace-seconds)";
    pub const LOG_MAX_LINES: &str = "PROCTOR_LOG_MAX_LINES (--log-max-lines)";
    pub const SECRET_KEY: &str = "PROCTOR_SECRET_KEY (--secret-key)";
    pub const PREVIOUS_KEYS: &str = "PROCTOR_SECRET_PREVIOUS_KEYS (--secret-previous-keys)";
    pub const ADMIN_GROUP: &str = "PROCTOR_AUTH_REQUIRED_ADMIN_GROUP (--admin-group)";
    pub const WEBHOOK_URL: &str = "PROCTOR_AUTH_WEBHOOK_URL (--auth-webhook-url)";
    pub const MIN_CLIENT: &str = "PROCTOR_MIN_CLIENT_VERSION (--min-client-version)";
    pub const PLAYGROUND_DIR: &str = "PROCTOR_PLAYGROUND_DIR (--playground-dir)";
    pub const SCHEDULER: &str = "PROCTOR_SCHEDULER_ENABLED (--scheduler-enabled)";
    pub const MAIL_HOST: &str = "PROCTOR_MAIL_SERVER_HOST (--mail-server-host)";
    pub const MAIL_PORT: &str = "PROCTOR_MAIL_SERVER_PORT (--mail-server-port)";
    pub const MAIL_USERNAME: &str = "PROCTOR_MAIL_USERNAME (--mail-username)";
    pub const MAIL_PASSWORD: &str = "PROCTOR_MAIL_PASSWORD (--mail-password)";
    pub const MAIL_FROM: &str = "PROCTOR_MAIL_FROM (--mail-from)";
    pub const MAIL_TLS: &str = "PROCTOR_MAIL_TLS (--mail-tls)";
    pub const SLACK_URL: &str = "PROCTOR_SLACK_WEBHOOK_URL (--slack-webhook-url)";
    pub const NOTIFY_EMAILS: &str = "PROCTOR_NOTIFY_EMAILS (--notify-emails)";
    pub const NOTIFY_ON: &str = "PROCTOR_NOTIFY_ON (--notify-on)";
    pub const NOTIFY_URL: &str = "PROCTOR_NOTIFY_WEBHOOK_URL (--notify-webhook-url)";
    pub const NOTIFY_SECRET: &str = "PROCTOR_NOTIFY_WEBHOOK_SECRET (--notify-webhook-secret)";
    pub const ALLOWED_ORIGINS: &str = "PROCTOR_ALLOWED_ORIGINS (--allowed-origins)";
    pub const ALLOWED_HOSTS: &str = "PROCTOR_ALLOWED_HOSTS (--allowed-hosts)";
    pub const MAX_SUBS_PER_CONNECTION: &str =
        "PROCTOR_MAX_SUBSCRIPTIONS_PER_CONNECTION (--max-subscriptions-per-connection)";
    pub const MAX_SUBS: &str = "PROCTOR_MAX_SUBSCRIPTIONS (--max-subscriptions)";
    pub const WS_REVALIDATE: &str = "PROCTOR_WS_REVALIDATE_SECONDS (--ws-revalidate-seconds)";
    pub const NOTIFY_ALLOWED_HOSTS: &str = "PROCTOR_NOTIFY_ALLOWED_HOSTS (--notify-allowed-hosts)";
    pub const SCHEDULE_MIN_INTERVAL: &str =
        "PROCTOR_SCHEDULE_MIN_INTERVAL_SECONDS (--schedule-min-interval-seconds)";
    pub const LOCAL_RUN_AS: &str = "PROCTOR_LOCAL_RUN_AS (--local-run-as)";
    pub const WEBHOOK_CACHE: &str =
        "PROCTOR_AUTH_WEBHOOK_CACHE_SECONDS (--auth-webhook-cache-seconds)";
    pub const WEBHOOK_TIMEOUT: &str =
        "PROCTOR_AUTH_WEBHOOK_TIMEOUT_SECONDS (--auth-webhook-timeout-seconds)";
}

/// Where the data lives.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// A SQLite file (the embedded default, or `sqlite://` URLs).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A Postgres server.
    Postgres {
        /// Connection URL (may hold a password: never print it, use [`DatabaseTarget::redacted`]).
        url: Url,
    },
}

impl DatabaseTarget {
    /// Which backend this is.
    pub fn backend(&self) -> StorageBackend {
        match self {
            Self::Sqlite { .. } => StorageBackend::Sqlite,
            Self::Postgres { .. } => StorageBackend::Postgres,
        }
    }

    /// A description safe for logs: the password is replaced by `***`.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite { path } => format!("sqlite {}", path.display()),
            Self::Postgres { url } => redact_url(url),
        }
    }
}

impl fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Postgres pool tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections held at once.
    pub max_connections: u32,
    /// Age after which a connection is replaced.
    pub max_lifetime: Option<Duration>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 20,
            max_lifetime: None,
        }
    }
}

/// The Redis event bus.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// Connection URL (may hold a password: print [`RedisSettings::redacted`] instead).
    pub url: Url,
    /// Channel prefix shared by the replicas of one deployment.
    pub channel_prefix: String,
}

impl RedisSettings {
    /// A description safe for logs.
    pub fn redacted(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (prefix {})", self.redacted(), self.channel_prefix)
    }
}

/// Where secret keys come from.
#[derive(Clone, Debug)]
pub enum SecretKeys {
    /// `PROCTOR_SECRET_KEY` (and previous keys), already validated.
    Configured(Arc<Keyring>),
    /// The key file, created on first use.
    File(PathBuf),
}

/// How callers are authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// Everyone may do everything (loopback only unless explicitly allowed).
    Off,
    /// Users, groups and hashed tokens in the database.
    Builtin,
    /// An external identity service.
    Webhook {
        /// Where to POST `{email, token}`.
        url: Url,
        /// How long an answer is reused.
        cache_ttl: Duration,
        /// How long to wait for an answer.
        timeout: Duration,
    },
}

/// How `proctord` reaches the Kubernetes API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KubeAccess {
    /// The service account of the pod it runs in.
    InCluster,
    /// The default kubeconfig (`$KUBECONFIG` or `~/.kube/config`).
    OutOfCluster,
    /// This kubeconfig file.
    Kubeconfig(PathBuf),
}

/// The Kubernetes executor's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeSettings {
    /// Cluster access.
    pub access: KubeAccess,
    /// Kubeconfig context.
    pub context: Option<String>,
    /// Namespace of the Jobs.
    pub namespace: String,
    /// Annotations on Jobs and pods.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Service account of the pods.
    pub service_account: Option<String>,
    /// Deadline of Jobs whose proc sets no timeout.
    pub active_deadline: Duration,
    /// backoffLimit of Jobs whose proc sets no retries.
    pub retries: u32,
    /// How long finished Jobs stay.
    pub ttl_after_finished: Duration,
    /// How long an image may fail to pull before the run fails.
    pub image_pull_grace: Duration,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Validated settings of a `proctord` process.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for the embedded database and key files.
    pub data_dir: PathBuf,
    /// The database.
    pub database: DatabaseTarget,
    /// Postgres pool tuning.
    pub pool: PoolSettings,
    /// Redis, when replicas share events through it.
    pub redis: Option<RedisSettings>,
    /// Where procs run.
    pub executor: ExecutorKind,
    /// How callers are authenticated.
    pub auth: AuthMode,
    /// Members of all these groups are administrators.
    pub admin_groups: Vec<String>,
    /// Where the secret encryption keys come from.
    pub secret_keys: SecretKeys,
    /// Whether the example procs are registered on the first start of an empty SQLite
    /// database.
    pub register_examples: bool,
    /// How runs are supervised (parallelism, log cap, lease length).
    pub runs: RunSettings,
    /// Deadline of local runs whose proc sets no timeout.
    pub default_timeout: Duration,
    /// This replica's id in execution leases.
    pub replica_id: String,
    /// The Kubernetes executor's settings (used with `executor = kubernetes`).
    pub kube: KubeSettings,
    /// Time a cancelled or timed-out local run gets between SIGTERM and SIGKILL.
    pub cancel_grace: Duration,
    /// Whether Postgres migrations run at start-up.
    pub auto_migrate: bool,
    /// GraphQL depth and complexity limits.
    pub graphql_limits: SchemaLimits,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Time in-flight requests get after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter directives.
    pub log_filter: String,
    /// Whether this replica runs the scheduler loop.
    pub scheduler_enabled: bool,
    /// Where the outcomes of scheduled runs are reported.
    pub notifications: NotificationSettings,
    /// Oldest client version the legacy REST routes serve (`None`: all).
    pub min_client_version: Option<ClientVersion>,
    /// Where the built playground assets are.
    pub playground_dir: PathBuf,
    /// Who may call, from where, and how much they may hold open.
    pub security: SecuritySettings,
}

/// The server's defences (the README's security model).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecuritySettings {
    /// Browser origins besides the server's own, as `scheme://host[:port]` in lower case.
    pub allowed_origins: Vec<String>,
    /// Host names besides loopback served while auth is off, in lower case.
    pub allowed_hosts: Vec<String>,
    /// Operations one websocket may have open at once.
    pub max_subscriptions_per_connection: usize,
    /// Websocket operations the server may have open at once.
    pub max_subscriptions: usize,
    /// How often a websocket's credentials are checked again.
    pub ws_revalidate: Duration,
    /// Bearer token `/metrics` asks for when auth is on.
    pub metrics_token: Option<Credential>,
    /// Hosts notifications may reach whatever address they resolve to, in lower case.
    pub notify_allowed_hosts: Vec<String>,
    /// Shortest interval between fires of a non-administrator's schedule.
    pub schedule_min_interval: Duration,
    /// The account local runs use when proctord runs as root.
    pub local_run_as: String,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_subscriptions_per_connection: 100,
            max_subscriptions: 20_000,
            ws_revalidate: Duration::from_secs(30),
            metrics_token: None,
            notify_allowed_hosts: Vec::new(),
            schedule_min_interval: Duration::from_secs(60),
            local_run_as: "nobody".to_owned(),
        }
    }
}

/// Server-wide notification channels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotificationSettings {
    /// The server-wide targets, as the domain sees them.
    pub defaults: NotificationDefaults,
    /// The SMTP server, when e-mail is configured.
    pub mail: Option<MailSettings>,
    /// Slack webhook for runs whose proc and schedule name none.
    pub slack_webhook_url: Option<Credential>,
    /// Webhook for runs whose proc and schedule name none.
    pub webhook_url: Option<String>,
    /// HMAC key signing webhook notifications.
    pub webhook_secret: Option<Credential>,
}

/// How e-mail is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailSettings {
    /// SMTP host.
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// Encryption.
    pub tls: MailTls,
    /// User name and password, when the server wants them.
    pub login: Option<(String, Credential)>,
    /// Sender address.
    pub from: String,
}

/// SMTP encryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailTls {
    /// STARTTLS, required.
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// STARTTLS when the server offers it.
    Opportunistic,
    /// Plain text (a local relay or a test sink).
    None,
}

/// A secret setting value: usable, but never printed (its `Debug` shows `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Settings {
    /// The embedded default rooted at `data_dir`: SQLite, in-memory bus, local executor, auth
    /// off, loopback on port 5001. Tests and embedders start here and change fields.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let secret_key_file = data_dir.join(SECRET_KEY_FILE);
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5001)),
            database: DatabaseTarget::Sqlite {
                path: data_dir.join("proctor.db"),
            },
            data_dir,
            pool: PoolSettings::default(),
            redis: None,
            executor: ExecutorKind::Local,
            auth: AuthMode::Off,
            admin_groups: vec!["proctor.admin".to_owned()],
            secret_keys: SecretKeys::File(secret_key_file),
            register_examples: true,
            runs: RunSettings::default(),
            default_timeout: Duration::from_secs(3600),
            replica_id: default_replica_id(),
            kube: KubeSettings {
                access: KubeAccess::InCluster,
                context: None,
                namespace: "default".to_owned(),
                annotations: std::collections::BTreeMap::new(),
                service_account: None,
                active_deadline: Duration::from_secs(3600),
                retries: 0,
                ttl_after_finished: Duration::from_secs(86_400),
                image_pull_grace: Duration::from_secs(120),
            },
            cancel_grace: Duration::from_secs(10),
            auto_migrate: false,
            graphql_limits: SchemaLimits::default(),
            max_body_bytes: 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
            log_format: LogFormat::Text,
            log_filter: "info".to_owned(),
            scheduler_enabled: true,
            notifications: NotificationSettings::default(),
            min_client_version: None,
            playground_dir: PathBuf::from(crate::playground::DEFAULT_DIR),
            security: SecuritySettings::default(),
        }
    }

    /// Validates raw options. Checks that need no I/O happen here; the data directory is
    /// checked by [`ensure_data_dir`] when it is actually used.
    pub fn from_options(options: &Options) -> Result<Self, ConfigError> {
        let port: u16 = options.port.trim().parse().map_err(|_| {
            ConfigError::new(
                names::PORT,
                format!("{:?} is not a port number (0-65535)", options.port),
            )
        })?;
        let bind: IpAddr = options.bind_address.trim().parse().map_err(|_| {
            ConfigError::new(
                names::BIND,
                format!(
                    "{:?} is not an IP address (use e.g. 127.0.0.1, 0.0.0.0 or ::1)",
                    options.bind_address
                ),
            )
        })?;
        let executor = match options.executor.trim().to_ascii_lowercase().as_str() {
            "local" => ExecutorKind::Local,
            "kubernetes" | "k8s" => ExecutorKind::Kubernetes,
            other => {
                return Err(ConfigError::new(
                    names::EXECUTOR,
                    format!("unknown executor {other:?} (expected \"local\" or \"kubernetes\")"),
                ));
            }
        };
        let log_format = match options.log_format.trim().to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::new(
                    names::LOG_FORMAT,
                    format!("unknown log format {other:?} (expected \"text\" or \"json\")"),
                ));
            }
        };
        let log_filter = options.log_level.trim().to_owned();
        if log_filter.is_empty() {
            return Err(ConfigError::new(names::LOG_LEVEL, "must not be empty"));
        }
        let auth_enabled = parse_bool(names::AUTH_ENABLED, &options.auth_enabled)?;
        let allow_unauthenticated =
            parse_bool(names::ALLOW_UNAUTHENTICATED, &options.allow_unauthenticated)?;
        if !auth_enabled && !bind.is_loopback() && !allow_unauthenticated {
            return Err(ConfigError::new(
                names::BIND,
                format!(
                    "refusing to serve {bind} with authentication off; enable it with \
                     PROCTOR_AUTH_ENABLED=true or accept the risk with --allow-unauthenticated"
                ),
            ));
        }
        let data_dir = options.data_dir.clone();
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::new(names::DATA_DIR, "must not be empty"));
        }
        let database = database_target(options, &data_dir)?;
        let pool = PoolSettings {
            max_connections: match &options.postgres_max_connections {
                Some(raw) => parse_positive(names::PG_MAX_CONNECTIONS, raw)?,
                None => PoolSettings::default().max_connections,
            },
            max_lifetime: options
                .postgres_connections_max_lifetime
                .as_deref()
                .map(|raw| parse_positive::<u64>(names::PG_MAX_LIFETIME, raw))
                .transpose()?
                .map(|minutes| Duration::from_secs(minutes * 60)),
        };
        let redis = redis_settings(options)?;
        let auth = auth_mode(options, auth_enabled)?;
        let admin_groups: Vec<String> = options
            .admin_group
            .split(',')
            .map(str::trim)
            .filter(|group| !group.is_empty())
            .map(str::to_owned)
            .collect();
        if admin_groups.is_empty() {
            return Err(ConfigError::new(
                names::ADMIN_GROUP,
                "name at least one group",
            ));
        }
        let secret_keys = secret_keys(options, &data_dir)?;
        let default_timeout = Duration::from_secs(parse_positive(
            names::DEFAULT_TIMEOUT,
            &options.default_timeout_seconds,
        )?);
        let graphql_limits = SchemaLimits {
            max_depth: parse_positive(names::MAX_DEPTH, &options.graphql_max_depth)?,
            max_complexity: parse_positive(names::MAX_COMPLEXITY, &options.graphql_max_complexity)?,
        };
        Ok(Self {
            listen: SocketAddr::new(bind, port),
            data_dir,
            database,
            pool,
            redis,
            executor,
            auth,
            admin_groups,
            secret_keys,
            register_examples: parse_bool(names::EXAMPLES, &options.register_examples)?,
            runs: RunSettings {
                max_parallel: parse_positive(names::MAX_PARALLEL, &options.max_parallel_runs)?,
                log_max_lines: parse_positive(names::LOG_MAX_LINES, &options.log_max_lines)?,
                lease: Duration::from_secs(parse_positive(names::LEASE, &options.lease_seconds)?),
                default_timeout,
                ..RunSettings::default()
            },
            default_timeout,
            replica_id: replica_id(options)?,
            kube: kube_settings(options, default_timeout)?,
            cancel_grace: Duration::from_secs(parse_positive(
                names::CANCEL_GRACE,
                &options.cancel_grace_seconds,
            )?),
            auto_migrate: parse_bool(names::AUTO_MIGRATE, &options.auto_migrate)?,
            graphql_limits,
            max_body_bytes: parse_positive(names::MAX_BODY, &options.max_body_bytes)?,
            shutdown_grace: Duration::from_secs(parse_positive(
                names::GRACE,
                &options.shutdown_grace_seconds,
            )?),
            log_format,
            log_filter,
            scheduler_enabled: parse_bool(names::SCHEDULER, &options.scheduler_enabled)?,
            notifications: notification_settings(options)?,
            min_client_version: options
                .min_client_version
                .as_deref()
                .map(str::trim)
                .filter(|raw| !raw.is_empty())
                .map(|raw| {
                    raw.parse()
                        .map_err(|e| ConfigError::new(names::MIN_CLIENT, e))
                })
                .transpose()?,
            playground_dir: playground_dir(options)?,
            security: security_settings(options)?,
        })
    }

    /// Whether callers must authenticate.
    pub fn auth_enabled(&self) -> bool {
        self.auth != AuthMode::Off
    }

    /// Which event bus these settings select.
    pub fn event_bus_kind(&self) -> EventBusKind {
        if self.redis.is_some() {
            EventBusKind::Redis
        } else {
            EventBusKind::Memory
        }
    }
}

/// Name of the key file in the data directory (embedded default).
pub const SECRET_KEY_FILE: &str = "secret.key";

fn secret_keys(options: &Options, data_dir: &Path) -> Result<SecretKeys, ConfigError> {
    let previous: Vec<String> = options
        .secret_previous_keys
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
        .collect();
    match options.secret_key.as_deref().map(str::trim) {
        Some(key) if !key.is_empty() => {
            for (index, old) in previous.iter().enumerate() {
                Keyring::from_config(old, &[]).map_err(|e| {
                    ConfigError::new(names::PREVIOUS_KEYS, format!("key {}: {e}", index + 1))
                })?;
            }
            let keyring = Keyring::from_config(key, &previous)
                .map_err(|e| ConfigError::new(names::SECRET_KEY, e.to_string()))?;
            Ok(SecretKeys::Configured(Arc::new(keyring)))
        }
        _ if !previous.is_empty() => Err(ConfigError::new(
            names::PREVIOUS_KEYS,
            "previous keys need a current key in PROCTOR_SECRET_KEY",
        )),
        _ => Ok(SecretKeys::File(data_dir.join(SECRET_KEY_FILE))),
    }
}

/// A set, non-blank option value, trimmed.
fn given(value: Option<&String>) -> Option<&str> {
    value
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
}

fn security_settings(options: &Options) -> Result<SecuritySettings, ConfigError> {
    let list = |raw: Option<&String>| -> Vec<String> {
        raw.map(|raw| {
            raw.split(',')
                .map(|item| item.trim().to_ascii_lowercase())
                .filter(|item| !item.is_empty())
                .collect()
        })
        .unwrap_or_default()
    };
    let allowed_origins = list(options.allowed_origins.as_ref())
        .into_iter()
        .map(|origin| {
            crate::guard::normalize_origin(&origin)
                .map_err(|e| ConfigError::new(names::ALLOWED_ORIGINS, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let allowed_hosts = list(options.allowed_hosts.as_ref());
    if let Some(bad) = allowed_hosts
        .iter()
        .find(|host| host.as_str() == "*" || host.contains('/'))
    {
        return Err(ConfigError::new(
            names::ALLOWED_HOSTS,
            format!("{bad:?} is not a host name (list names like proctor.example.com)"),
        ));
    }
    let notify_allowed_hosts = list(options.notify_allowed_hosts.as_ref());
    if let Some(bad) = notify_allowed_hosts
        .iter()
        .find(|host| host.as_str() == "*" || host.contains('/'))
    {
        return Err(ConfigError::new(
            names::NOTIFY_ALLOWED_HOSTS,
            format!("{bad:?} is not a host name (list names like hooks.example.com or 10.0.0.5)"),
        ));
    }
    let ws_revalidate: u64 = parse_positive(names::WS_REVALIDATE, &options.ws_revalidate_seconds)?;
    if ws_revalidate > 30 {
        return Err(ConfigError::new(
            names::WS_REVALIDATE,
            format!(
                "{ws_revalidate} is more than 30 seconds; a revoked token must not live longer"
            ),
        ));
    }
    let local_run_as = options.local_run_as.trim().to_owned();
    if local_run_as.is_empty() {
        return Err(ConfigError::new(
            names::LOCAL_RUN_AS,
            "must name a user (default nobody)",
        ));
    }
    Ok(SecuritySettings {
        allowed_origins,
        allowed_hosts,
        max_subscriptions_per_connection: parse_positive(
            names::MAX_SUBS_PER_CONNECTION,
            &options.max_subscriptions_per_connection,
        )?,
        max_subscriptions: parse_positive(names::MAX_SUBS, &options.max_subscriptions)?,
        ws_revalidate: Duration::from_secs(ws_revalidate),
        metrics_token: given(options.metrics_token.as_ref()).map(Credential::new),
        notify_allowed_hosts,
        schedule_min_interval: Duration::from_secs(
            options
                .schedule_min_interval_seconds
                .trim()
                .parse::<u64>()
                .map_err(|_| {
                    ConfigError::new(
                        names::SCHEDULE_MIN_INTERVAL,
                        format!(
                            "{:?} is not a number of seconds (0 or more)",
                            options.schedule_min_interval_seconds
                        ),
                    )
                })?,
        ),
        local_run_as,
    })
}

fn notification_settings(options: &Options) -> Result<NotificationSettings, ConfigError> {
    let mail = match given(options.mail_server_host.as_ref()) {
        Some(host) => Some(mail_settings(options, host)?),
        None => {
            for (setting, value) in [
                (names::MAIL_PORT, &options.mail_server_port),
                (names::MAIL_USERNAME, &options.mail_username),
                (names::MAIL_FROM, &options.mail_from),
                (names::MAIL_TLS, &options.mail_tls),
            ] {
                if given(value.as_ref()).is_some() {
                    return Err(ConfigError::new(
                        setting,
                        "is set but PROCTOR_MAIL_SERVER_HOST is not; set the SMTP host too",
                    ));
                }
            }
            None
        }
    };
    let slack_webhook_url = given(options.slack_webhook_url.as_ref())
        .map(|raw| http_url(names::SLACK_URL, raw, false).map(|_| Credential::new(raw)))
        .transpose()?;
    let webhook_url = given(options.notify_webhook_url.as_ref())
        .map(|raw| http_url(names::NOTIFY_URL, raw, true).map(|_| raw.to_owned()))
        .transpose()?;
    let webhook_secret = given(options.notify_webhook_secret.as_ref()).map(Credential::new);
    if webhook_url.is_some() && webhook_secret.is_none() {
        return Err(ConfigError::new(
            names::NOTIFY_SECRET,
            "must be set with PROCTOR_NOTIFY_WEBHOOK_URL: receivers check the signature with it",
        ));
    }
    let list = |raw: &Option<String>| -> Vec<String> {
        given(raw.as_ref())
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let emails = proctor_schema::notifications::check_emails("", &list(&options.notify_emails))
        .map_err(|error| ConfigError::new(names::NOTIFY_EMAILS, error.to_string()))?;
    if !emails.is_empty() && mail.is_none() {
        return Err(ConfigError::new(
            names::NOTIFY_EMAILS,
            "is set but no SMTP server is (PROCTOR_MAIL_SERVER_HOST)",
        ));
    }
    let on = match list(&options.notify_on) {
        states if states.is_empty() => proctor_schema::notifications::final_states(),
        states => proctor_schema::notifications::parse_states("", &states)
            .map_err(|error| ConfigError::new(names::NOTIFY_ON, error.to_string()))?,
    };
    Ok(NotificationSettings {
        defaults: NotificationDefaults {
            emails,
            slack: slack_webhook_url.is_some(),
            webhook: webhook_url.is_some(),
            on,
        },
        mail,
        slack_webhook_url,
        webhook_url,
        webhook_secret,
    })
}

fn mail_settings(options: &Options, host: &str) -> Result<MailSettings, ConfigError> {
    if host.contains([':', '/', ' ', '@']) {
        return Err(ConfigError::new(
            names::MAIL_HOST,
            format!("{host:?} is not a host name; the port goes in PROCTOR_MAIL_SERVER_PORT"),
        ));
    }
    let tls = match given(options.mail_tls.as_ref())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("starttls") => MailTls::StartTls,
        Some("tls") => MailTls::Implicit,
        Some("opportunistic") => MailTls::Opportunistic,
        Some("none") => MailTls::None,
        Some(other) => {
            return Err(ConfigError::new(
                names::MAIL_TLS,
                format!("{other:?} is not one of starttls, tls, opportunistic, none"),
            ));
        }
    };
    let port = match given(options.mail_server_port.as_ref()) {
        Some(raw) => parse_positive::<u16>(names::MAIL_PORT, raw)?,
        None if tls == MailTls::Implicit => 465,
        None => 587,
    };
    let login = match (
        given(options.mail_username.as_ref()),
        given(options.mail_password.as_ref()),
    ) {
        (Some(user), Some(password)) => Some((user.to_owned(), Credential::new(password))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::new(
                names::MAIL_PASSWORD,
                "must be set with PROCTOR_MAIL_USERNAME",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                names::MAIL_USERNAME,
                "must be set with PROCTOR_MAIL_PASSWORD",
            ));
        }
    };
    let from = match given(options.mail_from.as_ref()) {
        Some(from) => (names::MAIL_FROM, from.to_owned()),
        None => match &login {
            Some((user, _)) => (names::MAIL_USERNAME, user.clone()),
            None => {
                return Err(ConfigError::new(
                    names::MAIL_FROM,
                    "must be set when e-mail has no user name to send from",
                ));
            }
        },
    };
    if !looks_like_address(&from.1) {
        return Err(ConfigError::new(
            from.0,
            format!(
                "{:?} is not an e-mail address to send from; set PROCTOR_MAIL_FROM",
                from.1
            ),
        ));
    }
    Ok(MailSettings {
        host: host.to_owned(),
        port,
        tls,
        login,
        from: from.1,
    })
}

/// `name@domain` or `Name <name@domain>`, as the mailer will read it.
fn looks_like_address(text: &str) -> bool {
    text.parse::<lettre::message::Mailbox>().is_ok()
}

/// An `http(s)` URL with a host; `show` says whether the value may appear in the error (a Slack
/// URL is a credential).
fn http_url(setting: &'static str, raw: &str, show: bool) -> Result<Url, ConfigError> {
    let shown = if show {
        format!("{raw:?} ")
    } else {
        String::new()
    };
    let url = Url::parse(raw)
        .map_err(|e| ConfigError::new(setting, format!("{shown}is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::new(
            setting,
            format!("{shown}must be an http:// or https:// URL with a host"),
        ));
    }
    Ok(url)
}

fn auth_mode(options: &Options, enabled: bool) -> Result<AuthMode, ConfigError> {
    let Some(raw) = options
        .auth_webhook_url
        .as_deref()
        .filter(|u| !u.is_empty())
    else {
        return Ok(if enabled {
            AuthMode::Builtin
        } else {
            AuthMode::Off
        });
    };
    if !enabled {
        return Err(ConfigError::new(
            names::WEBHOOK_URL,
            "is set but authentication is off; set PROCTOR_AUTH_ENABLED=true as well",
        ));
    }
    let url = Url::parse(raw)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
        .ok_or_else(|| {
            ConfigError::new(names::WEBHOOK_URL, "must be an http:// or https:// URL")
        })?;
    Ok(AuthMode::Webhook {
        url,
        cache_ttl: Duration::from_secs(parse_positive(
            names::WEBHOOK_CACHE,
            &options.auth_webhook_cache_seconds,
        )?),
        timeout: Duration::from_secs(parse_positive(
            names::WEBHOOK_TIMEOUT,
            &options.auth_webhook_timeout_seconds,
        )?),
    })
}

/// The host name with a random suffix: unique per process, recognisable per machine.
fn default_replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "proctord".to_owned());
    let mut suffix = [0_u8; 3];
    // Without randomness the process id still separates replicas on one host.
    let suffix = match getrandom::fill(&mut suffix) {
        Ok(()) => hex::encode(suffix),
        Err(_) => std::process::id().to_string(),
    };
    format!("{host}-{suffix}")
}

fn replica_id(options: &Options) -> Result<String, ConfigError> {
    match options.replica_id.as_deref().map(str::trim) {
        None | Some("") => Ok(default_replica_id()),
        Some(id) if id.len() <= 255 && !id.contains(char::is_whitespace) => Ok(id.to_owned()),
        Some(_) => Err(ConfigError::new(
            names::REPLICA_ID,
            "must be at most 255 characters without spaces",
        )),
    }
}

fn kube_settings(
    options: &Options,
    default_timeout: Duration,
) -> Result<KubeSettings, ConfigError> {
    let access = match options.kube_config.as_deref().map(str::trim) {
        None | Some("") => KubeAccess::InCluster,
        Some("out-of-cluster") => KubeAccess::OutOfCluster,
        Some(path) => KubeAccess::Kubeconfig(PathBuf::from(path)),
    };
    let namespace = options.kube_namespace.trim().to_owned();
    let dns_label = |value: &str| {
        !value.is_empty()
            && value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !value.starts_with('-')
            && !value.ends_with('-')
    };
    if !dns_label(&namespace) {
        return Err(ConfigError::new(
            names::KUBE_NAMESPACE,
            format!("{namespace:?} is not a valid namespace name"),
        ));
    }
    let annotations = match options.job_pod_annotations.as_deref().map(str::trim) {
        None | Some("") => std::collections::BTreeMap::new(),
        Some(json) => serde_json::from_str(json).map_err(|e| {
            ConfigError::new(
                names::ANNOTATIONS,
                format!("must be a JSON object of strings, e.g. {{\"team\":\"ops\"}} ({e})"),
            )
        })?,
    };
    let retries: u32 =
        options.kube_job_retries.trim().parse().map_err(|_| {
            ConfigError::new(names::KUBE_RETRIES, "must be a whole number, 0 or more")
        })?;
    Ok(KubeSettings {
        access,
        // Proctor v2 meant "the current context" by `default`.
        context: options
            .kube_context
            .as_deref()
            .map(str::trim)
            .filter(|context| !context.is_empty() && *context != "default")
            .map(str::to_owned),
        namespace,
        annotations,
        service_account: options
            .kube_service_account
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned),
        active_deadline: match &options.kube_active_deadline_seconds {
            Some(raw) => Duration::from_secs(parse_positive(names::KUBE_DEADLINE, raw)?),
            None => default_timeout,
        },
        retries,
        ttl_after_finished: Duration::from_secs(parse_positive(
            names::KUBE_TTL,
            &options.kube_job_ttl_seconds,
        )?),
        image_pull_grace: Duration::from_secs(parse_positive(
            names::KUBE_PULL_GRACE,
            &options.kube_image_pull_grace_seconds,
        )?),
    })
}

/// The playground assets: a directory given explicitly must hold a built playground; the
/// default may be missing (the page then says how to build it).
fn playground_dir(options: &Options) -> Result<PathBuf, ConfigError> {
    match options
        .playground_dir
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        None => Ok(PathBuf::from(crate::playground::DEFAULT_DIR)),
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.join("index.html").is_file() {
                Ok(dir)
            } else {
                Err(ConfigError::new(
                    names::PLAYGROUND_DIR,
                    format!(
                        "{} holds no built playground (index.html); build it with `npm --prefix \
                         playground ci && npm --prefix playground run build`",
                        dir.display()
                    ),
                ))
            }
        }
    }
}

fn parse_bool(setting: &'static str, raw: &str) -> Result<bool, ConfigError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError::new(
            setting,
            format!("{raw:?} is not a boolean (expected true or false)"),
        )),
    }
}

fn parse_positive<T>(setting: &'static str, raw: &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + Default,
{
    match raw.trim().parse::<T>() {
        Ok(value) if value > T::default() => Ok(value),
        _ => Err(ConfigError::new(
            setting,
            format!("{raw:?} is not a positive whole number"),
        )),
    }
}

fn database_target(options: &Options, data_dir: &Path) -> Result<DatabaseTarget, ConfigError> {
    if let Some(raw) = options
        .database_url
        .as_deref()
        .filter(|raw| !raw.is_empty())
    {
        return parse_database_url(raw);
    }
    if let Some(host) = options.postgres_host.as_deref().filter(|h| !h.is_empty()) {
        return legacy_postgres_url(options, host).map(|url| DatabaseTarget::Postgres { url });
    }
    Ok(DatabaseTarget::Sqlite {
        path: data_dir.join("proctor.db"),
    })
}

fn parse_database_url(raw: &str) -> Result<DatabaseTarget, ConfigError> {
    let error = |message: String| ConfigError::new(names::DATABASE_URL, message);
    if let Some(rest) = raw.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err(error(
                "an in-memory SQLite database would lose everything on restart; give a file \
                 path such as sqlite://./proctor.db"
                    .to_owned(),
            ));
        }
        return Ok(DatabaseTarget::Sqlite {
            path: PathBuf::from(path),
        });
    }
    let url = Url::parse(raw).map_err(|e| {
        error(format!(
            "not a valid URL ({e}); expected postgres://user:password@host:port/database or \
             sqlite://path"
        ))
    })?;
    match url.scheme() {
        "postgres" | "postgresql" if url.host_str().is_some_and(|h| !h.is_empty()) => {
            Ok(DatabaseTarget::Postgres { url })
        }
        "postgres" | "postgresql" => Err(error(format!("{} has no host", redact_url(&url)))),
        other => Err(error(format!(
            "unsupported scheme {other:?} (expected postgres:// or sqlite://)"
        ))),
    }
}

fn legacy_postgres_url(options: &Options, host: &str) -> Result<Url, ConfigError> {
    let mut url = Url::parse("postgres://localhost").expect("static URL parses");
    url.set_host(Some(host))
        .map_err(|e| ConfigError::new(names::PG_HOST, format!("{host:?}: {e}")))?;
    if let Some(port) = options.postgres_port.as_deref().filter(|p| !p.is_empty()) {
        let port: u16 = parse_positive(names::PG_PORT, port)?;
        url.set_port(Some(port)).expect("postgres URLs take a port");
    }
    if let Some(user) = options.postgres_user.as_deref() {
        url.set_username(user).expect("postgres URLs take a user");
    }
    if let Some(password) = options.postgres_password.as_deref() {
        url.set_password(Some(password))
            .expect("postgres URLs take a password");
    }
    if let Some(database) = options.postgres_database.as_deref() {
        url.set_path(database);
    }
    Ok(url)
}

fn redis_settings(options: &Options) -> Result<Option<RedisSettings>, ConfigError> {
    let prefix = options.redis_channel_prefix.trim();
    if prefix.is_empty() || prefix.contains(char::is_whitespace) {
        return Err(ConfigError::new(
            names::REDIS_PREFIX,
            "must be a non-empty word without spaces",
        ));
    }
    let url = if let Some(raw) = options.redis_url.as_deref().filter(|raw| !raw.is_empty()) {
        let url = Url::parse(raw).map_err(|e| {
            ConfigError::new(
                names::REDIS_URL,
                format!("not a valid URL ({e}); expected redis://host:port"),
            )
        })?;
        match url.scheme() {
            "redis" | "rediss" if url.host_str().is_some_and(|h| !h.is_empty()) => url,
            "redis" | "rediss" => {
                return Err(ConfigError::new(names::REDIS_URL, "the URL has no host"));
            }
            other => {
                return Err(ConfigError::new(
                    names::REDIS_URL,
                    format!("unsupported scheme {other:?} (expected redis:// or rediss://)"),
                ));
            }
        }
    } else if let Some(address) = options.redis_address.as_deref().filter(|a| !a.is_empty()) {
        let mut url = Url::parse(&format!("redis://{address}")).map_err(|e| {
            ConfigError::new(
                names::REDIS_ADDRESS,
                format!("{address:?} is not host:port ({e})"),
            )
        })?;
        if let Some(password) = options.redis_password.as_deref().filter(|p| !p.is_empty()) {
            url.set_password(Some(password))
                .expect("redis URLs take a password");
        }
        url
    } else {
        return Ok(None);
    };
    Ok(Some(RedisSettings {
        url,
        channel_prefix: prefix.to_owned(),
    }))
}

/// The URL with any password replaced by `***`.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Only fails for URLs that cannot have credentials, which then have no password.
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

/// Creates the data directory (mode 0700) if needed and checks that it is writable.
pub fn ensure_data_dir(path: &Path) -> Result<(), ConfigError> {
    let fail = |what: &str, error: std::io::Error| {
        ConfigError::new(
            names::DATA_DIR,
            format!("{what} {}: {error}", path.display()),
        )
    };
    if !path.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(path).map_err(|e| fail("cannot create", e))?;
    }
    if !path.is_dir() {
        return Err(ConfigError::new(
            names::DATA_DIR,
            format!("{} is not a directory", path.display()),
        ));
    }
    let probe = path.join(".proctor-write-check");
    std::fs::write(&probe, b"").map_err(|e| fail("cannot write to", e))?;
    std::fs::remove_file(&probe).map_err(|e| fail("cannot write to", e))?;
    Ok(())
}

/// The setting name for errors about the bound port (used when binding fails).
pub const PORT_SETTING: &str = names::PORT;
/// The setting name for errors about the account local runs use.
pub const LOCAL_RUN_AS_SETTING: &str = names::LOCAL_RUN_AS;
/// The setting name for errors about the database.
pub const DATABASE_SETTING: &str = names::DATABASE_URL;
/// The setting name for errors about cluster access.
pub const KUBE_CONFIG_SETTING: &str = names::KUBE_CONFIG;
/// The setting name for errors about Redis.
pub const REDIS_SETTING: &str = names::REDIS_URL;

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> Options {
        let mut argv = vec!["proctord"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("arguments parse").options
    }

    fn settings(args: &[&str]) -> Result<Settings, ConfigError> {
        Settings::from_options(&options(args))
    }

    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn nothing_configured_is_the_embedded_default() {
        let settings = settings(&["--data-dir", "/tmp/p"]).unwrap();
        assert_eq!(settings.listen, "127.0.0.1:5001".parse().unwrap());
        assert_eq!(
            settings.database,
            DatabaseTarget::Sqlite {
                path: "/tmp/p/proctor.db".into()
            }
        );
        assert_eq!(settings.event_bus_kind(), EventBusKind::Memory);
        assert_eq!(settings.executor, ExecutorKind::Local);
        assert_eq!(settings.auth, AuthMode::Off);
        assert_eq!(settings.admin_groups, vec!["proctor.admin".to_owned()]);
        assert_eq!(settings.min_client_version, None, "every client version");
        assert!(
            matches!(&settings.secret_keys, SecretKeys::File(path) if path == Path::new("/tmp/p/secret.key"))
        );
    }

    #[test]
    fn each_bad_value_names_its_setting() {
        let cases: &[(&[&str], &str)] = &[
            (&["--port", "http"], "PROCTOR_APP_PORT"),
            (&["--port", "70000"], "PROCTOR_APP_PORT"),
            (&["--bind-address", "localhost"], "PROCTOR_BIND_ADDRESS"),
            (&["--executor", "docker"], "PROCTOR_EXECUTOR"),
            (&["--log-format", "xml"], "PROCTOR_LOG_FORMAT"),
            (&["--auth-enabled=maybe"], "PROCTOR_AUTH_ENABLED"),
            (&["--database-url", "mysql://h/db"], "PROCTOR_DATABASE_URL"),
            (&["--database-url", "postgres://"], "PROCTOR_DATABASE_URL"),
            (
                &["--database-url", "sqlite::memory:"],
                "PROCTOR_DATABASE_URL",
            ),
            (&["--redis-url", "http://h:1"], "PROCTOR_REDIS_URL"),
            (&["--redis-url", "not a url"], "PROCTOR_REDIS_URL"),
            (&["--graphql-max-depth", "0"], "PROCTOR_GRAPHQL_MAX_DEPTH"),
            (&["--max-parallel-runs", "0"], "PROCTOR_MAX_PARALLEL_RUNS"),
            (
                &["--default-timeout-seconds", "soon"],
                "PROCTOR_DEFAULT_TIMEOUT_SECONDS",
            ),
            (
                &["--cancel-grace-seconds=-1"],
                "PROCTOR_CANCEL_GRACE_SECONDS",
            ),
            (&["--log-max-lines", "0"], "PROCTOR_LOG_MAX_LINES"),
            (
                &["--min-client-version", "2.x"],
                "PROCTOR_MIN_CLIENT_VERSION",
            ),
            (&["--lease-seconds", "0"], "PROCTOR_LEASE_SECONDS"),
            (&["--replica-id", "has space"], "PROCTOR_REPLICA_ID"),
            (&["--kube-namespace", "Prod"], "PROCTOR_DEFAULT_NAMESPACE"),
            (
                &["--job-pod-annotations", "[1]"],
                "PROCTOR_JOB_POD_ANNOTATIONS",
            ),
            (&["--kube-job-retries", "many"], "PROCTOR_KUBE_JOB_RETRIES"),
            (
                &["--postgres-host", "db", "--postgres-port", "x"],
                "PROCTOR_POSTGRES_PORT",
            ),
            (
                &["--scheduler-enabled", "sometimes"],
                "PROCTOR_SCHEDULER_ENABLED",
            ),
            (&["--mail-server-port", "25"], "PROCTOR_MAIL_SERVER_PORT"),
            (
                &[
                    "--mail-server-host",
                    "smtp.example.com:587",
                    "--mail-from",
                    "p@example.com",
                ],
                "PROCTOR_MAIL_SERVER_HOST",
            ),
            (
                &["--mail-server-host", "smtp.example.com"],
                "PROCTOR_MAIL_FROM",
            ),
            (
                &[
                    "--mail-server-host",
                    "smtp.example.com",
                    "--mail-username",
                    "proctor",
                ],
                "PROCTOR_MAIL_PASSWORD",
            ),
            (
                &[
                    "--mail-server-host",
                    "smtp.example.com",
                    "--mail-username",
                    "proctor",
                    "--mail-password",
                    "pw",
                ],
                "PROCTOR_MAIL_USERNAME",
            ),
            (
                &[
                    "--mail-server-host",
                    "smtp",
                    "--mail-from",
                    "p@example.com",
                    "--mail-tls",
                    "ssl",
                ],
                "PROCTOR_MAIL_TLS",
            ),
            (
                &[
                    "--mail-server-host",
                    "smtp",
                    "--mail-from",
                    "p@example.com",
                    "--mail-server-port",
                    "0",
                ],
                "PROCTOR_MAIL_SERVER_PORT",
            ),
            (
                &["--slack-webhook-url", "hooks.slack.com/x"],
                "PROCTOR_SLACK_WEBHOOK_URL",
            ),
            (
                &["--notify-webhook-url", "ftp://h/x"],
                "PROCTOR_NOTIFY_WEBHOOK_URL",
            ),
            (
                &["--notify-webhook-url", "https://h/x"],
                "PROCTOR_NOTIFY_WEBHOOK_SECRET",
            ),
        ];
        for (args, setting) in cases {
            let error = settings(args).expect_err(&format!("{args:?} must be rejected"));
            assert!(
                error.to_string().starts_with(setting),
                "{args:?} gave {error}"
            );
            assert!(!error.to_string().contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn kubernetes_settings_keep_the_legacy_meanings() {
        let settings = settings(&[
            "--kube-config",
            "out-of-cluster",
            "--kube-context",
            "default",
            "--job-pod-annotations",
            r#"{"team":"ops"}"#,
            "--default-timeout-seconds",
            "90",
        ])
        .unwrap();
        assert_eq!(settings.kube.access, KubeAccess::OutOfCluster);
        assert_eq!(
            settings.kube.context, None,
            "`default` means the current context"
        );
        assert_eq!(settings.kube.annotations["team"], "ops");
        assert_eq!(settings.kube.active_deadline, Duration::from_secs(90));
        let path = settings_from(&["--kube-config", "/etc/kube.yaml"])
            .kube
            .access;
        assert_eq!(path, KubeAccess::Kubeconfig("/etc/kube.yaml".into()));
        assert_ne!(
            default_replica_id(),
            default_replica_id(),
            "unique per process"
        );
    }

    fn settings_from(args: &[&str]) -> Settings {
        settings(args).unwrap()
    }

    #[test]
    fn a_minimum_client_version_is_read_like_the_v2_cli_announces_it() {
        let minimum = settings_from(&["--min-client-version", " v2.0 "])
            .min_client_version
            .expect("set");
        assert_eq!(minimum.to_string(), "2.0.0");
        assert_eq!(
            settings_from(&["--min-client-version", ""]).min_client_version,
            None,
            "empty means unset (v2 answered every CLI call with 500 then)"
        );
    }

    #[test]
    fn auth_modes_and_admin_groups() {
        assert_eq!(
            settings(&["--auth-enabled"]).unwrap().auth,
            AuthMode::Builtin
        );
        let webhook = settings(&[
            "--auth-enabled",
            "--auth-webhook-url",
            "https://id.example.com/check",
            "--auth-webhook-cache-seconds",
            "7",
        ])
        .unwrap();
        assert!(matches!(
            webhook.auth,
            AuthMode::Webhook { cache_ttl, .. } if cache_ttl == Duration::from_secs(7)
        ));
        let groups = settings(&["--admin-group", "ops, security"])
            .unwrap()
            .admin_groups;
        assert_eq!(groups, vec!["ops".to_owned(), "security".to_owned()]);
    }

    #[test]
    fn configured_secret_keys_are_checked_and_never_printed() {
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
        let settings = settings(&["--secret-key", key]).unwrap();
        assert!(matches!(settings.secret_keys, SecretKeys::Configured(_)));
        assert!(!format!("{settings:?}").contains(key));
        let error =
            Settings::from_options(&options(&["--secret-key", "bm90IDMyIGJ5dGVz"])).unwrap_err();
        assert!(!error.to_string().contains("bm90IDMyIGJ5dGVz"), "{error}");
    }

    #[test]
    fn auth_off_on_a_public_address_needs_an_explicit_opt_in() {
        let error = settings(&["--bind-address", "0.0.0.0"]).unwrap_err();
        assert!(
            error.to_string().contains("--allow-unauthenticated"),
            "{error}"
        );
        assert!(settings(&["--bind-address", "0.0.0.0", "--allow-unauthenticated"]).is_ok());
        assert!(settings(&["--bind-address", "0.0.0.0", "--auth-enabled"]).is_ok());
        assert!(settings(&["--bind-address", "::1"]).is_ok());
    }

    #[test]
    fn legacy_postgres_variables_compose_a_url_with_an_escaped_password() {
        let settings = settings(&[
            "--postgres-host",
            "db.internal",
            "--postgres-port",
            "6543",
            "--postgres-user",
            "proctor",
            "--postgres-password",
            "p@ss/word",
            "--postgres-database",
            "proctord",
            "--postgres-max-connections",
            "7",
            "--postgres-connections-max-lifetime",
            "3",
        ])
        .unwrap();
        let DatabaseTarget::Postgres { url } = &settings.database else {
            panic!("expected Postgres, got {:?}", settings.database);
        };
        assert_eq!(url.host_str(), Some("db.internal"));
        assert_eq!(url.port(), Some(6543));
        assert_eq!(url.username(), "proctor");
        assert_eq!(url.path(), "/proctord");
        assert_eq!(url.password(), Some("p%40ss%2Fword"));
        assert_eq!(settings.pool.max_connections, 7);
        assert_eq!(settings.pool.max_lifetime, Some(Duration::from_secs(180)));
        assert!(!settings.database.redacted().contains("p%40ss"));
    }

    #[test]
    fn database_url_wins_over_legacy_variables() {
        let settings = settings(&[
            "--database-url",
            "postgres://u@primary/db",
            "--postgres-host",
            "legacy",
        ])
        .unwrap();
        assert_eq!(settings.database.redacted(), "postgres://u@primary/db");
    }

    #[test]
    fn sqlite_urls_name_a_file() {
        for (raw, path) in [
            ("sqlite://./data/p.db", "./data/p.db"),
            ("sqlite:///var/lib/p.db?mode=rwc", "/var/lib/p.db"),
        ] {
            let settings = settings(&["--database-url", raw]).unwrap();
            assert_eq!(
                settings.database,
                DatabaseTarget::Sqlite { path: path.into() }
            );
        }
    }

    #[test]
    fn legacy_redis_address_and_password_become_a_url() {
        let settings = settings(&[
            "--redis-address",
            "cache:6380",
            "--redis-password",
            "s3cret",
        ])
        .unwrap();
        assert_eq!(settings.event_bus_kind(), EventBusKind::Redis);
        let redis = settings.redis.expect("redis configured");
        assert_eq!(redis.url.as_str(), "redis://:s3cret@cache:6380");
        assert_eq!(redis.redacted(), "redis://:***@cache:6380");
    }

    #[test]
    fn passwords_never_show_in_debug_output() {
        let settings = settings(&[
            "--database-url",
            "postgres://u:hunter2@db/p",
            "--redis-url",
            "redis://:hunter3@cache:6379",
        ])
        .unwrap();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("hunter3"), "{printed}");
    }

    #[test]
    fn mail_settings_take_the_legacy_names_and_sensible_defaults() {
        let configured = settings(&[
            "--mail-server-host",
            "smtp.example.com",
            "--mail-username",
            "proctor@example.com",
            "--mail-password",
            "hunter4",
        ])
        .unwrap();
        let mail = configured
            .notifications
            .mail
            .clone()
            .expect("mail configured");
        assert_eq!(mail.port, 587);
        assert_eq!(mail.tls, MailTls::StartTls);
        assert_eq!(
            mail.from, "proctor@example.com",
            "the user name is the sender"
        );
        let printed = format!("{configured:?}");
        assert!(!printed.contains("hunter4"), "{printed}");

        let implicit = settings_with_tls("tls");
        assert_eq!(implicit.port, 465);
        assert_eq!(implicit.tls, MailTls::Implicit);
        let plain = settings_with_tls("none");
        assert_eq!(plain.tls, MailTls::None);
        assert!(plain.login.is_none());
        assert!(
            settings(&["--data-dir", "/tmp/p"])
                .unwrap()
                .notifications
                .mail
                .is_none()
        );
    }

    fn settings_with_tls(tls: &str) -> MailSettings {
        settings(&[
            "--mail-server-host",
            "smtp.example.com",
            "--mail-from",
            "Proctor <proctor@example.com>",
            "--mail-tls",
            tls,
        ])
        .unwrap()
        .notifications
        .mail
        .expect("mail configured")
    }

    #[test]
    fn a_slack_url_is_a_credential() {
        let secret_url = "https://hooks.slack.com/services/T0/B0/abcdefsecret";
        let configured = settings(&["--slack-webhook-url", secret_url]).unwrap();
        assert!(!format!("{configured:?}").contains("abcdefsecret"));
        let error = Settings::from_options(&options(&[
            "--slack-webhook-url",
            "hooks.slack.com/services/abcdefsecret",
        ]))
        .unwrap_err();
        assert!(!error.to_string().contains("abcdefsecret"), "{error}");
    }

    #[test]
    fn an_unwritable_data_dir_is_a_config_error() {
        let file = std::env::temp_dir().join(format!("proctor-not-a-dir-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let error = ensure_data_dir(&file).unwrap_err();
        std::fs::remove_file(&file).unwrap();
        assert!(error.to_string().starts_with("PROCTOR_DATA_DIR"), "{error}");
    }
}
