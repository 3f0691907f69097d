//! Who may call: authentication, the identity service and the administrators.

use std::net::IpAddr;
use std::time::Duration;

use clap::ArgAction::Set;
use clap::Args;
use url::Url;

use super::http::Http;
use super::{ConfigError, boolean, http_url, item, items, seconds, setting};

/// Authentication, as given.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Authentication")]
pub struct Auth {
    /// Require callers to authenticate (`true`/`false`).
    #[arg(long, env = "PROCTOR_AUTH_ENABLED", default_value = "false", value_parser = boolean)]
    #[arg(action = Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub auth_enabled: bool,
    /// Allow serving a non-loopback address with auth off.
    #[arg(long, env = "PROCTOR_ALLOW_UNAUTHENTICATED", default_value = "false")]
    #[arg(action = Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    #[arg(value_parser = boolean)]
    pub allow_unauthenticated: bool,
    /// Groups whose members are administrators, comma-separated (all are required).
    #[arg(long = "admin-group", env = "PROCTOR_AUTH_REQUIRED_ADMIN_GROUP")]
    #[arg(default_value = "proctor.admin", value_delimiter = ',', value_parser = item)]
    pub admin_groups: Vec<String>,
    /// Identity service to check credentials with (POST {email, token}); built-in users and
    /// tokens when unset. Needs auth enabled.
    #[arg(long, env = "PROCTOR_AUTH_WEBHOOK_URL", value_parser = webhook_url)]
    pub auth_webhook_url: Option<Url>,
    /// Seconds an identity service answer is reused.
    #[arg(long = "auth-webhook-cache-seconds", env = "PROCTOR_AUTH_WEBHOOK_CACHE_SECONDS")]
    #[arg(default_value = "30", value_parser = seconds)]
    pub auth_webhook_cache: Duration,
    /// Seconds to wait for the identity service.
    #[arg(long = "auth-webhook-timeout-seconds", env = "PROCTOR_AUTH_WEBHOOK_TIMEOUT_SECONDS")]
    #[arg(default_value = "5", value_parser = seconds)]
    pub auth_webhook_timeout: Duration,
}

/// How callers are authenticated, and who administers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    /// How callers are authenticated.
    pub mode: AuthMode,
    /// Members of all these groups are administrators.
    pub admin_groups: Vec<String>,
}

impl AuthSettings {
    /// Whether callers must authenticate.
    pub fn enabled(&self) -> bool {
        self.mode != AuthMode::Off
    }
}

/// How callers are authenticated. Its `Debug` (the start-up log) shows the identity service
/// without user information, query or fragment: they may carry credentials.
#[derive(Clone, PartialEq, Eq)]
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

impl std::fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("Off"),
            Self::Builtin => f.write_str("Builtin"),
            Self::Webhook {
                url,
                cache_ttl,
                timeout,
            } => {
                let mut shown = url.clone();
                shown.set_query(None);
                shown.set_fragment(None);
                // Only fails for URLs without a host, which were refused.
                let _ = shown.set_username("");
                let _ = shown.set_password(None);
                f.debug_struct("Webhook")
                    .field("url", &shown.as_str())
                    .field("cache_ttl", cache_ttl)
                    .field("timeout", timeout)
                    .finish()
            }
        }
    }
}

impl Auth {
    /// Auth off is refused on a public address unless accepted explicitly; the identity service
    /// needs auth on.
    pub fn validate(&self, bind: IpAddr) -> Result<AuthSettings, ConfigError> {
        if !self.auth_enabled && !bind.is_loopback() && !self.allow_unauthenticated {
            return Err(ConfigError::new(
                setting!(Http, bind_address),
                format!(
                    "refusing to serve {bind} with authentication off; enable it with \
                     PROCTOR_AUTH_ENABLED=true or accept the risk with --allow-unauthenticated"
                ),
            ));
        }
        let admin_groups = items(&self.admin_groups);
        if admin_groups.is_empty() {
            return Err(ConfigError::new(
                setting!(Self, admin_groups),
                "name at least one group",
            ));
        }
        let mode = match (&self.auth_webhook_url, self.auth_enabled) {
            (None, false) => AuthMode::Off,
            (None, true) => AuthMode::Builtin,
            (Some(_), false) => {
                return Err(ConfigError::new(
                    setting!(Self, auth_webhook_url),
                    "is set but authentication is off; set PROCTOR_AUTH_ENABLED=true as well",
                ));
            }
            (Some(url), true) => AuthMode::Webhook {
                url: url.clone(),
                cache_ttl: self.auth_webhook_cache,
                timeout: self.auth_webhook_timeout,
            },
        };
        Ok(AuthSettings { mode, admin_groups })
    }
}

/// Not repeated in errors: the URL may carry credentials.
fn webhook_url(raw: &str) -> Result<Url, String> {
    http_url(raw, false)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_refused, refused, settings};
    use super::*;

    #[test]
    fn each_bad_value_names_its_setting() {
        assert_refused(
            "--auth-enabled=maybe                            PROCTOR_AUTH_ENABLED
             --admin-group=,                                 PROCTOR_AUTH_REQUIRED_ADMIN_GROUP
             --auth-webhook-url=https://id/x                 PROCTOR_AUTH_WEBHOOK_URL
             --auth-enabled --auth-webhook-url=ftp://id/x    PROCTOR_AUTH_WEBHOOK_URL
             --auth-webhook-cache-seconds=0                  PROCTOR_AUTH_WEBHOOK_CACHE_SECONDS",
        );
    }

    #[test]
    fn auth_modes_and_admin_groups() {
        let auth = |args: &[&str]| settings(args).unwrap().auth;
        assert_eq!(auth(&["--auth-enabled"]).mode, AuthMode::Builtin);
        assert_eq!(auth(&["--auth-enabled=off"]).mode, AuthMode::Off);
        let url = "--auth-webhook-url=https://id.example.com/check";
        let webhook = auth(&["--auth-enabled", url, "--auth-webhook-cache-seconds=7"]);
        assert!(matches!(
            webhook.mode,
            AuthMode::Webhook { cache_ttl, .. } if cache_ttl == Duration::from_secs(7)
        ));
        let secret_url = "--auth-webhook-url=https://svc:pw@id.example.com/check?key=k1";
        let shown = format!("{:?}", auth(&["--auth-enabled", secret_url]).mode);
        assert!(shown.contains("https://id.example.com/check"), "{shown}");
        assert!(!shown.contains("pw") && !shown.contains("k1"), "{shown}");
        let groups = auth(&["--admin-group=ops, security"]).admin_groups;
        assert_eq!(groups, ["ops", "security"]);
    }

    #[test]
    fn auth_off_on_a_public_address_needs_an_explicit_opt_in() {
        let error = refused(&["--bind-address=0.0.0.0"]);
        assert!(error.contains("--allow-unauthenticated"), "{error}");
        assert!(error.starts_with("PROCTOR_BIND_ADDRESS"), "{error}");
        for accepted in ["--allow-unauthenticated", "--auth-enabled"] {
            assert!(settings(&["--bind-address=0.0.0.0", accepted]).is_ok());
        }
        assert!(settings(&["--bind-address=::1"]).is_ok());
    }
}
