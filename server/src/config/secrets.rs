//! The keys that encrypt secret values: configured, or a key file in the data directory.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use proctor_schema::secrets::keyring::Keyring;

use super::{ConfigError, Credential, credential, setting};

/// Name of the key file in the data directory (embedded default).
pub const SECRET_KEY_FILE: &str = "secret.key";

/// Secret keys, as given.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Secrets")]
pub struct Secrets {
    /// AES-256 key for secret values, base64 (prefer the environment variable: command lines
    /// are visible to other users); a key file in the data directory when unset.
    #[arg(long, env = "PROCTOR_SECRET_KEY", hide_env_values = true, value_parser = credential)]
    pub secret_key: Option<Credential>,
    /// Earlier secret keys, comma-separated, still accepted for decryption after a rotation.
    #[arg(long, env = "PROCTOR_SECRET_PREVIOUS_KEYS", hide_env_values = true)]
    #[arg(value_delimiter = ',', value_parser = credential)]
    pub secret_previous_keys: Vec<Credential>,
}

/// Where secret keys come from.
#[derive(Clone, Debug)]
pub enum SecretKeys {
    /// `PROCTOR_SECRET_KEY` (and previous keys), already validated.
    Configured(Arc<Keyring>),
    /// The key file, created on first use.
    File(PathBuf),
}

impl Secrets {
    /// Checks every configured key; without one, the key file in `data_dir`.
    pub fn validate(&self, data_dir: &Path) -> Result<SecretKeys, ConfigError> {
        let previous: Vec<String> = self
            .secret_previous_keys
            .iter()
            .map(|key| key.expose().to_owned())
            .filter(|key| !key.is_empty())
            .collect();
        let Some(key) = &self.secret_key else {
            if previous.is_empty() {
                return Ok(SecretKeys::File(data_dir.join(SECRET_KEY_FILE)));
            }
            return Err(ConfigError::new(
                setting!(Self, secret_previous_keys),
                "previous keys need a current key in PROCTOR_SECRET_KEY",
            ));
        };
        for (index, old) in previous.iter().enumerate() {
            Keyring::from_config(old, &[]).map_err(|e| {
                ConfigError::new(
                    setting!(Self, secret_previous_keys),
                    format!("key {}: {e}", index + 1),
                )
            })?;
        }
        let keyring = Keyring::from_config(key.expose(), &previous)
            .map_err(|e| ConfigError::new(setting!(Self, secret_key), e))?;
        Ok(SecretKeys::Configured(Arc::new(keyring)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_refused, refused, settings};
    use super::*;

    #[test]
    fn configured_secret_keys_are_checked_and_never_printed() {
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
        let settings = settings(&[&format!("--secret-key={key}")]).unwrap();
        assert!(matches!(settings.secret_keys, SecretKeys::Configured(_)));
        assert!(!format!("{settings:?}").contains(key));
        let error = refused(&["--secret-key=bm90IDMyIGJ5dGVz"]);
        assert!(error.starts_with("PROCTOR_SECRET_KEY"), "{error}");
        assert!(!error.contains("bm90IDMyIGJ5dGVz"), "{error}");
        assert_refused(&format!(
            "--secret-previous-keys={key}                   PROCTOR_SECRET_PREVIOUS_KEYS
             --secret-key={key} --secret-previous-keys=eA== PROCTOR_SECRET_PREVIOUS_KEYS"
        ));
    }

    #[test]
    fn without_a_key_the_key_file_lives_in_the_data_dir() {
        let keys = settings(&["--data-dir=/tmp/p"]).unwrap().secret_keys;
        assert!(matches!(&keys, SecretKeys::File(path) if path == Path::new("/tmp/p/secret.key")));
    }
}
