//! Proc versions: every definition a proc has had, who stored it and when, and rolling back.
//!
//! Invariants: a proc's version `n` has exactly one row once it was stored; every change writes
//! the new version's row in the transaction that changes the proc, after making sure the
//! previous version has its row (procs stored before versions were kept get it then). A
//! rollback stores an old definition as a new version, so history only grows.

use chrono::{DateTime, Utc};
use proctor_entity::{proc, proc_version};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, NotSet, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use proctor_entity::json::{
    AlertRule, AlertRules, ArgSpec, IdentitySpec, NotificationPolicy, Resources, SecretSpec,
};

use super::definition::{ProcDefinition, ValidProc};
use super::service::{ProcView, find_proc, store_proc};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// One version as shown: the definition as it was stored, by whom, when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionView {
    /// The version number.
    pub number: i32,
    /// The proc as it was at that version (`version` and `updated_at` are the version's).
    pub snapshot: proc::Model,
    /// Who stored it.
    pub changed_by: Option<String>,
    /// When.
    pub changed_at: DateTime<Utc>,
}

/// Records `model` (just stored) as its version, first recording the previous definition if
/// it has no row yet (`previous`, the row before the change).
pub(super) async fn record<C: ConnectionTrait>(
    txn: &C,
    previous: Option<&proc::Model>,
    model: &proc::Model,
    changed_by: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(previous) = previous {
        let recorded = proc_version::Entity::find()
            .filter(proc_version::Column::ProcId.eq(previous.id))
            .filter(proc_version::Column::Version.eq(previous.version))
            .one(txn)
            .await?
            .is_some();
        if !recorded {
            insert(txn, previous, None, previous.updated_at).await?;
        }
    }
    insert(txn, model, changed_by, model.updated_at).await
}

async fn insert<C: ConnectionTrait>(
    txn: &C,
    model: &proc::Model,
    changed_by: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let definition = serde_json::to_value(ProcDefinition::from_model(model))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("serialising a proc definition: {e}")))?;
    proc_version::ActiveModel {
        id: NotSet,
        proc_id: Set(model.id),
        version: Set(model.version),
        definition: Set(definition),
        changed_by: Set(changed_by.map(str::to_owned)),
        changed_at: Set(at),
    }
    .insert(txn)
    .await?;
    Ok(())
}

fn view(proc: &proc::Model, row: proc_version::Model) -> Result<VersionView, ApiError> {
    let definition: ProcDefinition = serde_json::from_value(row.definition).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!(
            "version {} of proc {:?} is not a definition: {e}",
            row.version,
            proc.name
        ))
    })?;
    // Shown as stored, even when a rule added since would refuse it (a rollback checks).
    let valid = definition
        .validate("")
        .unwrap_or_else(|_| as_stored(&definition));
    let mut snapshot = super::service::model_of(&valid);
    snapshot.id = proc.id;
    snapshot.version = row.version;
    snapshot.created_at = proc.created_at;
    snapshot.updated_at = row.changed_at;
    Ok(VersionView {
        number: row.version,
        snapshot,
        changed_by: row.changed_by,
        changed_at: row.changed_at,
    })
}

/// A stored definition taken as it is, without today's validation.
fn as_stored(definition: &ProcDefinition) -> ValidProc {
    ValidProc {
        name: definition.name.clone(),
        description: definition.description.clone(),
        image: definition.image.clone(),
        command: definition.command.clone(),
        args: definition
            .args
            .iter()
            .flatten()
            .map(|arg| ArgSpec {
                name: arg.name.clone(),
                description: arg.description.clone(),
                arg_type: arg.arg_type.unwrap_or_default().into(),
                required: arg.required.unwrap_or(false),
                default: arg.default.clone(),
                pattern: arg.pattern.clone(),
                values: arg.values.clone().unwrap_or_default(),
            })
            .collect(),
        secrets: definition
            .secrets
            .iter()
            .flatten()
            .map(|secret| SecretSpec {
                name: secret.name.clone(),
                description: secret.description.clone(),
            })
            .collect(),
        authorized_groups: definition.authorized_groups.clone().unwrap_or_default(),
        author: definition.author.clone(),
        contributors: definition.contributors.clone(),
        organization: definition.organization.clone(),
        timeout_seconds: definition.timeout_seconds,
        retries: definition.retries,
        notifications: definition
            .notifications
            .as_ref()
            .map(|given| NotificationPolicy {
                emails: given.emails.clone().unwrap_or_default(),
                slack_webhook_url: given.slack_webhook_url.clone(),
                webhook_url: given.webhook_url.clone(),
                on: given.on.clone().unwrap_or_default(),
            }),
        resources: definition.resources.as_ref().map(|given| Resources {
            cpu: given.cpu.clone(),
            memory: given.memory.clone(),
        }),
        identity: definition.identity.as_ref().map(|given| IdentitySpec {
            audience: given.audience.clone(),
        }),
        alerts: definition.alerts.as_ref().map(|rules| {
            AlertRules(
                rules
                    .iter()
                    .map(|rule| AlertRule {
                        pattern: rule.pattern.clone(),
                        notify: rule.notify.clone(),
                        once: rule.once.unwrap_or(crate::alerts::ONCE_BY_DEFAULT),
                    })
                    .collect(),
            )
        }),
    }
}

/// The current definition as a version, for a proc stored before versions were kept.
fn current_as_version(proc: &proc::Model) -> VersionView {
    VersionView {
        number: proc.version,
        snapshot: proc.clone(),
        changed_by: None,
        changed_at: proc.updated_at,
    }
}

/// The newest `limit` versions of `proc`, newest first (the caller may see the proc).
pub async fn list(
    state: &AppState,
    proc: &proc::Model,
    limit: u64,
) -> Result<Vec<VersionView>, ApiError> {
    let rows = proc_version::Entity::find()
        .filter(proc_version::Column::ProcId.eq(proc.id))
        .order_by_desc(proc_version::Column::Version)
        .limit(limit)
        .all(state.db())
        .await?;
    let mut versions = Vec::with_capacity(rows.len() + 1);
    if rows
        .first()
        .is_none_or(|newest| newest.version != proc.version)
    {
        versions.push(current_as_version(proc));
    }
    for row in rows {
        versions.push(view(proc, row)?);
    }
    versions.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(versions)
}

/// Version `number` of `proc`; `None` when it was not kept.
pub async fn get(
    state: &AppState,
    proc: &proc::Model,
    number: i32,
) -> Result<Option<VersionView>, ApiError> {
    let row = proc_version::Entity::find()
        .filter(proc_version::Column::ProcId.eq(proc.id))
        .filter(proc_version::Column::Version.eq(number))
        .one(state.db())
        .await?;
    match row {
        Some(row) => view(proc, row).map(Some),
        None if number == proc.version => Ok(Some(current_as_version(proc))),
        None => Ok(None),
    }
}

/// Stores version `number` of proc `name` again as its newest version (administrators only).
/// `NOT_FOUND` when the proc or the version does not exist; the definition is validated as
/// any new one (a rule added since may refuse it, naming the field).
pub async fn rollback(
    state: &AppState,
    caller: &Caller,
    name: &str,
    number: i32,
) -> Result<ProcView, ApiError> {
    caller.require_admin(state, "roll procs back")?;
    let proc = find_proc(state.db(), name).await?;
    let Some(version) = get(state, &proc, number).await? else {
        return Err(ApiError::NotFound {
            kind: "proc version",
            key: format!("{name} version {number}"),
        });
    };
    let definition = ProcDefinition::from_model(&version.snapshot);
    let valid = definition.validate(&format!("version {number}: "))?;
    let stored =
        crate::db::retry_on_conflict(|| store_proc(state.db(), caller, &valid, Some(number)))
            .await?;
    super::service::get_proc(state, caller, &stored.name).await
}
