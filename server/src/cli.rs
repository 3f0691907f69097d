//! The `proctord` command line: parse, validate, dispatch, and map failures to exit codes
//! (2 for configuration errors, 1 for everything else).

use std::process::ExitCode;

use crate::app::{Server, StartError, open_database, open_keyring, sqlite_directory};
use crate::config::{
    DatabaseTarget, Environment, Options, ParseError, Settings, Storage, ensure_data_dir, setting,
};
use crate::database;
use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use proctor_schema::auth::Caller;
use proctor_schema::auth::tokens::{self, TokenRequest};
use proctor_schema::secrets;

/// Exit status for configuration errors, matching clap's usage errors.
const EXIT_CONFIG: u8 = 2;

/// `proctord`: the Proctor server.
#[derive(Parser, Debug)]
#[command(name = "proctord", version, about = "Proctor automation orchestrator server")]
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
    /// Serve the API (the default). `s` and `start` are v2's spellings.
    #[command(alias = "s", alias = "start")]
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

/// Parses `proctord`'s arguments with the process environment.
pub fn parse<I, T>(argv: I) -> Result<Cli, ParseError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let command = crate::config::prepare(Cli::command(), Environment::Process);
    let mut matches = command
        .clone()
        .try_get_matches_from(crate::config::drop_blank_settings(argv, &command))
        .map_err(|error| crate::config::value_error(error, &command))?;
    Cli::from_arg_matches_mut(&mut matches).map_err(ParseError::Usage)
}

/// Runs `proctord` with the process arguments and environment.
pub fn main() -> ExitCode {
    crate::install_crypto_provider();
    let cli = match parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(ParseError::Usage(error)) => error.exit(),
        Err(ParseError::Config(error)) => {
            eprintln!("proctord: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    if command == Command::Schema {
        print!("{}", proctor_schema::sdl());
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::from_options(&cli.options) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("proctord: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Kept to the end: dropping it flushes the last exported spans.
    let _trace_export = match crate::telemetry::init(&settings.telemetry) {
        Ok(export) => export,
        Err(error) => {
            eprintln!("proctord: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::config::retired::warn_about_retired_settings();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Serve => serve(settings).await,
            Command::Migrate { action } => migrate(settings, action).await,
            Command::Users {
                action:
                    UsersAction::Add {
                        email,
                        groups,
                        admin,
                    },
            } => add_user(settings, email, groups, admin).await,
            Command::Secrets {
                action: SecretsAction::RotateKey,
            } => rotate_key(settings).await,
            Command::Schema => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Config(error)) => {
            tracing::error!("configuration error: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(StartError::Runtime(error)) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> Result<(), StartError> {
    let server = Server::build(settings).await?;
    server.run(shutdown_signal()).await?;
    Ok(())
}

/// Completes on SIGTERM (how Kubernetes stops pods) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}

/// Checks the SQLite file's directory, as `serve` does before it opens the database.
fn check_sqlite_directory(settings: &Settings) -> Result<(), StartError> {
    if let DatabaseTarget::Sqlite { path } = &settings.storage.database {
        ensure_data_dir(sqlite_directory(path))?;
    }
    Ok(())
}

async fn migrate(settings: Settings, action: MigrateAction) -> Result<(), StartError> {
    check_sqlite_directory(&settings)?;
    let target = settings.storage.database.redacted();
    let db = database::connect(&settings.storage.database, &settings.storage.pool)
        .await
        .map_err(|e| {
            let setting = setting!(Storage, database_url);
            anyhow::anyhow!("{setting}: cannot open {target}: {e}")
        })?;
    match action {
        MigrateAction::Up => {
            let applied = database::migrate_up(&db)
                .await
                .with_context(|| format!("migrating {target}"))?;
            for name in &applied {
                println!("applied  {name}");
            }
            println!(
                "applied {} migration(s); {target} is up to date",
                applied.len()
            );
        }
        MigrateAction::Down { steps, all } => {
            let applied_before = applied_count(&db).await?;
            database::migrate_down(&db, if all { None } else { Some(steps) })
                .await
                .with_context(|| format!("rolling back {target}"))?;
            let remaining = applied_count(&db).await?;
            println!(
                "rolled back {} migration(s); {remaining} remain applied",
                applied_before - remaining
            );
        }
        MigrateAction::Status => {
            let states = database::migration_states(&db)
                .await
                .with_context(|| format!("reading migrations of {target}"))?;
            for migration in &states {
                let state = if migration.applied {
                    "applied"
                } else {
                    "pending"
                };
                println!("{state:<8} {}", migration.name);
            }
        }
    }
    db.close().await.context("closing the database")?;
    Ok(())
}

async fn applied_count(db: &sea_orm::DatabaseConnection) -> anyhow::Result<usize> {
    Ok(database::migration_states(db)
        .await
        .context("reading migration states")?
        .iter()
        .filter(|migration| migration.applied)
        .count())
}

/// `proctord users add`: creates or updates the user and prints a new token as the last line,
/// so scripts can take it with `tail -n 1`.
async fn add_user(
    settings: Settings,
    email: String,
    groups: Vec<String>,
    admin: bool,
) -> Result<(), StartError> {
    check_sqlite_directory(&settings)?;
    let (db, _) = open_database(&settings).await?;
    let actor = Caller::system("proctord users add");
    let token = tokens::issue_token(
        &db,
        &actor,
        &settings.auth.admin_groups,
        TokenRequest {
            email: email.clone(),
            groups: (!groups.is_empty()).then_some(groups),
            admin: admin.then_some(true),
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let user_groups = tokens::groups_of_email(&db, &email)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "user {}: groups {}",
        email.trim().to_lowercase(),
        if user_groups.is_empty() {
            "(none)".to_owned()
        } else {
            user_groups.join(", ")
        }
    );
    if !settings.auth_enabled() {
        println!("note: authentication is off; start proctord with PROCTOR_AUTH_ENABLED=true");
    }
    announce_credentials_change(&settings, &email).await;
    println!("API token (shown once, store it now):");
    println!("{token}");
    db.close().await.context("closing the database")?;
    Ok(())
}

/// Tells running replicas (through Redis, when configured) that `email`'s groups may have
/// changed, so their open websockets check again at once. Without Redis they do within
/// `PROCTOR_WS_REVALIDATE_SECONDS`; a failure here only delays that, so it is a warning.
async fn announce_credentials_change(settings: &Settings, email: &str) {
    use proctor_schema::ports::event_bus::{Event, EventBus as _};
    let Some(redis) = &settings.redis else {
        return;
    };
    let bus = match crate::redis_bus::RedisEventBus::start(redis) {
        Ok(bus) => bus,
        Err(error) => {
            tracing::warn!(%error, "cannot tell running replicas about the change");
            return;
        }
    };
    let event = Event::CredentialsChanged {
        email: Some(email.trim().to_lowercase()),
    };
    let published = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while bus.check().await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        bus.publish(&event).await
    })
    .await;
    if !matches!(published, Ok(Ok(()))) {
        tracing::warn!(
            "cannot tell running replicas about the change; their websockets notice within \
             PROCTOR_WS_REVALIDATE_SECONDS"
        );
    }
    bus.shutdown().await;
}

/// `proctord secrets rotate-key`: with the key file, makes a new key first; then re-encrypts
/// every stored secret that is not under the current key.
async fn rotate_key(settings: Settings) -> Result<(), StartError> {
    check_sqlite_directory(&settings)?;
    let keyring = open_keyring(&settings)?;
    let (db, _) = open_database(&settings).await?;
    if keyring.is_file_based() {
        let new_id = keyring.rotate_file_key().context("rotating the key file")?;
        println!("new key {new_id} written to the key file (older keys kept for decryption)");
    }
    let actor = Caller::system("proctord secrets rotate-key");
    let rewritten = secrets::service::reencrypt_all(&db, &keyring, &actor)
        .await
        .map_err(|e| match e {
            proctor_schema::ApiError::Internal(cause) => anyhow::anyhow!("{cause:#}"),
            other => anyhow::anyhow!("{other}"),
        })?;
    println!(
        "re-encrypted {rewritten} secret value(s) with key {}",
        keyring.current_key_id()
    );
    db.close().await.context("closing the database")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        let cli = parse(["proctord", "migrate", "up", "--port=7"]).unwrap();
        assert_eq!(
            cli.command,
            Some(Command::Migrate {
                action: MigrateAction::Up
            })
        );
        assert_eq!(cli.options.http.port, 7, "settings may follow a subcommand");
    }
}
