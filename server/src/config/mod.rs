//! Configuration: flags and `PROCTOR_*` environment variables, typed and checked before
//! anything binds.
//!
//! Each section file holds one `clap::Args` group with typed fields: its doc comments are the
//! help, its attributes the environment name and the default, its value parsers the checks of
//! one value, and its `validate` the checks that span several values. Invariants:
//! - every error is one line that starts with the setting's label, `ENV_NAME (--flag)`, taken
//!   from clap's own metadata ([`label`], [`setting!`]), and `proctord` exits with status 2;
//! - no parser and no error message repeats a secret value;
//! - the defaults are clap's alone: parsing an empty environment gives the embedded default,
//!   and tests build settings with [`Settings::from_args`], the production parser with the
//!   environment left out;
//! - an empty value counts as unset, whether a variable or a flag ([`drop_blank_settings`]).
//!
//! Adding a setting means one field in one section (and using it where it matters).

use std::fmt;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, Args, FromArgMatches};
use proctor_schema::system::EventBusKind;
use url::Url;

pub mod auth;
pub mod http;
pub mod kube;
pub mod legacy;
pub mod notify;
pub mod redis;
pub mod retired;
pub mod runs;
pub mod secrets;
pub mod storage;
pub mod telemetry;

pub use auth::{Auth, AuthMode, AuthSettings};
pub use http::Http;
pub use kube::{JobUser, Kube, KubeAccess, KubeSettings};
pub use legacy::Legacy;
pub use notify::{MailSettings, MailTls, NotificationSettings, Notify};
pub use redis::{Redis, RedisSettings};
pub use runs::{Runs, RunsSettings};
pub use secrets::{SECRET_KEY_FILE, SecretKeys, Secrets};
pub use storage::{DatabaseTarget, PoolSettings, Storage, StorageSettings, ensure_data_dir};
pub use telemetry::{LogFormat, Telemetry};

/// The label of a section's field, checked at compile time: `setting!(Http, port)` is
/// `"PROCTOR_APP_PORT (--port)"`.
#[macro_export]
macro_rules! setting {
    ($section:ty, $field:ident) => {{
        let _field_exists = |section: &$section| {
            let _ = &section.$field;
        };
        $crate::config::label(stringify!($field))
    }};
}
pub use crate::setting;

/// Every setting, by section, as given (typed, each value checked on its own).
#[derive(Args, Debug, Clone)]
pub struct Options {
    /// Listening, request limits and the browser defences.
    #[command(flatten)]
    pub http: Http,
    /// The database and the data directory.
    #[command(flatten)]
    pub storage: Storage,
    /// The Redis event bus.
    #[command(flatten)]
    pub redis: Redis,
    /// Authentication and administrators.
    #[command(flatten)]
    pub auth: Auth,
    /// Secret encryption keys.
    #[command(flatten)]
    pub secrets: Secrets,
    /// Where and how runs run.
    #[command(flatten)]
    pub runs: Runs,
    /// The Kubernetes executor.
    #[command(flatten)]
    pub kube: Kube,
    /// Server-wide notifications.
    #[command(flatten)]
    pub notify: Notify,
    /// Logs and metrics.
    #[command(flatten)]
    pub telemetry: Telemetry,
    /// Proctor v2 names that compose a URL.
    #[command(flatten)]
    pub legacy: Legacy,
}

/// Validated settings of a `proctord` process, by section.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Listening, request limits and the browser defences.
    pub http: Http,
    /// The database and the data directory.
    pub storage: StorageSettings,
    /// Redis, when replicas share events through it.
    pub redis: Option<RedisSettings>,
    /// How callers are authenticated, and who administers.
    pub auth: AuthSettings,
    /// Where the secret encryption keys come from.
    pub secret_keys: SecretKeys,
    /// Where and how runs run.
    pub runs: RunsSettings,
    /// The Kubernetes executor's settings (used with `executor = kubernetes`).
    pub kube: KubeSettings,
    /// Server-wide notification channels.
    pub notify: NotificationSettings,
    /// Logs and metrics.
    pub telemetry: Telemetry,
}

impl Settings {
    /// Checks what spans several values and resolves each section.
    pub fn from_options(options: &Options) -> Result<Self, ConfigError> {
        let runs = options.runs.validate()?;
        let storage = options.storage.validate(&options.legacy)?;
        Ok(Self {
            auth: options.auth.validate(options.http.bind_address)?,
            http: options.http.validate()?,
            redis: options.redis.validate(&options.legacy)?,
            secret_keys: options.secrets.validate(&storage.data_dir)?,
            kube: options.kube.validate(runs.supervision.default_timeout)?,
            notify: options.notify.validate()?,
            telemetry: options.telemetry.clone(),
            storage,
            runs,
        })
    }

    /// Settings from these arguments alone (no program name), parsed and checked exactly as
    /// `proctord` does but without reading the environment: what tests and embedders use.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<Self, ConfigError> {
        let command = prepare(settings_command(), Environment::Ignored);
        let argv = std::iter::once("proctord").chain(args.iter().map(AsRef::as_ref));
        let options = command
            .clone()
            .try_get_matches_from(drop_blank_settings(argv, &command))
            .and_then(|matches| Options::from_arg_matches(&matches))
            .map_err(|error| match value_error(error, &command) {
                ParseError::Config(error) => error,
                ParseError::Usage(error) => {
                    let shown = error.render().to_string();
                    let first = shown.lines().next().unwrap_or_default();
                    ConfigError::new("arguments", first.trim_start_matches("error: "))
                }
            })?;
        Self::from_options(&options)
    }

    /// Whether callers must authenticate.
    pub fn auth_enabled(&self) -> bool {
        self.auth.enabled()
    }

    /// Which event bus these settings select.
    pub fn event_bus_kind(&self) -> EventBusKind {
        if self.redis.is_some() {
            EventBusKind::Redis
        } else {
            EventBusKind::Memory
        }
    }
}

/// Whether parsing reads `PROCTOR_*` variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    /// The process environment (an empty variable counts as unset).
    Process,
    /// None at all: only the arguments and the defaults.
    Ignored,
}

/// Why the command line was not accepted.
#[derive(Debug)]
pub enum ParseError {
    /// A value is wrong: one line naming the setting (exit status 2).
    Config(ConfigError),
    /// Not a value error (unknown flag, `--help`, `--version`): clap prints and exits.
    Usage(clap::Error),
}

/// Other spellings of a setting's variable, read when the setting's own is unset: (the
/// variable, its alias). `PROCTOR_REQUIRED_ADMIN_GROUP` is how the v2 README spelled it.
pub const ALIASES: &[(&str, &str)] = &[(
    "PROCTOR_AUTH_REQUIRED_ADMIN_GROUP",
    "PROCTOR_REQUIRED_ADMIN_GROUP",
)];

/// `command` (`proctord`'s, or just the settings) ready to parse: every setting may follow a
/// subcommand (`proctord migrate up --database-url …`), and `PROCTOR_*` variables are read as
/// `environment` says. Built, so that its arguments print as clap's errors show them.
pub fn prepare(command: clap::Command, environment: Environment) -> clap::Command {
    let blank = |name: &std::ffi::OsStr| {
        std::env::var_os(name).is_none_or(|value| value.to_string_lossy().trim().is_empty())
    };
    let mut command = command.mut_args(|arg| {
        let mut arg = arg.global(true);
        // A setting left unset under its name but given under another spelling (ALIASES)
        // reads that one, and its errors name it.
        if environment == Environment::Process
            && let Some(name) = arg.get_env()
            && blank(name)
            && let Some((_, alias)) = ALIASES
                .iter()
                .find(|(current, alias)| name == *current && !blank(alias.as_ref()))
        {
            arg = arg.env(*alias);
        }
        let unset = match (environment, arg.get_env()) {
            (_, None) => false,
            (Environment::Ignored, Some(_)) => true,
            (Environment::Process, Some(name)) => std::env::var_os(name)
                .is_some_and(|value| value.to_string_lossy().trim().is_empty()),
        };
        if unset { arg.env(None::<&str>) } else { arg }
    });
    command.build();
    command
}

/// `argv` without the settings given a blank value (`--x=` or `--x ""`): like an empty
/// variable, a blank flag counts as unset. `command` is the one [`prepare`] returned.
pub fn drop_blank_settings<T: Into<std::ffi::OsString>>(
    argv: impl IntoIterator<Item = T>,
    command: &clap::Command,
) -> Vec<std::ffi::OsString> {
    let takes_value = |long: &str| {
        command
            .get_arguments()
            .any(|arg| arg.get_long() == Some(long) && arg.get_action().takes_values())
    };
    let blank = |value: &std::ffi::OsStr| value.to_string_lossy().trim().is_empty();
    let mut kept = Vec::new();
    let mut argv = argv.into_iter().map(Into::into).peekable();
    while let Some(token) = argv.next() {
        let text = token.to_string_lossy().into_owned();
        if let Some(flag) = text.strip_prefix("--") {
            match flag.split_once('=') {
                Some((long, value)) if takes_value(long) && value.trim().is_empty() => continue,
                None if takes_value(flag) && argv.peek().is_some_and(|next| blank(next)) => {
                    argv.next();
                    continue;
                }
                _ => {}
            }
        }
        kept.push(token);
    }
    kept
}

/// A clap error about one value as a [`ConfigError`] on that value's setting; any other error
/// stays clap's. `command` is the one [`prepare`] returned.
pub fn value_error(error: clap::Error, command: &clap::Command) -> ParseError {
    let named = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(shown)) => command
            .get_arguments()
            .find(|arg| arg.to_string() == *shown),
        _ => None,
    };
    let message = match error.kind() {
        ErrorKind::ValueValidation => std::error::Error::source(&error).map(ToString::to_string),
        ErrorKind::InvalidValue => match (
            error.get(ContextKind::InvalidValue),
            error.get(ContextKind::ValidValue),
        ) {
            // An empty list is clap's "a value is required": its own words say it best.
            (Some(ContextValue::String(value)), Some(ContextValue::Strings(valid)))
                if !valid.is_empty() =>
            {
                Some(format!("{value:?} is not one of {}", valid.join(", ")))
            }
            _ => None,
        },
        _ => None,
    };
    match (named, message) {
        // The label comes from the unaltered command: `parse` may have removed the env names.
        (Some(arg), Some(message)) => {
            ParseError::Config(ConfigError::new(label(arg.get_id().as_str()), message))
        }
        _ => ParseError::Usage(error),
    }
}

/// The label of the setting whose clap id (its field name) is `id`; prefer [`setting!`].
pub fn label(id: &str) -> String {
    settings_command()
        .get_arguments()
        .find(|arg| arg.get_id() == id)
        .map_or_else(|| format!("--{id}"), describe)
}

/// A command that takes every setting and nothing else.
fn settings_command() -> clap::Command {
    Options::augment_args(clap::Command::new("proctord"))
}

/// `ENV_NAME (--flag)`; the alias's name when the value came from it (see [`ALIASES`]).
fn describe(arg: &Arg) -> String {
    let flag = arg.get_long().unwrap_or(arg.get_id().as_str());
    let given = |name: &str| {
        std::env::var_os(name).is_some_and(|value| !value.to_string_lossy().trim().is_empty())
    };
    match arg.get_env().map(|env| env.to_string_lossy().into_owned()) {
        Some(env) => {
            let shown = ALIASES
                .iter()
                .find(|(current, alias)| *current == env && !given(current) && given(alias))
                .map_or(env.as_str(), |(_, alias)| alias);
            format!("{shown} (--{flag})")
        }
        None => format!("--{flag}"),
    }
}

/// A setting that cannot be used, named so the operator knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// The setting, as `ENV_NAME (--flag)`.
    pub setting: String,
    /// What is wrong with it and what is expected.
    pub message: String,
}

impl ConfigError {
    /// An error about `setting`.
    pub fn new(setting: impl Into<String>, message: impl fmt::Display) -> Self {
        Self {
            setting: setting.into(),
            message: message.to_string(),
        }
    }
}

/// A secret setting value: usable, but never printed (its `Debug` shows `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The URL with any password replaced by `***`.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Only fails for URLs that cannot have credentials, which then have no password.
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

// Value parsers shared by the sections. None repeats a value that could be a secret.

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
fn boolean(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{raw:?} is not a boolean (expected true or false)")),
    }
}

/// A count above zero.
fn count(raw: &str) -> Result<usize, String> {
    positive(raw)
}

/// A whole number above zero.
fn positive<T: std::str::FromStr + PartialOrd + Default>(raw: &str) -> Result<T, String> {
    match raw.trim().parse::<T>() {
        Ok(value) if value > T::default() => Ok(value),
        _ => Err(format!("{raw:?} is not a positive whole number")),
    }
}

/// A positive whole number of seconds.
fn seconds(raw: &str) -> Result<Duration, String> {
    positive(raw).map(Duration::from_secs)
}

/// Trimmed text that is not empty.
fn text(raw: &str) -> Result<String, String> {
    match raw.trim() {
        "" => Err("must not be empty".to_owned()),
        trimmed => Ok(trimmed.to_owned()),
    }
}

/// One item of a comma-separated list, trimmed (empty items are dropped by [`items`]).
fn item(raw: &str) -> Result<String, String> {
    Ok(raw.trim().to_owned())
}

/// The non-empty items of a list.
fn items(list: &[String]) -> Vec<String> {
    list.iter()
        .filter(|item| !item.is_empty())
        .cloned()
        .collect()
}

/// A host name for an allow list, in lower case.
fn host_name(raw: &str) -> Result<String, String> {
    let host = raw.trim().to_ascii_lowercase();
    if host == "*" || host.contains('/') {
        return Err(format!(
            "{raw:?} is not a host name (list names like proctor.example.com or 10.0.0.5)"
        ));
    }
    Ok(host)
}

/// A secret: kept whole (trimmed), never shown.
fn credential(raw: &str) -> Result<Credential, String> {
    match raw.trim() {
        "" => Err("must not be empty".to_owned()),
        value => Ok(Credential::new(value)),
    }
}

/// One of the choices of `E`, in any case, surrounding blanks ignored.
fn choice<E: clap::ValueEnum>(raw: &str) -> Result<E, String> {
    E::from_str(raw.trim(), true).map_err(|_| {
        let names: Vec<String> = E::value_variants()
            .iter()
            .filter_map(|variant| variant.to_possible_value())
            .map(|value| value.get_name().to_owned())
            .collect();
        format!("{raw:?} is not one of {}", names.join(", "))
    })
}

/// An `http(s)` URL with a host; `show` says whether the value may appear in the error.
fn http_url(raw: &str, show: bool) -> Result<Url, String> {
    let shown = if show {
        format!("{raw:?} ")
    } else {
        String::new()
    };
    let url = Url::parse(raw.trim()).map_err(|e| format!("{shown}is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{shown}must be an http:// or https:// URL with a host"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings from arguments, without the environment.
    pub(crate) fn settings(args: &[&str]) -> Result<Settings, ConfigError> {
        Settings::from_args(args)
    }

    /// The error for arguments that must be refused.
    pub(crate) fn refused(args: &[&str]) -> String {
        settings(args)
            .expect_err(&format!("{args:?} must be refused"))
            .to_string()
    }

    /// Asserts that each line of `table` (arguments separated by spaces, then the environment
    /// name) is refused with one line that starts with that setting's label.
    pub(crate) fn assert_refused(table: &str) {
        for line in table.lines() {
            let mut words: Vec<&str> = line.split_whitespace().collect();
            let setting = words.pop().expect("each line ends with a setting");
            let error = refused(&words);
            assert!(
                error.starts_with(&format!("{setting} (--")),
                "{line}: {error}"
            );
            assert!(!error.contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn the_command_line_is_well_formed_and_every_setting_has_a_label() {
        settings_command().debug_assert();
        for arg in settings_command().get_arguments() {
            if matches!(arg.get_id().as_str(), "help" | "version") {
                continue;
            }
            let label = describe(arg);
            assert!(label.starts_with("PROCTOR_"), "{label}");
            assert!(label.ends_with(&format!("(--{})", arg.get_long().unwrap())));
        }
        assert_eq!(setting!(Http, port), "PROCTOR_APP_PORT (--port)");
    }

    #[test]
    fn value_errors_name_their_setting_and_choices_list_the_valid_ones() {
        assert_eq!(
            refused(&["--port", "http"]),
            "PROCTOR_APP_PORT (--port): \"http\" is not a port number (0-65535)"
        );
        assert_eq!(
            refused(&["--executor", "docker"]),
            "PROCTOR_EXECUTOR (--executor): \"docker\" is not one of local, kubernetes"
        );
        let unknown = refused(&["--no-such-flag"]);
        assert_eq!(
            unknown,
            "arguments: unexpected argument '--no-such-flag' found"
        );
    }

    #[test]
    fn a_blank_value_counts_as_unset_and_a_missing_one_is_clap_s_error() {
        let blank = settings(&[
            "--min-client-version",
            "",
            "--metrics-token=",
            "--secret-key= ",
            "--executor= Kubernetes ",
        ])
        .unwrap();
        assert_eq!(
            blank.http.min_client_version, None,
            "v2 sent an empty version"
        );
        assert_eq!(blank.telemetry.metrics_token, None);
        assert!(matches!(blank.secret_keys, SecretKeys::File(_)));
        assert_eq!(
            blank.runs.executor,
            proctor_schema::system::ExecutorKind::Kubernetes
        );
        let unsigned = refused(&[
            "--notify-webhook-url=https://h/x",
            "--notify-webhook-secret=",
        ]);
        assert!(
            unsigned.starts_with("PROCTOR_NOTIFY_WEBHOOK_SECRET"),
            "{unsigned}"
        );
        let missing = refused(&["--port"]);
        assert!(
            missing.starts_with("arguments: a value is required"),
            "{missing}"
        );
    }

    #[test]
    fn parsing_nothing_is_the_embedded_default() {
        let settings = settings(&[]).unwrap();
        assert_eq!(settings.http.listen(), "127.0.0.1:5001".parse().unwrap());
        assert_eq!(
            settings.storage.database,
            DatabaseTarget::Sqlite {
                path: "./.proctor/proctor.db".into()
            }
        );
        assert_eq!(settings.event_bus_kind(), EventBusKind::Memory);
        assert_eq!(settings.auth.mode, AuthMode::Off);
        assert_eq!(settings.auth.admin_groups, vec!["proctor.admin".to_owned()]);
        assert_eq!(settings.telemetry.log_level, "info,sea_orm_migration=warn");
        assert!(settings.storage.register_examples);
        assert!(settings.notify.mail.is_none());
    }

    #[test]
    fn passwords_never_show_in_debug_output() {
        let settings = settings(&[
            "--database-url",
            "postgres://u:hunter2@db/p",
            "--redis-url",
            "redis://:hunter3@cache:6379",
            "--secret-key",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            "--metrics-token",
            "hunter5",
        ])
        .unwrap();
        let printed = format!("{settings:?}");
        for secret in ["hunter2", "hunter3", "MDEyMzQ1", "hunter5"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }
}
