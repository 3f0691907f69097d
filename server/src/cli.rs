//! The `proctord` command line: parse, validate, dispatch, and map failures to exit codes
//! (2 for configuration errors, 1 for everything else).

use std::process::ExitCode;

use clap::Parser;

use crate::app::{Server, StartError, open_database};
use crate::config::{Cli, Command, DatabaseTarget, MigrateAction, Settings, ensure_data_dir};
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
    if let DatabaseTarget::Sqlite { .. } = settings.database {
        ensure_data_dir(&settings.data_dir)?;
    }
    // `up` goes through the same path as `serve --auto-migrate`; the others only read or
    // roll back, so they connect without migrating first.
    let connect_only = Settings {
        auto_migrate: false,
        ..settings.clone()
    };
    let db = match action {
        MigrateAction::Up => {
            open_database(&Settings {
                auto_migrate: true,
                ..settings.clone()
            })
            .await?
        }
        _ => database::connect(&connect_only.database, &connect_only.pool)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot open {}: {e}", connect_only.database.redacted())
            })?,
    };
    let before = database::migration_states(&db)
        .await
        .map_err(anyhow::Error::from)?;
    match action {
        MigrateAction::Up => {
            println!("database {} is up to date", settings.database.redacted());
        }
        MigrateAction::Down { steps, all } => {
            let applied = before.iter().filter(|m| m.applied).count();
            let steps = if all { None } else { Some(steps) };
            database::migrate_down(&db, steps)
                .await
                .map_err(anyhow::Error::from)?;
            let after = database::migration_states(&db)
                .await
                .map_err(anyhow::Error::from)?;
            let remaining = after.iter().filter(|m| m.applied).count();
            println!(
                "rolled back {} migration(s); {remaining} remain applied",
                applied - remaining
            );
        }
        MigrateAction::Status => {
            for migration in &before {
                let state = if migration.applied {
                    "applied"
                } else {
                    "pending"
                };
                println!("{state:<8} {}", migration.name);
            }
        }
    }
    db.close().await.map_err(anyhow::Error::from)?;
    Ok(())
}
