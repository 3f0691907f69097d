//! Typed JSON columns. SeaORM stores these as `jsonb` on Postgres and as JSON text on SQLite,
//! which keeps one migration valid for both backends.

use sea_orm::FromJsonQueryResult;
use serde::{Deserialize, Serialize};

/// A list of strings kept in one JSON column (groups, tags, e-mail addresses, argv).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
#[serde(transparent)]
pub struct StringList(pub Vec<String>);

/// The type of a proc argument; decides how a supplied value is validated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgType {
    /// Any string (optionally constrained by a pattern).
    #[default]
    String,
    /// A signed 64-bit integer.
    Int,
    /// `true` or `false`.
    Bool,
    /// One of an explicit list of values.
    Enum,
}

/// One declared argument of a proc.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgSpec {
    /// Environment variable name the value is passed as.
    pub name: String,
    /// Free text shown to users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Value type.
    #[serde(default, rename = "type")]
    pub arg_type: ArgType,
    /// Whether a run must supply it (a default satisfies it).
    #[serde(default)]
    pub required: bool,
    /// Value used when a run does not supply one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Regular expression a string value must match in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Allowed values for `enum` arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The declared arguments of a proc, in declaration order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
#[serde(transparent)]
pub struct ArgSpecs(pub Vec<ArgSpec>);

/// One declared secret of a proc; the value lives encrypted in the `secrets` table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSpec {
    /// Environment variable name the secret is passed as.
    pub name: String,
    /// Free text shown to users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The declared secrets of a proc, in declaration order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
#[serde(transparent)]
pub struct SecretSpecs(pub Vec<SecretSpec>);

/// One argument value supplied for a run (never a secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgValue {
    /// Argument name.
    pub name: String,
    /// Supplied value.
    pub value: String,
}

/// The argument values of a run or schedule, in the order they were given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
#[serde(transparent)]
pub struct ArgValues(pub Vec<ArgValue>);

/// What a proc's Kubernetes runs ask for (`procs.resources`): Kubernetes quantities, used as
/// both requests and limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
pub struct Resources {
    /// CPU, e.g. `500m` or `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory, e.g. `256Mi` or `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// Who hears about a proc's runs, and on which final states (`procs.notifications`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPolicy {
    /// E-mail recipients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    /// Slack incoming webhook (a credential: never shown back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_webhook_url: Option<String>,
    /// URL the signed JSON outcome is posted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The final states that notify (names as in `ExecutionStatus::name`); empty: every one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<String>,
}

/// A proc's per-run identity token request (`procs.identity`): each run gets a signed JWT for
/// these audiences in `PROCTOR_ID_TOKEN`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
pub struct IdentitySpec {
    /// The `aud` claim: who the token is for (e.g. `sts.amazonaws.com`).
    pub audience: Vec<String>,
}

/// One live log alert rule of a proc.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRule {
    /// Regular expression searched in each stored (masked) line.
    pub pattern: String,
    /// Who hears: e-mail addresses, `slack`, `webhook` (the proc's notification URLs, or the
    /// server-wide channel when the proc has none).
    pub notify: Vec<String>,
    /// Fire at most once per run (default); otherwise at most `MAX_ALERTS_PER_RULE` times.
    pub once: bool,
}

/// A proc's live log alert rules (`procs.alerts`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
#[serde(transparent)]
pub struct AlertRules(pub Vec<AlertRule>);

/// What a live log alert matched (`notifications.alert`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, FromJsonQueryResult)]
pub struct AlertMatch {
    /// Index of the rule in the proc's `alerts`.
    pub rule: usize,
    /// The rule's pattern.
    pub pattern: String,
    /// The matching line, as stored (masked).
    pub line: String,
    /// Its sequence number in the run's log.
    pub seq: i64,
}
