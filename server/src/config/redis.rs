//! The Redis event bus that replicas share.

use std::fmt;

use clap::Args;
use url::Url;

use super::legacy::Legacy;
use super::{ConfigError, Credential, credential, redact_url, setting};

/// Redis, as given.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Redis")]
pub struct Redis {
    /// `redis://[:password@]host:port[/db]` or `rediss://…`; the in-memory event bus (one
    /// replica only) when unset.
    #[arg(long, env = "PROCTOR_REDIS_URL", hide_env_values = true, value_parser = credential)]
    pub redis_url: Option<Credential>,
    /// Prefix of the Redis pub/sub channel; replicas of one deployment must share it.
    #[arg(long, env = "PROCTOR_REDIS_CHANNEL_PREFIX", default_value = "proctor")]
    #[arg(value_parser = word)]
    pub redis_channel_prefix: String,
}

/// The Redis event bus, resolved.
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

impl Redis {
    /// The Redis URL wins over the legacy address; neither means the in-memory bus.
    pub fn validate(&self, legacy: &Legacy) -> Result<Option<RedisSettings>, ConfigError> {
        let url = match &self.redis_url {
            Some(raw) => Some(
                redis_url(raw.expose())
                    .map_err(|message| ConfigError::new(setting!(Self, redis_url), message))?,
            ),
            None => legacy.redis_url()?,
        };
        Ok(url.map(|url| RedisSettings {
            url,
            channel_prefix: self.redis_channel_prefix.clone(),
        }))
    }
}

/// A `redis://` or `rediss://` URL with a host; the message never repeats the URL (it may
/// hold a password).
fn redis_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw)
        .map_err(|e| format!("not a valid URL ({e}); expected redis://host:port"))?;
    match url.scheme() {
        "redis" | "rediss" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        "redis" | "rediss" => Err("the URL has no host".to_owned()),
        other => Err(format!(
            "unsupported scheme {other:?} (expected redis:// or rediss://)"
        )),
    }
}

fn word(raw: &str) -> Result<String, String> {
    match raw.trim() {
        word if !word.is_empty() && !word.contains(char::is_whitespace) => Ok(word.to_owned()),
        _ => Err("must be a non-empty word without spaces".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_refused, refused};

    #[test]
    fn each_bad_value_names_its_setting() {
        assert_refused(
            "--redis-url=http://h:1              PROCTOR_REDIS_URL
             --redis-url=not-a-url               PROCTOR_REDIS_URL
             --redis-url=redis://                PROCTOR_REDIS_URL",
        );
        let prefix = refused(&["--redis-channel-prefix", "two words"]);
        assert!(
            prefix.starts_with("PROCTOR_REDIS_CHANNEL_PREFIX"),
            "{prefix}"
        );
    }
}
