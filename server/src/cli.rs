//! The `proctord` command line: parse, validate, dispatch, and map failures to exit codes
//! (2 for configuration errors, 1 for everything else).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

use crate::app::{Server, StartError, sqlite_directory};
use crate::config::{
    Cli, Command, DATABASE_SETTING, DatabaseTarget, MigrateAction, Settings, ensure_data_dir,
};
use crate::database;

/// Exit status for configuration errors, matching clap's usage errors.
const EXIT_CONFIG: u8 = 2;

/// Runs `proctord` with the process arguments and environment.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
    if let Err(error) = crate::telemetry::init(settings.log_format, &settings.log_filter) {
        eprintln!("proctord: configuration error: {error}");
        return ExitCode::from(EXIT_CONFIG);
    }
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

async fn migrate(settings: Settings, action: MigrateAction) -> Result<(), StartError> {
    if let DatabaseTarget::Sqlite { path } = &settings.database {
        ensure_data_dir(sqlite_directory(path))?;
    }
    let target = settings.database.redacted();
    let db = database::connect(&settings.database, &settings.pool)
        .await
        .map_err(|e| anyhow::anyhow!("{DATABASE_SETTING}: cannot open {target}: {e}"))?;
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
