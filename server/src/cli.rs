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
    /// Manage the key that signs identity tokens and run receipts.
    Signing {
        /// Which signing action.
        #[command(subcommand)]
        action: SigningAction,
    },
    /// Check the audit log's hash chain.
    Audit {
        /// Which audit action.
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Check signed run receipts.
    Receipts {
        /// Which receipts action.
        #[command(subcommand)]
        action: ReceiptsAction,
    },
    /// Import procs, secrets, schedules and execution history from a Proctor v2 deployment
    /// (its Redis and Postgres) into this server's database. Safe to run again: what was
    /// imported is not written twice.
    #[command(name = "import-v2")]
    ImportV2 {
        /// v2's Redis (procs and secrets), e.g. `redis://v2-redis:6379/0`.
        #[arg(long = "v2-redis-url", env = "PROCTOR_V2_REDIS_URL")]
        v2_redis_url: Option<String>,
        /// v2's Postgres (schedules and execution history), e.g.
        /// `postgres://proctor@v2-db/proctord`.
        #[arg(long = "v2-postgres-url", env = "PROCTOR_V2_POSTGRES_URL")]
        v2_postgres_url: Option<String>,
        /// The IANA zone v2's server ran in: its timestamps and crons are local times there.
        #[arg(long = "v2-timezone", default_value = "UTC")]
        v2_timezone: String,
        /// Read and check everything, print what would change, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Store every schedule disabled, whatever v2 says (while v2's scheduler still runs,
        /// both would fire them); enable them once v2's are off.
        #[arg(long)]
        pause_schedules: bool,
    },
}

/// `proctord signing …` actions.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum SigningAction {
    /// Make a new signing key: published in the JWKS at once, signing new tokens and receipts
    /// from five minutes on; older keys stay published so what they signed still verifies.
    RotateKey,
}

/// `proctord audit …` actions.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum AuditAction {
    /// Walk the hash chain from the first event; name the first broken link (exit 1).
    Verify {
        /// A head printed by an earlier run (`SEQ:HASH`): the chain must still hold it, which
        /// catches events deleted from the end.
        #[arg(long, value_parser = head)]
        expect_head: Option<(i64, String)>,
    },
}

/// `SEQ:HASH` of `--expect-head`.
fn head(text: &str) -> Result<(i64, String), String> {
    let (seq, hash) = text
        .split_once(':')
        .ok_or_else(|| "expected SEQ:HASH, as `audit verify` prints the head".to_owned())?;
    let seq: i64 = seq
        .trim_start_matches('#')
        .parse()
        .map_err(|_| format!("{seq:?} is not an event number"))?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the hash is 64 hexadecimal characters".to_owned());
    }
    Ok((seq, hash.to_ascii_lowercase()))
}

/// `proctord receipts …` actions.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum ReceiptsAction {
    /// Check receipts' signatures and that each execution's stored output still hashes to
    /// what was signed (every stored receipt, or those given); exit 1 if one fails.
    Verify {
        /// Execution ids (repeat); default: every stored receipt.
        #[arg(long = "execution")]
        executions: Vec<i64>,
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
            Command::Signing {
                action: SigningAction::RotateKey,
            } => rotate_signing_key(settings).await,
            Command::Audit {
                action: AuditAction::Verify { expect_head },
            } => verify_audit(settings, expect_head).await,
            Command::Receipts {
                action: ReceiptsAction::Verify { executions },
            } => verify_receipts(settings, executions).await,
            Command::ImportV2 {
                v2_redis_url,
                v2_postgres_url,
                v2_timezone,
                dry_run,
                pause_schedules,
            } => {
                let sources = (v2_redis_url, v2_postgres_url, v2_timezone);
                import_v2(settings, sources, dry_run, pause_schedules).await
            }
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
    let resealed = proctor_schema::signing::reseal_all(&db, &keyring)
        .await
        .map_err(|e| anyhow::anyhow!("re-sealing the signing keys: {e}"))?;
    println!(
        "re-encrypted {rewritten} secret value(s) and {resealed} signing key(s) with key {}",
        keyring.current_key_id()
    );
    db.close().await.context("closing the database")?;
    Ok(())
}

/// A failure of this command: exit status 1 with `message` (already reported).
fn failed(message: String) -> StartError {
    StartError::Runtime(anyhow::anyhow!(message))
}

fn api(error: proctor_schema::ApiError) -> anyhow::Error {
    match error {
        proctor_schema::ApiError::Internal(cause) => cause,
        other => anyhow::anyhow!("{other}"),
    }
}

/// `proctord signing rotate-key`.
async fn rotate_signing_key(settings: Settings) -> Result<(), StartError> {
    check_sqlite_directory(&settings)?;
    let keyring = open_keyring(&settings)?;
    let (db, _) = open_database(&settings).await?;
    // The first key, when none exists yet, then the new one.
    proctor_schema::signing::load(&db, &keyring)
        .await
        .map_err(api)?;
    let kid = proctor_schema::signing::create_key(&db, &keyring)
        .await
        .map_err(api)?;
    proctor_schema::auth::audit::record(
        &db,
        &Caller::system("proctord signing rotate-key"),
        "signing.rotate-key",
        "signing-key",
        &kid,
        None,
    )
    .await
    .map_err(api)?;
    println!(
        "new signing key {kid}: published in /.well-known/jwks.json now; it signs from 5 \
         minutes on (every replica, every cached key set holds it by then); older keys stay \
         published, so what they signed still verifies"
    );
    db.close().await.context("closing the database")?;
    Ok(())
}

/// `proctord audit verify`.
async fn verify_audit(
    settings: Settings,
    expect_head: Option<(i64, String)>,
) -> Result<(), StartError> {
    check_sqlite_directory(&settings)?;
    let (db, _) = open_database(&settings).await?;
    let report = proctor_schema::auth::audit::verify(&db, expect_head)
        .await
        .map_err(api)?;
    db.close().await.context("closing the database")?;
    if let Some(broken) = &report.broken {
        println!(
            "audit chain BROKEN at event #{}: {}",
            broken.chain_seq, broken.reason
        );
        println!("{} event(s) before it verified", report.verified);
        return Err(failed(format!(
            "the audit chain is broken at event #{}",
            broken.chain_seq
        )));
    }
    match &report.head {
        Some((seq, hash)) => println!(
            "audit chain intact: {} event(s); head {seq}:{hash} (keep it, and pass it as \
             --expect-head later to detect events deleted from the end)",
            report.verified
        ),
        None => println!("audit chain intact: no chained events yet"),
    }
    if report.unsealed > 0 {
        println!(
            "{} newer event(s) are not chained yet (a running server chains them within a \
             second)",
            report.unsealed
        );
    }
    Ok(())
}

/// `proctord receipts verify`.
async fn verify_receipts(settings: Settings, executions: Vec<i64>) -> Result<(), StartError> {
    use proctor_entity::execution_receipt;
    use proctor_schema::executions::receipts::{self, Receipt};
    use sea_orm::{
        ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _,
    };
    check_sqlite_directory(&settings)?;
    let (db, _) = open_database(&settings).await?;
    // Public keys only: checking needs no secret key.
    let keys = proctor_schema::signing::public_keys(&db)
        .await
        .map_err(api)?;
    let (mut bad, mut seen, mut after) = (0_u64, Vec::new(), i64::MIN);
    loop {
        let mut query = execution_receipt::Entity::find()
            .filter(execution_receipt::Column::ExecutionId.gt(after))
            .order_by_asc(execution_receipt::Column::ExecutionId)
            .limit(500);
        if !executions.is_empty() {
            query = query.filter(execution_receipt::Column::ExecutionId.is_in(executions.clone()));
        }
        let rows = query.all(&db).await.context("reading receipts")?;
        let Some(last) = rows.last() else { break };
        after = last.execution_id;
        for row in rows {
            let id = row.execution_id;
            seen.push(id);
            match receipts::verify(&keys, &Receipt::from(row), Some(&db)).await {
                Ok(()) => println!("ok        execution {id}"),
                Err(error) => {
                    bad += 1;
                    println!("FAILED    execution {id}: {error}");
                }
            }
        }
    }
    for id in executions.iter().filter(|id| !seen.contains(id)) {
        bad += 1;
        println!("FAILED    execution {id}: has no receipt (not finished, or not found)");
    }
    if executions.is_empty() {
        let unsigned = finished_without_receipt(&db).await?;
        if unsigned > 0 {
            println!(
                "note: {unsigned} finished execution(s) have no receipt (they ended before \
                 receipts existed, were imported from v2, or their receipt was not made within \
                 15 minutes of their end)"
            );
        }
    }
    db.close().await.context("closing the database")?;
    if bad > 0 {
        return Err(failed(format!("{bad} receipt(s) did not verify")));
    }
    Ok(())
}

/// How many finished executions have no receipt.
async fn finished_without_receipt(db: &sea_orm::DatabaseConnection) -> anyhow::Result<u64> {
    use proctor_entity::{execution, execution_receipt};
    use sea_orm::sea_query::{Expr, ExprTrait as _, Query};
    use sea_orm::{ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _};
    let signed = Query::select()
        .column(execution_receipt::Column::ExecutionId)
        .from(execution_receipt::Entity)
        .to_owned();
    execution::Entity::find()
        .filter(execution::Column::FinishedAt.is_not_null())
        .filter(Expr::col(execution::Column::Id).not_in_subquery(signed))
        .count(db)
        .await
        .context("counting executions without a receipt")
}

/// `proctord import-v2`.
async fn import_v2(
    settings: Settings,
    (redis_url, postgres_url, timezone): (Option<String>, Option<String>, String),
    dry_run: bool,
    pause_schedules: bool,
) -> Result<(), StartError> {
    use crate::config::ConfigError;
    if redis_url.is_none() && postgres_url.is_none() {
        return Err(ConfigError::new(
            "--v2-redis-url / --v2-postgres-url",
            "give v2's Redis (procs, secrets), its Postgres (schedules, history), or both",
        )
        .into());
    }
    let zone: chrono_tz::Tz = timezone.parse().map_err(|_| {
        ConfigError::new(
            "--v2-timezone",
            format!("{timezone:?} is not an IANA time zone (e.g. UTC, Asia/Jakarta)"),
        )
    })?;
    check_sqlite_directory(&settings)?;
    let keyring = open_keyring(&settings)?;
    let (db, _) = open_database(&settings).await?;
    let report = crate::import_v2::run(
        &db,
        &keyring,
        &crate::import_v2::Sources {
            redis_url,
            postgres_url,
            timezone: zone,
            dry_run,
            pause_schedules,
        },
    )
    .await?;
    db.close().await.context("closing the database")?;
    if !report.skipped.is_empty() {
        return Err(failed(format!(
            "{} record(s) were skipped (listed above); fix them in v2 and run the import again",
            report.skipped.len()
        )));
    }
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
        let cli = parse([
            "proctord",
            "import-v2",
            "--v2-redis-url=redis://v2:6379",
            "--redis-url=redis://ours:6379",
            "--dry-run",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::ImportV2 { v2_redis_url: Some(ref url), dry_run: true, .. })
                if url == "redis://v2:6379"
        ));
        assert!(
            Settings::from_options(&cli.options)
                .unwrap()
                .redis
                .is_some(),
            "v2's Redis is not ours"
        );
    }
}
