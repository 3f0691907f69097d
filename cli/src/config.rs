//! The client configuration: `proctor.yaml` in `$LOCAL_CONFIG_DIR`, else `/tmp` when
//! `ENVIRONMENT=test`, else `~/.proctor` (the Go CLI's places and keys), overridden by
//! environment variables of the same names and by `--host`.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::CliError;

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
}

/// The directory of `proctor.yaml`.
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LOCAL_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if std::env::var("ENVIRONMENT").is_ok_and(|e| e == "test") {
        return PathBuf::from("/tmp");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".proctor")
}

/// The path of `proctor.yaml`.
pub fn path() -> PathBuf {
    dir().join("proctor.yaml")
}

/// The values in the file (none when it does not exist).
pub fn read_file() -> Result<BTreeMap<String, String>, CliError> {
    let path = path();
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => {
            return Err(CliError::Config(format!(
                "cannot read {}: {error}",
                path.display()
            )));
        }
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

/// Writes `values` as `KEY: value` lines, readable only by the owner (it holds a token).
pub fn write_file(values: &BTreeMap<String, String>) -> Result<PathBuf, CliError> {
    let dir = dir();
    let path = path();
    let failed =
        |e: std::io::Error| CliError::Config(format!("cannot write {}: {e}", path.display()));
    fs::create_dir_all(&dir).map_err(failed)?;
    let mut text = String::new();
    for key in KEYS {
        if let Some(value) = values.get(*key) {
            let quoted =
                serde_yaml_ng::to_string(value).map_err(|e| CliError::Config(e.to_string()))?;
            text.push_str(&format!("{key}: {}", quoted.trim_start_matches("---\n")));
        }
    }
    write_private(&path, &text).map_err(failed)?;
    Ok(path)
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    fs::write(path, text)
}

/// Checks one `KEY=VALUE` of `proctor config`.
pub fn check_value(key: &str, value: &str) -> Result<(), CliError> {
    match key {
        "PROCTOR_HOST" => base_url(value).map(|_| ()),
        "CONNECTION_TIMEOUT_SECS" | "PROC_EXECUTION_STATUS_POLL_COUNT" => value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(|_| ())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "{key} must be a positive whole number, not {value:?}"
                ))
            }),
        "EMAIL_ID" | "ACCESS_TOKEN" => Ok(()),
        other => Err(CliError::Usage(format!(
            "proctor doesn't support config key {other:?}; use one of {}",
            KEYS.join(", ")
        ))),
    }
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

/// The configuration for server calls: `--host`/`PROCTOR_HOST` (clap already merged the two),
/// then the file; `EMAIL_ID`, `ACCESS_TOKEN` and `CONNECTION_TIMEOUT_SECS` from the
/// environment, then the file.
pub fn load(host_override: Option<&str>) -> Result<Config, CliError> {
    let file = read_file()?;
    let pick = |key: &str| {
        std::env::var(key)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .or_else(|| file.get(key).cloned().filter(|v| !v.trim().is_empty()))
    };
    let host = host_override
        .map(str::to_owned)
        .or_else(|| file.get("PROCTOR_HOST").cloned())
        .ok_or_else(|| {
            CliError::Config(format!(
                "PROCTOR_HOST is not set. Point the CLI at proctord with\n  proctor config \
                 PROCTOR_HOST=localhost:5001 EMAIL_ID=you@example.com ACCESS_TOKEN=<token>\n\
                 (writes {}) or export PROCTOR_HOST.",
                path().display()
            ))
        })?;
    let timeout = match pick("CONNECTION_TIMEOUT_SECS") {
        None => Duration::from_secs(10),
        Some(raw) => Duration::from_secs(
            raw.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    CliError::Config(format!(
                        "CONNECTION_TIMEOUT_SECS must be a positive whole number, not {raw:?}"
                    ))
                })?,
        ),
    };
    Ok(Config {
        base_url: base_url(&host)?,
        email: pick("EMAIL_ID").map(|v| v.trim().to_owned()),
        access_token: pick("ACCESS_TOKEN").map(|v| v.trim().to_owned()),
        timeout,
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
}
