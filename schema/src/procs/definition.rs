//! The definition of a proc, in every shape it travels in.
//!
//! [`ProcDefinition`] is at once the GraphQL `ProcInput`, the YAML proc file the CLI applies and
//! exports, and what the REST shim turns the Proctor v2 metadata JSON into. Every path
//! validates it with [`ProcDefinition::validate`], so a proc is checked the same way whichever
//! door it came through.

use std::collections::HashSet;
use std::sync::LazyLock;

use async_graphql::{Enum, InputObject};
use proctor_entity::json::{
    AlertRule, AlertRules, ArgSpec, ArgType as StoredArgType, IdentitySpec, NotificationPolicy,
    Resources, SecretSpec,
};
use proctor_entity::proc;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Variables every run receives from Proctor itself; a proc cannot declare them.
pub const CONTEXT_VARIABLES: &[&str] = &[
    "EXECUTION_ID",
    "JOB_NAME",
    "EXECUTION_NAME",
    "USER_EMAIL",
    "IMAGE_TAG",
];

/// Longest run deadline a proc may ask for: one week.
pub const MAX_TIMEOUT_SECONDS: i32 = 7 * 24 * 60 * 60;
/// Most retries a proc may ask for.
pub const MAX_RETRIES: i32 = 10;

static DNS_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$").expect("valid regex"));
static ENV_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$").expect("valid regex"));

/// The type of an argument value.
#[derive(Enum, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgType {
    /// Any text, optionally matching a pattern.
    #[default]
    #[serde(alias = "STRING")]
    String,
    /// A whole number (64-bit).
    #[serde(alias = "INT")]
    Int,
    /// `true` or `false`.
    #[serde(alias = "BOOL")]
    Bool,
    /// One of the listed values.
    #[serde(alias = "ENUM")]
    Enum,
}

impl From<ArgType> for StoredArgType {
    fn from(value: ArgType) -> Self {
        match value {
            ArgType::String => Self::String,
            ArgType::Int => Self::Int,
            ArgType::Bool => Self::Bool,
            ArgType::Enum => Self::Enum,
        }
    }
}

impl From<StoredArgType> for ArgType {
    fn from(value: StoredArgType) -> Self {
        match value {
            StoredArgType::String => Self::String,
            StoredArgType::Int => Self::Int,
            StoredArgType::Bool => Self::Bool,
            StoredArgType::Enum => Self::Enum,
        }
    }
}

/// One argument a proc takes.
#[derive(InputObject, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "ArgSpecInput")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgDefinition {
    /// Environment variable name the value is passed as.
    pub name: String,
    /// What the argument means, for people filling it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Value type (default STRING).
    #[graphql(name = "type")]
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub arg_type: Option<ArgType>,
    /// Whether a run must supply it (a default satisfies it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// Value used when a run does not supply one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Regular expression a STRING value must match in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The allowed values of an ENUM argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// One secret a proc needs; its value is set separately and never read back.
#[derive(InputObject, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "SecretSpecInput")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretDefinition {
    /// Environment variable name the secret is passed as.
    pub name: String,
    /// What the secret is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Who hears about a proc's runs (e-mail, Slack, signed webhook) and on which final states.
#[derive(InputObject, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "NotificationsInput")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationsDefinition {
    /// E-mail recipients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emails: Option<Vec<String>>,
    /// Slack incoming webhook URL (a credential: shown back as `***`; sending `***` keeps the
    /// stored one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_webhook_url: Option<String>,
    /// URL the JSON outcome, signed with the server's webhook secret, is posted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The final states that notify (e.g. `FAILED`, `TIMED_OUT`); absent or empty: every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<String>>,
}

/// What a proc's Kubernetes runs ask for, as Kubernetes quantities; each is used as both the
/// request and the limit. Local runs ignore it.
#[derive(InputObject, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "ResourcesInput")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourcesDefinition {
    /// CPU, e.g. `500m` (half a core) or `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory, e.g. `256Mi` or `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// Whether `text` is a Kubernetes quantity this field takes: a positive decimal number with an
/// optional suffix (`m` for CPU; `k`, `M`, `G`, `T`, `Ki`, `Mi`, `Gi`, `Ti` for memory).
fn quantity(text: &str, suffixes: &[&str]) -> bool {
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let number_ok = !number.is_empty()
        && number.matches('.').count() <= 1
        && !number.starts_with('.')
        && !number.ends_with('.')
        && number.parse::<f64>().is_ok_and(|value| value > 0.0);
    number_ok && (suffix.is_empty() || suffixes.contains(&suffix))
}

/// A per-run identity token: each run gets `PROCTOR_ID_TOKEN`, a short-lived JWT signed by the
/// server, for these audiences (what a cloud's workload identity federation trusts).
#[derive(InputObject, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "IdentityInput")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityDefinition {
    /// The token's `aud` claim, e.g. `sts.amazonaws.com` (1 to 10 entries).
    pub audience: Vec<String>,
}

/// A live log alert: when a stored (masked) line matches `pattern`, `notify` hears about it
/// while the run is still going.
#[derive(InputObject, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "AlertInput")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertDefinition {
    /// Regular expression searched in each line (Rust `regex` syntax, linear time; at most
    /// 512 characters).
    pub pattern: String,
    /// Who hears: e-mail addresses, `slack` or `webhook` (the proc's notification URLs, or the
    /// server-wide channel when the proc sets none).
    pub notify: Vec<String>,
    /// Fire at most once per run (the default); `false`: once per matching line, at most
    /// 20 times per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub once: Option<bool>,
}

/// What a stored credential is shown as; sent back, it keeps the stored value.
pub const KEPT_SECRET: &str = "***";

/// A proc as users write it: GraphQL `ProcInput` and the YAML proc file.
#[derive(InputObject, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "ProcInput")]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcDefinition {
    /// Unique name: a DNS label (lowercase letters, digits, `-`; at most 63 characters).
    pub name: String,
    /// What the proc does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Container image (Kubernetes executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// argv to run (local executor) or the container command (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Arguments, in the order users see them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<ArgDefinition>>,
    /// Secrets the proc needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<SecretDefinition>>,
    /// Groups whose members may run it (a caller must be in all); empty: any user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized_groups: Option<Vec<String>>,
    /// Who wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Who else worked on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contributors: Option<String>,
    /// Owning organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Deadline of a run in seconds (server default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    /// Retries after a failed attempt (server default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i32>,
    /// Who hears about its runs, besides a schedule's own and the server-wide targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationsDefinition>,
    /// CPU and memory of its Kubernetes runs (requests and limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesDefinition>,
    /// A per-run identity token (`PROCTOR_ID_TOKEN`) for these audiences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityDefinition>,
    /// Live log alert rules, evaluated on each stored line while a run goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<AlertDefinition>>,
}

/// A definition that passed validation, in the shape it is stored in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidProc {
    /// The name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Image.
    pub image: Option<String>,
    /// Command argv.
    pub command: Option<Vec<String>>,
    /// Arguments.
    pub args: Vec<ArgSpec>,
    /// Secrets.
    pub secrets: Vec<SecretSpec>,
    /// Authorized groups, without duplicates.
    pub authorized_groups: Vec<String>,
    /// Author.
    pub author: Option<String>,
    /// Contributors.
    pub contributors: Option<String>,
    /// Organisation.
    pub organization: Option<String>,
    /// Deadline.
    pub timeout_seconds: Option<i32>,
    /// Retries.
    pub retries: Option<i32>,
    /// Notifications; a Slack URL of [`KEPT_SECRET`] means "keep the stored one".
    pub notifications: Option<NotificationPolicy>,
    /// CPU and memory of its Kubernetes runs.
    pub resources: Option<Resources>,
    /// The identity token it asks for.
    pub identity: Option<IdentitySpec>,
    /// Its live log alert rules.
    pub alerts: Option<AlertRules>,
}

/// Collects field errors so a user sees which field is wrong.
struct Checker<'a> {
    prefix: &'a str,
}

impl Checker<'_> {
    fn error(&self, field: &str, message: impl Into<String>) -> ApiError {
        ApiError::bad_input(format!("{}{field}", self.prefix), message)
    }

    fn text(
        &self,
        field: &str,
        value: &Option<String>,
        max: usize,
    ) -> Result<Option<String>, ApiError> {
        match value {
            Some(text) if text.chars().count() > max => {
                Err(self.error(field, format!("must be at most {max} characters")))
            }
            Some(text) if text.trim().is_empty() => Ok(None),
            other => Ok(other.clone()),
        }
    }

    fn env_name(&self, field: &str, name: &str) -> Result<(), ApiError> {
        if !ENV_NAME.is_match(name) {
            return Err(self.error(
                field,
                format!(
                    "{name:?} is not a valid environment variable name (letters, digits and _, \
                     not starting with a digit)"
                ),
            ));
        }
        if let Some(rule) = reserved_name(name) {
            return Err(self.error(
                field,
                format!(
                    "{name} is reserved: {rule}, so an argument or secret may not set it (see \
                     docs/src/security.md for the list)"
                ),
            ));
        }
        if CONTEXT_VARIABLES.contains(&name) {
            return Err(self.error(
                field,
                format!("{name} is set by Proctor for every run and cannot be declared"),
            ));
        }
        Ok(())
    }
}

/// Variables that change how a process or its interpreter runs; no argument or secret may set
/// them (compared without regard to case).
pub const RESERVED_NAMES: &[&str] = &[
    "PATH",
    "HOME",
    "SHELL",
    "IFS",
    "ENV",
    "BASH_ENV",
    "CDPATH",
    "PS4",
    "PROMPT_COMMAND",
    "GLOBIGNORE",
    "SHELLOPTS",
    "BASHOPTS",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "GCONV_PATH",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PERL5LIB",
    "PERL5OPT",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "NODE_OPTIONS",
    "NODE_PATH",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "GLIBC_TUNABLES",
    "LOCPATH",
    "NLSPATH",
    "TZDIR",
    "TERMINFO",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_EXEC_PATH",
    "GIT_ASKPASS",
    "GIT_PROXY_COMMAND",
    "SSH_ASKPASS",
    "PYTHONWARNINGS",
    "PYTHONINSPECT",
    "PERL5DB",
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    "LUA_INIT",
    "LUA_PATH",
    "LUA_CPATH",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_CONFIG",
    "GIT_EXTERNAL_DIFF",
    "GIT_TEMPLATE_DIR",
    "GIT_PAGER",
    "GIT_EDITOR",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "LESSOPEN",
    "LESSCLOSE",
    "SUDO_ASKPASS",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "SSLKEYLOGFILE",
    "MAKEFLAGS",
    "RUSTC_WRAPPER",
    "CLASSPATH",
    "GOFLAGS",
    "ZDOTDIR",
    "TCLLIBPATH",
    "R_PROFILE_USER",
    "R_ENVIRON_USER",
    "GEM_PATH",
    "GEM_HOME",
    "KUBECONFIG",
    "DOCKER_HOST",
    "XDG_CONFIG_HOME",
];

/// Prefixes of reserved variables (the dynamic loaders', bash's exported functions', and
/// Proctor's own).
pub const RESERVED_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "BASH_FUNC_",
    "PROCTOR_",
    "MALLOC_",
    "GIT_CONFIG_",
];

/// Why `name` is reserved, if it is.
pub fn reserved_name(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    if RESERVED_NAMES.contains(&upper.as_str()) {
        return Some("it changes how the process or its interpreter runs");
    }
    RESERVED_PREFIXES
        .iter()
        .find(|prefix| upper.starts_with(*prefix))
        .map(|prefix| match *prefix {
            "PROCTOR_" => "PROCTOR_ names belong to Proctor",
            _ => "it changes how programs are loaded or run",
        })
}

impl ProcDefinition {
    /// Checks every field; the error names the first wrong field under `prefix` (e.g.
    /// `input.` for GraphQL, the file name for YAML).
    pub fn validate(&self, prefix: &str) -> Result<ValidProc, ApiError> {
        let check = Checker { prefix };
        // Every text, wherever it came from (GraphQL checks its own inputs; YAML files and
        // v2 metadata arrive here with whatever escapes they held).
        if let Ok(value) = serde_json::to_value(self)
            && let Some(field) = crate::limits::nul_path_json(&value, "")
        {
            return Err(check.error(&field, "must not contain NUL characters (\\u0000)"));
        }
        if !DNS_LABEL.is_match(&self.name) {
            return Err(check.error(
                "name",
                format!(
                    "{:?} is not a valid proc name: use lowercase letters, digits and '-', start \
                     and end with a letter or digit, at most 63 characters",
                    self.name
                ),
            ));
        }
        let image = match self.image.as_deref().map(str::trim) {
            Some("") | None => None,
            Some(image) if image.contains(char::is_whitespace) || image.len() > 512 => {
                return Err(check.error("image", "must be an image reference without spaces"));
            }
            Some(image) => Some(image.to_owned()),
        };
        let command = match &self.command {
            Some(argv) if argv.is_empty() => None,
            Some(argv) => {
                if argv[0].trim().is_empty() {
                    return Err(check.error("command[0]", "the program must not be empty"));
                }
                if let Some(index) = argv.iter().position(|part| part.contains('\0')) {
                    return Err(check.error(&format!("command[{index}]"), "must not contain NUL"));
                }
                Some(argv.clone())
            }
            None => None,
        };
        if image.is_none() && command.is_none() {
            return Err(check.error(
                "command",
                "set command (what the local executor runs) or image (for Kubernetes), or both",
            ));
        }

        let secrets = self.secrets.clone().unwrap_or_default();
        let mut secret_names = HashSet::new();
        let mut valid_secrets = Vec::with_capacity(secrets.len());
        for (index, secret) in secrets.iter().enumerate() {
            let field = format!("secrets[{index}].name");
            check.env_name(&field, &secret.name)?;
            if !secret_names.insert(secret.name.as_str()) {
                return Err(check.error(&field, format!("{} is declared twice", secret.name)));
            }
            valid_secrets.push(SecretSpec {
                name: secret.name.clone(),
                description: check.text(
                    &format!("secrets[{index}].description"),
                    &secret.description,
                    4096,
                )?,
            });
        }

        let args = self.args.clone().unwrap_or_default();
        let mut arg_names = HashSet::new();
        let mut valid_args = Vec::with_capacity(args.len());
        for (index, arg) in args.iter().enumerate() {
            let at = |field: &str| format!("args[{index}].{field}");
            check.env_name(&at("name"), &arg.name)?;
            if !arg_names.insert(arg.name.as_str()) {
                return Err(check.error(&at("name"), format!("{} is declared twice", arg.name)));
            }
            if secret_names.contains(arg.name.as_str()) {
                return Err(check.error(
                    &at("name"),
                    format!("{} is also declared as a secret", arg.name),
                ));
            }
            let arg_type = arg.arg_type.unwrap_or_default();
            let values = arg.values.clone().unwrap_or_default();
            match arg_type {
                ArgType::Enum if values.is_empty() => {
                    return Err(
                        check.error(&at("values"), "an ENUM argument needs its allowed values")
                    );
                }
                ArgType::Enum => {
                    let mut seen = HashSet::new();
                    for value in &values {
                        if value.is_empty() || !seen.insert(value) {
                            return Err(check.error(
                                &at("values"),
                                "values must be non-empty and different from each other",
                            ));
                        }
                    }
                }
                _ if !values.is_empty() => {
                    return Err(check.error(&at("values"), "only ENUM arguments take values"));
                }
                _ => {}
            }
            let pattern = match (&arg.pattern, arg_type) {
                (None, _) => None,
                (Some(pattern), ArgType::String) => {
                    anchored(pattern).map_err(|e| {
                        check.error(
                            &at("pattern"),
                            format!("is not a valid regular expression: {e}"),
                        )
                    })?;
                    Some(pattern.clone())
                }
                (Some(_), _) => {
                    return Err(check.error(&at("pattern"), "only STRING arguments take a pattern"));
                }
            };
            let spec = ArgSpec {
                name: arg.name.clone(),
                description: check.text(&at("description"), &arg.description, 4096)?,
                arg_type: arg_type.into(),
                required: arg.required.unwrap_or(false),
                default: arg.default.clone(),
                pattern,
                values,
            };
            if let Some(default) = &spec.default {
                check_value(&spec, default).map_err(|rule| {
                    check.error(&at("default"), format!("the default {default:?} {rule}"))
                })?;
            }
            valid_args.push(spec);
        }

        let mut authorized_groups = Vec::new();
        for (index, group) in self.authorized_groups.iter().flatten().enumerate() {
            let group = group.trim();
            if group.is_empty() || group.contains(char::is_whitespace) || group.len() > 255 {
                return Err(check.error(
                    &format!("authorizedGroups[{index}]"),
                    "group names are non-empty, without spaces, at most 255 characters",
                ));
            }
            if !authorized_groups.iter().any(|known| known == group) {
                authorized_groups.push(group.to_owned());
            }
        }
        if let Some(timeout) = self.timeout_seconds
            && !(1..=MAX_TIMEOUT_SECONDS).contains(&timeout)
        {
            return Err(check.error(
                "timeoutSeconds",
                format!("must be between 1 and {MAX_TIMEOUT_SECONDS} (a week)"),
            ));
        }
        if let Some(retries) = self.retries
            && !(0..=MAX_RETRIES).contains(&retries)
        {
            return Err(check.error("retries", format!("must be between 0 and {MAX_RETRIES}")));
        }

        let resources = match &self.resources {
            None => None,
            Some(given) => {
                let cpu = given
                    .cpu
                    .as_deref()
                    .map(str::trim)
                    .filter(|cpu| !cpu.is_empty());
                if let Some(cpu) = cpu
                    && !quantity(cpu, &["m"])
                {
                    return Err(
                        check.error("resources.cpu", "must be a CPU quantity such as 500m or 2")
                    );
                }
                let memory = given
                    .memory
                    .as_deref()
                    .map(str::trim)
                    .filter(|memory| !memory.is_empty());
                if let Some(memory) = memory
                    && !quantity(memory, &["k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"])
                {
                    return Err(check.error(
                        "resources.memory",
                        "must be a memory quantity such as 256Mi or 1Gi",
                    ));
                }
                (cpu.is_some() || memory.is_some()).then(|| Resources {
                    cpu: cpu.map(str::to_owned),
                    memory: memory.map(str::to_owned),
                })
            }
        };
        let notifications = match &self.notifications {
            None => None,
            Some(given) => {
                let field = format!("{prefix}notifications");
                let keep_slack = given.slack_webhook_url.as_deref() == Some(KEPT_SECRET);
                let mut policy = crate::notifications::check_policy(
                    &field,
                    &NotificationPolicy {
                        emails: given.emails.clone().unwrap_or_default(),
                        slack_webhook_url: given.slack_webhook_url.clone().filter(|_| !keep_slack),
                        webhook_url: given.webhook_url.clone(),
                        on: given.on.clone().unwrap_or_default(),
                    },
                )?;
                if keep_slack {
                    policy.slack_webhook_url = Some(KEPT_SECRET.to_owned());
                }
                (policy != NotificationPolicy::default()).then_some(policy)
            }
        };

        let identity = match &self.identity {
            None => None,
            Some(given) => {
                if given.audience.is_empty() || given.audience.len() > 10 {
                    return Err(check.error("identity.audience", "give 1 to 10 audiences"));
                }
                for (index, audience) in given.audience.iter().enumerate() {
                    if audience.trim().is_empty()
                        || audience.len() > 255
                        || audience.chars().any(char::is_control)
                    {
                        return Err(check.error(
                            &format!("identity.audience[{index}]"),
                            "an audience is 1 to 255 characters without control characters",
                        ));
                    }
                }
                Some(IdentitySpec {
                    audience: given.audience.clone(),
                })
            }
        };
        let alerts = match &self.alerts {
            None => None,
            Some(rules) if rules.is_empty() => None,
            Some(rules) => {
                if rules.len() > crate::alerts::MAX_RULES {
                    return Err(check.error(
                        "alerts",
                        format!("at most {} rules", crate::alerts::MAX_RULES),
                    ));
                }
                let mut valid = Vec::with_capacity(rules.len());
                for (index, rule) in rules.iter().enumerate() {
                    let at = |field: &str| format!("alerts[{index}].{field}");
                    crate::alerts::compile(&rule.pattern)
                        .map_err(|message| check.error(&at("pattern"), message))?;
                    let notify = crate::alerts::check_notify(
                        &format!("{prefix}{}", at("notify")),
                        &rule.notify,
                    )?;
                    valid.push(AlertRule {
                        pattern: rule.pattern.clone(),
                        notify,
                        once: rule.once.unwrap_or(crate::alerts::ONCE_BY_DEFAULT),
                    });
                }
                Some(AlertRules(valid))
            }
        };

        Ok(ValidProc {
            identity,
            alerts,
            name: self.name.clone(),
            description: check.text("description", &self.description, 4096)?,
            image,
            command,
            args: valid_args,
            secrets: valid_secrets,
            authorized_groups,
            author: check.text("author", &self.author, 255)?,
            contributors: check.text("contributors", &self.contributors, 255)?,
            organization: check.text("organization", &self.organization, 255)?,
            timeout_seconds: self.timeout_seconds,
            retries: self.retries,
            notifications,
            resources,
        })
    }

    /// The definition of a stored proc (for export and editing).
    pub fn from_model(model: &proc::Model) -> Self {
        let non_empty = |list: Vec<String>| (!list.is_empty()).then_some(list);
        Self {
            name: model.name.clone(),
            description: model.description.clone(),
            image: model.image.clone(),
            command: model.command.as_ref().map(|argv| argv.0.clone()),
            args: (!model.args.0.is_empty()).then(|| {
                model
                    .args
                    .0
                    .iter()
                    .map(|arg| ArgDefinition {
                        name: arg.name.clone(),
                        description: arg.description.clone(),
                        arg_type: Some(arg.arg_type.into()),
                        required: arg.required.then_some(true),
                        default: arg.default.clone(),
                        pattern: arg.pattern.clone(),
                        values: non_empty(arg.values.clone()),
                    })
                    .collect()
            }),
            secrets: (!model.secret_specs.0.is_empty()).then(|| {
                model
                    .secret_specs
                    .0
                    .iter()
                    .map(|secret| SecretDefinition {
                        name: secret.name.clone(),
                        description: secret.description.clone(),
                    })
                    .collect()
            }),
            authorized_groups: non_empty(model.authorized_groups.0.clone()),
            author: model.author.clone(),
            contributors: model.contributors.clone(),
            organization: model.organization.clone(),
            timeout_seconds: model.timeout_seconds,
            retries: model.retries,
            notifications: model
                .notifications
                .as_ref()
                .map(|policy| NotificationsDefinition {
                    emails: (!policy.emails.is_empty()).then(|| policy.emails.clone()),
                    slack_webhook_url: policy.slack_webhook_url.clone(),
                    webhook_url: policy.webhook_url.clone(),
                    on: (!policy.on.is_empty()).then(|| policy.on.clone()),
                }),
            resources: model
                .resources
                .as_ref()
                .map(|resources| ResourcesDefinition {
                    cpu: resources.cpu.clone(),
                    memory: resources.memory.clone(),
                }),
            identity: model.identity.as_ref().map(|spec| IdentityDefinition {
                audience: spec.audience.clone(),
            }),
            alerts: model.alerts.as_ref().map(|rules| {
                rules
                    .0
                    .iter()
                    .map(|rule| AlertDefinition {
                        pattern: rule.pattern.clone(),
                        notify: rule.notify.clone(),
                        once: Some(rule.once),
                    })
                    .collect()
            }),
        }
    }

    /// The definition as shown to people: a Slack webhook URL (a credential) reads
    /// [`KEPT_SECRET`], which keeps the stored URL when the definition is applied again.
    pub fn redacted(mut self) -> Self {
        if let Some(notifications) = &mut self.notifications
            && notifications.slack_webhook_url.is_some()
        {
            notifications.slack_webhook_url = Some(KEPT_SECRET.to_owned());
        }
        self
    }

    /// Parses a YAML proc file; errors name the file, line and column.
    pub fn from_yaml(source_name: &str, yaml: &str) -> Result<Self, ApiError> {
        serde_yaml_ng::from_str(yaml).map_err(|e| {
            let location = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            ApiError::bad_input(
                format!("{source_name}{location}"),
                strip_location(&e.to_string()),
            )
        })
    }

    /// The YAML proc file for this definition.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("a proc definition always serialises")
    }
}

fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// The pattern as a regex that must match the whole value.
pub(crate) fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// Checks one value against its argument's rules; the error is the broken rule, phrased to
/// follow the value ("must be an integer").
pub(crate) fn check_value(spec: &ArgSpec, value: &str) -> Result<(), String> {
    match spec.arg_type {
        StoredArgType::Int => value
            .parse::<i64>()
            .map(drop)
            .map_err(|_| "must be a whole number (INT)".to_owned()),
        StoredArgType::Bool => match value {
            "true" | "false" => Ok(()),
            _ => Err("must be true or false (BOOL)".to_owned()),
        },
        StoredArgType::Enum => {
            if spec.values.iter().any(|allowed| allowed == value) {
                Ok(())
            } else {
                Err(format!("must be one of {} (ENUM)", spec.values.join(", ")))
            }
        }
        StoredArgType::String => match &spec.pattern {
            Some(pattern) => match anchored(pattern) {
                Ok(regex) if regex.is_match(value) => Ok(()),
                Ok(_) => Err(format!("must match the pattern {pattern}")),
                Err(_) => Err(format!(
                    "cannot be checked: the pattern {pattern} is invalid"
                )),
            },
            None => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn stored(valid: &ValidProc) -> proc::Model {
        let mut model = crate::procs::service::model_of(valid);
        model.id = 7;
        model.version = 1;
        model.created_at = Utc::now();
        model.updated_at = model.created_at;
        model
    }

    #[test]
    fn a_yaml_file_round_trips_through_the_model() {
        let yaml = "\
name: report
description: Mails the weekly report
command:
- python3
- report.py
args:
- name: WEEK
  type: int
  required: true
- name: FORMAT
  type: enum
  default: pdf
  values:
  - pdf
  - html
secrets:
- name: SMTP_PASSWORD
  description: mail server
authorizedGroups:
- reporting
timeoutSeconds: 300
retries: 2
";
        let definition = ProcDefinition::from_yaml("report.yaml", yaml).unwrap();
        let model = stored(&definition.validate("report.yaml: ").unwrap());
        let exported = ProcDefinition::from_model(&model);
        assert_eq!(exported, definition);
        assert_eq!(exported.to_yaml(), yaml);
    }

    #[test]
    fn yaml_errors_name_the_file_line_and_column() {
        let error =
            ProcDefinition::from_yaml("p.yaml", "name: x\ncommand: [true]\nretries: many\n")
                .unwrap_err();
        let ApiError::BadUserInput { field, message } = error else {
            panic!("expected BAD_USER_INPUT");
        };
        assert_eq!(field, "p.yaml:3:10");
        assert!(message.contains("retries"), "{message}");
    }

    #[test]
    fn resources_are_kubernetes_quantities_named_by_field() {
        let yaml = "name: sized\ncommand: [true]\nresources:\n  cpu: 500m\n  memory: 256Mi\n";
        let definition = ProcDefinition::from_yaml("p.yaml", yaml).unwrap();
        let valid = definition.validate("").unwrap();
        assert_eq!(
            valid.resources,
            Some(Resources {
                cpu: Some("500m".to_owned()),
                memory: Some("256Mi".to_owned()),
            })
        );
        for (cpu, memory, field) in [
            ("lots", "1Gi", "resources.cpu"),
            ("0", "1Gi", "resources.cpu"),
            ("1.5", "12 GB", "resources.memory"),
            ("2", "-1Mi", "resources.memory"),
            ("100Mi", "1Gi", "resources.cpu"),
        ] {
            let mut given = definition.clone();
            given.resources = Some(ResourcesDefinition {
                cpu: Some(cpu.to_owned()),
                memory: Some(memory.to_owned()),
            });
            let error = given.validate("").unwrap_err().to_string();
            assert!(error.contains(field), "{cpu}/{memory}: {error}");
        }
        let mut blank = definition;
        blank.resources = Some(ResourcesDefinition::default());
        assert_eq!(blank.validate("").unwrap().resources, None, "nothing asked");
    }
}
