//! Proctor v2 settings whose meaning carries over: they compose the Postgres and Redis URLs
//! when the URL settings are unset (the book's "Settings from v2" table, `docs/src/rest-and-v2.md`).

use clap::Args;
use url::Url;

use super::{ConfigError, Credential, credential, positive, setting, text};

/// The v2 way of naming the database and Redis.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Legacy settings")]
pub struct Legacy {
    /// Legacy: Postgres host, used when no database URL is given.
    #[arg(long, env = "PROCTOR_POSTGRES_HOST", value_parser = text)]
    pub postgres_host: Option<String>,
    /// Legacy: Postgres port.
    #[arg(long, env = "PROCTOR_POSTGRES_PORT", value_parser = positive::<u16>)]
    pub postgres_port: Option<u16>,
    /// Legacy: Postgres user.
    #[arg(long, env = "PROCTOR_POSTGRES_USER")]
    pub postgres_user: Option<String>,
    /// Legacy: Postgres password.
    #[arg(long, env = "PROCTOR_POSTGRES_PASSWORD", hide_env_values = true)]
    #[arg(value_parser = credential)]
    pub postgres_password: Option<Credential>,
    /// Legacy: Postgres database name.
    #[arg(long, env = "PROCTOR_POSTGRES_DATABASE")]
    pub postgres_database: Option<String>,
    /// Legacy: Redis host:port, used when no Redis URL is given.
    #[arg(long, env = "PROCTOR_REDIS_ADDRESS", value_parser = text)]
    pub redis_address: Option<String>,
    /// Legacy: Redis password for the legacy Redis address.
    #[arg(long, env = "PROCTOR_REDIS_PASSWORD", hide_env_values = true, value_parser = credential)]
    pub redis_password: Option<Credential>,
}

impl Legacy {
    /// `postgres://user:password@host:port/database` from the parts (the password escaped).
    pub fn postgres_url(&self) -> Result<Option<Url>, ConfigError> {
        let Some(host) = &self.postgres_host else {
            return Ok(None);
        };
        let mut url = Url::parse("postgres://localhost").expect("static URL parses");
        url.set_host(Some(host)).map_err(|e| {
            ConfigError::new(setting!(Self, postgres_host), format!("{host:?}: {e}"))
        })?;
        url.set_port(self.postgres_port)
            .expect("postgres URLs take a port");
        if let Some(user) = &self.postgres_user {
            url.set_username(user).expect("postgres URLs take a user");
        }
        if let Some(password) = &self.postgres_password {
            url.set_password(Some(password.expose()))
                .expect("postgres URLs take a password");
        }
        if let Some(database) = &self.postgres_database {
            url.set_path(database);
        }
        Ok(Some(url))
    }

    /// `redis://:password@host:port` from the parts.
    pub fn redis_url(&self) -> Result<Option<Url>, ConfigError> {
        let Some(address) = &self.redis_address else {
            return Ok(None);
        };
        let mut url = Url::parse(&format!("redis://{address}")).map_err(|e| {
            ConfigError::new(
                setting!(Self, redis_address),
                format!("{address:?} is not host:port ({e})"),
            )
        })?;
        if let Some(password) = self
            .redis_password
            .as_ref()
            .filter(|p| !p.expose().is_empty())
        {
            url.set_password(Some(password.expose()))
                .expect("redis URLs take a password");
        }
        Ok(Some(url))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_refused, settings};
    use super::super::{DatabaseTarget, EventBusKind};

    #[test]
    fn legacy_postgres_variables_compose_a_url_with_an_escaped_password() {
        let settings = settings(&[
            "--postgres-host=db.internal",
            "--postgres-port=6543",
            "--postgres-user=proctor",
            "--postgres-password=p@ss/word",
            "--postgres-database=proctord",
            "--postgres-max-connections=7",
        ])
        .unwrap();
        let DatabaseTarget::Postgres { url } = &settings.storage.database else {
            panic!("expected Postgres, got {:?}", settings.storage.database);
        };
        assert_eq!(
            url.as_str(),
            "postgres://proctor:p%40ss%2Fword@db.internal:6543/proctord"
        );
        assert_eq!(settings.storage.pool.max_connections, 7);
        assert!(!settings.storage.database.redacted().contains("p%40ss"));
        assert_refused("--postgres-host=db --postgres-port=x PROCTOR_POSTGRES_PORT");
    }

    #[test]
    fn legacy_redis_address_and_password_become_a_url() {
        let settings =
            settings(&["--redis-address=cache:6380", "--redis-password=s3cret"]).unwrap();
        assert_eq!(settings.event_bus_kind(), EventBusKind::Redis);
        let redis = settings.redis.expect("redis configured");
        assert_eq!(redis.url.as_str(), "redis://:s3cret@cache:6380");
        assert_eq!(redis.redacted(), "redis://:***@cache:6380");
    }
}
