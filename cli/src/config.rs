//! Where the CLI finds its server and credentials.
//!
//! Two files:
//! - **contexts** (`proctor context`, `proctor login`): `$PROCTOR_CONFIG`, else
//!   `$XDG_CONFIG_HOME/proctor/config.yaml`, else `~/.config/proctor/config.yaml`; named
//!   servers, each with its host, e-mail, token and timeout, and the current one;
//! - **the v2 file** (`proctor config KEY=VALUE`): `proctor.yaml` in `$LOCAL_CONFIG_DIR`, else
//!   `/tmp` when `ENVIRONMENT=test`, else `~/.proctor` (the Go CLI's places and keys).
//!
//! Each setting is taken from the first place that has it: the command line (`--host`), the
//! environment (`PROCTOR_HOST`; `PROCTOR_EMAIL` or `EMAIL_ID`; `PROCTOR_TOKEN` or
//! `ACCESS_TOKEN`; `PROCTOR_TIMEOUT_SECS` or `CONNECTION_TIMEOUT_SECS`), the selected context
//! (`--context`, `PROCTOR_CONTEXT`, or the file's current one), the v2 file, and finally
//! [`DEFAULT_HOST`], where `proctord` listens by default. Both files hold tokens: they are
//! written readable by their owner only (0600).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// Where `proctord` listens unless told otherwise (its `--listen` default).
pub const DEFAULT_HOST: &str = "127.0.0.1:5001";

/// The limit on each HTTP call when none is configured.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The keys `proctor config` accepts (`PROC_EXECUTION_STATUS_POLL_COUNT` is kept for old
/// files; nothing polls any more).
pub const KEYS: &[&str] = &[
    "PROCTOR_HOST",
    "EMAIL_ID",
    "ACCESS_TOKEN",
    "CONNECTION_TIMEOUT_SECS",
    "PROC_EXECUTION_STATUS_POLL_COUNT",
];

/// What every server call needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// `http(s)://host[:port]` without a trailing slash.
    pub base_url: String,
    /// Sent as `Email-Id`.
    pub email: Option<String>,
    /// Sent as `Access-Token`.
    pub access_token: Option<String>,
    /// Limit on each HTTP call (not on log streams).
    pub timeout: Duration,
    /// Whether the host was configured somewhere rather than [`DEFAULT_HOST`].
    pub host_configured: bool,
    /// Why stored credentials were left out (a context's or the v2 file's, for another
    /// server), for a note on stderr.
    pub withheld: Option<String>,
}

/// The directory of the v2 `proctor.yaml`.
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LOCAL_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if std::env::var("ENVIRONMENT").is_ok_and(|e| e == "test") {
        return PathBuf::from("/tmp");
    }
    home().join(".proctor")
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The path of the v2 `proctor.yaml`.
pub fn path() -> PathBuf {
    dir().join("proctor.yaml")
}

/// The values in the v2 file (none when it does not exist).
pub fn read_file() -> Result<BTreeMap<String, String>, CliError> {
    let path = path();
    let Some(text) = read_optional(&path)? else {
        return Ok(BTreeMap::new());
    };
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let values: BTreeMap<String, serde_yaml_ng::Value> = serde_yaml_ng::from_str(&text)
        .map_err(|e| CliError::Config(format!("{} is not valid YAML: {e}", path.display())))?;
    Ok(values
        .into_iter()
        .filter_map(|(key, value)| {
            let text = match value {
                serde_yaml_ng::Value::String(text) => text,
                serde_yaml_ng::Value::Number(number) => number.to_string(),
                serde_yaml_ng::Value::Bool(flag) => flag.to_string(),
                _ => return None,
            };
            Some((key, text))
        })
        .collect())
}

fn read_optional(path: &Path) -> Result<Option<String>, CliError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(CliError::Config(format!(
            "cannot read {}: {error}",
            path.display()
        ))),
    }
}

/// Writes `values` as `KEY: value` lines, readable only by the owner (it holds a token).
pub fn write_file(values: &BTreeMap<String, String>) -> Result<PathBuf, CliError> {
    let path = path();
    let mut text = String::new();
    for key in KEYS {
        if let Some(value) = values.get(*key) {
            let quoted =
                serde_yaml_ng::to_string(value).map_err(|e| CliError::Config(e.to_string()))?;
            text.push_str(&format!("{key}: {}", quoted.trim_start_matches("---\n")));
        }
    }
    write_private(&path, &text)?;
    Ok(path)
}

/// Writes `text` to `path` (creating its directory, private to its owner), readable and
/// writable by the owner only. The text goes to a new file beside it that is then renamed over
/// it, so a crash or a full disk leaves the old file whole, never a truncated one.
fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    let failed =
        |e: std::io::Error| CliError::Config(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(failed)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = write_private_file(&temporary, text).and_then(|()| fs::rename(&temporary, path));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map_err(failed)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // create_new: a file left by a crashed run (or planted) is never written through.
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    fs::write(path, text)
}

/// Checks one `KEY=VALUE` of `proctor config`.
pub fn check_value(key: &str, value: &str) -> Result<(), CliError> {
    match key {
        "PROCTOR_HOST" => base_url(value).map(|_| ()),
        "CONNECTION_TIMEOUT_SECS" | "PROC_EXECUTION_STATUS_POLL_COUNT" => {
            positive(key, value).map(|_| ())
        }
        "EMAIL_ID" | "ACCESS_TOKEN" => Ok(()),
        other => Err(CliError::Usage(format!(
            "proctor doesn't support config key {other:?}; use one of {}",
            KEYS.join(", ")
        ))),
    }
}

fn positive(name: &str, value: &str) -> Result<u64, CliError> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{name} must be a positive whole number, not {value:?}"
            ))
        })
}

/// `host:port` or an http(s) URL as a base URL.
pub fn base_url(host: &str) -> Result<String, CliError> {
    let host = host.trim().trim_end_matches('/');
    if host.is_empty() {
        return Err(CliError::Config(
            "PROCTOR_HOST is empty; set it to host:port or an http(s) URL".into(),
        ));
    }
    if host.starts_with("http://") || host.starts_with("https://") {
        Ok(host.to_owned())
    } else if host.contains("://") {
        Err(CliError::Config(format!(
            "PROCTOR_HOST {host:?} must be host:port or an http(s) URL"
        )))
    } else {
        Ok(format!("http://{host}"))
    }
}

/// One named server in the contexts file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Context {
    /// `host:port` or an http(s) URL.
    pub host: String,
    /// The e-mail sent with the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The limit on each HTTP call, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// The contexts file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Contexts {
    /// The context used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    /// By name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// The path of the contexts file.
pub fn contexts_path() -> PathBuf {
    if let Some(path) = std::env::var_os("PROCTOR_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".config"))
        .join("proctor")
        .join("config.yaml")
}

impl Contexts {
    /// The file's contents (empty when it does not exist).
    pub fn load() -> Result<Self, CliError> {
        let path = contexts_path();
        match read_optional(&path)? {
            None => Ok(Self::default()),
            Some(text) if text.trim().is_empty() => Ok(Self::default()),
            Some(text) => serde_yaml_ng::from_str(&text).map_err(|e| {
                CliError::Config(format!(
                    "{} is not a proctor contexts file: {e}",
                    path.display()
                ))
            }),
        }
    }

    /// Writes the file (0600) and returns its path.
    pub fn save(&self) -> Result<PathBuf, CliError> {
        let path = contexts_path();
        let text = serde_yaml_ng::to_string(self).map_err(|e| CliError::Config(e.to_string()))?;
        write_private(&path, &text)?;
        Ok(path)
    }

    /// The context `name`, or an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&Context, CliError> {
        self.contexts.get(name).ok_or_else(|| {
            let known = self.contexts.keys().cloned().collect::<Vec<_>>();
            CliError::Config(if known.is_empty() {
                format!(
                    "there is no context {name:?}; add one with `proctor login --context {name}` \
                     or `proctor context add {name} --server HOST`"
                )
            } else {
                format!("there is no context {name:?}; known: {}", known.join(", "))
            })
        })
    }
}

/// Checks a context's name: letters, digits, `.`, `_`, `-`, `@`, `:`; 1 to 100 characters.
pub fn check_context_name(name: &str) -> Result<(), CliError> {
    let fine = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@:".contains(c));
    if fine {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "context name {name:?} must be 1 to 100 letters, digits, '.', '_', '-', '@' or ':'"
        )))
    }
}

/// Where the settings come from: the command line's `--host` and `--context`.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// `--host` (clap already merged `PROCTOR_HOST` into it).
    pub host: Option<String>,
    /// `--context` (or `PROCTOR_CONTEXT`).
    pub context: Option<String>,
}

fn env(names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    })
}

/// Whether two server spellings (`host:port`, URLs) name the same server.
fn same_server(a: &str, b: &str) -> bool {
    let parse = |spelling: &str| {
        base_url(spelling)
            .ok()
            .and_then(|url| reqwest::Url::parse(&url).ok())
    };
    match (parse(a), parse(b)) {
        // Url lower-cases hosts; the default port counts as written.
        (Some(a), Some(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
                && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
        }
        _ => false,
    }
}

/// The configuration for server calls (see the module documentation for the order).
pub fn load(selection: &Selection) -> Result<Config, CliError> {
    let contexts = Contexts::load()?;
    let context = match selection
        .context
        .as_deref()
        .or(contexts.current_context.as_deref())
    {
        Some(name) => Some(contexts.get(name)?.clone()),
        None => None,
    };
    let file = read_file()?;
    let from_file = |key: &str| file.get(key).cloned().filter(|v| !v.trim().is_empty());
    let host = selection
        .host
        .clone()
        .or_else(|| context.as_ref().map(|c| c.host.clone()))
        .or_else(|| from_file("PROCTOR_HOST"));
    let host_configured = host.is_some();
    // A context's credentials belong to its server: with --host (or PROCTOR_HOST) naming
    // another one they are not sent there, and neither are the v2 file's when that file
    // names a third server. (Without contexts the v2 file's token follows PROCTOR_HOST, as
    // the Go CLI's did.)
    let mut withheld = None;
    let mut file_credentials = true;
    let context = match (&context, &selection.host) {
        (Some(c), Some(chosen)) if !same_server(&c.host, chosen) => {
            let name = selection
                .context
                .as_deref()
                .or(contexts.current_context.as_deref())
                .unwrap_or_default();
            let file_host = from_file("PROCTOR_HOST").unwrap_or_else(|| DEFAULT_HOST.to_owned());
            file_credentials = same_server(&file_host, chosen);
            withheld = Some(format!(
                "note: {chosen} is not the server of context {name:?} ({}); its credentials \
                 are not sent there (PROCTOR_HOST or --host chose it)",
                c.host
            ));
            None
        }
        _ => context,
    };
    let from_file_credentials = |key: &str| from_file(key).filter(|_| file_credentials);
    if let Some(Context {
        timeout_secs: Some(0),
        ..
    }) = &context
    {
        return Err(CliError::Config(format!(
            "timeout-secs of the context in {} must be a positive number of seconds",
            contexts_path().display()
        )));
    }
    let email = env(&["PROCTOR_EMAIL", "EMAIL_ID"])
        .or_else(|| context.as_ref().and_then(|c| c.email.clone()))
        .or_else(|| from_file_credentials("EMAIL_ID"));
    let access_token = env(&["PROCTOR_TOKEN", "ACCESS_TOKEN"])
        .or_else(|| context.as_ref().and_then(|c| c.token.clone()))
        .or_else(|| from_file_credentials("ACCESS_TOKEN"));
    let timeout = match env(&["PROCTOR_TIMEOUT_SECS", "CONNECTION_TIMEOUT_SECS"]) {
        Some(raw) => Some(
            positive("CONNECTION_TIMEOUT_SECS", &raw)
                .map_err(|e| CliError::Config(e.to_string()))?,
        ),
        None => match context.as_ref().and_then(|c| c.timeout_secs) {
            Some(secs) => Some(secs),
            None => from_file("CONNECTION_TIMEOUT_SECS")
                .map(|raw| positive("CONNECTION_TIMEOUT_SECS", &raw))
                .transpose()
                .map_err(|e| CliError::Config(e.to_string()))?,
        },
    };
    Ok(Config {
        base_url: base_url(host.as_deref().unwrap_or(DEFAULT_HOST))?,
        email: email.map(|v| v.trim().to_owned()),
        access_token: access_token.map(|v| v.trim().to_owned()),
        timeout: timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs),
        host_configured,
        withheld,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_may_be_host_port_or_url() {
        assert_eq!(base_url("localhost:5001").unwrap(), "http://localhost:5001");
        assert_eq!(
            base_url("https://proctor.example.com/").unwrap(),
            "https://proctor.example.com"
        );
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("  ").is_err());
    }

    #[test]
    fn config_values_are_checked() {
        assert!(check_value("PROCTOR_HOST", "h:1").is_ok());
        assert!(check_value("CONNECTION_TIMEOUT_SECS", "0").is_err());
        assert!(check_value("CONNECTION_TIMEOUT_SECS", "30").is_ok());
        assert!(check_value("COLOR", "x").is_err());
    }

    #[test]
    fn context_names_are_checked() {
        assert!(check_context_name("prod-eu.1").is_ok());
        assert!(check_context_name("").is_err());
        assert!(check_context_name("a b").is_err());
        assert!(check_context_name("../x").is_err());
    }

    #[test]
    fn the_contexts_file_round_trips_and_refuses_unknown_keys() {
        let mut contexts = Contexts {
            current_context: Some("local".into()),
            ..Contexts::default()
        };
        contexts.contexts.insert(
            "local".into(),
            Context {
                host: DEFAULT_HOST.into(),
                email: Some("ada@example.com".into()),
                token: None,
                timeout_secs: Some(5),
            },
        );
        let text = serde_yaml_ng::to_string(&contexts).unwrap();
        assert!(text.contains("current-context: local"), "{text}");
        assert!(text.contains("timeout-secs: 5"), "{text}");
        assert_eq!(
            serde_yaml_ng::from_str::<Contexts>(&text).unwrap(),
            contexts
        );
        assert!(serde_yaml_ng::from_str::<Contexts>("contexts: {a: {hots: x}}").is_err());
    }
}
