//! The database, its pool and the data directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ArgAction::Set;
use clap::Args;
use proctor_schema::system::StorageBackend;
use url::Url;

use super::legacy::Legacy;
use super::{ConfigError, boolean, positive, redact_url, setting};

/// Where the data lives, as given.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Storage")]
pub struct Storage {
    /// Directory for the embedded database and key files.
    #[arg(long, env = "PROCTOR_DATA_DIR", default_value = "./.proctor", value_parser = data_dir)]
    pub data_dir: PathBuf,
    /// `postgres://user:password@host:port/db` or `sqlite://path`; the embedded SQLite file in
    /// the data directory when unset.
    #[arg(long, env = "PROCTOR_DATABASE_URL", hide_env_values = true, value_parser = database_url)]
    pub database_url: Option<DatabaseTarget>,
    /// Apply pending Postgres migrations at start-up (SQLite always migrates itself).
    #[arg(long, env = "PROCTOR_AUTO_MIGRATE", default_value = "false", value_parser = boolean)]
    #[arg(action = Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub auto_migrate: bool,
    /// Register the example procs on the first start of an empty SQLite database.
    #[arg(long, env = "PROCTOR_REGISTER_EXAMPLES", default_value = "true", value_parser = boolean)]
    #[arg(action = Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub register_examples: bool,
    /// Postgres pool size (legacy name kept).
    #[arg(long, env = "PROCTOR_POSTGRES_MAX_CONNECTIONS", default_value = "20")]
    #[arg(value_parser = positive::<u32>)]
    pub postgres_max_connections: u32,
    /// Minutes after which a pooled Postgres connection is replaced (legacy name kept).
    #[arg(long, env = "PROCTOR_POSTGRES_CONNECTIONS_MAX_LIFETIME", value_parser = minutes)]
    pub postgres_connections_max_lifetime: Option<Duration>,
}

/// Where the data lives, resolved.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    /// Directory for the embedded database and key files.
    pub data_dir: PathBuf,
    /// The database.
    pub database: DatabaseTarget,
    /// Postgres pool tuning.
    pub pool: PoolSettings,
    /// Whether Postgres migrations run at start-up.
    pub auto_migrate: bool,
    /// Whether the example procs are registered on the first start of an empty SQLite file.
    pub register_examples: bool,
}

impl Storage {
    /// The database URL wins over the legacy Postgres variables, which win over the embedded
    /// SQLite file.
    pub fn validate(&self, legacy: &Legacy) -> Result<StorageSettings, ConfigError> {
        let database = match &self.database_url {
            Some(target) => target.clone(),
            None => match legacy.postgres_url()? {
                Some(url) => DatabaseTarget::Postgres { url },
                None => DatabaseTarget::Sqlite {
                    path: self.data_dir.join("proctor.db"),
                },
            },
        };
        Ok(StorageSettings {
            data_dir: self.data_dir.clone(),
            database,
            pool: PoolSettings {
                max_connections: self.postgres_max_connections,
                max_lifetime: self.postgres_connections_max_lifetime,
            },
            auto_migrate: self.auto_migrate,
            register_examples: self.register_examples,
        })
    }
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

fn data_dir(raw: &str) -> Result<PathBuf, String> {
    match raw {
        "" => Err("must not be empty".to_owned()),
        dir => Ok(PathBuf::from(dir)),
    }
}

fn minutes(raw: &str) -> Result<Duration, String> {
    positive::<u64>(raw).map(|minutes| Duration::from_secs(minutes * 60))
}

/// A `postgres://` URL with a host or a `sqlite://` file; never repeats a password.
fn database_url(raw: &str) -> Result<DatabaseTarget, String> {
    let raw = raw.trim();
    if let Some(rest) = raw.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err(
                "an in-memory SQLite database would lose everything on restart; give a \
                        file path such as sqlite://./proctor.db"
                    .to_owned(),
            );
        }
        return Ok(DatabaseTarget::Sqlite {
            path: PathBuf::from(path),
        });
    }
    let url = Url::parse(raw).map_err(|e| {
        format!(
            "not a valid URL ({e}); expected postgres://user:password@host:port/database or \
             sqlite://path"
        )
    })?;
    match url.scheme() {
        "postgres" | "postgresql" if url.host_str().is_some_and(|h| !h.is_empty()) => {
            Ok(DatabaseTarget::Postgres { url })
        }
        "postgres" | "postgresql" => Err(format!("{} has no host", redact_url(&url))),
        other => Err(format!(
            "unsupported scheme {other:?} (expected postgres:// or sqlite://)"
        )),
    }
}

/// Creates the data directory (mode 0700) if needed and checks that it is writable.
pub fn ensure_data_dir(path: &Path) -> Result<(), ConfigError> {
    let fail = |what: &str, error: std::io::Error| {
        ConfigError::new(
            setting!(Storage, data_dir),
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
            setting!(Storage, data_dir),
            format!("{} is not a directory", path.display()),
        ));
    }
    let probe = path.join(".proctor-write-check");
    std::fs::write(&probe, b"").map_err(|e| fail("cannot write to", e))?;
    std::fs::remove_file(&probe).map_err(|e| fail("cannot write to", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_refused, settings};
    use super::*;

    #[test]
    fn each_bad_value_names_its_setting() {
        assert_refused(
            "--database-url=mysql://h/db          PROCTOR_DATABASE_URL
             --database-url=postgres://           PROCTOR_DATABASE_URL
             --database-url=sqlite::memory:       PROCTOR_DATABASE_URL
             --auto-migrate=maybe                 PROCTOR_AUTO_MIGRATE
             --postgres-max-connections=0         PROCTOR_POSTGRES_MAX_CONNECTIONS",
        );
    }

    #[test]
    fn database_urls_name_a_file_or_a_server_and_win_over_legacy_variables() {
        for (raw, path) in [
            ("sqlite://./data/p.db", "./data/p.db"),
            ("sqlite:///var/lib/p.db?mode=rwc", "/var/lib/p.db"),
        ] {
            let storage = settings(&["--database-url", raw]).unwrap().storage;
            assert_eq!(
                storage.database,
                DatabaseTarget::Sqlite { path: path.into() }
            );
        }
        let storage = settings(&[
            "--database-url",
            "postgres://u@primary/db",
            "--postgres-host",
            "legacy",
            "--postgres-connections-max-lifetime",
            "3",
        ])
        .unwrap()
        .storage;
        assert_eq!(storage.database.redacted(), "postgres://u@primary/db");
        let ignored = [
            "--database-url=postgres://u@primary/db",
            "--postgres-host=db host",
        ];
        assert!(
            settings(&ignored).is_ok(),
            "legacy variables are not read then"
        );
        assert_eq!(storage.pool.max_lifetime, Some(Duration::from_secs(180)));
        assert_eq!(storage.pool.max_connections, 20);
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
